"""Relative ranking: invariances, consistency of wins/Borda/table, input formats, bad input, the shipped data."""
import hashlib
import warnings
from importlib import resources

import numpy as np
import pytest
import torch

from papercode.core.testing import assert_close
from papercode.dominance.ranking import as_score_array, kendall_tau, load_alpacaeval, relative_ranking

f64 = torch.float64
M3 = {"a": "higher", "b": "higher", "c": "higher"}


def _chain(seed, n=80, k=4, step=0.3):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, 3, generator=g, dtype=f64)
    return base + 0.7 * torch.randn(n, k, 3, generator=g, dtype=f64) + step * torch.arange(k, dtype=f64)[None, :, None]


def test_model_permutation_equivariance():
    S = _chain(0)
    names = ["m0", "m1", "m2", "m3"]
    r = relative_ranking(S, metrics=M3, models=names, n_boot=30)
    perm = [2, 0, 3, 1]
    rp = relative_ranking(S[:, perm], metrics=M3, models=[names[i] for i in perm], n_boot=30)
    assert rp.ranking == r.ranking
    assert_close(rp.ratios[1:, 1:].nan_to_num(7), r.ratios[perm][:, perm][1:, 1:].nan_to_num(7), rtol=1e-10)
    assert_close(rp.se, r.se[perm][:, perm], rtol=1e-8)  # same prompt resamples, permuted models


def test_prompt_permutation_invariance_of_point_estimates():
    S = _chain(1)
    r = relative_ranking(S, metrics=M3, models=list("ABCD"), n_boot=20)
    rp = relative_ranking(S[torch.randperm(80, generator=torch.Generator().manual_seed(2))], metrics=M3,
                          models=list("ABCD"), n_boot=20)
    off = ~torch.eye(4, dtype=torch.bool)
    assert_close(rp.ratios[off], r.ratios[off], rtol=1e-9)


def test_consistency_of_outputs():
    S = _chain(3, n=120)
    r = relative_ranking(S, metrics=M3, models=list("ABCD"), n_boot=60, alpha=0.1)
    k = 4
    assert torch.equal(r.borda, r.wins.sum(1))
    assert len(r.table) == int(r.wins.sum())
    for row in r.table:
        i, j = r.models.index(row["winner"]), r.models.index(row["loser"])
        assert row["upper"] < 0 and row["delta"] < 0 and bool(r.wins[i, j])
    # ranking: sorted by Borda, ties by one-vs-all ratio
    keys = [(-int(r.borda[r.models.index(m)]), float(r.one_vs_all[r.models.index(m)])) for m in r.ranking]
    assert keys == sorted(keys)
    assert_close(r.one_vs_all.mean(), 0.5, atol=1e-12)  # sum of all ε_ij over ordered pairs = k(k-1)/2
    assert r.boot_one_vs_all.shape == (60, k)
    assert_close(r.se, r.se.T, rtol=1e-12)


def test_univariate_exact_path():
    "One metric with the squared hinge and λ = 0 is the univariate relative test on del Barrio's ratio."
    from papercode.dominance.univariate import almost_dominance_ratio
    S = _chain(4)[:, :, :1]
    r = relative_ranking(S, metrics={"a": "higher"}, models=list("ABCD"), cost="sqhinge", lam=0, n_boot=20,
                         standardize=None)
    assert_close(r.ratios[0, 1], almost_dominance_ratio(S[:, 0, 0], S[:, 1, 0]), rtol=1e-12)


def test_dataframe_equals_dict_and_array():
    pd = pytest.importorskip("pandas")
    S = _chain(5, n=30, k=3)
    long = {"prompt_id": np.repeat(np.arange(30), 3), "model": np.tile(["x", "y", "z"], 30),
            **{m: S[:, :, c].reshape(-1).numpy() for c, m in enumerate("abc")}}
    a1 = as_score_array(S, metrics=M3, models=["x", "y", "z"]).scores
    a2 = as_score_array(long, metrics=M3).scores
    a3 = as_score_array(pd.DataFrame(long).sample(frac=1.0, random_state=0), metrics=M3, models=["x", "y", "z"])
    assert_close(a2, a1, rtol=0); assert a3.models == ("x", "y", "z")
    order = np.argsort(np.asarray(a3.prompts))
    assert_close(a3.scores[order], a1, rtol=1e-12)  # rows follow the table's first appearance of each prompt
    a4 = as_score_array({"x": S[:, 0], "y": S[:, 1], "z": S[:, 2]}, metrics=M3)
    assert_close(a4.scores, a1, rtol=0)


