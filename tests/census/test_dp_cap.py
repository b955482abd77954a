"""The DP's state cap: the numpy state count is exactly the recursion's, so a block over the cap fails fast and a block under it is unchanged."""
import numpy as np
import pytest

from papercode.census import household_distribution, synthetic_state
from papercode.census.exact import DPTooLarge, ExactSampler
from papercode.census.tables import encode_block


@pytest.fixture(scope="module")
def blocks():
    "Every (target, π) of a small synthetic state at levels 1-3, with its uncapped DP (levels 2-3 leave the household count free)."
    st = synthetic_state(40, seed=131, max_households=12, n_pums=20_000)
    d1 = household_distribution(st.pums)
    out = []
    for t in st.tables:
        if t.persons == 0: continue
        for lev in (1, 2, 3):
            u = True if lev == 1 else bool(t.use_age)
            dl = d1.at(lev, u)
            c = encode_block(t, lev, u)
            try: out.append((c, dl, ExactSampler(c, dl, max_states=60_000)))
            except DPTooLarge: pass  # the uncapped DP would take seconds: left out

    return out


def _sampler(c, dl, cap):
    try: return ExactSampler(c, dl, max_states=cap)
    except DPTooLarge: return None


def test_count_states_equals_the_recursions_memo(blocks):
    checked = [(ex.dp.count_states(ex.targets.values()), len(ex.dp.memo)) for c, dl, ex in blocks if ex.dp is not None and ex.dp.A]
    assert len(checked) > 50 and max(m for _, m in checked) > 10_000  # both regimes, and counts past the numpy probe
    assert all(k == m for k, m in checked), [(k, m) for k, m in checked if k != m]
    assert blocks[0][2].dp.count_states([], None) == 0


def test_the_cap_is_exact_at_its_boundary_and_results_are_unchanged(blocks):
    big = [(c, dl, ex) for c, dl, ex in blocks if ex.dp is not None and 10_000 < len(ex.dp.memo) <= 40_000]
    assert big, "no block between the probe and the cap"
    for c, dl, ex in big[:2]:
        total = len(ex.dp.memo)
        assert _sampler(c, dl, total - 1) is None  # one state over: refused by the count, before the DP finishes
        capped = _sampler(c, dl, total)  # exactly at the cap: the DP resumes past the probe and finishes
        assert capped is not None and len(capped.dp.memo) == total
        assert (capped.info.n_solutions, capped.info.log_z, capped.ncount) == (ex.info.n_solutions, ex.info.log_z, ex.ncount)
        a = capped.sample(200, np.random.default_rng(5), method="forward")
        b = ExactSampler(c, dl).sample(200, np.random.default_rng(5), method="forward")
        assert (a == b).all()
        assert capped.dp.max_states == total  # the cap is restored after the probe


def test_a_block_over_the_cap_is_refused_by_the_count_not_the_recursion(blocks, monkeypatch):
    from papercode.census.exact import MultisetDP
    over = [(c, dl, len(ex.dp.memo)) for c, dl, ex in blocks if ex.dp is not None and len(ex.dp.memo) > 30_000]
    assert over
    c, dl, total = over[0]
    seen, count = [], MultisetDP.count_states
    def spy(self, roots, cap=None):
        seen.append(len(self.memo)); return count(self, roots, cap)
    monkeypatch.setattr(MultisetDP, "count_states", spy)
    with pytest.raises(DPTooLarge, match="more than 20000 memoised states"):
        ExactSampler(c, dl, max_states=20_000)
    assert seen and seen[0] <= 10_001  # the recursion stopped at the probe; the numpy count refused the block
    assert ExactSampler(c, dl, max_states=total).info.dp_states == total  # and the same block fits a cap of its size


def test_ratio_bounds_hold_for_every_vector_left_and_are_attained():
    from papercode.census.exact import MultisetDP
    rng = np.random.default_rng(7)
    for _ in range(20):
        A = rng.integers(0, 4, size=(12, 5)); A = A[A.any(1)]
        dp = MultisetDP(A, np.zeros(len(A)))
        for i, cons in enumerate(dp.ratios[:-1]):
            S = A[i:]
            for j, k, lo in cons:
                assert j != k and j not in dp.dead[i] and k not in dp.dead[i]
                assert (S[:, j] >= lo * S[:, k]).all()  # valid for every vector left, so for any sum of them
                m = S[:, k] > 0
                assert abs((S[m, j] / S[m, k]).min() - lo) < 1e-9  # and the tightest such bound
        assert MultisetDP(A, np.zeros(len(A)), prune=False).ratios is None


def test_pruning_changes_the_states_not_the_results(blocks):
    pruned = unpruned = 0
    for c, dl, ex in blocks[::3]:
        if ex.dp is None or not ex.dp.A: continue
        plain = ExactSampler(c, dl, prune=False)
        assert plain.ncount == ex.ncount  # counts and log-partition values, bit for bit
        assert len(ex.dp.memo) <= len(plain.dp.memo)
        pruned += len(ex.dp.memo); unpruned += len(plain.dp.memo)
        if ex.info.n_solutions <= 200: assert (plain.solutions() == ex.solutions()).all()
        a = ex.sample(50, np.random.default_rng(3), method="forward")
        b = plain.sample(50, np.random.default_rng(3), method="forward")
        assert (a == b).all()  # the same draws for the same seed
    assert pruned < 0.5 * unpruned, (pruned, unpruned)
