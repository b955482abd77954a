"Verdicts of the chapter's registered experiments: measurements and one-seed smoke tests carry no verdict."
import dataclasses
from pathlib import Path

import pytest
import torch

from papercode.core.lab.registry import RunContext
from papercode.thermometer import experiments as ex


def _ctx(scale):
    return RunContext(scale=scale, seed=0, device=torch.device("cpu"), out=Path("/tmp/papercode_thermometer_tests"))


def _small(cfg):
    return dataclasses.replace(cfg, llm_held_out=("capital", "parity"), llm_seeds=(0,), llm_steps=20, cost_steps=10,
                               live_llm=False)


def test_cost_is_reported_as_a_measurement(monkeypatch):
    "Against the LLM's own time the ratio cannot fail, so the cost comes back without a verdict, with its numbers."
    monkeypatch.setattr(ex.Config, "tiny", classmethod(lambda cls: _small(ex.Config.paper())))
    o = ex.efficiency_claim(_ctx("tiny"))
    assert o.passed is None
    assert 0 < o.value < 1 and o.details["thermometer_s"] > 0 and o.details["llm_recorded_s"] > 0


def test_llm_claim_has_no_verdict_at_tiny_scale_but_one_at_paper_scale(monkeypatch):
    "Tiny scale (few families, one seed, no interval) is reported; paper scale keeps a pass/fail verdict."
    monkeypatch.setattr(ex.Config, "tiny", classmethod(lambda cls: _small(ex.Config.paper())))
    o = ex.llm_lofo(_ctx("tiny"))
    assert o.passed is None and "2 families" in o.ours
    paper = ex.Config.paper()
    monkeypatch.setattr(ex.Config, "paper", classmethod(lambda cls: _small(paper)))
    o = ex.llm_lofo(_ctx("paper"))
    assert isinstance(o.passed, bool)
