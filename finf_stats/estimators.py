"""Estimators of the Gaussian influence ``mu`` from two samples.

Given samples ``X`` of the target statistic with S in the training set (H0, law P) and ``Y``
without it (H1, law Q), the project's fixed-direction tests "reject H0 when loss > tau" have

.. math::

    \\alpha(\\tau) = P(X > \\tau), \\qquad \\beta(\\tau) = Q(Y \\le \\tau), \\qquad
    \\mu_\\tau = \\Phi^{-1}(1 - \\alpha(\\tau)) - \\Phi^{-1}(\\beta(\\tau)),

and ``mu_tau = delta / sigma`` at every ``tau`` when ``P = N(m, s^2)`` and
``Q = N(m + delta, s^2)``. ``mu > 0``: removing S raises the loss (S helps the target).

Methods (all vectorised over candidates, rows of 2-D inputs):

``threshold-max``
    The paper's f-INE Stage 2: ``mu_tau`` of largest magnitude over thresholds, rates
    clipped into ``[1/(n+1), n/(n+1)]``. Biased away from 0 (a maximum); interval by the
    percentile bootstrap, p-value from its exact distribution-free null (Monte Carlo).
``binormal``
    ``(mean(Y) - mean(X)) / pooled sd`` (Cohen's d), the maximum-likelihood estimate under
    the equal-variance Gaussian model; exact interval by inverting the noncentral t
    (``interval="exact"``) or the normal approximation
    ``se^2 = 1/n_x + 1/n_y + d^2 / (2 (n_x + n_y - 2))`` (``"analytic"``); Student-t p-value.
``auc``
    ``sqrt(2) Phi^{-1}(AUC)`` with ``AUC = P(Y > X) + P(Y = X)/2`` (Mann–Whitney), since
    ``AUC = Phi(mu / sqrt 2)`` under the binormal model. Rank based, so invariant under
    increasing transforms. DeLong variance, delta method on the ``mu`` scale; Mann–Whitney
    (normal, tie-corrected) p-value.
``probit``
    Median of ``mu_tau`` over the central thresholds (both rates in [0.05, 0.95]); rank
    based; percentile-bootstrap interval; Monte-Carlo null p-value.

Every result also carries the Gaussian goodness-of-fit diagnostic: the slope of the probit
ROC over the central thresholds (geometric-mean regression of ``Phi^{-1}(beta)`` on
``Phi^{-1}(1-alpha)``; 1 for an equal-variance Gaussian trade-off, ``sigma_X/sigma_Y`` for
unequal variances) and the largest vertical gap between the empirical curve and
``Phi(Phi^{-1}(1-alpha) - mu_hat)``.

Perfectly separated samples (all ``Y`` above all ``X``, or below) give ``mu = +-inf`` for the
rank methods (``auc``, ``probit``) with a finite one-sided bound: the smallest ``mu`` under
which the binormal model produces complete separation with probability
``(1 - confidence)/2``; the p-value is the exact ``2 / C(n_x + n_y, n_x)``. ``threshold-max``
keeps the paper's clipped finite value with the same exact bound and p-value.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import integrate, optimize, special, stats
from scipy.optimize import elementwise

from finf_stats.results import InfluenceResult, InfluenceResults
from finf_stats.validation import SampleError, as_batch, check_confidence

METHODS = ("threshold-max", "binormal", "auc", "probit")
INTERVALS = {
    "threshold-max": ("bootstrap",),
    "binormal": ("exact", "analytic", "bootstrap"),
    "auc": ("delong", "bootstrap"),
    "probit": ("bootstrap",),
}
#: central window of the probit fit and of the slope diagnostic
CENTRAL_RATE = 0.05
_SQRT2 = float(np.sqrt(2.0))


# ---------------------------------------------------------------------------- sorted pooled
@dataclass
class _Pooled:
    """One sort of the pooled sample of each row, from which every statistic is read."""

    values: np.ndarray   # (m, N) sorted pooled values
    is_y: np.ndarray     # (m, N) True where the value came from Y
    start: np.ndarray    # (m, N) first position of the tie group of each position
    end: np.ndarray      # (m, N) last position of the tie group
    cum_x: np.ndarray    # (m, N) number of X at positions <= k
    cum_y: np.ndarray    # (m, N)
    n_x: int
    n_y: int


def _pool(X: np.ndarray, Y: np.ndarray) -> _Pooled:
    m = X.shape[0]
    n_x, n_y = X.shape[1], Y.shape[1]
    pooled = np.concatenate([X, Y], axis=1)
    # any order within a tie group gives the same counts (start/end mark the groups)
    order = np.argsort(pooled, axis=1)
    values = np.take_along_axis(pooled, order, axis=1)
    is_y = order >= n_x
    N = n_x + n_y
    pos = np.broadcast_to(np.arange(N), (m, N))
    new_group = np.ones((m, N), bool)
    new_group[:, 1:] = values[:, 1:] != values[:, :-1]
    start = np.maximum.accumulate(np.where(new_group, pos, 0), axis=1)
    last_in_group = np.ones((m, N), bool)
    last_in_group[:, :-1] = new_group[:, 1:]
    end = np.minimum.accumulate(np.where(last_in_group, pos, N)[:, ::-1], axis=1)[:, ::-1]
    cum_y = np.cumsum(is_y, axis=1, dtype=np.int64)
    cum_x = (pos + 1) - cum_y
    return _Pooled(values, is_y, start, end, cum_x, cum_y, n_x, n_y)


@functools.lru_cache(maxsize=256)
def _rate_tables(n_x: int, n_y: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``Phi^{-1}`` of every possible empirical rate, clipped (paper) and unclipped."""
    a = (n_x - np.arange(n_x + 1)) / n_x          # alpha when i values of X are <= tau
    b = np.arange(n_y + 1) / n_y                  # beta when j values of Y are <= tau
    z_alpha_clipped = special.ndtri(1 - np.clip(a, 1 / (n_x + 1), n_x / (n_x + 1)))
    z_beta_clipped = special.ndtri(np.clip(b, 1 / (n_y + 1), n_y / (n_y + 1)))
    with np.errstate(divide="ignore"):
        z_alpha = special.ndtri(1 - a)
        z_beta = special.ndtri(b)
    return z_alpha_clipped, z_beta_clipped, z_alpha, z_beta


