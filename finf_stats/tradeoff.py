"""Trade-off functions: the objects f-influence is made of.

A trade-off function between two laws P (H0: trained on D) and Q (H1: trained on D \\ S) is

.. math::

    T(P, Q)(\\alpha) = \\inf\\{\\beta_\\phi : \\alpha_\\phi \\le \\alpha\\},

the smallest type-II error of any (randomised) test of level ``alpha``.  Every trade-off
function is convex, continuous, non-increasing and lies below the diagonal ``1 - alpha``.
The Gaussian family :math:`G_\\mu(\\alpha) = \\Phi(\\Phi^{-1}(1-\\alpha) - \\mu)` is the one
the project reports, through the single number ``mu``.

This module holds the :class:`TradeOff` type, the Gaussian curve and the empirical curve of
two samples (made valid by the lower convex envelope, as randomised tests allow).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from finf_stats.validation import as_sample

ArrayLike = np.ndarray | float | list[float]

#: The α grid used when a property has to be checked numerically.
DEFAULT_GRID = np.concatenate(
    [[0.0], np.logspace(-6, -2, 40), np.linspace(0.01, 0.99, 197), 1 - np.logspace(-2, -6, 40),
     [1.0]]
)


class InvalidTradeOffError(ValueError):
    """Raised when a curve violates a defining property of trade-off functions."""


@dataclass(frozen=True)
class TradeOff:
    """A trade-off function ``f: [0, 1] -> [0, 1]``.

    Parameters
    ----------
    function
        Vectorised callable mapping an array of type-I errors ``alpha`` to type-II errors.
    name
        A human-readable label (used in figures and reports).
    knots
        ``(alpha, beta)`` arrays when ``f`` is piecewise linear between these points (the
        empirical and numerically composed curves). ``None`` for closed forms.
    gaussian_mu
        ``|mu|`` when the curve is exactly ``G_mu``, else ``None``.

    Notes
    -----
    Build instances with :func:`gaussian_tradeoff`, :meth:`TradeOff.from_points`,
    :func:`empirical_tradeoff` or :func:`finf_stats.compose`; the constructor does not
    validate (call :meth:`validate`).
    """

    function: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    name: str = "f"
    knots: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    gaussian_mu: float | None = None

    def __call__(self, alpha: ArrayLike) -> np.ndarray:
        a = np.asarray(alpha, dtype=float)
        if np.any(~np.isfinite(a)) or np.any((a < 0) | (a > 1)):
            raise ValueError("alpha must lie in [0, 1] and be finite")
        return np.clip(np.asarray(self.function(a), dtype=float), 0.0, 1.0)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_points(cls, alpha: ArrayLike, beta: ArrayLike, name: str = "empirical") -> TradeOff:
        """The largest valid trade-off function below the points ``(alpha_i, beta_i)``.

        The points are joined with ``(0, 1)`` and ``(1, 0)`` (the trivial tests) and the lower
        convex envelope is taken: randomising between two tests achieves every point on the
        segment between them, so the envelope is what the tests achieve together.
        """
        a = np.asarray(alpha, dtype=float).ravel()
        b = np.asarray(beta, dtype=float).ravel()
        if a.shape != b.shape:
            raise ValueError(f"alpha and beta must have the same length, got {a.size} and {b.size}")
        if a.size and (not np.all(np.isfinite(a)) or not np.all(np.isfinite(b))):
            raise ValueError("alpha and beta must be finite")
        if a.size and (a.min() < 0 or a.max() > 1 or b.min() < 0 or b.max() > 1):
            raise ValueError("alpha and beta must lie in [0, 1]")
        a = np.concatenate([[0.0, 1.0], a])
        b = np.concatenate([[1.0, 0.0], b])
        ka, kb = lower_convex_envelope(a, b)
        return cls(
            function=lambda x, ka=ka, kb=kb: np.interp(x, ka, kb),
            name=name,
            knots=(ka, kb),
        )

    # ------------------------------------------------------------------ properties
    def validate(self, grid: ArrayLike | None = None, atol: float = 1e-9) -> None:
        """Check convexity, monotonicity and ``f(alpha) <= 1 - alpha`` on a grid.

        Raises
        ------
        InvalidTradeOffError
            Naming the first property that fails and where.
        """
        problems = self.violations(grid, atol)
        if problems:
            raise InvalidTradeOffError(
                f"{self.name} is not a trade-off function: " + "; ".join(problems)
            )

    def violations(self, grid: ArrayLike | None = None, atol: float = 1e-9) -> list[str]:
        """List the defining properties the curve violates on ``grid`` (empty if valid)."""
        x = np.unique(np.asarray(DEFAULT_GRID if grid is None else grid, dtype=float))
        if self.knots is not None:
            x = np.unique(np.concatenate([x, self.knots[0]]))
        y = self(x)
        problems = []
        if np.any(y > 1 - x + atol):
            i = int(np.argmax(y - (1 - x)))
            problems.append(f"above the diagonal at alpha={x[i]:.4g} (f={y[i]:.6g})")
        if np.any(np.diff(y) > atol):
            i = int(np.argmax(np.diff(y)))
            problems.append(f"increasing at alpha={x[i]:.4g}")
        slopes = np.diff(y) / np.diff(x)
        # a convex function has non-decreasing slopes; compare with a tolerance scaled to spacing
        tolerance = atol / np.minimum(np.diff(x)[1:], np.diff(x)[:-1]) + 1e-7 * np.abs(slopes[1:])
        if np.any(np.diff(slopes) < -tolerance):
            i = int(np.argmax(-(np.diff(slopes) + tolerance)))
            problems.append(f"not convex near alpha={x[i + 1]:.4g}")
        return problems

    def is_valid(self, grid: ArrayLike | None = None, atol: float = 1e-9) -> bool:
        """``True`` when :meth:`violations` finds nothing."""
        return not self.violations(grid, atol)

    def mu_profile(self, alpha: ArrayLike) -> np.ndarray:
        """``mu_alpha = Phi^{-1}(1 - alpha) - Phi^{-1}(f(alpha))``: constant iff ``f = G_mu``."""
        a = np.asarray(alpha, dtype=float)
        return stats.norm.isf(a) - stats.norm.ppf(self(a))

    def to_knots(self, n_points: int = 2001) -> tuple[np.ndarray, np.ndarray]:
        """Piecewise-linear knots ``(alpha, beta)`` representing the curve.

        Closed forms are sampled on a grid uniform in ``Phi^{-1}(1 - alpha)`` (dense in both
        tails, where compositions concentrate their mass).
        """
        if self.knots is not None:
            return self.knots
        z = np.linspace(-8.5, 8.5, n_points)
        a = np.concatenate([[0.0], stats.norm.sf(z)[::-1], [1.0]])
        a = np.unique(a)
        return lower_convex_envelope(a, self(a))

    def inverse(self) -> TradeOff:
        """``f^{-1}(alpha) = inf{t : f(t) <= alpha}``: for a trade-off function, its mirror."""
        if self.gaussian_mu is not None:
            return gaussian_tradeoff(self.gaussian_mu)
        a, b = self.to_knots()
        order = np.argsort(b, kind="stable")
        return TradeOff.from_points(b[order], a[order], name=f"{self.name}^-1")

    def distance(self, other: TradeOff, grid: ArrayLike | None = None) -> float:
        """Largest vertical gap ``max_alpha |f(alpha) - g(alpha)|`` on a grid."""
        x = np.asarray(DEFAULT_GRID if grid is None else grid, dtype=float)
        return float(np.max(np.abs(self(x) - other(x))))


def gaussian_tradeoff(mu: float) -> TradeOff:
    """The Gaussian trade-off ``G_mu(alpha) = Phi(Phi^{-1}(1 - alpha) - |mu|)``.

    ``G_mu = T(N(0, 1), N(mu, 1))``. The trade-off function depends on ``|mu|`` only (the
    best test may reject in either direction); the sign of ``mu`` is carried by the
    estimators, which test in the project's fixed direction. ``mu = inf`` gives the perfectly
    distinguishable curve ``f = 0``.
    """
    m = float(mu)
    if np.isnan(m):
        raise ValueError("mu must not be NaN")
    m = abs(m)
    if np.isinf(m):
        return TradeOff(function=lambda a: np.zeros_like(a), name="G_inf", gaussian_mu=np.inf)
    return TradeOff(
        function=lambda a, m=m: stats.norm.cdf(stats.norm.isf(a) - m),
        name=f"G_{m:.3g}",
        gaussian_mu=m,
    )


def signed_gaussian_curve(alpha: ArrayLike, mu: ArrayLike) -> np.ndarray:
    """The curve ``Phi(Phi^{-1}(1 - alpha) - mu)`` of the fixed-direction test, for signed ``mu``.

    For ``mu >= 0`` this is ``G_mu``; for ``mu < 0`` it lies above the diagonal (the test
    "reject when the loss is high" is then worse than chance). Broadcasts.
    """
    return stats.norm.cdf(stats.norm.isf(np.asarray(alpha, float)) - np.asarray(mu, float))


def threshold_rates(with_s: np.ndarray, without_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical ``(alpha_tau, beta_tau)`` of the tests "reject H0 when loss > tau".

    Thresholds run over every distinct pooled value and below the smallest one, so the
    returned arrays start at ``(1, 0)`` and end at ``(0, 1)``.
    """
    x = np.sort(np.asarray(with_s, float))
    y = np.sort(np.asarray(without_s, float))
    taus = np.concatenate([[-np.inf], np.unique(np.concatenate([x, y]))])
    alpha = 1.0 - np.searchsorted(x, taus, side="right") / x.size
    beta = np.searchsorted(y, taus, side="right") / y.size
    return alpha, beta