def test_rank_standardisation_is_pooled_and_increasing():
    S = _chain(6, n=50, k=3)
    A = as_score_array(S, metrics=M3, models=list("xyz")).scores
    flat, fa = S.reshape(-1, 3), A.reshape(-1, 3)
    for c in range(3):  # same order of all 150 values per metric, mean 0, sd 1
        assert torch.equal(torch.argsort(flat[:, c]), torch.argsort(fa[:, c]))
        assert_close(fa[:, c].mean(), 0.0, atol=1e-12); assert_close(fa[:, c].std(), 1.0, rtol=1e-12)
    low = as_score_array(-S, metrics={"a": "lower", "b": "lower", "c": "lower"}, models=list("xyz")).scores
    assert_close(low, A, rtol=0)


def test_missing_rows_are_nan():
    S = _chain(7, n=20, k=2)
    long = {"prompt_id": list(range(20)) + list(range(19)), "model": ["x"] * 20 + ["y"] * 19,
            **{m: S[:, 0, c].tolist() + S[:19, 1, c].tolist() for c, m in enumerate("abc")}}
    with pytest.raises(ValueError, match="1 of 20 prompts have NaN or missing scores"):
        as_score_array(long, metrics=M3)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        sa = as_score_array(long, metrics=M3, nan="drop")
    assert sa.n_dropped == 1 and sa.scores.shape == (19, 2, 3) and "dropped 1 of 20" in str(w[0].message)


@pytest.mark.parametrize("bad,match", [
    (dict(metrics=("a", "b", "c")), "orientation missing"),
    (dict(metrics={"a": "higher", "b": "higher", "c": "max"}), "orientation of 'c'"),
    (dict(models=["A", "B"]), "2 names for 4 models"),
    (dict(models=["A", "A", "B", "C"]), "duplicate names"),
    (dict(alpha=1.5), "alpha: must lie in"),
    (dict(nan="ignore"), "nan: expected"),
])
def test_bad_arguments(bad, match):
    kw = dict(metrics=M3, models=list("ABCD"), n_boot=20)
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        relative_ranking(_chain(8), **kw)


def test_infinite_and_constant_scores():
    S = _chain(9)
    S2 = S.clone(); S2[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="infinite"):
        relative_ranking(S2, metrics=M3, models=list("ABCD"))
    S3 = S.clone(); S3[..., 2] = 1.0
    with pytest.raises(ValueError, match=r"\['c'\] constant"):
        relative_ranking(S3, metrics=M3, models=list("ABCD"))


def test_kendall_tau():
    assert kendall_tau("abcd", "abcd") == 1.0 and kendall_tau("abcd", "dcba") == -1.0
    assert kendall_tau(["a", "b", "c"], ["b", "a", "c"]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="same models"):
        kendall_tau("abc", "abd")


def test_shipped_data_matches_readme_checksums():
    readme = resources.files("papercode.dominance").joinpath("data", "README.md").read_text(encoding="utf-8")
    for name in ("alpacaeval_7b_metrics.csv", "alpacaeval_7b_leaderboard.csv"):
        digest = hashlib.sha256(resources.files("papercode.dominance").joinpath("data", name).read_bytes()).hexdigest()
        assert f"{digest}  {name}" in readme
    ae = load_alpacaeval()
    assert ae.scores.shape == (805, 12, 4) and not np.isnan(ae.scores).any()
    assert ae.leaderboard["merlinite-7B-AOT"]["length_controlled_winrate"] == pytest.approx(31.721885)
    assert ae.lc_ranking[0] == "merlinite-7B-AOT" and ae.lc_ranking[-1] == "llama-2-7b-chat-hf"
    assert (ae.scores[..., 3] <= 0).all()  # m4 = -|log length ratio|


