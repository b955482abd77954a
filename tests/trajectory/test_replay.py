"""The crossing experiment's replay figure: one slider step per recorded Langevin state, both methods drawn from their
own recorded states, and a clear error when a run kept none."""
import warnings

import numpy as np
import pytest
import torch

from papercode.trajectory import LinearPrior, crossing_data, mfl, pomfl
from papercode.trajectory.experiments import E1, replay_figure


@pytest.fixture(scope="module")
def runs():
    sim = crossing_data(44, seed=901)
    snaps = sim.snapshots(4, seed=901)
    kw = dict(**E1, n_particles=6, n_iter=20, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        po = pomfl(snaps, sim.times, LinearPrior.constant_velocity(2), precond=25.0, record=5, **kw)
        mf = mfl(snaps, sim.times, record=5, **kw)
        bare = mfl(snaps, sim.times, **kw)
    return snaps, po, mf, bare


def _visible(fig, k):
    "The traces the slider's k-th step shows."
    vis = fig.layout.sliders[0].steps[k].args[0]["visible"]
    return [tr for tr, v in zip(fig.data, vis) if v]


def test_one_slider_step_per_recorded_state(runs):
    snaps, po, mf, _ = runs
    fig = replay_figure(snaps, po, mf)
    assert len(po.history_iter) == 5 and po.history_iter[0] == 0 and po.history_iter[-1] == 20
    assert [s.label for s in fig.layout.sliders[0].steps] == [str(i) for i in po.history_iter]
    assert len(fig.data) == 5 * 4  # per step: snapshots and particles, two panels


def test_each_step_draws_each_methods_own_state(runs):
    snaps, po, mf, _ = runs
    fig = replay_figure(snaps, po, mf)
    for r in range(len(po.history_iter)):
        parts = [t for t in _visible(fig, r) if t.name == "particles"]
        assert len(parts) == 2
        for tr, res in zip(parts, (mf, po)):
            H = res.history[r].double()
            np.testing.assert_allclose(tr.x, np.round(H[..., 0].reshape(-1).numpy(), 3))
            np.testing.assert_allclose(tr.y, np.round(H[..., 1].reshape(-1).numpy(), 3))
    assert not torch.equal(po.history[0], po.history[-1]), "the recorded states must differ over the run"


def test_refuses_runs_without_recorded_states(runs):
    snaps, po, _, bare = runs
    assert bare.history is None
    with pytest.raises(ValueError, match="record > 0"):
        replay_figure(snaps, po, bare)
