"""The five-line recipe of the chapter's index page ("Serve your own PEFT adapters"), run exactly as printed.

The code block is read from `nbs/02_lora_compression/index.ipynb`; the test only provides what a user has: a folder
`my_adapters/` of PEFT adapters (five, made by PEFT on a tiny random Llama), the base model, a tokenizer and prompts.
Its output must equal PEFT's own `generate(adapter_names=...)` on the compressed adapters written back as PEFT folders.
"""
import json
import re
from pathlib import Path

import pytest
import torch

from papercode.core.testing import require

try:
    import peft, transformers
except ImportError:
    peft = transformers = None

INDEX = Path(__file__).parents[2] / "nbs" / "02_lora_compression" / "index.ipynb"


def _recipe() -> str:
    for c in json.loads(INDEX.read_text())["cells"]:
        src = "".join(c["source"])
        if c["cell_type"] == "markdown" and src.startswith("## Serve your own PEFT adapters"):
            return re.search(r"```python\n(.*?)```", src, re.S).group(1)
    raise AssertionError("index.ipynb: no 'Serve your own PEFT adapters' section")


class _CharTokenizer:
    "A stand-in tokenizer (one id per character, left padding), enough for a random model."
    def __call__(self, texts, return_tensors="pt", padding=True):
        ids = [[3 + (ord(ch) % 60) for ch in t] for t in texts]
        L = max(map(len, ids))
        return dict(input_ids=torch.tensor([[0] * (L - len(x)) + x for x in ids]),
                    attention_mask=torch.tensor([[0] * (L - len(x)) + [1] * len(x) for x in ids]))


def test_index_recipe_serves_like_peft(tmp_path, monkeypatch):
    require(peft is not None, 'peft/transformers are not installed (pip install -e ".[lora_compression]")')
    code = _recipe()
    assert len([l for l in code.splitlines() if l.strip()]) == 5, code
    transformers.logging.set_verbosity_error()
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   pad_token_id=0)
    torch.manual_seed(0); sd = transformers.LlamaForCausalLM(cfg).state_dict()

    def fresh():
        m = transformers.LlamaForCausalLM(cfg).eval(); m.load_state_dict(sd); return m
    names = ["task001", "task007", "task042", "task100", "task200"]
    for i, n in enumerate(names):
        torch.manual_seed(10 + i)
        peft.get_peft_model(fresh(), peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                     init_lora_weights=False)).save_pretrained(tmp_path / "my_adapters" / n)
    monkeypatch.chdir(tmp_path)
    prompts = ["hello there", "2+2=", "once upon a time"]
    ns = dict(base_model=fresh(), tok=_CharTokenizer(), prompts=prompts)
    exec(code, ns)
    out, comp = ns["out"], ns["comp"]
    assert out.shape[0] == 3 and out.shape[1] == 16 + 20
    from papercode.core.models.lora import read_peft_adapter
    acfg = read_peft_adapter(tmp_path / "my_adapters" / "task001")[1]
    for n in names: comp.save_peft(tmp_path / "jd" / n, n, acfg)
    pm = peft.PeftModel.from_pretrained(fresh(), tmp_path / "jd" / names[0], adapter_name=names[0])
    for n in names[1:]: pm.load_adapter(tmp_path / "jd" / n, adapter_name=n)
    with torch.no_grad():
        want = pm.eval().generate(**_CharTokenizer()(prompts), adapter_names=["task042", "__base__", "task007"],
                                  max_new_tokens=20, do_sample=False)
        base = fresh().generate(**_CharTokenizer()(prompts), max_new_tokens=20, do_sample=False)
    assert out.tolist() == want.tolist()
    assert torch.equal(out[1], base[1]) and not torch.equal(out[0], base[0])  # None = the base model; adapters act
