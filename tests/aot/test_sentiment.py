"""The real-LM pieces of the AOT chapter, checked without SmolLM2: the committed data against its judge, the
preference data built from it, the cached policy and LoRA helpers on a tiny random Llama (PEFT), sampling, and
the bootstrap comparison."""
import importlib.util
import json

import numpy as np
import pytest
import torch

from papercode.aot.lm import CachedLMPolicy, CausalLMPolicy, char_tokenizer, tiny_llama
from papercode.aot.sentiment import (DATA, HELD_OUT, SentimentRecords, compare_rewards, load_sentiment_records,
                                     lora_last_blocks, reset_lora, review_prompts, sample_completions, vader_reward)
from papercode.core.testing import assert_close

HAVE = {m: importlib.util.find_spec(m) is not None for m in ("peft", "vaderSentiment", "transformers")}
need = lambda *ms: pytest.mark.skipif(not all(HAVE[m] for m in ms), reason=f"needs {', '.join(ms)} (pip install -e '.[aot]')")


def _records(rewards, held=None):
    P = len(rewards)
    return SentimentRecords(tuple(f"s{i}" for i in range(P)), tuple(f"prompt {i}" for i in range(P)),
                            tuple(tuple(f" answer {i}.{j}" for j in range(len(rewards[0]))) for i in range(P)),
                            np.array(rewards, float), tuple(held or [False] * P))


def test_committed_data_is_complete_and_split_by_subject():
    rec = load_sentiment_records()
    assert len(rec.prompts) == len(review_prompts()) == 120 and rec.rewards.shape == (120, 8)
    assert set(rec.prompts) == {p for _, p in review_prompts()}
    assert sum(rec.held_out) == 30 and all((s in HELD_OUT) == h for s, h in zip(rec.subjects, rec.held_out))
    assert all(c.strip() for cs in rec.completions for c in cs)
    assert DATA.stat().st_size < 1_000_000


@need("vaderSentiment")
def test_stored_scores_are_the_judges():
    rec = load_sentiment_records()
    got = vader_reward([c for cs in rec.completions for c in cs])
    assert np.abs(got - rec.rewards.ravel()).max() <= 5e-5
    assert vader_reward(["a wonderful film"])[0] > 0 > vader_reward(["a terrible film"])[0]
    with pytest.raises(ValueError, match="single string"): vader_reward("text")


def test_pairs_prefer_strictly_and_stay_in_their_split():
    rec = _records([[0.1, 0.5, -0.2, 0.0], [0.3, 0.3, 0.3, 0.3], [0.9, -0.9, 0.2, 0.1]], held=[False, False, True])
    tr = rec.pairs("train")
    assert tr.paired and len(tr) == 2  # prompt 1 is all ties: no pair
    assert tr.chosen == (" answer 0.1", " answer 0.0") and tr.rejected == (" answer 0.2", " answer 0.3")  # 1st and 2nd
    te = rec.pairs("test", per_prompt=1)
    assert te.chosen == (" answer 2.0",) and te.rejected == (" answer 2.1",)
    with pytest.raises(ValueError, match="split"): rec.pairs("valid")


def test_median_split_drops_the_median_and_forgets_pairs():
    rec = _records([[0.0, 0.5, -0.2, 0.0], [0.3, -0.1, 0.0, 0.0]])
    u = rec.median_split("train")  # median 0.0
    assert not u.paired
    assert sorted(u.chosen) == [" answer 0.1", " answer 1.0"] and sorted(u.rejected) == [" answer 0.2", " answer 1.1"]