def test_bootstrap_replicates_are_explicit_resamples():
    "Each replicate's one-vs-all ratios equal those of the explicitly resampled prompts (violation_ratio per pair)."
    from papercode.dominance.inference import bootstrap_weights
    from papercode.dominance.violation import violation_ratio
    S = _chain(10, n=40, k=3)
    r = relative_ranking(S, metrics=M3, models=list("ABC"), n_boot=10, seed=4, standardize=None, lam=0.5, tol=1e-12)
    W = bootstrap_weights(40, 10, generator=torch.Generator().manual_seed(4))
    for b in (0, 3, 9):
        idx = torch.repeat_interleave(torch.arange(40), (W[b] * 40).round().long())
        e = [np.mean([violation_ratio(S[idx, i], S[idx, j], lam=0.5, tol=1e-12).ratio.item() for j in range(3) if j != i])
             for i in range(3)]
        assert_close(r.boot_one_vs_all[b], torch.tensor(e, dtype=f64), rtol=1e-8)


def _three(g, n, d, deltas):
    u = torch.randn(n, 1, d, generator=g, dtype=f64)
    return (u + torch.randn(n, 3, d, generator=g, dtype=f64)) / 2 ** 0.5 + torch.tensor(deltas, dtype=f64)[None, :, None]


def test_power_with_shifted_models():
    "With clearly shifted models (k = 3) every true relation is declared at n = 200, and in the right direction."
    g = torch.Generator().manual_seed(140)
    for s in range(3):
        r = relative_ranking(_three(g, 200, 3, (0.0, 0.4, 0.8)), metrics=M3, models=list("abc"), n_boot=50, seed=s)
        assert bool(r.wins[2, 1]) and bool(r.wins[1, 0]) and bool(r.wins[2, 0])
        assert int(r.wins.sum()) == 3 and r.ranking == ("c", "b", "a")


@pytest.mark.parametrize("n,sims", [pytest.param(50, 40), pytest.param(200, 200, marks=pytest.mark.slow)])
def test_type_one_error_exchangeable(n, sims):
    "Under exchangeable models (k = 3) the family-wise rate of any declared win stays within binomial tolerance of α."
    from scipy.stats import binom
    g = torch.Generator().manual_seed(141 + n)
    alpha = 0.05
    fp = sum(bool(relative_ranking(_three(g, n, 3, (0.0, 0.0, 0.0)), metrics=M3, models=list("abc"), n_boot=50,
                                   seed=s, alpha=alpha).wins.any()) for s in range(sims))
    limit = binom.ppf(0.99, sims, alpha)  # 99% one-sided binomial limit at the nominal level
    assert fp <= limit, (fp, limit, sims)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_device_argument(device):
    "Solving on `device` gives the CPU numbers (results come back on the CPU)."
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    S = _chain(11, n=60, k=3)
    r0 = relative_ranking(S, metrics=M3, models=list("ABC"), n_boot=20, tol=1e-10)
    r1 = relative_ranking(S, metrics=M3, models=list("ABC"), n_boot=20, tol=1e-10, device=device)
    off = ~torch.eye(3, dtype=torch.bool)
    assert r1.ratios.device.type == "cpu"
    assert_close(r1.ratios[off], r0.ratios[off], rtol=1e-9); assert_close(r1.se, r0.se, rtol=1e-7)


def test_public_api_importable_from_package():
    import papercode.dominance as dom
    for name in ("violation_ratio", "dominance_test", "relative_ranking", "almost_dominance_ratio",
                 "first_order_dominance", "load_alpacaeval", "ViolationResult", "DominanceTest", "RankingResult"):
        assert callable(getattr(dom, name)), name


# --- the practitioner's interface: clamp, ties, Holm, weights, intervals, tables, heatmap, one n_boot default ---

def test_ratios_clamped_to_unit_interval():
    "A model dominated by far: the dual objective came out at -4e-18, a ratio below 0 (before the clamp)."
    g = torch.Generator().manual_seed(0)
    S = torch.randn(20, 3, 2, generator=g, dtype=f64)
    S[:, 1] -= 4; S[:, 2] -= 8
    r = relative_ranking(S, metrics={"a": "higher", "b": "higher"}, models=list("ABC"), n_boot=10, cost="hinge",
                         lam=0.2, standardize=None)
    off = ~torch.eye(3, dtype=torch.bool)
    assert bool(((r.ratios[off] >= 0) & (r.ratios[off] <= 1)).all())
    assert float(r.boot_one_vs_all.min()) >= 0.0 and float(r.boot_one_vs_all.max()) <= 1.0
    assert float(r.one_vs_all_ci.min()) >= 0.0
    assert r.ranking == ("A", "B", "C") and r.rank.tolist() == [1, 2, 3]


