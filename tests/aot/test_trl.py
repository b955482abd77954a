"""Parity with TRL 1.16's own AOT code (`DPOTrainer` with loss_type "aot" / "aot_unpaired") on a tiny random Llama
built from a config (no download), and `sequence_logps` of the core on the same model: batch = one at a time."""
import importlib.util
import os

import pytest
import torch

from papercode.aot.loss import aot_loss
from papercode.core.models.llm import sequence_logps
from papercode.core.testing import assert_close

HAVE_TRL = importlib.util.find_spec("trl") is not None and importlib.util.find_spec("transformers") is not None
CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789 +=.,?!")
PROMPTS = ["2+2=", "the sky is", "a b c", "hi there", "count: 1 2 3", "why?"]
CHOSEN = [" 4", " blue", " d", " friend!", " 4 5", " because."]
REJECTED = [" 5", " gray", " x", " no way!", " 9 9", " no idea."]  # same lengths as CHOSEN: lengths do not rank the margins


class _LM:  # what sequence_logps needs: .model and .tokenizer
    def __init__(self, model, tokenizer): self.model, self.tokenizer = model, tokenizer


@pytest.fixture(scope="module")
def tiny():
    if not HAVE_TRL:
        pytest.skip("trl/transformers not installed (pip install -e '.[aot]')")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, **{c: i + 4 for i, c in enumerate(CHARS)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # one token per character
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                  unk_token="<unk>")
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0,
                      eos_token_id=1, bos_token_id=2)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval(), LlamaForCausalLM(cfg).eval(), tok


@pytest.mark.parametrize("loss_type,variant", [("aot", "paired"), ("aot_unpaired", "unpaired")])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_trl_dpo_trainer_aot_equals_ours(tiny, tmp_path, loss_type, variant, label_smoothing):
    "TRL computes the loss from its own log-probs inside DPOTrainer; ours on the same log-probs agrees to 1e-6."
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer
    model, ref, tok = tiny
    ds = Dataset.from_dict(dict(prompt=PROMPTS, chosen=CHOSEN, rejected=REJECTED))
    args = DPOConfig(output_dir=str(tmp_path), loss_type=[loss_type], beta=0.3, label_smoothing=label_smoothing,
                     per_device_train_batch_size=len(PROMPTS), report_to=[], use_cpu=True, max_steps=1,
                     save_strategy="no", bf16=False, disable_tqdm=True)
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=ds, processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    seen = {}
    def keep(key):
        def hook(mod, args, kwargs, out):  # returns None: the output is left as it is
            seen[key] = out.log_probs.detach()
        return hook
    hooks = [m.register_forward_hook(keep(key), with_kwargs=True)
             for key, m in (("policy", trainer.model), ("ref", trainer.ref_model))]
    try:
        with torch.no_grad():
            trl_loss = trainer._compute_loss(trainer.model, batch, False)
    finally:
        for h in hooks: h.remove()
    n = batch["completion_mask"].shape[1] - 1
    c, r = seen["policy"][:, -n:].sum(1).chunk(2)  # TRL's own reduction: sum over the shifted completion
    rc, rr = seen["ref"][:, -n:].sum(1).chunk(2)
    ours = aot_loss(c, r, rc, rr, variant=variant, beta=0.3, label_smoothing=label_smoothing).loss
    assert_close(ours, trl_loss, rtol=0, atol=1e-6)
    # the log-probs TRL used are the completion tokens' log-probabilities: recompute them from plain logits
    ids, mask = batch["input_ids"], batch["completion_mask"]
    with torch.no_grad():
        lp = torch.log_softmax(model(ids, attention_mask=batch["attention_mask"]).logits[:, :-1].float(), -1)
    own = (lp.gather(-1, ids[:, 1:, None])[..., 0] * mask[:, 1:]).sum(1)
    assert_close(own, seen["policy"][:, -n:].sum(1), rtol=1e-5, atol=1e-5)
    # a wrong pairing would not pass: DPO's per-pair loss differs from AOT on this batch
    from papercode.aot.loss import dpo_loss
    assert (dpo_loss(c, r, rc, rr, beta=0.3, label_smoothing=label_smoothing).loss - trl_loss).abs() > 1e-4


def test_sequence_logps_batch_equals_single_prompts(tiny):
    model, _, tok = tiny
    lm = _LM(model, tok)
    with torch.no_grad():
        batch = sequence_logps(lm, PROMPTS, CHOSEN, batch_size=4)  # two batches, left-padded to different lengths
        single = torch.cat([sequence_logps(lm, [p], [y], batch_size=1) for p, y in zip(PROMPTS, CHOSEN)])
        assert_close(batch, single, rtol=1e-5, atol=1e-5)
        for p, y, got in zip(PROMPTS, CHOSEN, single):  # full-sequence reference, no padding at all
            pi, yi = tok(p).input_ids, tok(y, add_special_tokens=False).input_ids
            lp = torch.log_softmax(model(torch.tensor([pi + yi])).logits[0].float(), -1)
            ref = sum(lp[len(pi) - 1 + t, yi[t]] for t in range(len(yi)))
            assert_close(got, ref, rtol=1e-5, atol=1e-5)
    # gradients flow when grad mode is on
    out = sequence_logps(lm, PROMPTS[:2], CHOSEN[:2])
    out.sum().backward()
    assert model.model.embed_tokens.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_sequence_logps_bad_input(tiny):
    model, _, tok = tiny
    lm = _LM(model, tok)
    with pytest.raises(ValueError, match="responses: 1 responses for 2 prompts"):
        sequence_logps(lm, PROMPTS[:2], CHOSEN[:1])
    with pytest.raises(ValueError, match="more than the model's context of 64"):
        sequence_logps(lm, ["a" * 60], [" bcdefg"])
    with pytest.raises(ValueError, match="prompts, responses: expected lists of strings"):
        sequence_logps(lm, "a", "b")
    with pytest.raises(ValueError, match="entry 0 must be a string prompt and a non-empty string response"):
        sequence_logps(lm, ["a"], [""])
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        sequence_logps(lm, ["a"], ["b"], batch_size=0)
    with pytest.raises(ValueError, match="prompts: is empty"):
        sequence_logps(lm, [], [])
