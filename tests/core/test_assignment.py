"""Independent checks of `papercode.core.ot.assignment` against SciPy's `linear_sum_assignment` and brute force."""
import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from papercode.core.ot.assignment import AssignmentResult, assignment


def _opt(C):
    r, c = linear_sum_assignment(C)
    return float(C[r, c].sum())


@pytest.mark.parametrize("n", [1, 2, 4, 6])
def test_brute_force_small(n):
    "Every permutation enumerated: the optimum is reached and certified."
    rng = np.random.default_rng(n)
    for _ in range(20):
        C = rng.integers(-3, 4, (n, n)).astype(float)  # many ties
        best = min(sum(C[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n)))
        r = assignment(torch.as_tensor(C), certify=True)
        assert r.optimal and abs(r.cost - best) <= 1e-12


@pytest.mark.parametrize("kind", ["gauss", "uniform", "rank1", "rank3", "clustered", "duplicates"])
def test_matches_scipy(kind):
    rng = np.random.default_rng(["gauss", "uniform", "rank1", "rank3", "clustered", "duplicates"].index(kind))
    n = 257
    if kind == "gauss": C = rng.standard_normal((n, n))
    elif kind == "uniform": C = rng.random((n, n)) * 1e6  # large magnitudes
    elif kind == "duplicates":  # repeated points on both sides: massive ties
        U = np.repeat(rng.standard_normal((8, 2)), 33, 0)[:n]; C = U @ np.repeat(rng.standard_normal((8, 2)), 33, 0)[:n].T
    else:
        d = {"rank1": 1, "rank3": 3, "clustered": 2}[kind]
        U, V = rng.standard_normal((n, d)), rng.standard_normal((n, d))
        if kind == "clustered": U = np.round(U * 2) / 2
        C = U @ V.T
    r = assignment(torch.as_tensor(C), certify=True)
    assert r.optimal, kind
    assert abs(r.cost - _opt(C)) <= 1e-9 * max(1.0, np.abs(C).max() * n)
    assert sorted(r.perm.tolist()) == list(range(n))
    assert r.min_reduced >= -1e-9 * np.abs(C).max()


def test_factored_equals_dense_and_never_forms_c():
    g = torch.Generator().manual_seed(0)
    U, V = torch.randn(500, 2, generator=g, dtype=torch.float64), torch.randn(500, 2, generator=g, dtype=torch.float64)
    rf, rd = assignment(U=U, V=V, certify=True), assignment(U @ V.T, certify=True)
    assert rf.optimal and rd.optimal and abs(rf.cost - rd.cost) <= 1e-10 * abs(rd.cost)


def test_warm_chain_equals_cold():
    "A chain of slowly moving rank-2 costs (an IGW run's shape): every warm solution is optimal; late ones take the sparse path."
    g = torch.Generator().manual_seed(1)
    X, Y = torch.randn(400, 2, generator=g, dtype=torch.float64), torch.randn(400, 2, generator=g, dtype=torch.float64)
    A = torch.eye(2, dtype=torch.float64)
    prev, methods = None, []
    for k in range(8):
        A = A + 0.3 ** (k + 1) * torch.randn(2, 2, generator=g, dtype=torch.float64)
        U = -(X @ A)
        r = assignment(U=U, V=Y, warm=prev, certify=True)
        assert r.optimal
        assert abs(r.cost - _opt((U @ Y.T).numpy())) <= 1e-9 * abs(r.cost)
        methods.append(r.method); prev = r
    assert methods[0] == "dense" and "sparse" in methods[-3:]


def test_warm_tuple_and_float32():
    C = torch.rand(100, 100, generator=torch.Generator().manual_seed(2))
    r = assignment(C)  # float32 input is solved in float64
    r2 = assignment(C, warm=(r.v, r.perm), certify=True)
    assert r2.optimal and abs(r2.cost - r.cost) <= 1e-9 * abs(r.cost)
    assert isinstance(r2, AssignmentResult) and r2.warm


@pytest.mark.parametrize("bad, msg", [
    (lambda: assignment(torch.rand(2, 3)), "C: must be square"),
    (lambda: assignment(torch.full((2, 2), float("inf"))), "C: contains"),
    (lambda: assignment(U=torch.rand(3, 2)), "either a dense cost"),
    (lambda: assignment(U=torch.rand(3, 2), V=torch.rand(3, 2), K=0), "K: must be a positive integer"),
    (lambda: assignment(torch.rand(3, 3), tol=-1.0), "tol: must be a positive number"),
    (lambda: assignment(torch.rand(3, 3), warm=(torch.zeros(2), torch.arange(2))), "warm: is a solution of size 2"),
])
def test_bad_input(bad, msg):
    with pytest.raises(ValueError, match=msg):
        bad()