@dataclass
class _Thresholds:
    """Per-threshold counts: column 0 is tau = -inf, column k+1 is tau = k-th sorted value."""

    count_x: np.ndarray  # (m, N+1) number of X <= tau
    count_y: np.ndarray  # (m, N+1)
    valid: np.ndarray    # (m, N+1) thresholds at the end of a tie group (distinct tests)
    n_x: int
    n_y: int

    def mu_tau(self, clipped: bool = True) -> np.ndarray:
        za_c, zb_c, za, zb = _rate_tables(self.n_x, self.n_y)
        if clipped:
            return za_c[self.count_x] - zb_c[self.count_y]
        with np.errstate(invalid="ignore"):
            return za[self.count_x] - zb[self.count_y]

    def central(self) -> np.ndarray:
        a = 1 - self.count_x / self.n_x
        b = self.count_y / self.n_y
        w = CENTRAL_RATE
        return self.valid & (a >= w) & (a <= 1 - w) & (b >= w) & (b <= 1 - w)

    def interior(self) -> np.ndarray:
        return (self.valid & (self.count_x > 0) & (self.count_x < self.n_x)
                & (self.count_y > 0) & (self.count_y < self.n_y))


def _thresholds(p: _Pooled) -> _Thresholds:
    m, N = p.values.shape
    zeros = np.zeros((m, 1), np.int64)
    pos = np.arange(N)
    valid = np.concatenate([np.ones((m, 1), bool), p.end == pos], axis=1)
    return _Thresholds(np.concatenate([zeros, p.cum_x], axis=1),
                       np.concatenate([zeros, p.cum_y], axis=1), valid, p.n_x, p.n_y)


