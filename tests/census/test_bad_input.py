"""Bad input that used to pass silently (or fail with an error naming nothing): each case must now raise an error
that names the argument, table, column or line, and the edge cases (empty block, non-reversible chain) must give
the right answer or refuse. Every test here is a few milliseconds."""
import importlib.util

import numpy as np
import pytest

from papercode.core.testing import require
from papercode.census.chains import mixing_bounds, sample_block, six_cycle_instance, spectral_gap, transition_matrix
from papercode.census.exact import vector_distribution
from papercode.census.solvers import solve_block
from papercode.census.synthesize import (key_distribution, reweight, size_adjusted_tvd, synthesize, synthetic_state,
                                         tvd)
from papercode.census.tables import (BlockTables, Household, from_nhgis, read_nhgis_blocks, read_pums, tabulate,
                                     to_nhgis)

ORTOOLS = importlib.util.find_spec("ortools") is not None
HIGHS = importlib.util.find_spec("highspy") is not None
W = lambda n: (n,) + (0,) * 13  # n not-Hispanic White members


@pytest.mark.parametrize("kw,match", [
    (dict(adults=1.5), "adults: expected a whole number"),  # was truncated to 1
    (dict(counts=(2.5,) + (0,) * 13), "counts: expected a whole number"),  # was truncated to 2
    (dict(counts=(np.nan,) + (0,) * 13), "counts: expected a whole number"),  # was "cannot convert float NaN"
    (dict(race="0"), "race: expected a whole number"),  # a string was parsed
    (dict(family="False"), "family: expected True or False"),  # was bool("False") = True
    (dict(hispanic="no"), "hispanic: expected True or False"),  # was bool("no") = True
    (dict(counts="20000000000000"), "counts: need 14"),  # a string was read digit by digit
])
def test_household_rejects_what_it_used_to_coerce(kw, match):
    args = dict(counts=W(2), adults=2, race=0, hispanic=False, family=True) | kw
    with pytest.raises(ValueError, match=match): Household(**args)


def _fields(t):
    return dict(p3=t.p3, p5=t.p5, p16=t.p16, p16_race=t.p16_race, p16_hisp=t.p16_hisp, p28_race=t.p28_race,
                p28_hisp=t.p28_hisp)


def test_block_tables_name_the_contradicting_tables():
    hisp2 = Household((0,) * 7 + (2,) + (0,) * 6, 2, 0, True, True)  # a Hispanic White family of 2
    t = _fields(tabulate([Household(W(2), 2, 0, False, True), hisp2]))
    BlockTables(**t)  # consistent
    p28h = np.zeros((2, 7), int); p28h[1, 1] = 1  # the Hispanic household as nonfamily of 2: no such household in P28A-G
    with pytest.raises(ValueError, match="P28H and P28A-G.*nonfamily households of size 2"):
        BlockTables(**t | dict(p28_hisp=p28h))
    p28 = t["p28_race"].copy(); p28[1] = p28[0]; p28[0] = 0  # both householders Black, but no Black person (P3)
    with pytest.raises(ValueError, match="P28B and P3"):
        BlockTables(**t | dict(p28_race=p28, p16_race=np.roll(t["p16_race"], 1)))
    p16r = t["p16_race"].copy(); p16r[0] -= 1; p16r[3] += 1  # an Asian-householder adult, no Asian-householder household
    with pytest.raises(ValueError, match="P16D and P28D"): BlockTables(**t | dict(p16_race=p16r))
    u = _fields(tabulate([Household(W(2), 2, 0, False, True)]))
    with pytest.raises(ValueError, match="P16H and P28H"): BlockTables(**u | dict(p16_hisp=1))
    v = _fields(tabulate([Household((1,) + (0,) * 6 + (1,) + (0,) * 6, 2, 0, False, True)]))
    p28h = np.zeros((2, 7), int); p28h[0, 1] = 1  # the householder made Hispanic: 1 Hispanic person, fine
    BlockTables(**v | dict(p28_hisp=p28h, p16_hisp=2))
    with pytest.raises(ValueError, match="P28H and P5"):  # ... but not with no Hispanic person at all
        BlockTables(**u | dict(p28_hisp=p28h))


