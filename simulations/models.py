"""Model families: per-example losses and their derivative in the linear predictor.

Every model here is linear in its parameters :math:`\\theta \\in \\mathbb{R}^{p\\times K}`:
the predictor of example ``x`` is :math:`z = x^\\top\\theta \\in \\mathbb{R}^K`, and the
per-example loss depends on ``z`` only. So the per-example gradient factorises,

.. math::

    \\nabla_\\theta\\,\\mathrm{loss}(\\theta; x, y) = x\\, r(z, y)^\\top,
    \\qquad r = \\partial\\,\\mathrm{loss} / \\partial z,

which both the batched engine and f-INE's "ghost" inner products use
(:math:`\\langle x r^\\top, x' r'^\\top\\rangle = (x^\\top x')(r^\\top r')`).

========== ===================================== ===============================
family     loss                                  residual ``r``
========== ===================================== ===============================
linear     :math:`\\tfrac12 (z - y)^2`            :math:`z - y`
ridge      as linear                             as linear
logistic   :math:`\\log(1 + e^z) - y z`           :math:`\\sigma(z) - y`
multinom.  :math:`\\log\\sum_k e^{z_k} - z_y`      :math:`\\mathrm{softmax}(z) - e_y`
========== ===================================== ===============================

All functions broadcast over leading axes: ``z`` has shape ``(..., K)`` and ``y`` shape
``(...)`` broadcastable to ``z.shape[:-1]``.
"""

from __future__ import annotations

import numpy as np


def _onehot_sub(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``p - onehot(y)`` along the last axis (``p`` is modified in place and returned)."""
    K = p.shape[-1]
    yi = np.broadcast_to(np.asarray(y, dtype=np.intp), p.shape[:-1])
    onehot = yi[..., None] == np.arange(K)
    p -= onehot
    return p


def loss_and_residual(model: str, z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-example loss (shape ``z.shape[:-1]``) and residual ``dloss/dz`` (shape of ``z``)."""
    if model in ("linear", "ridge"):
        r = z - np.asarray(y)[..., None]
        return 0.5 * r[..., 0] ** 2, r
    if model == "logistic":
        zz = z[..., 0]
        yy = np.asarray(y, dtype=z.dtype)
        loss = np.logaddexp(0.0, zz) - yy * zz
        s = 0.5 * (1.0 + np.tanh(0.5 * zz))  # stable sigmoid
        return loss, (s - yy)[..., None]
    if model == "multinomial":
        K = z.shape[-1]
        yi = np.broadcast_to(np.asarray(y, dtype=np.intp), z.shape[:-1])
        zy = np.take_along_axis(z, yi[..., None], axis=-1)[..., 0]
        amax = float(np.max(np.abs(z))) if z.size else 0.0
        if amax < 300.0:
            # fast path: exp cannot overflow, and no row underflows entirely
            e = np.exp(z)
            shift = None
        else:  # stable path: subtract the row maximum
            shift = np.max(z, axis=-1, keepdims=True)
            e = np.exp(z - shift)
        tot = np.matmul(e, np.ones((K, 1)))  # row sums (faster than sum over a short axis)
        lse = np.log(tot[..., 0])
        if shift is not None:
            lse = lse + shift[..., 0]
        e *= 1.0 / tot
        return lse - zy, _onehot_sub(e, yi)
    raise ValueError(f"unknown model family {model!r}")


def mean_prediction(model: str, residual: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """The model's mean from a residual: :math:`p = r + e_y` (softmax), :math:`s = r + y`
    (sigmoid, shape ``(..., 1)``), ``None`` for the squared loss (see
    :func:`curvature_product`); ``y`` broadcasts to ``residual.shape[:-1]``."""
    if model in ("linear", "ridge"):
        return None
    if model == "logistic":
        return residual + np.asarray(y, dtype=residual.dtype)[..., None]
    if model == "multinomial":
        K = residual.shape[-1]
        return residual + (np.asarray(y, dtype=np.intp)[..., None] == np.arange(K))
    raise ValueError(f"unknown model family {model!r}")


def curvature_product(model: str, mean: np.ndarray | None, u: np.ndarray) -> np.ndarray:
    r"""The loss's Hessian in the predictor applied to ``u``: :math:`\partial r/\partial z\;u`.

    From the model's mean (:func:`mean_prediction`, no second forward pass): ``u`` itself
    for the squared loss, :math:`s(1-s)\,u` for the logistic loss and
    :math:`(\mathrm{diag}(p) - p p^\top)\,u` for the multinomial one. With it a batch
    Hessian-vector product is
    :math:`H_B V = \frac1b\sum_i w_i\, x_i\,(\partial r_i/\partial z)(x_i^\top V)`.
    ``mean`` and ``u`` have shape ``(..., K)`` (broadcasting); a new array is returned.
    """
    if model in ("linear", "ridge"):
        return np.array(u, dtype=float, copy=True)
    if model == "logistic":
        return mean * (1.0 - mean) * u
    if model == "multinomial":
        pu = mean * u
        pu -= mean * pu.sum(axis=-1, keepdims=True)
        return pu
    raise ValueError(f"unknown model family {model!r}")


def loss(model: str, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-example loss only (see :func:`loss_and_residual`)."""
    return loss_and_residual(model, z, y)[0]


def predict(theta: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Linear predictor ``z = X theta``: ``theta`` (..., p, K), ``X`` (m, p) -> (..., m, K)."""
    return np.matmul(X, theta)
