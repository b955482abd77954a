"""The solution pool's top-N semantics, the block explorer's data and figure, and the HiGHS/CP-SAT pipeline
benchmark's bookkeeping."""
import importlib.util
from dataclasses import replace

import numpy as np
import pytest

from papercode.core.testing import assert_close, require
from papercode.census.exact import ExactSampler, brute_force, log_weight, multigraph_instance, vector_distribution
from papercode.census import experiments
from papercode.census.experiments import CensusConfig, bench_pipeline, bench_sampling, block_explorer_data, block_explorer_figure
from papercode.census.solvers import solve_block

ORTOOLS = importlib.util.find_spec("ortools") is not None
HIGHS = importlib.util.find_spec("highspy") is not None


def _skewed_multigraph():
    "The (4, 4) multigraph instance with a non-uniform π, so that the most probable solutions are distinct."
    c, dist = multigraph_instance(4, 4)
    pi = np.random.default_rng(5).dirichlet(np.ones(len(dist.pi)))
    return c, vector_distribution(dist.vectors, pi)


@pytest.mark.parametrize("limit", [1, 10, 50])
def test_dp_limit_returns_the_most_probable_solutions(limit):
    # reference: CP-SAT's complete enumeration (an independent solver), ranked by the exact weight
    require(ORTOOLS, "ortools not installed (pip install -e '.[census]')")
    c, dist = _skewed_multigraph()
    ref = solve_block(c, dist, method="cpsat", limit=10 ** 5)
    assert ref.complete and ref.n_solutions == 138
    p_ref = np.sort(ref.prob)[::-1][:limit].copy()
    sol = solve_block(c, dist, method="dp", limit=limit)
    assert not sol.complete and sol.n_solutions == 138 and len(sol.counts) == limit
    assert_close(np.exp(sol.log_weight - ExactSampler(c, dist).info.log_z), p_ref, rtol=1e-10, msg="top-N P_b")
    assert_close(sol.mass, p_ref.sum(), rtol=1e-10)
    assert "most probable" in sol.status


def test_brute_force_limit_keeps_the_most_probable():
    toy = vector_distribution([[1, 0, 1], [0, 1, 1], [1, 1, 1], [2, 0, 1]])
    sol = solve_block([5, 1, 5], toy, method="brute_force", limit=1)
    assert_close(np.exp(log_weight(sol.counts, toy)) / np.exp(log_weight(brute_force([5, 1, 5], toy), toy)).sum(),
                 [0.8], rtol=1e-12, msg="the toy's more probable solution has P = 0.8")


def test_dp_over_the_enumeration_cap_says_its_order(monkeypatch):
    import papercode.census.solvers as S
    monkeypatch.setattr(S, "TOP_N_ENUMERATE", 20)
    c, dist = _skewed_multigraph()
    sol = S.solve_block(c, dist, method="dp", limit=10)
    assert len(sol.counts) == 10 and "not the most probable" in sol.status


def test_block_explorer_data_and_figure():
    data = block_explorer_data(30, examples=4, draws=20, seed=1)
    assert 2 <= len(data) <= 4
    for e in data:
        p = np.array(e["top_prob"])
        assert np.all(np.diff(p) <= 1e-15) and 0 < e["top_mass"] <= 1 + 1e-12
        if e["n_solutions"] <= len(p): assert_close(e["top_mass"], 1.0, atol=1e-12)
        assert len(e["truth_adults"]) == len(e["drawn_mean"]) == 5
        if e["level"] < 3:  # the household count is pinned below level 3
            assert_close(sum(e["drawn_mean"]), sum(e["truth_adults"]), atol=1e-12)
            assert sum(e["truth_adults"]) == e["households"] == sum(e["households_by_size"])
    fig = block_explorer_figure(data)
    steps = fig.layout.sliders[0].steps
    assert len(steps) == len(data)
    for s in steps: assert sum(s.args[0]["visible"]) == 5  # three panels: 2 + 1 + 2 traces per block
    with pytest.raises(ValueError, match="no example blocks"): block_explorer_figure([])


