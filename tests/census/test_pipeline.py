"""The pipeline's solver fallback for blocks over the DP cap (CP-SAT pool checked against the exact DP, reduced
chain, HiGHS seed, level 3), age imputation against a brute-force joint law, the vectorised DP sampler against
exact probabilities, and the ACS PUMS reader on a fabricated file."""
import importlib.util
import itertools
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chisquare

from papercode.core.testing import require
from papercode.census.exact import (DPTooLarge, ExactSampler, household_distribution, log_weight,
                                    multigraph_instance, vector_distribution)
from papercode.census.synthesize import (adults_band, draw_households, BlockDraw, fallback_sample, synthesize,
                                         synthetic_state)
from papercode.census.tables import Household, encode_block, encode_household, read_pums, tabulate

ORTOOLS = importlib.util.find_spec("ortools") is not None
HIGHS = importlib.util.find_spec("highspy") is not None
FIXTURE = Path(__file__).parent / "fixtures" / "psam_p_fabricated.csv"
CAP = 60  # DP states: far below what the test block needs


@pytest.fixture(scope="module")
def big_block():
    st = synthetic_state(40, seed=3, n_pums=3000)
    b = max((b for b in range(40) if st.gq[b] == 0), key=lambda b: st.tables[b].households)
    d1 = household_distribution(st.pums)
    return st.tables[b], d1, st.pums


def _holds(md, tables):
    for b, t in enumerate(tables):
        hb = [h for h, r in zip(md.households, md.rows) if r[0] == b]
        u = True if md.level[b] == 1 else bool(md.use_age[b])
        assert (sum(encode_household(h, int(md.level[b]), u) for h in hb) == encode_block(t, int(md.level[b]), u)).all()


def test_block_over_the_cap_falls_back_to_a_complete_cpsat_pool(big_block):
    require(ORTOOLS, "ortools not installed (pip install -e '.[census]')")
    t, d1, pums = big_block
    c = encode_block(t, 1)
    with pytest.raises(DPTooLarge): ExactSampler(c, d1, max_states=CAP)  # the block is built to exceed the cap
    ex = ExactSampler(c, d1)  # uncapped: the reference
    assert ex.info.n_solutions > 20
    md = synthesize([t], dist=d1, max_states=CAP, progress=False)
    assert md.complete and md.sampler == ("cpsat_pool",) and md.exact[0] and md.level[0] == 1
    assert md.n_solutions[0] == ex.info.n_solutions and "exactly" in md.law[0]
    _holds(md, [t])
    # the pool's law is P_b: 3000 draws against the exact DP probabilities (top 8 solutions + the rest)
    d = fallback_sample(c, d1, np.random.default_rng(4), limit=10 ** 5)
    S = ex.solutions(); P = np.exp(log_weight(S, d1) - ex.info.log_z)
    top = np.argsort(-P)[:8]; where = {tuple(S[i]): j for j, i in enumerate(top)}
    cnt = np.bincount([where.get(tuple(d.redraw()), 8) for _ in range(3000)], minlength=9)
    exp = np.append(P[top], 1 - P[top].sum()) * 3000
    assert chisquare(cnt, exp).pvalue > 1e-3


def test_saturated_pool_runs_the_reduced_chain_and_highs_seeds_it(big_block):
    require(ORTOOLS and HIGHS, "ortools / highspy not installed (pip install -e '.[census]')")
    t, d1, _ = big_block
    for fb, origin in (("cpsat", "CP-SAT pool"), ("highs", "HiGHS")):
        md = synthesize([t], dist=d1, max_states=CAP, limit=3, fallback=fb, chain_steps=200, progress=False)
        assert md.sampler == ("reduced_chain",) and not md.exact[0] and md.n_solutions[0] == -1
        assert "approximately" in md.law[0] and origin in md.law[0] and not md.covered[0]
        _holds(md, [t])
    md = synthesize([t], dist=d1, max_states=CAP, fallback="none", progress=False)
    assert not md.complete and "fallback is off" in md.unsolved[0][1]
    with pytest.raises(ValueError, match="fallback"): synthesize([t], dist=d1, fallback="gurobi", progress=False)


def test_level3_saturated_pool_is_named_not_pb(big_block):
    require(ORTOOLS, "ortools not installed (pip install -e '.[census]')")
    t, d1, _ = big_block
    md = synthesize([t], dist=d1, levels=(3,), max_states=CAP, limit=5, progress=False)
    assert md.level[0] == 3 and md.sampler == ("cpsat_pool_truncated",) and "not P_b" in md.law[0]
    _holds(md, [t])


