"""Root pytest configuration: nbval on nbdev notebooks, and the `slow`/`gpu` flags.

Two nbval pitfalls with nbdev notebooks (../shared/TOOLCHAIN.md):
1. `nbdev_clean` removes execution counts but keeps outputs, which nbval reports as
   "Unrun reference cell has outputs". We give such cells a count when nbval collects them.
2. nbval does not know nbdev's cell flags. Cells flagged `#| slow`, `#| gpu` or `#| notest` (the
   `tst_flags` of settings.ini), cells with `#| eval: false`, and the closing `nbdev_export()` cell are
   skipped here exactly as `nbdev_test` skips them.
"""
import os
import re

import pytest

_FLAG_RE = re.compile(r"^\s*#\s*\|\s*([\w-]+)\s*:?\s*(.*)$")


def _tst_flags():
    from configparser import ConfigParser

    cfg = ConfigParser(delimiters=["="])
    cfg.read(os.path.join(os.path.dirname(__file__), "settings.ini"))
    return set(cfg["DEFAULT"].get("tst_flags", "").split())


def _cell_skip_reason(source: str, flags: set):
    "Why `nbdev_test` would skip this cell, or None."
    if "nbdev_export" + "(" in source:
        return "nbdev_export cell"
    for line in source.splitlines():
        m = _FLAG_RE.match(line)
        if not m:
            if line.strip() and not line.strip().startswith("#"):
                break  # directives only sit at the top of a cell
            continue
        name, arg = m.group(1), m.group(2).strip().lower()
        if name in flags:
            return f"#| {name} cell"
        if name == "eval" and arg == "false":
            return "#| eval: false cell"
    return None


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="run tests marked slow (paper scale)")


def pytest_collection_modifyitems(config, items):
    flags = _tst_flags()
    run_slow = config.getoption("--run-slow")
    if run_slow:
        flags.discard("slow")
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is not None and hasattr(item, "options"):  # an nbval notebook cell
            if cell.get("execution_count") is None and cell.get("outputs"):
                cell["execution_count"] = 1
            reason = _cell_skip_reason(cell.source, flags)
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"{reason} (skipped as nbdev_test skips it)"))
            continue
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: run with --run-slow"))
        if "gpu" in item.keywords:
            import torch

            if not torch.cuda.is_available():
                item.add_marker(pytest.mark.skip(reason="gpu: no CUDA device on this machine"))
