"Bounds: closed-form values, monotonicity (hypothesis), MI ≤ H ≤ log K by enumeration; KSG and k-SMI against Gaussian closed forms and scikit-learn."
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from papercode.sliced_mi import (Grid, code_length_bound, ksg_mi, quantize, quantized_bound, rate_distortion_bound,
                                 sliced_mi, sub_gaussian_sigma, xu_raginsky, bu_individual, gaussian_mi)
from papercode.sliced_mi.estimators import stiefel


@pytest.mark.parametrize("d,K,v", [(10, 16, 0.118), (20, 4, 0.118), (20, 16, 0.167), (50, 16, 0.263),
                                   (100, 16, 0.372), (200, 16, 0.527)])
def test_closed_form_table(d, K, v):
    assert abs(quantized_bound(d, K, n=1000, sigma=0.5).value - v) < 6e-4


@settings(max_examples=60, deadline=None)
@given(d=st.integers(1, 500), K=st.integers(2, 1000), n=st.integers(1, 10 ** 6))
def test_monotone_in_d_K_and_n(d, K, n):
    b = quantized_bound(d, K, n).value
    assert quantized_bound(d + 1, K, n).value > b
    assert quantized_bound(d, K + 1, n).value > b
    assert math.isclose(quantized_bound(d, K, 4 * n).value, b / 2, rel_tol=1e-12)  # n^{-1/2}


@pytest.mark.parametrize("n,p,K", [(4, Fraction(1, 4), 3), (6, Fraction(1, 2), 4), (8, Fraction(3, 4), 5)])
def test_enumerated_mi_and_entropy_lie_below_the_package_bounds(n, p, K):
    # S = n Bernoulli(p) bits; the algorithm outputs the mean of S quantised by the package onto K levels of [0, 1]
    # (Grid(K, 1/2) spans [-1/2, 1/2], so the mean is shifted by 1/2). Exact fractions throughout.
    grid = Grid(K, 0.5)
    seqs = list(itertools.product((0, 1), repeat=n))
    means = torch.tensor([sum(s) / n - 0.5 for s in seqs], dtype=torch.float64)
    w = quantize(means, grid, ste=False)
    idx = grid.index(w).tolist()  # the level each S is sent to
    ps = {s: p ** sum(s) * (1 - p) ** (n - sum(s)) for s in seqs}
    joint, pw = {}, {}
    for s, k in zip(seqs, idx):
        joint[(s, k)] = joint.get((s, k), 0) + ps[s]; pw[k] = pw.get(k, 0) + ps[s]
    H = -sum(float(q) * math.log(q) for q in pw.values())
    I = sum(float(q) * math.log(q / (ps[s] * pw[k])) for (s, k), q in joint.items())
    assert abs(I - H) < 1e-12  # W is a function of S: I(W; S) = H(W)
    j1 = {}
    for (s, k), q in joint.items(): j1[(s[0], k)] = j1.get((s[0], k), 0) + q
    I1 = sum(float(q) * math.log(q / ({0: 1 - p, 1: p}[z] * pw[k])) for (z, k), q in j1.items())
    assert 0 <= I1 <= I + 1e-12  # I(W; Z_1) <= I(W; S)
    b = quantized_bound(1, K, n=n, sigma=0.5)  # its information term: d log K at d = 1
    assert b.info >= H - 1e-12 and b.info >= I - 1e-12
    # the code length under the true pmf of the quantised value is its entropy: each S enters the runs as often as
    # its integer weight p(s)·denominator^n, so the mean over runs is the expectation
    reps = torch.tensor([int(ps[s] * p.denominator ** n) for s in seqs])
    runs = torch.tensor(idx).repeat_interleave(reps)[:, None]  # (denominator^n, 1) level indices
    prior = torch.tensor([float(pw.get(k, 0)) for k in range(K)], dtype=torch.float64)
    c = code_length_bound(runs, prior, n=n, sigma=0.5)
    assert abs(c.info - H) < 1e-9 and c.info <= b.info + 1e-12 and c.value <= b.value + 1e-12


def test_bound_functions_and_errors():
    b = xu_raginsky([0.5, 2.0], n=100, sigma=0.5)
    assert math.isclose(b.value, (math.sqrt(0.25 * 0.5 * 2 / 100) + math.sqrt(0.25 * 2 * 2 / 100)) / 2)
    assert bu_individual(torch.full((10,), 0.02), sigma=0.5).value == pytest.approx(math.sqrt(2 * 0.25 * 0.02))
    r = rate_distortion_bound(10.0, 0.1, 3.0, 0.5, 100)
    assert r.value == pytest.approx(math.sqrt(0.5 * 10 / 100) + 0.6) and r.constants["distortion_part"] == pytest.approx(0.6)
    # a prior peaked at the occurring level beats d log K; the uniform prior equals it
    idx = torch.full((3, 20), 7)
    assert code_length_bound(idx, torch.full((16,), 1 / 16), 1000, 0.5).value == pytest.approx(quantized_bound(20, 16, 1000).value)
    q = torch.full((16,), 0.01); q[7] = 1 - 0.15
    assert code_length_bound(idx, q, 1000, 0.5).value < quantized_bound(20, 16, 1000).value
    with pytest.raises(ValueError, match="sum to 1"):
        code_length_bound(idx, torch.full((16,), 0.1), 1000, 0.5)
    with pytest.raises(ValueError, match="level indices"):
        code_length_bound(torch.full((5,), 16), torch.full((16,), 1 / 16), 1000, 0.5)
    with pytest.raises(ValueError, match="cannot be negative"):
        xu_raginsky(-0.1, 10, 0.5)
    with pytest.raises(ValueError, match="derived from data"):
        quantized_bound(5, n=100, grid=Grid.from_levels([0.0, 1.0, 3.0]))
    assert quantized_bound(5, n=100, grid=Grid.from_levels([0.0, 1.0, 3.0]), extra_bits=96).constants["extra_bits"] == 96
    with pytest.raises(ValueError, match="at least 2 levels"):
        Grid(1, 1.0)


