"""Edge cases of `papercode docs`, the site builder and the core helpers (`utils`, `testing`).

Each test pins a behaviour that once went wrong: a page lost its images, a stored output or a link broke
the build, a bad port failed only after the build, and a few helpers accepted bad input or let a
comparison pass that should fail. All run in seconds; one builds a three-page site (a few seconds).
"""
from __future__ import annotations

import json
import random
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from papercode.core.lab.site import (SiteBuildError, build_site, prepare_notebook, start_server,
                                     write_sources)
from papercode.core.testing import assert_close, require
from papercode.core.utils import check_real, check_weights, seed_everything

ROOT = Path(__file__).resolve().parents[2]
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgAAACAAAFAAEjpvXLAAAAAElFTkSuQmCC")


def _nb(*cells):
    "A minimal notebook; cells are (type, source[, outputs or attachments])."
    out = []
    for i, c in enumerate(cells):
        cell = {"cell_type": c[0], "id": f"c{i}", "metadata": {}, "source": c[1]}
        if c[0] == "code": cell |= {"outputs": list(c[2]) if len(c) > 2 else [], "execution_count": 1}
        elif len(c) > 2: cell["attachments"] = c[2]
        out.append(cell)
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": out}


def _checkout(d: Path) -> Path:
    "A tiny checkout: a home page, a page with an image, a data link, a pasted image, a JSON output and a heading link."
    import base64
    (d / "nbs" / "ch" / "img").mkdir(parents=True)
    (d / "settings.ini").write_text("[DEFAULT]\ntitle = demo\ndescription = A demo.\nnbs_path = nbs\n")
    (d / "nbs" / "ch" / "img" / "pic.png").write_bytes(base64.b64decode(PNG))
    (d / "nbs" / "ch" / "table.csv").write_text("a,b\n1,2\n")
    (d / "nbs" / "ch" / "notes.md").write_text("# Not a page\n")
    json_out = {"output_type": "display_data", "metadata": {},
                "data": {"application/json": {"JSON": 1}, "text/plain": "JSON-PLAIN"}}
    (d / "nbs" / "ch" / "00_a.ipynb").write_text(json.dumps(_nb(
        ("markdown", "# A\n> The a page."),
        ("markdown", "![a picture](img/pic.png) [the table](table.csv) [b's second part](10_b.ipynb#second-part)"),
        ("markdown", "![pasted](attachment:shot.png)", {"shot.png": {"image/png": PNG}}),
        ("code", "show_json()", [json_out]))))
    (d / "nbs" / "ch" / "10_b.ipynb").write_text(json.dumps(_nb(
        ("markdown", "# B\n> The b page."), ("markdown", "## First part\n\ntext"), ("markdown", "## Second part\n\ntext"))))
    (d / "nbs" / "index.ipynb").write_text(json.dumps(_nb(("markdown", "# Home\n> Hello."))))
    return d


# --- the site: pages keep their images, links and outputs ---------------------------------------------

def test_files_beside_the_notebooks_reach_the_sources(tmp_path):
    root = _checkout(tmp_path / "repo")
    (tmp_path / "src").mkdir()
    write_sources(root, tmp_path / "src")
    assert (tmp_path / "src" / "ch" / "img" / "pic.png").read_bytes() == (root / "nbs" / "ch" / "img" / "pic.png").read_bytes()
    assert (tmp_path / "src" / "ch" / "table.csv").exists()
    assert not (tmp_path / "src" / "ch" / "notes.md").exists()  # a markdown file would become a stray page


def test_pasted_image_becomes_a_data_address():
    svg = "<svg xmlns='http://www.w3.org/2000/svg'/>"
    nb = _nb(("markdown", "![one](attachment:a%20b.png) and ![two](attachment:v.svg) and ![gone](attachment:nope.png)",
              {"a b.png": {"image/png": [PNG[:20], PNG[20:] + "\n"]}, "v.svg": {"image/svg+xml": svg}}))
    src = prepare_notebook(nb)["cells"][0]["source"]
    import base64
    assert f"![one](data:image/png;base64,{PNG})" in src
    assert f"![two](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()})" in src
    assert "![gone](attachment:nope.png)" in src  # unknown names stay as they are (Sphinx then names them)
    assert "attachments" not in prepare_notebook(nb)["cells"][0]


