"""The benchmark's entropic run in a child process (`run_in_child`), at a small size: a few seconds, most of it the
child's start."""
import math

from papercode.igw.bench import entropic_large, entropic_large_run


def test_entropic_large_runs_in_a_child_and_matches_the_same_run_here():
    small = entropic_large(1200, outer=2, inner=50)
    assert small["n"] == 1200 and small["d"] == 2 and small["outer_iters"] <= 2
    assert small["peak_mb"] >= 0 and math.isfinite(small["value"])
    here = entropic_large_run(1200, 2, 2.0, 2, 50, 1e-6)  # same seed, same code: same numbers in this process
    assert math.isclose(here["value"], small["value"], rel_tol=1e-4), (here["value"], small["value"])