def test_ties_are_reported_not_ordered_by_input():
    "Two copies of one model: same rank whatever their input order, listed in `ties`, marked '=' in the summary."
    S = _chain(12, n=60, k=3)
    S = torch.cat([S, S[:, 1:2]], 1)  # model 'b2' is a copy of 'b'
    for names in (["a", "b", "c", "b2"], ["a", "b2", "c", "b"]):
        T = S if names[1] == "b" else S[:, [0, 3, 2, 1]]
        r = relative_ranking(T, metrics=M3, models=names, n_boot=20)
        i, j = names.index("b"), names.index("b2")
        assert int(r.rank[i]) == int(r.rank[j])
        assert any({"b", "b2"} <= set(g) for g in r.ties)
        assert r.ratios[i, j] == 0.5 and r.delta[i, j] == 0.0
        lines = {ln.split()[1]: ln.split()[0] for ln in r.summary().splitlines()[2:] if len(ln.split()) > 2}
        assert lines["b"] == lines["b2"] and lines["b"].endswith("=")
    # a clean chain has no ties
    rc = relative_ranking(_chain(3, n=120), metrics=M3, models=list("ABCD"), n_boot=30)
    if len(set(rc.borda.tolist())) == 4:
        assert rc.ties == ()


def _holm_reference(p, alpha):
    "Holm's procedure as written in Holm (1979): reject the sorted hypotheses while p_(m) <= alpha / (M - m + 1)."
    M = len(p)
    reject = np.zeros(M, dtype=bool)
    for m, i in enumerate(np.argsort(p, kind="stable")):
        if p[i] <= alpha / (M - m):
            reject[i] = True
        else:
            break
    return reject


def test_holm_adjust_against_the_step_down_definition():
    from papercode.dominance.ranking import holm_adjust
    rng = np.random.default_rng(0)
    for _ in range(200):
        M = int(rng.integers(1, 15))
        p = rng.uniform(0, 0.05, M) ** rng.uniform(0.5, 2)
        p[rng.integers(0, M)] = p[0]  # ties
        adj = holm_adjust(torch.tensor(p)).numpy()
        for alpha in (0.01, 0.05, 0.1):
            np.testing.assert_array_equal(adj <= alpha, _holm_reference(p, alpha))
        assert (adj >= p).all() and (adj <= np.minimum(1, M * p) + 1e-15).all()
    assert_close(holm_adjust(torch.tensor([0.01, 0.04, 0.03])), torch.tensor([0.03, 0.06, 0.06], dtype=f64))


def test_holm_in_relative_ranking():
    S = _chain(13, n=80, k=4, step=0.15)
    rb = relative_ranking(S, metrics=M3, models=list("ABCD"), n_boot=40)
    rh = relative_ranking(S, metrics=M3, models=list("ABCD"), n_boot=40, correction="holm")
    off = ~torch.eye(4, dtype=torch.bool)
    assert_close(rh.p, rb.p, rtol=0) and rh.correction == "holm"
    ref = _holm_reference(rh.p[off].numpy(), 0.05)
    np.testing.assert_array_equal(rh.wins[off].numpy(), ref)
    assert bool((rh.wins | ~rb.wins).all())  # Holm keeps every Bonferroni win
    np.testing.assert_array_equal(rb.wins[off].numpy(), rb.p[off].numpy() < 0.05 / 12)


