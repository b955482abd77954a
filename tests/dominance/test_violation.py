"""Checks of the multivariate violation ratio: antisymmetry, shifted copy, weak vs strong FSD,
limits in λ and β, POT's entropic values, bootstrap representation, batched vs looped vs
POT's batched solver, permutation and duplication invariance, monotonicity in upward shifts."""
import warnings

import numpy as np
import ot
import pytest
import torch

from papercode.core.ot import DenseCost, emd, sinkhorn
from papercode.core.testing import assert_close, require
from papercode.dominance.violation import SharedKernelCost, cost_matrix, violation_ratio

f64 = torch.float64


def _pair(seed, n, m, d, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=f64) + shift, torch.randn(m, d, generator=g, dtype=f64))


def _weights(seed, n, zeros=False):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, generator=g, dtype=f64) + 0.1
    if zeros: w[::3] = 0
    return w / w.sum()


@pytest.mark.parametrize("cost", ["zero_one", "hinge", "sqhinge", "logistic"])
@pytest.mark.parametrize("lam", [0.0, 0.5])
@pytest.mark.parametrize("value", ["kl", "linear"])
def test_antisymmetry(cost, lam, value):
    X, Y = _pair(0, 30, 25, 3, 0.2)
    a, b = _weights(1, 30), _weights(2, 25)
    r1 = violation_ratio(X, Y, cost=cost, lam=lam, value=value, a=a, b=b, tol=1e-10)
    r2 = violation_ratio(Y, X, cost=cost, lam=lam, value=value, a=b, b=a, tol=1e-10)
    assert_close(r1.ratio + r2.ratio, 1.0, atol=1e-12)
    assert 0 <= r1.ratio <= 1


@pytest.mark.parametrize("cost", ["zero_one", "hinge", "sqhinge"])
@pytest.mark.parametrize("d", [1, 2, 5])
def test_shifted_copy(cost, d):
    "Y = X - δ·1 on the same points: exact OT(P, Q) = 0 (identity coupling), ratio 0, reverse 1."
    X, _ = _pair(3, 40, 1, d)
    r = violation_ratio(X, X - 0.05, cost=cost, lam=0)
    assert r.ot_pq.item() == 0.0 and r.ratio.item() == 0.0
    assert violation_ratio(X - 0.05, X, cost=cost, lam=0).ratio.item() == 1.0


def test_dominating_samples_ratio_decreases_with_n():
    "A statistical check with fixed seeds: independent samples of N(δ1, I) vs N(0, I): hinge ratio falls with n."
    means = []
    for n in (25, 100, 400):
        vals = [violation_ratio(*_pair(100 + s, n, n, 2, 0.5), cost="hinge", lam=0).ratio.item() for s in range(4)]
        means.append(np.mean(vals))
    assert means[0] > means[1] > means[2], means


@pytest.mark.parametrize("d", [1, 2])
def test_crossing_tails_no_dominance(d):
    "N(0.3, 1) vs N(0, 1.5²) in the first coordinate (tails cross): the ratio stays away from 0 and 1."
    g = torch.Generator().manual_seed(50 + d)
    X = torch.randn(300, d, generator=g, dtype=f64); X[:, 0] += 0.3
    Y = torch.randn(300, d, generator=g, dtype=f64); Y[:, 0] *= 1.5
    for cost, lam in (("hinge", 0.0), ("sqhinge", 0.0), ("logistic", 0.1 * d)):
        r = violation_ratio(X, Y, cost=cost, lam=lam).ratio.item()
        assert 0.05 < r < 0.95, (cost, lam, r)
        assert 0.05 < violation_ratio(Y, X, cost=cost, lam=lam).ratio.item() < 0.95


def test_weak_vs_strong():
    X = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=f64); Y = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=f64)
    for cost in ("zero_one", "hinge", "logistic"):
        assert violation_ratio(X, Y, cost=cost, lam=0).ot_pq > 0
    assert violation_ratio(X, Y, cost="hinge", lam=0).ratio.item() == pytest.approx(0.5)