# ---------------------------------------------------------------------------- statistics
def _threshold_max(t: _Thresholds) -> np.ndarray:
    mu = np.where(t.valid, t.mu_tau(clipped=True), 0.0)
    idx = np.argmax(np.abs(mu), axis=1)
    return np.take_along_axis(mu, idx[:, None], axis=1)[:, 0]


def _probit(t: _Thresholds) -> np.ndarray:
    """Median ``mu_tau`` over central thresholds; where a row has none, over the interior
    ones (both rates strictly inside (0, 1)); failing that (tiny samples with ties), over every
    non-trivial threshold with the paper's clipped rates."""
    mu_tau = t.mu_tau(clipped=False)
    mask = t.central()
    fallback = ~mask.any(axis=1)
    if fallback.any():
        mask = mask.copy()
        mask[fallback] = t.interior()[fallback]
    last = ~mask.any(axis=1)
    if last.any():
        nontrivial = t.valid & ~((t.count_x == 0) & (t.count_y == 0)) & ~(
            (t.count_x == t.n_x) & (t.count_y == t.n_y))
        mask[last] = nontrivial[last]
        mu_tau = np.where(last[:, None], t.mu_tau(clipped=True), mu_tau)
    # a row without any non-trivial threshold has one value in both samples (possible only in
    # bootstrap resamples; the inputs themselves are rejected): no test separates them, mu = 0
    est = np.zeros(mask.shape[0])
    has = mask.any(axis=1)
    if has.any():
        est[has] = np.nanmedian(np.where(mask[has], mu_tau[has], np.nan), axis=1)
    return est


