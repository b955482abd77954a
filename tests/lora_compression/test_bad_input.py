"""Bad input named, edge cases served: each test here failed on the code before it was written.

* float32 adapters with an all-zero member (PEFT's untrained init, B = 0): the norm floor 1e-300 is 0 in float32,
  so the weight 1/‖ΔW‖² was inf and the fits crashed or returned NaN;
* `cluster_jd` said `converged=True` once the assignment stopped changing, even when its JD fits had not converged;
* arguments that slipped through (bools as counts, a negative or NaN ridge, float or negative cluster labels, an
  unknown variant, integer activations, too few adapter ids for a batch) now raise a `ValueError` naming them.
"""
import numpy as np
import pytest
import torch

from papercode.core.models.lora import LoraCollection, LoraFactors
from papercode.lora_compression.cluster import adjusted_rand_index, cluster_jd, cluster_jd_fixed
from papercode.lora_compression.compress import jd_diag, jd_full, svd_compress
from papercode.lora_compression.data import make_lora_collection
from papercode.lora_compression.serve import bench_serving, bgmv_forward, jd_forward, loop_forward

try:
    import transformers
except ImportError:
    transformers = None


def _with_zero_adapter(dtype):
    C = make_lora_collection(5, 20, 16, 4, seed=0, dtype=dtype).collection
    zero = {s: LoraFactors(f.A, torch.zeros_like(f.B), f.alpha) for s, f in C["lora0000"].items()}
    return LoraCollection({**{n: C[n] for n in C.names[1:]}, "zero": zero}), zero


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_an_all_zero_adapter_is_compressed_in_float32_too(dtype):
    C, zero = _with_zero_adapter(dtype)
    for fit in (lambda: jd_full(C, 3), lambda: jd_diag(C, 3, max_iter=20), lambda: svd_compress(C, 3), lambda: cluster_jd(C, 3, 2)):
        comp = fit()
        err = comp.errors()
        assert bool(torch.isfinite(err).all()) and float(err[-1].max()) == 0.0  # nothing to fit: zero error
        assert all(bool(torch.isfinite(comp.core[s]).all()) for s in comp.slots)
        for s in comp.slots: assert float(comp.delta("zero", s).abs().max()) == 0.0
    proj = jd_full(make_lora_collection(5, 20, 16, 4, seed=1, dtype=dtype).collection, 3).project("zero", zero)
    assert float(proj.errors()[-1].max()) == 0.0


def test_cluster_jd_reports_unconverged_inner_fits():
    C = make_lora_collection(12, 20, 16, 4, n_slots=2, seed=0, n_clusters=3).collection
    assert not cluster_jd(C, 2, 3, max_iter=1).converged  # one sweep per fit cannot meet the tolerance
    assert not cluster_jd(C, 2, 3, variant="diag", max_iter=2).converged
    assert cluster_jd(C, 2, 3).converged  # the default budget does


def test_counts_and_ridge_are_checked():
    C = make_lora_collection(4, 12, 10, 2, seed=0).collection
    for call, name in [(lambda: jd_full(C, True), "rank"), (lambda: jd_full(C, 2, max_iter=True), "max_iter"),
                       (lambda: cluster_jd(C, 2, True), "n_clusters"), (lambda: cluster_jd(C, 2, 2, max_rounds=True), "max_rounds"),
                       (lambda: jd_diag(C, 2, ridge=-1.0), "ridge"), (lambda: jd_diag(C, 2, ridge=float("nan")), "ridge"),
                       (lambda: jd_full(C, 2, dtype=torch.int64), "dtype")]:
        with pytest.raises(ValueError, match=name): call()


def test_cluster_jd_fixed_checks_labels_and_variant():
    C = make_lora_collection(4, 12, 10, 2, seed=0).collection
    with pytest.raises(ValueError, match="variant"): cluster_jd_fixed(C, 2, torch.tensor([0, 0, 1, 1]), variant="svd")
    with pytest.raises(ValueError, match="assign: cluster labels must be in 0"): cluster_jd_fixed(C, 2, torch.tensor([0, -1, 1, 1]))
    with pytest.raises(ValueError, match="assign: cluster labels must be integers"): cluster_jd_fixed(C, 2, torch.tensor([0., 0.6, 1., 1.]))
    assert cluster_jd_fixed(C, 2, np.array([0, 0, 1, 1])).n_clusters == 2  # numpy labels are fine


