"""Independent checks of the mobility operator (eqs. 7-9), the flows (eq. 12 and the closed forms of the flows
notebook), the JKO step (eqs. 16-17) and the interpolations against dense linear algebra, SciPy, closed forms and
finite differences."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from papercode.core.testing import assert_close
from papercode.igw.distance import igw, second_moment
from papercode.igw.flow import igw_flow, linear_image, shape_cloud, tearing, w2_flow
from papercode.igw.functionals import MMD, Functional, IGWToTarget, QuadraticPotential, SecondMomentMatching
from papercode.igw.interpolation import igw_interpolate, metric_action
from papercode.igw.jko import igw_jko_step
from papercode.igw.mobility import angular_momentum, igw_velocity, lyapunov, mobility


def _rot(d, seed):
    g = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return Q * torch.sign(torch.diagonal(R))


def _cloud(n, d, seed, weighted=False):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(1.6, 0.6, d, dtype=torch.float64) + 0.2
    a = torch.rand(n, generator=g, dtype=torch.float64) + 0.3 if weighted else torch.ones(n, dtype=torch.float64)
    return X, a / a.sum()


# ---------------------------------------------------------------- mobility
@pytest.mark.parametrize("d", [2, 3, 4])
def test_lyapunov_vs_scipy(d):
    X, a = _cloud(20, d, d, weighted=True)
    S = second_moment(X, a)
    R = torch.randn(d, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert_close(lyapunov(S, R), scipy.linalg.solve_continuous_lyapunov(S.numpy(), R.numpy()), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("n,d,weighted", [(10, 2, False), (15, 3, True), (9, 4, True)])
def test_pinv_equals_dense_weighted_pinv(n, d, weighted):
    X, a = _cloud(n, d, 7, weighted)
    L = mobility(X, a)
    sq = a.sqrt().repeat_interleave(d)
    Ls = sq[:, None] * L.dense() / sq[None, :]
    assert_close(Ls, Ls.T, atol=1e-12, msg="self-adjoint in L2(rho)")
    ev = torch.linalg.eigvalsh(Ls)
    assert ev.min() > -1e-10 * ev.max(), "PSD"
    assert int((ev.abs() < 1e-10 * ev.max()).sum()) == d * (d - 1) // 2, "kernel dimension d(d-1)/2"
    G = torch.randn(n, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    dense = (torch.linalg.pinv(Ls, hermitian=True) @ (sq * G.reshape(-1))) / sq
    assert_close(L.pinv(G).reshape(-1), dense, rtol=1e-10, atol=1e-12, msg="closed form vs dense pinv")
    # numpy lstsq on the weighted system (independent of torch's pinv)
    w = np.linalg.lstsq(Ls.numpy(), (sq * G.reshape(-1)).numpy(), rcond=1e-12)[0] / sq.numpy()
    assert_close(L.pinv(G).reshape(-1), w, rtol=1e-8, atol=1e-10, msg="vs numpy lstsq")


@pytest.mark.parametrize("d", [2, 3])
def test_kernel_is_rotations_and_zero_angular_momentum(d):
    X, a = _cloud(30, d, 11, True)
    L = mobility(X, a)
    B = torch.randn(d, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64); B = B - B.T
    assert L.apply(X @ B.T).abs().max() < 1e-13
    G = torch.randn(30, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    v = igw_velocity(X, G, a)
    assert angular_momentum(X, v, a) < 1e-12
    # the pseudo-inverse is blind to the rotational part of the gradient
    assert_close(igw_velocity(X, G + X @ B.T, a), v, atol=1e-12)


def test_equivariance():
    X, a = _cloud(25, 3, 12, True)
    G = torch.randn(25, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    O = _rot(3, 5)
    assert_close(igw_velocity(X @ O.T, G @ O.T, a), igw_velocity(X, G, a) @ O.T, rtol=1e-10, atol=1e-13)


def test_metric_is_second_order_of_igw_with_optimal_coupling():
    "IGW²(ρ, (id + εv)#ρ) = ε² g(v, v) + O(ε³) for v orthogonal to rotations, with our solver's optimal coupling."
    X, a = _cloud(30, 2, 13)
    L = mobility(X, a)
    V = L.project(torch.randn(30, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    ratios = [igw(X, X + e * V).value.item() / (e ** 2 * L.metric(V).item()) for e in (1e-2, 1e-3)]
    assert abs(ratios[1] - 1) < 2e-3 and abs(ratios[1] - 1) < abs(ratios[0] - 1) + 1e-12


# ---------------------------------------------------------------- functionals
@pytest.mark.parametrize("F", [QuadraticPotential(torch.tensor([[0.5, 0.2], [0.2, 1.0]]), torch.tensor([1.0, 0.0])),
                               SecondMomentMatching(torch.diag(torch.tensor([1.0, 0.3]))),
                               MMD(torch.randn(20, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64), sigma=0.6)],
                         ids=["potential", "moments", "mmd"])
def test_gradients_vs_finite_differences(F):
    X, a = _cloud(15, 2, 14, True)
    G = F.grad(X, a)
    D = torch.randn(15, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    h = 1e-6
    fd = (F.value(X + h * D, a) - F.value(X - h * D, a)) / (2 * h)
    assert_close((a[:, None] * G * D).sum(), fd, rtol=1e-7)


# ---------------------------------------------------------------- flows
def test_potential_flow_any_cloud_heun():
    X0 = shape_cloud(80, seed=1)[0] + torch.tensor([0.3, -0.2], dtype=torch.float64)
    S0 = second_moment(X0)
    t_star = 2 * torch.linalg.eigvalsh(S0)[0].item()
    f = igw_flow(X0, QuadraticPotential(2.0), step=5e-3, n_steps=int(0.35 * t_star / 5e-3), method="heun", record_every=10)
    I = torch.eye(2, dtype=torch.float64)
    for S, t in zip(f.Sigma, f.times):
        assert_close(S, S0 - t * I, rtol=1e-4, atol=1e-8)


def test_w2_rates_depend_on_spectrum_igw_do_not():
    g = torch.Generator().manual_seed(2)
    base = torch.randn(40, 2, generator=g, dtype=torch.float64) * torch.tensor([0.4, 1.5], dtype=torch.float64)
    Xs = torch.cat([base * torch.tensor(s, dtype=torch.float64) for s in ([1, 1], [-1, 1], [1, -1], [-1, -1])])
    S0 = second_moment(Xs)
    S = 0.5 * S0  # both eigenvalues halve
    fi = igw_flow(Xs, SecondMomentMatching(S), step=2e-3, n_steps=500, method="heun")
    fw = w2_flow(Xs, SecondMomentMatching(S), step=2e-3, n_steps=500, method="heun")
    rel = lambda f: (torch.diagonal(f.Sigma[-1]) - torch.diagonal(S)) / (torch.diagonal(S0) - torch.diagonal(S))
    ri, rw = rel(fi), rel(fw)
    assert_close(ri, torch.full((2,), math.exp(-0.5), dtype=torch.float64), rtol=1e-4)
    assert rw[1] < 0.5 * rw[0]  # W2: the large eigenvalue relaxes much faster


def test_flow_to_target_in_other_dimension():
    "½IGW² to a 3-D target from a 2-D cloud: F decreases monotonically, angular momentum stays 0."
    X, _ = _cloud(40, 2, 15)
    Y = torch.randn(40, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * torch.tensor([1.2, 0.8, 0.2], dtype=torch.float64)
    f = igw_flow(X, IGWToTarget(Y), step=0.02, n_steps=60, record_every=5)
    assert (torch.diff(f.values) <= 1e-10).all()
    assert f.values[-1] < 0.5 * f.values[0]
    assert f.angular_momentum.max() < 1e-10


def test_flow_commutes_with_rotation():
    X, _ = _cloud(30, 2, 16)
    O = _rot(2, 7)
    f1 = igw_flow(X, QuadraticPotential(1.0), step=1e-2, n_steps=30)
    f2 = igw_flow(X @ O.T, QuadraticPotential(1.0), step=1e-2, n_steps=30)
    assert_close(f2.X, f1.X @ O.T, rtol=1e-10, atol=1e-12)
    Ft = IGWToTarget(linear_image(X, 0.7))
    g1 = igw_flow(X, Ft, step=2e-2, n_steps=20)
    g2 = igw_flow(X @ O.T, IGWToTarget(linear_image(X, 0.7)), step=2e-2, n_steps=20)
    assert_close(g2.X, g1.X @ O.T, rtol=1e-8, atol=1e-10)


def test_flow_records_and_weights():
    X, a = _cloud(20, 2, 17, True)
    f = w2_flow(X, QuadraticPotential(1.0), step=0.01, n_steps=25, a=a, record_every=10)
    assert f.snapshots.shape == (4, 20, 2) and torch.allclose(f.times, torch.tensor([0.0, 0.1, 0.2, 0.25], dtype=torch.float64))
    assert_close(f.X, X * (1 - 0.01) ** 25, rtol=1e-12)  # Euler on v = -x


# ---------------------------------------------------------------- JKO
def test_jko_weighted_and_3d():
    X, a = _cloud(12, 3, 18, True)
    F = QuadraticPotential(torch.tensor([[1.0, 0.2, 0.0], [0.2, 0.5, 0.1], [0.0, 0.1, -0.4]]), torch.tensor([0.3, -0.5, 0.2]))
    v = igw_velocity(X, F.grad(X, a), a)
    errs = [((igw_jko_step(X, F, t, a=a).velocity - v).norm() / v.norm()).item() for t in (1e-2, 1e-3)]
    assert errs[1] < 2e-3 and 7 < errs[0] / errs[1] < 13  # O(tau)


def test_unaligned_step_rotates():
    X, a = _cloud(15, 2, 19)
    F = QuadraticPotential(torch.zeros(2, 2), torch.tensor([1.0, -2.0]))  # linear potential: not rotation invariant
    ra, ru = igw_jko_step(X, F, 1e-3), igw_jko_step(X, F, 1e-3, align=False)
    assert (ra.Z - X).abs().max() < 0.05 < (ru.Z - X).abs().max()
    assert ru.objective <= ra.objective  # the unconstrained minimiser is at least as low
    # and the unaligned step is (nearly) a rigid rotation of the aligned one: same Gram matrix up to O(tau)
    assert_close(ru.Z @ ru.Z.T, ra.Z @ ra.Z.T, atol=5e-3)


# ---------------------------------------------------------------- interpolation
def test_gram_path_matches_closed_form_linear_image():
    X, _ = shape_cloud(60, seed=2)
    Y = linear_image(X, 1.3, (1.2, 0.5))
    ts = torch.linspace(0, 1, 6, dtype=torch.float64)
    p = igw_interpolate(X, Y, ts)
    lam, U = torch.linalg.eigh(second_moment(X)); U = U.flip(1)
    s2 = torch.tensor([1.2, 0.5], dtype=torch.float64) ** 2
    for t, Z in zip(ts.tolist(), p.clouds):
        Zc = X @ (U @ torch.diag(((1 - t) + t * s2).sqrt()) @ U.T)
        assert_close(Z @ Z.T, Zc @ Zc.T, rtol=1e-9, atol=1e-12)
    assert_close(torch.tensor(metric_action(p.clouds, ts, "midpoint")), p.igw2, rtol=1e-8)
    assert_close(p.igw2, (second_moment(X) - second_moment(p.clouds[-1])).norm() ** 2, rtol=1e-9)


def test_action_path_at_least_igw2_and_improves():
    X, _ = shape_cloud(50, seed=3)
    Y = torch.randn(50, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64) * torch.tensor([1.1, 0.4], dtype=torch.float64)
    ts = torch.linspace(0, 1, 7, dtype=torch.float64)
    pg, pa = igw_interpolate(X, Y, ts, "gram"), igw_interpolate(X, Y, ts, "action")
    assert pa.igw2 * (1 - 1e-9) <= pa.action <= pg.action * (1 + 1e-9)
    assert_close(pa.clouds[0], X, atol=0)


def test_mccann_is_w2_geodesic():
    import ot
    X, _ = shape_cloud(40, seed=4)
    Y = linear_image(X, 2.0)
    p = igw_interpolate(X, Y, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64), method="mccann")
    w2 = ot.emd2(np.full(40, 1 / 40), np.full(40, 1 / 40), ot.dist(X.numpy(), Y.numpy()))
    half = ot.emd2(np.full(40, 1 / 40), np.full(40, 1 / 40), ot.dist(X.numpy(), p.clouds[1].numpy()))
    assert_close(half, 0.25 * w2, rtol=1e-8)  # W2(μ, μ_½) = ½ W2(μ, ν)


# ---------------------------------------------------------------- W2 flow guards, masses
def test_w2_flow_on_a_line_through_the_origin():
    "Σ singular is fine for W2 (before: LinAlgError from the IGW-only guard); Euler on α|x|²/2 gives Σ_k = (1-hα)^{2k} Σ_0."
    t = torch.linspace(-1, 1, 20, dtype=torch.float64)
    X = torch.stack([t, 2 * t], 1)
    f = w2_flow(X, QuadraticPotential(1.0), step=0.1, n_steps=5)
    assert f.stopped is None and f.n_steps == 5
    assert_close(f.Sigma[-1], 0.9 ** 10 * second_moment(X), rtol=1e-12)
    with pytest.raises(ValueError, match="singular"):  # the IGW flow still refuses it, by name
        igw_flow(X, QuadraticPotential(1.0), step=0.1, n_steps=5)


def test_w2_flow_takes_a_stable_large_step():
    "h = 0.6 shrinks Σ by 84 % per Euler step, stably (|1-hα| < 1): W2 takes it (before: refused as a 'singular limit')."
    X, a = _cloud(30, 2, 5)
    f = w2_flow(X, QuadraticPotential(1.0), step=0.6, n_steps=4)
    assert f.stopped is None and f.n_steps == 4
    assert_close(f.Sigma[-1], 0.4 ** 8 * second_moment(X), rtol=1e-12)
    fi = igw_flow(X, QuadraticPotential(1.0), step=0.6, n_steps=4)  # the IGW guard is kept for the IGW flow
    assert fi.stopped is not None and "singular" in fi.stopped


def test_w2_flow_stops_when_it_diverges():
    X, a = _cloud(30, 2, 5)
    f = w2_flow(X, QuadraticPotential(1.0), step=3.0, n_steps=5000)  # |1 - hα| = 2: blows up
    assert f.stopped is not None and "non-finite" in f.stopped and f.n_steps < 5000
    assert bool(torch.isfinite(f.X).all())


_TWO = lambda n: torch.full((n,), 2.0 / n, dtype=torch.float64)  # weights summing to 2


@pytest.mark.parametrize("call", [
    lambda X: igw(X, X * 1.1, a=_TWO(30), b=_TWO(30)),
    lambda X: second_moment(X, _TWO(30)),
    lambda X: w2_flow(X, QuadraticPotential(1.0), step=0.1, n_steps=2, a=_TWO(30)),
    lambda X: igw_flow(X, QuadraticPotential(1.0), step=0.1, n_steps=2, a=_TWO(30)),
    lambda X: mobility(X, _TWO(30)),
    lambda X: igw_jko_step(X, QuadraticPotential(1.0), tau=0.01, a=_TWO(30)),
    lambda X: MMD(X, b=_TWO(30)),
    lambda X: IGWToTarget(X, b=_TWO(30)),
], ids=["igw", "second_moment", "w2_flow", "igw_flow", "mobility", "jko", "MMD", "IGWToTarget"])
def test_non_unit_mass_refused(call):
    "IGW² of measures of mass m scales like m²: weights summing to 2 are refused, naming the argument (before: accepted)."
    X, _ = _cloud(30, 2, 6)
    with pytest.raises(ValueError, match=r"(a|b): weights must sum to 1"):
        call(X)


def test_igw_cost_refuses_a_plan_of_mass_two():
    X, a = _cloud(6, 2, 7)
    from papercode.igw.distance import igw_cost
    with pytest.raises(ValueError, match="plan: weights must sum to 1"):
        igw_cost(X, X, 2 * torch.eye(6, dtype=torch.float64) / 6)
