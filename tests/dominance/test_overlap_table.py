"""The second AlpacaEval table ("overlap": BLEU, chrF, ROUGE-1/2/L, a MiniLM token F1 and length agreement against
the reference answer) is the file its README describes, agrees with the
first table where both measure the same thing (derived independently), loads through the same loader, and runs
through the same claim-4 study."""
import hashlib
import importlib.util
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from papercode.core.utils import torch_threads
from papercode.dominance.experiments import DominanceConfig, alpacaeval_tau
from papercode.dominance.ranking import (
    ALPACAEVAL_TABLES, OVERLAP_METRICS, kendall_tau, load_alpacaeval, relative_ranking)

DATA = resources.files("papercode.dominance").joinpath("data")
FILE = "alpacaeval_7b_overlap_metrics.csv"
SCRIPT = Path(__file__).with_name("derive_alpacaeval_overlap_metrics.py")


@pytest.fixture(scope="module")
def tables():
    return load_alpacaeval(), load_alpacaeval(table="overlap")


def test_overlap_file_matches_readme_checksum_and_names_its_script():
    readme = DATA.joinpath("README.md").read_text(encoding="utf-8")
    digest = hashlib.sha256(DATA.joinpath(FILE).read_bytes()).hexdigest()
    assert f"{digest}  {FILE}" in readme
    assert f"tests/dominance/{SCRIPT.name}" in readme and SCRIPT.exists()
    assert ALPACAEVAL_TABLES["overlap"] == (FILE, OVERLAP_METRICS)


def test_overlap_table_shape_range_and_orientation(tables):
    first, ov = tables
    assert ov.name == "overlap" and first.name == "embedding"
    assert ov.scores.shape == (805, 12, 7) and not np.isnan(ov.scores).any()
    assert tuple(ov.metrics) == OVERLAP_METRICS and set(ov.metrics.values()) == {"higher"}
    assert ov.models == first.models and ov.leaderboard == first.leaderboard
    assert (ov.scores[..., :6] >= 0).all() and (ov.scores[..., :6] <= 1).all()  # similarities in [0, 1]
    assert (ov.scores[..., 6] <= 0).all()  # -|log length ratio|
    np.testing.assert_array_equal(ov.table["dataset"], first.table["dataset"])


def test_overlap_agrees_with_the_first_table_where_both_measure_the_same(tables):
    "ROUGE-L (rouge-score here, an exact bit-parallel LCS there) and length agreement equal the first table's m3, m4."
    first, ov = tables
    np.testing.assert_allclose(ov.scores[..., 4], first.scores[..., 2], atol=1.5e-6, rtol=0)
    np.testing.assert_allclose(ov.scores[..., 6], first.scores[..., 3], atol=1.5e-6, rtol=0)
    # the other metrics are not copies of the first table's embedding similarity
    for c in range(6):
        assert np.abs(ov.scores[..., c] - first.scores[..., 0]).max() > 0.05


def test_unknown_or_missing_table_is_refused(tmp_path):
    with pytest.raises(ValueError, match="table: expected one of"):
        load_alpacaeval(table="bleu")
    (tmp_path / "alpacaeval_7b_leaderboard.csv").write_text(DATA.joinpath("alpacaeval_7b_leaderboard.csv").read_text())
    with pytest.raises(ValueError, match=f"{FILE} not found"):
        load_alpacaeval(tmp_path, table="overlap")
    lines = DATA.joinpath(FILE).read_text().splitlines()
    (tmp_path / FILE).write_text("\n".join([lines[0].replace("r2_chrf", "chrf")] + lines[1:20]))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['r2_chrf'\]"):
        load_alpacaeval(tmp_path, table="overlap")


def test_study_refuses_a_table_with_other_prompts(tables):
    _, ov = tables
    cut = replace(ov, scores=ov.scores[:400])
    with pytest.raises(ValueError, match="expected 805 prompts"):
        alpacaeval_tau(DominanceConfig.tiny(), table=cut)


@pytest.fixture(scope="module")
def small_overlap_tau():
    cfg = replace(DominanceConfig.tiny(), tau_ns=(25, 50), tau_pool=50, tau_reps=6, tau_boot=10)
    with torch_threads(1):  # module scope runs outside conftest's one-thread fixture
        return cfg, alpacaeval_tau(cfg, seed=2, table="overlap")


def test_overlap_study_point_is_the_plain_ranking(small_overlap_tau, tables):
    "Same code path as the first table: the full-pool point is relative_ranking on the pool, all seven metrics."
    cfg, res = small_overlap_tau
    _, ov = tables
    assert res["table"] == "overlap" and res["metrics"] == OVERLAP_METRICS
    pool = torch.randperm(805, generator=torch.Generator().manual_seed(2 + 13))[:50].sort().values.numpy()
    with torch_threads(1):
        r = relative_ranking(ov.scores[pool], metrics=ov.metrics, models=ov.models, n_boot=cfg.tau_boot, seed=2)
    assert res["ranking"] == r.ranking
    assert res["summary"]["multivariate (Borda)"]["point"] == pytest.approx(kendall_tau(r.ranking, ov.lc_ranking))
    assert {f"univariate {m}" for m in OVERLAP_METRICS} <= set(res["diffs"])
    for m, d in res["summary"].items():
        for n in cfg.tau_ns:
            mean, lo, hi = d[n]
            assert -1 <= lo <= mean <= hi <= 1, (m, n, d[n])
    assert all(len(v) == cfg.tau_reps for v in res["draws"].values())


def test_derivation_script_metrics_on_known_cases():
    "The script's length agreement and greedy-matching F1 (BERTScore without idf) on cases computed by hand."
    spec = importlib.util.spec_from_file_location("derive_overlap", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # stdlib imports only at module level
    assert list(mod.METRICS) == list(OVERLAP_METRICS)
    assert mod.length_agreement("ab", "abcd") == pytest.approx(-np.log(2))
    assert mod.length_agreement("", "") == 0.0
    f1 = mod.GreedyTokenF1.f1
    e = torch.eye(3, dtype=torch.float64)
    assert f1(None, e, e) == pytest.approx(1.0)
    x = e[:1]  # one candidate token equal to one of three reference tokens: P = 1, R = 1/3, F = 0.5
    assert f1(None, x, e) == pytest.approx(0.5)
    assert f1(None, e[:0], e) == 0.0
    g = torch.Generator().manual_seed(0)
    a, b = (torch.nn.functional.normalize(torch.randn(n, 5, generator=g, dtype=torch.float64), dim=-1) for n in (4, 6))
    C = [[float(a[i] @ b[j]) for j in range(6)] for i in range(4)]  # brute force, eq. (1)-(3) of Zhang et al.
    P = sum(max(r) for r in C) / 4
    R = sum(max(C[i][j] for i in range(4)) for j in range(6)) / 6
    assert f1(None, a, b) == pytest.approx(2 * P * R / (P + R), rel=1e-12)