def _auc_components(p: _Pooled) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUC = P(Y > X) + P(Y = X)/2, its DeLong variance and the Mann–Whitney tie term.

    For each Y_j the placement ``V01_j = (#X < Y_j + #X = Y_j / 2) / n_x``, for each X_i
    ``V10_i = (#Y > X_i + #Y = X_i / 2) / n_y``; ``AUC = mean V01`` and
    ``Var(AUC) = var(V10)/n_x + var(V01)/n_y`` (DeLong et al. 1988).
    """
    n_x, n_y = p.n_x, p.n_y
    m, N = p.values.shape
    cx = np.concatenate([np.zeros((m, 1), np.int64), p.cum_x], axis=1)  # X strictly before k
    cy = np.concatenate([np.zeros((m, 1), np.int64), p.cum_y], axis=1)
    x_below = np.take_along_axis(cx, p.start, axis=1)
    x_tied = np.take_along_axis(cx, p.end + 1, axis=1) - x_below
    y_below = np.take_along_axis(cy, p.start, axis=1)
    y_tied = np.take_along_axis(cy, p.end + 1, axis=1) - y_below
    v01 = (x_below + 0.5 * x_tied) / n_x            # meaningful at Y positions
    v10 = 1.0 - (y_below + 0.5 * y_tied) / n_y      # meaningful at X positions
    is_y = p.is_y
    auc = np.sum(np.where(is_y, v01, 0.0), axis=1) / n_y
    mean10 = np.sum(np.where(is_y, 0.0, v10), axis=1) / n_x
    s01 = np.sum(np.where(is_y, (v01 - auc[:, None]) ** 2, 0.0), axis=1) / (n_y - 1)
    s10 = np.sum(np.where(is_y, 0.0, (v10 - mean10[:, None]) ** 2), axis=1) / (n_x - 1)
    variance = s10 / n_x + s01 / n_y
    size = (p.end - p.start + 1).astype(float)
    tie_term = np.sum(size**2 - 1.0, axis=1)  # = sum over tie groups of t^3 - t
    return auc, variance, tie_term


def _separation(p: _Pooled) -> np.ndarray:
    """+1 where every Y exceeds every X, -1 where every Y is below, else 0."""
    above = p.cum_x[:, p.n_x - 1] == p.n_x  # the first n_x sorted values are all X ...
    above &= p.values[:, p.n_x - 1] < p.values[:, p.n_x] if p.n_y else above
    below = p.cum_y[:, p.n_y - 1] == p.n_y
    below &= p.values[:, p.n_y - 1] < p.values[:, p.n_y]
    return above.astype(int) - below.astype(int)


def _probit_slope(t: _Thresholds) -> np.ndarray:
    za, zb = _rate_tables(t.n_x, t.n_y)[2:]
    mask = t.central()
    x = np.where(mask, za[t.count_x], 0.0)
    y = np.where(mask, zb[t.count_y], 0.0)
    k = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = x.sum(1) / k, y.sum(1) / k
        vx = np.where(mask, (x - mx[:, None]) ** 2, 0).sum(1)
        vy = np.where(mask, (y - my[:, None]) ** 2, 0).sum(1)
        slope = np.sqrt(vy / vx)
    return np.where((k >= 2) & (vx > 0), slope, np.nan)


def _max_gap(t: _Thresholds, mu: np.ndarray) -> np.ndarray:
    za = _rate_tables(t.n_x, t.n_y)[2]
    beta = t.count_y / t.n_y
    with np.errstate(invalid="ignore"):
        curve = special.ndtr(za[t.count_x] - mu[:, None])
    curve = np.where(np.isnan(curve), np.where(mu[:, None] > 0, 0.0, 1.0), curve)
    return np.max(np.where(t.valid, np.abs(beta - curve), 0.0), axis=1)


# ---------------------------------------------------------------------------- null and bounds
def _rank_statistic(method: str, t: _Thresholds) -> np.ndarray:
    return _threshold_max(t) if method == "threshold-max" else _probit(t)


@functools.lru_cache(maxsize=64)
def _null_distribution(method: str, n_x: int, n_y: int, n_null: int, seed: int) -> np.ndarray:
    """Sorted |statistic| under P = Q: rank statistics are distribution-free, so uniform
    samples give their exact null law (up to Monte-Carlo error)."""
    rng = np.random.default_rng([seed, n_x, n_y])
    out = []
    block = max(1, 4_000_000 // (n_x + n_y))
    for lo in range(0, n_null, block):
        rows = min(block, n_null - lo)
        p = _pool(rng.random((rows, n_x)), rng.random((rows, n_y)))
        out.append(np.abs(_rank_statistic(method, _thresholds(p))))
    return np.sort(np.concatenate(out))


def _null_p_value(method: str, stat: np.ndarray, n_x: int, n_y: int, n_null: int,
                  seed: int) -> np.ndarray:
    null = _null_distribution(method, n_x, n_y, n_null, seed)
    exceed = n_null - np.searchsorted(null, np.abs(stat) * (1 - 1e-12), side="left")
    return (1.0 + exceed) / (n_null + 1.0)


@functools.lru_cache(maxsize=256)
def separation_lower_bound(n_x: int, n_y: int, confidence: float) -> float:
    """Smallest ``mu`` with ``P_mu(min Y > max X) = (1 - confidence)/2`` under the binormal model.

    ``P_mu(min Y > max X) = int n_x phi(x) Phi(x)^(n_x-1) Phi(mu - x)^(n_y) dx`` increases
    in ``mu``; the root is the one-sided lower confidence bound for ``mu`` after observing
    complete separation (the event is rank based, so the bound holds for any increasing
    transform of Gaussian samples).
    """
    target = (1 - confidence) / 2

    def prob(mu: float) -> float:
        def integrand(x: float) -> float:
            return float(np.exp(np.log(n_x) + stats.norm.logpdf(x)
                                + (n_x - 1) * special.log_ndtr(x)
                                + n_y * special.log_ndtr(mu - x)))
        return integrate.quad(integrand, -12, 12 + max(mu, 0), limit=200, points=[0, mu])[0]

    lo, hi = -10.0, 1.0
    while prob(hi) < target:
        hi *= 2
    return float(optimize.brentq(lambda m: prob(m) - target, lo, hi, xtol=1e-6))


def _separated_p_value(n_x: int, n_y: int) -> float:
    return float(min(1.0, 2.0 / special.comb(n_x + n_y, n_x, exact=False)))


# ---------------------------------------------------------------------------- intervals
def _binormal_parts(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_x, n_y = X.shape[1], Y.shape[1]
    diff = Y.mean(1) - X.mean(1)
    pooled = ((n_x - 1) * X.var(1, ddof=1) + (n_y - 1) * Y.var(1, ddof=1)) / (n_x + n_y - 2)
    sd = np.sqrt(pooled)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(sd > 0, diff / sd, np.sign(diff) * np.inf)
    return d, sd


def _nct_interval(d: np.ndarray, n_x: int, n_y: int, confidence: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Invert the noncentral t: ``t = d / c ~ nct(n_x + n_y - 2, mu / c)``.

    Here ``c = sqrt(1/n_x + 1/n_y)``; the interval is exact under the equal-variance model.
    """
    c = np.sqrt(1 / n_x + 1 / n_y)
    df = n_x + n_y - 2
    t = d / c
    tail = (1 - confidence) / 2
    spread = 8 * np.sqrt(1 + t**2 / (2 * df)) + 1

    def cdf_minus(lam: np.ndarray, tt: np.ndarray, p: float) -> np.ndarray:
        value = stats.nct.cdf(tt, df, lam)
        # far in the tails scipy's nct may return NaN; the limits are 0 (lam >> t) and 1
        return np.where(np.isnan(value), np.where(lam > tt, 0.0, 1.0), value) - p

    def solve(p: float) -> np.ndarray:
        res = elementwise.find_root(cdf_minus, (t - spread, t + spread), args=(t, p))
        if np.any(res.status != 0):
            bad = int(np.sum(res.status != 0))
            raise RuntimeError(f"noncentral-t inversion failed for {bad} candidate(s); "
                               "use interval='analytic'")
        return res.x

    return solve(1 - tail) * c, solve(tail) * c


def _bootstrap(method: str, X: np.ndarray, Y: np.ndarray, n_bootstrap: int, confidence: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap, resampling X and Y independently, vectorised over replicates."""
    m, n_x = X.shape
    n_y = Y.shape[1]
    tail = (1 - confidence) / 2
    rows_per_block = max(1, 3_000_000 // (n_bootstrap * (n_x + n_y)))
    low, high = np.empty(m), np.empty(m)
    for lo in range(0, m, rows_per_block):
        hi = min(m, lo + rows_per_block)
        r = hi - lo
        ix = rng.integers(0, n_x, size=(r, n_bootstrap, n_x))
        iy = rng.integers(0, n_y, size=(r, n_bootstrap, n_y))
        xb = np.take_along_axis(X[lo:hi, None, :], ix, axis=2).reshape(r * n_bootstrap, n_x)
        yb = np.take_along_axis(Y[lo:hi, None, :], iy, axis=2).reshape(r * n_bootstrap, n_y)
        if method == "binormal":
            stat = _binormal_parts(xb, yb)[0]
        else:
            pooled = _pool(xb, yb)
            stat = (_auc_mu(_auc_components(pooled)[0]) if method == "auc"
                    else _rank_statistic(method, _thresholds(pooled)))
        stat = stat.reshape(r, n_bootstrap)
        low[lo:hi] = np.quantile(stat, tail, axis=1, method="inverted_cdf")
        high[lo:hi] = np.quantile(stat, 1 - tail, axis=1, method="inverted_cdf")
    return low, high


def _auc_mu(auc: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return _SQRT2 * special.ndtri(auc)


# ---------------------------------------------------------------------------- the estimator
def influence_from_samples(
    with_s: object,
    without_s: object,
    method: str = "auc",
    confidence: float = 0.95,
    *,
    interval: str | None = None,
    n_bootstrap: int = 1000,
    n_null: int = 2000,
    seed: int = 0,
    block_size: int = 4096,
) -> InfluenceResult | InfluenceResults:
    """Estimate the signed Gaussian influence ``mu`` from samples with and without S.

    Parameters
    ----------
    with_s
        Target statistic of models trained on D (H0, law P): shape ``(n_with,)`` or
        ``(candidates, n_with)``. A 1-D array is shared by every candidate of ``without_s``.
    without_s
        Target statistic of models trained on D \\ S (H1, law Q): ``(n_without,)`` or
        ``(candidates, n_without)``.
    method
        ``"auc"`` (default; rank based, calibrated), ``"binormal"``, ``"probit"`` or
        ``"threshold-max"`` (the paper's).
    confidence
        Level of the two-sided interval.
    interval
        How the interval is made: ``"exact"`` (binormal default: noncentral t),
        ``"analytic"`` (binormal normal approximation, fastest), ``"delong"`` (auc default)
        or ``"bootstrap"`` (percentile; the only choice for threshold-max and probit).
    n_bootstrap
        Bootstrap replicates (threshold-max, probit, or ``interval="bootstrap"``).
    n_null
        Monte-Carlo draws of the distribution-free null of threshold-max and probit.
    seed
        Seed of the bootstrap and of the null simulation: same seed, same numbers.
    block_size
        Candidates processed at once (bounds the memory).

    Returns
    -------
    InfluenceResult or InfluenceResults
        One result for two 1-D samples, a batch result otherwise.

    Raises
    ------
    SampleError
        Non-numeric, NaN/inf, empty or one-element samples, mismatched batch shapes, or a
        candidate whose two samples are the same constant (no training randomness: ``mu`` is
        undefined).
    ValueError
        Unknown method or interval, or a confidence outside (0, 1).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    interval = interval or INTERVALS[method][0]
    if interval not in INTERVALS[method]:
        raise ValueError(f"interval {interval!r} is not available for {method}; choose one of "
                         f"{', '.join(INTERVALS[method])}")
    confidence = check_confidence(confidence)
    if int(n_bootstrap) < 100:
        raise ValueError(f"n_bootstrap must be at least 100, got {n_bootstrap}")
    if int(n_null) < 100:
        raise ValueError(f"n_null must be at least 100, got {n_null}")
    scalar = np.ndim(with_s) == 1 and np.ndim(without_s) == 1
    X = as_batch(with_s, "with_s")
    Y = as_batch(without_s, "without_s")
    if X.shape[0] != Y.shape[0]:
        if X.shape[0] == 1:
            X = np.broadcast_to(X, (Y.shape[0], X.shape[1]))
        elif Y.shape[0] == 1:
            Y = np.broadcast_to(Y, (X.shape[0], Y.shape[1]))
        else:
            raise SampleError(f"with_s has {X.shape[0]} candidates and without_s has "
                              f"{Y.shape[0]}; they must match (or one side must be 1-D)")
    _check_not_degenerate(X, Y)
    rng = np.random.default_rng(seed)
    parts = [
        _estimate_block(X[lo:lo + block_size], Y[lo:lo + block_size], method, interval,
                        confidence, n_bootstrap, n_null, seed, rng)
        for lo in range(0, X.shape[0], block_size)
    ]
    fields = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    m, n_x, n_y = X.shape[0], X.shape[1], Y.shape[1]
    batch = InfluenceResults(
        mu=fields["mu"], ci_low=fields["ci_low"], ci_high=fields["ci_high"],
        p_value=fields["p_value"], method=method, n_with=np.full(m, n_x),
        n_without=np.full(m, n_y), confidence=confidence,
        probit_slope=fields["probit_slope"], max_gap=fields["max_gap"],
    )
    return batch[0] if scalar else batch


def _check_not_degenerate(X: np.ndarray, Y: np.ndarray) -> None:
    const_x = X.min(1) == X.max(1)
    const_y = Y.min(1) == Y.max(1)
    same = const_x & const_y & (X[:, 0] == Y[:, 0])
    if same.any():
        rows = np.flatnonzero(same)
        shown = ", ".join(str(int(i)) for i in rows[:10]) + (" ..." if rows.size > 10 else "")
        raise SampleError(
            f"candidate(s) {shown}: with_s and without_s are the same constant "
            f"({X[rows[0], 0]!r}); the target does not vary over training randomness, so mu is "
            "undefined (P = Q = a point mass). Use a statistic that varies, or a recipe with "
            "training randomness."
        )


def _estimate_block(X: np.ndarray, Y: np.ndarray, method: str, interval: str, confidence: float,
                    n_bootstrap: int, n_null: int, seed: int, rng: np.random.Generator
                    ) -> dict[str, np.ndarray]:
    n_x, n_y = X.shape[1], Y.shape[1]
    pooled = _pool(X, Y)
    thresholds = _thresholds(pooled)
    separated = _separation(pooled)
    z = special.ndtri(0.5 + confidence / 2)

    if method == "binormal":
        mu, _ = _binormal_parts(X, Y)
        t = mu / np.sqrt(1 / n_x + 1 / n_y)
        p_value = 2 * stats.t.sf(np.abs(t), n_x + n_y - 2)
        finite = np.isfinite(mu)
        low, high = np.where(finite, 0.0, mu), np.where(finite, 0.0, mu)
        if interval == "bootstrap":
            low, high = _bootstrap(method, X, Y, n_bootstrap, confidence, rng)
        elif finite.any():
            if interval == "exact":
                lo_f, hi_f = _nct_interval(mu[finite], n_x, n_y, confidence)
            else:
                se = np.sqrt(1 / n_x + 1 / n_y + mu[finite] ** 2 / (2 * (n_x + n_y - 2)))
                lo_f, hi_f = mu[finite] - z * se, mu[finite] + z * se
            low[finite], high[finite] = lo_f, hi_f
        separated = np.where(finite, 0, separated)  # a finite d is the Gaussian MLE
    elif method == "auc":
        auc, variance, tie_term = _auc_components(pooled)
        mu = _auc_mu(auc)
        N = n_x + n_y
        var_u = n_x * n_y / 12.0 * ((N + 1) - tie_term / (N * (N - 1)))
        zu = (auc * n_x * n_y - n_x * n_y / 2.0) / np.sqrt(np.maximum(var_u, 1e-300))
        p_value = 2 * special.ndtr(-np.abs(zu))
        if interval == "bootstrap":
            low, high = _bootstrap(method, X, Y, n_bootstrap, confidence, rng)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                se = _SQRT2 * np.sqrt(variance) / stats.norm.pdf(special.ndtri(auc))
            low, high = mu - z * se, mu + z * se
    else:
        mu = _rank_statistic(method, thresholds)
        p_value = _null_p_value(method, mu, n_x, n_y, n_null, seed)
        low, high = _bootstrap(method, X, Y, n_bootstrap, confidence, rng)

    if separated.any():
        bound = separation_lower_bound(n_x, n_y, confidence)
        bound_down = -separation_lower_bound(n_y, n_x, confidence)
        up, down = separated > 0, separated < 0
        if method != "threshold-max":
            mu = np.where(up, np.inf, np.where(down, -np.inf, mu))
        low = np.where(up, bound, np.where(down, -np.inf, low))
        high = np.where(up, np.inf, np.where(down, bound_down, high))
        p_value = np.where(separated != 0, _separated_p_value(n_x, n_y), p_value)
    # an estimate always lies inside its own interval (percentile intervals of a biased
    # statistic need not contain it; say so by widening, never by hiding it)
    low, high = np.minimum(low, mu), np.maximum(high, mu)
    return {
        "mu": mu, "ci_low": low, "ci_high": high, "p_value": np.clip(p_value, 0.0, 1.0),
        "probit_slope": _probit_slope(thresholds), "max_gap": _max_gap(thresholds, mu),
    }
