"Mode coverage and W2 (POT against scipy's assignment), the judge, and the digits model's samples."
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import chisquare

from papercode.score_distillation import (ImageParam, ddim_sample, digits_data, distill, judge_confidence, ring_gmm,
                                          sd_schedule, train_digits_model, w2_to_data)

S = sd_schedule()


def test_w2_equals_the_optimal_assignment():
    g = np.random.default_rng(11)
    X, Y = g.normal(size=(40, 3)), g.normal(size=(40, 3)) + 0.5
    C = ((X[:, None] - Y[None]) ** 2).sum(-1)
    r, c = linear_sum_assignment(C)
    assert w2_to_data(torch.tensor(X), torch.tensor(Y)) == pytest.approx(np.sqrt(C[r, c].mean()), rel=1e-9)


def test_ddim_and_cached_kappa_cover_the_class_modes_with_their_weights():
    M = ring_gmm(S)
    n = 2000
    d = ddim_sample(M, n, S, steps=100, cond=0, gamma=1.0, seed=12, dtype=torch.float64).sample
    c = distill(ImageParam(n, 2), M, noise="cached", iters=100, t_range=(0.98, 0.001), gamma=1.0, cond=0, seed=13, n_frames=1).x0
    data = M.sample(n, 0, torch.Generator().manual_seed(14))[0]
    data2 = M.sample(n, 0, torch.Generator().manual_seed(15))[0]
    base = w2_to_data(data, data2)
    for x in (d, c):
        mode = ((x[:, None, :] - M.means[None]) ** 2).sum(-1).argmin(1)
        counts = np.bincount(mode.numpy(), minlength=8)
        assert counts[4:].sum() <= 0.01 * n, counts  # the other class's modes stay empty
        assert chisquare(counts[:4]).pvalue > 1e-3, counts
        assert w2_to_data(x, data) < 1.5 * base + 0.02


def test_sds_shrinks_the_modes_by_about_half():
    M = ring_gmm(S)
    x = distill(ImageParam(1000, 2), M, noise="sds", iters=200, t_range=(0.98, 0.001), gamma=1.0, cond=0, seed=16, n_frames=1).x0
    mode = ((x[:, None, :] - M.means[None]) ** 2).sum(-1).argmin(1)
    within = float(((x - M.means[mode]) ** 2).sum(1).mean() / 2)
    assert 0.3 * 0.01 < within < 0.7 * 0.01  # about η/2 = ½ of the modes' variance 0.01


def test_judge_on_held_out_digits_and_shuffled_labels():
    d = digits_data()
    conf = judge_confidence(d["x_test"], d["y_test"])
    wrong = judge_confidence(d["x_test"], (d["y_test"] + 3) % 10)
    assert conf.mean() >= 0.9 and wrong.mean() <= 0.1


def test_digits_model_training_is_deterministic_and_learns():
    a = train_digits_model(150, seed=3, hidden=64, cache=False)
    b = train_digits_model(150, seed=3, hidden=64, cache=False)
    assert np.array_equal(a.losses, b.losses)
    assert a.losses[-1] < 0.8 * a.losses[0]


def test_trained_digits_model_samples_the_prompted_digit():
    dm = train_digits_model(3000, seed=0)
    lab = (torch.arange(60) + 3) % 10
    s = ddim_sample(dm.model, 60, dm.model.schedule, steps=50, cond=lab, gamma=3.0, seed=17).sample
    assert judge_confidence(s, lab).mean() >= 0.9
