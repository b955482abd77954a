"LLM study plumbing on the shipped scores: leave-one-family-out invariants, stored study, sensitivity, errors."
import json

import pytest
import torch

from papercode.thermometer.benchmark import LOOResult
from papercode.thermometer.llm_eval import (efficiency, load_study, lofo, paper_table, save_study,
                                            temperature_slider_figure, unlabelled_sensitivity)
from papercode.thermometer.metrics import ece, probs_from_logits
from papercode.thermometer.tasks import load_benchmark
from papercode.thermometer.temperature import temperature_scale


@pytest.fixture(scope="module")
def bench():
    return load_benchmark()


def test_lofo_rows_match_direct_computation(bench):
    (res,) = lofo(bench, seeds=(0,), held_out=["parity", "roman"], steps=50, keep_models=True)
    per = {}
    for r in res.rows: per.setdefault(r["task"], {})[r["method"]] = r
    for fam in ("parity", "roman"):
        s = bench[fam]
        # the oracle row is TS fitted on the family's own labels, scored on them
        T = temperature_scale(s.logits, s.labels).temperature
        assert per[fam]["ts_oracle"]["temperature"] == pytest.approx(T)
        assert per[fam]["ts_oracle"]["ece"] == pytest.approx(ece(probs_from_logits(s.logits.double(), T), s.labels).item())
        assert per[fam]["vanilla"]["temperature"] == 1.0
        assert len({round(r["accuracy"], 12) for r in per[fam].values()}) == 1  # accuracy never changes
    rows = unlabelled_sensitivity(res, bench, sizes=(1, 96), n_draws=3)
    full = [r for r in rows if r["n"] == 96]
    for r in full:  # N = all prompts: the same temperature as the leave-one-out row
        assert r["T_mean"] == pytest.approx(per[r["family"]]["thermometer"]["temperature"], rel=1e-5)
    eff = efficiency(res, bench, {"a/parity": dict(seconds=10.0, n=96)}, repeats=3)
    assert 0 < eff["ratio"] < 1 and eff["llm_s_per_task"] == 10.0


def test_stored_study_is_complete_and_consistent(bench):
    st = load_study()
    fams = st["config"]["families"]
    assert len(fams) == 36 and len(st["results"]) == len(st["config"]["seeds"]) >= 3
    for r in st["results"]:
        assert {row["task"] for row in r.rows} == set(fams)
        for row in r.rows:
            if row["method"] == "vanilla":  # seed-independent rows can be recomputed from the shipped scores
                s = bench[row["task"]]
                assert row["ece"] == pytest.approx(ece(probs_from_logits(s.logits.double()), s.labels).item(), abs=1e-5)
    table = paper_table(st["results"])
    assert [r["method"] for r in table][0] == "vanilla" and "±" in table[0]["ece"]


def test_study_roundtrip(tmp_path):
    st = load_study()
    raw = {k: v for k, v in st.items() if k != "results"}
    again = load_study(save_study(raw, tmp_path / "s.json"))
    assert again["config"] == st["config"] and [r.rows for r in again["results"]] == [r.rows for r in st["results"]]


def test_bad_study_and_sensitivity_inputs(tmp_path, bench):
    with pytest.raises(FileNotFoundError, match="no study"):
        load_study(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt study file"):
        load_study(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(ValueError, match="is not a study"):
        load_study(tmp_path / "other.json")
    empty = LOOResult(rows=[], seed=0, fit_seconds=0.0, predict_seconds=0.0)
    with pytest.raises(ValueError, match="has no models"):
        unlabelled_sensitivity(empty, bench)
    with pytest.raises(ValueError, match="has no models"):
        efficiency(empty, bench, {})


def test_slider_figure_frames(bench):
    fig = temperature_slider_figure(bench["capital"], {"vanilla": 1.0, "thermometer": 2.0}, grid=[0.5, 1.0, 2.0, 4.0])
    steps = fig.layout.sliders[0].steps
    assert len(steps) == 4 and fig.layout.sliders[0].active == 1  # starts at tau = 1
    for k, st in enumerate(steps):  # each step shows the static traces and exactly its own three
        vis = st.args[0]["visible"]
        assert sum(vis) == 4 + 3 and all(vis[:4])


def test_pca_refit_ignores_the_held_out_family():
    "The ablation's refitted components come from the training families only: changing the held-out one changes nothing else."
    from papercode.thermometer.llm_eval import _pca_refit
    from papercode.thermometer.model import CalibTask
    g = torch.Generator().manual_seed(0)
    mk = lambda n, s=1.0: CalibTask(n, torch.randn(20, 3, generator=g), s * torch.randn(20, 10, generator=g),
                                    torch.randint(0, 3, (20,), generator=g))
    train, held = [mk("a"), mk("b")], mk("c")
    other = CalibTask("c", held.logits, 100 * held.features + 7, held.labels)
    tr1, te1 = _pca_refit(train, [held], 4)
    tr2, te2 = _pca_refit(train, [other], 4)
    for x, y in zip(tr1, tr2): assert torch.equal(x.features, y.features)
    assert tr1[0].features.shape == (20, 4) and not torch.allclose(te1[0].features, te2[0].features)
    allf = torch.cat([t.features for t in tr1])
    torch.testing.assert_close(allf.mean(0), torch.zeros(4), atol=1e-5, rtol=0)  # centred on the training families


def test_ablation_on_two_families_runs_and_keeps_baselines():
    from papercode.thermometer.llm_eval import ablation_table, thermometer_ablation
    bench = load_benchmark(["capital", "parity", "plural"])
    ab = thermometer_ablation(bench, {"stored": dict(steps=20), "pca_refit_8": dict(steps=20, pca_refit=8),
                                      "in_sample": dict(steps=20, in_sample=True)}, held_out=["capital", "parity"])
    assert set(ab["variants"]) == {"stored", "pca_refit_8", "in_sample"}
    for v in ab["variants"].values():
        assert set(v["rows"]) == {"capital", "parity"} and all(r["T"] > 0 for r in v["rows"].values())
    assert ab["variants"]["pca_refit_8"]["config"]["pca_refit"] == 8
    assert len(ablation_table(ab)) == 3 + 3
