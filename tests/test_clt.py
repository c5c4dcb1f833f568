"""Dong–Roth–Su CLT for compositions (METHOD §3.4), checked against exact composition and MC."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finf_stats.clt import clt_mu, functionals, kappa2, kappa3, kl_functional
from finf_stats.composition import compose
from finf_stats.tradeoff import TradeOff, empirical_tradeoff, gaussian_tradeoff

FAST = settings(max_examples=25, deadline=None)
CENTRAL = np.linspace(0.01, 0.99, 99)


def laplace_tradeoff(eps: float) -> TradeOff:
    """``T(Lap(0, b), Lap(theta, b))`` with ``eps = theta / b`` (Dong–Roth–Su, Example)."""

    def f(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, float)
        middle = np.exp(-eps) / (4 * np.maximum(a, 1e-300))
        return np.where(a < np.exp(-eps) / 2, 1 - np.exp(eps) * a,
                        np.where(a <= 0.5, middle, np.exp(-eps) * (1 - a)))

    return TradeOff(function=f, name=f"Lap_{eps:.3g}")


def laplace_log_ratio(x: np.ndarray, eps: float) -> np.ndarray:
    """``log dQ/dP`` for ``P = Lap(0, 1)``, ``Q = Lap(eps, 1)``: ``|x| - |x - eps|``.

    Written as a clip so that the two atoms ``±eps`` are exact (the textbook form rounds them
    differently under ``P`` and ``Q``, which an empirical curve then exploits).
    """
    return np.clip(2 * x - eps, -eps, eps)


# ----------------------------------------------------------------------------- functionals
@FAST
@given(mu=st.floats(0.01, 4.0))
def test_gaussian_functionals_closed_form(mu: float) -> None:
    g = gaussian_tradeoff(mu)
    assert kl_functional(g) == pytest.approx(mu**2 / 2, rel=1e-12)
    assert kappa2(g) == pytest.approx(mu**2 + mu**4 / 4, rel=1e-12)
    # the piecewise-linear route agrees with the closed forms (chords: slightly below)
    chords = functionals(TradeOff(function=g.function, name="closed form"))
    exact = functionals(g)
    for name in ("kl", "kappa2", "kappa3", "kappa3_central"):
        got, want = getattr(chords, name), getattr(exact, name)
        assert got == pytest.approx(want, rel=1e-5), name
        assert got <= want * (1 + 1e-9), name
    assert exact.kappa3_central == pytest.approx(2 * np.sqrt(2 / np.pi) * mu**3)


def test_gaussian_kappa3_is_the_folded_normal_moment() -> None:
    mu = 1.3
    z = np.linspace(-12, 12, 400_001)
    density = np.exp(-z**2 / 2) / np.sqrt(2 * np.pi)
    log_ratio = mu * z - mu**2 / 2  # L under P = N(0, 1)
    numeric = np.sum(np.abs(log_ratio) ** 3 * density) * (z[1] - z[0])
    assert kappa3(gaussian_tradeoff(mu)) == pytest.approx(numeric, rel=1e-8)


@FAST
@given(
    weights=st.lists(st.tuples(st.floats(0.05, 1.0), st.floats(0.05, 1.0)), min_size=2,
                     max_size=6)
)
def test_piecewise_linear_functionals_are_exact_sums(weights: list[tuple[float, float]]) -> None:
    p = np.array([w for w, _ in weights])
    q = np.array([v for _, v in weights])
    p, q = p / p.sum(), q / q.sum()
    order = np.argsort(-(q / p))
    alpha = np.concatenate([[0.0], np.cumsum(p[order])])
    beta = np.concatenate([[1.0], 1 - np.cumsum(q[order])])
    f = TradeOff.from_points(np.clip(alpha, 0, 1), np.clip(beta, 0, 1))
    log_ratio = np.log(q / p)
    kl = float(np.sum(p * np.log(p / q)))  # KL(P || Q)
    got = functionals(f)
    assert got.kl == pytest.approx(kl, rel=1e-9, abs=1e-12)
    assert got.kappa2 == pytest.approx(np.sum(p * log_ratio**2), rel=1e-9, abs=1e-12)
    assert got.kappa3 == pytest.approx(np.sum(p * np.abs(log_ratio) ** 3), rel=1e-9, abs=1e-12)
    assert got.kappa3_central == pytest.approx(np.sum(p * np.abs(log_ratio + kl) ** 3),
                                               rel=1e-9, abs=1e-12)


def test_flat_piece_makes_functionals_infinite() -> None:
    f = TradeOff.from_points([0.0, 0.5], [0.5, 0.0])
    assert kl_functional(f) == np.inf
    result = clt_mu(f, times=3)
    assert result.mu == np.inf
    assert not result.reliable


def test_identity_has_zero_functionals_and_zero_mu() -> None:
    identity = TradeOff.from_points([], [])
    assert functionals(identity).kl == 0.0
    assert clt_mu(identity, times=10).mu == 0.0


@pytest.mark.parametrize("eps", [0.05, 0.5, 1.0, 2.0])
def test_laplace_kl_closed_form(eps: float) -> None:
    # KL(Lap(0, 1) || Lap(eps, 1)) = eps + e^{-eps} - 1
    # (through 20001 chords of the closed form: relative error ~2e-6 at eps = 0.05)
    assert kl_functional(laplace_tradeoff(eps)) == pytest.approx(eps + np.exp(-eps) - 1,
                                                                 rel=1e-5)


# ----------------------------------------------------------------------------- clt_mu
@FAST
@given(mu=st.floats(0.05, 3.0), n=st.integers(1, 500))
def test_clt_is_exact_for_gaussian_steps(mu: float, n: int) -> None:
    result = clt_mu(gaussian_tradeoff(mu / np.sqrt(n)), times=n)
    assert result.mu == pytest.approx(mu, rel=1e-10)
    assert result.reliable
    assert result.mu_uncentred <= result.mu
    assert result.n_factors == n


def test_uncentred_form_converges_to_the_same_limit() -> None:
    gaps = [abs(clt_mu(gaussian_tradeoff(1 / np.sqrt(n)), times=n).mu_uncentred - 1)
            for n in (1, 10, 100, 1000)]
    assert all(b < a for a, b in zip(gaps, gaps[1:], strict=False))
    assert gaps[-1] < 1e-3


def test_heterogeneous_gaussians_and_multiplicities() -> None:
    result = clt_mu([gaussian_tradeoff(0.3), gaussian_tradeoff(0.4)], times=[4, 9])
    assert result.mu == pytest.approx(np.sqrt(4 * 0.09 + 9 * 0.16), rel=1e-12)
    listed = clt_mu([gaussian_tradeoff(0.3)] * 4 + [gaussian_tradeoff(0.4)] * 9)
    assert listed.mu == pytest.approx(result.mu, rel=1e-12)
    assert result.sum_kl == pytest.approx(listed.sum_kl)


def test_clt_argument_errors() -> None:
    with pytest.raises(ValueError, match="at least one"):
        clt_mu([])
    with pytest.raises(ValueError, match="positive integers"):
        clt_mu(gaussian_tradeoff(1.0), times=0)
    with pytest.raises(ValueError, match="values for"):
        clt_mu([gaussian_tradeoff(1.0)] * 2, times=[1, 2, 3])


def test_asymmetric_factor_is_flagged() -> None:
    # T(P, Q) for P = (0.5, 0.5), Q = (0.9, 0.1) is not symmetric
    f = TradeOff.from_points([0.0, 0.5, 1.0], [1.0, 0.1, 0.0])
    result = clt_mu(f, times=1000)
    assert not result.symmetric
    assert not result.reliable


# ----------------------------------------------------------------------------- Laplace steps
STEPS = (1, 4, 16, 64, 256)


@pytest.fixture(scope="module")
def laplace_runs() -> dict[int, tuple[TradeOff, float, object]]:
    runs = {}
    for n in STEPS:
        f = laplace_tradeoff(1 / np.sqrt(n))  # K and s stay of order 1
        result = clt_mu(f, times=n)
        runs[n] = (compose(f, times=n), result.mu, result)
    return runs


def test_clt_converges_to_the_numerical_composition(laplace_runs: dict) -> None:
    gaps = []
    for n in STEPS:
        composed, mu, _ = laplace_runs[n]
        composed.validate()
        gaps.append(composed.distance(gaussian_tradeoff(mu)))
    assert all(b < a for a, b in zip(gaps, gaps[1:], strict=False)), gaps
    assert gaps[0] > 0.05  # one Laplace step is far from Gaussian: CLT-only numbers are off
    assert gaps[-1] < 1e-3


def test_clt_reliability_flag_follows_berry_esseen(laplace_runs: dict) -> None:
    gammas = [laplace_runs[n][2].gamma for n in STEPS]
    assert all(b < a for a, b in zip(gammas, gammas[1:], strict=False))
    assert not laplace_runs[1][2].reliable
    assert laplace_runs[256][2].reliable
    # Theorem 3.4 holds: the composed curve lies within the gamma band of G_mu
    composed, mu, result = laplace_runs[64]
    g = result.gamma
    alpha = np.linspace(g, 1 - g, 200)
    inner = gaussian_tradeoff(mu)
    lower = inner(np.clip(alpha + g, 0, 1)) - g
    upper = inner(np.clip(alpha - g, 0, 1)) + g
    assert np.all(lower <= composed(alpha) + 1e-9)
    assert np.all(composed(alpha) <= upper + 1e-9)


@pytest.mark.parametrize("n", [1, 4, 16, 64])
def test_monte_carlo_matches_composition_and_clt(laplace_runs: dict, n: int) -> None:
    """Sum of per-step log-likelihood ratios, simulated under P and Q (fixed seed)."""
    eps = 1 / np.sqrt(n)
    rng = np.random.default_rng(20240 + n)
    size = 100_000
    under_p = laplace_log_ratio(rng.laplace(0.0, 1.0, (size, n)), eps).sum(axis=1)
    under_q = laplace_log_ratio(rng.laplace(eps, 1.0, (size, n)), eps).sum(axis=1)
    # the Neyman-Pearson tests reject for a large total log-likelihood ratio
    simulated = empirical_tradeoff(under_p, under_q, direction="greater")
    composed, mu, _ = laplace_runs[n]
    assert simulated.distance(composed, CENTRAL) < 0.01  # observed <= 0.005
    clt_gap = simulated.distance(gaussian_tradeoff(mu), CENTRAL)
    if n == 1:
        assert clt_gap > 0.05
    if n == 64:
        assert clt_gap < 0.01
