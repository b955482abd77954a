"""Brute force over all multisets vs the exact DP vs CP-SAT (counts, probabilities, order), HiGHS vs scipy's milp
on the most likely sequence, the re-tabulation round trip, the chains' exact matrices against scipy and networkx,
and bad input."""
import importlib.util
import itertools

import numpy as np
import pytest

from papercode.core.testing import assert_close, require
from papercode.census.chains import (sample_block, six_cycle_instance, spectral_gap, transition_matrix)
from papercode.census.exact import (DPTooLarge, ExactSampler, brute_force, household_distribution, log_weight,
                                    multigraph_instance, vector_distribution)
from papercode.census.solvers import highs_map, solve_block
from papercode.census.synthesize import synthesize, synthetic_state
from papercode.census.tables import BlockTables, Household, encode_block, encode_household, read_nhgis_blocks, tabulate, to_nhgis

ORTOOLS = importlib.util.find_spec("ortools") is not None
HIGHS = importlib.util.find_spec("highspy") is not None


def _random_instance(seed, V=8, d=3, maxv=2):
    rng = np.random.default_rng(seed)
    rows = set()
    while len(rows) < V:
        r = tuple(rng.integers(0, maxv + 1, d))
        if sum(r): rows.add(r)
    A = np.array(sorted(rows))
    pi = rng.dirichlet(np.ones(V))
    m = rng.integers(0, 2, V); m[rng.integers(V)] += 1  # a feasible target from a random multiset
    c = m @ A
    if c.sum() > 12: c = A[0] + A[1] + A[2]
    return c, vector_distribution(A, pi)


@pytest.mark.parametrize("seed", range(12))
def test_dp_equals_brute_force_counts_and_probabilities(seed):
    c, dist = _random_instance(seed)
    bf = brute_force(c, dist, max_households=12)
    ex = ExactSampler(c, dist)
    assert ex.info.n_solutions == len(bf)
    S = ex.solutions()
    assert sorted(map(tuple, S)) == sorted(map(tuple, bf))
    w = np.exp(log_weight(bf, dist))  # brute-force law: multinomial weights renormalised
    assert_close(np.exp(log_weight(bf, dist) - ex.info.log_z), w / w.sum(), rtol=1e-10, msg="P_b")
    sol = solve_block(c, dist, limit=3)  # top order by P_b among the returned, mass of the set exact
    assert_close(sol.mass, (w / w.sum())[[
        [tuple(b) for b in bf].index(tuple(s)) for s in sol.counts]].sum(), rtol=1e-10)


@pytest.mark.parametrize("seed", range(6))
def test_dp_equals_cpsat(seed):
    require(ORTOOLS, "ortools not installed (pip install -e '.[census]')")
    c, dist = _random_instance(100 + seed, V=10, d=4)
    a, b = solve_block(c, dist, method="dp"), solve_block(c, dist, method="cpsat")
    assert b.complete and a.n_solutions == b.n_solutions
    assert [tuple(x) for x in a.counts] == [tuple(x) for x in b.counts] or \
        sorted(map(tuple, a.counts)) == sorted(map(tuple, b.counts))
    assert_close(a.prob, b.prob[[list(map(tuple, b.counts)).index(tuple(x)) for x in a.counts]], rtol=1e-10)


@pytest.mark.parametrize("cd,n", [((2, 3), 5), ((4, 3), 15), ((2, 4), 17), ((4, 4), 138), ((2, 5), 73), ((4, 5), 2021)])
def test_multigraph_counts_dp_cpsat_and_brute_force(cd, n):
    c, dist = multigraph_instance(*cd)
    assert ExactSampler(c, dist).info.n_solutions == n
    if n <= 200: assert len(brute_force(c, dist, max_households=10)) == n
    require(ORTOOLS, "ortools not installed (pip install -e '.[census]')")
    r = solve_block(c, dist, method="cpsat", limit=10 ** 5)
    assert r.complete and r.n_solutions == n


def test_cpsat_limit_is_reported_not_silently_truncated():
    require(ORTOOLS, "ortools not installed (pip install -e '.[census]')")
    c, dist = multigraph_instance(4, 4)
    r = solve_block(c, dist, method="cpsat", limit=50)
    assert not r.complete and r.n_solutions is None and len(r.counts) == 50
    assert len({tuple(x) for x in r.counts}) == 50  # deduplicated


@pytest.mark.parametrize("seed", range(5))
def test_highs_and_scipy_milp_agree_on_the_map(seed):
    require(HIGHS, "highspy not installed (pip install -e '.[census]')")
    from scipy.optimize import Bounds, LinearConstraint, milp
    c, dist = _random_instance(200 + seed, V=10, d=4)
    m, status = highs_map(c, dist)
    cost = -np.log(dist.pi)
    r = milp(cost, constraints=LinearConstraint(dist.vectors.T.astype(float), c, c), integrality=np.ones(len(cost)),
             bounds=Bounds(0, np.inf))
    assert r.success and m is not None
    assert_close(m @ cost, r.fun, rtol=1e-7, msg="objective")
    assert (m @ dist.vectors == c).all()


