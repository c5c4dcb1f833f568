"""Properties of trade-off functions (METHOD §3.1, §3.2, §3.6)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from finf_stats import InvalidTradeOffError, TradeOff, empirical_tradeoff, gaussian_tradeoff
from finf_stats.tradeoff import DEFAULT_GRID, lower_convex_envelope, signed_gaussian_curve

mus = st.floats(min_value=-6, max_value=6, allow_nan=False)


@given(mus)
def test_gaussian_tradeoff_is_valid(mu):
    gaussian_tradeoff(mu).validate()


@given(mus, st.floats(min_value=1e-6, max_value=1 - 1e-6))
def test_gaussian_mu_identity_at_every_alpha(mu, alpha):
    """mu = Phi^{-1}(1 - alpha) - Phi^{-1}(G_mu(alpha)) at every alpha."""
    g = gaussian_tradeoff(mu)
    value = g.mu_profile(np.array([alpha]))[0]
    if 1e-12 < g(np.array([alpha]))[0] < 1 - 1e-12:
        assert value == pytest.approx(abs(mu), abs=1e-6)


@given(st.floats(min_value=0, max_value=5))
def test_gaussian_is_its_own_inverse(mu):
    g = gaussian_tradeoff(mu)
    assert g.inverse().distance(g) < 1e-12
    # and the numerical inverse of its piecewise-linear representation agrees
    pl = TradeOff.from_points(*g.to_knots())
    assert pl.inverse().distance(g) < 2e-3


def test_gaussian_is_t_of_two_normals():
    """G_mu = T(N(0,1), N(mu,1)): the Neyman–Pearson test at level alpha has beta = G_mu(alpha)."""
    mu = 1.3
    alpha = np.linspace(0.01, 0.99, 50)
    tau = stats.norm.isf(alpha)  # reject when X > tau has level alpha under N(0, 1)
    beta = stats.norm.cdf(tau, loc=mu)
    assert np.allclose(gaussian_tradeoff(mu)(alpha), beta)


def test_signed_curve_matches_gaussian_for_positive_and_mirrors_for_negative():
    a = np.linspace(0, 1, 101)
    assert np.allclose(signed_gaussian_curve(a, 0.8), gaussian_tradeoff(0.8)(a))
    assert np.all(signed_gaussian_curve(a[1:-1], -0.8) > 1 - a[1:-1])


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=2, max_value=60), st.integers(min_value=2, max_value=60),
       st.floats(min_value=-3, max_value=3), st.integers(0, 2**31 - 1),
       st.sampled_from(["both", "greater"]))
def test_empirical_tradeoff_is_always_valid(n_x, n_y, shift, seed, direction):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n_x)
    y = np.round(rng.normal(shift, 1, size=n_y), 1)  # ties included
    f = empirical_tradeoff(x, y, direction=direction)
    f.validate()


def test_empirical_tradeoff_converges_to_gaussian():
    rng = np.random.default_rng(0)
    x = rng.normal(size=20000)
    y = rng.normal(1.0, 1, size=20000)
    f = empirical_tradeoff(x, y)
    assert f.distance(gaussian_tradeoff(1.0)) < 0.02


def test_empirical_tradeoff_of_equal_laws_is_near_diagonal():
    rng = np.random.default_rng(1)
    f = empirical_tradeoff(rng.normal(size=5000), rng.normal(size=5000))
    a = np.linspace(0, 1, 101)
    assert np.max(np.abs(f(a) - (1 - a))) < 0.05


@given(st.floats(min_value=-3, max_value=3))
@settings(max_examples=20, deadline=None)
def test_empirical_tradeoff_invariant_under_increasing_transform(shift):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=80), rng.normal(shift, 1, size=80)
    f = empirical_tradeoff(x, y)
    g = empirical_tradeoff(np.exp(x), np.exp(y))
    assert f.distance(g) < 1e-12


def test_validation_names_the_violated_property():
    concave = TradeOff(lambda a: 1 - a**2, name="concave")
    with pytest.raises(InvalidTradeOffError, match="above the diagonal|not convex"):
        concave.validate()
    increasing = TradeOff(lambda a: np.minimum(1 - a, 0.2 + 0 * a) * (a > 0.5) + (a <= 0.5) * 0.1,
                          name="bumpy")
    with pytest.raises(InvalidTradeOffError, match="increasing"):
        increasing.validate()
    not_convex = TradeOff(lambda a: np.interp(a, [0, 0.5, 0.6, 1], [1, 0.45, 0.1, 0]),
                          name="kinked")
    with pytest.raises(InvalidTradeOffError, match="not convex"):
        not_convex.validate()


def test_lower_convex_envelope_lies_below_every_point_and_is_convex():
    rng = np.random.default_rng(5)
    x = rng.uniform(size=300)
    y = rng.uniform(size=300)
    hx, hy = lower_convex_envelope(x, y)
    assert np.all(np.interp(x, hx, hy) <= y + 1e-12)
    slopes = np.diff(hy) / np.diff(hx)
    assert np.all(np.diff(slopes) >= -1e-9)


def test_bad_alpha_and_points_are_rejected():
    g = gaussian_tradeoff(1.0)
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        g(np.array([1.5]))
    with pytest.raises(ValueError, match="same length"):
        TradeOff.from_points([0.1, 0.2], [0.5])
    with pytest.raises(ValueError, match="NaN"):
        gaussian_tradeoff(float("nan"))
    with pytest.raises(ValueError, match="direction"):
        empirical_tradeoff([1, 2, 3], [2, 3, 4], direction="sideways")


def test_infinite_mu_is_the_perfect_test():
    g = gaussian_tradeoff(np.inf)
    assert np.all(g(DEFAULT_GRID) == 0)
    g.validate()
