"""Cross-checks of the core Sinkhorn against POT, closed forms and itself (batching, costs, gradients)."""
import math
import warnings

import numpy as np
import ot
import pytest
import torch

from papercode.core.ot import DenseCost, FactoredCost, PointCloudCost, SinkhornWarning, emd, sinkhorn
from papercode.core.testing import assert_close

f64 = torch.float64


def _instance(seed, n, m, d=3, dtype=f64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randn(m, d, generator=g, dtype=dtype) * 0.7 + 0.5
    a = torch.rand(n, generator=g, dtype=dtype) + 0.2
    b = torch.rand(m, generator=g, dtype=dtype) + 0.2
    return x, y, a / a.sum(), b / b.sum()


@pytest.mark.parametrize("seed,n,m,eps", [(0, 30, 30, 0.5), (1, 50, 37, 0.1), (2, 17, 64, 1.0), (3, 80, 80, 0.05)])
@pytest.mark.parametrize("kind", ["dense-kernel", "dense-log", "pointcloud", "factored"])
def test_matches_pot(seed, n, m, eps, kind):
    x, y, a, b = _instance(seed, n, m)
    C = torch.cdist(x, y) ** 2
    cost, method = {"dense-kernel": (DenseCost(C), "kernel"), "dense-log": (DenseCost(C), "log"),
                    "pointcloud": (PointCloudCost(x, y), "log"),
                    "factored": (FactoredCost(-2 * x, y, (x * x).sum(-1), (y * y).sum(-1)), "log")}[kind]
    r = sinkhorn(a, b, cost, eps, tol=1e-12, max_iter=200_000, method=method)
    assert r.converged
    Cn, an, bn = C.numpy(), a.numpy(), b.numpy()
    P_pot, log = ot.bregman.sinkhorn_log(an, bn, Cn, eps, stopThr=1e-15, numItermax=500_000, log=True)
    assert_close(r.value, (P_pot * Cn).sum(), rtol=1e-6, msg="value vs POT")
    assert_close(r.objective, ot.solve(Cn, an, bn, reg=eps, reg_type="KL", tol=1e-15, max_iter=500_000).value,
                 rtol=1e-6, msg="objective vs ot.solve")
    # potentials: POT's log_u = log a + f/eps up to a constant shift
    du = (a.log() + r.f / eps).numpy() - log["log_u"]
    dv = (b.log() + r.g / eps).numpy() - log["log_v"]
    assert_close(du - du.mean(), np.zeros(n), atol=1e-6, msg="f vs POT")
    assert_close(dv - dv.mean(), np.zeros(m), atol=1e-6, msg="g vs POT")
    assert_close(du.mean() + dv.mean(), 0.0, atol=1e-6, msg="shift of f and g cancels")
    P = r.plan()
    assert_close(P.sum(1), a, rtol=1e-9, msg="rows exact")
    assert float((P.sum(0) - b).abs().sum()) <= 2e-12, "columns within tol (1e-12, plus rounding)"


@pytest.mark.parametrize("method", ["kernel", "log"])
def test_batched_equals_loop_and_unbatched_equals_batch_of_one(method):
    g = torch.Generator().manual_seed(5)
    B, n, m = 5, 23, 19
    C = torch.rand(B, n, m, generator=g, dtype=f64)
    a = torch.rand(B, n, generator=g, dtype=f64); a /= a.sum(-1, keepdim=True)
    b = torch.rand(B, m, generator=g, dtype=f64); b /= b.sum(-1, keepdim=True)
    rb = sinkhorn(a, b, C, 0.05, tol=1e-11, max_iter=50_000, method=method)
    for k in range(B):
        r1 = sinkhorn(a[k], b[k], C[k], 0.05, tol=1e-11, max_iter=50_000, method=method)
        r11 = sinkhorn(a[k:k + 1], b[k:k + 1], C[k:k + 1], 0.05, tol=1e-11, max_iter=50_000, method=method)
        assert r1.value.shape == () and r11.value.shape == (1,)
        assert_close(rb.value[k], r1.value, rtol=1e-9)
        assert_close(r11.value[0], r1.value, rtol=1e-12)
        assert_close(rb.plan()[k], r1.plan(), rtol=1e-7, atol=1e-13)


def test_shared_cost_with_batched_weights_is_the_bootstrap_case():
    x, y, a, b = _instance(7, 40, 30)
    g = torch.Generator().manual_seed(0)
    A = torch.distributions.Multinomial(40, probs=a).sample((6,)).to(f64) / 40  # resampled weights, zeros included
    A = A + 1e-3; A /= A.sum(-1, keepdim=True)
    cost = PointCloudCost(x, y)
    rb = sinkhorn(A, b, cost, 0.2, tol=1e-10)
    for k in range(6):
        assert_close(rb.value[k], sinkhorn(A[k], b, cost, 0.2, tol=1e-10).value, rtol=1e-9)


def test_zero_weights_are_allowed():
    x, y, a, b = _instance(8, 20, 15)
    a = a.clone(); a[:5] = 0; a /= a.sum()
    r = sinkhorn(a, b, PointCloudCost(x, y), 0.3, tol=1e-10)
    P = r.plan()
    assert r.converged and torch.isfinite(r.value) and float(P[:5].abs().max()) == 0.0
    assert_close(r.value, ot.sinkhorn2(a.numpy(), b.numpy(), (torch.cdist(x, y) ** 2).numpy(), 0.3,
                                       method="sinkhorn_log", stopThr=1e-14, numItermax=100_000), rtol=1e-6)


def test_value_decreases_to_exact_ot_as_eps_shrinks():
    x, y, a, b = _instance(9, 25, 25, d=2)
    cost = PointCloudCost(x, y)
    exact = emd(a, b, cost).value.item()
    assert_close(exact, ot.emd2(a.numpy(), b.numpy(), cost.dense()[0].numpy()), rtol=1e-12)
    vals, r = [], None
    for e in [1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01]:
        r = sinkhorn(a, b, cost, e, tol=1e-10, max_iter=100_000, init=r)
        vals.append(r.value.item())
    assert all(v1 >= v2 - 1e-10 for v1, v2 in zip(vals, vals[1:])), vals
    assert vals[-1] >= exact - 1e-9 and (vals[-1] - exact) / exact < 0.01


def test_costs_agree_with_their_dense_matrix():
    g = torch.Generator().manual_seed(11)
    U, V = torch.randn(2, 31, 4, generator=g, dtype=f64), torch.randn(2, 27, 4, generator=g, dtype=f64)
    r, c = torch.randn(2, 31, generator=g, dtype=f64), torch.randn(2, 27, generator=g, dtype=f64)
    fc = FactoredCost(U, V, r, c)
    fc.block_elems = 50  # several blocks
    dense = sinkhorn(None, None, DenseCost(fc.dense()), 0.5, tol=1e-11)
    fact = sinkhorn(None, None, fc, 0.5, tol=1e-11)
    assert_close(fact.value, dense.value, rtol=1e-9)
    assert_close(fact.f - fact.f.mean(-1, keepdim=True), dense.f - dense.f.mean(-1, keepdim=True), atol=1e-8)
    x, y = torch.randn(2, 31, 3, generator=g, dtype=f64), torch.randn(1, 27, 3, generator=g, dtype=f64)
    pc = PointCloudCost(x, y); pc.block_elems = 40
    assert_close(sinkhorn(None, None, pc, 0.5, tol=1e-11).value,
                 sinkhorn(None, None, pc.dense(), 0.5, tol=1e-11).value, rtol=1e-9)


def test_small_eps_stays_finite_where_the_kernel_underflows():
    x, y, a, b = _instance(12, 30, 30)
    C = torch.cdist(x, y) ** 2 + 500.0  # C/eps >= 5000: exp(-C/eps) is 0 in float64, the plan is unchanged
    for method in ("kernel", "log"):
        r = sinkhorn(a, b, C, 0.1, tol=1e-9, max_iter=100_000, method=method)
        assert r.converged and torch.isfinite(r.value) and torch.isfinite(r.f).all()
        assert float(torch.exp(-C / 0.1).max()) == 0.0
        ref = sinkhorn(a, b, C - 500.0, 0.1, tol=1e-9, max_iter=100_000, method=method)
        assert_close(r.value - 500.0, ref.value, rtol=1e-7)


def test_float32_matches_float64_within_float32_precision():
    x, y, a, b = _instance(13, 64, 48)
    r64 = sinkhorn(a, b, PointCloudCost(x, y), 0.1, tol=1e-9)
    for cost in (PointCloudCost(x.float(), y.float()), DenseCost((torch.cdist(x, y) ** 2).float())):
        r32 = sinkhorn(a.float(), b.float(), cost, 0.1, tol=1e-5)
        assert r32.converged and r32.value.dtype == torch.float32
        assert_close(r32.value, r64.value, rtol=1e-4)


def test_non_convergence_is_reported_and_warns():
    x, y, a, b = _instance(14, 30, 30)
    with pytest.warns(SinkhornWarning, match="no convergence in max_iter=2"):
        r = sinkhorn(a, b, PointCloudCost(x, y), 0.01, max_iter=2)
    assert not r.converged and r.n_iter == 2 and float(r.err) > r.tol


def test_warm_start_converges_in_fewer_iterations_to_the_same_point():
    x, y, a, b = _instance(15, 40, 40)
    cost = PointCloudCost(x, y)
    cold = sinkhorn(a, b, cost, 0.05, tol=1e-10, max_iter=100_000)
    warm = sinkhorn(a, b, cost, 0.05, tol=1e-10, max_iter=100_000, init=(cold.f, cold.g))
    assert warm.n_iter <= 2 and warm.n_iter < cold.n_iter
    assert_close(warm.value, cold.value, rtol=1e-9)


@pytest.mark.parametrize("bad,match", [
    (dict(eps=-1.0), "eps: must be a positive"),
    (dict(eps=0.0), "eps: must be a positive"),
    (dict(a="neg"), "a: contains negative"),
    (dict(a="nan"), "a: contains 1 non-finite"),
    (dict(b="mass"), "total masses differ"),
    (dict(a="short"), "a: has 9 entries but the cost has 10 rows"),
    (dict(b="short"), "b: has 7 entries but the cost has 8 columns"),
    (dict(a="empty"), "a: is empty"),
    (dict(cost="nan"), "cost: contains 1 non-finite"),
    (dict(cost="1d"), "cost: expected 2 or 3 dimensions"),
    (dict(tol=0.0), "tol: must be positive"),
    (dict(tol=float("nan")), "tol: must be positive"),
    (dict(tol=True), "tol: must be positive"),
    (dict(max_iter=True), "max_iter: must be a positive integer"),
    (dict(max_iter=2.5), "max_iter: must be a positive integer"),
    (dict(method="newton"), "method: expected"),
    (dict(autodiff="magic"), "autodiff: expected"),
])
def test_bad_input_names_the_argument(bad, match):
    g = torch.Generator().manual_seed(0)
    a = torch.full((10,), 0.1, dtype=f64); b = torch.full((8,), 1 / 8, dtype=f64)
    C = torch.rand(10, 8, generator=g, dtype=f64)
    kw = dict(eps=0.1, tol=1e-6)
    if "a" in bad:
        a = {"neg": -a, "nan": a.clone().index_fill_(0, torch.tensor([3]), float("nan")), "short": a[:9],
             "empty": torch.tensor([], dtype=f64)}[bad["a"]]
    if "b" in bad:
        b = {"mass": b * 3, "short": b[:7]}[bad["b"]]
    if "cost" in bad:
        C = {"nan": C.clone().index_put_((torch.tensor([0]), torch.tensor([0])), torch.tensor(float("nan"), dtype=f64)),
             "1d": C[0]}[bad["cost"]]
    kw.update({k: v for k, v in bad.items() if k in ("eps", "tol", "max_iter", "method", "autodiff")})
    with pytest.raises(ValueError, match=match.replace("(", r"\(")):
        sinkhorn(a, b, C, **kw)


def test_numpy_iteration_budget_is_an_integer():
    "A budget computed with numpy (np.int64) is accepted and gives the same solve as the Python int."
    x, y, a, b = _instance(3, 12, 9)
    r1 = sinkhorn(a, b, PointCloudCost(x, y), 0.1, max_iter=np.int64(500), tol=1e-9)
    r2 = sinkhorn(a, b, PointCloudCost(x, y), 0.1, max_iter=500, tol=1e-9)
    assert torch.equal(r1.f, r2.f) and r1.n_iter == r2.n_iter and isinstance(r1.n_iter, int)


def test_masses_are_reported_when_they_differ():
    with pytest.raises(ValueError, match=r"sum\(a\) = 1, sum\(b\) = 0.5"):
        sinkhorn(torch.full((4,), 0.25), torch.full((2,), 0.25), torch.rand(4, 2), 0.1)


def _fd_grad(fun, t, h=1e-6):
    g = torch.zeros_like(t)
    with torch.no_grad():
        for idx in np.ndindex(*t.shape):
            e = torch.zeros_like(t); e[idx] = h
            g[idx] = (fun(t + e) - fun(t - e)) / (2 * h)
    return g


def test_envelope_gradient_of_objective_matches_finite_differences_for_factored_cost():
    g = torch.Generator().manual_seed(16)
    U = torch.randn(9, 2, generator=g, dtype=f64, requires_grad=True)
    V = torch.randn(7, 2, generator=g, dtype=f64)
    fun = lambda u: sinkhorn(None, None, FactoredCost(u, V), 0.3, tol=1e-13, max_iter=100_000).objective
    gu = torch.autograd.grad(fun(U), U)[0]
    assert_close(gu, _fd_grad(fun, U.detach()), rtol=1e-5, atol=1e-8)


def test_envelope_gradient_wrt_cost_is_the_plan():
    x, y, a, b = _instance(17, 12, 9)
    C = (torch.cdist(x, y) ** 2).requires_grad_(True)
    r = sinkhorn(a, b, C, 0.2, tol=1e-12)
    gC = torch.autograd.grad(r.objective, C)[0]
    assert_close(gC, r.plan().detach(), rtol=1e-9, atol=1e-14)


def test_unrolled_gradient_of_value_matches_finite_differences():
    x, y, a, b = _instance(18, 8, 6, d=2)
    yv = y.clone().requires_grad_(True)
    fun = lambda yy: sinkhorn(a, b, PointCloudCost(x, yy), 0.5, tol=1e-13, max_iter=10_000, autodiff="unroll").value
    gy = torch.autograd.grad(fun(yv), yv)[0]
    assert_close(gy, _fd_grad(fun, y), rtol=1e-5, atol=1e-8)