def test_retabulation_round_trip_and_truth_is_feasible():
    st = synthetic_state(30, seed=7, n_pums=500)
    d1 = household_distribution([h for hh in st.truth for h in hh])  # support contains every true household
    for hh, t, g in zip(st.truth, st.tables, st.gq):
        if g: continue
        assert tabulate(hh) == t
        c = encode_block(t, 1)
        assert (sum(encode_household(h, 1) for h in hh) == c).all()
        if t.households <= 4: assert ExactSampler(c, d1).info.n_solutions >= 1


def test_fallback_levels_group_quarters_and_missing_support():
    st = synthetic_state(60, seed=8, n_pums=3000, gq_share=0.3)
    md = synthesize(st, seed=1, fallback="none", progress=False)  # blocks over the DP cap: see test_pipeline.py
    gq = np.flatnonzero((st.gq > 0) & (md.level > 0))
    assert len(gq) > 0
    assert all(md.level[b] >= 2 and not md.use_age[b] for b in gq)  # group quarters: never level 1
    W = lambda n: (n,) + (0,) * 13
    fam2 = Household(W(2), 2, 0, False, True); single = Household(W(1), 1, 0, False, False)
    roommates = Household(W(2), 2, 0, False, False)
    t = tabulate([fam2, single])
    md2 = synthesize([t], pums=[single, roommates], progress=False)  # the family household is not in the sample
    assert md2.level[0] == 2 and md2.complete
    assert sorted(h.family for h in md2.households) == [False, False]


def test_infeasible_block_names_the_tables():
    black = Household((0, 1) + (0,) * 12, 1, 1, False, False)
    white = Household((1,) + (0,) * 13, 1, 0, False, False)
    md = synthesize([tabulate([black, black])], pums=[white], progress=False)  # (one-household blocks are their own household)
    assert md.level[0] == 0 and not md.complete and "P3 race totals" in md.unsolved[0][1]
    assert "cannot meet the P3 race totals (alone)" in md.unsolved[0][1]  # no Black person in the sample at all


def test_infeasible_block_names_tables_that_conflict_only_together():
    hisp_white = Household((0,) * 7 + (1,) + (0,) * 6, 1, 0, True, False)
    white = Household((1,) + (0,) * 13, 1, 0, False, False)
    hisp_black = Household((0,) * 8 + (1,) + (0,) * 5, 1, 1, True, False)
    # two Hispanic White adults: the sample has White people and Hispanic people, never a Hispanic White person
    md = synthesize([tabulate([hisp_white, hisp_white])], pums=[white, hisp_black], progress=False)
    why = md.unsolved[0][1]
    assert md.level[0] == 0 and "cannot meet the P3 race totals and the Hispanic total (together)" in why, why
    assert "(alone)" not in why
    ok = synthesize([tabulate([hisp_white, hisp_white])], pums=[white, hisp_black, hisp_white], progress=False)
    assert ok.complete and ok.level[0] == 1  # the missing household added: solved


def test_chain_matrices_stationary_and_scipy_eigs():
    from scipy.sparse.linalg import eigs
    c, dist = multigraph_instance(4, 3)
    for k in (2, 3):
        cm = transition_matrix(c, dist, "reduced", k=k)
        F = cm.target[:, None] * cm.T
        assert_close(F, F.T, atol=1e-14, rtol=0)
        assert_close(cm.target @ cm.T, cm.target, atol=1e-12, rtol=0)
        lam = np.sort(np.abs(eigs(cm.T.T, k=3, which="LM", return_eigenvectors=False)))[::-1]
        assert_close(spectral_gap(cm.T, cm.target), 1 - lam[1], atol=1e-8, rtol=0)
    cm = transition_matrix(c, dist, "simple", gamma=0.4)
    assert_close(cm.target @ cm.T, cm.target, atol=1e-12, rtol=0)


def test_six_cycle_connectivity_networkx():
    nx = pytest.importorskip("networkx")
    c, dist = six_cycle_instance()
    for k, comps in ((2, 2), (3, 1)):
        cm = transition_matrix(c, dist, "reduced", k=k)
        G = nx.from_numpy_array((cm.T > 0).astype(int) - np.eye(len(cm.T), dtype=int))
        assert nx.number_connected_components(G) == comps


