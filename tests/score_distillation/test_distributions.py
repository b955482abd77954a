"Mode coverage and W2 (POT against scipy's assignment), the judge, and the digits model's samples."
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import chisquare

from papercode.score_distillation import (ImageParam, ddim_sample, digits_data, distill, judge_confidence, ring_gmm,
                                          sd_schedule, train_digits_model, train_judge, w2_to_data)

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


def test_judge_scores_at_least_95_percent_on_held_out_digits():
    d, J = digits_data(), train_judge()  # cached per process: the judge the metrics use
    acc = float((J.clf.predict(d["x_test"].numpy()) == d["y_test"].numpy()).mean())
    assert len(d["x_test"]) == 300 and J.test_accuracy == pytest.approx(acc, abs=1e-12)
    assert J.test_accuracy >= 0.95


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


class _ProjectionJudge:
    "A stand-in judge whose 'features' are two fixed linear read-outs of the image (no training)."
    def __init__(self, seed=0):
        self.W = np.random.default_rng(seed).normal(size=(64, 2))

    def features(self, x):
        return np.asarray(x) @ self.W


def test_feature_frechet_is_the_gaussian_frechet_distance_of_the_features():
    from scipy.linalg import eigh
    from papercode.score_distillation.digits import feature_frechet
    rng = np.random.default_rng(4)
    a = torch.as_tensor(rng.uniform(-0.5, 0.5, (400, 64)))
    b = torch.as_tensor(rng.uniform(-0.5, 0.5, (300, 64)) * 0.6 + 0.2)
    j = _ProjectionJudge()
    fa, fb = j.features(a.numpy()), j.features(b.numpy())
    ca, cb = np.cov(fa, rowvar=False) + 1e-6 * np.eye(2), np.cov(fb, rowvar=False) + 1e-6 * np.eye(2)
    w, V = eigh(ca); ra = V @ np.diag(np.sqrt(w)) @ V.T  # tr sqrt(ca cb) = tr sqrt(ra cb ra): symmetric, by eigenvalues
    tr = np.sqrt(np.clip(eigh(ra @ cb @ ra, eigvals_only=True), 0, None)).sum()
    want = ((fa.mean(0) - fb.mean(0)) ** 2).sum() + np.trace(ca + cb) - 2 * tr
    assert feature_frechet(a, b, judge=j) == pytest.approx(want, rel=1e-8)
    assert feature_frechet(a, a, judge=j) == pytest.approx(0.0, abs=1e-6)


def test_diversity_is_the_mean_pairwise_distance():
    from papercode.score_distillation.digits import diversity
    rng = np.random.default_rng(5)
    x = rng.normal(size=(7, 3))
    brute = np.mean([np.linalg.norm(x[i] - x[k]) for i in range(7) for k in range(7) if i != k])
    assert diversity(x) == pytest.approx(brute, rel=1e-12)
    img = rng.uniform(-2, 2, (5, 64))  # images are clamped to [−1, 1] first
    c = np.clip(img, -1, 1)
    assert diversity(img) == pytest.approx(np.mean([np.linalg.norm(c[i] - c[k]) for i in range(5) for k in range(5) if i != k]))
    with pytest.raises(ValueError, match="two samples"): diversity(x[:1])
