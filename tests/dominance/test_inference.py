"""The bootstrap is the resample it claims to be; plug-in and bootstrap standard errors agree; absolute test errors."""
import math

import pytest
import torch

from papercode.core.testing import assert_close
from papercode.dominance.inference import bootstrap_weights, dominance_test, plugin_se
from papercode.dominance.violation import violation_ratio

f64 = torch.float64


def _pair(seed, n, d, shift):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=f64) + shift, torch.randn(n, d, generator=g, dtype=f64)


@pytest.mark.parametrize("paired", [True, False])
def test_replicates_are_explicit_resamples(paired):
    "Each bootstrap replicate equals the ratio of the explicitly resampled (duplicated) data."
    X, Y = _pair(0, 40, 2, 0.3)
    t = dominance_test(X, Y, 0.4, n_boot=12, lam=0.5, paired=paired, seed=7, tol=1e-12)
    gen = torch.Generator().manual_seed(7)
    Wx = bootstrap_weights(40, 12, generator=gen)
    Wy = Wx if paired else bootstrap_weights(40, 12, generator=gen)
    for k in range(12):
        ix = torch.repeat_interleave(torch.arange(40), (Wx[k] * 40).round().long())
        iy = torch.repeat_interleave(torch.arange(40), (Wy[k] * 40).round().long())
        ref = violation_ratio(X[ix], Y[iy], lam=0.5, tol=1e-12).ratio
        assert_close(t.boot_ratios[k], ref, rtol=1e-8)


def test_plugin_matches_bootstrap():
    "The delta-method standard error (eqs. 9-10) agrees with the bootstrap within 25% (paired and independent)."
    X, Y = _pair(1, 200, 3, 0.2)
    for paired in (True, False):
        t = dominance_test(X, Y, 0.45, n_boot=300, lam=0.3, paired=paired)
        assert abs(t.se_plugin / t.se_boot - 1) < 0.25, (t.se_plugin, t.se_boot)


def test_plugin_is_nan_where_undefined():
    X, Y = _pair(2, 30, 2, 0.2)
    assert math.isnan(plugin_se(violation_ratio(X, Y, lam=0.5, value="linear")))
    assert math.isnan(plugin_se(violation_ratio(X[:, 0], Y[:, 0], cost="sqhinge", lam=0)))


def test_decisions_and_pvalues_are_consistent():
    X, Y = _pair(3, 120, 2, 0.6)
    t = dominance_test(X, Y, 0.45, n_boot=100, lam=0.3)
    assert t.reject_boot == (t.upper_boot < t.eps0) and t.reject_boot == (t.p_boot < t.alpha)
    assert t.reject_plugin == (t.p_plugin < t.alpha)
    assert t.boot_ratios.shape == (100,) and t.converged


def test_errors():
    X, Y = _pair(4, 30, 2, 0.0)
    with pytest.raises(ValueError, match="paired resampling needs the same prompts"):
        dominance_test(X, Y[:20], 0.4, n_boot=20)
    with pytest.raises(ValueError, match="too few for the bootstrap"):
        dominance_test(X[:4], Y[:4], 0.4, n_boot=20)
    with pytest.raises(ValueError, match="n_boot"):
        dominance_test(X, Y, 0.4, n_boot=5.5)
    with pytest.raises(ValueError, match="no CLT in d > 1"):
        dominance_test(X, Y, 0.4, n_boot=20, lam=0)