def _chi2(draws, S, P):
    where = {tuple(s): i for i, s in enumerate(S)}
    cnt = np.bincount([where[tuple(x)] for x in draws], minlength=len(S))
    return chisquare(cnt, P * len(draws)).pvalue


@pytest.mark.parametrize("method,vectorized,n", [("table", True, 20_000), ("forward", True, 20_000), ("forward", False, 1500)])
def test_table_vectorised_and_loop_dp_samplers_follow_the_exact_law(method, vectorized, n):
    tgt, dist = multigraph_instance(2, 4)  # 17 solutions, uniform π: P_b from the multinomial weights
    ex = ExactSampler(tgt, dist)
    S = ex.solutions(); P = np.exp(log_weight(S, dist) - ex.info.log_z)
    assert len(S) == 17 and abs(P.sum() - 1) < 1e-12
    assert _chi2(ex.sample(n, np.random.default_rng(11), vectorized=vectorized, method=method), S, P) > 1e-3
    toy = vector_distribution([[1, 0], [0, 1], [1, 1], [2, 0]], [0.4, 0.3, 0.2, 0.1])  # household count free
    ex2 = ExactSampler([5, 1], toy)
    S2 = ex2.solutions(); P2 = np.exp(log_weight(S2, toy) - ex2.info.log_z)
    assert _chi2(ex2.sample(n, np.random.default_rng(12), vectorized=vectorized, method=method), S2, P2) > 1e-3


def test_auto_sampling_tabulates_small_blocks_and_refuses_bad_arguments():
    tgt, dist = multigraph_instance(2, 4)  # 17 solutions
    ex = ExactSampler(tgt, dist)
    assert getattr(ex, "_table", None) is None
    ex.sample(100, np.random.default_rng(0))  # 17 ≤ max(100, 64): the table path
    sols, cdf = ex._table
    assert len(sols) == 17 and cdf[-1] == 1.0 and np.all(np.diff(cdf) > 0)
    big_t, big_d = multigraph_instance(4, 5)  # 2021 solutions
    big = ExactSampler(big_t, big_d)
    big.sample(100, np.random.default_rng(0))  # 2021 > max(100, 64): forward, nothing tabulated
    assert getattr(big, "_table", None) is None
    with pytest.raises(ValueError, match="table_max"):
        big.sample(10, np.random.default_rng(0), method="table", table_max=1000)
    with pytest.raises(ValueError, match="method"):
        ex.sample(10, np.random.default_rng(0), method="dp")
    with pytest.raises(ValueError, match="non-negative integer"):
        ex.sample(-1, np.random.default_rng(0))


W = lambda n: (n,) + (0,) * 13
A2, A1 = Household(W(2), 2, 0, False, True), Household(W(2), 1, 0, False, True)
B1 = Household(W(1), 1, 0, False, False)
C2, C3, C3n = Household(W(3), 2, 0, False, True), Household(W(3), 3, 0, False, True), Household(W(3), 3, 0, False, False)
D2 = Household(W(4), 2, 0, False, True)
PUMS = [A2] * 3 + [A1] + [B1] * 2 + [C2] * 2 + [C3] + [C3n] + [D2] * 2


def _joint_law(t, pums, level=2):
    "Brute force: i.i.d. households from the sample, conditioned on the level's tables and on the 18+ band."
    cnt = Counter(pums); hh = list(cnt); p = np.array([cnt[h] for h in hh], float); p /= p.sum()
    c = encode_block(t, level, False); lo, hi = adults_band(t)
    law = Counter()
    for n in range(1, 9):
        for comb in itertools.combinations_with_replacement(range(len(hh)), n):
            if (sum(encode_household(hh[i], level, False) for i in comb) != c).any(): continue
            a = sum(hh[i].adults for i in comb)
            if not lo <= a <= hi: continue
            mult = math.factorial(n) / math.prod(math.factorial(v) for v in Counter(comb).values())
            law[tuple(sorted(hh[i].size for i in comb)), a] += mult * math.prod(p[i] for i in comb)
    z = sum(law.values())
    return {k: v / z for k, v in law.items()}