def test_counts_beyond_int64_are_not_reported_as_negative():
    with pytest.raises(ValueError, match=r"c: counts must be below 2\^62"):
        solve_block([1e30, 1], vector_distribution([[1, 0], [0, 1]]))
    with pytest.raises(ValueError, match="vectors: entries must be integers, got dtype <U1"):
        vector_distribution([["a", "b"]])


def test_nhgis_totals_duplicates_and_field_counts(tmp_path):
    t = tabulate([Household(W(2), 2, 0, False, True), Household(W(1), 1, 0, False, False)])
    row = to_nhgis(t)
    for k in ("H7Z001", "H7Z002", "H7Z010", "H8A002", "IAJ001", "IAJ002", "IAJ009", "IAQ001"):
        with pytest.raises(ValueError, match=f"total {k} = 99"): from_nhgis({**row, k: 99})
    cols = ["GISJOIN"] + list(row)
    line = lambda b: ",".join([b] + [str(row[c]) for c in cols[1:]])
    p = tmp_path / "blocks.csv"
    p.write_text("\ufeff" + ",".join(cols) + "\n" + line("G1") + "\n", encoding="utf-8")  # a byte-order mark
    assert read_nhgis_blocks(p) == {"G1": t}
    p.write_text(",".join(cols) + "\n" + line("G1") + "\n" + line("G1") + "\n")
    with pytest.raises(ValueError, match="line 3: block G1 already read on line 2"): read_nhgis_blocks(p)
    p.write_text(",".join(cols) + "\n" + line("G1") + ",7\n")
    with pytest.raises(ValueError, match=f"line 2: {len(cols) + 1} fields, the header has {len(cols)}"):
        read_nhgis_blocks(p)
    p.write_text(",".join(cols) + "\n" + line("") + "\n")
    with pytest.raises(ValueError, match="line 2: column GISJOIN is empty"): read_nhgis_blocks(p)


@pytest.mark.parametrize("line,match", [
    ("A,-4,1,1,20", "line 2: column AGEP has an age -4"),
    ("A,40,99,1,20", "line 2: column HISP has an unknown origin code 99"),
    ("A,40,1,1,99", "line 2: column RELSHIPP has an unknown relationship code 99"),
    (",40,1,1,20", "line 2: column SERIALNO is empty"),
    ("A,40,1,1,20,5", "line 2: 6 fields, the header has 5"),
])
def test_read_pums_rejects_malformed_lines(tmp_path, line, match):
    p = tmp_path / "p.csv"; p.write_text("SERIALNO,AGEP,HISP,RAC1P,RELSHIPP\n" + line + "\n")
    with pytest.raises(ValueError, match=match): read_pums(p)


def test_read_pums_reads_a_header_with_a_byte_order_mark(tmp_path):
    p = tmp_path / "p.csv"; p.write_text("\ufeffSERIALNO,AGEP,HISP,RAC1P,RELSHIPP\nA,40,1,1,20\n", encoding="utf-8")
    assert read_pums(p) == (Household(W(1), 1, 0, False, False),)


TOY = vector_distribution([[1, 0, 1], [0, 1, 1], [1, 1, 1], [2, 0, 1]])


def test_solver_limits_are_checked():
    with pytest.raises(ValueError, match="limit"): solve_block([5, 1, 5], TOY, limit=True)
    with pytest.raises(ValueError, match="time_limit"): solve_block([5, 1, 5], TOY, time_limit=float("nan"))
    if ORTOOLS:  # CP-SAT answered MODEL_INVALID with complete=False, no error
        with pytest.raises(ValueError, match="time_limit"): solve_block([5, 1, 5], TOY, method="cpsat", time_limit=-1)
    require(HIGHS, "highspy not installed (pip install -e '.[census]')")
    with pytest.raises(ValueError, match="time_limit"): solve_block([5, 1, 5], TOY, method="highs", time_limit=-1)
    r = solve_block([0, 3], vector_distribution([[1, 1], [2, 0]]), method="highs")  # no vector fits: infeasible
    assert r.complete and r.n_solutions == 0 and len(r.counts) == 0 and "infeasible" in r.status


