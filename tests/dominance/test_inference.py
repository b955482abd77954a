"""The bootstrap is the resample it claims to be; plug-in and bootstrap standard errors agree; absolute test errors."""
import math

import numpy as np
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


def test_bootstrap_weights_refuses_bad_counts():
    for n, B, name in ((0, 5, "n"), (5, 0, "n_boot"), (5, -1, "n_boot"), (5.0, 3, "n"), (5, True, "n_boot")):
        with pytest.raises(ValueError, match=f"^{name}: must be a positive integer"):
            bootstrap_weights(n, B)
    W = bootstrap_weights(np.int64(6), np.int64(4), generator=torch.Generator().manual_seed(0))
    assert torch.equal(W, bootstrap_weights(6, 4, generator=torch.Generator().manual_seed(0)))


def test_numpy_arguments_and_seed_paired_checks():
    "numpy n_boot, alpha, eps0 and seed give the Python-number result; a non-integer seed or a non-bool paired is refused."
    X, Y = _pair(5, 20, 2, 0.3)
    kw = dict(lam=0.5, n_boot=10)
    ref = dominance_test(X, Y, 0.4, alpha=0.1, seed=3, **kw)
    t = dominance_test(X, Y, np.float32(0.4).item(), n_boot=np.int64(10), alpha=np.float64(0.1), seed=np.int64(3), lam=0.5)
    assert torch.equal(t.boot_ratios, ref.boot_ratios) and t.seed == 3 and type(t.seed) is int and type(t.n_boot) is int
    t32 = dominance_test(X, Y, np.float32(0.25), alpha=np.float32(0.25), **kw)
    assert t32.eps0 == float(np.float32(0.25)) and t32.alpha == 0.25
    for bad in (None, 1.5, "0"):
        with pytest.raises(ValueError, match="seed: must be an integer"):
            dominance_test(X, Y, 0.4, seed=bad, **kw)
    with pytest.raises(ValueError, match="paired: must be True"):
        dominance_test(X, Y, 0.4, paired="no", **kw)
    with pytest.raises(ValueError, match="eps0: must lie in"):
        dominance_test(X, Y, True, **kw)


def test_plugin_pvalue_consistent_when_se_vanishes():
    "P far above Q: both standard errors are 0; the plug-in p-value agrees with its rejection, as the bootstrap's does."
    X, _ = _pair(6, 20, 2, 0.0)
    t = dominance_test(X + 100, X, 0.3, n_boot=10, lam=0.5)
    assert t.se_plugin == 0.0 and t.reject_plugin and t.p_plugin == t.p_boot == 0.0
    t = dominance_test(X, X, 0.3, n_boot=10, lam=0.5)
    assert t.se_plugin == 0.0 and not t.reject_plugin and t.p_plugin == t.p_boot == 1.0
