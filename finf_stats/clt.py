"""Central limit theorem for composed trade-off functions (Dong, Roth & Su 2022, §3.2).

For a trade-off function ``f`` with canonical pair ``P = U[0, 1]``, ``Q`` (density
``|f'(x)|``), the log-likelihood ratio is ``L(x) = log|f'(x)|`` and

.. math::

    \\mathrm{kl}(f) = -\\int_0^1 \\log|f'(x)|\\,dx = \\mathrm{KL}(P \\| Q), \\qquad
    \\kappa_2(f) = \\int_0^1 \\log^2|f'(x)|\\,dx, \\qquad
    \\kappa_3(f) = \\int_0^1 \\bigl|\\log|f'(x)|\\bigr|^3 dx,

and the centred third moment
``bar-kappa_3(f) = ∫ |log|f'(x)| + kl(f)|^3 dx``. Under ``P``, these are the mean (with a
minus sign), the second moment and the third absolute moments of ``L``.

Theorem 3.5 of Dong–Roth–Su (METHOD §3.4): for a triangular array of *symmetric* trade-off
functions with ``sum_i kl(f_ni) -> K``, ``max_i kl(f_ni) -> 0``, ``sum_i kappa_2(f_ni) -> s^2``
and ``sum_i kappa_3(f_ni) -> 0``, ``f_n1 ⊗ ... ⊗ f_nn -> G_{2K/s}`` uniformly. Its finite-``n``
companion, the Berry–Esseen Theorem 3.4, centres the second moment,

.. math::

    \\mu_n = \\frac{2\\sum_i \\mathrm{kl}(f_i)}
                  {\\sqrt{\\sum_i \\kappa_2(f_i) - \\sum_i \\mathrm{kl}(f_i)^2}}, \\qquad
    \\gamma_n = \\frac{0.56 \\sum_i \\bar\\kappa_3(f_i)}
                     {(\\sum_i \\kappa_2(f_i) - \\sum_i \\mathrm{kl}(f_i)^2)^{3/2}},

and bounds ``G_{mu_n}(α + γ_n) - γ_n <= f_1 ⊗ ... ⊗ f_n(α) <= G_{mu_n}(α - γ_n) + γ_n`` for
``α`` in ``[γ_n, 1 - γ_n]`` when ``γ_n < 1/2``. Under the conditions of Theorem 3.5,
``sum kl^2 <= max kl · sum kl -> 0``, so ``mu_n -> 2K/s``: the two agree in the limit. For
Gaussian factors ``mu_n`` is exact (``G_mu``: ``kl = mu^2/2``,
``kappa_2 = mu^2 + mu^4/4``, so ``kappa_2 - kl^2 = mu^2``), while the uncentred ``2K/s`` is
not; :func:`clt_mu` therefore reports ``mu_n`` as ``mu`` and the literal ``2K/sqrt(sum kappa_2)``
as ``mu_uncentred``. CLT numbers are optimistic for few steps: cross-check them with
:func:`finf_stats.composition.compose`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from finf_stats.composition import privacy_loss_atoms
from finf_stats.tradeoff import TradeOff

#: ``E|Z|^3`` for a standard normal ``Z``.
_ABS_THIRD_MOMENT = 2.0 * np.sqrt(2.0 / np.pi)
#: Berry–Esseen constant of Dong–Roth–Su Theorem 3.4.
_BERRY_ESSEEN = 0.56
#: Flat pieces narrower than this (in total) are taken for round-off, not for ``L = -inf``.
_FLAT_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Functionals:
    """``kl``, ``kappa_2``, ``kappa_3`` and the centred ``bar-kappa_3`` of one curve."""

    kl: float
    kappa2: float
    kappa3: float
    kappa3_central: float


@dataclass(frozen=True)
class CLTResult:
    """The Gaussian limit of a composition and the numbers behind it.

    Attributes
    ----------
    mu
        ``2 K / sqrt(sum kappa_2 - sum kl^2)`` (Berry–Esseen centring, exact for Gaussians).
    mu_uncentred
        ``2 K / sqrt(sum kappa_2)``, the literal ``2K/s`` of Theorem 3.5 at finite ``n``.
    sum_kl, sum_kappa2, sum_kl_squared, sum_kappa3, sum_kappa3_central, max_kl
        The sums (with multiplicities) entering the theorem.
    gamma
        Berry–Esseen error ``0.56 sum bar-kappa_3 / s^3`` (``s^2 = sum kappa_2 - sum kl^2``).
    n_factors
        Number of factors counted with multiplicity.
    symmetric
        Whether every factor is symmetric (``f^{-1} = f`` within ``1e-6``), as the theorem
        assumes.
    reliable
        Every factor is Gaussian (the CLT value is then exact), or ``gamma <= gamma_tol`` and
        every factor is symmetric: the CLT can be trusted to about ``gamma`` in the Lévy-type
        distance of Theorem 3.4. ``False`` is a warning: cross-check with ``compose``.
    """

    mu: float
    mu_uncentred: float
    sum_kl: float
    sum_kappa2: float
    sum_kl_squared: float
    sum_kappa3: float
    sum_kappa3_central: float
    max_kl: float
    gamma: float
    n_factors: int
    symmetric: bool
    reliable: bool

    def to_dict(self) -> dict:
        return asdict(self)


def functionals(f: TradeOff, n_knots: int = 20001) -> Functionals:
    """``kl``, ``kappa_2``, ``kappa_3`` and ``bar-kappa_3`` of a trade-off function.

    Piecewise-linear curves are integrated exactly, piece by piece: a piece of width ``Δα``
    and slope ``-e^L`` contributes ``-L Δα``, ``L^2 Δα``, ``|L|^3 Δα``; flat pieces
    (``L = -inf``) of total width above ``1e-12`` make all four infinite (narrower ones are
    round-off of the knots and are ignored), the atom at ``α = 0`` (zero
    ``P``-mass) contributes nothing. Gaussian curves use the closed forms of
    ``L ~ N(-mu^2/2, mu^2)``: ``kl = mu^2/2``, ``kappa_2 = mu^2 + mu^4/4``, ``kappa_3 =
    E|L|^3`` (folded normal), ``bar-kappa_3 = 2 sqrt(2/pi) mu^3``. Other closed forms go through
    the chords ``f.to_knots(n_knots)``, which slightly underestimate every functional.
    """
    if not isinstance(f, TradeOff):
        raise TypeError(f"expected a TradeOff, got {type(f).__name__}")
    if f.gaussian_mu is not None:
        mu = float(f.gaussian_mu)
        if np.isinf(mu):
            return Functionals(np.inf, np.inf, np.inf, np.inf)
        m, s = mu * mu / 2, mu  # |L| has the law of |N(m, s^2)|
        kappa3 = 0.0 if mu == 0 else float(
            (m**3 + 3 * m * s**2) * (1 - 2 * stats.norm.cdf(-m / s))
            + 2 * s * stats.norm.pdf(m / s) * (m**2 + 2 * s**2)
        )
        return Functionals(m, mu**2 + mu**4 / 4, kappa3, float(_ABS_THIRD_MOMENT * mu**3))
    atoms = privacy_loss_atoms(f, n_knots)
    if atoms.p_neg_inf > _FLAT_TOLERANCE:
        return Functionals(np.inf, np.inf, np.inf, np.inf)
    L, p = atoms.log_ratio, atoms.p
    kl = float(-np.sum(p * L))
    return Functionals(
        kl=kl,
        kappa2=float(np.sum(p * L**2)),
        kappa3=float(np.sum(p * np.abs(L) ** 3)),
        kappa3_central=float(np.sum(p * np.abs(L + kl) ** 3)),
    )


def kl_functional(f: TradeOff, n_knots: int = 20001) -> float:
    """``kl(f) = -∫_0^1 log|f'(x)| dx = KL(P || Q)`` (see :func:`functionals`)."""
    return functionals(f, n_knots).kl


