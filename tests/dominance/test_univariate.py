"""Univariate checks: the quantile formula vs exact OT (network simplex) vs deepsig's ASO ratio, FSD vs CDFs."""
import numpy as np
import pytest
import torch

from papercode.core.ot import emd
from papercode.core.testing import assert_close, require
from papercode.dominance.univariate import almost_dominance_ratio, first_order_dominance, quantile_pairs
from papercode.dominance.violation import violation_ratio

f64 = torch.float64


def _gauss(seed, n, m):
    g = torch.Generator().manual_seed(seed)
    return 0.3 + torch.randn(n, generator=g, dtype=f64), 1.5 * torch.randn(m, generator=g, dtype=f64)


@pytest.mark.parametrize("seed,n,m", [(0, 400, 400), (1, 120, 75), (2, 33, 50)])
def test_quantiles_equal_exact_ot(seed, n, m):
    "The quantile formula equals the squared-hinge OT ratio computed by the network simplex on the full matrix."
    x, y = _gauss(seed, n, m)
    h = lambda z: z.neg().clamp_min(0) ** 2
    pq = emd(None, None, h(x[:, None] - y[None, :])).value
    qp = emd(None, None, h(y[:, None] - x[None, :])).value
    ref = pq / (pq + qp)
    assert_close(almost_dominance_ratio(x, y), ref, rtol=1e-10, msg="quantiles vs emd")
    assert_close(violation_ratio(x, y, cost="sqhinge", lam=0).ratio, ref, rtol=1e-10, msg="violation_ratio 1-D path")
    assert_close(violation_ratio(x[:, None], y[:, None], cost="sqhinge", lam=0).ratio, ref, rtol=1e-10)


@pytest.mark.parametrize("seed,n,m", [(0, 400, 400), (1, 120, 75)])
def test_deepsig(seed, n, m):
    "deepsig's grid approximation of the W2 violation ratio agrees to the accuracy of its grid (dt = 1e-4)."
    try:
        from deepsig.aso import compute_violation_ratio
    except ImportError:
        compute_violation_ratio = None
    require(compute_violation_ratio is not None, "deepsig is not installed (pip install deepsig)")
    x, y = _gauss(seed, n, m)
    ours = almost_dominance_ratio(x, y).item()
    theirs = compute_violation_ratio(x.numpy(), y.numpy(), dt=1e-4)
    assert abs(ours - theirs) < 1e-3, (ours, theirs)
    # the grid error shrinks with dt: a coarser grid is further away
    assert abs(ours - compute_violation_ratio(x.numpy(), y.numpy(), dt=1e-2)) >= abs(ours - theirs) - 1e-6


def test_quantile_pairs_are_the_quantile_functions():
    "On the merged grid, the pairs are F_X^{-1}(p), F_Y^{-1}(p) evaluated at the midpoint of each interval."
    x, y = _gauss(3, 13, 7)
    qx, qy, mass = quantile_pairs(x, y)
    p_mid = torch.cumsum(mass, 0) - mass / 2
    keep = mass > 1e-12
    Fx = torch.sort(x).values[torch.ceil(13 * p_mid).long() - 1]
    Fy = torch.sort(y).values[torch.ceil(7 * p_mid).long() - 1]
    assert_close(qx[keep], Fx[keep], rtol=0); assert_close(qy[keep], Fy[keep], rtol=0)
    assert_close(mass.sum(), 1.0, rtol=1e-12)


def _cdf_dominates(x, y):
    "Brute force: F_X(t) <= F_Y(t) at every data point t (the CDFs only jump there)."
    t = torch.cat([x, y])
    Fx = (x[None, :] <= t[:, None]).double().mean(1)
    Fy = (y[None, :] <= t[:, None]).double().mean(1)
    return bool((Fx <= Fy + 1e-12).all())


@pytest.mark.parametrize("seed", range(40))
def test_fsd_equals_cdf_order(seed):
    "first_order_dominance agrees with the CDF definition on small samples with ties."
    g = torch.Generator().manual_seed(seed)
    n, m = int(torch.randint(1, 8, (1,), generator=g)), int(torch.randint(1, 8, (1,), generator=g))
    x = torch.randint(0, 4, (n,), generator=g).double()
    y = torch.randint(0, 4, (m,), generator=g).double() - float(seed % 3 == 0)
    assert bool(first_order_dominance(x, y)) == _cdf_dominates(x, y)
    # epsilon = 0 iff dominance (for distinct distributions)
    eps = almost_dominance_ratio(x, y).item()
    if _cdf_dominates(x, y) and not _cdf_dominates(y, x):
        assert eps == 0.0
    if eps == 0.0:
        assert _cdf_dominates(x, y)


def test_antisymmetry_univariate():
    x, y = _gauss(4, 50, 60)
    assert_close(almost_dominance_ratio(x, y) + almost_dominance_ratio(y, x), 1.0, atol=1e-12)


def test_float32_bootstrap_weights_accepted_at_large_n():
    "Multinomial weights in float32 sum to 1 only up to rounding; the probability check allows for it."
    from papercode.dominance.inference import bootstrap_weights
    x, y = _gauss(5, 3000, 3000)
    W = bootstrap_weights(3000, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    r32 = almost_dominance_ratio(x.float(), y.float(), W, W)
    r64 = almost_dominance_ratio(x, y, W.double(), W.double())
    assert_close(r32.double(), r64, rtol=1e-4)
    with pytest.raises(ValueError, match="b: weights must sum to 1"):
        almost_dominance_ratio(x, y, b=torch.full((3000,), 2 / 3000, dtype=f64))