def test_weights_equal_a_repeated_metric():
    "Weights (2, 1, 1) are the ratio of four metrics with the first one twice: OT_{ac, a lam} = a OT_{c, lam}."
    S = _chain(14, n=60, k=3)
    rw = relative_ranking(S, metrics=M3, models=list("xyz"), n_boot=15, weights={"a": 2, "b": 1, "c": 1})
    r4 = relative_ranking(torch.cat([S, S[..., :1]], -1), metrics={**M3, "a2": "higher"}, models=list("xyz"), n_boot=15)
    off = ~torch.eye(3, dtype=torch.bool)
    assert_close(rw.ratios[off], r4.ratios[off], rtol=1e-9)
    assert_close(rw.boot_one_vs_all, r4.boot_one_vs_all, rtol=1e-8)
    r1 = relative_ranking(S, metrics=M3, models=list("xyz"), n_boot=15)
    assert float((rw.ratios - r1.ratios)[off].abs().max()) > 1e-3  # the weights do change the ratio
    ru = relative_ranking(S, metrics=M3, models=list("xyz"), n_boot=15, weights=[3, 3, 3])
    assert_close(ru.ratios[off], r1.ratios[off], rtol=0) and ru.weights is None


def test_weights_on_hinge_equal_scaled_metrics():
    "The hinge is positively homogeneous: w h(z) = h(w z), so weights equal scaling the (raw) metrics."
    S = _chain(15, n=50, k=3)
    w = torch.tensor([0.5, 1.0, 1.5], dtype=f64)  # already mean 1
    rw = relative_ranking(S, metrics=M3, models=list("xyz"), n_boot=10, cost="hinge", standardize=None, weights=w.tolist())
    rs = relative_ranking(S * w, metrics=M3, models=list("xyz"), n_boot=10, cost="hinge", standardize=None)
    off = ~torch.eye(3, dtype=torch.bool)
    assert_close(rw.ratios[off], rs.ratios[off], rtol=1e-9)


def test_intervals_against_explicit_replicates():
    "ε_i intervals are percentiles of the replicates; rank intervals come from the Borda rank recomputed per replicate."
    from statistics import NormalDist
    S = _chain(16, n=60, k=4, step=0.2)
    r = relative_ranking(S, metrics=M3, models=list("ABCD"), n_boot=50, level=0.9)
    E = r.boot_one_vs_all.numpy()
    assert_close(r.one_vs_all_ci, torch.tensor(np.quantile(E, [0.05, 0.95], axis=0).T), rtol=1e-12)
    z = NormalDist().inv_cdf(1 - 0.05 / 12)
    ranks = []
    for e in E:
        wins = [[i != j and (e[i] - e[j]) + z * float(r.se[i, j]) < 0 for j in range(4)] for i in range(4)]
        borda = [sum(w) for w in wins]
        ranks.append([1 + sum(b > borda[i] for b in borda) for i in range(4)])
    ranks = np.array(ranks)
    lo = np.sort(ranks, 0)[int(np.floor(0.05 * 49))]; hi = np.sort(ranks, 0)[int(np.ceil(0.95 * 49))]
    np.testing.assert_array_equal(r.rank_ci.numpy(), np.stack([lo, hi], -1))
    assert bool((r.one_vs_all_ci[:, 0] <= r.one_vs_all_ci[:, 1]).all())


def test_one_n_boot_default():
    "One bootstrap default for the chapter: relative_ranking, dominance_test and `papercode rank` (was 200 vs 1000)."
    import inspect
    from papercode.dominance.inference import dominance_test
    from papercode.dominance.ranking import N_BOOT
    d = lambda f: inspect.signature(f).parameters["n_boot"].default
    assert d(relative_ranking) == d(dominance_test) == N_BOOT


def test_tables_and_csv(tmp_path):
    import csv
    S = _chain(17, n=40, k=3)
    r = relative_ranking(S, metrics=M3, models=list("xyz"), n_boot=20)
    files = r.to_csv(tmp_path / "out")
    assert sorted(f.name for f in files) == ["delta.csv", "p_adj.csv", "pairs.csv", "ranking.csv", "ratios.csv"]
    rows = list(csv.DictReader(open(tmp_path / "out" / "ranking.csv")))
    assert [x["model"] for x in rows] == list(r.ranking)
    for x in rows:
        i = r.models.index(x["model"])
        assert float(x["eps_i"]) == float(r.one_vs_all[i]) and int(x["rank"]) == int(r.rank[i])
    pairs = list(csv.DictReader(open(tmp_path / "out" / "pairs.csv")))
    assert len(pairs) == 6 and all(float(p["p_adj"]) == float(r.p_adj[r.models.index(p["model"]), r.models.index(p["other"])])
                                   for p in pairs)
    mat = list(csv.reader(open(tmp_path / "out" / "delta.csv")))
    assert mat[0] == ["model", "x", "y", "z"] and float(mat[1][2]) == float(r.delta[0, 1])
    with pytest.raises(ValueError, match="table: expected one of"):
        r.to_csv(tmp_path, tables=("borda",))