def test_adjusted_rand_index_checks_labels():
    with pytest.raises(ValueError, match="a: labels must be integers"): adjusted_rand_index(torch.tensor([0.5, 0.7]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="empty"): adjusted_rand_index(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))
    assert adjusted_rand_index([0, 0, 1], [1, 1, 0]) == 1.0


def test_integer_activations_are_refused():
    C = make_lora_collection(4, 20, 16, 4, seed=0).collection
    comp = jd_full(C, 8)
    x = torch.randint(-3, 3, (5, 16)); b = torch.zeros(5, 20); ids = torch.tensor([0, 1, 2, 3, -1])
    for f, ad in ((jd_forward, comp), (bgmv_forward, C), (loop_forward, C)):
        with pytest.raises(ValueError, match="x: expected a floating-point"): f(x, b, ad, ids)  # bgmv cast the factors to int
        with pytest.raises(ValueError, match="base_out: expected a floating-point"): f(x.double(), b.long(), ad, ids)


def test_bench_serving_checks_its_arguments():
    for kw, name in [(dict(n_adapters=[0]), "n_adapters"), (dict(n_adapters=[2], d=8, rank=16), "rank"),
                     (dict(n_adapters=[2], cache=0), "cache"), (dict(n_adapters=[2], policies=("foo",)), "policies")]:
        with pytest.raises(ValueError, match=name): bench_serving(**{"d": 16, "r0": 4, "rank": 4, "steps": 1, **kw})


@pytest.fixture(scope="module")
def tiny_llama():
    if transformers is None: pytest.skip("transformers is not installed")
    transformers.logging.set_verbosity_error()
    from papercode.lora_compression.model import CompressedLoraModel
    cfg = transformers.LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    torch.manual_seed(0); model = transformers.LlamaForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(1)
    slots = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"]
    coll = LoraCollection({f"t{i}": {s: LoraFactors(torch.randn(2, 32, generator=g) / 6, torch.randn(model.get_submodule(s).weight.shape[0], 2, generator=g), 4.0)
                                     for s in slots} for i in range(4)})
    return CompressedLoraModel(model, jd_full(coll, 8)), torch.randint(0, 40, (4, 5), generator=g)


def test_model_takes_one_adapter_id_per_sequence(tiny_llama):
    m, ids = tiny_llama
    with torch.no_grad():
        with pytest.raises(ValueError, match="adapter_ids: 2 ids for a batch of 4"): m(ids, adapter_ids=[0, 1])  # was repeated
        with pytest.raises(ValueError, match="adapter_ids: 2 ids for a batch of 4"): m(input_ids=ids, adapter_ids=[0, 1])
        with pytest.raises(ValueError, match="adapter_ids: 2 ids for a batch of 4"):
            m.generate(ids, adapter_ids=[0, 1], max_new_tokens=1, do_sample=False, pad_token_id=0)
        want = m(ids, adapter_ids=[0, 3, -1, 1]).logits
        assert torch.equal(m(ids, adapter_ids=np.array([0, 3, -1, 1])).logits, want)  # numpy integers as ints
        out = m.generate(ids, adapter_ids=[0, 3, -1, 1], max_new_tokens=2, num_beams=2, do_sample=False, pad_token_id=0)
        assert out.shape == (4, 7)  # beams still follow their prompt


def test_svd_memory_counts_its_bases_per_adapter():
    "The per-adapter SVD shares nothing: its bases count per adapter (they were reported as shared)."
    C = make_lora_collection(6, 20, 16, 4, n_slots=2, seed=0).collection
    mem = svd_compress(C, 2).memory()
    assert mem.shared == 0 and mem.per_adapter == mem.compressed == 2 * 6 * 2 * (20 + 16 + 1)
    full = jd_full(C, 4).memory()
    assert full.shared == 2 * 4 * (20 + 16) and full.per_adapter == 2 * 6 * 16  # JD: bases shared, r×r cores per adapter