def test_output_keeps_only_what_myst_nb_can_show():
    data = {"application/json": {"a": 1}, "application/vnd.vegalite.v5+json": {}, "text/plain": "{'a': 1}",
            "image/png": PNG}
    nb = _nb(("code", "x", [{"output_type": "display_data", "metadata": {}, "data": data}]))
    assert set(prepare_notebook(nb)["cells"][0]["outputs"][0]["data"]) == {"text/plain", "image/png"}
    only = {"application/json": {"a": 1}}  # nothing to show instead: left for Sphinx to name
    nb = _nb(("code", "x", [{"output_type": "display_data", "metadata": {}, "data": only}]))
    assert prepare_notebook(nb)["cells"][0]["outputs"][0]["data"] == only


def test_small_site_builds_without_warnings(tmp_path):
    "Image, data link, pasted image, JSON output and a link to another page's heading: no warning, all shown."
    require(shutil.which("npm") is not None or (ROOT / "site" / "node_modules" / "mathjax").is_dir(),
            "npm is not installed and site/node_modules is missing (run: bash site/setup-deps.sh)")
    root = _checkout(tmp_path / "repo")
    (root / "site").symlink_to(ROOT / "site")
    try:
        out = build_site(root, tmp_path / "html")
    except SiteBuildError as e:
        pytest.fail(f"the build warned:\n{e}")
    page = (out / "ch" / "00_a.html").read_text()
    assert 'src="../_images/pic.png"' in page and (out / "_images" / "pic.png").exists()
    assert 'src="data:image/png;base64,' in page
    assert "table.csv" in page and list((out / "_downloads").rglob("table.csv"))
    assert 'href="10_b.html#second-part"' in page and 'id="second-part"' in (out / "ch" / "10_b.html").read_text()
    assert "JSON-PLAIN" in page


# --- serving: a bad --port is found before the build ---------------------------------------------------

@pytest.mark.parametrize("port", [70000, -1, 8000.5, True])
def test_start_server_rejects_a_bad_port(tmp_path, port):
    with pytest.raises(ValueError, match="choose a --port from 0 to 65535"):
        start_server(tmp_path, port)


def _busy_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
    return s, s.getsockname()[1]


@pytest.mark.parametrize("bad", ["busy", "70000"])
def test_docs_refuses_a_bad_port_before_building(tmp_path, monkeypatch, capsys, bad):
    from papercode.core.lab import cli, site
    root = tmp_path / "repo"; (root / "nbs").mkdir(parents=True); (root / "settings.ini").write_text("[DEFAULT]\n")
    monkeypatch.chdir(root)
    built = []
    monkeypatch.setattr(site, "build_site", lambda *a, **k: built.append(a) or Path(a[1]))
    sock, port = _busy_port()
    try:
        rc = cli.main(["docs", "--out", str(tmp_path / "out"), "--serve", "--port", str(port) if bad == "busy" else bad])
    finally:
        sock.close()
    err = capsys.readouterr().err
    assert rc == 2 and "--port" in err, err
    assert built == []  # refused before a build of minutes


# --- assert_close: no silent pass ----------------------------------------------------------------------

def test_assert_close_does_not_pass_against_infinity():
    with pytest.raises(AssertionError, match="expected inf"):
        assert_close(1.0, float("inf"), rtol=1e-3)
    with pytest.raises(AssertionError, match="1 of 1 element"):
        assert_close(float("inf"), -float("inf"))
    with pytest.raises(AssertionError, match="1 of 2 element"):
        assert_close(torch.tensor([0.0, 5.0]), torch.tensor([0.0, -float("inf")]), atol=1.0)


