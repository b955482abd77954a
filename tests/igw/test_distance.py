"""Independent checks of `papercode.igw.distance` against brute force, closed forms and POT: the moment
identity (eq. 2), exactness by enumerating permutations, the linear-image closed form (eq. 5), the spectral lower
bound (eq. 6), invariances and metric properties, and the monotone alternating solver (eq. 3)."""
import itertools
import math
import warnings

import numpy as np
import pytest
import torch

from papercode.core.ot import SinkhornWarning
from papercode.core.testing import assert_close
from papercode.igw.distance import igw, igw_cost, igw_lower_bound, linear_image_igw, second_moment

ot = pytest.importorskip("ot")


def _rot(d, gen):
    Q, R = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return Q * torch.sign(torch.diagonal(R))


def _cloud(n, d, seed, scale=None):
    g = torch.Generator().manual_seed(seed)
    s = torch.linspace(2.0, 0.8, d, dtype=torch.float64) if scale is None else scale
    return torch.randn(n, d, generator=g, dtype=torch.float64) * s


def _brute(X, Y):
    "Exact IGW² for n = m uniform by enumerating all n! permutations (the optimum is a vertex)."
    n = X.shape[0]
    Cx, Cy = X @ X.T, Y @ Y.T
    best, bp = np.inf, None
    for p in itertools.permutations(range(n)):
        p = list(p)
        v = ((Cx - Cy[np.ix_(p, p)]) ** 2).sum() / n ** 2
        if v < best:
            best, bp = v, p
    return best, bp


def _pot_gw(X, Y, a=None, b=None, G0=None):
    Xn, Yn = X.numpy(), Y.numpy()
    a = np.full(len(Xn), 1 / len(Xn)) if a is None else a.numpy()
    b = np.full(len(Yn), 1 / len(Yn)) if b is None else b.numpy()
    return float(ot.gromov.gromov_wasserstein2(Xn @ Xn.T, Yn @ Yn.T, a, b, loss_fun="square_loss", G0=G0))


# ---------------------------------------------------------------- moment identity
@pytest.mark.parametrize("n,m,dx,dy", [(5, 5, 2, 2), (6, 4, 2, 3), (3, 8, 3, 1), (7, 7, 1, 4)])
def test_moment_identity_brute_force(n, m, dx, dy):
    g = torch.Generator().manual_seed(n * 100 + m)
    X = torch.randn(n, dx, generator=g, dtype=torch.float64)
    Y = torch.randn(m, dy, generator=g, dtype=torch.float64) + 0.3
    P = torch.rand(n, m, generator=g, dtype=torch.float64)
    P /= P.sum()
    Cx, Cy = X @ X.T, Y @ Y.T
    brute = sum(P[i, j] * P[k, l] * (Cx[i, k] - Cy[j, l]) ** 2
                for i in range(n) for j in range(m) for k in range(n) for l in range(m))
    assert_close(igw_cost(X, Y, P), brute, rtol=1e-12, msg="4-index sum vs moment form")
    # and POT's loss at the same plan (its tensor form of the same double sum)
    C = ot.gromov.init_matrix(Cx.numpy(), Cy.numpy(), P.sum(1).numpy(), P.sum(0).numpy(), "square_loss")
    assert_close(ot.gromov.gwloss(*C, P.numpy()), brute, rtol=1e-12, msg="POT gwloss")


# ---------------------------------------------------------------- exact by enumeration
@pytest.mark.parametrize("seed", range(24))
def test_reaches_enumerated_optimum(seed):
    rng = np.random.default_rng(seed)
    n, d = 5 + seed % 3, 2 + seed % 2
    X = rng.standard_normal((n, d))
    Y = rng.standard_normal((n, d)) * rng.uniform(0.5, 2, d)
    best, bp = _brute(X, Y)
    X, Y = torch.tensor(X), torch.tensor(Y)
    r = igw(X, Y)
    assert_close(r.value, best, rtol=1e-10, atol=1e-12, msg=f"seed {seed}: solver vs n! enumeration")
    assert r.perm is not None and r.converged
    # POT is a local solver: never below the enumerated optimum, and it stays there from the optimal plan
    assert _pot_gw(X, Y) >= best - 1e-10
    G0 = np.zeros((n, n)); G0[np.arange(n), bp] = 1 / n
    assert_close(_pot_gw(X, Y, G0=G0), best, rtol=1e-9, msg="POT from the optimal G0")


