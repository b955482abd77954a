"""Import hygiene, README vs home page, and the CI script running the README's test command."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_papercode_pulls_in_no_triton_transformers_or_cuda():
    code = """
import sys, importlib, pkgutil
import papercode, papercode.core
mods = [m.name for m in pkgutil.walk_packages(papercode.__path__, 'papercode.')
        if not m.name.endswith(('.triton', '.site'))]
for m in mods: importlib.import_module(m)
import torch
bad = [m for m in ('triton', 'transformers', 'sphinx', 'peft') if m in sys.modules]
assert not bad, bad
assert not torch.cuda.is_initialized(), 'CUDA initialised at import'
print(len(mods))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) >= 10  # the modules were really imported


def test_readme_is_generated_from_the_home_page():
    from papercode.core.lab.readme import render_readme
    assert (ROOT / "README.md").read_text(encoding="utf-8") == render_readme(ROOT / "nbs" / "index.ipynb"), \
        "README.md differs from nbs/index.ipynb: run `python -m papercode.core.lab.readme`"


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    test_cmd = next(b for b in blocks if "pytest" in b).strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert any(line.strip() == test_cmd for line in ci.splitlines()), test_cmd


def test_chapters_match_the_sidebar():
    import yaml
    from papercode.core.lab.registry import CHAPTERS
    q = yaml.safe_load((ROOT / "_quarto.yml").read_text())
    globs = [s["contents"] for s in q["website"]["sidebar"]["contents"] if isinstance(s, dict)]
    wings = ["00_core/ot/*.ipynb", "00_core/models/*.ipynb", "00_core/lab/*.ipynb"]
    assert globs == [f"{CHAPTERS[0].folder}/*.ipynb", *wings] + [f"{c.folder}/*.ipynb" for c in CHAPTERS[1:]]
    assert (ROOT / "nbs" / "_quarto.yml").resolve() == (ROOT / "_quarto.yml").resolve()