def test_to_frame(monkeypatch):
    pd = pytest.importorskip("pandas")
    r = relative_ranking(_chain(18, n=40, k=3), metrics=M3, models=list("xyz"), n_boot=20)
    f = r.to_frame("ratios")
    assert list(f.index) == list(f.columns) == ["x", "y", "z"] and f.loc["x", "y"] == float(r.ratios[0, 1])
    assert isinstance(r.to_frame(), pd.DataFrame) and list(r.to_frame().model) == list(r.ranking)
    assert r.to_frame("wins").dtypes.eq(bool).all()
    monkeypatch.setitem(__import__("sys").modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        r.to_frame()


def test_heatmap_marks_the_wins():
    from papercode.dominance.ranking import ranking_heatmap
    r = relative_ranking(_chain(3, n=120), metrics=M3, models=list("ABCD"), n_boot=30)
    fig = ranking_heatmap(r)
    ax = fig.axes[0]
    crosses = ax.collections[0].get_offsets()
    assert len(crosses) == int(r.wins.sum())
    order = [r.models.index(m) for m in r.ranking]
    for x, y in np.asarray(crosses):  # column x, row y in ranking order
        assert bool(r.wins[order[int(y)], order[int(x)]])
    assert [t.get_text() for t in ax.get_yticklabels()] == list(r.ranking)
    with pytest.raises(ValueError, match="order: expected"):
        ranking_heatmap(r, order="alphabetical")
    with pytest.raises(TypeError, match="result: expected a RankingResult"):
        ranking_heatmap(r.delta)


def test_holm_adjust_checks_its_input():
    from papercode.dominance.ranking import holm_adjust
    assert_close(holm_adjust([0.01, 0.04, 0.03]), torch.tensor([0.03, 0.06, 0.06], dtype=f64), rtol=1e-12)
    with pytest.raises(ValueError, match=r"p: p-values must lie in \[0, 1\]"):
        holm_adjust(torch.tensor([1.5, -0.2]))
    with pytest.raises(ValueError, match="p: contains 1 non-finite"):
        holm_adjust(torch.tensor([0.01, float("nan")]))


def test_kendall_tau_refuses_repeats_and_single_models():
    with pytest.raises(ValueError, match="listed twice"):
        kendall_tau(["a", "a", "b"], ["a", "b", "a"])
    with pytest.raises(ValueError, match="at least two models"):
        kendall_tau(["a"], ["a"])


def test_models_and_dict_shapes():
    S = _chain(20, n=20, k=3)
    with pytest.raises(ValueError, match="models: expected a sequence of model names, got the string 'xyz'"):
        as_score_array(S, metrics=M3, models="xyz")
    with pytest.raises(ValueError, match=r"each model's scores must have shape \(n_prompts, n_metrics\)"):
        as_score_array({"x": S[:, :2], "y": S[:, :2]}, metrics=M3)
    with pytest.raises(ValueError, match="each model's scores must have shape"):
        as_score_array({"x": 1.0, "y": 2.0}, metrics=M3)


def test_numpy_level_seed_and_aligned_summary():
    "numpy level, alpha, n_boot and seed give the Python-number result; summary columns line up for short names."
    S = _chain(21, n=20, k=3)
    kw = dict(metrics=M3, models=list("xyz"))
    r = relative_ranking(S, n_boot=10, alpha=0.1, level=0.9, seed=2, **kw)
    rn = relative_ranking(S, n_boot=np.int64(10), alpha=np.float64(0.1), level=np.float32(0.5), seed=np.int64(2), **kw)
    assert torch.equal(r.boot_one_vs_all, rn.boot_one_vs_all) and torch.equal(r.p_adj, rn.p_adj)
    assert type(rn.seed) is int and type(rn.n_boot) is int and rn.level == 0.5
    with pytest.raises(ValueError, match="seed: must be an integer"):
        relative_ranking(S, n_boot=10, seed=None, **kw)
    lines = r.summary().splitlines()[1:5]
    assert len({len(line) for line in lines}) == 1, lines
