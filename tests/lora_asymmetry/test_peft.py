"""Asymmetric adapters against stock PEFT (checked with PEFT 0.21.2) on a tiny random BERT (no download).

* B = 0 leaves outputs bitwise unchanged; merged equals unmerged;
* the frozen factor stays bitwise unchanged, without grad and in no optimizer group; the mirror for A-only;
* our files reload in PEFT (`PeftModel.from_pretrained`) with equal outputs, and `store_A="seed"` rebuilds bitwise;
* PEFT's LoRA-FA optimizer is the same training as B-only with a frozen orthonormal A (Adam is scale-invariant);
* ∇_A = 0 at B = 0 by autograd; ∇_B = s·g·(Ax)ᵀ.
"""
import pytest
import torch
from torch import nn

from papercode.core.testing import assert_close, require

try:
    import peft, transformers
except ImportError:  # skipped locally, a failure under CI (which installs the extra)
    peft = transformers = None


@pytest.fixture(scope="module", autouse=True)
def _needs_peft():
    require(peft is not None, 'peft/transformers are not installed (pip install -e ".[lora_asymmetry]")')


from papercode.core.models.lora import LoraFactors, write_peft_adapter
from papercode.lora_asymmetry.adapters import (AsymLoRALinear, asymmetric_lora, init_factors, load_adapter, save_adapter,
                                               slot_seed)

QKV = ["query", "key", "value"]


def _bert(seed=0, dtype=torch.float32):
    transformers.logging.set_verbosity_error()
    cfg = transformers.BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=40, max_position_embeddings=16, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    return transformers.BertModel(cfg).to(dtype).eval()


IDS = torch.randint(0, 60, (3, 10), generator=torch.Generator().manual_seed(1))


def _out(m): return m(input_ids=IDS).last_hidden_state


def _train(asym, steps=4, lr=1e-2, opt=None):
    opt = opt or asym.optimizer(lr=lr)
    target = torch.randn(3, 10, 32, generator=torch.Generator().manual_seed(2), dtype=_out(asym.model).dtype)
    for _ in range(steps):
        opt.zero_grad(); loss = (_out(asym.model) - target).pow(2).mean(); loss.backward(); opt.step()
    return opt


@pytest.mark.parametrize("train,init", [("B", "orthonormal"), ("B", "kaiming"), ("B", "svd"), ("A", "orthonormal"),
                                        ("A", "svd"), ("AB", None)])
def test_zero_trained_factor_leaves_outputs_bitwise_unchanged(train, init):
    ref = _out(_bert()).detach()
    asym = asymmetric_lora(_bert(), target_modules=QKV, r=4, train=train, frozen_init=init, seed=3)
    assert len(asym.spec.slots) == 6 and asym.spec.alpha == 8.0
    assert torch.equal(_out(asym.model), ref)
    for s, f in asym.factors().items():
        frozen = f.A if train in ("B", "AB") else f.B
        assert float(frozen.abs().max()) > 0
        if init == "orthonormal" and train == "B": assert_close(f.A @ f.A.T, torch.eye(4), atol=1e-6)
        if init == "orthonormal" and train == "A": assert_close(f.B.T @ f.B, torch.eye(4), atol=1e-6)