def test_assert_close_matches_equal_infinities():
    assert_close([float("inf"), -float("inf"), 1.0], [float("inf"), -float("inf"), 1.0])
    assert_close(torch.log(torch.tensor([0.0, 1.0])), [-float("inf"), 0.0])  # log of an empty bin
    with pytest.raises(AssertionError):
        assert_close(float("nan"), float("nan"))  # NaN still never passes


def test_assert_close_compares_imaginary_parts():
    with pytest.raises(AssertionError, match="differ"):
        assert_close(np.array([1 + 1j]), np.array([1 - 1j]))
    with pytest.raises(AssertionError, match="differ"):
        assert_close(torch.tensor([1 + 1j]), torch.tensor([1 + 5j]))
    assert_close(torch.tensor([1 + 1j]), np.array([1 + 1j]))


def test_assert_close_takes_half_precision_tensors():
    assert_close(torch.tensor([1.0, 2.0], dtype=torch.bfloat16), [1.0, 2.0])
    assert_close(torch.tensor([1.0], dtype=torch.float16), torch.tensor([1.0], dtype=torch.bfloat16))
    with pytest.raises(AssertionError, match="actual 1, expected 1.5"):
        assert_close(torch.tensor([1.0], dtype=torch.bfloat16), 1.5, rtol=1e-2)


# --- utils: bad input is refused, by name --------------------------------------------------------------

def test_seed_everything_checks_the_device_before_seeding():
    random.seed(123); before = random.random(); random.seed(123)
    with pytest.raises(ValueError, match="device: 'gpu0' is not a device"):
        seed_everything(7, device="gpu0")
    assert random.random() == before  # nothing was seeded
    seed_everything(7, device="auto")  # the vocabulary of resolve_device


def test_seed_everything_names_a_seed_out_of_range():
    with pytest.raises(ValueError, match=r"seed: expected an integer from 0 to 2\*\*64 - 1"):
        seed_everything(2**64)
    seed_everything(2**64 - 1)


def test_check_weights_of_integer_points_are_floats():
    w = check_weights(None, "a", 4, like=torch.zeros(4, 2, dtype=torch.int64))
    assert w.dtype == torch.float64 and torch.equal(w, torch.full((4,), 0.25, dtype=torch.float64))
    w = check_weights([1, 3], "b", 2, total=4.0, like=torch.zeros(2, dtype=torch.int32))
    assert w.dtype == torch.float64
    assert check_weights(None, "a", 2, like=torch.zeros(1, dtype=torch.float32)).dtype == torch.float32


@pytest.mark.parametrize("bad", [np.bool_(True), torch.tensor(True), np.array(True), np.complex128(1 + 2j),
                                 np.complex64(2), torch.tensor(1 + 2j), 10**400],
                         ids=["np.bool_", "bool tensor", "0-d bool array", "np.complex128", "np.complex64",
                              "complex tensor", "10**400"])
def test_check_real_refuses_bools_complex_and_huge(bad):
    with pytest.raises(ValueError, match="tau: must be a positive finite number"):
        check_real("tau", bad)


def test_check_real_still_takes_real_numbers():
    assert check_real("tau", np.float16(0.5)) == 0.5
    assert check_real("tau", torch.tensor(0.25, dtype=torch.bfloat16)) == 0.25
    assert check_real("tau", np.int64(3)) == 3.0
    assert check_real("tau", torch.tensor(2)) == 2.0


def test_device_info_names_the_device_it_is_given():
    "A torch.device('cuda') on a machine without one raised a bare AssertionError; 'meta' was described as the CPU."
    import torch
    from papercode.core.utils import device_info
    assert device_info(torch.device("meta")) == "meta"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            device_info(torch.device("cuda"))


def test_an_interrupted_build_leaves_a_folder_the_next_build_may_replace(tmp_path):
    "The marker was written only at the end, so a build stopped half-way left a folder every later build refused."
    from papercode.core.lab.site import MARKER, _clear_out
    out = tmp_path / "site"
    _clear_out(out)
    (out / "half.html").write_text("")  # what Sphinx wrote before the build stopped
    _clear_out(out)  # used to raise "is not empty and holds no earlier site"
    assert [p.name for p in out.iterdir()] == [MARKER]