def test_records_round_trip_and_bad_files(tmp_path):
    rec = _records([[0.25, -0.5], [0.0, 1.0]], held=[False, True])
    back = SentimentRecords.from_jsonl(rec.to_jsonl(tmp_path / "r.jsonl"))
    assert back.prompts == rec.prompts and back.completions == rec.completions and back.held_out == rec.held_out
    assert np.array_equal(back.rewards, rec.rewards)
    with pytest.raises(FileNotFoundError, match="build_sentiment_records"): load_sentiment_records(tmp_path / "none.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\n')
    with pytest.raises(ValueError, match="missing field"): SentimentRecords.from_jsonl(tmp_path / "bad.jsonl")
    (tmp_path / "bad2.jsonl").write_text('{"prompt": \n')
    with pytest.raises(ValueError, match="bad2.jsonl:1: not JSON"): SentimentRecords.from_jsonl(tmp_path / "bad2.jsonl")
    with pytest.raises(ValueError, match="NaN"): _records([[0.0, float("nan")]])


def test_compare_rewards_orders_and_ties():
    g = np.random.default_rng(1)
    b = g.normal(size=300)
    up = compare_rewards(b + 0.3, b, seed=0)
    assert up["win"][0] == 1.0 and up["eps"][0] == 0.0 and abs(up["diff"][0] - 0.3) < 1e-12
    down = compare_rewards(b - 0.3, b, seed=0)
    assert down["win"][0] == 0.0 and down["eps"][0] == 1.0
    same = compare_rewards(b, b, seed=0)
    assert same["win"] == (0.5, 0.5, 0.5)  # every pair a tie
    with pytest.raises(ValueError, match="NaN"): compare_rewards(np.array([0.0, np.nan]), np.zeros(2))


@pytest.fixture(scope="module")
def tiny():
    if not (HAVE["peft"] and HAVE["transformers"]): pytest.skip("needs peft and transformers (pip install -e '.[aot]')")
    tok = char_tokenizer()
    return tok, tiny_llama(len(tok), layers=4, seed=3)


@need("peft", "transformers")
def test_lora_last_blocks_adapts_only_the_last_blocks_and_starts_at_the_base(tiny):
    import copy
    tok, lm = tiny
    pm = lora_last_blocks(copy.deepcopy(lm), 2, r=2)
    names = [n for n, p in pm.named_parameters() if p.requires_grad]
    assert names and all(".layers.2." in n or ".layers.3." in n for n in names)
    P, A = ["abc", "hello"], [" d", " world"]
    assert_close(CausalLMPolicy(pm, tok).logps(P, A), CausalLMPolicy(lm, tok).logps(P, A), rtol=0, atol=0)
    with pytest.raises(ValueError, match="k: must be in 1..4"): lora_last_blocks(copy.deepcopy(lm), 5)


@need("peft", "transformers")
def test_reset_lora_is_reproducible_and_restores_the_base(tiny):
    import copy
    tok, lm = tiny
    pm = lora_last_blocks(copy.deepcopy(lm), 1, r=2)
    reset_lora(pm, 7); a = {n: p.detach().clone() for n, p in pm.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if p.requires_grad: p.add_(1.0)
    reset_lora(pm, 7)
    for n, p in pm.named_parameters():
        if p.requires_grad: assert torch.equal(p, a[n]), n
    assert all(torch.count_nonzero(p) == 0 for n, p in pm.named_parameters() if "lora_B" in n)
    with pytest.raises(ValueError, match="no LoRA"): reset_lora(lm, 0)


@need("peft", "transformers")
def test_cached_policy_equals_the_full_model_in_any_order_and_chunking(tiny):
    import copy
    tok, lm = tiny
    pm = lora_last_blocks(copy.deepcopy(lm), 2, r=2)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n: p.normal_(0, 0.2)
    P = ["abc", "hello", "a", "why?", "long prompt here"]
    A = [" d", " world!", "bc", " no", " x"]
    full = CausalLMPolicy(pm, tok).logps(P, A)
    for bs in (1, 2, 5):
        pol = CachedLMPolicy(pm, tok, P + P[:2], A + A[:2], k=2, batch_size=bs)  # duplicates cached once
        assert len(pol) == 5
        order = [3, 0, 4]
        assert_close(pol.logps([P[i] for i in order], [A[i] for i in order]), full[order], rtol=1e-5, atol=1e-5)
    with pytest.raises(KeyError, match="not cached"): pol.logps(["zzz"], [" y"])
    with pytest.raises(ValueError, match="block 2 has trainable parameters"): CachedLMPolicy(pm, tok, P, A, k=1)
    with pytest.raises(ValueError, match="3 answers for 5 prompts"): CachedLMPolicy(pm, tok, P, A[:3], k=2)


@need("transformers")
def test_sampling_is_exact_length_seeded_and_leaves_the_global_state(tiny):
    tok, lm = tiny
    state, side = torch.random.get_rng_state(), tok.padding_side
    a = sample_completions(lm, tok, ["abc", "hello there"], n_samples=3, max_new_tokens=5, seed=4)
    assert torch.equal(state, torch.random.get_rng_state())
    b = sample_completions(lm, tok, ["abc", "hello there"], n_samples=3, max_new_tokens=5, seed=4)
    c = sample_completions(lm, tok, ["abc", "hello there"], n_samples=3, max_new_tokens=5, seed=5)
    assert a == b and a != c and [len(x) for x in a] == [3, 3]
    assert tok.padding_side == side  # restored after left-padded generation
    with pytest.raises(ValueError, match="n_samples"): sample_completions(lm, tok, ["a"], n_samples=0)


@need("peft", "transformers", "vaderSentiment")
def test_fresh_adapters_sample_the_base_continuations_at_zero_kl(tiny):
    import copy
    from papercode.aot.sentiment import evaluate_policy
    tok, lm = tiny
    pm = reset_lora(lora_last_blocks(copy.deepcopy(lm), 2, r=2), 0)
    e = evaluate_policy(pm, tok, ["abc", "hello"], n_samples=2, max_new_tokens=4, seed=1)
    with pm.disable_adapter(): b = evaluate_policy(pm, tok, ["abc", "hello"], n_samples=2, max_new_tokens=4, seed=1, kl=False)
    assert e.kl == 0.0 and e.completions == b.completions and np.array_equal(e.rewards, b.rewards)


@need("peft", "transformers", "vaderSentiment")
def test_align_sentiment_traces_kl_and_score_without_changing_training(tiny):
    from types import SimpleNamespace
    from papercode.aot.sentiment import align_sentiment
    tok, lm = tiny
    rng = np.random.default_rng(0)
    rec = _records(rng.normal(size=(8, 4)).round(2).tolist(), held=[False] * 6 + [True] * 2)
    llm = SimpleNamespace(model=lm, tokenizer=tok)
    kw = dict(losses=("dpo", "uaot"), seeds=(0,), steps=6, sort_batch=4, lr=0.05, k=2, r=2, eval_samples=2, log_every=3,
              progress=False)
    plain = align_sentiment(rec, llm, **kw)
    traced = align_sentiment(rec, llm, eval_every=2, **kw)
    for a, b in zip(plain, traced):
        assert a.trace is None and a.loss == b.loss
        assert torch.equal(a.train.loss, b.train.loss)  # evaluating between steps leaves training bit-identical
        assert a.policy.completions == b.policy.completions and a.policy.kl == b.policy.kl
        t = b.trace
        assert t["step"].tolist() == [0, 2, 4, 6]
        assert t["kl"][0] == 0 and t["score"][0] == pytest.approx(b.base.rewards.mean())
        assert t["kl"][-1] == b.policy.kl and t["score"][-1] == pytest.approx(b.policy.rewards.mean())
        assert np.isfinite(t["kl"]).all() and (t["kl"][1:] != 0).all()  # the policy moved (a Monte Carlo KL can be < 0)
    with pytest.raises(ValueError, match="eval_every"): align_sentiment(rec, llm, eval_every=0, **kw)


def test_lm_matched_reads_each_trace_at_the_smallest_final_kl():
    from types import SimpleNamespace
    from papercode.aot.experiments import lm_matched
    run = lambda kl, score: SimpleNamespace(trace=dict(kl=np.array(kl, float), score=np.array(score, float)))
    by = dict(dpo=[run([0, 1, 2], [0, 1, 2]), run([0, 3], [0, 3])],
              paot=[run([0, 2, 4], [0, 1, 3]), run([0, 1, 5], [0, 4, 4])])
    at, target = lm_matched(by)
    assert target.tolist() == [2, 3]  # per seed, the smaller of the two final KLs
    assert at["dpo"].tolist() == [2, 3]
    assert at["paot"].tolist() == [1, 4]  # interpolated on paot's own path: KL 2 is step 1; KL 3 lies on the flat part


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n_boot: expected a positive integer"): compare_rewards(np.ones(5), np.zeros(5), n_boot=0)
    with pytest.raises(ValueError, match="n_boot: expected a positive integer"): compare_rewards(np.ones(5), np.zeros(5), n_boot=-3)
    with pytest.raises(ValueError, match=r"texts: entry 1 is not a string \(NoneType\)"): vader_reward(["fine", None])
