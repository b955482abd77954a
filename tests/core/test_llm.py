"""The offline LLM path: model present under CI, cloze scoring equals full-sequence scoring, cache round trip."""
import pytest
import torch

from papercode.core.models.llm import cached_scores, llm_missing, load_llm, score_choices
from papercode.core.testing import assert_close, require

QS = ["The opposite of hot is", "The colour of fresh grass is", "A dog is an"]
OPTS = [[" cold", " warm", " blue"], [" green", " loud"], [" animal", " instrument", " ocean", " idea"]]


@pytest.fixture(scope="module")
def llm():
    why = llm_missing()
    require(why is None, f"the offline LLM is not installed: {why}")
    return load_llm()


def _full_sequence_logprob(llm, prompt, option):
    p = llm.tokenizer(prompt, return_tensors="pt").input_ids
    o = llm.tokenizer(option, add_special_tokens=False).input_ids
    with torch.no_grad():
        lp = torch.log_softmax(llm.model(torch.cat([p, torch.tensor([o])], 1)).logits[0].float(), -1)
    return sum(lp[p.shape[1] - 1 + t, o[t]].item() for t in range(len(o)))


def test_cloze_scores_equal_full_sequence_log_likelihoods(llm):
    sc = score_choices(llm, QS, OPTS, progress=False)
    assert sc.logits.shape == (3, 4) and sc.features.shape == (3, 576)
    for n, (q, opts) in enumerate(zip(QS, OPTS)):
        ref = torch.tensor([_full_sequence_logprob(llm, q, o) for o in opts])
        assert_close(sc.logits[n, :len(opts)], ref, rtol=1e-4, atol=1e-4, msg=q)
        assert torch.isinf(sc.logits[n, len(opts):]).all()
    mean = score_choices(llm, QS[:1], OPTS[:1], normalize="mean", progress=False)
    lens = torch.tensor([len(llm.tokenizer(o, add_special_tokens=False).input_ids) for o in OPTS[0]])
    assert_close(mean.logits[0, :3] * lens, sc.logits[0, :3], rtol=1e-5)


def test_batched_prompts_equal_one_prompt_at_a_time(llm):
    "Left-padded batches give each prompt's own scores and features (prompts of different token lengths)."
    qs = QS + ["Question: Which of these is a fruit that grows on trees in orchards?\nAnswer:"]
    opts = OPTS + [[" an apple", " a carrot", " a potato"]]  # multi-token options continue a padded cache
    lens = {len(llm.tokenizer(q).input_ids) for q in qs}
    assert len(lens) > 1, "the prompts must differ in length, or no padding is tested"
    batch = score_choices(llm, qs, opts, progress=False)  # one batch of 4 (default batch_size 16)
    pairs = score_choices(llm, qs, opts, batch_size=2, progress=False)
    for n in range(len(qs)):
        single = score_choices(llm, qs[n:n + 1], opts[n:n + 1], batch_size=1, progress=False)
        k = len(opts[n])
        for got in (batch, pairs):
            torch.testing.assert_close(got.logits[n, :k], single.logits[0, :k], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got.features[n], single.features[0], rtol=1e-5, atol=1e-4)
        assert torch.isinf(batch.logits[n, k:]).all()


@pytest.mark.parametrize("bs", [0, -1, 1.5, True])
def test_bad_batch_size(llm, bs):
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        score_choices(llm, QS, OPTS, batch_size=bs, progress=False)


def test_features_are_the_last_prompt_token_hidden_state(llm):
    sc = score_choices(llm, QS[:2], OPTS[:2], progress=False)
    p = llm.tokenizer(QS[1], return_tensors="pt").input_ids
    with torch.no_grad():
        h = llm.model(p, output_hidden_states=True).hidden_states[-1][0, -1]
    assert_close(sc.features[1], h, rtol=1e-4, atol=1e-4)


def test_the_model_knows_easy_answers(llm):
    sc = score_choices(llm, QS, OPTS, progress=False)
    assert sc.logits.argmax(-1).tolist() == [0, 0, 0], sc.logits  # cold, green, animal


def test_cache_round_trip_and_key(llm, tmp_path):
    a = cached_scores(QS, OPTS, task="t", template="plain", cache_dir=tmp_path, progress=False)
    b = cached_scores(QS, OPTS, task="t", template="plain", cache_dir=tmp_path, progress=False)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.features, b.features)
    cached_scores(QS, OPTS, task="t", template="other", cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 2


@pytest.mark.parametrize("prompts,options,match", [
    ([], [], "prompts: is empty"),
    ("a prompt", [[" a", " b"]], "prompts: expected a list"),
    (["q"], [[" a"]], "at least 2 options"),
    (["q", "r"], [[" a", " b"]], "options: 1 option lists for 2 prompts"),
    (["q"], [[" a", ""]], "empty option"),
])
def test_bad_input(prompts, options, match):
    with pytest.raises(ValueError, match=match):
        cached_scores(prompts, options, task="t", template="x", cache_dir="/nonexistent")


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'gpt9'"):
        llm_missing("gpt9")