def kappa2(f: TradeOff, n_knots: int = 20001) -> float:
    """``kappa_2(f) = ∫_0^1 log^2|f'(x)| dx`` (see :func:`functionals`)."""
    return functionals(f, n_knots).kappa2


def kappa3(f: TradeOff, n_knots: int = 20001) -> float:
    """``kappa_3(f) = ∫_0^1 |log|f'(x)||^3 dx`` (see :func:`functionals`)."""
    return functionals(f, n_knots).kappa3


def clt_mu(
    tradeoffs: TradeOff | Sequence[TradeOff],
    times: int | Sequence[int] | None = None,
    gamma_tol: float = 0.05,
    n_knots: int = 20001,
) -> CLTResult:
    """The Dong–Roth–Su CLT value ``mu`` of ``f_1^{⊗n_1} ⊗ ... ⊗ f_k^{⊗n_k}``.

    Parameters
    ----------
    tradeoffs
        One curve or a sequence of curves.
    times
        Multiplicities ``n_i`` (an int for all, or one per curve); default 1 each.
    gamma_tol
        Largest Berry–Esseen ``gamma`` for which the result is flagged ``reliable``.
    n_knots
        Chord resolution for closed forms other than Gaussian curves.

    Returns
    -------
    CLTResult
        ``mu = 2 sum kl / sqrt(sum kappa_2 - sum kl^2)`` with the sums, ``gamma`` and flags (see
        the module docstring for the theorem and why this centring). ``mu = 0`` when every
        factor is the identity ``1 - alpha``; ``mu = inf`` when some factor has infinite ``kl``
        (a flat piece: perfect distinguishability with positive probability).

    Raises
    ------
    ValueError
        Empty input, multiplicities that are not positive integers or of the wrong length.
    """
    fs = [tradeoffs] if isinstance(tradeoffs, TradeOff) else list(tradeoffs)
    if not fs:
        raise ValueError("clt_mu needs at least one trade-off function")
    if times is None:
        counts = np.ones(len(fs), dtype=np.int64)
    else:
        raw = np.atleast_1d(np.asarray(times))
        if raw.dtype.kind not in "iu" or np.any(raw < 1):
            raise ValueError(f"times must be positive integers, got {times!r}")
        counts = np.broadcast_to(raw, (len(fs),)) if raw.size == 1 else raw
        if counts.shape != (len(fs),):
            raise ValueError(f"times has {raw.size} values for {len(fs)} trade-off functions")
    if gamma_tol <= 0:
        raise ValueError("gamma_tol must be positive")
    fun = [functionals(f, n_knots) for f in fs]
    n = counts.astype(float)
    kl = np.array([x.kl for x in fun])
    k2 = np.array([x.kappa2 for x in fun])
    k3 = np.array([x.kappa3 for x in fun])
    k3c = np.array([x.kappa3_central for x in fun])
    symmetric = all(_is_symmetric(f, n_knots) for f in fs)
    sum_kl, sum_k2 = float(n @ kl), float(n @ k2)
    sum_kl2 = float(n @ kl**2)
    sum_k3, sum_k3c = float(n @ k3), float(n @ k3c)
    max_kl = float(kl.max())
    if not np.isfinite(sum_kl):
        mu = mu_unc = gamma = np.inf
    else:
        s2 = sum_k2 - sum_kl2
        if sum_kl <= 0 or s2 <= 0:
            mu = mu_unc = gamma = 0.0
        else:
            mu = 2 * sum_kl / np.sqrt(s2)
            mu_unc = 2 * sum_kl / np.sqrt(sum_k2)
            gamma = _BERRY_ESSEEN * sum_k3c / s2**1.5
    return CLTResult(
        mu=float(mu),
        mu_uncentred=float(mu_unc),
        sum_kl=sum_kl,
        sum_kappa2=sum_k2,
        sum_kl_squared=sum_kl2,
        sum_kappa3=sum_k3,
        sum_kappa3_central=sum_k3c,
        max_kl=max_kl,
        gamma=float(gamma),
        n_factors=int(counts.sum()),
        symmetric=symmetric,
        reliable=bool(
            all(f.gaussian_mu is not None for f in fs)
            or (np.isfinite(gamma) and gamma <= gamma_tol and symmetric)
        ),
    )


def _is_symmetric(f: TradeOff, n_knots: int) -> bool:
    if f.gaussian_mu is not None:
        return True
    curve = f if f.knots is not None else TradeOff.from_points(*f.to_knots(n_knots))
    return curve.distance(curve.inverse()) <= 1e-6
