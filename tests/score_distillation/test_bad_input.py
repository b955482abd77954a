"Clear errors for bad input; divergence is reported, not raised."
import math
import re

import numpy as np
import pytest
import torch

from papercode.score_distillation import (EpsMLP, GMMModel, GaussianModel, ImageParam, VoxelScene, ddim_gaussian_variance,
                                          ddim_invert, ddim_sample, ddim_step, distill, eq8_error, fixed_point_kappa, guided_eps,
                                          inversion_timesteps, judge_confidence, kappa_star, ring_gmm, sd_schedule,
                                          sds_variance_path, train_digits_model, w2_to_data, x0_from_eps)

S = sd_schedule()
G = GaussianModel(torch.zeros(4), torch.ones(4), S)
M = ring_gmm(S)  # 2 classes; label 2 is the null label
NET = EpsMLP(4, 2, 8).double(); NET.schedule = S
X = torch.zeros(3, 4, dtype=torch.float64)


@pytest.mark.parametrize("call,match", [
    (lambda: ddim_invert(G, X, -0.1, S), r"outside \[0, 1\]"),
    (lambda: ddim_invert(G, X, 0.5, S, n_steps=True), "^n_steps"),
    (lambda: ddim_invert(G, X, 0.5, S, n_steps=0), r"^n_steps: .*\(n_inv\)"),
    (lambda: ddim_invert(G, X, 0.5, S, n_steps=1001), "^n_steps"),  # more steps than timesteps: a grid step of 0
    (lambda: ddim_invert(G, X, 0.5, S, n_steps=1001, variant="code"), "^n_steps"),
    (lambda: ddim_invert(G, X, 0.5, S, eta=math.nan), "η must be ≥ 0"),
    (lambda: ddim_invert(G, X, 0.5, S, eta=-0.1), "η must be ≥ 0"),
    (lambda: ddim_invert(G, X, 0.5, S, eta=True), "η must be ≥ 0"),
    (lambda: ddim_invert(G, X, 0.5, S, delta=-5), "^delta"),  # the grid would step backwards
    (lambda: ddim_invert(G, X, 0.5, S, delta=2.5), "^delta"),
    (lambda: inversion_timesteps(550, 1001, "code", 0), "^n_steps"),
    (lambda: inversion_timesteps(550, 10, "code", -5), "^delta"),
    (lambda: ddim_invert(NET, X, 0.5, S, cond=2), "labels out of range"),
    (lambda: ddim_invert(NET, X, 0.5, S, cond=torch.tensor([0, 1])), "one label per row"),
    (lambda: ddim_invert(G, X, 0.5, S, cond=0), "unconditional"),
    (lambda: ddim_sample(G, torch.full((2, 4), math.inf), S), "NaN or inf"),
    (lambda: ddim_sample(G, 2, S, timesteps=[10, 20]), "strictly decreasing"),
    (lambda: distill(ImageParam(2, 4), G, t_range=(0.3, 0.6)), "t_min"),
    (lambda: distill(ImageParam(2, 4), G, noise="vsd"), "noise"),
    (lambda: distill(ImageParam(2, 4), G, iters=0), "iters"),
    (lambda: distill(ImageParam(2, 4), G, entropy=-0.1), "entropy"),
    (lambda: distill(ImageParam(2, 4), G, entropy=math.nan), "^entropy"),
    (lambda: distill(ImageParam(2, 4), G, entropy=math.inf), "^entropy"),
    (lambda: distill(ImageParam(2, 4), G, noise="sdi", n_inv=0), "^n_inv"),
    (lambda: distill(ImageParam(2, 4), G, noise="sdi", n_inv=1001), "^n_inv"),
    (lambda: distill(ImageParam(2, 4), G, noise="sdi", eta=-1.0), "η must be ≥ 0"),
    (lambda: distill(ImageParam(2, 4), G, noise="sdi", delta=-1), "^delta"),
    (lambda: distill(ImageParam(3, 4), NET, cond=torch.tensor([0, 1])), "^cond: .*one label per particle"),
    (lambda: distill(ImageParam(3, 4), NET, cond=torch.zeros(3, 1, dtype=torch.long)), "^cond"),
    (lambda: distill(VoxelScene(8, 2, n=2), EpsMLP(64, 10, 8), cond=torch.tensor([1, 2, 3, 4]), schedule=S),
     "^cond: .*per particle"),  # one label per render is not accepted: a scene's label holds for all its views
    (lambda: distill(VoxelScene(8, 2), EpsMLP(64, 10, 8), noise="cached", cond=1, schedule=S), "cannot be cached"),
    (lambda: distill(ImageParam(2, 4), object()), "schedule"),
    (lambda: kappa_star(G, torch.full((2, 4), math.nan), 10), "NaN"),
    (lambda: GaussianModel(torch.zeros(2), torch.tensor([1.0, -1.0]), S), "> 0"),
    (lambda: GMMModel(torch.zeros(3, 2), torch.tensor([0.1, 0.1]), S), "std"),
    (lambda: M.sample(5, -1), "^cond: .*0 … 1 or the null label 2"),
    (lambda: M.sample(5, 3), "^cond"),
    (lambda: M.sample(5, 1.0), "^cond"),
    (lambda: judge_confidence(torch.zeros(2, 64), -1), "0 … 9"),
    (lambda: judge_confidence(torch.zeros(3, 64), [1, 2]), "^labels"),
    (lambda: judge_confidence(torch.zeros(3, 64), [0.5, 1.0, 2.0]), "^labels"),
    (lambda: judge_confidence(torch.zeros(3, 64), torch.tensor([[1, 2, 3]])), "^labels"),
    (lambda: w2_to_data(torch.zeros(3, 2), torch.zeros(3, 5)), "same d"),
    (lambda: w2_to_data(torch.zeros(3, 2), torch.tensor([[0.0, math.nan]] * 3)), "^ref: contains NaN"),
    (lambda: train_digits_model(100, p_uncond=1.0, cache=False), "p_uncond"),
])
def test_bad_input_is_refused_with_a_clear_message(call, match):
    with pytest.raises(ValueError, match=match):
        call()