def test_pipeline_benchmark_bookkeeping():
    require(ORTOOLS and HIGHS, "ortools and highspy are needed (pip install -e '.[census]')")
    cfg = replace(CensusConfig.tiny(), pipe_blocks=20, pipe_states=500, fallback_steps=50, n_pums=5000)
    r = bench_pipeline(cfg, seed=3)
    by = {x["fallback"]: x for x in r["rows"]}
    assert set(by) == {"none", "cpsat", "highs"}
    assert by["none"]["fallback_blocks"] == 0 and by["none"]["fallback_seconds"] == 0
    assert by["cpsat"]["fallback_blocks"] == by["highs"]["fallback_blocks"] > 0  # same blocks go over the cap
    assert by["cpsat"]["solved"] >= by["none"]["solved"] and by["highs"]["solved"] >= by["none"]["solved"]
    # HiGHS seeds always run the chain (approximate) where CP-SAT can draw from a complete pool (exact)
    assert by["highs"]["exact"] <= by["cpsat"]["exact"]
    assert by["none"]["exact"] == by["none"]["solved"]
    assert "cpsat_pool" not in by["highs"]["samplers"]


def test_sampling_benchmark_compares_only_where_both_finish():
    require(ORTOOLS, "ortools is needed (pip install -e '.[census]')")
    cfg = replace(CensusConfig.tiny(), bench_state=(30, 6), bench_blocks=4, n_pums=5000, bench_draws=50)
    r = bench_sampling(cfg, seed=2)
    assert len(r["rows"]) == 3 + 4 and all(x["complete"] for x in r["rows"]) and not r["unfinished"]
    assert r["max_law_tvd"] < 1e-12  # the same law
    assert sum(s["blocks"] for s in r["by_size"]) == len(r["rows"])
    assert r["median_ratio"] == float(np.median([x["ratio"] for x in r["rows"]]))
    assert all(x["repeats"] == experiments.BENCH_REPEATS for x in r["rows"])  # fast blocks: the median of repeated timings
    # a time limit CP-SAT cannot meet on the largest multigraph (2021 solutions): that row leaves the comparison
    cut = bench_sampling(replace(cfg, bench_time_limit=0.005), seed=2)
    late = [x for x in cut["rows"] if not x["complete"]]
    assert any(x["block"] == "multigraphs c=4, d=5" for x in late)
    assert all(np.isnan(x["law_tvd"]) for x in late) and len(cut["unfinished"]) == len(late)
    assert sum(s["blocks"] for s in cut["by_size"]) == len(cut["rows"]) - len(late)


def test_sampling_benchmark_times_slow_blocks_once(monkeypatch):
    require(ORTOOLS, "ortools is needed (pip install -e '.[census]')")
    monkeypatch.setattr(experiments, "BENCH_FAST_S", 0.0)  # every block counts as slow
    cfg = replace(CensusConfig.tiny(), bench_state=(30, 6), bench_blocks=2, n_pums=5000, bench_draws=50)
    assert all(x["repeats"] == 1 for x in bench_sampling(cfg, seed=2)["rows"])


def test_most_probable_ranks_by_exact_probability():
    # the one ranking used by solve_block, the block explorer and the live block lab
    c, dist = _skewed_multigraph()
    ex = ExactSampler(c, dist)
    all_p = np.sort(np.exp(log_weight(brute_force(c, dist, max_households=8), dist) - ex.info.log_z))[::-1].copy()  # brute force
    sols, p, ranked = ex.most_probable(7)
    assert ranked and len(sols) == 7
    assert_close(p, all_p[:7], rtol=1e-10, msg="the 7 most probable, exact P_b")
    assert_close(np.exp(log_weight(sols, dist) - ex.info.log_z), p, rtol=1e-12)
    sols, p, ranked = ex.most_probable(10 ** 6)  # more than |X_b|: everything, probabilities sum to 1
    assert ranked and len(sols) == 138 and abs(p.sum() - 1) < 1e-10
    sols, p, ranked = ex.most_probable(5, enumerate_max=20)  # over the cap: DP order, said by the flag
    assert not ranked and len(sols) == 5
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="k: must be a positive integer"): ex.most_probable(bad)


def test_chain_lab_slides_over_both_chains():
    from papercode.census.experiments import chain_lab_figure
    f = chain_lab_figure(steps=20, ks=(2,), gammas=(0.6,))
    assert [s.label for s in f.layout.sliders[0].steps] == ["reduced, k = 2", "simple, γ = 0.6"]
    assert len(f.data) == 8  # four instances per position
    cyc = [tr for tr in f.data if tr.name.startswith("6-cycle")]
    assert len(cyc) == 2
    # the 6-cycle's two solutions: the k = 2 reduced chain cannot move between them, the simple chain can
    assert min(cyc[0].y) == pytest.approx(0.5) and "gap 0.000" in cyc[0].name
    assert cyc[1].y[-1] < 1e-6
