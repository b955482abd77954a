"""The registry and the `papercode` command on the requests a demanding user makes: bad seeds and devices,
misnamed experiments, claims that fail, outcomes results.json cannot hold, and a home page that counts
the claims the registry holds. In process, through `main`, on toy registries (seconds)."""
import json
from pathlib import Path

import pytest

from papercode.core.lab import registry
from papercode.core.lab.cli import main
from papercode.core.lab.registry import Experiment, Outcome, Result, results_table, run_all, select

ROOT = Path(__file__).resolve().parents[2]


def _exp(name, fn, kind="reproduce", module="core"):
    return Experiment(module, name, f"claim {name}", "paper", "tol", fn, kind)


TOYS = {e.key: e for e in (
    _exp("holds", lambda ctx: Outcome(ours="ok", passed=True, converged=True)),
    _exp("fails", lambda ctx: Outcome(ours="no", passed=False, converged=False)),
    _exp("sinkhorn", lambda ctx: Outcome(ours="t", table=[dict(a=1)]), kind="bench"),
    _exp("flow", lambda ctx: Outcome(ours="ok", passed=True), module="igw"),
)}


@pytest.fixture
def toys(monkeypatch):
    monkeypatch.setattr(registry, "discover", lambda: dict(TOYS))
    return TOYS


