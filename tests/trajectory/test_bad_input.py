"""Bad input of chapter 03: every listed problem raises a ValueError naming the argument (no silent NaN, no raw torch
error), and numpy scalars are valid wherever Python numbers are."""
import warnings

import numpy as np
import pytest
import torch

from papercode.trajectory import (LinearPrior, crossing_data, crossing_fraction, dynamics_ot, mfl, objective, pomfl,
                                  sample_paths, simulate)

torch.set_num_threads(1)
CV = LinearPrior.constant_velocity(2)
BAD = [0.0, -1.0, float("nan"), float("inf")]


def _data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    Ys = [torch.randn(n, 2, generator=g, dtype=torch.float64) for n in (4, 6, 5)]
    return X, Ys, [0.0, 0.5, 1.0]


@pytest.mark.parametrize("name", ["lam", "sigma"])
@pytest.mark.parametrize("v", BAD)
def test_objective_rejects_bad_lam_and_sigma(name, v):
    X, Ys, t = _data()
    with pytest.raises(ValueError, match=f"^{name}: must be a positive finite number"):
        objective(X, Ys, t, CV, **{**dict(lam=0.3, tau=0.5, sigma=0.3), name: v})


def test_dynamics_ot_names_times_x_and_cost():
    X, _, t = _data()
    with pytest.raises(ValueError, match="^times: must be strictly increasing"):
        dynamics_ot(X, [0.0, 1.0, 0.5], CV, 0.5)
    with pytest.raises(ValueError, match="^X: contains"):
        dynamics_ot(X * float("nan"), t, CV, 0.5)
    with pytest.raises(ValueError, match="^cost: expected"):
        dynamics_ot(X, t, CV, 0.5, cost="pc")


@pytest.mark.parametrize("kw, msg", [(dict(tau=float("inf")), "tau"), (dict(tau=float("nan")), "tau"),
                                     (dict(tau=1.0, obs_noise=float("inf")), "obs_noise"),
                                     (dict(tau=1.0, obs_noise=-0.1), "obs_noise")])
def test_simulate_rejects_non_finite_tau_and_obs_noise(kw, msg):
    with pytest.raises(ValueError, match=f"^{msg}: must be a"):
        simulate(CV, torch.zeros(3, 4), [0.0, 1.0], **kw)
    with pytest.raises(ValueError, match="^prior: expected a LinearPrior"):
        simulate("cv", torch.zeros(3, 4), [0.0, 1.0], tau=1.0)


def test_phi_and_exact_cov_reject_bad_steps_and_diffusivity():
    for tau in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="^tau: must be a positive"):
            CV.exact_cov(0.5, tau)
    with pytest.raises(ValueError, match="^dt: must be a non-negative"):
        CV.exact_cov(-0.5, 1.0)
    for dt in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="^dt: must be a positive"):
            CV.phi(dt)
    for d in (0, -1, 1.5):
        with pytest.raises(ValueError, match="^d: must be a positive integer"):
            LinearPrior.constant_velocity(d)


@pytest.mark.parametrize("kw, msg", [(dict(init_scale=-0.1), "init_scale"), (dict(init_scale=float("nan")), "init_scale"),
                                     (dict(record=-1), "record"), (dict(anneal=2.0), "anneal"),
                                     (dict(anneal=(float("inf"), 0.9)), r"anneal\[0\]"),
                                     (dict(dtype=torch.int64), "dtype"), (dict(dtype=torch.float16), "dtype")])
def test_pomfl_rejects_bad_options(kw, msg):
    _, Ys, t = _data()
    ok = dict(lam=0.1, tau=0.5, sigma=0.3, n_particles=4, n_iter=2, step=0.01)
    with pytest.raises(ValueError, match=f"^{msg}"):
        pomfl(Ys, t, CV, **ok, **kw)


def test_crossing_fraction_needs_an_integer_coordinate():
    y = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(1))
    for c in (True, 1.5):
        with pytest.raises(ValueError, match="^coord: must lie"):
            crossing_fraction(y, coord=c)


def test_numpy_scalars_give_the_same_run_as_python_scalars():
    sim = crossing_data(60, T=3, seed=2)
    snaps = sim.snapshots(8, seed=2)
    kw = dict(lam=0.05, tau=0.05, sigma=0.1, step=0.02, init_scale=0.1, precond=25.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = pomfl(snaps, sim.times, CV, n_particles=6, n_iter=5, seed=1, **kw)
        b = pomfl(np.stack([s.numpy() for s in snaps]), sim.times, CV, n_particles=np.int64(6), n_iter=np.int64(5),
                  seed=1, **{k: np.float32(v) if k == "precond" else np.float64(v) for k, v in kw.items()})
        c = mfl(np.stack([s.numpy() for s in snaps]), sim.times, n_particles=6, n_iter=5, seed=1, **{**kw, "precond": None})
    assert torch.equal(a.X, b.X) and np.array_equal(a.objective, b.objective)
    assert c.X.shape == (3, 6, 2)
    assert torch.equal(sample_paths(a, np.int64(7), seed=3).index, sample_paths(a, 7, seed=3).index)
    assert all(torch.equal(u, v) for u, v in zip(sim.snapshots(np.int64(8), seed=2), snaps))


def test_objective_warns_when_a_pair_did_not_converge():
    from papercode.trajectory import TrajectoryWarning
    X, Ys, t = _data()
    kw = dict(lam=0.3, tau=0.5, sigma=0.3)
    with warnings.catch_warnings(record=True) as wr:
        warnings.simplefilter("always")
        objective(X, Ys, t, CV, max_iter=2, **kw)
    msgs = [str(w.message) for w in wr if issubclass(w.category, TrajectoryWarning)]
    assert any("pair (0, 1) did not converge" in m for m in msgs) and any("pair (1, 2) did not converge" in m for m in msgs), msgs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        objective(X, Ys, t, CV, **kw)  # converged: silent
