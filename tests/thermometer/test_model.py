"The Thermometer: positivity, permutation invariance, aggregation, parameter counts, prior, limits, bad input."
import math

import pytest
import torch
from torch import nn

from papercode.thermometer.model import (CalibTask, Thermometer, fit_thermometer, gamma_nll, predict_temperature,
                                         scaled_logits)
from papercode.thermometer.temperature import temperature_scale


def toy_tasks(K=8, N=120, F=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(K):
        tau = math.exp(torch.empty(()).uniform_(-1, 1, generator=g).item())
        z = 2 * torch.randn(N, 3, generator=g); y = torch.multinomial(torch.softmax(z, 1), 1, generator=g)[:, 0]
        f = 0.3 * torch.randn(N, F, generator=g); f[:, 0] += math.log(tau)
        out.append(CalibTask(name=f"t{k}", logits=tau * z, features=f, labels=y))
    return out


def check_positive_and_order_invariant(n, seed):
    "Per-prompt inverse temperatures are positive; the task temperature ignores the order of the prompts."
    torch.manual_seed(seed)
    m = Thermometer(12, 5).eval()
    x = 3 * torch.randn(n, 12)
    assert (m(x) > 0).all()
    t = predict_temperature(m, x)
    assert t > 0
    perm = torch.randperm(n)
    assert abs(predict_temperature(m, x[perm]) - t) <= 1e-6 * t


@pytest.mark.parametrize("n, seed", [(1, 0), (2, 1), (7, 2), (31, 3), (50, 4)])
def test_positive_and_order_invariant(n, seed):
    check_positive_and_order_invariant(n, seed)


def test_union_is_count_weighted_mean_of_inverse_temperatures():
    torch.manual_seed(1)
    m = Thermometer(7, 4)
    a, b = torch.randn(13, 7), torch.randn(29, 7)
    lhs = 1 / predict_temperature(m, torch.cat([a, b]))
    rhs = (13 / predict_temperature(m, a) + 29 / predict_temperature(m, b)) / 42
    assert abs(lhs - rhs) < 1e-6


@pytest.mark.parametrize("F, h, n", [(2048, 256, 1_574_407), (4096, 512, 6_294_535), (10, 3, 3 * (30 + 6 + 1) + 4)])
def test_parameter_counts(F, h, n):
    assert sum(p.numel() for p in Thermometer(F, h).parameters()) == n


def test_gamma_prior_matches_torch_distributions_and_mode():
    taus = torch.tensor([0.1, 0.5, 1.0, 2.0, 7.0])
    ref = -torch.distributions.Gamma(torch.tensor(1.25), torch.tensor(1 / 4.0)).log_prob(taus)
    torch.testing.assert_close(gamma_nll(taus, 1.25, 4.0), ref)
    grid = torch.linspace(0.2, 3, 2801)
    assert abs(grid[gamma_nll(grid).argmin()].item() - 1.0) < 2e-3  # mode (k-1) theta = 1


def test_strong_prior_gives_mode():
    "lambda -> infinity: the prior's mode, 1, on every training task (and near it on a new one)."
    tasks = toy_tasks(5)
    fit = fit_thermometer(tasks[:4], hidden=4, steps=300, lam=1e4, lr=1e-2, val_fraction=0.0, seed=0)  # no selection
    for t in tasks[:4]:
        assert abs(predict_temperature(fit, t.features) - 1) < 0.03
    assert abs(predict_temperature(fit, tasks[4].features) - 1) < 0.1


def test_single_task_no_prior_equals_temperature_scaling():
    t = toy_tasks(1, N=300)[0]
    fit = fit_thermometer([t], hidden=4, steps=1500, lam=0.0, lr=1e-2, batch_size=10_000, val_fraction=0.0, seed=0)
    ts = temperature_scale(t.logits, t.labels).temperature
    assert abs(predict_temperature(fit, t.features) / ts - 1) < 0.01


def test_learns_across_tasks_better_than_prior():
    tasks = toy_tasks(10, seed=3)
    fit = fit_thermometer(tasks[:9], hidden=8, steps=600, seed=0)
    held = tasks[9]
    ts = temperature_scale(held.logits, held.labels).temperature
    err = abs(math.log(predict_temperature(fit, held.features) / ts))
    assert err < 0.25 and err < abs(math.log(ts))  # closer to the truth than tau = 1 (here |log ts| ~ 0.8)


def test_checkpoint_selection_and_reproducibility():
    tasks = toy_tasks(5)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # differs from the fit's num_threads=1, so that a leak would show
    try:
        a = fit_thermometer(tasks, hidden=4, steps=200, eval_every=50, seed=7, num_threads=1)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    b = fit_thermometer(tasks, hidden=4, steps=200, eval_every=50, seed=7)
    assert a.best_step in (50, 100, 150, 200)
    assert min(v for _, _, v in a.history) == a.best_val_nll
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    assert after == 2  # the one-thread setting is undone after training


def test_masked_logits_have_finite_gradients():
    z = torch.tensor([[1.0, 2.0, float("-inf")], [0.5, float("-inf"), float("-inf")]])
    b = torch.tensor(0.7, requires_grad=True)
    s = scaled_logits(z, b)
    assert torch.isinf(s[0, 2]) and s[0, 1].item() == pytest.approx(1.4)
    nn.functional.cross_entropy(s, torch.tensor([1, 0])).backward()
    assert torch.isfinite(b.grad)


def test_standardize_stores_shift_and_scale():
    tasks = toy_tasks(3)
    fit = fit_thermometer(tasks, hidden=4, steps=20, standardize=True, seed=0)
    assert fit.model.scale.min() > 0 and fit.model.shift.abs().sum() > 0


def _z(): return toy_tasks(1)[0].logits.clone()
def _y(): return toy_tasks(1)[0].labels.clone()
def _set(z, i, j, v): z[i, j] = v; return z
def _nan_at(i, j): return _set(_z(), i, j, float("nan"))
def _absent_label():
    t = toy_tasks(1)[0]; z = t.logits.clone(); z[0, t.labels[0]] = float("-inf"); return z
def _with(logits=None, labels=None):
    t = toy_tasks(1)[0]
    return (t.logits if logits is None else logits, t.features, t.labels if labels is None else labels)


def test_absent_options_still_train():
    "-inf logits mark absent options and stay allowed (the shipped LLM scores have them)."
    t = toy_tasks(1)[0]; z = t.logits.clone()
    for i in range(len(z)):
        z[i, [c for c in range(3) if c != int(t.labels[i])][0]] = float("-inf")
    fit = fit_thermometer([(z, t.features, t.labels)], hidden=4, steps=50, seed=0)
    assert math.isfinite(fit.best_val_nll)


@pytest.mark.parametrize("bad, msg", [
    (lambda: fit_thermometer([]), "tasks: is empty"),
    (lambda: fit_thermometer([(torch.zeros(1, 2), torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))]), "need at least 2"),
    (lambda: fit_thermometer([(torch.zeros(4, 2), torch.zeros(3, 3), torch.zeros(4, dtype=torch.long))]), "inconsistent shapes"),
    (lambda: fit_thermometer([(torch.zeros(4, 2), torch.full((4, 3), float("nan")), torch.zeros(4, dtype=torch.long))]), "non-finite"),
    (lambda: fit_thermometer([object()]), "is not a task"),
    # logits or labels that used to train silently (NaN: infinite validation NLL, untrained model returned)
    # or fail deep inside cross_entropy (IndexError) are named
    (lambda: fit_thermometer([_with(logits=_nan_at(0, 1))]), "entry 0 .*logits contain NaN"),
    (lambda: fit_thermometer([toy_tasks(1)[0], _with(logits=_nan_at(5, 2))]), "entry 1 .*logits contain NaN"),
    (lambda: fit_thermometer([_with(logits=_set(_z(), 2, 0, float("inf")))]), "NaN or \\+inf"),
    (lambda: fit_thermometer([_with(labels=_y() + 3)]), r"labels out of range \[0, 3\)"),
    (lambda: fit_thermometer([_with(labels=_y() - 1)]), r"labels out of range"),
    (lambda: fit_thermometer([_with(labels=_y().float())]), "labels must be integers"),
    (lambda: fit_thermometer([_with(logits=_z().long())]), "logits must be floating point"),
    (lambda: fit_thermometer([_with(logits=_absent_label())]), r"absent \(-inf\) option"),
    (lambda: fit_thermometer(toy_tasks(2), val_fraction=1.5), "val_fraction"),
    (lambda: predict_temperature(Thermometer(4, 2), torch.zeros(0, 4)), "no prompts"),
    (lambda: predict_temperature(Thermometer(4, 2), torch.zeros(3, 5)), "features: expected a tensor of shape"),
    (lambda: predict_temperature(Thermometer(4, 2), torch.full((3, 4), float("inf"))), "NaN or inf"),
])
def test_bad_input(bad, msg):
    with pytest.raises(ValueError, match=msg):
        bad()