def test_spectral_gap_refuses_a_law_the_chain_is_not_reversible_for():
    T = np.array([[0.1, 0.6, 0.3], [0.2, 0.1, 0.7], [0.5, 0.4, 0.1]])  # not reversible: gap 0.5757
    assert abs(spectral_gap(T) - (1 - np.sort(np.abs(np.linalg.eigvals(T)))[-2])) < 1e-12
    with pytest.raises(ValueError, match="not reversible"): spectral_gap(T, p=np.full(3, 1 / 3))  # was 0.548
    R = np.array([[0.5, 0.5], [0.25, 0.75]])  # reversible for (1/3, 2/3), gap 0.75
    assert abs(spectral_gap(R, p=[1 / 3, 2 / 3]) - 0.75) < 1e-12
    with pytest.raises(ValueError, match="p: expected 2"): spectral_gap(R, p=[1.0])  # was 0.65
    with pytest.raises(ValueError, match="T: expected a non-empty"): spectral_gap(np.zeros((0, 0)))


@pytest.mark.parametrize("kw,match", [
    (dict(gap=float("nan")), "gap"), (dict(gap=2.0), "gap"), (dict(n_states=0), "n_states"),
    (dict(p_gamma=0.0), "p_gamma"), (dict(p_gamma=2.0), "p_gamma"), (dict(eps=0.0), "eps"), (dict(eps=0.6), "eps"),
])
def test_mixing_bounds_reject_values_outside_their_range(kw, match):
    with pytest.raises(ValueError, match=match): mixing_bounds(**(dict(gap=0.3, n_states=10) | kw))


def test_chain_arguments_and_the_empty_block():
    c, d = six_cycle_instance()
    with pytest.raises(ValueError, match="gamma"): sample_block(c, d, method="simple_chain", gamma=float("nan"), steps=10)
    with pytest.raises(ValueError, match="gamma"):
        transition_matrix([1, 1, 1], vector_distribution(np.eye(3, dtype=int)), chain="simple", gamma=float("nan"))
    with pytest.raises(ValueError, match="steps"): sample_block(c, d, method="reduced_chain", steps=-1)
    with pytest.raises(ValueError, match="n: must be an integer >= 1"): sample_block(c, d, n=True)
    empty = np.zeros_like(c)
    s = sample_block(empty, d, method="simple_chain", n=2)  # was "no eligible vector"
    assert (s.counts == 0).all() and s.counts.shape == (2, len(d.pi)) and s.restarts == 0
    with pytest.raises(ValueError, match="k=3 households in a block of 0"):  # was "needs an encoding that fixes ..."
        sample_block(empty, d, method="reduced_chain")


@pytest.fixture(scope="module")
def tiny_state():
    return synthetic_state(3, seed=0, n_pums=50)


@pytest.mark.parametrize("kw,match", [
    (dict(limit=0), "limit"), (dict(k=0), "k: must be"), (dict(max_states=-1), "max_states"),
    (dict(chain_steps=-1), "chain_steps"), (dict(levels=(1, 1)), "levels"), (dict(levels=1), "levels"),
    (dict(time_limit=-1), "time_limit"),
])
def test_synthesize_checks_its_arguments_before_drawing(tiny_state, kw, match):
    with pytest.raises(ValueError, match=match): synthesize(tiny_state, progress=False, **kw)


def test_synthesize_and_metrics_name_bad_input(tiny_state):
    with pytest.raises(TypeError, match="block 1 is a int"):
        synthesize([tiny_state.tables[0], 1], pums=tiny_state.pums, progress=False)
    with pytest.raises(ValueError, match="gq_share"): synthetic_state(2, gq_share=float("nan"), n_pums=5)
    with pytest.raises(ValueError, match="n_neighbourhoods"): synthetic_state(2, n_neighbourhoods=0, n_pums=5)
    with pytest.raises(ValueError, match="p: expected finite non-negative probabilities summing to 1"):
        tvd({"a": 2.0}, {"b": 1.0})  # was 1.5
    with pytest.raises(ValueError, match="ref"): size_adjusted_tvd({(1,) + (0,) * 8: 1.0}, {})  # was 0.5
    with pytest.raises(ValueError, match="weights"): key_distribution(tiny_state.pums[:3], weights=[1, -1, 1])
    md = synthesize(tiny_state, progress=False)
    from papercode.census.exact import household_distribution
    with pytest.raises(ValueError, match="smoothing and mixed_race_factor must be positive and finite"):
        reweight(household_distribution(tiny_state.pums), md, smoothing=float("nan"))
