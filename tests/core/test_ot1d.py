"""ot_1d against the network simplex and SciPy, over sizes, exponents and batches."""
import pytest
import scipy.stats
import torch

from papercode.core.ot import emd, ot_1d
from papercode.core.testing import assert_close

f64 = torch.float64


@pytest.mark.parametrize("n,m", [(1, 1), (1, 6), (13, 7), (40, 40), (64, 3)])
@pytest.mark.parametrize("p", [1, 2, 2.5])
def test_equals_network_simplex(n, m, p):
    g = torch.Generator().manual_seed(n * 100 + m)
    x = torch.randn(n, generator=g, dtype=f64); y = torch.randn(m, generator=g, dtype=f64) + 0.3
    a = torch.rand(n, generator=g, dtype=f64) + 0.05; a /= a.sum()
    b = torch.rand(m, generator=g, dtype=f64) + 0.05; b /= b.sum()
    r = ot_1d(x, y, a, b, p=p)
    C = (x[:, None] - y[None]).abs() ** p
    assert_close(r.value, emd(a, b, C).value, rtol=1e-9, atol=1e-14)
    P = r.plan(n, m)
    assert_close(P.sum(1), a, rtol=1e-9, atol=1e-15)
    assert_close(P.sum(0), b, rtol=1e-9, atol=1e-15)
    if p == 1:
        assert_close(r.value, scipy.stats.wasserstein_distance(x, y, a, b), rtol=1e-9, atol=1e-14)


def test_batched_with_broadcast_support():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, generator=g, dtype=f64); y = torch.randn(20, generator=g, dtype=f64)
    A = torch.rand(8, 30, generator=g, dtype=f64); A /= A.sum(-1, keepdim=True)
    rb = ot_1d(x[None], y[None], A, None, p=2)
    assert rb.value.shape == (8,)
    for k in range(8):
        assert_close(rb.value[k], ot_1d(x, y, A[k], None).value, rtol=1e-12)


def test_translation_closed_form():
    # W_p^p between a sample and its translate by t is |t|^p
    x = torch.randn(50, dtype=f64, generator=torch.Generator().manual_seed(2))
    for p in (1, 2, 3):
        assert_close(ot_1d(x, x + 0.7, p=p).value, 0.7 ** p, rtol=1e-12)


def test_dominance_ratio_ignores_empty_intervals_where_scores_overflow():
    "float32 scores of 1e20: x dominates y, so the W2 violation ratio is 0 (an empty interval times an overflowed square is not NaN)."
    from papercode.core.ot.dominance1d import almost_dominance_ratio
    x, y = torch.tensor([1e20, 2e20]), torch.tensor([-1e20, -3e20, 0.0])
    assert almost_dominance_ratio(x, y).item() == 0.0 and almost_dominance_ratio(y, x).item() == 1.0


@pytest.mark.parametrize("tol", [float("nan"), -0.5, "0"])
def test_first_order_dominance_checks_tol(tol):
    from papercode.core.ot.dominance1d import first_order_dominance
    with pytest.raises(ValueError, match="tol: must be a non-negative finite number"):
        first_order_dominance(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), tol=tol)