def test_svd_init_uses_the_pretrained_weight():
    model = _bert()
    W0 = {n: m.weight.detach().clone() for n, m in model.named_modules() if n.endswith(".query")}
    asym = asymmetric_lora(model, target_modules=["query"], r=3, train="B", frozen_init="svd")
    for s, f in asym.factors().items():
        Vh = torch.linalg.svd(W0[s].double())[2][:3]
        # singular vectors up to sign
        assert_close((f.A.double() @ Vh.T).abs(), torch.eye(3, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("train", ["B", "A"])
def test_frozen_factor_is_bitwise_unchanged_without_grad_and_in_no_optimizer_group(train):
    asym = asymmetric_lora(_bert(), target_modules=QKV, r=4, train=train, seed=5)
    before = {s: (f.A.clone(), f.B.clone()) for s, f in asym.factors().items()}
    opt = _train(asym)
    frozen_ids = {id(p) for p in asym.frozen_parameters()}
    assert len(frozen_ids) == 6
    assert not any(id(p) in frozen_ids for grp in opt.param_groups for p in grp["params"])
    assert all(p.grad is None and not p.requires_grad for p in asym.frozen_parameters())
    for s, f in asym.factors().items():
        A0, B0 = before[s]
        frozen_now, frozen_then, trained_now, trained_then = (f.A, A0, f.B, B0) if train == "B" else (f.B, B0, f.A, A0)
        assert torch.equal(frozen_now, frozen_then)
        assert not torch.equal(trained_now, trained_then)
    # the base model never moves either
    assert all(not p.requires_grad for n, p in asym.model.named_parameters() if "lora_" not in n)
    with pytest.raises(ValueError, match="frozen factor of 'encoder.layer.0.attention.self.query' is in parameter group 0"):
        asym.check_optimizer(torch.optim.AdamW(list(asym.model.parameters()), lr=1e-3))


def test_merged_equals_unmerged():
    asym = asymmetric_lora(_bert(dtype=torch.float64), target_modules=QKV, r=4, seed=1)
    _train(asym, steps=3, lr=5e-2)
    y = _out(asym.model).detach()
    merged = asym.model.merge_and_unload()
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    assert_close(_out(merged), y, rtol=0, atol=1e-6)


@pytest.mark.parametrize("train", ["B", "A"])
def test_files_reload_in_peft_and_from_the_seed(tmp_path, train):
    asym = asymmetric_lora(_bert(), target_modules=QKV, r=4, train=train, seed=9)
    _train(asym, steps=3, lr=5e-2)
    y = _out(asym.model).detach()
    full = save_adapter(asym, tmp_path / "full", store_A="full")
    seed = save_adapter(asym, tmp_path / "seed", store_A="seed")
    pm = peft.PeftModel.from_pretrained(_bert(), full).eval()
    assert_close(_out(pm), y, rtol=0, atol=1e-6)
    back = load_adapter(seed, _bert())
    assert torch.equal(_out(back.model), y)
    for s in asym.spec.slots:
        assert torch.equal(back.factors()[s].A, asym.factors()[s].A) and torch.equal(back.factors()[s].B, asym.factors()[s].B)
    size = lambda d: (d / "adapter_model.safetensors").stat().st_size
    assert size(seed) < 0.6 * size(full)
    # another seed rebuilds another factor: refused
    import json
    meta = json.loads((seed / "asym_lora.json").read_text()); meta["seed"] = 10
    (seed / "asym_lora.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="differs from the saved one"):
        load_adapter(seed, _bert())


def test_standalone_layers_reload_in_peft_with_equal_outputs(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__(); self.fc1, self.fc2 = nn.Linear(12, 20), nn.Linear(20, 6)
        def forward(self, x): return self.fc2(torch.tanh(self.fc1(x)))
    torch.manual_seed(0); base_sd = Net().state_dict()
    fresh = lambda: (lambda m: (m.load_state_dict(base_sd), m)[1])(Net())
    ours = fresh()
    ours.fc1 = AsymLoRALinear(ours.fc1, 3, seed=slot_seed(0, "fc1"))
    ours.fc2 = AsymLoRALinear(ours.fc2, 3, train="A", seed=slot_seed(0, "fc2"))
    with torch.no_grad(): ours.fc1.B.normal_(); ours.fc2.A.normal_()
    x = torch.randn(7, 12)
    facs = {"fc1": ours.fc1.factors(), "fc2": ours.fc2.factors()}
    d = write_peft_adapter(tmp_path / "a", facs, dict(target_modules=["fc1", "fc2"]))
    pm = peft.PeftModel.from_pretrained(fresh(), d).eval()
    assert_close(pm(x), ours(x), rtol=0, atol=1e-6)
    # the layer's factors are the ones asymmetric_lora installs for the same seed and slot
    asym = asymmetric_lora(fresh(), target_modules=["fc1"], r=3, seed=0)
    assert torch.equal(asym.factors()["fc1"].A, init_factors(base_sd["fc1.weight"], 3, "B", seed=slot_seed(0, "fc1"))[0])


def test_lorafa_is_b_only_training_for_an_orthonormal_A():
    """PEFT's LoRA-FA: A frozen, B's gradient times (AAᵀ)⁻¹/s², then Adam. For AAᵀ = I that is the gradient divided by
    s², which Adam ignores once eps is negligible: the same trajectory as our B-only with AdamW. (LoRA-FA adds eps
    before the bias correction, torch's AdamW after it, so we make eps negligible in both rather than match it.)"""
    from peft.optimizers import create_lorafa_optimizer
    ours = asymmetric_lora(_bert(), target_modules=QKV, r=4, train="B", seed=2)
    fa = asymmetric_lora(_bert(), target_modules=QKV, r=4, train="AB", frozen_init="orthonormal", seed=2)
    assert all(torch.equal(fa.factors()[s].A, ours.factors()[s].A) for s in ours.spec.slots)
    opt = create_lorafa_optimizer(fa.model, r=4, lora_alpha=8, lr=1e-2)
    opt.param_groups[0]["eps"] = 1e-14
    A0 = {s: f.A.clone() for s, f in fa.factors().items()}
    _train(fa, steps=3, opt=opt)
    _train(ours, steps=3, opt=torch.optim.AdamW(ours.trainable_parameters(), lr=1e-2, eps=1e-14, weight_decay=0.0))
    for s in ours.spec.slots:
        assert torch.equal(fa.factors()[s].A, A0[s])  # LoRA-FA froze A too
        Bf, Bo = fa.factors()[s].B, ours.factors()[s].B
        # three Adam steps move entries by up to 3·lr = 0.03; LoRA-FA may compute the projected gradient under bf16
        # autocast, which moves the trajectory slightly: agreement to 1 % of one step
        assert float(Bo.abs().max()) > 0.02
        assert_close(Bf, Bo, rtol=0, atol=1e-4)


def test_gradient_of_A_is_zero_at_B_zero_and_gradient_of_B_matches_the_formula():
    asym = asymmetric_lora(_bert(dtype=torch.float64), target_modules=["query"], r=4, train="AB", seed=4)
    layer = asym.layers()["encoder.layer.1.attention.self.query"]
    seen = {}
    h1 = layer.lora_A["default"].register_forward_hook(lambda m, i, o: seen.__setitem__("x", i[0].detach()))
    def keep(m, i, o):
        o.retain_grad(); seen["y"] = o
    h2 = layer.register_forward_hook(keep)
    out = _out(asym.model); out.pow(2).sum().backward()
    h1.remove(); h2.remove()
    assert torch.equal(layer.lora_A["default"].weight.grad, torch.zeros_like(layer.lora_A["default"].weight))
    g, x, A = seen["y"].grad.reshape(-1, 32), seen["x"].reshape(-1, 32), layer.lora_A["default"].weight.detach()
    assert_close(layer.lora_B["default"].weight.grad, layer.scaling["default"] * g.T @ (x @ A.T), rtol=1e-10, atol=1e-12)


def test_bad_requests_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"'q_proj' matches no linear layer.*candidates: \['dense', 'key', 'query', 'value'\]"):
        asymmetric_lora(_bert(), target_modules=["q_proj"], r=4)
    with pytest.raises(ValueError, match="train: unknown 'BA'"): asymmetric_lora(_bert(), target_modules=QKV, r=4, train="BA")
    with pytest.raises(ValueError, match="frozen_init: unknown"): asymmetric_lora(_bert(), target_modules=QKV, r=4, frozen_init="haar")
    with pytest.raises(ValueError, match="alpha: must be a finite number > 0"): asymmetric_lora(_bert(), target_modules=QKV, r=4, alpha=0)
    with pytest.raises(ValueError, match="r: must be a positive integer"): asymmetric_lora(_bert(), target_modules=QKV, r=0)
    with pytest.raises(ValueError, match="larger than the layer allows"): asymmetric_lora(_bert(), target_modules=QKV, r=40)
    bad = _bert()
    with torch.no_grad(): bad.encoder.layer[0].attention.self.query.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="contains NaN or inf"): asymmetric_lora(bad, target_modules=QKV, r=4)
    ab = asymmetric_lora(_bert(), target_modules=QKV, r=4, train="AB")
    with pytest.raises(ValueError, match="both factors are trained"): save_adapter(ab, tmp_path / "x", store_A="seed")
    with pytest.raises(ValueError, match="base: expected an nn.Linear"): AsymLoRALinear(nn.Conv1d(2, 2, 1), 1)
    with pytest.raises(FileNotFoundError, match="no asym_lora.json"): load_adapter(tmp_path, _bert())


class _Net(nn.Module):
    def __init__(self):
        super().__init__(); self.fc1, self.fc2, self.out = nn.Linear(12, 20), nn.Linear(20, 20), nn.Linear(20, 6)
    def forward(self, x): return self.out(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


def _hand_adapted(seed=0):
    "A plain net and a copy whose fc1 (B trained, r=3) and fc2 (A trained, r=2, Kaiming B) are AsymLoRALinear, 'trained'."
    torch.manual_seed(seed); plain = _Net()
    import copy
    ours = copy.deepcopy(plain)
    ours.fc1 = AsymLoRALinear(ours.fc1, 3, seed=21)
    ours.fc2 = AsymLoRALinear(ours.fc2, 2, train="A", frozen_init="kaiming", seed=22, alpha=3.0)
    with torch.no_grad(): ours.fc1.B.normal_(); ours.fc2.A.normal_()
    ours.out.requires_grad_(False)  # only the adapters train
    return plain, ours


def test_save_adapter_of_standalone_layers_seed_round_trip_is_bitwise(tmp_path):
    import copy, json
    plain, ours = _hand_adapted()
    x = torch.randn(9, 12)
    d = save_adapter(ours, tmp_path / "seed")
    back = load_adapter(d, copy.deepcopy(plain))
    assert isinstance(back.fc1, AsymLoRALinear) and isinstance(back.fc2, AsymLoRALinear) and isinstance(back.out, nn.Linear)
    for n in ("fc1", "fc2"):
        a, b = getattr(back, n), getattr(ours, n)
        assert torch.equal(a.A, b.A) and torch.equal(a.B, b.B) and (a.r, a.alpha, a.train_factor) == (b.r, b.alpha, b.train_factor)
        assert a.B.requires_grad == b.B.requires_grad and a.A.requires_grad == b.A.requires_grad
    assert torch.equal(back(x), ours(x)) and not torch.equal(ours(x), plain(x))
    # only the trained factors are stored: fc1's B (20x3) and fc2's A (2x20)
    from safetensors.torch import load_file
    assert {k: tuple(v.shape) for k, v in load_file(str(d / "adapter_model.safetensors")).items()} == {
        "base_model.model.fc1.lora_B.weight": (20, 3), "base_model.model.fc2.lora_A.weight": (2, 20)}
    # a different seed in the file rebuilds a different frozen factor: refused by its hash
    meta = json.loads((d / "asym_lora.json").read_text()); meta["layers"]["fc1"]["seed"] = 99
    (d / "asym_lora.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="frozen factor rebuilt for 'fc1' differs"): load_adapter(d, copy.deepcopy(plain))


def test_save_adapter_of_standalone_layers_full_loads_in_stock_peft(tmp_path):
    import copy
    plain, ours = _hand_adapted(1)
    x = torch.randn(9, 12)
    d = save_adapter(ours, tmp_path / "full", store_A="full")
    pm = peft.PeftModel.from_pretrained(copy.deepcopy(plain), str(d)).eval()
    assert_close(pm(x), ours(x), rtol=0, atol=1e-6)
    assert not torch.allclose(pm(x), plain(x))
    back = load_adapter(d, copy.deepcopy(plain))  # our loader reads the full folder too (both factors stored)
    assert torch.equal(back(x), ours(x))


def test_save_adapter_of_a_bare_layer_and_bad_input(tmp_path):
    import copy
    torch.manual_seed(3)
    one = AsymLoRALinear(nn.Linear(10, 7), 4, seed=5)
    with torch.no_grad(): one.B.normal_()
    d = save_adapter(one, tmp_path / "one")
    back = load_adapter(d, copy.deepcopy(one.base))
    x = torch.randn(5, 10)
    assert isinstance(back, AsymLoRALinear) and torch.equal(back(x), one(x))
    with pytest.raises(ValueError, match="save the model that holds this layer"): save_adapter(one, tmp_path / "f", store_A="full")
    with pytest.raises(ValueError, match="give its base nn.Linear"): load_adapter(d, nn.Sequential(one.base))
    with pytest.raises(ValueError, match="is 7x11, the file's is 7x10"): load_adapter(d, nn.Linear(11, 7))
    ab = AsymLoRALinear(nn.Linear(10, 7), 2, train="AB", seed=1)
    with pytest.raises(ValueError, match="train both factors"): save_adapter(ab, tmp_path / "ab")
    with pytest.raises(ValueError, match="holds no AsymLoRALinear"): save_adapter(nn.Linear(3, 3), tmp_path / "none")
    plain, ours = _hand_adapted()
    d2 = save_adapter(ours, tmp_path / "two")
    with pytest.raises(ValueError, match=r"no plain nn.Linear at \['fc2'\]"): load_adapter(d2, nn.ModuleDict({"fc1": nn.Linear(12, 20)}))
    with pytest.raises(ValueError, match=r"no plain nn.Linear at \['fc1 \(AsymLoRALinear\)'"): load_adapter(d2, copy.deepcopy(ours))
    # a file that lost a trained factor is refused, never loaded as a zero adapter
    from safetensors.torch import load_file, save_file
    sd = load_file(str(d2 / "adapter_model.safetensors")); sd.pop("base_model.model.fc2.lora_A.weight")
    save_file(sd, str(d2 / "adapter_model.safetensors"))
    with pytest.raises(ValueError, match="fc2.lora_A.weight is missing"): load_adapter(d2, copy.deepcopy(plain))
    # weights outside the adapters that require grad are not in the file: said, not silent
    ours.out.requires_grad_(True)
    with pytest.warns(UserWarning, match=r"outside the AsymLoRALinear factors require grad \(\['out.weight', 'out.bias'\]\) and are not saved"):
        save_adapter(ours, tmp_path / "x2")
    ours.out.requires_grad_(False)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_adapter(ours, tmp_path / "x3")  # nothing left out: no warning
    with torch.no_grad(): ours.fc1.B[0, 0] = float("nan")
    with pytest.raises(ValueError, match="layer 'fc1' contains NaN"): save_adapter(ours, tmp_path / "nan")


@pytest.mark.parametrize("store_A", ["seed", "full"])
def test_adapter_dropout_survives_save_and_load(tmp_path, store_A):
    asym = asymmetric_lora(_bert(), target_modules=["query"], r=2, seed=1, dropout=0.1)
    d = save_adapter(asym, tmp_path / store_A, store_A=store_A)
    back = load_adapter(d, _bert())
    assert back.spec.dropout == 0.1
    assert all(m.lora_dropout["default"].p == 0.1 for m in back.layers().values())  # PEFT's own dropout layers
    if store_A == "full":
        assert peft.PeftConfig.from_pretrained(str(d)).lora_dropout == 0.1
