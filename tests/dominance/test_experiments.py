"""The claim-4 machinery (prompt resamples as weights, Borda from ratio rows, τ intervals) is the statistic it claims
to be, and the benchmark's kernel-domain POT baseline computes the same ratios as ours."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from papercode.core.testing import assert_close
from papercode.core.utils import torch_threads
from papercode.dominance.experiments import (
    DominanceConfig, _time_pot, alpacaeval_tau, borda_orders, pair_ratios, prompt_resamples)
from papercode.dominance.inference import bootstrap_weights
from papercode.dominance.ranking import as_score_array, kendall_tau, load_alpacaeval, relative_ranking
from papercode.dominance.violation import violation_ratio

f64 = torch.float64


def _scores(seed=0, n=60, k=4, d=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, d, generator=g, dtype=f64) + 0.7 * torch.randn(n, k, d, generator=g, dtype=f64) \
        + torch.linspace(0, 0.6, k, dtype=f64)[None, :, None]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_borda_from_rows_is_relative_ranking(seed):
    "pair_ratios + borda_orders on relative_ranking's own resamples give its ranking, order and Δ standard errors."
    X = _scores(seed)
    names = tuple("abcd")
    metrics = {"m0": "higher", "m1": "higher"}
    r = relative_ranking(X, metrics=metrics, models=names, n_boot=30, seed=seed + 5)
    S = as_score_array(X, metrics=metrics, models=names).scores
    W = torch.cat([torch.full((1, 60), 1 / 60, dtype=f64), bootstrap_weights(60, 30, generator=torch.Generator().manual_seed(seed + 5))])
    E, ok = pair_ratios(S, W)
    assert ok
    off = ~torch.eye(4, dtype=torch.bool)
    e = torch.where(off, E, torch.zeros_like(E)).sum(-1) / 3
    se = (e[1:, :, None] - e[1:, None, :]).std(0)
    assert_close(se, r.se, rtol=1e-8, atol=1e-10)
    (b,), (o,) = borda_orders(E[:1], se)
    assert tuple(names[i] for i in b) == r.ranking
    assert tuple(names[i] for i in o) == r.order_by_ratio


def test_prompt_resamples_are_draws_with_replacement():
    "Rows are counts / n of n draws from the pool (integers summing to n), reproducible from the seed."
    W = prompt_resamples(50, 20, 7, torch.Generator().manual_seed(3))
    assert W.shape == (7, 50)
    counts = W * 20
    assert_close(counts, counts.round(), rtol=0, atol=1e-12)
    assert_close(counts.sum(1), torch.full((7,), 20.0, dtype=f64))
    assert int((W > 0).sum(1).max()) <= 20
    assert torch.equal(W, prompt_resamples(50, 20, 7, torch.Generator().manual_seed(3)))


def test_resample_weights_equal_duplicated_prompts():
    "The ratio on a resample's weights equals the ratio on the explicitly duplicated prompts (paired)."
    X = _scores(4, n=30, k=2)
    W = prompt_resamples(30, 12, 3, torch.Generator().manual_seed(0))  # n = 12 of a pool of 30
    E, _ = pair_ratios(X, W, lam=0.5)
    for r in range(3):
        idx = torch.repeat_interleave(torch.arange(30), (W[r] * 12).round().long())
        ref = violation_ratio(X[idx, 0], X[idx, 1], lam=0.5).ratio
        assert_close(E[r, 0, 1], ref, rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def small_tau():
    cfg = replace(DominanceConfig.tiny(), tau_ns=(30, 60), tau_pool=60, tau_reps=8, tau_boot=10, tau_variants=(None,))
    with torch_threads(1):  # module scope runs outside conftest's one-thread fixture (30x slower without)
        return cfg, alpacaeval_tau(cfg, seed=0)


def test_tau_point_is_the_plain_ranking(small_tau):
    "The full-pool τ of the multivariate Borda ranking is that of relative_ranking on the pool (same seed)."
    cfg, res = small_tau
    ae = load_alpacaeval()
    pool = torch.randperm(805, generator=torch.Generator().manual_seed(13))[:60].sort().values.numpy()
    r = relative_ranking(ae.scores[pool], metrics=ae.metrics, models=ae.models, n_boot=cfg.tau_boot, seed=0)
    assert res["ranking"] == r.ranking
    assert res["summary"]["multivariate (Borda)"]["point"] == pytest.approx(kendall_tau(r.ranking, ae.lc_ranking))


def test_tau_has_intervals_at_every_n(small_tau):
    "Every method has a mean and 95% interval at every n, including the full pool (was a single draw, sd 0)."
    cfg, res = small_tau
    for m, d in res["summary"].items():
        ns = cfg.tau_ns if not m.startswith("multivariate,") else (60,)
        for n in ns:
            mean, lo, hi = d[n]
            assert -1 <= lo <= mean <= hi <= 1, (m, n, d[n])
    lo, hi = res["summary"]["multivariate (Borda)"][60][1:]
    assert hi > lo  # the full-pool τ now varies over the resamples
    assert set(res["diffs"]) >= {"metric average", "IC portfolio", "EC portfolio"}
    assert all(v["of"] == (cfg.tau_reps * len(cfg.tau_ns) if "," not in m else cfg.tau_reps)
               for m, v in res["same_as_average"].items())


def test_tau_ns_must_end_at_the_pool():
    with pytest.raises(ValueError, match="tau_ns"):
        alpacaeval_tau(replace(DominanceConfig.tiny(), tau_ns=(50, 100)))


def test_kernel_domain_pot_matches_ours_on_resamples():
    "POT's kernel-domain sinkhorn2 on bootstrap weights with zeros: same ratios as ours (it gave 0.2 off before the fix)."
    pytest.importorskip("ot")
    ae = load_alpacaeval()
    S = as_score_array(ae.scores[:40, :2], metrics=ae.metrics, models=ae.models[:2]).scores
    W = torch.cat([torch.full((1, 40), 1 / 40, dtype=f64), bootstrap_weights(40, 4, generator=torch.Generator().manual_seed(0))])
    assert bool((W[1:] == 0).any())
    out = _time_pot(S, W, [(0, 1)], 0.4)
    for key in ("loop", "kernel", "batch"):
        assert out[key][1] < 1e-5, (key, out[key])
    assert np.isfinite(out["kernel"][0])
