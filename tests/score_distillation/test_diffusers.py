"Our schedule, DDIM step and inversion grid against diffusers' DDIMScheduler / DDIMInverseScheduler (lazy import)."
import importlib.util

import pytest
import torch

from papercode.core.testing import assert_close, require
from papercode.score_distillation import GaussianModel, Schedule, ddim_invert, ddim_step, ddim_timesteps, inversion_timesteps, sd_schedule

CONF = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            steps_offset=1, set_alpha_to_one=False, clip_sample=False)


def _diffusers():
    require(importlib.util.find_spec("diffusers") is not None,
            "diffusers not installed (pip install -e '.[score_distillation]')")
    import diffusers
    return diffusers


def _float64(sch):
    "diffusers computes ᾱ in float32; give it (and us) the same float64 values so that only the step formulas differ."
    acp = sch.alphas_cumprod.double()
    sch.alphas_cumprod = acp
    sch.final_alpha_cumprod = acp[0] if hasattr(sch, "final_alpha_cumprod") else None
    if hasattr(sch, "initial_alpha_cumprod"): sch.initial_alpha_cumprod = acp[0]
    betas = 1 - acp / torch.cat([torch.ones(1, dtype=torch.float64), acp[:-1]])
    return Schedule(betas, acp, float(acp[0]))


def test_schedule_matches_diffusers_scaled_linear():
    d = _diffusers()
    sch = d.DDIMScheduler(**CONF)
    S = sd_schedule()
    assert_close(S.alphas_cumprod, sch.alphas_cumprod.double(), rtol=2e-6, msg="ᾱ (diffusers computes it in float32)")
    assert S.initial_alpha == pytest.approx(float(sch.alphas_cumprod[0]), rel=1e-6)


@pytest.mark.parametrize("steps", [10, 50])
def test_ddim_step_equals_diffusers_step_float64(steps):
    d = _diffusers()
    sch = d.DDIMScheduler(**CONF)
    sch.set_timesteps(steps)
    S = _float64(sch)
    assert [int(t) for t in sch.timesteps] == ddim_timesteps(steps)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 16, generator=g, dtype=torch.float64)
    worst = 0.0
    for t in ddim_timesteps(steps):
        eps = torch.randn(3, 16, generator=g, dtype=torch.float64)
        ref = sch.step(eps, t, x, eta=0.0)
        ours, x0 = ddim_step(S, eps, t, t - 1000 // steps, x)
        worst = max(worst, float((ours - ref.prev_sample).abs().max()), float((x0 - ref.pred_original_sample).abs().max()))
        x = ours
    assert worst <= 1e-12, worst


def test_inverse_scheduler_timesteps_and_step():
    d = _diffusers()
    inv = d.DDIMInverseScheduler(**CONF)
    inv.set_timesteps(10)
    assert [int(t) for t in inv.timesteps] == [1, 101, 201, 301, 401, 501, 601, 701, 801, 901]
    # our code-variant grid keeps the leading timesteps below t, prepends t(0) − 100 and appends t + δ
    assert inversion_timesteps(500, 10, "code", delta=1) == [-99] + [int(t) for t in inv.timesteps[:6]]
    # one inversion to t + δ = 501 on the exact Gaussian model equals diffusers' inverse steps fed the same ε
    S = _float64(inv)
    G = GaussianModel(torch.zeros(8), torch.linspace(0.05, 2.0, 8), S)
    x0 = G.sample(4, torch.Generator().manual_seed(6))
    ours = ddim_invert(G, x0, 0.5, S, n_steps=10, gamma_inv=1.0, eta=0.0, variant="code", delta=1)
    x = x0.clone()
    for t in [1, 101, 201, 301, 401, 501]:
        eps = G(x, t - 100)  # the official code queries the model at the step's start (diffusers' pipeline uses t)
        x = inv.step(eps, t, x).prev_sample
    assert ours.timesteps == [-99, 1, 101, 201, 301, 401, 501] and ours.model_calls == 6
    assert_close(ours.x, x, rtol=0, atol=1e-12, msg="inversion vs DDIMInverseScheduler.step")