def test_many_instances_fraction():
    "The swap refinement matters: without it the alternation alone misses the optimum on some instances."
    misses_plain = misses = 0
    for seed in range(100, 130):
        rng = np.random.default_rng(seed)
        n, d = 6 + seed % 2, 2 + seed % 2
        X, Y = rng.standard_normal((n, d)), rng.standard_normal((n, d)) * rng.uniform(0.5, 2, d)
        best, _ = _brute(X, Y)
        X, Y = torch.tensor(X), torch.tensor(Y)
        misses += igw(X, Y).value.item() > best + 1e-10
        misses_plain += igw(X, Y, swap_max_n=0).value.item() > best + 1e-10
    assert misses == 0
    assert misses_plain >= misses


# ---------------------------------------------------------------- linear-image closed form
@pytest.mark.parametrize("d", [2, 3])
def test_linear_image_closed_form(d):
    g = torch.Generator().manual_seed(d)
    X = torch.rand(150, d, generator=g, dtype=torch.float64) ** 3 * torch.linspace(3, 1, d, dtype=torch.float64)
    lam, U = torch.linalg.eigh(second_moment(X))
    lam, U = lam.flip(0), U.flip(1)
    s = torch.linspace(1.4, 0.6, d, dtype=torch.float64)  # s_i² λ_i keeps the order of λ_i
    assert bool(((s ** 2 * lam)[:-1] > (s ** 2 * lam)[1:]).all())
    O = _rot(d, g)
    T = O @ U @ torch.diag(s) @ U.T
    perm = torch.randperm(150, generator=g)
    Y = (X @ T.T)[perm]
    closed = linear_image_igw(X, s)
    r = igw(X, Y)
    assert_close(r.value, closed, rtol=1e-10, msg="solver vs closed form (5)")
    assert torch.equal(r.perm, torch.argsort(perm))
    # special cases: rotation only -> 0; uniform scaling c -> (1 - c²)² ‖Σ‖²
    assert abs(igw(X, X @ O.T).value.item()) < 1e-10
    c = 1.3
    assert_close(igw(X, c * X @ O.T).value, (1 - c ** 2) ** 2 * (second_moment(X) ** 2).sum(), rtol=1e-10)


# ---------------------------------------------------------------- spectral lower bound
@pytest.mark.parametrize("seed", range(5))
def test_spectral_lower_bound(seed):
    X = _cloud(80, 2, seed)
    Y = _cloud(70, 3, seed + 50, scale=torch.tensor([1.5, 1.0, 0.4], dtype=torch.float64)) + 0.2
    lb = igw_lower_bound(X, Y)
    r = igw(X, Y)
    assert r.value >= lb - 1e-12
    assert _pot_gw(X, Y) >= lb - 1e-12


def test_gaussian_samples_strict():
    "Gaussian samples: the bound is strict at finite n (it is the population value only as n -> inf)."
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 2, generator=g, dtype=torch.float64) @ torch.tensor([[1.0, 0.3], [0.0, 0.8]], dtype=torch.float64)
    Y = torch.randn(200, 2, generator=g, dtype=torch.float64) * torch.tensor([1.4, 0.5], dtype=torch.float64)
    lb, v = igw_lower_bound(X, Y).item(), igw(X, Y).value.item()
    assert v > lb > 0


# ---------------------------------------------------------------- invariances and metric properties
def test_rotation_invariance_and_symmetry():
    g = torch.Generator().manual_seed(3)
    X, Y = _cloud(40, 3, 1), _cloud(40, 3, 2) + 0.5
    v = igw(X, Y).value
    assert_close(igw(X @ _rot(3, g).T, Y).value, v, rtol=1e-10, msg="rotate X")
    R = _rot(3, g); R[:, 0] *= -1  # a reflection
    assert_close(igw(X, Y @ R.T).value, v, rtol=1e-10, msg="reflect Y")
    assert_close(igw(Y, X).value, v, rtol=1e-10, msg="symmetry")


def test_not_translation_invariant():
    X, Y = _cloud(30, 2, 4), _cloud(30, 2, 5)
    assert abs(igw(X + 1.0, Y).value.item() - igw(X, Y).value.item()) > 1e-3
    assert igw(X + 1.0, X).value.item() > 1e-3  # a translate is at positive distance


def test_triangle_inequality_brute_force():
    rng = np.random.default_rng(7)
    clouds = [rng.standard_normal((6, 2)) * rng.uniform(0.5, 2, 2) for _ in range(5)]
    D = np.array([[math.sqrt(max(_brute(A, B)[0], 0.0)) for B in clouds] for A in clouds])
    for i, j, k in itertools.permutations(range(5), 3):
        assert D[i, k] <= D[i, j] + D[j, k] + 1e-9


