"Temperature scaling against a dense grid search, its stationarity condition, and accuracy invariance."
import math

import pytest
import torch

from papercode.thermometer.metrics import ece, nll, probs_from_logits
from papercode.thermometer.temperature import (nll_grad, pooled_temperature, temperature_scale,
                                               temperature_scale_cv)


def task(n, T0, seed, C=4, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(n, C, generator=g, dtype=torch.float64)
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=g)[:, 0]
    return T0 * z, y


@pytest.mark.parametrize("T0, seed", [(0.5, 0), (1.0, 1), (2.5, 2), (6.0, 3)])
def test_against_dense_grid(T0, seed):
    z, y = task(2000, T0, seed)
    fit = temperature_scale(z, y)
    grid = torch.logspace(math.log10(0.05), math.log10(50), 4001, dtype=torch.float64)
    zy = z.gather(1, y[:, None])[:, 0]
    losses = torch.cat([(torch.logsumexp(z[None] / t[:, None, None], -1) - zy[None] / t[:, None]).mean(1)
                        for t in grid.split(500)])  # NLL at every grid temperature, vectorised
    t_grid = grid[losses.argmin()].item()
    assert abs(math.log(fit.temperature / t_grid)) < 2 * math.log(grid[1] / grid[0])  # within the grid's spacing
    assert fit.nll_after <= losses.min().item() + 1e-12  # never worse than the best grid point


def test_stationarity_and_second_order():
    z, y = task(5000, 2.5, 5)
    fit = temperature_scale(z, y)
    b = 1 / fit.temperature
    # L'(beta) = mean(E_p[z] - z_y) = 0 at the optimum (stationarity of the NLL in beta), computed independently here
    p = torch.softmax(b * z, 1)
    g = ((p * z).sum(1) - z.gather(1, y[:, None])[:, 0]).mean().item()
    assert abs(g) < 1e-9
    # autograd agrees with the analytic derivative away from the optimum
    bb = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.cross_entropy(bb * z, y).backward()
    assert abs(bb.grad.item() - nll_grad(z, y, 0.7)[1]) < 1e-10


def test_consistency_recovers_T0():
    z, y = task(20_000, 2.5, 0)
    fit = temperature_scale(z, y)
    assert abs(fit.temperature - 2.5) < 0.1
    assert ece(probs_from_logits(z, fit.temperature), y) < 0.02 < ece(probs_from_logits(z), y)


def test_padding_equals_dropping_absent_options():
    z, y = task(300, 1.7, 4, C=3)
    zpad = torch.cat([z, torch.full((300, 2), float("-inf"), dtype=z.dtype)], 1)
    assert abs(temperature_scale(zpad, y).temperature - temperature_scale(z, y).temperature) < 1e-9


def check_accuracy_invariance(n, C, tau, seed):
    "arg max softmax(z / tau) = arg max z for every tau > 0 (TS 'preserves the accuracy', Shen et al. 2024, abstract)."
    z = torch.randn(n, C, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert torch.equal(probs_from_logits(z, tau).argmax(1), z.argmax(1))


@pytest.mark.parametrize("tau", [0.01, 0.3, 1.0, 7.0, 100.0])
@pytest.mark.parametrize("n, C, seed", [(1, 2, 0), (40, 6, 1), (17, 3, 2)])
def test_accuracy_invariance(n, C, tau, seed):
    check_accuracy_invariance(n, C, tau, seed)


def test_cv_out_of_fold():
    z, y = task(1000, 2.0, 9)
    cv = temperature_scale_cv(z, y, n_folds=4, seed=3)
    for j in range(4):
        tr = cv.folds != j
        t = temperature_scale(z[tr], y[tr]).temperature
        assert abs(t - cv.temperatures[j].item()) < 1e-5
        torch.testing.assert_close(cv.probs[cv.folds == j], probs_from_logits(z[cv.folds == j], t), rtol=1e-5, atol=1e-7)
    assert torch.equal(cv.probs.argmax(1), z.argmax(1))


def test_pooled_equals_concatenated():
    (za, ya), (zb, yb) = task(400, 2.0, 1), task(300, 0.8, 2)
    pt = pooled_temperature([(za, ya), (zb, yb)])
    assert abs(pt.temperature - temperature_scale(torch.cat([za, zb]), torch.cat([ya, yb])).temperature) < 1e-9


def test_perfect_task_hits_bound():
    z = torch.tensor([[5.0, 0.0], [0.0, 3.0]]); y = torch.tensor([0, 1])
    f = temperature_scale(z, y, bounds=(0.05, 20))
    assert f.at_bound and f.temperature == pytest.approx(0.05)


@pytest.mark.parametrize("bad, msg", [
    (lambda: temperature_scale(torch.zeros(1, 3), torch.tensor([0])), "at least 2 examples"),
    (lambda: temperature_scale(torch.zeros(4, 3), torch.tensor([0, 1, 2, 3])), "labels: out of range"),
    (lambda: temperature_scale(torch.zeros(2, 1), torch.tensor([0, 0])), "at least 2 options"),
    (lambda: temperature_scale(torch.tensor([[0.0, float("nan")], [0.0, 1.0]]), torch.tensor([0, 0])), "NaN"),
    (lambda: temperature_scale(torch.tensor([[0.0, float("-inf"), 1.0], [0.0, 1.0, 2.0]]), torch.tensor([1, 0])), "absent"),
    (lambda: temperature_scale(torch.zeros(2, 2, dtype=torch.long), torch.tensor([0, 1])), "floating-point"),
    (lambda: temperature_scale_cv(torch.zeros(3, 2), torch.tensor([0, 1, 0]), n_folds=5), "n_folds"),
    (lambda: pooled_temperature([]), "tasks: is empty"),
])
def test_bad_input(bad, msg):
    with pytest.raises(ValueError, match=msg):
        bad()
