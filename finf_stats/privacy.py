"""Conversions between Gaussian influence ``mu`` and ``(epsilon, delta)`` (METHOD §3.9).

If a training algorithm is ``mu``-GDP, every single point has ``|mu_S| <= mu``. ``mu``-GDP is
equivalent to ``(epsilon, delta(epsilon))``-DP for every ``epsilon >= 0`` with (Dong, Roth &
Su 2022, Corollary 2.13)

.. math::

    \\delta(\\varepsilon) = \\Phi\\Bigl(-\\frac{\\varepsilon}{\\mu} + \\frac{\\mu}{2}\\Bigr)
        - e^{\\varepsilon}\\,\\Phi\\Bigl(-\\frac{\\varepsilon}{\\mu} - \\frac{\\mu}{2}\\Bigr),

decreasing in ``epsilon`` (from ``delta(0) = 2 Phi(mu/2) - 1`` to 0) and increasing in ``mu``
(from 0 at ``mu = 0`` to 1 as ``mu -> inf``).

Numerics: with ``x_a = epsilon/mu - mu/2`` and ``x_b = epsilon/mu + mu/2`` one has
``x_b^2 - x_a^2 = 2 epsilon`` exactly, so writing ``Phi(-x) = erfcx(x/√2) e^{-x^2/2} / 2``,

.. math::

    \\delta = \\Phi(-x_a)\\Bigl(1 - \\frac{\\mathrm{erfcx}(x_b/\\sqrt2)}
                                     {\\mathrm{erfcx}(x_a/\\sqrt2)}\\Bigr)

without the cancellation between two tiny terms (or the overflow of ``e^epsilon``) of the
textbook form; ``log delta`` stays accurate where ``delta`` itself underflows, and the
inverses are found by ``brentq`` on ``log delta``.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special, stats

ArrayLike = np.ndarray | float | list[float]

_SQRT2 = np.sqrt(2.0)


def mu_to_delta(mu: ArrayLike, eps: ArrayLike) -> np.ndarray | float:
    """``delta(epsilon)`` of ``mu``-GDP; broadcasts ``mu`` against ``eps``.

    Parameters
    ----------
    mu
        ``mu >= 0`` (``inf`` allowed: ``delta = 1``; ``0``: ``delta = 0``).
    eps
        ``epsilon >= 0`` (``inf`` allowed: ``delta = 0`` for finite ``mu``).

    Returns
    -------
    float or ndarray
        ``delta`` in ``[0, 1]``; a float when both inputs are scalars.

    Raises
    ------
    ValueError
        NaN, ``mu < 0`` or ``eps < 0``.
    """
    m, e = _check_mu(mu), _check_eps(eps)
    m, e = np.broadcast_arrays(m, e)
    out = np.exp(_log_delta(m, e))
    return _scalar_or_array(out)


def delta_to_eps(mu: ArrayLike, delta: ArrayLike) -> np.ndarray | float:
    """Smallest ``epsilon >= 0`` with ``delta_mu(epsilon) <= delta``; broadcasts.

    ``0`` when ``delta >= delta_mu(0) = 2 Phi(mu/2) - 1`` (always for ``mu = 0``), ``inf``
    for ``mu = inf``.

    Raises
    ------
    ValueError
        NaN, ``mu < 0``, or ``delta`` outside the open interval ``(0, 1)``.
    """
    m, d = _check_mu(mu), _check_delta(delta)
    m, d = np.broadcast_arrays(m, d)
    out = np.vectorize(_eps_one, otypes=[float])(m, d)
    return _scalar_or_array(out)


def eps_delta_to_mu(eps: ArrayLike, delta: ArrayLike) -> np.ndarray | float:
    """The ``mu`` with ``delta_mu(epsilon) = delta``: the largest ``mu`` whose ``mu``-GDP
    implies ``(epsilon, delta)``-DP; broadcasts.

    For ``epsilon = 0`` the closed form ``mu = 2 Phi^{-1}((1 + delta)/2)``; ``epsilon = inf``
    gives ``inf``.

    Raises
    ------
    ValueError
        NaN, ``eps < 0``, or ``delta`` outside ``(0, 1)``.
    """
    e, d = _check_eps(eps), _check_delta(delta)
    e, d = np.broadcast_arrays(e, d)
    out = np.vectorize(_mu_one, otypes=[float])(e, d)
    return _scalar_or_array(out)


# ---------------------------------------------------------------------------- internals
def _as_float_array(values: ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric: {err}") from None
    if np.any(np.isnan(arr)):
        raise ValueError(f"{name} contains NaN")
    return arr


def _check_mu(mu: ArrayLike) -> np.ndarray:
    m = _as_float_array(mu, "mu")
    if np.any(m < 0):
        raise ValueError("mu must be >= 0 (GDP uses |mu|)")
    return m


def _check_eps(eps: ArrayLike) -> np.ndarray:
    e = _as_float_array(eps, "eps")
    if np.any(e < 0):
        raise ValueError("eps must be >= 0")
    return e


def _check_delta(delta: ArrayLike) -> np.ndarray:
    d = _as_float_array(delta, "delta")
    if np.any((d <= 0) | (d >= 1)):
        raise ValueError("delta must lie strictly between 0 and 1")
    return d


def _scalar_or_array(out: np.ndarray) -> np.ndarray | float:
    return float(out) if out.ndim == 0 else out


def _log_delta(mu: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """``log delta_mu(eps)`` elementwise for broadcast arrays; ``-inf`` where ``delta = 0``."""
    mu = np.asarray(mu, float)
    eps = np.asarray(eps, float)
    out = np.full(np.broadcast(mu, eps).shape, -np.inf)
    mu, eps = np.broadcast_arrays(mu, eps)
    out[np.isinf(mu) & np.isfinite(eps)] = 0.0
    regular = (mu > 0) & np.isfinite(mu) & np.isfinite(eps)
    m, e = mu[regular], eps[regular]
    xa = e / m - m / 2
    xb = e / m + m / 2
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        # erfcx form where erfcx(xa/√2) cannot overflow; there Phi(-xa) may be tiny
        ratio = special.erfcx(xb / _SQRT2) / special.erfcx(np.maximum(xa, -20.0) / _SQRT2)
        stable = special.log_ndtr(-xa) + np.log1p(-np.minimum(ratio, 1.0))
        # textbook form where xa < -20: Phi(-xa) = 1 to double precision, delta is not small
        direct = np.log(np.clip(special.ndtr(-xa) - np.exp(e + special.log_ndtr(-xb)),
                                1e-300, None))
    out[regular] = np.where(xa > -20.0, stable, direct)
    return out


def _eps_one(mu: float, delta: float) -> float:
    if mu == 0:
        return 0.0
    if np.isinf(mu):
        return np.inf
    target = np.log(delta)
    hi = mu * (mu / 2 + stats.norm.isf(delta))  # there Phi(-eps/mu + mu/2) = delta

    def gap(e: float) -> float:
        return float(_log_delta(np.array(mu), np.array(e))) - target

    if hi <= 0 or gap(0.0) <= 0:  # delta >= delta(0) = 2 Phi(mu/2) - 1
        return 0.0
    return float(optimize.brentq(gap, 0.0, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps))


def _mu_one(eps: float, delta: float) -> float:
    if np.isinf(eps):
        return np.inf
    if eps == 0:
        return float(2 * stats.norm.ppf((1 + delta) / 2))
    target = np.log(delta)
    z = stats.norm.isf(delta)
    lo = -z + np.sqrt(z * z + 2 * eps)  # there Phi(-eps/mu + mu/2) = delta > delta_mu(eps)

    def gap(m: float) -> float:
        return float(_log_delta(np.array(m), np.array(eps))) - target

    while gap(lo) >= 0:  # round-off at the bracket: step down (delta_mu increases in mu)
        lo /= 2
        if lo < 1e-300:
            return 0.0
    hi = max(2 * lo, 1.0)
    while gap(hi) <= 0:
        hi *= 2
        if hi > 1e12:
            raise ValueError(f"no mu reaches delta={delta} at eps={eps}")
    return float(optimize.brentq(gap, lo, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps))
