"""``mu`` <-> ``(epsilon, delta)`` conversions (METHOD §3.9)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from finf_stats.privacy import delta_to_eps, eps_delta_to_mu, mu_to_delta
from finf_stats.tradeoff import gaussian_tradeoff

FAST = settings(max_examples=60, deadline=None)


def textbook_delta(mu: float, eps: float) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        second = np.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2)
    return float(stats.norm.cdf(-eps / mu + mu / 2) - second)


def integral_delta(mu: float, eps: float) -> float:
    """Independent route: ``delta = E_Q[(1 - e^{eps - L})_+]`` with ``L ~ N(mu^2/2, mu^2)``.

    With ``L = eps + t`` and ``x0 = (eps - mu^2/2) / mu`` the density factors as
    ``phi(x0) exp(-x0 t / mu - t^2 / (2 mu^2)) / mu``; the integral of the bounded remainder
    is done by quadrature.
    """
    x0 = (eps - mu**2 / 2) / mu

    def integrand(t: float) -> float:
        return -np.expm1(-t) * np.exp(-x0 * t / mu - t * t / (2 * mu * mu))

    value, _ = integrate.quad(integrand, 0, np.inf, epsabs=0, epsrel=1e-12, limit=200)
    return float(stats.norm.pdf(x0) / mu * value)


def test_known_value() -> None:
    # 1-GDP at eps = 1: Phi(-1/2) - e Phi(-3/2)
    assert mu_to_delta(1.0, 1.0) == pytest.approx(0.126936737506644, rel=1e-12)


@FAST
@given(mu=st.floats(0.05, 6.0), eps=st.floats(0.0, 10.0))
def test_matches_textbook_formula_where_it_is_well_conditioned(mu: float, eps: float) -> None:
    want = textbook_delta(mu, eps)
    assume(want > 1e-6)
    assert mu_to_delta(mu, eps) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize(("mu", "eps"), [(0.5, 5.0), (1.0, 20.0), (1.0, 35.0), (2.0, 60.0),
                                         (0.2, 3.0), (4.0, 1.0)])
def test_matches_an_independent_integral_in_the_tails(mu: float, eps: float) -> None:
    got = mu_to_delta(mu, eps)
    want = integral_delta(mu, eps)
    assert 0 < got < 1e-3 or mu == 4.0
    assert got == pytest.approx(want, rel=1e-8)


def test_large_eps_where_the_textbook_form_overflows() -> None:
    mu, eps = 30.0, 800.0  # e^eps overflows; delta ~ 1e-31 is perfectly representable
    good = mu_to_delta(mu, eps)
    assert 0 < good < 1e-20
    assert good == pytest.approx(integral_delta(mu, eps), rel=1e-8)
    assert not np.isfinite(textbook_delta(mu, eps)) or textbook_delta(mu, eps) <= 0


@pytest.mark.parametrize(("mu", "eps"), [(0.5, 0.3), (1.0, 1.0), (2.0, 0.5), (3.0, 4.0)])
def test_delta_is_the_hockey_stick_of_the_gaussian_curve(mu: float, eps: float) -> None:
    """``delta(eps) = max_alpha 1 - e^eps alpha - G_mu(alpha)`` (the dual of the curve)."""
    alpha = stats.norm.sf(np.linspace(-9, 9, 400_001))
    dual = np.max(1 - np.exp(eps) * alpha - gaussian_tradeoff(mu)(alpha))
    assert mu_to_delta(mu, eps) == pytest.approx(dual, rel=1e-6)


@FAST
@given(mu=st.floats(0.05, 8.0), eps=st.floats(0.0, 30.0))
def test_round_trips(mu: float, eps: float) -> None:
    delta = mu_to_delta(mu, eps)
    assume(1e-250 < delta < 1 - 1e-6)
    assert delta_to_eps(mu, delta) == pytest.approx(eps, rel=1e-7, abs=1e-9)
    assert eps_delta_to_mu(eps, delta) == pytest.approx(mu, rel=1e-7)


@FAST
@given(mu=st.floats(0.05, 8.0), eps=st.floats(0.0, 30.0), bump=st.floats(1e-3, 2.0))
def test_monotone_in_eps_and_mu(mu: float, eps: float, bump: float) -> None:
    delta = mu_to_delta(mu, eps)
    assume(1e-250 < delta < 1 - 1e-9)
    assert mu_to_delta(mu, eps + bump) < delta  # decreasing in eps
    assert mu_to_delta(mu + bump, eps) > delta  # increasing in mu


def test_vectorised_and_scalar_outputs() -> None:
    mus = np.array([0.5, 1.0, 2.0])[:, None]
    eps = np.array([0.0, 1.0, 3.0, 8.0])
    table = mu_to_delta(mus, eps)
    assert table.shape == (3, 4)
    assert np.all(np.diff(table, axis=1) < 0)
    assert np.all(np.diff(table, axis=0) > 0)
    assert isinstance(mu_to_delta(1.0, 1.0), float)
    back = delta_to_eps(mus, table[:, 1:])
    np.testing.assert_allclose(back, np.broadcast_to(eps[1:], back.shape), rtol=1e-8)
    mu_back = eps_delta_to_mu(eps[1:], table[:, 1:])
    np.testing.assert_allclose(mu_back, np.broadcast_to(mus, mu_back.shape), rtol=1e-8)


def test_edge_values() -> None:
    assert mu_to_delta(0.0, 0.5) == 0.0
    assert mu_to_delta(np.inf, 3.0) == 1.0
    assert mu_to_delta(1.0, np.inf) == 0.0
    assert mu_to_delta(1.0, 0.0) == pytest.approx(2 * stats.norm.cdf(0.5) - 1)
    assert delta_to_eps(0.0, 1e-5) == 0.0
    assert delta_to_eps(np.inf, 1e-5) == np.inf
    assert delta_to_eps(1.0, 0.5) == 0.0  # 0.5 > delta(0) = 0.383
    assert eps_delta_to_mu(0.0, 0.3) == pytest.approx(2 * stats.norm.ppf(0.65))
    assert mu_to_delta(eps_delta_to_mu(0.0, 0.3), 0.0) == pytest.approx(0.3)
    assert eps_delta_to_mu(np.inf, 0.3) == np.inf


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mu_to_delta(-1.0, 1.0), "mu must be >= 0"),
        (lambda: mu_to_delta(np.nan, 1.0), "NaN"),
        (lambda: mu_to_delta(1.0, -0.1), "eps must be >= 0"),
        (lambda: mu_to_delta(1.0, [0.1, np.nan]), "NaN"),
        (lambda: delta_to_eps(1.0, 0.0), "strictly between 0 and 1"),
        (lambda: delta_to_eps(1.0, 1.0), "strictly between 0 and 1"),
        (lambda: delta_to_eps(-2.0, 0.1), "mu must be >= 0"),
        (lambda: eps_delta_to_mu(1.0, 1.5), "strictly between 0 and 1"),
        (lambda: eps_delta_to_mu(np.nan, 0.1), "NaN"),
        (lambda: eps_delta_to_mu(-1.0, 0.1), "eps must be >= 0"),
        (lambda: mu_to_delta("abc", 1.0), "numeric"),
    ],
)
def test_errors(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