_HINT = r" takes integer timesteps 0 … 999 \(distill and ddim_invert take a time t in \[0, 1\]\)"


@pytest.mark.parametrize("t", [0.5, 300.0, np.float64(3.0), True, -1, 1000])
@pytest.mark.parametrize("who,call", [
    ("kappa_star", lambda t: kappa_star(G, X, t)),
    ("eq8_error", lambda t: eq8_error(G, X, X, t)),
    ("fixed_point_kappa", lambda t: fixed_point_kappa(G, X, t)),
    ("Schedule.alpha", lambda t: S.alpha(t)),
    ("Schedule.sigma", lambda t: S.sigma(t)),
    ("x0_from_eps", lambda t: x0_from_eps(S, X, X, t)),
    ("GaussianModel.kappa_exact", lambda t: G.kappa_exact(X, t)),
    ("GaussianModel.posterior_mean", lambda t: G.posterior_mean(X, t)),
    ("GMMModel.log_prob", lambda t: M.log_prob(torch.zeros(3, 2, dtype=torch.float64), t)),
    ("sds_variance_path", lambda t: sds_variance_path(1.0, 1.0, [t], S, 1.0)),
    ("ddim_gaussian_variance", lambda t: ddim_gaussian_variance(1.0, [999, t], S)),
    ("inversion_timesteps", lambda t: inversion_timesteps(t, 10, "code", 0)),
])
def test_timestep_arguments_must_be_integers_in_range(who, call, t):
    "A float is not truncated, a negative t does not fall back to ᾱ below timestep 0, t ≥ 1000 is refused."
    with pytest.raises(ValueError, match=re.escape(who) + _HINT):
        call(t)


@pytest.mark.parametrize("call", [
    lambda: guided_eps(NET, X, 0.5),
    lambda: G(X, 0.5),
    lambda: M(torch.zeros(3, 2, dtype=torch.float64), 100.0),
    lambda: ddim_sample(G, 2, S, timesteps=[20.5, 10]),
])
def test_float_timesteps_are_refused_by_the_model_calls(call):
    with pytest.raises(ValueError, match="takes integer timesteps"):
        call()