def test_lambda_to_zero():
    "The entropic logistic ratio approaches the exact logistic ratio (network simplex) monotonically as λ → 0."
    P, Q = _pair(7, 100, 100, 5)
    exact = violation_ratio(P, Q, cost="logistic", lam=0).ratio.item()
    gaps = []
    for lam in (1.0, 0.3, 0.1, 0.05):
        r = violation_ratio(P, Q, lam=lam, eps_start=2.0, tol=1e-6, max_iter=50_000)
        assert r.converged
        gaps.append(abs(r.ratio.item() - exact))
    assert all(g1 > g2 for g1, g2 in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 0.01


def test_beta_to_infinity():
    "At fixed λ the logistic ratio approaches the hinge ratio at the same λ as the gain β grows."
    P, Q = _pair(8, 100, 100, 5)
    hinge = violation_ratio(P, Q, cost="hinge", lam=0.1, tol=1e-8, max_iter=50_000).ratio.item()
    gaps = [abs(violation_ratio(P, Q, beta=bt, lam=0.1, tol=1e-8, max_iter=50_000).ratio.item() - hinge)
            for bt in (1, 2, 8, 32, 128)]
    assert all(g1 > g2 for g1, g2 in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 2e-3


@pytest.mark.parametrize("seed,n,m,d,lam", [(0, 20, 20, 2, 0.5), (1, 40, 31, 3, 0.3), (2, 64, 50, 5, 1.0)])
def test_pot_values(seed, n, m, d, lam):
    "OT values equal POT's ot.solve(reg_type='KL').value (convention a) and ot.sinkhorn2 (convention b)."
    X, Y = _pair(seed, n, m, d, 0.1)
    a, b = _weights(seed + 10, n), _weights(seed + 20, m)
    r = violation_ratio(X, Y, lam=lam, a=a, b=b, tol=1e-12, max_iter=100_000)
    an, bn = a.numpy(), b.numpy()
    for C, wa, wb, kl, lin in ((cost_matrix(X, Y).numpy(), an, bn, r.ot_pq, r.linear_pq),
                               (cost_matrix(Y, X).numpy(), bn, an, r.ot_qp, r.linear_qp)):
        pot_kl = ot.solve(C, wa, wb, reg=lam, reg_type="KL", tol=1e-14, max_iter=200_000).value
        pot_lin = ot.sinkhorn2(wa, wb, C, lam, method="sinkhorn_log", stopThr=1e-14, numItermax=200_000)
        assert_close(kl, pot_kl, rtol=1e-6, msg="KL objective vs ot.solve")
        assert_close(lin, pot_lin, rtol=1e-6, msg="linear part vs ot.sinkhorn2")


@pytest.mark.parametrize("value", ["kl", "linear"])
@pytest.mark.parametrize("lam", [0.2, 1.0])
def test_duplicated_points_equal_weights(value, lam):
    "A resample written as duplicated points and as multinomial weights on the original support agree."
    X, Y = _pair(10, 50, 50, 3, 0.2)
    g = torch.Generator().manual_seed(11)
    for _ in range(3):
        idx = torch.randint(0, 50, (50,), generator=g)
        w = torch.bincount(idx, minlength=50).double() / 50
        rw = violation_ratio(X, Y, lam=lam, value=value, a=w, b=w, tol=1e-12, max_iter=100_000)
        rd = violation_ratio(X[idx], Y[idx], lam=lam, value=value, tol=1e-12, max_iter=100_000)
        assert_close(rw.ratio, rd.ratio, rtol=1e-8)
        assert_close(rw.ot_pq, rd.ot_pq, rtol=1e-8)


def test_batched_equals_looped_and_pot_batch():
    "B = 8 weight vectors in one call == 8 single calls == POT's ot.batch.solve_batch (n = 64)."
    X, Y = _pair(12, 64, 64, 4)
    g = torch.Generator().manual_seed(13)
    W = torch.rand(8, 64, generator=g, dtype=f64) + 0.05  # no zero weights: POT's batched KL value is NaN with zeros
    W = W / W.sum(-1, keepdim=True)
    rb = violation_ratio(X, Y, lam=0.4, a=W, b=W, tol=1e-12, max_iter=100_000)
    for k in range(8):
        rk = violation_ratio(X, Y, lam=0.4, a=W[k], b=W[k], tol=1e-12, max_iter=100_000)
        assert_close(rb.ratio[k], rk.ratio, rtol=1e-10)
        assert_close(rb.ratio_linear[k], rk.ratio_linear, rtol=1e-10)
    from ot.batch import solve_batch
    C = cost_matrix(X, Y).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = solve_batch(np.broadcast_to(C, (8, 64, 64)).copy(), reg=0.4, a=W.numpy(), b=W.numpy(), reg_type="kl",
                          method="log_sinkhorn", tol=1e-13, max_iter=100_000)
    assert_close(rb.ot_pq, np.asarray(res.value), rtol=1e-6, msg="KL objective vs solve_batch")
    assert_close(rb.linear_pq, np.asarray(res.value_linear), rtol=1e-6, msg="linear part vs solve_batch")


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_permutation_and_duplication_invariance(lam):
    X, Y = _pair(15, 30, 24, 3, 0.1)
    r = violation_ratio(X, Y, lam=lam, tol=1e-12, max_iter=100_000)
    g = torch.Generator().manual_seed(16)
    px, py = torch.randperm(30, generator=g), torch.randperm(24, generator=g)
    assert_close(violation_ratio(X[px], Y[py], lam=lam, tol=1e-12, max_iter=100_000).ratio, r.ratio, rtol=1e-10)
    dup = violation_ratio(torch.cat([X, X]), torch.cat([Y, Y, Y]), lam=lam, tol=1e-12, max_iter=100_000)
    assert_close(dup.ratio, r.ratio, rtol=1e-10)
    assert_close(dup.ratio_linear, r.ratio_linear, rtol=1e-10)


def test_monotone_in_upward_shift_property():
    "(hypothesis): shifting P up by δ·1 never increases ε(P, Q), exact or entropic (convention a)."
    try:
        from hypothesis import given, settings, strategies as st
    except ImportError:
        given = None
    require(given is not None, "hypothesis is not installed (pip install hypothesis)")

    @settings(max_examples=60, deadline=None, derandomize=True, database=None)
    @given(n=st.integers(2, 10), m=st.integers(2, 10), d=st.integers(1, 3), seed=st.integers(0, 10_000),
           delta=st.floats(0.0, 2.0), cost=st.sampled_from(["hinge", "sqhinge", "logistic"]),
           lam=st.sampled_from([0.0, 0.3, 1.0]))
    def check(n, m, d, seed, delta, cost, lam):
        X, Y = _pair(seed, n, m, d)
        kw = dict(cost=cost, lam=lam, tol=1e-12, max_iter=200_000)
        e0 = violation_ratio(X, Y, **kw).ratio.item()
        e1 = violation_ratio(X + delta, Y, **kw).ratio.item()
        assert e1 <= e0 + 1e-9, (e0, e1)

    check()


@pytest.mark.parametrize("dtype,eps", [(torch.float64, 0.3), (torch.float32, 1.0)])
def test_shared_kernel_cost_matches_dense(dtype, eps):
    "The GEMM form of eq. (8) gives the core dense log-domain results (zero weights included)."
    X, Y = _pair(20, 80, 70, 3)
    C = cost_matrix(X, Y).to(dtype)
    g = torch.Generator().manual_seed(21)
    idx = torch.randint(0, 80, (16, 80), generator=g)
    A = torch.zeros(16, 80, dtype=dtype).scatter_add_(1, idx, torch.ones(16, 80, dtype=dtype)) / 80
    idy = torch.randint(0, 70, (16, 70), generator=g)
    B = torch.zeros(16, 70, dtype=dtype).scatter_add_(1, idy, torch.ones(16, 70, dtype=dtype)) / 70
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    cost = SharedKernelCost(C)
    assert cost.kernel(eps) is not None
    r1 = sinkhorn(A, B, cost, eps, tol=tol, max_iter=10_000)
    r2 = sinkhorn(A, B, DenseCost(C), eps, tol=tol, max_iter=10_000, method="log")
    rt = 1e-9 if dtype == torch.float64 else 1e-4
    assert_close(r1.objective, r2.objective, rtol=rt); assert_close(r1.value, r2.value, rtol=rt)


def test_shared_kernel_cost_falls_back_for_small_eps():
    X, Y = _pair(22, 40, 40, 5)
    C = cost_matrix(X, Y)
    cost = SharedKernelCost(C)
    assert cost.kernel(0.005) is None  # span too large for eq. (8)
    h = torch.randn(3, 40, dtype=f64)
    assert_close(cost.lse_rows(h, 0.005), DenseCost(C).lse_rows(h, 0.005), rtol=1e-12)
    with pytest.raises(ValueError, match="shared by the batch"):
        SharedKernelCost(torch.zeros(2, 3, 3))


def test_bad_input():
    X, Y = _pair(0, 10, 10, 2)
    with pytest.raises(ValueError, match="numbers of metrics differ"):
        violation_ratio(X, Y[:, :1])
    with pytest.raises(ValueError, match="cost: expected one of"):
        violation_ratio(X, Y, cost="l2")
    with pytest.raises(ValueError, match="beta: the logistic gain"):
        violation_ratio(X, Y, beta=-1.0)
    with pytest.raises(ValueError, match="lam: must be a finite number"):
        violation_ratio(X, Y, lam=float("nan"))
    with pytest.raises(ValueError, match="X: contains 1 non-finite"):
        violation_ratio(torch.cat([X, torch.tensor([[float("inf"), 0.0]], dtype=f64)]), Y)
    with pytest.raises(ValueError, match="negative"):
        violation_ratio(X, Y, a=-torch.ones(10, dtype=f64) / 10)
    with pytest.raises(ValueError, match="X: is empty"):
        violation_ratio(torch.zeros(0, 2), Y)
    with pytest.raises(ValueError, match=r"a: weights must sum to 1 \(got a sum of 2\)"):
        violation_ratio(X, Y, a=torch.full((10,), 0.2, dtype=f64), b=torch.full((10,), 0.2, dtype=f64))
    with pytest.raises(ValueError, match="Y: complex values are not scores"):
        violation_ratio(X, Y.to(torch.complex128))
    with pytest.raises(ValueError, match="cannot be read as a numeric tensor"):
        violation_ratio([["a", "b"]], Y)


def test_numpy_numbers_accepted_bools_refused():
    "beta and lam as numpy or 0-d torch numbers give the float result; True is not a number here; eps_start is checked."
    X, Y = _pair(30, 12, 12, 2, 0.1)
    ref = violation_ratio(X, Y, beta=8.0, lam=0.2)
    for beta, lam in ((np.float32(8.0), np.float32(0.2)), (np.float64(8.0), torch.tensor(0.2)), (np.int64(8), 0.2)):
        r = violation_ratio(X, Y, beta=beta, lam=lam)
        assert r.ratio.item() == violation_ratio(X, Y, beta=8.0, lam=float(lam)).ratio.item()
        assert type(r.beta) is float and type(r.lam) is float
    assert ref.ratio.item() == violation_ratio(X, Y, beta=np.float32(8.0), lam=0.2).ratio.item()
    with pytest.raises(ValueError, match="lam: must be a finite number >= 0"):
        violation_ratio(X, Y, lam=True)
    with pytest.raises(ValueError, match="beta: the logistic gain must be a positive finite number, got True"):
        violation_ratio(X, Y, beta=True)
    for bad in (-1.0, 0.0, float("nan"), "2"):
        with pytest.raises(ValueError, match="eps_start: must be a positive finite number"):
            violation_ratio(X, Y, eps_start=bad)


def test_ratio_of_keeps_nan():
    "A NaN transport cost (failed solve, overflow) gives a NaN ratio, not the ½ of a tie; 0/0 is still ½."
    from papercode.dominance.violation import ratio_of
    nan = float("nan")
    r = ratio_of(torch.tensor([nan, 1.0, 0.0, 1.0], dtype=f64), torch.tensor([1.0, nan, 0.0, 3.0], dtype=f64))
    assert torch.isnan(r[:2]).all() and r[2].item() == 0.5 and r[3].item() == 0.25
    # float32 scores whose squared hinge overflows: the exact 1-D path used to report a tie
    r = violation_ratio(torch.tensor([1e20]), torch.tensor([-1e20]), cost="sqhinge", lam=0).ratio
    assert r.item() != 0.5
