"""`papercode rank`: end to end through the command line (in process and as the installed script), the CSV format,
the tables it writes, and one-line errors with exit code 2 for bad input."""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from papercode.core.lab.cli import main
from papercode.dominance.commands import parse_metrics, parse_weights, read_scores
from papercode.dominance.ranking import N_BOOT, relative_ranking


def _write(path, n=40, seed=0, models=(("good", 0.5), ("mid", 0.25), ("bad", 0.0)), blank=None):
    "Long CSV: prompt_id, model, quality (+), errors (-); `blank` = (row, column) left empty."
    rng = np.random.default_rng(seed)
    base = rng.normal(size=n)
    rows = []
    for p in range(n):
        for m, shift in models:
            rows.append([f"p{p}", m, round(base[p] + shift + 0.5 * rng.normal(), 6),
                         round(-base[p] - shift + 0.5 * rng.normal(), 6)])
    if blank is not None:
        rows[blank[0]][blank[1]] = ""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh); w.writerow(["prompt_id", "model", "quality", "errors"]); w.writerows(rows)
    return rows


def _run(capsys, *argv):
    rc = main(["rank", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_rank_end_to_end_matches_the_library(tmp_path, capsys):
    rows = _write(tmp_path / "s.csv")
    rc, out, err = _run(capsys, str(tmp_path / "s.csv"), "--metrics", "quality:+", "errors:-", "--n-boot", "30",
                        "--seed", "3", "--out", str(tmp_path / "out"))
    assert rc == 0, err
    assert "30 bootstrap resamples (seed 3)" in out and "Bonferroni over 6 one-sided tests" in out
    assert "device cpu" in out and "converged: yes" in out
    long = {"prompt_id": [r[0] for r in rows], "model": [r[1] for r in rows],
            "quality": [r[2] for r in rows], "errors": [r[3] for r in rows]}
    r = relative_ranking(long, metrics={"quality": "higher", "errors": "lower"}, n_boot=30, seed=3)
    table = list(csv.DictReader(open(tmp_path / "out" / "ranking.csv")))
    assert [t["model"] for t in table] == list(r.ranking) == ["good", "mid", "bad"]
    for t in table:
        i = r.models.index(t["model"])
        assert float(t["eps_i"]) == pytest.approx(float(r.one_vs_all[i]), rel=1e-12)
        assert float(t["eps_i_lo"]) == pytest.approx(float(r.one_vs_all_ci[i, 0]), rel=1e-12)
        assert (int(t["rank_lo"]), int(t["rank_hi"])) == tuple(r.rank_ci[i].tolist())
    for m in r.ranking:  # every model's line in the printed table carries its ε_i
        assert f"{float(r.one_vs_all[r.models.index(m)]):6.4f}" in out
    ratios = list(csv.reader(open(tmp_path / "out" / "ratios.csv")))
    assert ratios[0] == ["model", "good", "mid", "bad"]
    assert float(ratios[1][2]) == pytest.approx(float(r.ratios[0, 1]), rel=1e-12)


def test_rank_options_reach_the_ranking(tmp_path, capsys):
    "--weights, --correction, --models, --level and --standardize change what they should."
    _write(tmp_path / "s.csv")
    args = [str(tmp_path / "s.csv"), "--metrics", "quality:+", "errors:-", "--n-boot", "20"]
    rc, out, _ = _run(capsys, *args, "--correction", "holm", "--level", "0.8", "--models", "bad", "good",
                      "--weights", "quality:3", "--standardize", "z", "--out", str(tmp_path / "o1"))
    assert rc == 0 and "Holm over 2 one-sided tests" in out and "80% interval" in out
    assert "weights (scaled to mean 1) quality 1.5, errors 0.5" in out
    table = list(csv.DictReader(open(tmp_path / "o1" / "ranking.csv")))
    assert sorted(t["model"] for t in table) == ["bad", "good"]
    pairs = list(csv.DictReader(open(tmp_path / "o1" / "pairs.csv")))
    assert len(pairs) == 2


def test_rank_reports_ties(tmp_path, capsys):
    "Two models with identical scores share a rank and are marked as tied."
    _write(tmp_path / "s.csv", models=(("a", 0.0), ("b", 0.0)))
    text = (tmp_path / "s.csv").read_text().splitlines()
    rows = [text[0]]  # make model b an exact copy of model a
    for i in range(1, len(text), 2):
        a = text[i].split(",")
        rows += [text[i], ",".join([a[0], "b", *a[2:]])]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    rc, out, _ = _run(capsys, str(tmp_path / "s.csv"), "--metrics", "quality:+", "errors:-", "--n-boot", "20",
                      "--out", str(tmp_path / "o"))
    assert rc == 0 and "= tied" in out
    table = list(csv.DictReader(open(tmp_path / "o" / "ranking.csv")))
    assert [t["rank"] for t in table] == ["1", "1"] and all(t["tied"] == "True" for t in table)


@pytest.mark.parametrize("argv,message", [
    (["missing.csv", "--metrics", "quality:+"], "scores: file 'missing.csv' not found"),
    (["{csv}", "--metrics", "bleu:+"], "has no column(s) ['bleu']"),
    (["{csv}", "--metrics", "quality:max"], "direction of 'quality' must be + (higher is better) or - (lower is better)"),
    (["{csv}", "--metrics", "quality"], "'quality' is not name:+ or name:-"),
    (["{csv}", "--metrics", "quality:+", "--weights", "quality:heavy"], "weight of 'quality' must be a number"),
    (["{csv}", "--metrics", "quality:+", "--weights", "quality:-1"], "weights: must be finite and > 0"),
    (["{csv}", "--metrics", "quality:+", "--models", "good"], "need at least two models"),
    (["{csv}", "--metrics", "quality:+", "--n-boot", "5"], "n_boot: need an integer >= 10"),
    (["{csv}", "--metrics", "quality:+", "--alpha", "2"], "alpha: must lie in"),
    (["{csv}", "--metrics", "quality:+", "--level", "1"], "level: the interval coverage must lie in (0, 1)"),
    (["{csv}", "--metrics", "quality:+", "--correction", "sidak"], "argument --correction: invalid choice"),
    (["{csv}", "--metrics", "quality:+", "--device", "tpu"], "device: 'tpu' is not a device"),
    (["{text}", "--metrics", "quality:+"], "text.csv line 3, column 'quality': 'n/a' is not a number"),
    (["{few}", "--metrics", "quality:+"], "4 prompts are too few for the bootstrap"),
    (["{gap}", "--metrics", "quality:+"], "1 of 40 prompts have NaN or missing scores (e.g. prompts ['p0']); pass --nan drop"),
    (["{csv}"], "the following arguments are required: --metrics"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "s.csv")
    lines = (tmp_path / "s.csv").read_text().splitlines()
    (tmp_path / "text.csv").write_text("\n".join(lines[:2] + [lines[2].replace(lines[2].split(",")[2], "n/a")] + lines[3:]))
    _write(tmp_path / "few.csv", n=4)
    _write(tmp_path / "gap.csv", blank=(1, 2))
    files = {"{csv}": "s.csv", "{text}": "text.csv", "{few}": "few.csv", "{gap}": "gap.csv"}
    argv = [files.get(a, a) for a in argv]
    rc, out, err = _run(capsys, *argv, "--out", str(tmp_path / "o"))
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("papercode: error: "), err
    assert message in err, err


def test_nan_drop_warns_once_and_ranks(tmp_path, capsys):
    _write(tmp_path / "gap.csv", blank=(4, 3))
    rc, out, err = _run(capsys, str(tmp_path / "gap.csv"), "--metrics", "quality:+", "errors:-", "--nan", "drop",
                        "--n-boot", "20", "--out", str(tmp_path / "o"))
    assert rc == 0 and "39 prompts" in out and "1 prompt(s) with missing scores dropped" in out
    assert err.strip() == "papercode rank: warning: dropped 1 of 40 prompts with NaN or missing scores (e.g. ['p1'])"


def test_unwritable_out(tmp_path, capsys):
    _write(tmp_path / "s.csv")
    (tmp_path / "file").write_text("not a folder")
    rc, _, err = _run(capsys, str(tmp_path / "s.csv"), "--metrics", "quality:+", "--n-boot", "10",
                      "--out", str(tmp_path / "file" / "sub"))
    assert rc == 2 and "--out: cannot write the tables to" in err


def test_parsers():
    assert parse_metrics(["a:+", "b:-", "c:higher", "d:lower", "e:f:-"]) == \
        {"a": "higher", "b": "lower", "c": "higher", "d": "lower", "e:f": "lower"}  # the last colon splits
    assert parse_weights(None, {"a": "higher"}) is None
    assert parse_weights(["b:2"], {"a": "higher", "b": "lower"}) == {"a": 1.0, "b": 2.0}
    with pytest.raises(ValueError, match="name at least one metric"):
        parse_metrics([])


def test_read_scores_format(tmp_path):
    (tmp_path / "s.csv").write_text("\ufeffprompt_id,model,m,notes\n1,a,0.5,x\n1,b,,y\n")  # BOM, blank cell, extra column
    t = read_scores(tmp_path / "s.csv", ["m"])
    assert t["prompt_id"] == ["1", "1"] and t["model"] == ["a", "b"]
    assert t["m"][0] == 0.5 and np.isnan(t["m"][1]) and "notes" not in t


def test_default_n_boot_is_the_chapter_default(tmp_path):
    import argparse
    from papercode.dominance.commands import arguments
    p = argparse.ArgumentParser()
    arguments(p)
    assert p.parse_args(["x.csv", "--metrics", "a:+"]).n_boot == N_BOOT


def test_installed_script(tmp_path):
    "The `papercode` console script of this environment runs `rank` in a fresh process."
    exe = Path(sys.executable).with_name("papercode")
    if not exe.exists():
        exe = shutil.which("papercode")
    if exe is None:
        pytest.skip("no installed papercode script next to this interpreter or on PATH")
    _write(tmp_path / "s.csv", n=20)
    p = subprocess.run([str(exe), "rank", "s.csv", "--metrics", "quality:+", "errors:-", "--n-boot", "10",
                        "--out", "tables"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})  # one torch thread, as the chapter's tests (conftest)
    assert p.returncode == 0, p.stderr
    assert "20 prompts x 3 models x 2 metrics; 10 bootstrap resamples (seed 0)" in p.stdout
    assert (tmp_path / "tables" / "ranking.csv").exists()
