"""Serving paths against dense references, with mixed ranks and random batches; import hygiene."""
import sys
from pathlib import Path

import pytest
import torch

from papercode.core.testing import assert_close
from papercode.core.utils import run_in_child
from papercode.lora_compression.compress import jd_full, svd_compress
from papercode.lora_compression.data import make_lora_collection, stack_slot
from papercode.lora_compression.serve import bgmv_forward, jd_forward, loop_forward


@pytest.mark.parametrize("T", [1, 7, 64])
def test_bgmv_and_loop_equal_dense_with_mixed_ranks(T):
    coll = make_lora_collection(6, 20, 18, 8, ranks=(2, 8, 5), seed=T).collection
    g = torch.Generator().manual_seed(T)
    x = torch.randn(T, 18, generator=g, dtype=torch.float64); base = torch.randn(T, 20, generator=g, dtype=torch.float64)
    ids = torch.randint(-1, 6, (T,), generator=g)
    dense = base.clone()
    for t in range(T):
        if ids[t] >= 0: dense[t] += coll[coll.names[ids[t]]]["layers.0.q_proj"].delta() @ x[t]
    for f in (bgmv_forward, loop_forward):
        assert_close(f(x, base, coll, ids), dense, rtol=1e-10, atol=1e-10)
        assert_close(f(x, base, stack_slot(coll, "layers.0.q_proj"), ids), dense, rtol=1e-10, atol=1e-10)


def test_svd_serving_is_per_adapter_clusters():
    "SVD compression = every adapter its own cluster: jd_forward serves it too."
    coll = make_lora_collection(5, 16, 12, 4, seed=0).collection
    comp = svd_compress(coll, 4)  # full rank: exact
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 12, generator=g, dtype=torch.float64); base = torch.zeros(9, 16, dtype=torch.float64)
    ids = torch.randint(0, 5, (9,), generator=g)
    assert_close(jd_forward(x, base, comp, ids), bgmv_forward(x, base, coll, ids), rtol=1e-9, atol=1e-10)


def test_float32_inputs_with_float64_compression():
    coll = make_lora_collection(4, 16, 12, 4, seed=0).collection
    comp = jd_full(coll, 8)
    x = torch.randn(5, 12); base = torch.randn(5, 16)
    y = jd_forward(x, base, comp, torch.tensor([0, 1, -1, 3, 3]))
    assert y.dtype == torch.float32 and torch.equal(y[2], base[2])


HEAVY = ("triton", "peft", "transformers", "safetensors", "sklearn")


def heavy_modules_after_import() -> list:
    "Import papercode and the chapter's modules (but the kernels); return the heavy packages that came with them."
    import importlib
    for m in ("papercode", "papercode.core.models.lora", "papercode.lora_compression.compress",
              "papercode.lora_compression.cluster", "papercode.lora_compression.serve",
              "papercode.lora_compression.tasks", "papercode.lora_compression.experiments"):
        importlib.import_module(m)
    return [m for m in HEAVY if m in sys.modules]


def test_import_hygiene(monkeypatch):
    "`import papercode` and the chapter's modules (but the kernels) import neither triton, peft, transformers nor scikit-learn."
    # pytest imports this file with --import-mode=importlib; the spawned child (which copies sys.path) finds it
    # as tests.lora_compression.test_serve through the repository root
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    assert run_in_child(heavy_modules_after_import, timeout=120) == []


@pytest.mark.parametrize("path", ["jd", "bgmv", "loop"])
def test_width_and_finite_checks_name_the_argument(path):
    coll = make_lora_collection(3, 10, 8, 2, seed=0).collection  # d_out = 10, d_in = 8
    adapters = jd_full(coll, 2) if path == "jd" else coll
    f = {"jd": jd_forward, "bgmv": bgmv_forward, "loop": loop_forward}[path]
    x, base, ids = torch.randn(4, 8, dtype=torch.float64), torch.zeros(4, 10, dtype=torch.float64), torch.tensor([0, 1, -1, 2])
    f(x, base, adapters, ids)  # well-formed: no error
    with pytest.raises(ValueError, match=r"^x: expected \(T, 8\)"):
        f(torch.randn(4, 9, dtype=torch.float64), base, adapters, ids)
    with pytest.raises(ValueError, match=r"^x: expected 2 dimensions"):
        f(torch.randn(8, dtype=torch.float64), base, adapters, ids)
    with pytest.raises(ValueError, match=r"^base_out: expected \(4, 10\)"):
        f(x, torch.zeros(4, 11, dtype=torch.float64), adapters, ids)
    with pytest.raises(ValueError, match=r"^base_out: expected \(4, 10\)"):
        f(x, torch.zeros(3, 10, dtype=torch.float64), adapters, ids)
    for bad in (float("nan"), float("inf")):
        xb = x.clone(); xb[2, 3] = bad  # token 2 has no adapter: NaN would otherwise pass through unnoticed
        with pytest.raises(ValueError, match=r"^x: contains 1 non-finite"):
            f(xb, base, adapters, ids)
        bb = base.clone(); bb[1, 0] = bad
        with pytest.raises(ValueError, match=r"^base_out: contains 1 non-finite"):
            f(x, bb, adapters, ids)
