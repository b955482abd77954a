"""Notebooks run once in CI, under `nbdev_test`; nbval stays a working entry point for notebooks named on the command line."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_nbval_runs_a_notebook_and_skips_its_flagged_cells_as_nbdev_test_does():
    nb = "nbs/00_core/ot/90_bench.ipynb"  # small, with a `#| slow` cell and the closing nbdev_export cell
    r = subprocess.run([sys.executable, "-m", "pytest", nb, "-q", "-rs", "-p", "no:cacheprovider"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "#| slow cell (skipped as nbdev_test skips it)" in out, out[-3000:]
    assert "nbdev_export cell" in out, out[-3000:]
    assert " passed" in out and " failed" not in out, out[-3000:]


def test_plain_pytest_collects_tests_only():
    import tomllib
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert cfg["testpaths"] == ["tests"], "the notebooks run under nbdev_test; running them again under nbval doubles CI time"