def test_empirical_one_step_frequencies_match_the_matrix():
    c, dist = multigraph_instance(2, 4)
    cm = transition_matrix(c, dist, "reduced", k=3)
    where = {tuple(s): i for i, s in enumerate(cm.states)}
    x0 = ExactSampler(c, dist).solutions(1)[0]
    i0 = where[tuple(x0)]
    s = sample_block(c, dist, method="reduced_chain", k=3, steps=1, n=10_000, seed=5)
    emp = np.bincount([where[tuple(m)] for m in s.counts], minlength=len(cm.T)) / 10_000
    assert 0.5 * np.abs(emp - cm.T[i0]).sum() < 0.02


def test_bad_input():
    toy = vector_distribution([[1, 0, 1], [0, 1, 1], [1, 1, 1], [2, 0, 1]])
    with pytest.raises(ValueError, match="integers"): solve_block([5.5, 1, 5], toy)
    with pytest.raises(ValueError, match="non-negative"): solve_block([5, -1, 5], toy)
    with pytest.raises(ValueError, match="sum to 1"): vector_distribution([[1, 0], [0, 1]], [0.3, 0.3])
    with pytest.raises(ValueError, match="k=7"): sample_block([5, 1, 5], toy, method="reduced_chain", k=7)
    with pytest.raises(ValueError, match="P5 and P3"):
        BlockTables(p3=[2] + [0] * 6, p5=[[1] + [0] * 6, [0] * 7], p16=[0, 0], p16_race=np.zeros(7), p16_hisp=0,
                    p28_race=np.zeros((7, 2, 7)), p28_hisp=np.zeros((2, 7)))


def test_nhgis_reader_on_a_fabricated_file(tmp_path):
    st = synthetic_state(3, seed=2, n_pums=50)
    rows = [{"GISJOIN": f"G{i}", **to_nhgis(t)} for i, t in enumerate(st.tables)]
    p = tmp_path / "blocks.csv"
    cols = list(rows[0])
    p.write_text(",".join(cols) + "\n" + "\n".join(",".join(str(r[c]) for c in cols) for r in rows) + "\n")
    got = read_nhgis_blocks(p)
    assert all(got[f"G{i}"] == t for i, t in enumerate(st.tables))
    bad = p.read_text().splitlines(); bad[2] = bad[2].replace(",", ",x", 1)
    p.write_text("\n".join(bad) + "\n")
    with pytest.raises(ValueError, match="line 3"): read_nhgis_blocks(p)
    with pytest.raises(FileNotFoundError): read_nhgis_blocks(tmp_path / "missing.csv")


