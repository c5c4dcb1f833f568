"""Figures: the empirical trade-off curve against the fitted G_mu, and rankings by mu."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on these machines; figures are written to files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from finf_stats.estimators import influence_from_samples  # noqa: E402
from finf_stats.results import InfluenceResult, InfluenceResults  # noqa: E402
from finf_stats.tradeoff import signed_gaussian_curve, threshold_rates  # noqa: E402
from finf_stats.validation import as_sample  # noqa: E402


def plot_tradeoff(with_s: object, without_s: object, result: InfluenceResult | None = None,
                  ax: plt.Axes | None = None, title: str | None = None) -> plt.Figure:
    """The empirical curve of the tests "reject when loss > tau" with the fitted curve.

    Draws the empirical points ``(alpha_tau, beta_tau)``, the curve
    ``Phi(Phi^{-1}(1 - alpha) - mu_hat)`` (``G_mu`` for ``mu >= 0``; above the diagonal for
    a negative influence, since the fixed-direction test is then worse than chance) with the
    band spanned by the interval ends, and the diagonal ``1 - alpha`` (no influence).
    """
    x = as_sample(with_s, "with_s")
    y = as_sample(without_s, "without_s")
    if result is None:
        result = influence_from_samples(x, y)
    alpha, beta = threshold_rates(x, y)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.6, 4.4))
    else:
        fig = ax.figure
    grid = np.linspace(0, 1, 401)
    ax.plot(grid, 1 - grid, color="0.6", lw=1, ls=":", label="no influence (1 - α)")
    low = np.clip(result.ci_low, -8, 8)
    high = np.clip(result.ci_high, -8, 8)
    ax.fill_between(grid, signed_gaussian_curve(grid, low), signed_gaussian_curve(grid, high),
                    color="C0", alpha=0.18, lw=0,
                    label=f"{round(100 * result.confidence)}% band")
    ax.plot(grid, signed_gaussian_curve(grid, np.clip(result.mu, -8, 8)), color="C0", lw=2,
            label=f"fitted, μ = {result.mu:+.2f}")
    ax.step(alpha[::-1], beta[::-1], where="post", color="C3", lw=1.2,
            label=f"empirical (n = {x.size}, {y.size})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("type-I error α (reject 'trained on D')")
    ax.set_ylabel("type-II error β")
    ax.set_title(title or f"trade-off ({result.method}; p = {result.p_value:.2g})", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def plot_ranking(results: InfluenceResults, labels: list[str] | None = None,
                 ax: plt.Axes | None = None, top: int | None = None,
                 truth: np.ndarray | None = None) -> plt.Figure:
    """Candidates ranked by ``mu`` with their intervals (infinite ends drawn as arrows).

    ``top`` keeps the ``top`` candidates of largest ``|mu|``; ``truth`` (same length) adds a
    marker per candidate, e.g. the retraining ``mu`` against a one-run estimate.
    """
    n = len(results)
    if n == 0:
        raise ValueError("no results to plot")
    names = list(labels) if labels is not None else (
        list(results.labels) if results.labels is not None else [str(i) for i in range(n)])
    if len(names) != n:
        raise ValueError(f"{len(names)} labels for {n} results")
    mu = np.asarray(results.mu, float)
    order = np.argsort(-np.abs(np.nan_to_num(mu, posinf=1e300, neginf=-1e300)), kind="stable")
    if top is not None:
        order = order[:top]
    order = order[np.argsort(mu[order], kind="stable")]
    finite_ends = np.concatenate([results.ci_low[order], results.ci_high[order], mu[order]])
    finite_ends = finite_ends[np.isfinite(finite_ends)]
    span = (finite_ends.min(), finite_ends.max()) if finite_ends.size else (-1.0, 1.0)
    pad = 0.08 * (span[1] - span[0] + 1e-9)
    lo_lim, hi_lim = span[0] - pad, span[1] + pad
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, max(2.5, 0.22 * order.size + 1)))
    else:
        fig = ax.figure
    pos = np.arange(order.size)
    lo = np.clip(results.ci_low[order], lo_lim, hi_lim)
    hi = np.clip(results.ci_high[order], lo_lim, hi_lim)
    shown = np.clip(mu[order], lo_lim, hi_lim)
    significant = (results.ci_low[order] > 0) | (results.ci_high[order] < 0)
    colors = np.where(significant, "C3", "C0")
    ax.hlines(pos, lo, hi, colors=colors, lw=1.6)
    ax.scatter(shown, pos, c=colors, s=14, zorder=3, label="estimate (red: CI excludes 0)")
    if truth is not None:
        t = np.asarray(truth, float)
        if t.shape != (n,):
            raise ValueError(f"truth must have shape ({n},)")
        ax.scatter(np.clip(t[order], lo_lim, hi_lim), pos, marker="x", color="k", s=16,
                   zorder=4, label="truth")
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_yticks(pos)
    ax.set_yticklabels([names[i] for i in order], fontsize=7)
    ax.set_xlim(lo_lim, hi_lim)
    ax.set_xlabel(f"μ ({results.method}) with {round(100 * results.confidence)}% interval;"
                  " > 0: S helps the target")
    ax.legend(fontsize=7, loc="lower right")
    return fig
