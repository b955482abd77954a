"""The mixed continuous–discrete MI estimators and the batched fixed-design runs behind the network estimate of
claim 4: scikit-learn and a closed form as references, a lower bound that stays below the truth, and a batched
training that equals one run trained alone."""
import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from papercode.core.testing import assert_close
from papercode.sliced_mi.estimators import ksg_mi_labels, mi_lower_bound
from papercode.sliced_mi.projections import SubspaceModel
from papercode.sliced_mi.training import fixed_design_runs, mlp


def _mixture(mu, N, seed, extra=0):
    g = np.random.default_rng(seed)
    y = g.integers(0, 2, N)
    x = np.column_stack([np.where(y == 1, mu, -mu) + g.standard_normal(N)] + [g.standard_normal(N) for _ in range(extra)])
    f = lambda t: 0.5 * (np.exp(-(t - mu) ** 2 / 2) + np.exp(-(t + mu) ** 2 / 2)) / math.sqrt(2 * math.pi)
    truth = -quad(lambda t: f(t) * math.log(f(t)), -14, 14)[0] - 0.5 * math.log(2 * math.pi * math.e)
    return x, y, truth


@pytest.mark.parametrize("mu", [0.5, 1.0, 2.0])
def test_ksg_labels_matches_closed_form_and_scikit_learn(mu):
    from sklearn.feature_selection import mutual_info_classif
    x, y, truth = _mixture(mu, 5000, seed=int(10 * mu), extra=1)
    assert abs(ksg_mi_labels(x, y) - truth) < 0.03
    sk = mutual_info_classif(x[:, :1], y, n_neighbors=3, random_state=0)[0]  # Ross's estimator, 1-D (norms agree)
    assert abs(ksg_mi_labels(x[:, 0], y) - sk) < 2e-3


def test_ksg_labels_invariances_and_independence():
    x, y, _ = _mixture(1.0, 3000, seed=3)
    base = ksg_mi_labels(x, y)
    assert_close(ksg_mi_labels(x, 7 - 3 * y), base, atol=1e-12, msg="relabelling the classes")
    assert_close(ksg_mi_labels(5 * x + 2, y), base, atol=1e-12, msg="an affine map of x")
    g = np.random.default_rng(0)
    assert abs(ksg_mi_labels(x, g.permutation(y))) < 0.02  # independent pairs: ≈ 0
    y3 = g.integers(0, 3, len(x))  # three classes, independent of x: ≈ 0 within the estimator's spread (sd ≈ 0.015 here)
    from sklearn.feature_selection import mutual_info_classif
    assert abs(ksg_mi_labels(x, y3)) < 0.04
    est, sk = ksg_mi_labels(x, y3), mutual_info_classif(x, y3, n_neighbors=3, random_state=0)[0]
    assert abs(est - sk) < 1e-6 or (sk == 0 and est < 0)  # scikit-learn clips negative estimates to 0


def test_lower_bound_stays_below_the_truth():
    for mu in (0.5, 1.5):
        x, y, truth = _mixture(mu, 4000, seed=11, extra=2)
        low = mi_lower_bound(x, y)
        assert low <= truth + 0.02 and low >= truth - 0.08  # below, and close when q(y|x) can be the true posterior
    assert mi_lower_bound(np.zeros((40, 1)), [0] * 40) <= 0.0  # one class: nothing to learn


def test_estimators_bad_input():
    x, y, _ = _mixture(1.0, 200, seed=1)
    with pytest.raises(ValueError, match="one label per row"): ksg_mi_labels(x, y[:-1])
    with pytest.raises(ValueError, match="NaN"): ksg_mi_labels(x, np.where(y == 1, np.nan, 0.0))
    with pytest.raises(ValueError, match="positive int"): ksg_mi_labels(x, y, k=0)
    with pytest.raises(ValueError, match="more than k"): ksg_mi_labels(x[:6], [0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="at least 20"): mi_lower_bound(x[:10], y[:10])
    with pytest.raises(ValueError, match="non-finite"): ksg_mi_labels(np.where(x > 2, np.nan, x), y)


def _design(n=12, seed=0):
    X = torch.rand(n, 2, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return X, torch.sigmoid(2 * X[:, 0])


def test_batched_runs_equal_single_runs_and_population_error_is_exact():
    X, p = _design()
    fr = fixed_design_runs(X, p, d=3, runs=64, steps=200, output_noise=0.0, seed=4)
    for k in (0, 17, 63):  # run k alone, same θ₀, Θ and labels
        m = SubspaceModel(mlp(2, 1, 16, 4), 3, "qr", seed=10_007)
        w = torch.zeros(3, requires_grad=True)
        yk = torch.tensor(fr.Y[k], dtype=torch.float32)
        for _ in range(200):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(m(X, w=w)[:, 0], yk)
            w.grad = None; loss.backward()
            with torch.no_grad(): w -= 2.0 * w.grad
        assert_close(fr.W[k], w.detach().double().numpy(), atol=1e-5, msg=f"run {k}")
        with torch.no_grad(): pred = (m(X, w=w)[:, 0] > 0).numpy()
        fresh = np.random.default_rng(k).random((20_000, len(p))) < p.numpy()  # Monte Carlo of fresh labels
        assert abs((fresh != pred).mean() - fr.pop_err[k]) < 0.01
        assert_close(fr.train_err[k], (fr.Y[k] != pred).mean(), atol=1e-12)


def test_fixed_design_bad_input():
    X, p = _design()
    with pytest.raises(ValueError, match="one probability per input row"): fixed_design_runs(X, p[:-1], d=2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"): fixed_design_runs(X, p - 1, d=2)
    with pytest.raises(ValueError, match="runs"): fixed_design_runs(X, p, d=2, runs=0)
    with pytest.raises(ValueError, match="output_noise"): fixed_design_runs(X, p, d=2, output_noise=-1.0)
    with pytest.raises(ValueError, match="non-finite|NaN"): fixed_design_runs(X.masked_fill(X > 0.5, float("nan")), p, d=2)