def test_age_imputation_follows_the_joint_law_and_the_band():
    t = tabulate([A2, B1, C2], gq=np.array([[2] + [0] * 6, [0] * 7]))  # two group-quarters residents
    assert not t.use_age and adults_band(t) == (5, 7)
    md = synthesize([t] * 3, pums=PUMS, seed=2, progress=False)
    assert (md.level == 2).all() and not md.use_age.any() and all("exact" in a for a in md.age_law)
    _holds(md, [t] * 3)
    d = household_distribution(PUMS).at(2, False)
    ex = ExactSampler(encode_block(t, 2, False), d)
    rng = np.random.default_rng(5)
    redraw = lambda: ex.sample(1, rng)[0]
    law = _joint_law(t, PUMS)
    assert len(law) >= 5  # several household sizes and adult totals compete
    keys = sorted(law); where = {k: i for i, k in enumerate(keys)}
    cnt = np.zeros(len(keys))
    for _ in range(2000):
        bd = BlockDraw(m=redraw(), sampler="dp", law="", exact=True, n_solutions=ex.info.n_solutions, redraw=redraw)
        m, hh, how = draw_households(bd, d, rng, adults_band(t))
        a = sum(h.adults for h in hh)
        assert 5 <= a <= 7 and "rejection" in how
        cnt[where[tuple(sorted(h.size for h in hh)), a]] += 1
    assert chisquare(cnt, np.array([law[k] for k in keys]) * 2000).pvalue > 1e-3
    # without an exact redraw: the vectors stay, the households are drawn given them within the band
    bd = BlockDraw(m=redraw(), sampler="reduced_chain", law="", exact=False, n_solutions=-1, redraw=None)
    m2, hh2, how2 = draw_households(bd, d, rng, adults_band(t))
    assert (m2 == bd.m).all() and "two-stage" in how2 and 5 <= sum(h.adults for h in hh2) <= 7


def test_read_pums_on_a_fabricated_person_file(tmp_path):
    hh = read_pums(FIXTURE)
    assert len(hh) == 5  # the group-quarters resident (RELSHIPP 37) is not a household
    hu1, hu2, hu3, hu5, hu6 = hh
    assert (hu1.race_counts, hu1.adults, hu1.family, hu1.race, hu1.hispanic) == ((2, 0, 0, 0, 0, 0, 2), 2, True, 0, False)
    assert (hu2.counts[7 + 5], hu2.counts[1], hu2.family, hu2.race, hu2.hispanic) == (1, 1, False, 5, True)
    assert (hu3.size, hu3.adults, hu3.family, hu3.race) == (1, 1, False, 3)  # a 17-year-old householder alone
    assert (hu5.counts[7], hu5.counts[2], hu5.adults, hu5.family, hu5.hispanic) == (2, 1, 2, True, True)
    assert (hu6.race_counts, hu6.family) == ((0, 0, 1, 0, 1, 0, 0), False)  # an unmarried partner is not family
    # the 2010-2018 relationship column RELP (0 householder, 1-10 relatives, 16-17 group quarters)
    relp = {"20": "0", "21": "1", "25": "2", "34": "12", "37": "16", "32": "9", "36": "15", "22": "13"}
    lines = FIXTURE.read_text().splitlines()
    rows = [lines[0].replace("RELSHIPP", "RELP")] + [",".join(l.split(",")[:-1] + [relp[l.split(",")[-1]]]) for l in lines[1:]]
    p = tmp_path / "relp.csv"; p.write_text("\n".join(rows) + "\n")
    assert read_pums(p) == hh


@pytest.mark.parametrize("edit,match", [
    (lambda s: s.replace("RAC1P", "RACE"), r"missing column\(s\) RAC1P"),
    (lambda s: s.replace("RELSHIPP", "REL"), r"RELSHIPP \(or RELP\)"),
    (lambda s: s.replace(",52,01,1,20", ",5x,01,1,20"), "line 2: column AGEP is not an integer"),
    (lambda s: s.replace(",49,01,1,21", ",49,01,1,20"), "SERIALNO 2021HU0000001 has 2 householders"),
    (lambda s: s.replace(",33,02,8,20", ",33,02,12,20"), "line 6: column RAC1P has an unknown race code 12"),
])
def test_read_pums_bad_files(tmp_path, edit, match):
    p = tmp_path / "bad.csv"; p.write_text(edit(FIXTURE.read_text()))
    with pytest.raises(ValueError, match=match): read_pums(p)
    with pytest.raises(FileNotFoundError, match="not found"): read_pums(tmp_path / "missing.csv")