def _regular_multigraphs(c: int, d: int) -> int:
    "Loop-allowing c-regular multigraphs on d labelled vertices, counted vertex by vertex (not by the DP's vectors)."
    from functools import lru_cache

    @lru_cache(maxsize=None)
    def fill(v, rem):  # vertices < v are done; rem = remaining degree of every vertex >= v
        if v == d: return 1
        r0, rest, total = rem[0], rem[1:], 0
        for loops in range(r0 // 2 + 1):  # a loop adds 2 to the degree
            total += split(r0 - 2 * loops, rest, v)
        return total

    def split(k, rest, v):  # share k edge ends of vertex v among the later vertices
        def go(j, k, acc):
            if j == len(rest): return fill(v + 1, tuple(acc)) if k == 0 else 0
            return sum(go(j + 1, k - e, acc + [rest[j] - e]) for e in range(min(k, rest[j]) + 1))
        return go(0, k, [])

    return fill(0, tuple([c] * d))


@pytest.mark.parametrize("cd,n", [((6, 4), 670), ((8, 4), 2355), ((6, 5), 25_050), ((2, 6), 388)])
def test_multigraph_counts_match_an_independent_count(cd, n):
    "The DP against a vertex-by-vertex count, beyond brute force's reach, and both against the stored counts of c-regular multigraphs with loops on d vertices."
    c, dist = multigraph_instance(*cd)
    assert _regular_multigraphs(*cd) == n
    assert ExactSampler(c, dist).info.n_solutions == n


def test_size_adjusted_tvd_on_a_hand_computed_example():
    from papercode.census.synthesize import size_adjusted_tvd, tvd
    one = lambda h: (1, 0, 0, 0, 0, 0, 0, h, 1)  # one White person, Hispanic or not
    k3, k4 = (2, 0, 0, 0, 0, 0, 0, 0, 2), (1, 1, 0, 0, 0, 0, 0, 0, 2)
    syn = {one(0): 0.4, one(1): 0.1, k3: 0.3, k4: 0.2}
    ref = {one(0): 0.3, one(1): 0.3, k3: 0.4}
    # size 1: the reference is moved to the synthetic Hispanic share (0.2), which makes it equal: 0;
    # size 2: TVD({k3: .6, k4: .4}, {k3: 1}) = 0.4, weighted by the synthetic size share 0.5
    assert size_adjusted_tvd(syn, ref) == pytest.approx(0.2, abs=1e-12)
    assert tvd(syn, ref) == pytest.approx(0.3, abs=1e-12)


def test_size_adjusted_tvd_counts_a_size_missing_from_the_reference_as_distance_one():
    "The authors' code: a household size the reference lacks is as far as a TVD can be (1), weighted by its share."
    from papercode.census.synthesize import size_adjusted_tvd
    k2, k3 = (2, 0, 0, 0, 0, 0, 0, 0, 2), (3, 0, 0, 0, 0, 0, 0, 0, 3)
    syn = {k2: 0.75, k3: 0.25}
    ref = {k2: 1.0}  # no household of size 3
    assert size_adjusted_tvd(syn, ref) == pytest.approx(0.25, abs=1e-15)  # size 2: 0; size 3: 1 × 0.25 (was 0.5 × 0.25)
    assert size_adjusted_tvd(ref, syn) == pytest.approx(0.0, abs=1e-15)  # weighted by the first argument's sizes


def test_reweight_multiplies_pi_by_the_official_weights():
    from types import SimpleNamespace
    from papercode.census.synthesize import household_key, key_distribution, reweight
    st = synthetic_state(5, seed=9, n_pums=400)
    dist = household_distribution(st.pums)
    hh = list(dist.households)
    over = household_key(hh[0])
    syn_h = [hh[0]] * 30 + hh[1:20]  # the first household's key over-represented in the "synthetic" data
    new = reweight(dist, SimpleNamespace(households=syn_h), smoothing=0.001, mixed_race_factor=2.0)
    ref, syn = key_distribution(hh, dist.hh_pi), key_distribution(syn_h)
    w = np.array([(ref.get(household_key(h), 0) + 0.001) / (syn.get(household_key(h), 0) + 0.001)
                  * (2.0 if sum(1 for x in household_key(h)[:7] if x) > 1 else 1.0) for h in hh])
    want = dist.hh_pi * w / (dist.hh_pi * w).sum()
    assert_close(new.hh_pi, want, rtol=1e-10, atol=1e-15)
    i_over = [i for i, h in enumerate(hh) if household_key(h) == over]
    assert new.hh_pi[i_over].sum() < dist.hh_pi[i_over].sum()  # the over-drawn key loses mass


def test_solutions_and_table_are_the_recursion_rows_with_the_full_column_law():
    """`solutions()` scatters the recursion's rows into (S, V) once: the same rows in the recursion's order, at every
    level, and the table sampler's cumulative law (summed over the block's eligible vectors only) equals the law over
    every column."""
    st = synthetic_state(24, seed=8, max_households=12, n_pums=4_000)
    d1 = household_distribution(st.pums)
    sizes = {}
    for level in (1, 2, 3):
        dl = d1.at(level, True)
        for t in st.tables:
            if t.persons == 0: continue
            try: ex = ExactSampler(encode_block(t, level), dl, max_states=200_000)
            except DPTooLarge: continue  # the solver fallback's blocks
            ref = np.array([ex._full(m) for n in sorted(ex.ncount) for m in ex.dp.enumerate(ex.targets[n])]).reshape(-1, len(dl.pi))
            got = ex.solutions()
            assert got.shape == ref.shape and (got == ref).all(), (level, t)
            for lim in (0, 1, 2, len(ref) - 1, len(ref) + 5):  # a limit can stop inside any household count
                part = ex.solutions(limit=max(lim, 0))
                assert part.shape == ref[:max(lim, 0)].shape and (part == ref[:max(lim, 0)]).all()
            sizes.setdefault(level, []).append(len(got))
            if 1 < len(got) <= 5_000:
                sols, cdf = ex.table()
                p = np.exp(log_weight(ref, dl) - ex.info.log_z)  # every column
                assert (sols == ref).all() and np.abs(cdf - np.cumsum(p / p.sum())).max() < 1e-13
    assert all(sum(n > 1 for n in v) >= 3 for v in sizes.values()) and max(sizes[2]) > 10_000  # small and large X_b
    empty = ExactSampler(np.zeros(dl.dim, np.int64), dl)  # the empty block: one solution, the empty multiset
    assert empty.solutions().shape == (1, len(dl.pi)) and not empty.solutions().any()
    m = np.zeros((2, len(dl.pi)), np.int64); m[:, [3, 5]] = [[1, 2], [0, 1]]
    assert np.allclose(log_weight(m, dl, cols=[5, 3, 3]), log_weight(m, dl), rtol=0, atol=1e-12)  # order and repeats ignored
    with pytest.raises(ValueError, match="outside `cols` is nonzero"):
        log_weight(m, dl, cols=[3])
    with pytest.raises(ValueError, match="not a boolean mask"):
        log_weight(m, dl, cols=np.arange(len(dl.pi)) < 6)
