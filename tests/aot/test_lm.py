"""Bad input of the cached-states helpers on a tiny random Llama: mismatched or malformed prompt/answer lists and
block counts are refused instead of being truncated or clipped; a missing transformers is named."""
import importlib.util

import pytest
import torch

from papercode.aot.lm import CachedLMPolicy, cache_last_blocks, char_tokenizer, tiny_llama, train_last_blocks

HAVE = importlib.util.find_spec("transformers") is not None
P, A = ["ab", "hello", "x"], [" c", " world", "yz"]


@pytest.fixture(scope="module")
def tiny():
    if not HAVE: pytest.skip("needs transformers (pip install -e '.[llm]')")
    tok = char_tokenizer()
    return tok, tiny_llama(len(tok), layers=3, seed=0)


def test_train_last_blocks_checks_k(tiny):
    _, lm = tiny
    for k in (0, 4, -1, True, 1.0):
        with pytest.raises(ValueError, match="k: must be in 1..3"): train_last_blocks(lm, k)
    n_head_norm = len(list(lm.lm_head.parameters())) + len(list(lm.model.norm.parameters()))
    assert len(train_last_blocks(lm, 3)) == n_head_norm + 3 * len(list(lm.model.layers[0].parameters()))


def test_cache_last_blocks_refuses_mismatched_lists(tiny):
    tok, lm = tiny
    with pytest.raises(ValueError, match="answers: 2 answers for 3 prompts"): cache_last_blocks(lm, tok, P, A[:2], 1)
    with pytest.raises(ValueError, match="expected lists of strings"): cache_last_blocks(lm, tok, "ab", " c", 1)
    with pytest.raises(ValueError, match="prompts: is empty"): cache_last_blocks(lm, tok, [], [], 1)


def test_cached_policy_refuses_mismatched_lists_and_bad_batch_size(tiny):
    tok, lm = tiny
    train_last_blocks(lm, 1)
    pol = CachedLMPolicy(lm, tok, P, A, k=1)
    assert pol.logps(P[:2], A[:2]).shape == (2,)
    with pytest.raises(ValueError, match="answers: 1 answers for 2 prompts"): pol.logps(P[:2], A[:1])
    with pytest.raises(ValueError, match="expected lists of strings"): pol.logps("ab", " c")
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        CachedLMPolicy(lm, tok, P, A, k=1, batch_size=0)


def test_missing_transformers_is_named(monkeypatch):
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m in ("transformers", "tokenizers") else find(m, *a))
    with pytest.raises(ImportError, match=r"char_tokenizer: needs transformers \(pip install"): char_tokenizer()
    with pytest.raises(ImportError, match=r"tiny_llama: needs transformers \(pip install"): tiny_llama(10)
