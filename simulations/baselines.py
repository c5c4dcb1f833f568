r"""Baseline influence estimators for the convex models of the harness (METHOD §7).

Every model of :mod:`simulations.models` is linear in :math:`\theta\in\mathbb{R}^{p\times K}`
with predictor :math:`z = x^\top\theta`, so a per-example gradient is an outer product,
:math:`\nabla_\theta\,\mathrm{loss}(\theta; x, y) = x\,r^\top` with the residual
:math:`r = \partial\mathrm{loss}/\partial z`, and inner products of gradients factorise
("ghost" inner products, never materialising a gradient):

.. math::

    \langle x\,r^\top,\; x'\,r'^\top\rangle = (x^\top x')\,(r^\top r').

Sign convention (METHOD §2): every score here estimates the effect of *removing* the
candidate on the target loss, so a positive score means that S helps the target (a
proponent), as for :math:`\mu`.

* :func:`influence_function`: :math:`\frac1n \nabla\ell(\hat\theta)^\top H^{-1}
  \sum_{z\in S} w_z\nabla\mathrm{loss}(\hat\theta; z)` with the exact Hessian :math:`H` of the
  training objective (Koh & Liang 2017, removal form).
* :class:`TracInObserver`: TracIn (:math:`\sum_t \frac{\eta_t}{|B_t|}\sum_{z\in S\cap B_t} w_z
  \nabla\ell(\theta_t)^\top\nabla\mathrm{loss}(\theta_t; z)`, Pruthi et al. 2020) and TracInCP
  (every ``every_k``-th step, all candidates: :math:`\sum_c \eta_c\,\nabla\ell^\top
  \nabla\mathrm{loss}_z`), accumulated during training through the engine's observer hook.
* :func:`trak_scores`: TRAK (Park et al. 2023) with random-projection features of the
  model-output gradient of the final model(s), the :math:`(\Phi^\top\Phi)^{-1}` kernel and
  an ensemble average over models.
* :func:`loo_mean`: the mean over retrains of :math:`\ell(D\setminus S) - \ell(D)`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulations.models import loss_and_residual

# ----------------------------------------------------------------------------- gradients


def residuals(model: str, theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    r"""Residuals :math:`r_i = \partial\mathrm{loss}_i/\partial z` at ``theta``.

    ``theta`` ``(..., p, K)``, ``X`` ``(m, p)`` (intercept column included), ``y`` ``(m,)``;
    returns ``(..., m, K)``.
    """
    z = np.matmul(X, theta)
    return loss_and_residual(model, z, y)[1]


def residuals_from_logits(model: str, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    r"""Residuals :math:`\partial\mathrm{loss}/\partial z` from the linear predictor ``z``
    ``(..., m, K)`` and labels ``y`` ``(m,)`` (broadcast over the leading axes)."""
    return loss_and_residual(model, z, y)[1]


def per_example_gradients(model: str, theta: np.ndarray, X: np.ndarray,
                          y: np.ndarray) -> np.ndarray:
    """Explicit per-example gradients ``(m, p, K)`` of the loss at ``theta`` ``(p, K)``."""
    r = residuals(model, theta, X, y)
    return X[:, :, None] * r[:, None, :]


def ghost_dot(X_a: np.ndarray, R_a: np.ndarray, X_b: np.ndarray, R_b: np.ndarray) -> np.ndarray:
    r"""All inner products :math:`\langle x_i r_i^\top, x_j r_j^\top\rangle
    = (x_i^\top x_j)(r_i^\top r_j)`.

    ``X_a`` ``(m, p)``, ``R_a`` ``(..., m, K)``, ``X_b`` ``(n, p)``, ``R_b`` ``(..., n, K)``;
    returns ``(..., m, n)``.
    """
    return (X_a @ X_b.T) * np.matmul(R_a, np.swapaxes(R_b, -1, -2))


def target_gradient(model: str, theta: np.ndarray, X_t: np.ndarray, y_t: np.ndarray,
                    kind: str = "loss") -> np.ndarray:
    r"""Gradient of the target statistic, shape of ``theta``.

    ``kind="loss"``: :math:`\ell(\theta) = \frac1m\sum_j\mathrm{loss}(\theta; x_j, y_j)`
    (mean loss on the target points); ``kind="prediction"``: :math:`\ell(\theta) =
    \frac1m\sum_j x_j^\top\theta_{:,0}` (the mean linear prediction of output 0, the
    statistic of the harness's analytic oracle).
    """
    if kind == "prediction":
        g = np.zeros(theta.shape)
        g[..., :, 0] = X_t.mean(axis=0)
        return g
    if kind != "loss":
        raise ValueError(f"unknown target kind {kind!r}; use 'loss' or 'prediction'")
    r = residuals(model, theta, X_t, y_t)            # (..., m, K)
    return np.matmul(X_t.T, r) / X_t.shape[0]       # (..., p, K)


def target_value(model: str, theta: np.ndarray, X_t: np.ndarray, y_t: np.ndarray,
                 kind: str = "loss") -> np.ndarray:
    """The target statistic of :func:`target_gradient` at ``theta`` ``(..., p, K)``."""
    z = np.matmul(X_t, theta)
    if kind == "prediction":
        return z[..., 0].mean(axis=-1)
    return loss_and_residual(model, z, y_t)[0].mean(axis=-1)


def single_point_indices(candidates: np.ndarray, n: int) -> np.ndarray:
    """Single-point candidates as row indices, checked to lie in ``[0, n)``."""
    idx = np.asarray(candidates).astype(np.intp)
    bad = np.flatnonzero((idx < 0) | (idx >= n))
    if bad.size:
        raise ValueError(f"candidate {bad[0]} has an out-of-range index (n = {n})")
    return idx


def candidate_weights(groups: list[np.ndarray] | np.ndarray, n: int) -> np.ndarray:
    """Membership matrix ``(n_candidates, n)``: row ``s`` has 1 on the examples of S_s."""
    if isinstance(groups, np.ndarray) and groups.ndim == 1:  # single points: one scatter
        idx = single_point_indices(groups, n)
        A = np.zeros((idx.size, n))
        A[np.arange(idx.size), idx] = 1.0
        return A
    A = np.zeros((len(groups), n))
    for s, g in enumerate(groups):
        idx = np.atleast_1d(np.asarray(g, dtype=np.intp))
        if idx.size == 0 or idx.min() < 0 or idx.max() >= n:
            raise ValueError(f"candidate {s} has no or out-of-range indices (n = {n})")
        A[s, idx] = 1.0
    return A


# ----------------------------------------------------------------------------- Hessian / IF


def hessian(model: str, theta: np.ndarray, X: np.ndarray, y: np.ndarray, weights: np.ndarray,
            l2: float, fit_intercept: bool = True) -> np.ndarray:
    r"""Exact Hessian ``(pK, pK)`` of :math:`\frac1n\sum_i w_i\mathrm{loss}_i + \frac\lambda2
    \lVert\theta_\mathrm{w}\rVert^2` (the intercept row is not penalised), flattened in the
    order of ``theta.reshape(-1)``."""
    p, K = theta.shape
    n = X.shape[0]
    z = X @ theta
    if model in ("linear", "ridge"):
        A = np.ones((n, 1, 1))
    elif model == "logistic":
        s = 0.5 * (1 + np.tanh(0.5 * z[:, 0]))
        A = (s * (1 - s))[:, None, None]
    elif model == "multinomial":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        P = e / e.sum(axis=1, keepdims=True)
        A = np.einsum("ik,kl->ikl", P, np.eye(K)) - P[:, :, None] * P[:, None, :]
    else:
        raise ValueError(f"unknown model family {model!r}")
    H = np.einsum("i,ia,ib,ikl->akbl", weights / n, X, X, A).reshape(p * K, p * K)
    reg = np.full(p, l2)
    if fit_intercept:
        reg[-1] = 0.0
    H += np.diag(np.repeat(reg, K))
    return H


def influence_function(model: str, theta: np.ndarray, X: np.ndarray, y: np.ndarray,
                       X_t: np.ndarray, y_t: np.ndarray, candidates: np.ndarray, *,
                       weights: np.ndarray | None = None, l2: float = 0.0,
                       fit_intercept: bool = True, damping: float = 0.0) -> np.ndarray:
    r"""Influence-function estimate of removing each candidate, at the final model(s).

    .. math::

        \mathrm{IF}(S) = \frac1n\,\nabla\ell(\hat\theta)^\top (H + \delta I)^{-1}
                         \sum_{z\in S} w_z\,\nabla\mathrm{loss}(\hat\theta; z)

    Parameters
    ----------
    theta
        Final parameters ``(p, K)`` or a stack ``(M, p, K)`` (one score row per model).
    X, y, weights
        The training set (``X`` with the intercept column) and its weights.
    X_t, y_t
        The target points (the target is their mean loss).
    candidates
        ``(n_candidates, n)`` membership matrix (:func:`candidate_weights`).
    damping
        :math:`\delta`, added to the diagonal (0: exact Hessian).

    Returns
    -------
    numpy.ndarray
        ``(n_candidates,)`` or ``(M, n_candidates)``.
    """
    single = theta.ndim == 2
    thetas = theta[None] if single else theta
    n = X.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    out = []
    for th in thetas:
        H = hessian(model, th, X, y, w, l2, fit_intercept) + damping * np.eye(th.size)
        g = target_gradient(model, th, X_t, y_t).reshape(-1)
        v = np.linalg.solve(H, g).reshape(th.shape)          # H^{-1} g, (p, K)
        r = residuals(model, th, X, y)                       # (n, K)
        # grad loss_z . v = x_z^T v r_z
        per = np.einsum("ik,ik->i", X @ v, r) * w / n        # (n,)
        out.append(candidates @ per)
    res = np.asarray(out)
    return res[0] if single else res


# ----------------------------------------------------------------------------- TracIn


class TracInObserver:
    r"""TracIn and TracInCP accumulated during training (engine observer).

    Parameters
    ----------
    X_t, y_t
        Target points (intercept column included); the target is their mean loss.
    candidates
        ``(n_candidates, n)`` membership matrix.
    every_k
        Checkpoint period of TracInCP (in steps).

    Attributes
    ----------
    tracin : ``(R, C, n_candidates)``
        :math:`\sum_t \frac{\eta_t}{|B_t|}\sum_{z\in S\cap B_t} w_z\,g_t^\top\nabla
        \mathrm{loss}_z(\theta_t)`, the first-order decrease of the target due to S.
    tracin_cp : ``(R, C, n_candidates)``
        :math:`\sum_{t\,:\,k\mid t} \eta_t\,g_t^\top\nabla\mathrm{loss}_S(\theta_t)\cdot
        k/N`, the checkpoint form scaled to the same units (each checkpoint stands for k
        steps in which S is drawn with probability :math:`|B|/N`).
    """

    def __init__(self, X_t: np.ndarray, y_t: np.ndarray, candidates: np.ndarray,
                 every_k: int = 10) -> None:
        self.X_t = np.asarray(X_t, dtype=float)
        self.y_t = np.asarray(y_t)
        self.A = np.asarray(candidates, dtype=float)
        self.every_k = int(every_k)
        self.tracin: np.ndarray | None = None
        self.tracin_cp: np.ndarray | None = None

    def on_start(self, ctx: Any) -> None:
        R, C = ctx.shape[:2]
        self.model = ctx.recipe.model
        self.X = ctx.features
        self.y = ctx.labels
        self.n = ctx.features.shape[0]
        self.tracin = np.zeros((R, C, self.A.shape[0]))
        self.tracin_cp = np.zeros((R, C, self.A.shape[0]))

    def on_step(self, info: Any) -> None:
        g = target_gradient(self.model, info.params, self.X_t, self.y_t)   # (R, C, p, K)
        idx = info.batch_indices                                            # (R, b)
        Xb = self.X[idx]                                                    # (R, b, p)
        # x_z^T g r_z for every batch member: (R, C, b)
        xg = np.einsum("rbp,rcpk->rcbk", Xb, g)
        dots = np.einsum("rcbk,rcbk->rcb", xg, info.residuals)
        contrib = info.lr * dots * info.batch_weights / info.denominator   # (R, C, b)
        R, C, b = contrib.shape
        Ab = self.A[:, idx]                                                 # (S, R, b)
        self.tracin += np.einsum("rcb,srb->rcs", contrib, Ab)
        if info.step % self.every_k == 0:
            r_all = residuals(self.model, info.params, self.X, self.y)     # (R, C, n, K)
            xg_all = np.einsum("np,rcpk->rcnk", self.X, g)
            d_all = np.einsum("rcnk,rcnk->rcn", xg_all, r_all)
            self.tracin_cp += info.lr * self.every_k / self.n * d_all @ self.A.T


# ----------------------------------------------------------------------------- TRAK


def _margin_gradient_factor(model: str, theta: np.ndarray, X: np.ndarray, y: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray]:
    r"""TRAK's model output and its weight: the factor ``u`` with :math:`\nabla_\theta f =
    x\,u^\top` (``(m, K)``) and the weight ``q`` (``(m,)``).

    Classification: :math:`f = \log\frac{p_y}{1-p_y}` (the margin) and :math:`q = 1 - p_y`.
    Regression: :math:`f = z` and :math:`q = y - z` (the residual, the analogue of
    :math:`1 - p_y`), so that :math:`u\,q` is minus the loss derivative.
    """
    z = X @ theta
    if model in ("linear", "ridge"):
        return np.ones_like(z), np.asarray(y, dtype=float) - z[:, 0]
    if model == "logistic":
        s = 0.5 * (1 + np.tanh(0.5 * z[:, 0]))
        sign = np.where(np.asarray(y) == 1, 1.0, -1.0)       # f = +-z for y = 1 / 0
        py = np.where(np.asarray(y) == 1, s, 1 - s)
        return sign[:, None], 1 - py
    e = np.exp(z - z.max(axis=1, keepdims=True))
    P = e / e.sum(axis=1, keepdims=True)
    yi = np.asarray(y, dtype=np.intp)
    py = P[np.arange(len(yi)), yi]
    onehot = np.eye(P.shape[1])[yi]
    u = (onehot - P) / np.maximum(1 - py, 1e-12)[:, None]
    return u, 1 - py


def trak_scores(model: str, thetas: np.ndarray, X: np.ndarray, y: np.ndarray,
                X_t: np.ndarray, y_t: np.ndarray, candidates: np.ndarray, *,
                proj_dim: int | None = None, seed: int = 0, damping: float = 1e-3,
                target_output: str = "margin") -> np.ndarray:
    r"""TRAK scores of removing each candidate, averaged over an ensemble of final models.

    For each model, features :math:`\phi_i = P^\top \mathrm{vec}(\nabla_\theta f(z_i))` with a
    Gaussian projection :math:`P\in\mathbb{R}^{pK\times k}` (entries :math:`N(0, 1/k)`, drawn
    from ``seed``); the score of S on the target is

    .. math::

        \tau(S) = \frac1{m}\sum_j \phi_{t_j}^\top(\Phi^\top\Phi + \delta I)^{-1}
                  \sum_{i\in S}\phi_i\,(1 - p_{y_i}),

    with :math:`\delta` = ``damping`` times the mean eigenvalue of :math:`\Phi^\top\Phi`. The
    ensemble averages the scores over the models of ``thetas`` ``(M, p, K)``.

    ``proj_dim``: ``None`` (default) or any value :math:`\ge pK` uses the exact gradient
    features (no projection; :math:`pK` = 650 for the demo); a smaller value a Gaussian
    projection drawn from ``seed`` (keep ``seed`` fixed across runs: the projection is part
    of the estimator, and a new one per run adds its own variability).

    ``target_output``: the target's feature. ``"margin"`` (default, Park et al.): the
    gradient of the target points' margin :math:`\log\frac{p_y}{1-p_y}`, so a positive score means S
    raises their margin. ``"loss"`` (the target of :math:`\mu`):
    :math:`-\nabla\mathrm{loss} = (1 - p_y)\,\nabla f` (the margin gradient times the same
    Q weight), so a positive score means S lowers the target loss; the margin form gives a
    confidently classified test point (:math:`p_y\to 1`, loss gradient :math:`\to 0`) as
    much weight as a misclassified one (on the demo it ranks worse: Spearman 0.27 against
    0.35, docs/fine_variants.md).

    Returns
    -------
    numpy.ndarray
        ``(n_candidates,)``.
    """
    thetas = thetas[None] if thetas.ndim == 2 else thetas
    p, K = thetas.shape[-2:]
    if target_output not in ("loss", "margin"):
        raise ValueError(f"target_output must be 'loss' or 'margin', got {target_output!r}")
    k = p * K if proj_dim is None else int(min(proj_dim, p * K))
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((p * K, k)) / np.sqrt(k) if k < p * K else np.eye(p * K)
    total = np.zeros(candidates.shape[0])
    for th in thetas:
        u, q = _margin_gradient_factor(model, th, X, y)
        Phi = (X[:, :, None] * u[:, None, :]).reshape(X.shape[0], p * K) @ proj
        ut, qt = _margin_gradient_factor(model, th, X_t, y_t)
        if model in ("linear", "ridge") or target_output == "loss":
            ut = ut * qt[:, None]      # the target's feature is minus its loss gradient
        phi_t = ((X_t[:, :, None] * ut[:, None, :]).reshape(X_t.shape[0], p * K) @ proj)
        G = Phi.T @ Phi
        G += damping * np.trace(G) / k * np.eye(k)
        v = np.linalg.solve(G, phi_t.mean(axis=0))
        total += candidates @ ((Phi @ v) * q)
    return total / thetas.shape[0]


# ----------------------------------------------------------------------------- LOO


def loo_mean(with_s: np.ndarray, without_s: np.ndarray) -> np.ndarray:
    r"""LOO-mean: :math:`\overline{\ell(D\setminus S)} - \overline{\ell(D)}` over retrains.

    ``with_s`` ``(R,)`` (shared runs on D) or ``(n_candidates, R)``; ``without_s``
    ``(n_candidates, R')``. Positive: removing S raises the target loss (S helps).
    """
    w = np.asarray(with_s, dtype=float)
    wo = np.asarray(without_s, dtype=float)
    return wo.mean(axis=-1) - (w.mean(axis=-1) if w.ndim > 1 else w.mean())


__all__ = ["TracInObserver", "candidate_weights", "ghost_dot", "hessian",
           "influence_function", "loo_mean", "per_example_gradients", "residuals",
           "residuals_from_logits",
           "target_gradient", "target_value", "trak_scores"]
