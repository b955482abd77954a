"""The trained-adapter study's scoring path against the chapter's serving path, on models the notebook does not use.

`lm_task_scores` scores compressed adapters with its own per-sequence hooks on cached hidden states; here its logits
must equal those of `CompressedLoraModel` (the jointly compressed adapters served inside the whole model, eq. 5),
for a tiny Llama with a different shape from the notebook's and, when installed, SmolLM2-135M.
"""
import pytest
import torch

from papercode.core.testing import assert_close, require

try:
    import transformers
except ImportError:  # skipped locally, a failure under CI (which installs the extra)
    transformers = None

from papercode.core.models.llm import llm_missing
from papercode.core.models.lora import LoraCollection, LoraFactors
from papercode.lora_compression.cluster import cluster_jd
from papercode.lora_compression.compress import jd_full
from papercode.lora_compression.lm_tasks import _per_sequence, _stacks, _top_logits, lm_task_scores, lm_tasks, make_lm_suite
from papercode.lora_compression.model import CompressedLoraModel


class _Chars:
    "One token per character."
    eos_token_id = 0
    def __call__(self, s): return {"input_ids": [ord(c) % 128 for c in s]}


def _random_adapters(suite, r, seed):
    "Random LoRAs (B nonzero) on the suite's slots, one per task."
    g = torch.Generator().manual_seed(seed)
    coll = LoraCollection()
    for t in suite.tasks:
        ad = {}
        for s in suite.slots:
            d_out, d_in = suite.model.get_submodule(s).weight.shape
            ad[s] = LoraFactors(torch.randn(r, d_in, generator=g) / d_in ** 0.5, torch.randn(d_out, r, generator=g) / r, alpha=2.0 * r)
        coll.add(t.name, ad)
    return coll


def _check_against_served(model, tok, tasks, top_layers, r, rank, k):
    suite = make_lm_suite(model, tok, tasks, n_train=4, n_test=6, top_layers=top_layers, seed=3)
    coll = _random_adapters(suite, r, seed=1)
    comp = cluster_jd(coll, rank, k, seed=0, max_iter=10) if k > 1 else jd_full(coll, rank, max_iter=10)
    task, ids, lab, H = suite.test
    with torch.no_grad():
        box = [task]
        with _per_sequence(suite, _stacks(suite, comp), box): ours, _, _ = _top_logits(suite, H, lab)
        served = CompressedLoraModel(model, comp, backend="torch")
        ref = served(ids, adapter_ids=task).logits[lab != -100]
        served.remove()
    assert_close(ours, ref, atol=2e-4, rtol=1e-4)
    scores = lm_task_scores(suite, comp)  # and the scores are those of the served model's arg-max
    hit = (ref.argmax(-1) == lab[lab != -100]).float()
    rows = (lab != -100).nonzero()[:, 0]
    per_seq = torch.zeros(len(ids)).index_add_(0, rows, hit) / torch.zeros(len(ids)).index_add_(0, rows, torch.ones_like(hit))
    exact = torch.stack([(per_seq[task == t] == 1).float().mean() for t in range(len(tasks))])
    assert_close(scores.exact_match, exact, atol=0, rtol=0)


def test_scores_equal_served_model_tiny_llama():
    require(transformers is not None, 'transformers is not installed (pip install -e ".[lora_compression]")')
    cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=48, intermediate_size=80, num_hidden_layers=4,
                                   num_attention_heads=6, num_key_value_heads=3, max_position_embeddings=64)
    torch.manual_seed(2)
    model = transformers.LlamaForCausalLM(cfg).eval()
    _check_against_served(model, _Chars(), lm_tasks(2, families=("sub", "shift")), top_layers=3, r=4, rank=6, k=2)


