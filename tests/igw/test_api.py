"""The chapter's public face: `from papercode.igw import ...` works and results are frozen dataclasses
(import hygiene of every module is checked once for the whole package in tests/core/test_hygiene.py)."""
import dataclasses

import pytest
import torch


def test_public_names_and_frozen_results():
    from papercode.igw import (IGWResult, igw, igw_flow, igw_interpolate, igw_jko_step, igw_velocity, mobility,
                               QuadraticPotential, w2_flow)
    X = torch.randn(12, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.1
    r = igw(X, 1.2 * X)
    assert isinstance(r, IGWResult) and dataclasses.is_dataclass(r)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.value = 0
    f = igw_flow(X, QuadraticPotential(1.0), step=1e-2, n_steps=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.X = X
    assert w2_flow(X, QuadraticPotential(1.0), step=1e-2, n_steps=3).geometry == "w2"
    assert igw_velocity(X, X).shape == X.shape and mobility(X).Sigma.shape == (2, 2)
    assert callable(igw_interpolate) and callable(igw_jko_step)

