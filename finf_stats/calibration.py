"""Calibration of the estimators on samples of known influence (a simulation, seeded).

``P = N(0, 1)`` and ``Q = N(mu, 1)`` have ``T(P, Q) = G_mu`` exactly, so the coverage of each
estimator's nominal interval, its bias and the level of its test of ``mu = 0`` are measured
by drawing many pairs of samples at once (one batched call per setting).
"""

from __future__ import annotations

import numpy as np

from finf_stats.estimators import influence_from_samples


def gaussian_calibration(method: str, mu: float, n: int, repetitions: int = 400,
                         confidence: float = 0.95, seed: int = 0, **options) -> dict[str, float]:
    """Coverage, bias, rejection rate and mean width of ``method`` at true ``mu``.

    Draws ``repetitions`` independent pairs ``X ~ N(0,1)^n``, ``Y ~ N(mu,1)^n`` and estimates
    them in one batch. ``coverage`` is the fraction of intervals containing ``mu`` (with its
    binomial standard error ``coverage_se``); ``rejection_rate`` the fraction of p-values below
    ``1 - confidence`` (the level under ``mu = 0``, the power otherwise).
    """
    rng = np.random.default_rng([seed, n, int(round(mu * 1000))])
    X = rng.normal(0.0, 1.0, size=(repetitions, n))
    Y = rng.normal(mu, 1.0, size=(repetitions, n))
    res = influence_from_samples(X, Y, method=method, confidence=confidence, seed=seed,
                                 **options)
    covered = (res.ci_low <= mu) & (mu <= res.ci_high)
    finite = np.isfinite(res.mu)
    coverage = float(covered.mean())
    return {
        "method": method, "mu": float(mu), "n": int(n), "repetitions": int(repetitions),
        "coverage": coverage,
        "coverage_se": float(np.sqrt(coverage * (1 - coverage) / repetitions)),
        "bias": float(np.mean(res.mu[finite]) - mu) if finite.any() else float("nan"),
        "bias_se": float(np.std(res.mu[finite], ddof=1) / np.sqrt(finite.sum()))
        if finite.sum() > 1 else float("nan"),
        "rejection_rate": float(np.mean(res.p_value < 1 - confidence)),
        "mean_width": float(np.mean((res.ci_high - res.ci_low)[finite])) if finite.any()
        else float("nan"),
        "infinite_fraction": float(1 - finite.mean()),
    }
