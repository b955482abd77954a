"""Argument checks and edge cases found in review: each test failed on the earlier code (a silent wrong
result, an accepted bad value, or an error that named the wrong argument or none)."""
import numpy as np
import pytest
import torch

from papercode.core.testing import assert_close
from papercode.igw.distance import igw, igw_cost


def _xy(n=10, dy=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g, dtype=torch.float64), torch.randn(n, dy, generator=g, dtype=torch.float64)


# ---------------------------------------------------------------- igw's arguments
def test_igw_counts_accept_numpy_ints_with_identical_results():
    X, Y = _xy()
    ref = igw(X, Y, n_init=2, max_iter=50, swap_max_n=5, coarse=3, seed=1)
    r = igw(X, Y, n_init=np.int64(2), max_iter=np.int64(50), swap_max_n=np.int64(5), coarse=np.int64(3),
            seed=np.int64(1))
    assert torch.equal(r.value, ref.value) and torch.equal(r.perm, ref.perm) and r.seed == 1 and type(r.seed) is int


@pytest.mark.parametrize("kw,msg", [
    (dict(max_iter=True), "max_iter: must be a positive integer"),
    (dict(screen=True), "screen: must be a non-negative integer"),
    (dict(coarse=False), "coarse: must be a non-negative integer"),
    (dict(tol=float("inf")), "tol: must be a non-negative finite number"),   # converged=True after one step before
    (dict(tol=True), "tol: must be a non-negative finite number"),
    (dict(seed=1.5), "seed: must be a non-negative integer"),                # ran with seed 1, recorded 1.5
    (dict(seed=-1), "seed: must be a non-negative integer"),
    (dict(seed="a"), "seed: must be a non-negative integer"),
    (dict(sign_flips="no"), "sign_flips: must be True or False"),            # a truthy string ran the flips
    (dict(eps=0.5, inner_tol=-1.0), "inner_tol: must be a positive"),        # the message named `tol`
    (dict(eps=0.5, inner_max_iter=0), "inner_max_iter: must be a positive integer"),  # it named `max_iter`
])
def test_igw_bad_arguments_are_named(kw, msg):
    X, Y = _xy()
    with pytest.raises(ValueError, match=msg):
        igw(X, Y, **kw)


def test_igw_cost_refuses_weights_that_are_not_the_plans_marginals():
    X, Y = _xy(dy=2)
    P = torch.eye(10, dtype=torch.float64) / 10
    a = torch.tensor([0.2] * 5 + [0.0] * 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="a: differs from the plan's row sums"):
        igw_cost(X, Y, P, a=a)   # was a value mixing Σ of `a` with the plan's cross moment
    with pytest.raises(ValueError, match="b: differs from the plan's column sums"):
        igw_cost(X, Y, P, b=a)
    u = torch.full((10,), 0.1, dtype=torch.float64)
    assert torch.equal(igw_cost(X, Y, P, u, u), igw_cost(X, Y, P))


# ---------------------------------------------------------------- mobility
def test_lyapunov_refuses_singular_or_nonsymmetric_sigma():
    from papercode.igw.mobility import lyapunov
    with pytest.raises(ValueError, match="S: must be positive definite"):
        lyapunov(torch.zeros(2, 2), torch.eye(2))          # was a NaN matrix
    with pytest.raises(ValueError, match="S: must be a symmetric square matrix"):
        lyapunov(torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.eye(2))   # was solved with the lower triangle
    with pytest.raises(ValueError, match=r"R: expected shape \(\.\.\., 2, 2\)"):
        lyapunov(torch.eye(2), torch.eye(3))


def test_velocity_and_angular_momentum_name_their_arguments():
    from papercode.igw.mobility import angular_momentum, igw_velocity
    X, _ = _xy(dy=2)
    with pytest.raises(ValueError, match="grad: expected a field of shape"):
        igw_velocity(X, X[:9])                             # named `G`, an internal name
    with pytest.raises(ValueError, match="V: expected one velocity per point"):
        angular_momentum(X, X[:9])                         # a bare matmul error
    assert angular_momentum(torch.tensor([[1, 0], [0, 1]]), torch.tensor([[0, 1], [1, 0]])) == 0  # integer points


# ---------------------------------------------------------------- functionals
def test_igw_to_target_keeps_its_own_start_arguments_on_warm_calls():
    from papercode.igw.functionals import IGWToTarget
    X, Y = _xy()
    F = IGWToTarget(Y, n_init=2)
    v1 = F(X); v2 = F(X)     # the second (warm-started) call raised "got multiple values for keyword argument"
    assert_close(v2, v1, rtol=1e-12)
    with pytest.raises(ValueError, match="igw_kwargs: foo not keyword"):
        IGWToTarget(Y, foo=1)
    with pytest.raises(ValueError, match="restarts_every: must be a non-negative integer"):
        IGWToTarget(Y, restarts_every=-1)