def test_explicit_grid_levels_are_checked_and_count_as_data_derived():
    g = Grid(3, 2.0, levels_=(-1.0, 0.0, 2.0))
    assert g.data_derived and g.description_bits == 96
    with pytest.raises(ValueError, match="derived from data"):
        quantized_bound(5, n=100, grid=g)
    assert quantized_bound(5, n=100, grid=g, extra_bits=96).info == pytest.approx(5 * math.log(3) + 96 * math.log(2))
    fixed = Grid(3, 2.0, levels_=(-1.0, 0.0, 2.0), data_derived=False)  # declared fixed before the data
    assert not fixed.data_derived and quantized_bound(5, n=100, grid=fixed).info == pytest.approx(5 * math.log(3))
    assert not Grid(16, 8.0).data_derived  # the uniform grid is fixed in advance
    for bad, what in [((-1.0, float("nan"), 2.0), "finite"), ((-1.0, 2.0, 0.0), "increasing"),
                      ((-1.0, 0.0, 0.0), "increasing"), ((-1.0, 0.0, 2.5), "radius")]:
        with pytest.raises(ValueError, match=f"levels_: .*{what}"):
            Grid(3, 2.0, levels_=bad)
    assert Grid(3, 2.0, levels_=(-2.0, 0.0, 2.0 + 1e-12)).levels_[-1] == 2.0 + 1e-12  # rounding is tolerated
    with pytest.raises(TypeError, match=r"K: expected an integer ≥ 2, got 16\.0"):
        Grid(16.0, 8.0)
    with pytest.raises(TypeError, match=r"K: expected an integer ≥ 2, got 16\.0"):
        quantized_bound(5, 16.0, n=100)
    with pytest.raises(TypeError, match="radius: expected a number"):
        Grid(16, "eight")


@pytest.mark.parametrize("kw", [dict(sigma="half"), dict(sigma=None), dict(extra_bits=[1.0, 2.0])])
def test_non_numeric_arguments_are_named(kw):
    with pytest.raises(TypeError, match=f"{next(iter(kw))}: expected a number"):
        quantized_bound(5, 16, n=100, **kw)


def test_non_numeric_rate_distortion_arguments_are_named():
    with pytest.raises(TypeError, match="distortion: expected a number"):
        rate_distortion_bound(1.0, "small", 1.0, 0.5, 100)
    with pytest.raises(TypeError, match="lo: expected a number"):
        sub_gaussian_sigma("zero", 1.0)


def test_quantized_bound_needs_n():
    with pytest.raises(ValueError, match="n: give the training-set size"):
        quantized_bound(20, 16)
    with pytest.raises(ValueError, match="n: give the training-set size"):
        quantized_bound(20, grid=Grid(16, 8.0))
    assert quantized_bound(20, 16, 1000, 0.5) == quantized_bound(20, 16, n=1000)  # positional calls still work


@pytest.mark.parametrize("k,rho", [(1, 0.0), (1, 0.5), (2, 0.8), (3, 0.6)])
def test_ksg_gaussian_closed_form(k, rho):
    g = torch.Generator().manual_seed(11 + k)
    N = 3000
    x = torch.randn(N, k, generator=g, dtype=torch.float64)
    y = rho * x + math.sqrt(1 - rho ** 2) * torch.randn(N, k, generator=g, dtype=torch.float64)
    assert abs(ksg_mi(x, y) - (-k / 2 * math.log(1 - rho ** 2))) < 0.05


def test_ksg_against_scikit_learn():
    from sklearn.feature_selection import mutual_info_regression
    rng = np.random.default_rng(3)
    x = rng.normal(size=2000); y = np.sin(2 * x) + 0.3 * rng.normal(size=2000)
    ours = ksg_mi(x, y, k=3)
    theirs = mutual_info_regression(x[:, None], y, n_neighbors=3, random_state=0)[0]
    assert abs(ours - theirs) < 0.03, (ours, theirs)


def test_gaussian_mi_closed_form():
    rho = 0.7
    S = torch.tensor([[1, rho], [rho, 1.0]], dtype=torch.float64)
    assert gaussian_mi(S, 1) == pytest.approx(-0.5 * math.log(1 - rho ** 2))
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_mi(torch.tensor([[1.0, 2.0], [2.0, 1.0]]), 1)


def test_k_sliced_mi_principal_angles():
    D, k, N = 6, 2, 3000
    g = torch.Generator().manual_seed(7)
    X = torch.randn(N, D, generator=g, dtype=torch.float64)
    Y = X + 0.5 * torch.randn(N, D, generator=g, dtype=torch.float64)  # Y = X + noise: Σ_XY = I, Σ_Y = 1.25 I
    est = sliced_mi(X, Y, k=k, n_proj=24, seed=0)
    # closed form per slice: I(AᵀX; BᵀY) = -½ log det(I - AᵀB BᵀA / 1.25) through the principal angles of A and B
    gg = torch.Generator().manual_seed(0)
    exact = []
    for _ in range(24):
        A = stiefel(D, k, gg); B = stiefel(D, k, gg)
        cos = torch.linalg.svdvals(A.T @ B)  # cosines of the principal angles
        exact.append(float(-0.5 * torch.log(1 - cos ** 2 / 1.25).sum()))
    assert abs(est.value - np.mean(exact)) < 0.05, (est.value, np.mean(exact))
    with pytest.raises(ValueError, match="shared"):
        sliced_mi(X, Y[:, :3], k=1, shared=True)
