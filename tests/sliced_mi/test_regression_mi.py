"""Fixed-design linear regression: the closed form I(W'; y_i) = -½ log(1 - h_i) used by claim 4, against the MI of the
explicit joint Gaussian covariance of (W', y_i), and its Monte-Carlo check."""
import numpy as np
import pytest

from papercode.sliced_mi.experiments import regression_mi, regression_mi_mc


def _explicit(X, theta, sigma=1.7):
    "MI of the jointly Gaussian (W', y_i) from their covariance blocks, one row at a time."
    Z = X @ theta
    G = np.linalg.inv(Z.T @ Z)
    out = []
    for z in Z:
        S_w, c, s_y = sigma ** 2 * G, sigma ** 2 * G @ z, sigma ** 2  # Var W', Cov(W', y_i), Var y_i
        C = np.block([[S_w, c[:, None]], [c[None, :], np.array([[s_y]])]])
        out.append(0.5 * (np.linalg.slogdet(S_w)[1] + np.log(s_y) - np.linalg.slogdet(C)[1]))
    return np.array(out)


@pytest.mark.parametrize("n,D,d", [(12, 5, 2), (30, 8, 8), (40, 6, 1)])
def test_closed_form_equals_the_joint_gaussian_mi(n, D, d):
    rng = np.random.default_rng(n + D + d)
    X = rng.standard_normal((n, D))
    theta = np.linalg.qr(rng.standard_normal((D, d)))[0]
    np.testing.assert_allclose(regression_mi(X, theta), _explicit(X, theta), rtol=1e-10, atol=1e-13)
    if d == D:
        np.testing.assert_allclose(regression_mi(X), regression_mi(X, theta), rtol=1e-10)  # a basis of the full space


def test_leverages_sum_to_d_so_the_first_order_ratio_is_d_over_D():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((60, 8))
    for d in (1, 3, 8):
        theta = np.linalg.qr(rng.standard_normal((8, d)))[0]
        h = -np.expm1(-2 * regression_mi(X, theta))  # invert -½ log(1 - h)
        assert h.sum() == pytest.approx(d, rel=1e-10)


def test_monte_carlo_agrees_with_the_closed_form():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((40, 6))
    theta = np.linalg.qr(rng.standard_normal((6, 2)))[0]
    mc = regression_mi_mc(X, theta, reps=40_000, seed=3, i=4)
    assert mc == pytest.approx(regression_mi(X, theta)[4], rel=0.05)


def test_refuses_too_few_rows():
    with pytest.raises(ValueError, match="more rows than columns"):
        regression_mi(np.ones((3, 4)))
