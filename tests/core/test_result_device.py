"""Each result row names the device its work ran on: a CPU-only method run under `--device cuda` says cpu, in
the row, in results.json and in the printed table. No GPU needed: the requested CUDA device is faked (only the
registry's `resolve_device` and `device_info` are replaced; a CPU-only experiment never touches `ctx.device`)."""
import ast
import inspect
import json
import textwrap

import pytest
import torch

from papercode.core.lab import registry
from papercode.core.lab.registry import Experiment, Outcome, results_table, run_all, run_experiment
from papercode.core.utils import device_info

FAKE_GPU = "cuda:0 (Fake GPU for tests)"
CPU = device_info(torch.device("cpu"))


@pytest.fixture
def fake_cuda(monkeypatch):
    "Requests resolve to a CUDA device, which `device_info` names FAKE_GPU; the CPU keeps its real name."
    monkeypatch.setattr(registry, "resolve_device", lambda device="auto": torch.device("cuda"))
    monkeypatch.setattr(registry, "device_info",
                        lambda device=None: FAKE_GPU if torch.device(device).type == "cuda" else device_info(device))


def _exp(name, fn):
    return Experiment("core", name, f"claim {name}", "paper", "tol", fn)


def _cpu_only(ctx):
    assert ctx.device.type == "cuda"  # the run asked for CUDA; this method ignores it
    return Outcome(ours="1", passed=True, device="cpu")


def _on_ctx_device(ctx):
    return Outcome(ours=str(ctx.device), passed=True)


def test_a_cpu_only_outcome_names_the_cpu_in_a_cuda_run(fake_cuda, tmp_path):
    r = run_experiment(_exp("cpu_only", _cpu_only), device="cuda", out=tmp_path)
    assert r.verdict == "reproduced", r.error
    assert r.device == CPU and r.device.startswith("cpu (")


def test_an_outcome_without_device_keeps_the_run_device_beside_a_cpu_only_one(fake_cuda, tmp_path):
    rows = run_all([_exp("on_ctx", _on_ctx_device), _exp("cpu_only", _cpu_only)], device="cuda", out=tmp_path,
                   progress=False)
    assert [r.verdict for r in rows] == ["reproduced", "reproduced"], [r.error for r in rows]
    assert rows[0].ours == "cuda" and rows[0].device == FAKE_GPU
    assert rows[1].device == CPU
    saved = json.loads((tmp_path / "results.json").read_text())["results"]
    assert {r["name"]: r["device"] for r in saved} == {"on_ctx": FAKE_GPU, "cpu_only": CPU}


def test_the_table_names_each_rows_device_only_when_they_differ(fake_cuda, tmp_path):
    mixed = run_all([_exp("on_ctx", _on_ctx_device), _exp("cpu_only", _cpu_only)], device="cuda", out=tmp_path,
                    progress=False)
    lines = results_table(mixed).splitlines()
    header = lines[1].split()
    assert header[-1] == "device", lines[1]
    assert lines[3].rstrip().endswith("cuda:0") and lines[4].rstrip().endswith("cpu"), "\n".join(lines)
    same = run_all([_exp("on_ctx", _on_ctx_device)], device="cuda", out=tmp_path, progress=False)
    assert "device" not in results_table(same).splitlines()[1]


def test_an_outcome_device_that_is_not_a_device_is_that_experiments_error(fake_cuda, tmp_path):
    r = run_experiment(_exp("bad", lambda ctx: Outcome(ours="1", passed=True, device="nonsense")), device="cuda",
                       out=tmp_path)
    assert r.verdict == "error" and "nonsense" in r.error, r.error
    assert r.device == FAKE_GPU  # nothing is known of where it ran: the run's device stays


@pytest.mark.parametrize("name", ["ot1d_exact", "assignment_exact", "eps_to_exact"])
def test_the_core_cpu_only_checks_say_cpu_when_cuda_is_requested(fake_cuda, tmp_path, name):
    "Tiny scale, in process: these exact solvers run on the CPU whatever the run asked for."
    r = run_experiment(registry.discover()[f"core.{name}"], device="cuda", out=tmp_path)
    assert r.verdict == "reproduced", r.error
    assert r.device == CPU


def _says_where(fn) -> bool:
    "Does `fn` (or a `*_outcome` helper it returns through) use `ctx.device` or return `Outcome(device=...)`?"
    fn = inspect.unwrap(fn)
    srcs = [inspect.getsource(fn)]
    mod = inspect.getmodule(fn)
    srcs += [inspect.getsource(getattr(mod, n)) for n in fn.__code__.co_names
             if n.endswith("_outcome") and callable(getattr(mod, n, None))]
    for src in srcs:
        for node in ast.walk(ast.parse(textwrap.dedent(src))):
            if isinstance(node, ast.Attribute) and node.attr == "device" and getattr(node.value, "id", None) == "ctx":
                return True
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Outcome"
                    and any(k.arg == "device" for k in node.keywords)):
                return True
    return False


def test_every_registered_experiment_runs_on_ctx_device_or_says_where_it_ran():
    "Static: an experiment either uses the run's device or names the one its work used."
    reg = registry.discover()
    silent = sorted(k for k, e in reg.items() if not _says_where(e.fn))
    assert not silent, f"experiments that neither use ctx.device nor return Outcome(device=...): {silent}"
