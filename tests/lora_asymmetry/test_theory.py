"""The linear theory against independent references: numpy's lstsq on samples, the Beta law of a Haar row's
entries (scipy), a loop over single draws for the batched Monte Carlo, and the invariances of the similarity."""
import numpy as np
import pytest
import torch
from scipy import stats

from papercode.core.testing import assert_close
from papercode.lora_asymmetry.theory import (asymmetry_mc, fit_frozen_A, fit_frozen_B, info_bound, orthonormal,
                                             spectrum_values, subspace_similarity)


def _problem(d_out, d_in, n, seed):
    g = torch.Generator().manual_seed(seed)
    delta = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    X = torch.randn(n, d_in, generator=g, dtype=torch.float64) * torch.rand(d_in, generator=g, dtype=torch.float64)
    return delta, X, X.T @ X / n


@pytest.mark.parametrize("d_out,d_in,r,n", [(20, 12, 3, 50), (8, 30, 5, 40), (16, 16, 16, 64), (10, 40, 4, 6)])
def test_lemma_4_1_equals_numpy_lstsq_on_the_features(d_out, d_in, r, n):
    delta, X, sigma = _problem(d_out, d_in, n, seed=d_out * 7 + r)
    Q = orthonormal(r, d_in, seed=r, dtype=torch.float64)
    fit = fit_frozen_A(delta, sigma, Q)
    Xn = X.numpy()
    B_ls, res, *_ = np.linalg.lstsq(Xn @ Q.numpy().T, Xn @ delta.numpy().T, rcond=None)
    assert_close(fit.factor, B_ls.T, rtol=0, atol=1e-10, msg="B*")
    loss_np = ((Xn @ delta.numpy().T - Xn @ Q.numpy().T @ B_ls) ** 2).sum() / n
    assert_close(fit.loss, loss_np, rtol=1e-9, atol=1e-12, msg="L_B")


@pytest.mark.parametrize("d_out,d_in,r", [(12, 9, 3), (30, 8, 6)])
def test_lemma_4_2_equals_numpy_lstsq_and_ignores_the_inputs(d_out, d_in, r):
    delta, X, sigma = _problem(d_out, d_in, 80, seed=3 * r)
    U = orthonormal(r, d_out, seed=11, dtype=torch.float64).T
    Xn, Yn = X.numpy(), (X @ delta.T).numpy()
    A_ls = np.linalg.lstsq(np.kron(U.numpy(), Xn), Yn.reshape(-1, order="F"), rcond=None)[0].reshape(d_in, r, order="F").T
    fit = fit_frozen_B(delta, sigma, U)
    assert_close(fit.factor, A_ls, rtol=0, atol=1e-10, msg="A*")
    # A* does not depend on the input covariance; a non-orthonormal U gives (UᵀU)⁻¹UᵀΔ
    assert_close(fit_frozen_B(delta, torch.eye(d_in, dtype=torch.float64), U).factor, fit.factor, atol=1e-12)
    V = U @ torch.tensor(np.random.default_rng(0).normal(size=(r, r)))
    assert_close(V @ fit_frozen_B(delta, sigma, V).factor, U @ fit.factor, atol=1e-9, msg="same projection for any basis")


def test_haar_rows_follow_the_beta_law_and_mean_projection():
    d, r, n = 7, 3, 1500
    draws = torch.stack([orthonormal(r, d, seed=s, dtype=torch.float64) for s in range(n)])
    # E[AᵀA] = (r/d) I within 5 standard errors entrywise (CLT)
    P = draws.transpose(1, 2) @ draws
    se = P.std(0) / n ** 0.5
    assert bool(((P.mean(0) - r / d * torch.eye(d, dtype=torch.float64)).abs() <= 5 * se + 1e-12).all())
    # a Haar row is uniform on the sphere: its squared first entry is Beta(1/2, (d-1)/2), its sign symmetric
    a = draws[:, 0, 0].numpy()
    assert stats.kstest(a ** 2, stats.beta(0.5, (d - 1) / 2).cdf).pvalue > 1e-3
    assert abs(a.mean()) < 5 * a.std() / n ** 0.5
    # without the sign fix LAPACK's convention makes the first entry one-signed: not Haar
    b = np.array([float(orthonormal(r, d, seed=s, dtype=torch.float64, sign_fix=False)[0, 0]) for s in range(300)])
    assert abs(b.mean()) > 10 * b.std() / 300 ** 0.5


