"""Bad scalars and shapes reach the core's public functions: each is refused with a message naming the argument,
and numpy or 0-d torch numbers are read as the numbers they are (as `is_int` and `check_real` promise)."""
import math

import numpy as np
import pytest
import torch

from papercode.core.models.lora import LoraFactors, lora_scaling
from papercode.core.ot import emd, ot_1d, sinkhorn
from papercode.core.ot.assignment import assignment
from papercode.core.testing import assert_close
from papercode.core.utils import check_weights, torch_threads

X, Y = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0.5, 3.0])
C = torch.rand(3, 2, generator=torch.Generator().manual_seed(0))


def test_ot_1d_batched_weights_on_shared_points_give_a_batch():
    "Unbatched points with (B, n) weights are B problems: all of them come back, not only the first."
    A = torch.tensor([[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]])
    r = ot_1d(X, Y, A)
    assert r.value.shape == (2,) and r.i.shape == (2, 5)
    for k in range(2):
        assert_close(r.value[k], ot_1d(X, Y, A[k]).value, rtol=0)
    B = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    assert ot_1d(X, Y, None, B).value.shape == (2,)
    assert ot_1d(X, Y, A[0], B[0]).value.ndim == 0  # unbatched stays unbatched


@pytest.mark.parametrize("p", [float("inf"), float("nan"), True, 0.5, "2"])
def test_ot_1d_rejects_bad_exponent(p):
    with pytest.raises(ValueError, match="^p: must be a number >= 1"):
        ot_1d(X, Y, p=p)


def test_ot_1d_reads_numpy_and_tensor_exponents():
    ref = ot_1d(X, Y, p=2.0).value
    for p in (np.int64(2), np.float32(2.0), torch.tensor(2.0)):
        assert_close(ot_1d(X, Y, p=p).value, ref, rtol=0)


def test_ot_1d_rejects_complex_points():
    with pytest.raises(ValueError, match="^x: complex positions"):
        ot_1d(torch.tensor([1 + 1j, 2j]), Y)
    with pytest.raises(ValueError, match="^a: complex weights"):
        ot_1d(X, Y, a=torch.tensor([1, 1, 1j]))


@pytest.mark.parametrize("max_iter", [0, -1, True, 1.5])
def test_emd_checks_max_iter(max_iter):
    with pytest.raises(ValueError, match="^max_iter: must be a positive integer"):
        emd(None, None, C, max_iter=max_iter)


@pytest.mark.parametrize("eps", [True, torch.tensor([0.1, 0.2]), "0.1"])
def test_sinkhorn_rejects_bad_eps(eps):
    with pytest.raises(ValueError, match="^eps: must be a positive finite number"):
        sinkhorn(None, None, C, eps)


def test_sinkhorn_reads_numpy_eps():
    ref = sinkhorn(None, None, C, 0.5)
    r = sinkhorn(None, None, C, np.float64(0.5))
    assert r.eps == 0.5 and torch.equal(r.f, ref.f)
    assert math.isclose(sinkhorn(None, None, C, np.float32(0.5)).eps, 0.5)


@pytest.mark.parametrize("eps_start", [float("inf"), float("nan"), -1.0, "1"])
def test_sinkhorn_rejects_bad_eps_start(eps_start):
    "An infinite eps_start used to anneal forever; NaN and negative ones were silently ignored."
    with pytest.raises(ValueError, match="^eps_start: must be a positive finite number"):
        sinkhorn(None, None, C, 0.1, eps_start=eps_start)


def test_sinkhorn_rejects_string_eps_decay_and_mismatched_init():
    with pytest.raises(ValueError, match=r"^eps_decay: must lie in \(0, 1\)"):
        sinkhorn(None, None, C, 0.1, eps_decay="0.5")
    with pytest.raises(ValueError, match="^init f: batch size 2 does not match"):
        sinkhorn(None, None, C[None].expand(3, -1, -1), 0.1, init=(torch.zeros(2, 3), None))


@pytest.mark.parametrize("kw, msg", [(dict(K=True), "K: must be a positive integer"),
                                     (dict(tol=float("inf")), "tol: must be a positive number"),
                                     (dict(tol=True), "tol: must be a positive number")])
def test_assignment_rejects_bool_and_infinite_settings(kw, msg):
    with pytest.raises(ValueError, match="^" + msg):
        assignment(torch.rand(3, 3), **kw)


def test_assignment_reads_numpy_K():
    Cs = torch.rand(5, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(assignment(Cs, K=np.int64(4)).perm, assignment(Cs, K=4).perm)


def test_torch_threads_numpy_int_and_bool():
    with torch_threads(np.int64(1)):
        assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="^k: must be a positive integer"):
        torch_threads(True).__enter__()


@pytest.mark.parametrize("n", [0, True, 2.0])
def test_check_weights_checks_n(n):
    with pytest.raises(ValueError, match="^n: must be a positive integer"):
        check_weights(None, "w", n)


def test_lora_scaling_checks_rank_and_alpha():
    assert lora_scaling(8, np.int64(4)) == 2.0 and type(lora_scaling(8, np.int64(4))) is float
    with pytest.raises(ValueError, match="^r: must be a positive integer rank"):
        lora_scaling(8, True)
    for alpha in (float("nan"), float("inf"), "x", True):
        with pytest.raises(ValueError, match="^alpha: must be a finite number"):
            lora_scaling(alpha, 4)
    with pytest.raises(ValueError, match="^alpha: must be a finite number"):
        LoraFactors(torch.ones(2, 3), torch.ones(4, 2), float("nan"))
