"""The analytic oracle: noisy full-batch gradient descent on linear regression.

With the squared loss, full batches (``batch_size=None``), Gaussian (or zero) initialisation
and Gaussian gradient noise, the recursion of the engine is linear-Gaussian. With the design
matrix :math:`\\tilde X` (intercept column included), weights :math:`w`, ``n`` slots and the
penalty mask :math:`P` (identity without the intercept entry),

.. math::

    A_w = \\tfrac1n \\tilde X^\\top \\mathrm{diag}(w) \\tilde X + \\lambda P, \\qquad
    c_w = \\tfrac1n \\tilde X^\\top (w \\odot y),

    \\theta_{t+1} = (I - \\eta_t A_w)\\theta_t + \\eta_t c_w - \\eta_t\\sigma\\xi_t,
    \\qquad \\theta_0 \\sim N(0, s_0^2 P),

so :math:`\\theta_T \\sim N(m_T, \\Sigma_T)` exactly, with

.. math::

    m_{t+1} = (I - \\eta_t A_w) m_t + \\eta_t c_w, \\qquad
    \\Sigma_{t+1} = (I - \\eta_t A_w)\\Sigma_t (I - \\eta_t A_w)^\\top + \\eta_t^2\\sigma^2 I,

and a linear prediction :math:`\\ell = x_*^\\top\\theta_T \\sim N(x_*^\\top m_T,
x_*^\\top\\Sigma_T x_*)`. For the laws ``P`` (weights ``w``) and ``Q`` (``S`` at weight 0)
the AUC is :math:`\\Phi(\\delta/\\sqrt{v_P + v_Q})` with :math:`\\delta = m_Q - m_P`, so the
estimand of the ``auc`` estimator (and of ``binormal`` with the RMS pooled sd) is

.. math::

    \\mu = \\frac{\\delta}{\\sqrt{(v_P + v_Q)/2}},

which is the exact Gaussian-influence ``mu`` when ``v_P = v_Q``; the ratio ``v_Q/v_P`` is
returned so that one can see how close to equal-variance the pair is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulations.engine import design_matrix
from simulations.recipes import Recipe


@dataclass(frozen=True)
class OracleInfluence:
    """Exact laws of the prediction with and without S, and the implied ``mu``."""

    mean_with: float
    var_with: float
    mean_without: float
    var_without: float

    @property
    def mu(self) -> float:
        return (self.mean_without - self.mean_with) / np.sqrt(
            (self.var_with + self.var_without) / 2)

    @property
    def variance_ratio(self) -> float:
        return self.var_without / self.var_with


def _check(recipe: Recipe, n: int) -> None:
    if recipe.model not in ("linear", "ridge"):
        raise ValueError("the oracle covers linear/ridge regression only")
    if recipe.batch_size is not None and recipe.batch_size < n:
        raise ValueError("the oracle covers full-batch gradient descent only (batch_size=None)")
    if recipe.init.kind == "uniform" and recipe.init.scale > 0:
        raise ValueError("the oracle needs a Gaussian or zero initialisation")


def prediction_law(recipe: Recipe, X: np.ndarray, y: np.ndarray, weights: np.ndarray,
                   x_star: np.ndarray) -> tuple[float, float]:
    """Exact mean and variance of :math:`x_*^\\top\\theta_T` (``x_star`` without intercept)."""
    Xa = design_matrix(X, recipe.fit_intercept)
    n, p = Xa.shape
    _check(recipe, n)
    w = np.asarray(weights, dtype=np.float64)
    mask = np.ones(p)
    if recipe.fit_intercept:
        mask[-1] = 0.0
    A = Xa.T @ (w[:, None] * Xa) / n + recipe.l2 * np.diag(mask)
    c = Xa.T @ (w * np.asarray(y, dtype=np.float64)) / n
    s0 = 0.0 if recipe.init.kind == "zeros" else recipe.init.scale
    m = np.zeros(p)
    S = s0 ** 2 * np.diag(mask)
    lrs = recipe.schedule.lrs(1, recipe.epochs)
    eye = np.eye(p)
    for eta in lrs:
        M = eye - eta * A
        m = M @ m + eta * c
        S = M @ S @ M.T + (eta * recipe.grad_noise) ** 2 * eye
    xs = design_matrix(np.asarray(x_star, dtype=np.float64)[None], recipe.fit_intercept)[0]
    return float(xs @ m), float(xs @ S @ xs)


def oracle_influence(recipe: Recipe, X: np.ndarray, y: np.ndarray, group: np.ndarray,
                     x_star: np.ndarray, base_weights: np.ndarray | None = None
                     ) -> OracleInfluence:
    """Exact laws of the prediction at ``x_star`` trained on ``D`` and on ``D \\ group``."""
    w = np.ones(len(y)) if base_weights is None else np.asarray(base_weights, dtype=float)
    w_without = w.copy()
    w_without[np.asarray(group)] = 0.0
    mp, vp = prediction_law(recipe, X, y, w, x_star)
    mq, vq = prediction_law(recipe, X, y, w_without, x_star)
    return OracleInfluence(mp, vp, mq, vq)