def test_integer_timesteps_of_any_integer_type_give_the_same_result():
    x = G.sample(3, torch.Generator().manual_seed(0))
    ref = kappa_star(G, x, 300).kappa
    for t in (np.int64(300), np.int32(300), torch.tensor(300)):
        assert torch.equal(kappa_star(G, x, t).kappa, ref)
        assert torch.equal(eq8_error(G, x, ref, t), eq8_error(G, x, ref, 300))
    assert torch.equal(S.alpha(torch.tensor([0, 999])), S.alphas_cumprod[[0, 999]])
    # below timestep 0 stays available to the DDIM step (diffusers' last step goes to −19)
    eps = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x1, x0 = ddim_step(S, eps, 1, -19, x)
    a = S.initial_alpha
    assert torch.equal(x1, math.sqrt(a) * x0 + math.sqrt(1 - a) * eps)


def test_eta_may_be_any_real_number():
    x0 = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    want = ddim_invert(G, x0, 0.5, S, eta=float(np.float32(0.3)), delta=3, seed=4)
    got = ddim_invert(G, x0, 0.5, S, eta=np.float32(0.3), delta=3, seed=4)
    assert torch.equal(got.kappa, want.kappa) and float((want.kappa - ddim_invert(G, x0, 0.5, S, eta=0.0, delta=3).kappa).abs().max()) > 0
    assert not distill(ImageParam(3, 4, init=x0), G, noise="sdi", eta=np.float64(0.3), iters=2).diverged


def test_gmm_sample_takes_the_null_label_as_the_whole_mixture():
    a = M.sample(50, None, torch.Generator().manual_seed(1))[0]
    assert torch.equal(M.sample(50, 2, torch.Generator().manual_seed(1))[0], a)
    assert not torch.equal(M.sample(50, 0, torch.Generator().manual_seed(1))[0], a)


@pytest.mark.parametrize("noise", ["sds", "cached", "exact", "sdi"])
def test_v_prediction_model_is_refused_by_every_noise_mode(noise):
    class V(EpsMLP): prediction_type = "v_prediction"
    v = V(4, 2, 8).double(); v.schedule = S
    with pytest.raises(ValueError, match="prediction_type 'v_prediction'"):
        distill(ImageParam(3, 4), v, noise=noise, iters=2)


def test_v_prediction_model_is_refused_by_inversion_and_sdi():
    class V(EpsMLP): prediction_type = "v_prediction"
    v = V(4, 2, 8).double(); v.schedule = S
    with pytest.raises(ValueError, match="v-prediction"):
        ddim_invert(v, X, 0.5, S)
    with pytest.raises(ValueError, match="prediction_type 'epsilon'"):
        distill(ImageParam(3, 4), v, noise="sdi")


class NaNAt(GaussianModel):
    "The Gaussian model, returning NaN below timestep 300."
    def __call__(self, x, t, cond=None):
        tt = int(torch.as_tensor(t).reshape(-1)[0])
        return super().__call__(x, t) * (math.nan if tt < 300 else 1.0)


class Hidden:
    "A model without its closed-form root, so that kappa_star runs Newton."
    prediction_type, n_classes = "epsilon", 0

    def __init__(self, m): self.m, self.dim, self.schedule = m, m.dim, m.schedule

    def __call__(self, x, t, cond=None): return self.m(x, t, cond)


def _first_below_300(iters=30):
    ts = [int(round(v)) for v in torch.linspace(980, 250, iters).tolist()]
    return next(i for i, t in enumerate(ts) if t < 300)


def test_nan_model_output_names_the_iteration_and_divergence_is_reported():
    m = NaNAt(torch.zeros(4), torch.ones(4), S)
    with pytest.raises(ValueError, match=f"at iteration {_first_below_300()}"):
        distill(ImageParam(3, 4), m, iters=30)
    r = distill(ImageParam(3, 4), G, noise="sds", iters=10, lr=1e9)  # a step size that blows up
    assert r.diverged and r.diverged_at == 0 and len(r.timesteps) == 1


@pytest.mark.parametrize("closed_form", [True, False])
def test_nan_model_output_under_exact_noise_names_the_iteration(closed_form):
    m = NaNAt(torch.zeros(4), torch.ones(4), S)
    with pytest.raises(ValueError, match=f"non-finite .* at iteration {_first_below_300()}$"):
        distill(ImageParam(3, 4), m if closed_form else Hidden(m), noise="exact", iters=30)