def empirical_tradeoff(
    with_s: ArrayLike, without_s: ArrayLike, direction: str = "both", name: str = "empirical"
) -> TradeOff:
    """Trade-off curve of threshold tests between two samples, made valid.

    Parameters
    ----------
    with_s, without_s
        Samples of the target statistic under H0 (trained on D) and H1 (on D \\ S).
    direction
        ``"greater"``: only the project's fixed-direction tests "reject when loss > tau"
        (for a negative influence the envelope is then the diagonal); ``"both"``: also
        "reject when loss < tau", the estimate of ``T(P, Q)`` over threshold tests.
    """
    x = as_sample(with_s, "with_s")
    y = as_sample(without_s, "without_s")
    alpha, beta = threshold_rates(x, y)
    if direction == "both":
        # the opposite test "reject when loss <= tau" has errors (1 - alpha, 1 - beta)
        alpha, beta = np.concatenate([alpha, 1 - alpha]), np.concatenate([beta, 1 - beta])
    elif direction != "greater":
        raise ValueError(f"unknown direction {direction!r}; choose 'both' or 'greater'")
    return TradeOff.from_points(alpha, beta, name=name)


def lower_convex_envelope(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the lower convex hull of the points ``(x_i, y_i)``, sorted by ``x``.

    For every ``x`` only the lowest ``y`` is kept. Collinear middle points are dropped.

    Notes
    -----
    Vectorised passes first delete, all at once, every vertex that is not strictly below the
    chord of its two neighbours (a run of such vertices is concave, so its chord lies below it
    and no hull vertex is lost); curves that are already nearly convex (composed and empirical
    curves) converge in a few passes. Whatever remains after a few passes goes through Andrew's
    monotone chain on the lower side.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    order = np.lexsort((y, x))
    x, y = x[order], y[order]
    keep = np.concatenate([[True], np.diff(x) > 0])
    x, y = x[keep], y[keep]
    for _ in range(8):
        if x.size < 3:
            return x, y
        cross = (x[1:-1] - x[:-2]) * (y[2:] - y[:-2]) - (y[1:-1] - y[:-2]) * (x[2:] - x[:-2])
        bad = cross <= 0
        if not bad.any():
            return x, y
        keep = np.concatenate([[True], ~bad, [True]])
        x, y = x[keep], y[keep]
    hull: list[int] = []
    for i in range(x.size):
        while len(hull) >= 2:
            j, k = hull[-2], hull[-1]
            cross_i = (x[k] - x[j]) * (y[i] - y[j]) - (y[k] - y[j]) * (x[i] - x[j])
            if cross_i <= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    idx = np.asarray(hull)
    return x[idx], y[idx]
