"""The reduced chain's heat-bath neighbourhood: the numpy enumeration of same-sum multisets equals the exact DP's
enumeration, row for row and in the same order (so chains draw the same moves), and falls back to the DP where it must."""
import numpy as np
import pytest

import papercode.census.chains as chains
from papercode.census import household_distribution, synthetic_state
from papercode.census.chains import reduced_chain_run, same_sum_multisets
from papercode.census.exact import ExactSampler, brute_force


@pytest.fixture(scope="module")
def sums():
    "Sums of k = 1..4 households drawn from π at levels 1, 2 (household count fixed) and 3 (free), with the DP's answer."
    st = synthetic_state(20, seed=5, max_households=12, n_pums=5_000)
    d1 = household_distribution(st.pums)
    rng = np.random.default_rng(11)
    out = []
    for level, u in ((1, True), (2, True), (2, False), (3, True)):
        dl = d1.at(level, u)
        for k in (1, 2, 3, 4):
            for _ in range(3):
                s = dl.vectors[rng.choice(len(dl.pi), size=k, p=dl.pi)].sum(0)
                if level == 3 and k == 4: continue  # the DP alone takes seconds there
                out.append((level, k, s, dl, ExactSampler(s, dl).solutions()))
    return out


def test_same_sum_multisets_equal_the_dp_row_for_row(sums):
    assert max(len(X) for *_, X in sums) > 50  # some neighbourhoods are large
    for level, k, s, dl, X in sums:
        F = same_sum_multisets(s, dl)
        assert F.shape == X.shape and (F == X).all(), (level, k)
        assert (F @ dl.vectors == s).all()


def test_numpy_path_needs_no_dp_where_the_count_is_fixed(sums, monkeypatch):
    def refuse(*a, **kw): raise AssertionError("the DP was called")
    monkeypatch.setattr(chains, "ExactSampler", refuse)
    fixed = [(s, dl, X) for level, k, s, dl, X in sums if level < 3]
    assert fixed
    for s, dl, X in fixed:
        assert (same_sum_multisets(s, dl) == X).all()
    free = next((s, dl) for level, k, s, dl, X in sums if level == 3 and k > 1)
    with pytest.raises(AssertionError, match="the DP was called"):  # level 3 leaves the count free: the DP's job
        same_sum_multisets(*free)


def test_large_enumerations_go_to_the_dp_before_growing(sums, monkeypatch):
    level, k, s, dl, X = max(sums, key=lambda t: len(t[4]) if t[0] < 3 else 0)
    calls = []
    real = chains.ExactSampler
    monkeypatch.setattr(chains, "ExactSampler", lambda *a, **kw: (calls.append(1), real(*a, **kw))[1])
    assert (same_sum_multisets(s, dl, max_partial=3) == X).all() and calls  # handed to the DP
    calls.clear()
    assert (same_sum_multisets(s, dl) == X).all() and not calls  # numpy alone under the default


def test_hash_collisions_fall_back_to_the_dp(sums, monkeypatch):
    monkeypatch.setattr(chains, "_HASH_W", np.zeros_like(chains._HASH_W))  # every vector hashes to 0
    for level, k, s, dl, X in sums[:12]:
        assert (same_sum_multisets(s, dl) == X).all()


def test_small_cases_against_brute_force():
    "An independent enumeration (every combination with replacement) on a toy where the first coordinate counts households."
    from papercode.census.exact import vector_distribution
    dist = vector_distribution(np.array([[1, 1, 0], [1, 0, 1], [1, 0, 0], [1, 2, 0], [1, 1, 1]]), np.array([0.3, 0.2, 0.25, 0.15, 0.1]))
    sizes = []
    for s in ([3, 2, 1], [4, 3, 1], [2, 0, 0], [3, 5, 0], [4, 4, 2], [5, 3, 2], [1, 3, 3]):
        got = same_sum_multisets(np.array(s), dist)
        want = brute_force(np.array(s), dist)
        assert {tuple(r) for r in got} == {tuple(r) for r in want} and len(got) == len(want), s
        sizes.append(len(got))
    assert 0 in sizes and max(sizes) >= 4  # an infeasible sum and a rich one


def test_reduced_chain_unchanged_by_the_faster_move():
    "The same seed gives the same path whether the neighbourhoods come from numpy or from the DP."
    st = synthetic_state(30, seed=3, max_households=10, n_pums=5_000)
    dl = household_distribution(st.pums).at(2, True)
    from papercode.census.tables import encode_block
    t = next(t for t in st.tables if t.households == 9)
    x0 = ExactSampler(encode_block(t, 2, True), dl).sample(1, np.random.default_rng(0))[0]
    fast = reduced_chain_run(x0, dl, 3, 300, np.random.default_rng(7))
    slow_moves = chains._Moves(dl, None)
    slow_moves.same_sum = lambda r: ExactSampler(r @ dl.vectors, dl).solutions()
    slow = reduced_chain_run(x0, dl, 3, 300, np.random.default_rng(7), moves=slow_moves)
    assert (fast == slow).all() and (fast != x0).any()