def test_scores_refuse_compressed_adapters_of_other_tasks():
    "Adapter i scores task i: compressed adapters whose names are not the suite's tasks, in order, are refused."
    require(transformers is not None, 'transformers is not installed (pip install -e ".[lora_compression]")')
    cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=24, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    torch.manual_seed(2)
    suite = make_lm_suite(transformers.LlamaForCausalLM(cfg).eval(), _Chars(), lm_tasks(2, families=("sub",)),
                          n_train=2, n_test=2, top_layers=1, seed=3)
    coll = _random_adapters(suite, 2, seed=1)
    for names in (list(reversed(coll.names)), coll.names[:1]):  # scored the wrong task / an IndexError before
        with pytest.raises(ValueError, match="adapters: names"): lm_task_scores(suite, jd_full(coll.subset(names), 2))
    assert lm_task_scores(suite, jd_full(coll, 2)).loss.shape == (2,)


def test_polar_lexicon_family_through_the_scoring_path():
    "The lexicon family (VADER polarity in label pair k) goes through suite building, scoring and serving like the others."
    require(transformers is not None, 'transformers is not installed (pip install -e ".[lora_compression]")')
    import importlib.util
    require(importlib.util.find_spec("vaderSentiment") is not None, 'vaderSentiment is not installed (pip install -e ".[lora_compression]")')
    from papercode.lora_compression.lm_tasks import LM_FAMILIES, POLAR_LABELS, _polar_lexicon
    assert "polar" in LM_FAMILIES and len(lm_tasks(16, families=("polar",))) == len(POLAR_LABELS) == 16
    cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=48, intermediate_size=80, num_hidden_layers=4,
                                   num_attention_heads=6, num_key_value_heads=3, max_position_embeddings=64)
    torch.manual_seed(4)
    model = transformers.LlamaForCausalLM(cfg).eval()
    tasks = lm_tasks(3, families=("polar",))
    suite = make_lm_suite(model, _Chars(), tasks, n_train=4, n_test=6, top_layers=2, seed=5)
    words, val = _polar_lexicon()
    _, ids, lab, _ = suite.train
    for row, t in zip(ids, suite.train[0].tolist()):  # every example reads "word -> label\n" with the word's label
        text = "".join(chr(int(c)) for c in row if int(c) != 0)
        x, y = text.rstrip("\n").split(" -> ")
        assert y == POLAR_LABELS[tasks[t].k - 1][0 if val[x] > 0 else 1]
    _check_against_served(model, _Chars(), tasks, top_layers=2, r=4, rank=4, k=1)


@pytest.mark.skipif(llm_missing() is not None, reason=f"SmolLM2 not installed: {llm_missing()}")
def test_scores_equal_served_model_smollm2():
    import importlib.util
    require(importlib.util.find_spec("vaderSentiment") is not None, 'vaderSentiment is not installed (pip install -e ".[lora_compression]")')  # lm_tasks(1) includes the lexicon family
    from papercode.core.models.llm import load_llm
    llm = load_llm()
    _check_against_served(llm.model, llm.tokenizer, lm_tasks(1), top_layers=2, r=8, rank=8, k=1)


@pytest.mark.skipif(llm_missing() is not None, reason=f"SmolLM2 not installed: {llm_missing()}")
def test_polar_examples_encode_with_smollm2():
    "Every label pair of the lexicon family, on 200 words: the prompt is a token prefix of the example (encode_examples' requirement)."
    import importlib.util
    require(importlib.util.find_spec("vaderSentiment") is not None, 'vaderSentiment is not installed (pip install -e ".[lora_compression]")')
    import random
    from papercode.core.models.llm import load_llm
    from papercode.lora_compression.lm_tasks import encode_examples
    tok = load_llm().tokenizer
    rng = random.Random(0)
    for t in lm_tasks(16, families=("polar",)):
        pairs = [(x, t.answer(x)) for x in (t.draw(rng) for _ in range(200))]
        ids, lab = encode_examples(tok, pairs)
        assert ((lab != -100).sum(1) >= 2).all()  # the label and the newline are scored