def test_functionals_check_their_parameters_and_dimension():
    from papercode.igw.functionals import MMD, QuadraticPotential, SecondMomentMatching
    X, Y = _xy()
    with pytest.raises(ValueError, match="Q: contains 1 non-finite"):
        QuadraticPotential(torch.tensor([[float("nan"), 0.0], [0.0, 1.0]]))   # was "Q: must be symmetric"
    with pytest.raises(ValueError, match="Q: expected 0 or 2 dimensions"):
        QuadraticPotential(torch.ones(2))
    with pytest.raises(ValueError, match="sigma: must be a positive finite number"):
        MMD(Y, sigma=float("inf"))                        # F was 0 for every cloud
    Z = Y[:4] + 0.3
    assert torch.equal(MMD(Y, sigma=torch.tensor(0.5))(Z), MMD(Y, sigma=0.5)(Z))   # a 0-d tensor was refused
    for F in (QuadraticPotential(torch.eye(3)), SecondMomentMatching(torch.eye(3)), MMD(Y)):
        with pytest.raises(ValueError, match="X: points of dimension 2"):
            F(X)


# ---------------------------------------------------------------- flows, JKO, interpolation
def test_flow_arguments():
    from papercode.igw.flow import igw_flow, linear_image, shape_cloud, tearing
    from papercode.igw.functionals import QuadraticPotential
    X, _ = _xy(dy=2)
    F = QuadraticPotential(1.0)
    ref = igw_flow(X, F, step=0.01, n_steps=3)
    r = igw_flow(X, F, step=np.float64(0.01), n_steps=np.int64(3), record_every=np.int64(1))
    assert torch.equal(r.X, ref.X) and r.n_steps == 3
    with pytest.raises(ValueError, match="n_steps: must be a non-negative integer"):
        igw_flow(X, F, step=0.01, n_steps=True)           # ran one step and recorded n_steps=True
    with pytest.raises(ValueError, match="step: must be a positive finite number"):
        igw_flow(X, F, step=True, n_steps=2)
    with pytest.raises(ValueError, match="X0: points of dimension 2"):
        igw_flow(X, QuadraticPotential(torch.eye(3)), step=0.01, n_steps=2)
    with pytest.raises(ValueError, match="noise: must be a non-negative finite number"):
        shape_cloud(10, noise=float("nan"))               # was a NaN cloud
    with pytest.raises(ValueError, match="angle: must be a finite number"):
        linear_image(X, float("nan"))                     # was a NaN cloud
    with pytest.raises(ValueError, match="X1: is all zeros"):
        tearing(X, torch.zeros_like(X))                   # was nan
    assert torch.equal(shape_cloud(np.int64(7), seed=np.int64(2))[0], shape_cloud(7, seed=2)[0])


def test_jko_converges_where_the_line_search_stalled():
    from papercode.igw.functionals import QuadraticPotential
    from papercode.igw.jko import igw_jko_step
    g = torch.Generator().manual_seed(1)
    X = torch.randn(20, 2, generator=g, dtype=torch.float64) * torch.tensor([1.2, 0.7], dtype=torch.float64) + 0.2
    F = QuadraticPotential(torch.tensor([[1.0, 0.4], [0.4, -0.3]]), torch.tensor([0.6, -0.8]))
    r = igw_jko_step(X, F, 10 ** -2.5)                    # was converged=False after 100 Newton steps
    assert r.converged and r.n_iter < 10


def test_jko_arguments():
    from papercode.igw.functionals import MMD, QuadraticPotential
    from papercode.igw.jko import igw_jko_step
    X, Y = _xy(n=6, dy=2)
    F = QuadraticPotential(1.0)
    with pytest.raises(ValueError, match="max_iter: must be a positive integer"):
        igw_jko_step(X, F, 0.1, max_iter=0)               # returned Z = X with converged=False
    with pytest.raises(ValueError, match="tol: must be a non-negative finite number"):
        igw_jko_step(X, F, 0.1, tol=float("nan"))
    with pytest.raises(ValueError, match="functional: MMD .* cannot be differentiated twice"):
        igw_jko_step(X, MMD(Y), 0.1)                       # a NotImplementedError from torch's forward AD
    assert igw_jko_step(X, F, torch.tensor(0.1)).converged


def test_interpolation_arguments_and_fewer_points_than_dimensions():
    from papercode.igw.interpolation import igw_interpolate, metric_action
    X, Y = _xy(n=8, dy=2)
    with pytest.raises(ValueError, match="max_iter: must be a positive integer"):
        igw_interpolate(X, Y, [0, 0.5, 1], method="action", max_iter=0)
    p = igw_interpolate(X, Y)
    with pytest.raises(ValueError, match="ts: must be increasing"):
        metric_action(p.clouds, p.ts.flip(0))             # was minus the action
    with pytest.raises(ValueError, match="ts: has 5 times but clouds has 11 frames"):
        metric_action(p.clouds, p.ts[:5])                 # was the action of a prefix
    X3, Y3 = _xy(n=2, dy=3, seed=4)
    p = igw_interpolate(torch.cat([X3, X3[:, :1]], 1), Y3)  # 2 points in R^3 (a shape error before)
    assert p.clouds.shape == (11, 2, 3) and p.gram_error.max() < 1e-12
