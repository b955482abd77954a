"""Independent checks of the AOT loss: POT's exact OT and 1-D Wasserstein, the dominance ratio, gradients by hand and by
finite differences, property tests, soft sort, and bad input."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from papercode.aot.loss import (SURROGATES, aot_loss, dpo_loss, ipo_loss, kto_loss, soft_sort, surrogate,
                                surrogate_grad)
from papercode.core.ot import almost_dominance_ratio
from papercode.core.testing import assert_close

torch.set_num_threads(1)


def _batch(n, seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g, dtype=torch.float64) * scale - 30 for _ in range(4)]


def _uv(c, r, rc, rr, variant):
    return (c - rc, r - rr) if variant == "unpaired" else (c - r, rc - rr)


@pytest.mark.parametrize("variant", ["paired", "unpaired"])
@pytest.mark.parametrize("h", SURROGATES)
@pytest.mark.parametrize("n", [1, 7, 64])
def test_loss_is_exact_ot_with_cost_h(variant, h, n):
    "Theorem 1: (1/n) Σ h(u_(i) - v_(i)) = min over couplings of Σ γ_ij h(u_i - v_j), solved by POT's network simplex."
    import ot
    c, r, rc, rr = _batch(n, seed=n + 10 * len(h))
    beta = 0.7
    res = aot_loss(c, r, rc, rr, variant=variant, h=h, beta=beta)
    u, v = _uv(c, r, rc, rr, variant)
    H = surrogate(u[:, None] - v[None, :], h, beta).numpy()
    w = np.full(n, 1.0 / n)
    assert_close(res.loss, ot.emd2(w, w, H), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("variant", ["paired", "unpaired"])
def test_least_squares_is_shifted_w2(variant):
    "(1/n) Σ (β - δ_i)² = W_2²(u - β, v): POT's 1-D Wasserstein distance of the shifted samples."
    import ot
    c, r, rc, rr = _batch(50, seed=3)
    beta = 0.4
    u, v = _uv(c, r, rc, rr, variant)
    w2 = ot.wasserstein_1d((u - beta).numpy(), v.numpy(), p=2)
    assert_close(aot_loss(c, r, rc, rr, variant=variant, h="lsq", beta=beta).loss, w2, rtol=1e-9)


@pytest.mark.parametrize("variant", ["paired", "unpaired"])
def test_squared_hinge_at_zero_margin_is_the_dominance_ratio(variant):
    "With h = (-x)_+², β = 0: loss(U, V) / (loss(U, V) + loss(V, U)) = del Barrio's ratio ε_W2(U, V)."
    c, r, rc, rr = _batch(40, seed=5)
    u, v = _uv(c, r, rc, rr, variant)
    fwd = aot_loss(c, r, rc, rr, variant=variant, h="sqhinge", beta=0.0).loss
    # the reverse direction: swap the roles of u and v through the inputs
    bwd = (aot_loss(r, c, rr, rc, variant="unpaired", h="sqhinge", beta=0.0).loss if variant == "unpaired"
           else aot_loss(rc, rr, c, r, variant="paired", h="sqhinge", beta=0.0).loss)
    ratio = almost_dominance_ratio(u, v)
    assert 0.01 < ratio < 0.99  # a batch that neither dominates nor is dominated
    assert_close(fwd / (fwd + bwd), ratio, rtol=1e-10)
    assert_close(aot_loss(c, r, rc, rr, variant=variant).violation, ratio, rtol=1e-10)


@pytest.mark.parametrize("h", SURROGATES)
@pytest.mark.parametrize("variant", ["paired", "unpaired"])
def test_gradient_is_routed_to_the_original_indices(h, variant):
    "Autograd through torch.sort = h'(δ_i)/n sent to the index of the i-th order statistic (+ for u, - for v)."
    c, r, rc, rr = _batch(33, seed=7)
    c.requires_grad_(True); r.requires_grad_(True)
    res = aot_loss(c, r, rc, rr, variant=variant, h=h, beta=0.5)
    res.loss.backward()
    g = surrogate_grad(res.delta, h, 0.5) / 33
    du = torch.zeros(33, dtype=torch.float64); du[res.u_perm] = g
    dv = torch.zeros(33, dtype=torch.float64); dv[res.v_perm] = -g
    if variant == "unpaired":
        assert_close(c.grad, du, rtol=1e-10, atol=1e-15); assert_close(r.grad, dv, rtol=1e-10, atol=1e-15)
    else:  # u = c - r; v does not depend on the policy
        assert_close(c.grad, du, rtol=1e-10, atol=1e-15); assert_close(r.grad, -du, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("h", SURROGATES)
def test_gradient_matches_finite_differences(h):
    "No ties, so the sort is locally a fixed permutation: central differences agree with autograd to 1e-6."
    c, r, rc, rr = _batch(12, seed=11)
    def f(c_, r_): return aot_loss(c_, r_, rc, rr, variant="unpaired", h=h, beta=0.5).loss
    assert torch.autograd.gradcheck(f, (c.clone().requires_grad_(True), r.clone().requires_grad_(True)),
                                    eps=1e-6, atol=1e-6, rtol=1e-6)


def test_surrogate_grad_is_the_derivative():
    d = torch.linspace(-4, 4, 41, dtype=torch.float64, requires_grad=True)
    for h in SURROGATES:
        for s in ([0.0, 0.2] if h == "logistic" else [0.0]):
            (g,) = torch.autograd.grad(surrogate(d, h, 0.8, s).sum(), d)
            assert_close(surrogate_grad(d.detach(), h, 0.8, s), g, rtol=1e-12, atol=1e-15, msg=f"{h} s={s}")


finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(finite, finite, finite, finite), min_size=1, max_size=20), st.randoms(use_true_random=False))
def test_permutation_invariance(rows, rnd):
    "uAOT ignores independent shuffles of the chosen and of the rejected set; pAOT of policy and reference margins."
    c, r, rc, rr = (torch.tensor(col, dtype=torch.float64) for col in zip(*rows))
    n = len(rows)
    p1, p2 = torch.tensor(rnd.sample(range(n), n)), torch.tensor(rnd.sample(range(n), n))
    for h in SURROGATES:
        base = aot_loss(c, r, rc, rr, variant="unpaired", h=h, beta=0.3).loss
        shuf = aot_loss(c[p1], r[p2], rc[p1], rr[p2], variant="unpaired", h=h, beta=0.3).loss
        assert_close(shuf, base, rtol=1e-12, atol=1e-12)
        base = aot_loss(c, r, rc, rr, variant="paired", h=h, beta=0.3).loss
        shuf = aot_loss(c[p1], r[p1], rc[p2], rr[p2], variant="paired", h=h, beta=0.3).loss
        assert_close(shuf, base, rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(finite, finite, finite, finite), min_size=1, max_size=20), st.floats(0.01, 10))
def test_raising_chosen_log_ratios_never_hurts(rows, shift):
    "For non-increasing h (logistic, squared hinge) adding c > 0 to every chosen log ratio cannot increase uAOT."
    c, r, rc, rr = (torch.tensor(col, dtype=torch.float64) for col in zip(*rows))
    for h in ("logistic", "sqhinge"):
        before = aot_loss(c, r, rc, rr, variant="unpaired", h=h, beta=0.3).loss
        after = aot_loss(c + shift, r, rc, rr, variant="unpaired", h=h, beta=0.3).loss
        assert after <= before + 1e-12


def test_least_squares_is_not_monotone():
    "The property above fails for least squares, which penalises margins above β: the test can tell."
    c, r, rc, rr = _batch(8, seed=2)
    z = torch.zeros(8, dtype=torch.float64)
    before = aot_loss(z + 1.0, z, z, z, variant="unpaired", h="lsq", beta=1.0).loss
    after = aot_loss(z + 2.0, z, z, z, variant="unpaired", h="lsq", beta=1.0).loss
    assert after > before


@pytest.mark.parametrize("n", [5, 40])
def test_soft_sort_tends_to_the_hard_sort(n):
    "The soft sort's error shrinks with τ and is below τ-sized values once τ is small against the gaps."
    g = torch.Generator().manual_seed(n)
    x = torch.randn(3, n, generator=g, dtype=torch.float64)
    hard = torch.sort(x).values
    gap = (hard[:, 1:] - hard[:, :-1]).min().item()
    errs = [(soft_sort(x, t) - hard).abs().max().item() for t in (1.0, 0.1, gap, gap / 10, gap / 100)]
    assert all(a >= b - 1e-15 for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < gap / 100 and errs[0] > 1e-3
    assert_close(soft_sort(x[0], 0.05), soft_sort(x, 0.05)[0], rtol=1e-14)  # batch rows are separate problems


def test_soft_sort_gradient_flows_through_the_permutation():
    "Unlike the hard sort, the soft sort's Jacobian mixes entries: d sorted_0 / d x_j is non-zero for several j."
    x = torch.tensor([0.0, 0.05, 1.0], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(soft_sort(x, 0.1)[0], x)
    assert (g.abs() > 1e-3).sum() >= 2
    (g,) = torch.autograd.grad(torch.sort(x).values[0], x)
    assert (g.abs() > 0).sum() == 1


def test_soft_aot_is_close_to_hard_aot_and_has_gradients():
    c, r, rc, rr = _batch(32, seed=4)
    c.requires_grad_(True)
    soft = aot_loss(c, r, rc, rr, sort="soft", soft_reg=1e-3, beta=0.5)
    hard = aot_loss(c, r, rc, rr, beta=0.5)
    assert_close(soft.loss, hard.loss, rtol=1e-6)
    soft.loss.backward()
    assert torch.isfinite(c.grad).all() and c.grad.abs().sum() > 0
    far = aot_loss(c, r, rc, rr, sort="soft", soft_reg=10.0, beta=0.5).loss
    assert (far - hard.loss).abs() > 1e-4


@pytest.mark.parametrize("variant", ["paired", "unpaired"])
def test_label_smoothing(variant):
    "(1 - s) log(1 + e^{-βδ}) + s log(1 + e^{βδ}) on the sorted differences, δ computed here with NumPy."
    c, r, rc, rr = _batch(16, seed=8)
    u, v = (t.numpy() for t in _uv(c, r, rc, rr, variant))
    d = np.sort(u) - np.sort(v)
    for s in (0.0, 0.3):
        want = (1 - s) * np.log1p(np.exp(-0.2 * d)) + s * np.log1p(np.exp(0.2 * d))
        assert_close(aot_loss(c, r, rc, rr, variant=variant, beta=0.2, label_smoothing=s).losses, want, rtol=1e-12)


def test_dpo_ipo_kto_closed_forms():
    c, r, rc, rr = _batch(10, seed=9)
    z = (c - rc) - (r - rr)
    assert_close(dpo_loss(c, r, rc, rr, beta=0.1).loss, np.mean(np.log1p(np.exp(-0.1 * z.numpy()))), rtol=1e-12)
    assert_close(ipo_loss(c, r, rc, rr, beta=0.1).loss, ((z - 5.0) ** 2).mean(), rtol=1e-12)
    u, v = (c - rc).numpy(), (r - rr).numpy()
    zp, zm = max(u.mean(), 0), max(v.mean(), 0)
    sig = lambda t: 1 / (1 + np.exp(-t))
    ref = np.concatenate([1 - sig(0.1 * (u - zm)), 1 - sig(0.1 * (zp - v))]).mean()
    assert_close(kto_loss(c, r, rc, rr, beta=0.1).loss, ref, rtol=1e-12)
    assert kto_loss(c, r[:7], rc, rr[:7]).losses.shape == (17,)  # unpaired sets of different sizes


def test_unpaired_sizes_are_named():
    z = torch.zeros(5); y = torch.zeros(3)
    with pytest.raises(ValueError, match="unpaired batch: 5 chosen and 3 rejected"):
        aot_loss(z, y, z, y, variant="unpaired")


@pytest.mark.parametrize("fn", [dpo_loss, ipo_loss, kto_loss])
def test_bad_input_for_the_baselines(fn):
    z = torch.zeros(4)
    with pytest.raises(ValueError, match="chosen_logps: contains 1 non-finite"):
        fn(torch.tensor([0.0, 0.0, 0.0, float("nan")]), z, z, z)
    with pytest.raises(ValueError, match="beta: must be > 0"):
        fn(z, z, z, z, beta=-1.0)
    with pytest.raises(ValueError, match="rejected_logps: is empty"):
        fn(z, torch.zeros(0), z, torch.zeros(0))


def test_soft_reg_is_checked_even_with_the_hard_sort():
    z = torch.zeros(4)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="soft_reg: must be > 0"):
            aot_loss(z, z, z, z, soft_reg=bad)
    with pytest.raises(ValueError, match="^reg: must be > 0"):  # soft_sort names its own argument
        soft_sort(torch.randn(3), reg=0.0)


def test_numpy_scalars_are_numbers():
    "β and s given as NumPy scalars (e.g. read from an array of settings) give the float result."
    c, r, rc, rr = _batch(9, seed=12)
    want = aot_loss(c, r, rc, rr, beta=float(np.float32(0.25)), label_smoothing=0.125).loss
    assert_close(aot_loss(c, r, rc, rr, beta=np.float32(0.25), label_smoothing=np.float64(0.125)).loss, want, rtol=0)
    assert_close(dpo_loss(c, r, rc, rr, beta=np.float64(0.1)).loss, dpo_loss(c, r, rc, rr, beta=0.1).loss, rtol=0)