def _err_line(capsys):
    err = capsys.readouterr().err
    assert err.startswith("papercode: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --- exit codes --------------------------------------------------------------------------------------------------

def test_a_claim_not_reproduced_is_named_and_exits_1_only_under_strict(toys, tmp_path, capsys):
    assert main(["reproduce", "core.holds", "core.fails", "--out", str(tmp_path), "--device", "cpu"]) == 0
    cap = capsys.readouterr()
    assert "1 reproduced, 1 not reproduced" in cap.out
    assert cap.err.strip().splitlines()[-1] == "not reproduced: core.fails", cap.err


def test_all_claims_reproduced_exits_0(toys, tmp_path):
    assert main(["reproduce", "core.holds", "--out", str(tmp_path), "--device", "cpu"]) == 0


def test_strict_exits_1_when_a_claim_is_not_reproduced(toys, tmp_path):
    assert main(["reproduce", "core.fails", "--strict", "--out", str(tmp_path), "--device", "cpu"]) == 1
    assert main(["reproduce", "core.holds", "--strict", "--out", str(tmp_path), "--device", "cpu"]) == 0


# --- bad requests: one line, exit 2, the problem named -------------------------------------------------------------

@pytest.mark.parametrize("seed", ["-1", str(2**32), "99999999999999999999999"])
def test_a_seed_no_generator_takes_is_a_bad_request(toys, tmp_path, capsys, seed):
    assert main(["reproduce", "core.holds", "--seed", seed, "--out", str(tmp_path), "--device", "cpu"]) == 2
    err = _err_line(capsys)
    assert f"argument --seed: expected an integer from 0 to 4294967295 (2**32 - 1), got {int(seed)}" in err, err


def test_the_largest_seed_runs_and_is_recorded(toys, tmp_path):
    assert main(["reproduce", "core.holds", "--seed", str(2**32 - 1), "--out", str(tmp_path), "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "results.json").read_text())["results"][0]["seed"] == 2**32 - 1


@pytest.mark.parametrize("device", ["meta", "mps"])
def test_a_device_the_experiments_do_not_run_on_is_a_bad_request(toys, tmp_path, capsys, device):
    "The old command ran on the CPU and wrote 'cpu (...)' as the device of a run asked for `meta`."
    assert main(["reproduce", "core.holds", "--device", device, "--out", str(tmp_path)]) == 2
    err = _err_line(capsys)
    assert f"--device: {device!r} is not supported (use auto, cpu, cuda or cuda:k)" in err, err
    assert not (tmp_path / "results.json").exists()


def test_out_naming_a_file_says_so(toys, tmp_path, capsys):
    f = tmp_path / "a-file"
    f.write_text("x")
    assert main(["reproduce", "core.holds", "--out", str(f), "--device", "cpu"]) == 2
    assert f"--out: {str(f)!r} is a file, not a folder" in _err_line(capsys)


def test_a_benchmark_asked_of_reproduce_names_the_right_command(toys, capsys):
    assert main(["reproduce", "core.sinkhorn", "--device", "cpu"]) == 2
    assert ("'core.sinkhorn' is a benchmark, not a claim check: run `papercode bench core.sinkhorn`"
            in _err_line(capsys))
    assert main(["bench", "core.fails", "--device", "cpu"]) == 2
    assert "'core.fails' is a claim check, not a benchmark: run `papercode reproduce core.fails`" in _err_line(capsys)


def test_an_unknown_experiment_lists_its_module_only_and_suggests(toys):
    with pytest.raises(ValueError) as e:
        select(["core.hold"])
    msg = str(e.value)
    assert msg.startswith("unknown experiment 'core.hold' (did you mean 'core.holds'? "), msg
    assert "reproduce experiments of core: core.holds, core.fails" in msg and "igw.flow" not in msg, msg
    with pytest.raises(ValueError, match=r"unknown experiment 'nochapter.x': no module 'nochapter' \(known: core, igw"):
        select(["nochapter.x"])


# --- one experiment's bad outcome is that experiment's error, never the run's ---------------------------------------

def test_details_results_json_cannot_hold_make_an_error_row_and_the_run_goes_on(tmp_path):
    exps = [_exp("unsaveable", lambda ctx: Outcome(ours="1", passed=True, details={"where": Path("x")})),
            _exp("after", lambda ctx: Outcome(ours="2", passed=True))]
    res = run_all(exps, out=tmp_path, progress=False)
    assert [r.verdict for r in res] == ["error", "reproduced"]
    assert "core.unsaveable: Outcome details and table must be JSON-able" in res[0].error
    assert "PosixPath" in res[0].error
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [r["name"] for r in rows] == ["unsaveable", "after"]


def test_a_figure_that_cannot_be_saved_makes_an_error_row(tmp_path):
    exps = [_exp("badfig", lambda ctx: Outcome(ours="1", passed=True, figures={"f": object()})),
            _exp("after", lambda ctx: Outcome(ours="2", passed=True))]
    res = run_all(exps, out=tmp_path, progress=False)
    assert [r.verdict for r in res] == ["error", "reproduced"]
    assert "expected a matplotlib or plotly figure" in res[0].error


# --- the table says whether the solvers converged ------------------------------------------------------------------

def test_results_table_states_whether_solvers_converged():
    base = dict(module="core", claim="c", paper="p", tol="t", scale="tiny", seed=0, device="cpu", seconds=0.1)
    rs = [Result(name="a", ours="1", verdict="reproduced", converged=True, **base),
          Result(name="b", ours="2", verdict="reproduced", converged=False, **base),
          Result(name="c", ours="3", verdict="reported", **base)]
    lines = results_table(rs).splitlines()
    header = lines[1].split()
    assert header == ["claim", "paper", "ours", "scale", "seed", "verdict", "converged", "tol", "secs"], header
    col = lines[1].index("converged")
    assert [ln[col:col + 3].strip() for ln in lines[3:6]] == ["yes", "no", "—"], lines


# --- the home page counts what the registry holds ------------------------------------------------------------------

def test_home_page_chapter_table_matches_the_registry():
    from papercode.core.lab.readme import chapter_table
    nb = json.loads((ROOT / "nbs" / "index.ipynb").read_text(encoding="utf-8"))
    stored = ["".join(o["data"]["text/markdown"]) for c in nb["cells"] if c["cell_type"] == "code"
              for o in c.get("outputs", []) if "text/markdown" in o.get("data", {})]
    assert stored and stored[0].strip() == chapter_table().strip(), \
        "the chapter table stored in nbs/index.ipynb is stale: re-run its cell, then python -m papercode.core.lab.readme"