# ---------------------------------------------------------------- monotone solver, fixed point
@pytest.mark.parametrize("weighted", [False, True])
def test_monotone_and_fixed_point(weighted):
    X, Y = _cloud(50, 2, 8), _cloud(40 if weighted else 50, 2, 9) + 0.1
    b = None
    if weighted:
        b = torch.rand(40, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5
        b /= b.sum()
    for sf, ni in ((True, 0), (False, 3)):
        r = igw(X, Y, b=b, sign_flips=sf, n_init=ni)
        assert all(h1 >= h2 - 1e-12 for h1, h2 in zip(r.history, r.history[1:])), r.history
        assert r.converged
        assert_close(r.history[-1], r.value, rtol=1e-12)
        # restarting from the result's cross moment stays put (a fixed point of eq. 3)
        r2 = igw(X, Y, b=b, init=r, sign_flips=False, n_init=0)
        assert_close(r2.value, r.value, rtol=1e-12)


# ---------------------------------------------------------------- plans, shapes, weights
def test_unequal_sizes_dims_weights_plan():
    g = torch.Generator().manual_seed(11)
    X = torch.randn(33, 2, generator=g, dtype=torch.float64)
    Y = torch.randn(21, 4, generator=g, dtype=torch.float64) + 0.2
    a = torch.rand(33, generator=g, dtype=torch.float64) + 0.1; a /= a.sum()
    b = torch.rand(21, generator=g, dtype=torch.float64) + 0.1; b /= b.sum()
    r = igw(X, Y, a, b)
    P = r.plan()
    assert r.perm is None and P.shape == (33, 21) and r.M.shape == (2, 4)
    assert_close(P.sum(1), a, atol=1e-12); assert_close(P.sum(0), b, atol=1e-12)
    assert_close(igw_cost(X, Y, P, a, b), r.value, rtol=1e-10)
    assert_close(r.barycentric(), (P @ Y) / a[:, None], rtol=1e-10)
    assert r.value <= _pot_gw(X, Y, a, b) + 1e-10


def test_float32_input_keeps_dtype():
    X, Y = _cloud(30, 2, 1).float(), _cloud(30, 2, 2).float()
    r = igw(X, Y)
    assert r.value.dtype == torch.float32 and r.M.dtype == torch.float32
    assert_close(r.value, igw(X.double(), Y.double()).value, rtol=1e-5)


def test_shared_trajectories_same_result():
    "Stopping a start that reaches a state of an earlier start changes nothing: compare with independent runs."
    X, Y = _cloud(150, 2, 20), _cloud(150, 2, 21)
    r = igw(X, Y, n_init=6)
    singles = [igw(X, Y, init=A, sign_flips=False, n_init=0).value.item()
               for A in __import__("papercode.igw.distance", fromlist=["_inits"])._inits(
                   X, Y, r.a, r.b, 6, True, None, torch.Generator().manual_seed(0), product=True)]
    assert_close(r.restart_values, torch.tensor(singles, dtype=torch.float64), rtol=1e-12)


# ---------------------------------------------------------------- against POT, many seeds
def _compare_pot(n, d, seeds):
    diffs = []
    for seed in seeds:
        X = _cloud(n, d, seed)
        Y = _cloud(n, d, seed + 1000, scale=torch.linspace(1.5, 0.7, d, dtype=torch.float64)) + 0.1
        diffs.append(igw(X, Y).value.item() - _pot_gw(X, Y))
    return np.array(diffs)


@pytest.mark.parametrize("n,d", [(20, 2), (40, 3)])
def test_not_worse_than_pot_on_average(n, d):
    diffs = _compare_pot(n, d, range(20))
    assert diffs.mean() <= 0.0, diffs
    assert (diffs <= 1e-9).mean() >= 0.9, diffs


@pytest.mark.slow
@pytest.mark.parametrize("n,d", [(100, 2), (100, 3), (300, 2), (300, 3)])
def test_not_worse_than_pot_on_average_slow(n, d):
    diffs = _compare_pot(n, d, range(20))
    assert diffs.mean() <= 0.0, diffs


# ---------------------------------------------------------------- entropic
def test_entropic_matches_pot_entropic_gw():
    "Same fixed-point iteration as POT's entropic_gromov_wasserstein (PGD, cost = true gradient -4 X M Yᵀ)."
    g = torch.Generator().manual_seed(2)
    X = torch.randn(30, 2, generator=g, dtype=torch.float64) + torch.tensor([1.0, 0.5], dtype=torch.float64)
    Y = torch.randn(25, 2, generator=g, dtype=torch.float64) * 0.7 + torch.tensor([0.5, 1.0], dtype=torch.float64)
    a, b = torch.full((30,), 1 / 30, dtype=torch.float64), torch.full((25,), 1 / 25, dtype=torch.float64)
    eps = 0.5
    M0 = X.T @ torch.outer(a, b) @ Y  # POT starts from G0 = a bᵀ
    r = igw(X, Y, eps=eps, init=M0, sign_flips=False, n_init=0, tol=1e-13, inner_tol=1e-11, inner_max_iter=20000)
    Xn, Yn = X.numpy(), Y.numpy()
    T = ot.gromov.entropic_gromov_wasserstein(Xn @ Xn.T, Yn @ Yn.T, a.numpy(), b.numpy(), "square_loss", eps,
                                              max_iter=2000, tol=1e-13, numItermax=20000, stopThr=1e-13)
    assert_close(r.plan(), T, atol=1e-7, msg="entropic plans")
    assert_close(igw_cost(X, Y, torch.tensor(T)), r.value, rtol=1e-6)


def test_entropic_monotone_and_limit():
    X, Y = _cloud(40, 2, 30), _cloud(40, 2, 31) + 0.2
    exact = igw(X, Y).value.item()
    prev = math.inf
    for eps in (20.0, 5.0, 2.0):  # the cost -4xᵀMy spans about ±100 here
        r = igw(X, Y, eps=eps, n_init=0)
        assert r.converged
        h = np.array(r.history)
        assert (np.diff(h) <= 1e-6 * abs(h[0])).all()  # non-increasing up to the inner tolerance
        assert r.value.item() >= exact - 1e-9  # an entropic plan is a coupling: never below the optimum
        assert r.objective >= r.value  # eps KL >= 0
        gap = r.value.item() - exact
        assert gap <= prev + 1e-9
        prev = gap
    assert prev < 0.25 * exact  # 20 % at eps = 2; the gap shrinks with eps (checked above)
    P = r.plan()
    assert_close(P.sum(1), torch.full((40,), 1 / 40, dtype=torch.float64), rtol=1e-5)
    assert_close(X.T @ P @ Y, r.M, rtol=1e-8, atol=1e-12)
    assert_close(r.barycentric(), (P @ Y) * 40, rtol=1e-8, atol=1e-12)


# ---------------------------------------------------------------- entropic, Sinkhorn not converging
@pytest.mark.parametrize("eps", [0.05, 1e-4])
def test_entropic_nonconvergence_warns_and_value_is_the_plans(eps):
    "A Sinkhorn step that stops at inner_max_iter is reported (naming the alternating step), never swallowed, and the"
    " reported value is still the double sum (1) at the returned plan (before: no warning; at eps = 1e-4 a negative value)."
    X, Y = _cloud(30, 2, 34), _cloud(30, 2, 35) + 0.2
    with pytest.warns(SinkhornWarning, match=r"alternating step\(s\) 1, 2") as rec:
        r = igw(X, Y, eps=eps, n_init=0, inner_max_iter=200, max_iter=10)
    assert len([w for w in rec if issubclass(w.category, SinkhornWarning)]) == 1  # one warning per call
    assert "including the last" in str(rec[0].message) and not r.converged
    P = r.plan()
    assert_close(r.value, igw_cost(X, Y, P), rtol=1e-8, msg="value = (1) at the returned plan")
    assert r.value >= 0
    kl = (P * (P.clamp_min(1e-300).log() - torch.log(torch.outer(r.a, r.b)))).sum()
    assert_close(r.objective, r.value + eps * kl, rtol=1e-8, atol=1e-10, msg="objective = value + eps KL of the plan")


def test_entropic_history_claim():
    "`history` is documented as non-increasing (up to Sinkhorn's tolerance) while every Sinkhorn solve converges, and"
    " as possibly increasing only after a solve that did not (then a warning says so): both halves, on one pair."
    X, Y = _cloud(30, 2, 34), _cloud(30, 2, 35) + 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("error", SinkhornWarning)  # every solve converges here
        r = igw(X, Y, eps=4.0, n_init=0)
    h = np.array(r.history)
    assert r.converged and (np.diff(h) <= 1e-6 * abs(h[0])).all()
    with pytest.warns(SinkhornWarning, match="alternating step"):
        r = igw(X, Y, eps=0.05, n_init=0, inner_max_iter=200, max_iter=10)
    assert np.diff(np.array(r.history)).max() > 1e-3  # it does increase there: the docstring's caveat is needed