def test_batched_monte_carlo_matches_a_loop_of_single_draws():
    d, r = 24, 3
    mc = asymmetry_mc(d, r, "decay", n_draws=1500, seed=3, power=1.5)
    g = torch.Generator().manual_seed(3); delta = torch.randn(d, d, generator=g, dtype=torch.float64)
    sigma = torch.diag(spectrum_values("decay", d, r, 1.5))
    LB = np.array([fit_frozen_A(delta, sigma, orthonormal(r, d, seed=1000 + s, dtype=torch.float64)).loss for s in range(400)])
    LA = np.array([fit_frozen_B(delta, sigma, orthonormal(r, d, seed=2000 + s, dtype=torch.float64).T).loss for s in range(400)])
    # two independent samples of the same law: Welch-type 5-sigma agreement of the means, KS on the shapes
    for a, b in ((mc.L_B.numpy(), LB), (mc.L_A.numpy(), LA)):
        assert abs(a.mean() - b.mean()) < 5 * np.sqrt(a.var() / len(a) + b.var() / len(b))
        assert stats.ks_2samp(a, b).pvalue > 1e-3
    assert_close(LA.mean(), (1 - r / d) * mc.total, rtol=0.02)


@pytest.mark.parametrize("spectrum", ["isotropic", "decay", "low_rank"])
def test_mean_of_L_A_is_one_minus_r_over_d_for_any_spectrum(spectrum):
    mc = asymmetry_mc(32, 4, spectrum, n_draws=2000, seed=77)
    # the zero adapter's loss tr(ΔΣΔᵀ) from Δ's seed and the spectrum written out here, not read from the code
    lam = {"isotropic": np.ones(32), "decay": 1 / np.arange(1, 33), "low_rank": (np.arange(32) < 4).astype(float)}[spectrum]
    D = torch.randn(32, 32, generator=torch.Generator().manual_seed(77), dtype=torch.float64).numpy()
    assert_close(mc.total, float(np.einsum("ij,j,ij->", D, lam, D)), rtol=1e-12)
    se = float(mc.L_A.std()) / 2000 ** 0.5
    assert abs(mc.mean_A - mc.theory_A) < 5 * se + 1e-12


def test_similarity_is_invariant_to_the_lora_reparametrisation():
    g = torch.Generator().manual_seed(5)
    for d, r in ((30, 2), (64, 8)):
        B = torch.randn(d, r, generator=g, dtype=torch.float64); A = torch.randn(r, d + 3, generator=g, dtype=torch.float64)
        for _ in range(5):
            R = torch.randn(r, r, generator=g, dtype=torch.float64)
            B2, A2 = B @ R, torch.linalg.solve(R, A)
            assert_close(B2 @ A2, B @ A, atol=1e-8)
            assert abs(subspace_similarity(B, B2) - 1) < 1e-10
            assert abs(subspace_similarity(A, A2, side="row") - 1) < 1e-10
    # independent random subspaces: mean r/d
    sims = [subspace_similarity(torch.randn(50, 5, generator=g), torch.randn(50, 5, generator=g)) for _ in range(400)]
    assert abs(np.mean(sims) - 5 / 50) < 5 * np.std(sims) / 20


def test_bound_counts_and_scalings():
    shapes = [(384, 384)] * 3 + [(192, 576)]
    ab, b, a = (info_bound(shapes, 8, 1000, mode=m) for m in ("AB", "B", "A"))
    assert ab.n_params == 8 * (3 * 768 + 768) and b.n_params == 8 * (3 * 384 + 192) and a.n_params == 8 * (3 * 384 + 576)
    assert_close(b.value / ab.value, (b.n_params / ab.n_params) ** 0.5, rtol=1e-12)
    assert_close(info_bound(shapes, 8, 4000).value, ab.value / 2, rtol=1e-12)
    assert_close(info_bound(shapes, 8, 1000, bits=8).value, ab.value / 2, rtol=1e-12)
    assert_close(info_bound(shapes, 8, 1000, sigma=3.0).value, 3 * ab.value, rtol=1e-12)
    assert info_bound(shapes, 8, 1000, mode="full").n_params == 3 * 384 ** 2 + 192 * 576
    assert ab.reconstructed


def test_bad_inputs_are_named():
    d = torch.randn(4, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="sigma: must be"): fit_frozen_A(d, torch.eye(5, dtype=torch.float64), orthonormal(2, 6))
    with pytest.raises(ValueError, match="U: must be"): fit_frozen_B(d, torch.eye(6, dtype=torch.float64), torch.randn(5, 2))
    with pytest.raises(ValueError, match="Q: contains NaN"): fit_frozen_A(d, torch.eye(6, dtype=torch.float64), torch.full((2, 6), float("nan")))
    with pytest.raises(ValueError, match="floating-point"): fit_frozen_A(d.long(), torch.eye(6), orthonormal(2, 6))
    with pytest.raises(ValueError, match="need r <= d"): orthonormal(7, 6)
    with pytest.raises(ValueError, match="n_draws"): asymmetry_mc(8, 2, n_draws=0)
    with pytest.raises(ValueError, match="eigenvalues must be finite"): asymmetry_mc(3, 1, torch.tensor([1.0, -1.0, 0.0]))
    with pytest.raises(ValueError, match="shapes: no adapted"): info_bound([], 4, 10)
    with pytest.raises(ValueError, match="r: must be a positive integer"): info_bound([(4, 4)], 0, 10)
    with pytest.raises(ValueError, match="side: must be"): subspace_similarity(torch.randn(4, 2), torch.randn(4, 2), side="both")


