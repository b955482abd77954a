"""Against PEFT itself: adapters created and run by PEFT on a tiny random Llama (no download).

* round trip: PEFT adapters -> load -> JD-Full at full rank -> write back -> PEFT gives the same outputs;
* serving: `jd_forward`, `bgmv_forward`, `loop_forward` equal PEFT's own mixed-batch forward (`adapter_names=`).
"""
import pytest
import torch

from papercode.core.testing import require

try:
    import peft, transformers
except ImportError:  # skipped locally, a failure under CI (which installs the extra)
    peft = transformers = None
pytestmark = pytest.mark.usefixtures("_needs_peft")


@pytest.fixture(scope="module")
def _needs_peft():
    require(peft is not None, 'peft/transformers are not installed (pip install -e ".[lora_compression]")')


from papercode.core.models.lora import load_peft_collection, read_peft_adapter
from papercode.core.testing import assert_close
from papercode.lora_compression.compress import jd_full, jd_diag
from papercode.lora_compression.cluster import cluster_jd
from papercode.lora_compression.serve import bgmv_forward, jd_forward, loop_forward

N_AD = 3


@pytest.fixture(scope="module")
def setup(_needs_peft, tmp_path_factory):
    transformers.logging.set_verbosity_error()
    tmp = tmp_path_factory.mktemp("adapters")
    cfg = transformers.LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    torch.manual_seed(0)
    base_sd = transformers.LlamaForCausalLM(cfg).state_dict()

    def fresh():
        m = transformers.LlamaForCausalLM(cfg).eval(); m.load_state_dict(base_sd); return m

    names = []
    for i in range(N_AD):
        torch.manual_seed(100 + i)
        pm = peft.get_peft_model(fresh(), peft.LoraConfig(r=4, lora_alpha=8 + 4 * i, target_modules=["q_proj", "v_proj"],
                                                         init_lora_weights=False))
        pm.save_pretrained(tmp / "orig" / f"task{i}")
        names.append(f"task{i}")
    return dict(tmp=tmp, fresh=fresh, names=names, cfg=read_peft_adapter(tmp / "orig" / "task0")[1])


def _peft_multi(fresh, dirs):
    "A PeftModel holding every adapter of `dirs` (name -> path)."
    items = list(dirs.items())
    model = peft.PeftModel.from_pretrained(fresh(), items[0][1], adapter_name=items[0][0])
    for n, p in items[1:]: model.load_adapter(p, adapter_name=n)
    return model.eval()


def test_round_trip_full_rank_identical_outputs(setup):
    tmp, names = setup["tmp"], setup["names"]
    coll = load_peft_collection(tmp / "orig", dtype=torch.float64)
    assert coll.names == tuple(names) and len(coll.slots) == 4
    comp = jd_full(coll, 12)  # 12 = sum of the ranks <= min(d_in, d_out) = 16 of v_proj: exact
    assert comp.errors().max() < 1e-10
    for n in names: comp.save_peft(tmp / "jd" / n, n, setup["cfg"])
    ids = torch.randint(0, 50, (N_AD, 6), generator=torch.Generator().manual_seed(0))
    orig = _peft_multi(setup["fresh"], {n: tmp / "orig" / n for n in names})
    ours = _peft_multi(setup["fresh"], {n: tmp / "jd" / n for n in names})
    with torch.no_grad():
        want = orig(ids, adapter_names=names).logits
        got = ours(ids, adapter_names=names).logits
    # written at each adapter's own rank 4 (exact: rank Σ_i <= 4), not at the compressed rank 12
    assert ours.base_model.model.model.layers[0].self_attn.q_proj.lora_A["task0"].weight.shape == (4, 32)
    assert_close(got, want, rtol=1e-4, atol=1e-5, msg="PEFT outputs, original vs JD-compressed at full rank")


@pytest.mark.parametrize("method", ["full", "diag", "cluster"])
def test_serving_paths_match_peft_mixed_batch(setup, method):
    tmp, names = setup["tmp"], setup["names"]
    coll = load_peft_collection(tmp / "orig", dtype=torch.float32)
    comp = {"full": lambda: jd_full(coll, 6), "diag": lambda: jd_diag(coll, 6, max_iter=30),
            "cluster": lambda: cluster_jd(coll, 4, 2)}[method]()
    for n in names: comp.save_peft(tmp / f"c_{method}" / n, n, setup["cfg"])
    model = _peft_multi(setup["fresh"], {n: tmp / f"c_{method}" / n for n in names})
    orig = _peft_multi(setup["fresh"], {n: tmp / "orig" / n for n in names})
    g = torch.Generator().manual_seed(1)
    for slot in ("model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj"):
        layer = model.get_submodule("base_model.model." + slot)
        olayer = orig.get_submodule("base_model.model." + slot)
        x = torch.randn(5, 3, 32, generator=g)  # 5 sequences of 3 tokens
        adapter_names = ["task1", "__base__", "task0", "task1", "task2"]
        with torch.no_grad():
            want = layer(x, adapter_names=adapter_names)
            owant = olayer(x, adapter_names=adapter_names)
            base = layer.base_layer(x)
        tok_ids = torch.tensor([names.index(a) if a in names else -1 for a in adapter_names]).repeat_interleave(3)
        xf, bf = x.reshape(15, 32), base.reshape(15, -1)
        got = jd_forward(xf, bf, comp, tok_ids, slot=slot).reshape(want.shape)
        assert_close(got, want, rtol=1e-4, atol=1e-5, msg=f"jd_forward vs PEFT mixed batch ({method}, {slot})")
        assert torch.equal(got[1], base[1])
        for f in (bgmv_forward, loop_forward):
            assert_close(f(xf, bf, coll, tok_ids, slot=slot).reshape(want.shape), owant, rtol=1e-4, atol=1e-5,
                         msg=f"{f.__name__} vs PEFT mixed batch ({slot})")


def test_incompatible_adapters_are_refused(setup, tmp_path):
    "Adapters with different target modules, or on a different base shape, cannot form one collection."
    torch.manual_seed(7)
    other = peft.get_peft_model(setup["fresh"](), peft.LoraConfig(r=4, target_modules=["q_proj", "k_proj"], init_lora_weights=False))
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="targets different slots"):
        load_peft_collection([setup["tmp"] / "orig" / "task0", tmp_path / "other"])
    (tmp_path / "missing").mkdir()
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        load_peft_collection([setup["tmp"] / "orig" / "task0", tmp_path / "missing"])
