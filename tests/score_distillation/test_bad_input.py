"Clear errors for bad input; divergence is reported, not raised."
import math

import pytest
import torch

from papercode.score_distillation import (EpsMLP, GMMModel, GaussianModel, ImageParam, VoxelScene, ddim_invert, ddim_sample,
                                          distill, judge_confidence, kappa_star, ring_gmm, sd_schedule, train_digits_model,
                                          w2_to_data)

S = sd_schedule()
G = GaussianModel(torch.zeros(4), torch.ones(4), S)
NET = EpsMLP(4, 2, 8).double(); NET.schedule = S
X = torch.zeros(3, 4, dtype=torch.float64)


@pytest.mark.parametrize("call,match", [
    (lambda: ddim_invert(G, X, -0.1, S), r"outside \[0, 1\]"),
    (lambda: ddim_invert(G, X, 0.5, S, n_steps=True), "n_inv"),
    (lambda: ddim_invert(G, X, 0.5, S, eta=math.nan), "η must be ≥ 0"),
    (lambda: ddim_invert(NET, X, 0.5, S, cond=2), "labels out of range"),
    (lambda: ddim_invert(NET, X, 0.5, S, cond=torch.tensor([0, 1])), "one label per row"),
    (lambda: ddim_invert(G, X, 0.5, S, cond=0), "unconditional"),
    (lambda: ddim_sample(G, torch.full((2, 4), math.inf), S), "NaN or inf"),
    (lambda: ddim_sample(G, 2, S, timesteps=[10, 20]), "strictly decreasing"),
    (lambda: distill(ImageParam(2, 4), G, t_range=(0.3, 0.6)), "t_min"),
    (lambda: distill(ImageParam(2, 4), G, noise="vsd"), "noise"),
    (lambda: distill(ImageParam(2, 4), G, iters=0), "iters"),
    (lambda: distill(ImageParam(2, 4), G, entropy=-0.1), "entropy"),
    (lambda: distill(VoxelScene(8, 2), EpsMLP(64, 10, 8), noise="cached", cond=1, schedule=S), "cannot be cached"),
    (lambda: distill(ImageParam(2, 4), object()), "schedule"),
    (lambda: kappa_star(G, torch.full((2, 4), math.nan), 10), "NaN"),
    (lambda: GaussianModel(torch.zeros(2), torch.tensor([1.0, -1.0]), S), "> 0"),
    (lambda: GMMModel(torch.zeros(3, 2), torch.tensor([0.1, 0.1]), S), "std"),
    (lambda: judge_confidence(torch.zeros(2, 64), -1), "0 … 9"),
    (lambda: w2_to_data(torch.zeros(3, 2), torch.zeros(3, 5)), "same d"),
    (lambda: train_digits_model(100, p_uncond=1.0, cache=False), "p_uncond"),
])
def test_bad_input_is_refused_with_a_clear_message(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_v_prediction_model_is_refused_by_inversion_and_sdi():
    class V(EpsMLP): prediction_type = "v_prediction"
    v = V(4, 2, 8).double(); v.schedule = S
    with pytest.raises(ValueError, match="v-prediction"):
        ddim_invert(v, X, 0.5, S)
    with pytest.raises(ValueError, match="prediction_type 'epsilon'"):
        distill(ImageParam(3, 4), v, noise="sdi")


def test_nan_model_output_names_the_iteration_and_divergence_is_reported():
    class NaNAt(GaussianModel):
        def __call__(self, x, t, cond=None):
            tt = int(torch.as_tensor(t).reshape(-1)[0])
            return super().__call__(x, t) * (math.nan if tt < 300 else 1.0)
    m = NaNAt(torch.zeros(4), torch.ones(4), S)
    ts = [int(round(v)) for v in torch.linspace(980, 250, 30).tolist()]
    first = next(i for i, t in enumerate(ts) if t < 300)
    with pytest.raises(ValueError, match=f"at iteration {first}"):
        distill(ImageParam(3, 4), m, iters=30)
    r = distill(ImageParam(3, 4), G, noise="sds", iters=10, lr=1e9)  # a step size that blows up
    assert r.diverged and r.diverged_at == 0 and len(r.timesteps) == 1
