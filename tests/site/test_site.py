"""The offline documentation site, built and checked in a real browser.

A session fixture builds the site (`papercode.core.lab.site.build_site`) into a temporary folder, serves it on
127.0.0.1 (a free port) and runs `site/browser_check.mjs`: headless Debian Chromium driven by
playwright-core visits every page, blocks and records any request that leaves 127.0.0.1, probes math,
plotly figures and widgets, and writes a screenshot of each page to `results/screenshots/` (the home page
is `index.png`). The tests below assert on its JSON report, plus a few checks of the HTML itself.

Needs node, the npm packages of `site/` (`npm ci --prefix site`) and `/usr/bin/chromium` (or the path in
`PAPERCODE_CHROMIUM`); `bash site/setup-deps.sh` installs them. Without them the browser tests skip, or fail
under CI (env `CI` set).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from papercode.core.testing import require

ROOT = Path(__file__).resolve().parents[2]
SITE_DIR = ROOT / "site"
SCREENSHOTS = ROOT / "results" / "screenshots"
CHROMIUM = os.environ.get("PAPERCODE_CHROMIUM", "/usr/bin/chromium")
TIMES = {}  # seconds per stage, printed at the end of the session


@pytest.fixture(scope="session")
def site():
    "The site built from this checkout's notebooks (warnings collected, not raised)."
    require(shutil.which("npm") is not None or (SITE_DIR / "node_modules" / "mathjax").is_dir(),
            "npm is not installed and site/node_modules is missing (run: bash site/setup-deps.sh)")
    from papercode.core.lab.site import build_site
    import tempfile
    tmp = Path(tempfile.mkdtemp(prefix="papercode-site-test-"))
    t0 = time.perf_counter()
    out = build_site(ROOT, tmp / "html", strict=False)
    TIMES["site build"] = time.perf_counter() - t0
    yield out
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def report(site):
    "The browser check's JSON report: one entry per page of the site."
    require(Path(CHROMIUM).exists(), f"chromium not found at {CHROMIUM} (apt-get install chromium)")
    require(shutil.which("node") is not None, "node is not installed (apt-get install nodejs npm)")
    require((SITE_DIR / "node_modules" / "playwright-core").is_dir(),
            "playwright-core is not installed (run: npm ci --prefix site)")
    from papercode.core.lab.site import start_server
    pages = json.loads((site / ".papercode-site.json").read_text())["pages"]
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    srv = start_server(site)
    cfg = site.parent / "browser_check.json"
    cfg.write_text(json.dumps({"base": f"http://127.0.0.1:{srv.server_port}/", "pages": pages,
                               "screenshots": str(SCREENSHOTS), "executable": CHROMIUM}))
    t0 = time.perf_counter()
    try:
        r = subprocess.run(["node", str(SITE_DIR / "browser_check.mjs"), str(cfg)], capture_output=True,
                           text=True, timeout=300, cwd=SITE_DIR)
    finally:
        srv.shutdown()
        srv.server_close()
    TIMES["browser check"] = time.perf_counter() - t0
    assert r.returncode == 0, f"browser_check.mjs failed (exit {r.returncode}):\n{r.stderr[-4000:]}"
    rep = json.loads(r.stdout)
    (ROOT / "results" / "site_browser_report.json").write_text(json.dumps(rep, indent=1))
    return rep


def _bad(report, fn):
    "`{page: problem}` for every page where `fn(page_record)` is truthy."
    return {p["path"]: v for p in report["pages"] if (v := fn(p))}


# --- the build and the HTML itself ------------------------------------------------------------------

def test_site_builds_without_warnings(site):
    warnings = json.loads((site / ".papercode-site.json").read_text())["warnings"]
    assert warnings == [], "Sphinx warnings:\n" + "\n".join(warnings)


def test_every_notebook_has_a_page(site):
    from papercode.core.lab.site import site_notebooks
    docs = site_notebooks(ROOT / "nbs")
    missing = [d for d in docs if not (site / f"{d}.html").exists()]
    assert not missing and (site / "index.html").exists(), f"no page for {missing}"


def test_no_remote_scripts_styles_or_fonts(site):
    from papercode.core.lab.site import remote_refs
    assert remote_refs(site) == []
    # and the scripts the pages load are the site's own copies
    html = (site / "00_core" / "20_plotting.html").read_text()
    assert "_static/papercode/plotly.min.js" in html and "_static/papercode/mathjax/tex-chtml.js" in html
    assert (site / "_static" / "papercode" / "plotly.min.js").stat().st_size > 1_000_000
    for f in site.rglob("*.html"):  # plotly.js once per page at most, and only where a figure is
        t = f.read_text()
        n = len(re.findall(r'<script[^>]*src="[^"]*plotly\.min\.js', t))
        assert n == ('<div class="papercode-plotly"' in t), f"{f.name}: plotly.js loaded {n} times"


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for attr in ("href", "src"):
            if a.get(attr) and tag in ("a", "link", "script", "img"):
                self.links.append(a[attr])


def test_internal_links_resolve(site):
    broken = []
    for f in site.rglob("*.html"):
        if "_static" in f.parts:
            continue
        p = _Links()
        p.feed(f.read_text())
        for link in p.links:
            u = urlsplit(link)
            if u.scheme or u.netloc or not u.path:
                continue
            target = (f.parent / unquote(u.path)).resolve()
            if not target.exists():
                broken.append(f"{f.relative_to(site)} -> {link}")
    assert not broken, "broken links:\n" + "\n".join(sorted(set(broken))[:30])


def test_sidebar_mirrors_quarto_sections(site):
    import yaml
    from papercode.core.lab.site import sidebar_sections, site_notebooks
    expected = [c for c, _ in sidebar_sections(yaml.safe_load((ROOT / "_quarto.yml").read_text()),
                                               site_notebooks(ROOT / "nbs")) if c]
    html = (site / "index.html").read_text()
    captions = re.findall(r'<p aria-level="2" class="caption" role="heading"><span class="caption-text">(.*?)</span>', html)
    import html as _html
    assert [_html.unescape(c) for c in captions] == expected


class _MathText(HTMLParser):
    "The text of every Sphinx math element (class `math`) of a page."
    def __init__(self):
        super().__init__()
        self.depth, self.found = 0, []

    def handle_starttag(self, tag, attrs):
        if self.depth:
            self.depth += 1
        elif "math" in (dict(attrs).get("class") or "").split():
            self.depth = 1
            self.found.append("")

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.found[-1] += data


def test_math_source_has_no_control_characters(site):
    "A tab, form feed or backspace in TeX is an escape eaten by a Python string (`\\tilde` written as `\tilde`)."
    bad = []
    for f in sorted(site.rglob("*.html")):
        p = _MathText()
        p.feed(f.read_text())
        bad += [f"{f.relative_to(site)}: {m.strip()[:80]!r}" for m in p.found if re.search(r"[\t\x0b\x0c\x08\x07\r]", m)]
    assert not bad, "math with control characters (an escape such as \\t, \\v, \\b eaten on the way):\n" + "\n".join(bad)


def _notebook(*cells, **metadata):
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": metadata,
            "cells": [{"cell_type": t, "id": f"cell{i}", "metadata": {}, "source": src,
                       **({"outputs": rest[0] if rest else [], "execution_count": None} if t == "code" else {})}
                      for i, (t, src, *rest) in enumerate(cells)]}


def _stream(text):
    return {"output_type": "stream", "name": "stdout", "text": text}


def test_tiny_checkout_end_to_end(tmp_path):
    "Directives, title cell, home page and sidebar on a two-notebook checkout (no browser)."
    require(shutil.which("npm") is not None or (SITE_DIR / "node_modules" / "mathjax").is_dir(),
            "npm is not installed and site/node_modules is missing (run: bash site/setup-deps.sh)")
    from papercode.core.lab.site import build_site
    root = tmp_path / "repo"
    (root / "nbs" / "01_demo").mkdir(parents=True)
    (root / "site").symlink_to(SITE_DIR)
    (root / "settings.ini").write_text("[DEFAULT]\ntitle = tinysite\ndescription = Two pages.\nnbs_path = nbs\n")
    (root / "_quarto.yml").write_text('website:\n  sidebar:\n    contents:\n      - index.ipynb\n'
                                      '      - section: "00 · Nothing yet"\n        contents: "00_core/*.ipynb"\n'
                                      '      - section: "01 · Demo: a chapter"\n        contents: "01_demo/*.ipynb"\n')
    (root / "nbs" / "index.ipynb").write_text(json.dumps(_notebook(("markdown", "# Welcome\n> The home page."))))
    (root / "nbs" / "01_demo" / "10_mod.ipynb").write_text(json.dumps(_notebook(
        ("code", "#| default_exp demo.mod"),
        ("markdown", "# The module\n> What it does."),
        ("code", "#| export\ndef visible_function(): pass"),
        ("code", "#| hide\nhidden_setup = 1", [_stream("HIDDEN-OUTPUT\n")]),
        ("code", "#| echo: false\nsecret_source()", [_stream("ECHO-OFF-OUTPUT\n")]),
        ("code", "#| output: false\nshown_source()", [_stream("SUPPRESSED-OUTPUT\n")]),
        ("markdown", "Math: $a^2 + b^2$."))))
    site = build_site(root, tmp_path / "out")  # strict: raises on any warning
    page = (site / "01_demo" / "10_mod.html").read_text()
    assert "visible_function" in page and "#|" not in page and "default_exp" not in page
    assert "hidden_setup" not in page and "HIDDEN-OUTPUT" not in page
    assert "secret_source" not in page and "ECHO-OFF-OUTPUT" in page
    assert "shown_source" in page and "SUPPRESSED-OUTPUT" not in page
    assert "<title>The module" in page and '<p class="lead">What it does.</p>' in page
    home = (site / "index.html").read_text()
    assert "<title>Welcome" in home and "01 · Demo: a chapter" in home and "Nothing yet" not in home
    assert "plotly.min.js" not in page  # no figure, no plotly.js


def test_warnings_fail_the_build_and_name_the_notebook(tmp_path):
    require(shutil.which("npm") is not None or (SITE_DIR / "node_modules" / "mathjax").is_dir(),
            "npm is not installed and site/node_modules is missing (run: bash site/setup-deps.sh)")
    from papercode.core.lab.site import SiteBuildError, build_site
    root = tmp_path / "repo"
    (root / "nbs").mkdir(parents=True)
    (root / "site").symlink_to(SITE_DIR)
    (root / "settings.ini").write_text("[DEFAULT]\ntitle = broken\nnbs_path = nbs\n")
    (root / "nbs" / "10_bad.ipynb").write_text(json.dumps(_notebook(
        ("markdown", "# Bad\n> A dangling reference."), ("markdown", "See {doc}`no_such_page`."))))
    with pytest.raises(SiteBuildError) as e:
        build_site(root, tmp_path / "out")
    assert "nbs/10_bad.ipynb" in str(e.value) and "no_such_page" in str(e.value)
    assert len(e.value.warnings) == 1 and (e.value.site / "10_bad.html").exists()  # the site is still written


# --- in the browser ----------------------------------------------------------------------------------

def test_every_page_visited(site, report):
    pages = json.loads((site / ".papercode-site.json").read_text())["pages"]
    assert sorted(p["path"] for p in report["pages"]) == sorted(pages)
    assert "index.html" in pages and len(pages) >= 3


def test_no_request_leaves_localhost(report):
    assert report["external"] == [], f"requests to other hosts: {report['external'][:20]}"


def test_pages_load_without_errors(report):
    bad = _bad(report, lambda p: {k: p[k] for k in ("errors", "console_errors", "failed", "bad_status") if p[k]}
               or (p["status"] != 200 and {"status": p["status"]}))
    assert not bad, json.dumps(bad, indent=1)


def test_math_is_typeset(report):
    bad = _bad(report, lambda p: {k: p["math"][k] for k in ("untypeset", "raw", "tex_errors") if p["math"][k]})
    assert not bad, "math left untypeset:\n" + json.dumps(bad, indent=1)
    assert sum(p["math"]["elements"] for p in report["pages"]) > 0, "no math on the site: the check proved nothing"
    assert all(p["math"]["typeset"] >= p["math"]["elements"] for p in report["pages"])


def test_plotly_figures_draw_and_sliders_change_them(report):
    figs = [(p["path"], f) for p in report["pages"] for f in p["plotly"]]
    assert figs, "no plotly figure on the site"
    assert all(f["rendered"] for _, f in figs), [(p, f["index"]) for p, f in figs if not f["rendered"]]
    sliders = [(p, f["index"], s) for p, f in figs for s in f["sliders"]]
    assert sliders, "no plotly slider on the site"
    dead = [(p, i, s) for p, i, s in sliders if not s["changed"]]
    assert not dead, f"slider click did not change the figure: {dead}"


def test_every_chapter_has_a_working_slider_figure(report):
    "CHAPTER_DONE item 5: each chapter on the site has at least one plotly figure whose slider changes it."
    chapters = {}
    for p in report["pages"]:
        if "/" in p["path"]:
            ok = any(s["changed"] for f in p["plotly"] for s in f["sliders"])
            chapters[p["path"].split("/")[0]] = chapters.get(p["path"].split("/")[0], False) or ok
    assert chapters, "no chapter pages in the report"
    missing = sorted(c for c, ok in chapters.items() if not ok)
    assert not missing, f"chapters without an interactive (slider) plotly figure: {missing}"

def test_widgets_render_and_respond(report):
    bad = _bad(report, lambda p: p["widgets"]["rendered"] < p["widgets"]["views"] and p["widgets"])
    assert not bad, f"widget views not rendered: {bad}"
    sliders = [(p["path"], s) for p in report["pages"] for s in p["widgets"]["sliders"]]
    counters = [(p["path"], c) for p in report["pages"] for c in p["widgets"]["counters"]]
    assert sliders, "no ipywidgets slider on the site"
    assert counters, "no anywidget counter on the site (nbs/00_core/lab/40_site.ipynb has one)"
    assert all(s["changed"] for _, s in sliders), f"slider readout did not follow a drag: {sliders}"
    assert all(c["changed"] for _, c in counters), f"anywidget button did not respond: {counters}"


def test_screenshots_written(report):
    assert (SCREENSHOTS / "index.png").stat().st_size > 10_000
    missing = [p["path"] for p in report["pages"] if not Path(p.get("screenshot") or "/nonexistent").exists()]
    assert not missing, missing


def test_report_times(report):
    "Not a check: prints where the time went (`pytest -s tests/site`)."
    slow = sorted(((p["seconds"], p["path"]) for p in report["pages"]), reverse=True)[:3]
    print("\n" + ", ".join(f"{k} {v:.1f} s" for k, v in TIMES.items()) + f"; slowest pages {slow}")
