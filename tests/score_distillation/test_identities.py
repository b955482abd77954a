"Closed forms, round trips and the autograd identity of the SDS gradient, on instances the notebooks do not use."
import math
import warnings

import numpy as np
import pytest
import torch

from papercode.core.testing import assert_close
from papercode.score_distillation import (EpsMLP, GMMModel, GaussianModel, ImageParam, ddim_invert, ddim_step, distill,
                                          guided_eps, kappa_star, ring_gmm, sd_schedule, sds_stationary_variance, x0_from_eps)

S = sd_schedule()


def _gauss(D=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return GaussianModel(torch.randn(D, generator=g, dtype=torch.float64), 0.05 + 2 * torch.rand(D, generator=g, dtype=torch.float64), S)


def test_gaussian_eps_is_the_scaled_score_of_the_noisy_marginal():
    G = _gauss()
    x = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    for t in (3, 250, 999):
        a = S.alpha(t)
        v = a * G.lam + 1 - a
        logp = (-(x - a.sqrt() * G.mu) ** 2 / (2 * v) - 0.5 * v.log()).sum()
        score = torch.autograd.grad(logp, x)[0]
        assert_close(G(x, t), -(1 - a).sqrt() * score, rtol=1e-12, atol=1e-14, msg=f"ε* at t={t}")
        assert_close(x0_from_eps(S, x, G(x, t), t), G.posterior_mean(x, t), rtol=1e-10, atol=1e-12, msg="Tweedie = posterior mean")


def test_posterior_mean_against_monte_carlo_regression():
    G, t = _gauss(3, 2), 400
    g = torch.Generator().manual_seed(3)
    x0 = G.sample(200_000, g)
    a = S.alpha(t)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    # E[x0 | xt] is affine per coordinate: least squares recovers slope and intercept
    for j in range(3):
        A = torch.stack([xt[:, j], torch.ones_like(xt[:, j])], 1)
        coef = torch.linalg.lstsq(A, x0[:, j:j + 1]).solution[:, 0]
        q = torch.tensor([[0.7], [1.0]], dtype=torch.float64)
        pred = float(coef @ q)
        x = torch.full((1, 3), 0.7, dtype=torch.float64)
        assert pred == pytest.approx(float(G.posterior_mean(x, t)[0, j]), abs=0.02)


class NoClosedForm:
    "A Gaussian model hiding its closed-form κ*, so that kappa_star uses Newton."
    prediction_type, n_classes = "epsilon", 0

    def __init__(self, G): self.G, self.dim, self.schedule = G, G.dim, G.schedule

    def __call__(self, x, t, cond=None): return self.G(x, t)


@pytest.mark.parametrize("t", [20, 500, 990])
def test_newton_root_equals_the_closed_form(t):
    G = _gauss(5, 4)
    x0 = G.sample(7, torch.Generator().manual_seed(5))
    r = kappa_star(NoClosedForm(G), x0, t)
    assert r.converged and r.n_iter >= 1
    assert_close(r.kappa, G.kappa_exact(x0, t), rtol=1e-8, atol=1e-9, msg="Newton vs closed form κ*")


def test_fine_inversion_converges_to_the_continuous_closed_form():
    G = _gauss(4, 6)
    x0 = G.sample(6, torch.Generator().manual_seed(7))
    t = 0.35
    ref = G.kappa_inversion(x0, S.to_int(t))
    errs = [float((ddim_invert(G, x0, t, S, n_steps=n, eta=0.0, delta=0).kappa - ref).abs().max()) for n in (20, 200, 1000)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.02 * float(ref.abs().max())
    assert float((ref / G.kappa_exact(x0, S.to_int(t))).max()) <= 0.5


@pytest.mark.parametrize("eta,lam,t", [(1.0, 1.0, 100), (0.5, 0.3, 40), (0.2, 2.0, 300)])
def test_sds_stationary_variance_at_fixed_t(eta, lam, t):
    G = GaussianModel(torch.zeros(128), torch.full((128,), lam), S)
    r = distill(ImageParam(64, 128, init=torch.zeros(64, 128)), G, noise="sds", iters=600, t_range=(t / 1000, t / 1000),
                lr=eta, seed=8, n_frames=1)
    v = float((r.x0 ** 2).mean())
    assert v == pytest.approx(sds_stationary_variance(eta, lam, float(S.alpha(t))), rel=0.08)


def test_gamma_zero_inversion_round_trip_converges():
    "Invert with γ = 0 and η = 0, run DDIM back on the reversed grid: the error falls with the number of steps (App. E)."
    M = ring_gmm(S)
    x0 = M.sample(64, None, torch.Generator().manual_seed(9))[0]
    errs = []
    for n in (10, 50, 250):
        inv = ddim_invert(M, x0, 0.6, S, n_steps=n, gamma_inv=0.0, eta=0.0, variant="code", delta=0)
        ts, x = inv.timesteps, inv.x
        for s2, s in zip(ts[::-1][:-1], ts[::-1][1:]):
            x, _ = ddim_step(S, guided_eps(M, x, s2), s2, s, x)
        errs.append(float((x - x0).abs().max()))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.05, errs


@pytest.mark.parametrize("t_frac", [0.2, 0.6, 0.98])
def test_one_distill_update_is_minus_lr_sigma_times_eps_minus_kappa(t_frac):
    "One real SGD step of `distill` on ψ = x₀ moves ψ by −lr·σ(t)(ε̂(x(t)) − κ), κ known: the cached κ of a fresh run is ε̂(x₀, t)."
    torch.manual_seed(10)
    net = EpsMLP(12, 4, 24).double(); net.schedule = S
    x0 = torch.randn(5, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    c, lr, gamma = torch.tensor([0, 1, 2, 3, 0]), 0.37, 3.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cached κ with lr ≠ 1 leaves the DDIM path after this step, not within it
        r = distill(ImageParam(5, 12, init=x0.clone()), net, noise="cached", iters=1, t_range=(t_frac, t_frac), gamma=gamma,
                    cond=c, lr=lr, optimizer="sgd", n_frames=1)
    t = r.timesteps[0]
    assert t == S.to_int(t_frac) and r.model_calls == 2  # κ, then the update's prediction
    a = S.alpha(t)
    with torch.no_grad():
        kappa = guided_eps(net, x0, t, c, gamma)
        eps = guided_eps(net, a.sqrt() * x0 + (1 - a).sqrt() * kappa, t, c, gamma)
    step = -lr * S.sigma(t) * (eps - kappa)
    assert float(step.abs().max()) > 1e-3  # a step that can be told from no step
    assert_close(r.params - x0, step, rtol=1e-9, atol=1e-12, msg=f"ψ update at t={t}")


def test_exact_noise_is_a_fixed_point_of_the_update():
    "κ = κ*(x₀) is the noise whose ε-prediction returns it, so the target x̂₀ is x₀ itself and no update moves ψ (SDS does)."
    G = _gauss(5, 7)
    x0 = G.sample(64, torch.Generator().manual_seed(8))
    kw = dict(iters=6, t_range=(0.9, 0.2), optimizer="sgd", lr=1.0, seed=3)
    ex = distill(ImageParam(64, 5, init=x0.clone()), G, noise="exact", **kw)
    # per iteration: kappa_star's closed form evaluates the model once (the residual of its root), the update once
    assert ex.noise == "exact" and not ex.diverged and ex.model_calls == 2 * 6
    assert_close(ex.params, x0, atol=1e-8, rtol=0, msg="exact κ leaves the particles in place")
    sds = distill(ImageParam(64, 5, init=x0.clone()), G, noise="sds", **kw)
    assert float((sds.params - x0).abs().max()) > 0.1  # the test can tell a moving update from a fixed one


class Counting(GaussianModel):
    "The Gaussian model, counting its evaluations."
    calls = 0

    def __call__(self, x, t, cond=None):
        self.calls += 1
        return super().__call__(x, t, cond)


@pytest.mark.parametrize("closed_form", [True, False])
def test_exact_noise_counts_every_model_evaluation(closed_form):
    m = Counting(torch.zeros(3), torch.tensor([1.0, 0.5, 2.0]), S)
    x0 = m.sample(16, torch.Generator().manual_seed(12)) + 0.3
    r = distill(ImageParam(16, 3, init=x0), m if closed_form else NoClosedForm(m), noise="exact", iters=4, t_range=(0.9, 0.2),
                seed=3)
    assert r.model_calls == m.calls
    assert (m.calls == 2 * 4) if closed_form else (m.calls > 3 * 4)  # Newton: start, Jacobian pass, line search, residual


def test_closed_form_root_is_converged_below_the_documented_float64_floor():
    from fastcore.docments import docments

    class Off(GaussianModel):
        "A 'closed form' off by `off`: its residual is off·ᾱ (λ = 1)."
        off = 0.0

        def kappa_exact(self, x0, t): return super().kappa_exact(x0, t) + self.off
    m = Off(torch.zeros(3), torch.ones(3), S)
    x0 = m.sample(4, torch.Generator().manual_seed(13))
    m.off = 1e-8
    r = kappa_star(m, x0, 300, tol=1e-10)
    assert 1e-10 < float(r.residual.max()) < 1e-8 and r.converged  # above tol, below the floor
    m.off = 1e-6
    assert not kappa_star(m, x0, 300, tol=1e-10).converged
    assert "max(tol, 1e-8)" in docments(kappa_star)["tol"]  # what the code does is what `tol` says


def _gmm():
    means = torch.tensor([[1.0, 0.0, -0.5], [-1.0, 0.5, 0.0], [0.0, -1.2, 0.8]], dtype=torch.float64)
    return GMMModel(means, torch.tensor([0.3, 0.5, 0.8]), S, weights=[0.2, 0.5, 0.3], classes=[[0, 2], [1]])


def _comps(M, label):
    return list(range(len(M.weights))) if label is None or label == M.n_classes else M.classes[label]


@pytest.mark.parametrize("t", [None, 0, 400, 999])
def test_gmm_log_prob_is_the_noisy_mixture_density(t):
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal
    M = _gmm()
    x = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(14)) * 1.5
    a = 1.0 if t is None else float(S.alpha(t))

    def scipy_logp(label):
        ks = _comps(M, label)
        w = M.weights.numpy()[ks] / M.weights.numpy()[ks].sum()
        return logsumexp([np.log(w[i]) + multivariate_normal(math.sqrt(a) * M.means[k].numpy(),
                                                               (a * float(M.std[k]) ** 2 + 1 - a) * np.eye(3)).logpdf(x.numpy())
                          for i, k in enumerate(ks)], axis=0)
    assert_close(M.log_prob(x, t), torch.as_tensor(scipy_logp(None)), rtol=1e-10, atol=1e-10, msg=f"log p_t, t={t}")
    lab = torch.tensor([0, 1, 2, 0, 1, 2, 0])  # 2 = the null label: all components
    want = torch.as_tensor(np.array([scipy_logp(int(l))[i] for i, l in enumerate(lab)]))
    assert_close(M.log_prob(x, t, lab), want, rtol=1e-10, atol=1e-10, msg=f"log p_t(x | y), t={t}")


def test_gmm_eps_is_the_scaled_score_of_its_marginal():
    "ε of the mixture against −sqrt(1−ᾱ) ∇ log p_t of a density written with torch.distributions, and of `log_prob`."
    M = _gmm()
    x = (torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(15)) * 1.5).requires_grad_()
    for t, lab in ((100, None), (500, torch.tensor([0, 1, 2, 0, 1, 2]))):
        a = S.alpha(t)
        logp = []
        for i in range(6):
            ks = _comps(M, None if lab is None else int(lab[i]))
            w = M.weights[ks] / M.weights[ks].sum()
            comp = torch.distributions.Independent(torch.distributions.Normal(
                a.sqrt() * M.means[ks], (a * M.std.double()[ks, None] ** 2 + 1 - a).sqrt().expand(-1, 3)), 1)
            logp.append(torch.logsumexp(w.log() + comp.log_prob(x[i]), 0))
        score = torch.autograd.grad(torch.stack(logp).sum(), x)[0]
        eps = M(x.detach(), t, lab)
        assert_close(eps, -(1 - a).sqrt() * score, rtol=1e-10, atol=1e-12, msg=f"ε = −sqrt(1−ᾱ)∇log p_t at t={t}")
        own = torch.autograd.grad(M.log_prob(x, t, lab).sum(), x)[0]
        assert_close(eps, -(1 - a).sqrt() * own, rtol=1e-10, atol=1e-12, msg=f"against log_prob at t={t}")