def test_L_B_is_zero_to_rounding_for_rank_r_inputs_even_when_Q_sigma_Q_is_ill_conditioned():
    # d = 128, r = 8: some Haar draws make QΣQᵀ ill-conditioned; the normal equations then gave L_B/total up to 3e-8
    mc = asymmetry_mc(128, 8, "low_rank", n_draws=4000, seed=104)
    assert float(mc.L_B.max()) / mc.total < 1e-12
    # fewer nonzero eigenvalues than r: the features still span the input's support, L_B = 0
    lam = torch.zeros(16, dtype=torch.float64); lam[:2] = torch.tensor([2.0, 0.5])
    mc2 = asymmetry_mc(16, 4, lam, n_draws=200, seed=5)
    assert float(mc2.L_B.max()) / mc2.total < 1e-12


def test_finetune_stops_with_a_named_error_when_the_loss_blows_up():
    "A learning rate that overflows the logits ends the run at the first non-finite loss, naming the step, not silently."
    from papercode.lora_asymmetry.finetune import digits_task, finetune, pretrain_digits
    base, task = pretrain_digits(hidden=16, steps=20), digits_task(n_train=64)
    ok = finetune(task, mode="B", r=2, steps=3, lr=1e-2, base=base)
    assert np.isfinite(ok.train_loss)  # a sane learning rate runs through
    with pytest.raises(ValueError, match=r"loss: became (nan|inf) at step \d+ \(lower lr\?\)"):
        finetune(task, mode="B", r=2, steps=50, lr=1e30, base=base)


def test_similarity_and_bound_figures_draw_what_they_are_given():
    from papercode.lora_asymmetry.experiments import bound_figure, similarity_figure
    runs = [(t, s) for t in range(2) for s in range(2)]
    M = np.eye(4) + 0.2 * (1 - np.eye(4))
    f = similarity_figure(dict(runs=runs, A_matrix=M, B_matrix=M.T))
    imgs = [ax.images[0].get_array() for ax in f.axes if ax.images]
    assert len(imgs) == 2 and np.allclose(imgs[0], M)
    assert [t.get_text() for t in f.axes[0].get_xticklabels()] == ["t0 i0", "t0 i1", "t1 i0", "t1 i1"]
    o = dict(gaps={"AB r=4, n=100": (0.12, 0.07, 0.18), "AB r=4, n=400": (0.05, 0.02, 0.07),
                   "B r=8, n=100": (0.11, 0.05, 0.19), "B r=8, n=400": (0.05, 0.03, 0.08)}, bounds={100: 10.7, 400: 5.3})
    g = bound_figure(o, 4)
    labels = [t.get_text() for t in g.axes[0].get_legend().get_texts()]
    assert sorted(labels) == ["bound, AB r=4 (= B r=8)", "measured gap, AB r=4", "measured gap, B r=8"]
    line = [l for l in g.axes[0].get_lines() if l.get_linestyle() == "--"][0]
    assert list(line.get_xdata()) == [100, 400] and list(line.get_ydata()) == [10.7, 5.3]


def test_rank_sweep_counts_trained_numbers_and_draws_every_seed():
    from dataclasses import replace
    from papercode.lora_asymmetry.experiments import AsymConfig, rank_figure, rank_sweep
    cfg = replace(AsymConfig.tiny(), steps=3, n_train=64)
    sw = rank_sweep(cfg, ranks=(1, 2), modes=("AB", "B", "A"), seeds=2)
    t = sw["trained"]
    assert t["B", 2] == 2 * t["B", 1] and t["A", 2] == 2 * t["A", 1]  # linear in the rank
    assert t["AB", 1] == t["A", 1] + t["B", 1]  # LoRA trains both factors
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in sw["acc"].values())
    f = rank_figure(sw)
    dots = [l for l in f.axes[0].get_lines() if l.get_linestyle() == "None"]
    assert len(dots) == 3 * 2  # one marker set per mode and rank, each with both seeds
    assert all(len(l.get_ydata()) == 2 for l in dots)
