"""The batched SGD engine: ``R`` seeds × ``C`` weightings of the training set, trained at once.

Model grid
----------
One call trains ``M = R * C`` models of a :class:`~simulations.recipes.Recipe` as one tensor
computation. Replica ``r`` uses seed ``seeds[r]`` (its initial parameters, every epoch's
permutation, its gradient noise); column ``c`` uses per-example weights ``weights[c]`` of
shape ``(n,)``. All columns of a replica share the seed, hence the same initialisation, the
same batches and the same noise: this is how training on ``D`` and on ``D \\ S`` are *paired*
(the law of each model is unchanged by the pairing).

Training on ``D \\ S`` = the same permutation of ``D`` with the examples of ``S`` at weight 0.
A batch ``B`` (slots ``b = |B|``; ``b`` for full batches, the remainder for the last one)
has objective

.. math::

    L_B(\\theta) = \\frac{1}{|B|}\\sum_{i\\in B} w_i\\,\\mathrm{loss}(\\theta; x_i, y_i)
                 + \\frac{\\lambda}{2}\\lVert\\theta_{\\mathrm{w}}\\rVert^2,

normalised by the nominal slot count, never by the weights; so weight 0 removes an example
(its batch simply has one useful example less), weight 2 duplicates it, and the steps of
batches that do not contain ``S`` are identical with and without ``S``. The update is

.. math::

    \\theta_{t+1} = \\theta_t - \\eta_t\\,(\\nabla L_{B_t}(\\theta_t) + \\sigma\\,\\xi_t),
    \\qquad \\xi_t \\sim N(0, I).

Parameters have shape ``(R, C, p, K)``: ``p = d (+1 intercept, the last row)`` and ``K = 1``
except for multinomial regression (``K`` classes).

Observer hook
-------------
``train(..., observers=[obs, ...])`` calls, for every observer that has the method:

* ``obs.on_start(ctx: TrainContext)`` once, before step 0;
* ``obs.on_step(info: StepInfo)`` at every step, **after** the gradient is computed and
  **before** the parameters are updated;
* ``obs.on_end(params)`` once, with the final parameters ``(R, C, p, K)``.

:class:`StepInfo` fields (``b`` = slots in this batch):

============== ================ ===========================================================
field          shape            meaning
============== ================ ===========================================================
step, epoch    int              global step ``t`` (0-based) and its epoch
lr             float            :math:`\\eta_t`
params         (R, C, p, K)     :math:`\\theta_t`, before the update
batch_indices  (R, b)           rows of the training set in replica ``r``'s batch
batch_weights  (R, C, b)        their weights in column ``c``
residuals      (R, C, b, K)     :math:`r_i = \\partial\\,\\mathrm{loss}_i/\\partial z` at
                                :math:`\\theta_t` (unweighted); the per-example gradient is
                                ``features[i][:, None] * residuals[r, c, j][None, :]``
batch_loss     (R, C)           :math:`\\frac1{|B|}\\sum w_i\\,\\mathrm{loss}_i` (no L2)
scaled_params  (R, p, C, K)     the engine's form of :math:`\\theta_t`: ``params`` is
                                ``scaled_params * row_scale[:, None, None]`` with the
                                axes ``p`` and ``C`` swapped (:func:`scaled_outputs`)
row_scale      (p,)             see ``scaled_params``
gradient       (R, C, p, K)     :math:`\\nabla L_{B_t}(\\theta_t)` with L2, without noise
noise          (R, p, K)|None   :math:`\\sigma\\xi_t` (shared by a replica's columns)
update         (R, C, p, K)     :math:`\\theta_{t+1}-\\theta_t = -\\eta_t(\\nabla L+\\sigma\\xi_t)`
                                (computed on first access)
denominator    int              ``|B|``
============== ================ ===========================================================

The arrays are views into the engine's buffers, valid only during the call: an observer that
keeps anything must copy it, except ``batch_indices``, ``batch_weights`` and ``noise``, which
the engine never overwrites (each epoch draws new arrays), so an observer may keep them.
Nothing stores the trajectory unless an observer does (memory is ``O(R C (n + p K))``
whatever the number of steps).
:class:`TrainContext` carries the recipe, the design matrix ``features`` ``(n, p)`` (with the
intercept column), ``labels`` ``(n,)``, ``weights`` ``(C, n)``, ``seeds`` ``(R,)``, the
learning rates of all steps and the shapes, so an observer can compute target gradients
(e.g. ``features_test @ params`` for the ghost inner products of f-INE) by itself.

Divergence: if the batch objective of any model becomes NaN or infinite the engine stops with
:class:`DivergenceError` naming the recipe, the step, the epoch and the models affected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from simulations.models import loss_and_residual
from simulations.recipes import Recipe, draw_init, seed_streams


class DivergenceError(FloatingPointError, ValueError):
    """Training produced a NaN or infinite loss."""


class Observer(Protocol):
    """What the engine calls (every method is optional)."""

    def on_start(self, ctx: TrainContext) -> None: ...  # pragma: no cover
    def on_step(self, info: StepInfo) -> None: ...  # pragma: no cover
    def on_end(self, params: np.ndarray) -> None: ...  # pragma: no cover


@dataclass(frozen=True)
class TrainContext:
    """Static facts of one :func:`train` call (see the module docstring)."""

    recipe: Recipe
    features: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    seeds: np.ndarray
    lrs: np.ndarray
    steps_per_epoch: int
    n_steps: int
    shape: tuple[int, int, int, int]


def scaled_outputs(A: np.ndarray, scaled_params: np.ndarray,
                   row_scale: np.ndarray) -> np.ndarray:
    r"""Linear outputs :math:`A\,\theta` from the engine's scaled parameters (see
    :attr:`StepInfo.scaled_params`), for any leading dimensions (e.g. many steps at once).

    ``A`` ``(m, p)`` (rows with the intercept column), ``scaled_params`` ``(..., R, p, C, K)``,
    ``row_scale`` ``(..., p)``; returns ``(..., R, C, m, K)`` in one batched product, without
    forming :math:`\theta`.
    """
    *lead, R, p, C, K = scaled_params.shape
    scaled = A * np.asarray(row_scale)[..., None, None, :]                  # (..., 1, m, p)
    out = np.matmul(scaled, scaled_params.reshape(*lead, R, p, C * K))      # (..., R, m, C K)
    out = out.reshape(*lead, R, A.shape[0], C, K)
    return np.swapaxes(out, -3, -2)


class StepInfo:
    r"""One SGD step as the observers see it (see the module docstring for the fields).

    ``params``, ``gradient`` and ``update`` are computed on first access only (the engine
    keeps the parameters in a scaled form, see :func:`train`), so an observer pays only for
    what it reads. An observer that keeps :math:`\theta_t` for later does it most cheaply by
    copying ``scaled_params`` and ``row_scale`` (:func:`scaled_outputs` then gives outputs).
    """

    def __init__(self, *, V: np.ndarray, row_scale: np.ndarray, Xb: np.ndarray,
                 G: np.ndarray, l2: float, p_reg: int, step: int, epoch: int, lr: float,
                 batch_indices: np.ndarray, batch_weights: np.ndarray,
                 residuals: np.ndarray, batch_loss: np.ndarray, noise: np.ndarray | None,
                 denominator: int) -> None:
        self.scaled_params, self.row_scale, self._Xb, self._G = V, row_scale, Xb, G
        self._l2, self._p_reg = l2, p_reg
        self.step, self.epoch, self.lr = step, epoch, lr
        self.batch_indices, self.batch_weights = batch_indices, batch_weights
        self.residuals, self.batch_loss = residuals, batch_loss
        self.noise, self.denominator = noise, denominator

    @cached_property
    def params(self) -> np.ndarray:
        W = self.scaled_params * self.row_scale[None, :, None, None]  # (R, p, C, K)
        out = W.transpose(0, 2, 1, 3)
        out.flags.writeable = False
        return out

    @cached_property
    def gradient(self) -> np.ndarray:
        R, p, C, K = self.scaled_params.shape
        grad = np.matmul(self._Xb.transpose(0, 2, 1), self._G).reshape(R, p, C, K) / self.lr
        if self._l2 > 0:
            grad[:, :self._p_reg] += self._l2 * self.params.transpose(0, 2, 1, 3)[:, :self._p_reg]
        out = grad.transpose(0, 2, 1, 3)
        out.flags.writeable = False
        return out

    @cached_property
    def update(self) -> np.ndarray:
        g = self.gradient if self.noise is None else self.gradient + self.noise[:, None]
        return -self.lr * g


def design_matrix(X: np.ndarray, fit_intercept: bool) -> np.ndarray:
    """``X`` with a column of ones appended when ``fit_intercept`` (shape ``(n, p)``)."""
    X = np.asarray(X, dtype=np.float64)
    if not fit_intercept:
        return np.ascontiguousarray(X)
    return np.hstack([X, np.ones((X.shape[0], 1))])


def check_inputs(recipe: Recipe, X: np.ndarray, y: np.ndarray,
                 weights: np.ndarray | None, seeds: Sequence[int] | np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Validate and normalise the engine's inputs; returns ``(X, y, weights(C,n), seeds, K)``."""
    recipe.validate()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"features must be a non-empty 2-D array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("features contain NaN or infinite values")
    n = X.shape[0]
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {y.shape}")
    K = recipe.n_outputs(y)
    if recipe.model in ("logistic", "multinomial"):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"{recipe.model} regression needs integer class labels")
        y = y.astype(np.intp)
        hi = 1 if recipe.model == "logistic" else K - 1
        if y.min() < 0 or y.max() > hi:
            raise ValueError(f"{recipe.model} labels must lie in [0, {hi}], "
                             f"got [{y.min()}, {y.max()}]")
    else:
        y = y.astype(np.float64)
        if not np.isfinite(y).all():
            raise ValueError("regression targets contain NaN or infinite values")
    if weights is None:
        weights = np.ones((1, n))
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim == 1:
        weights = weights[None]
    if weights.ndim != 2 or weights.shape[1] != n or weights.shape[0] == 0:
        raise ValueError(f"weights must have shape (C, {n}) with C >= 1, got {weights.shape}")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("weights must be finite and non-negative")
    seeds = np.asarray(seeds)
    if seeds.ndim != 1 or seeds.size == 0:
        raise ValueError("seeds must be a non-empty 1-D sequence of integers")
    if not np.issubdtype(seeds.dtype, np.integer) or (seeds < 0).any():
        raise ValueError("seeds must be non-negative integers")
    return X, y, weights, seeds.astype(np.int64), K


def _diverged(recipe: Recipe, step: int, epoch: int, bad: np.ndarray,
              seeds: np.ndarray) -> DivergenceError:
    r, c = np.nonzero(bad)
    which = ", ".join(f"(seed {seeds[i]}, column {j})" for i, j in zip(r[:3], c[:3],
                                                                       strict=True))
    more = f" and {len(r) - 3} more" if len(r) > 3 else ""
    return DivergenceError(
        f"recipe {recipe.name!r} diverged: the loss became NaN/inf at step {step} "
        f"(epoch {epoch}) for {len(r)} model(s): {which}{more}; lower the learning rate "
        f"(now {recipe.schedule.lr}) or raise l2")


def _fused_softmax_step(Z: np.ndarray, yb: np.ndarray, wb: np.ndarray, scale: float,
                        cache: dict[int, np.ndarray], with_residuals: bool = False,
                        ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Multinomial step with few passes over ``Z (R, b, C, K)``, overwriting ``Z``.

    Returns ``G = scale * w * (softmax(Z) - onehot(y))``, the batch loss and, when
    ``with_residuals`` (observers read them), the unweighted residuals
    ``softmax(Z) - onehot(y)`` (then in ``Z``'s buffer, and ``G`` is a new array; otherwise
    ``G`` is in ``Z``'s buffer and the residuals are ``None``). ``(None, _, None)`` when the
    fast exponentials overflowed or a whole row underflowed (seen on the row sums, without
    a pass over ``Z`` for its range): ``Z`` is then overwritten and the caller recomputes it
    for the stable path.
    """
    R, b, C, K = Z.shape
    if b not in cache:  # flat offsets of the rows (r, i, c); + y gives the label's logit
        cache[b] = (np.arange(R * b * C) * K).reshape(R * b, C)
    label = cache[b] + yb.reshape(R * b, 1)  # (R b, C): 1-D fancy indexing is the fast one
    zy = Z.reshape(-1)[label].reshape(R, b, C)
    if not np.isfinite(zy).all():
        return None, zy[..., 0], None
    e = np.exp(Z, out=Z)  # in place: no new buffer per step
    tot = np.matmul(e, np.ones((K, 1), dtype=e.dtype))[..., 0]  # (R, b, C)
    # overflow (or NaN) makes a row sum non-finite; a row sum below the smallest normal
    # number (times a margin) means the largest logit of the row lost precision
    tiny = np.finfo(e.dtype).tiny * 2.0 ** 20
    if not (np.isfinite(tot).all() and tot.min() >= tiny):
        return None, zy[..., 0], None
    lse = np.log(tot)
    batch_loss = np.einsum("rbc,rbc->rc", lse - zy, wb) / b
    sw = wb * scale  # (R, b, C)
    if with_residuals:
        e *= (1.0 / tot)[..., None]
        e.reshape(-1)[label] -= 1.0
        return e * sw[..., None], batch_loss, e
    e *= (sw / tot)[..., None]
    e.reshape(-1)[label] -= sw.reshape(R * b, C)
    return e, batch_loss, None


def train(recipe: Recipe, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None,
          seeds: Sequence[int] | np.ndarray = (0,), observers: Sequence[Any] = (),
          dtype: type = np.float64) -> np.ndarray:
    """Train ``len(seeds) × len(weights)`` models of ``recipe`` at once.

    Parameters
    ----------
    recipe
        The training recipe.
    X, y
        Training features ``(n, d)`` (no intercept column; the engine appends it) and labels
        ``(n,)``.
    weights
        Per-example weights ``(C, n)`` (or ``(n,)``; default all ones): column ``c`` trains on
        the weighted set (``0`` removes an example, ``2`` duplicates it).
    seeds
        ``R`` non-negative integer seeds, one per replica (shared by its ``C`` columns).
    observers
        Objects with optional ``on_start``/``on_step``/``on_end`` (module docstring).
    dtype
        Compute precision: ``numpy.float64`` (default; equals the reference to rounding) or
        ``numpy.float32`` (about twice as fast; agrees to ~1e-5 relative).

    Returns
    -------
    numpy.ndarray
        Final parameters, shape ``(R, C, p, K)``.

    Raises
    ------
    DivergenceError
        The loss became NaN/inf (the message names recipe, step and models).
    """
    X, y, weights, seeds, K = check_inputs(recipe, X, y, weights, seeds)
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError("dtype must be float64 or float32")
    Xa = design_matrix(X, recipe.fit_intercept).astype(dtype)
    weights = weights.astype(dtype)
    if recipe.model in ("linear", "ridge"):
        y = y.astype(dtype)
    n, p = Xa.shape
    R, C = len(seeds), weights.shape[0]
    p_reg = p - 1 if recipe.fit_intercept else p
    bounds = recipe.batch_bounds(n)
    spe = len(bounds)
    lrs = recipe.schedule.lrs(spe, recipe.epochs)
    sigma = float(recipe.grad_noise)

    streams = [seed_streams(s) for s in seeds]
    # The parameters are kept as W = V * row_scale (row-wise): weight decay multiplies the
    # regularised rows by (1 - lr l2), which is a change of one scalar, and the gradient step
    # is V -= (X_B / row_scale)^T G: two passes over the parameters per step instead of four.
    V = np.empty((R, p, C, K), dtype=dtype)
    for r, (init_rng, _, _) in enumerate(streams):
        V[r] = draw_init(recipe.init, init_rng, (p, K), recipe.fit_intercept)[:, None, :]
    Vf = V.reshape(R, p, C * K)
    row_scale = np.ones(p, dtype=dtype)

    on_step = [o.on_step for o in observers if hasattr(o, "on_step")]
    if observers:
        ctx = TrainContext(recipe=recipe, features=Xa, labels=y, weights=weights, seeds=seeds,
                           lrs=lrs, steps_per_epoch=spe, n_steps=len(lrs),
                           shape=(R, C, p, K))
        for o in observers:
            if hasattr(o, "on_start"):
                o.on_start(ctx)

    fused = recipe.model == "multinomial"
    rows: dict[int, np.ndarray] = {}  # label offsets per batch size
    zbuf: dict[int, np.ndarray] = {}
    step_buf = np.empty((R, p, C * K), dtype=dtype)  # (X_B / row_scale)^T G
    step = 0
    # BLAS threads: numpy's own pool (two threads on these 2 cores: about +20% retrains per
    # second, finf bench retrain). Only numpy's BLAS runs in the loop: scipy's separate
    # OpenBLAS pool alternating with numpy's made their spinning threads fight (5-20x slower
    # in earlier measurements). joblib workers (simulations.scaleout) get one thread each.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in range(recipe.epochs):
            perms = np.stack([pr.permutation(n) for _, pr, _ in streams])  # (R, n)
            noise = (np.stack([nr.standard_normal((spe, p, K)) for _, _, nr in streams]
                              ).astype(dtype, copy=False) if sigma > 0 else None)
            Xe = Xa[perms]  # (R, n, p)
            ye = y[perms]  # (R, n)
            we = np.ascontiguousarray(np.moveaxis(weights[:, perms], 0, 2))  # (R, n, C)
            perms.flags.writeable = we.flags.writeable = False  # observers may keep views
            for j, (s, e) in enumerate(bounds):
                b = e - s
                Xb = Xe[:, s:e]
                if b not in zbuf:
                    zbuf[b] = np.empty((R, b, C * K), dtype=dtype)
                Z = np.matmul(Xb * row_scale, Vf, out=zbuf[b]).reshape(R, b, C, K)
                wb = we[:, s:e]  # (R, b, C)
                lr = float(lrs[step])
                G = None
                if fused:
                    # observers read the unweighted residuals: then the step keeps them
                    G, batch_loss, res = _fused_softmax_step(Z, ye[:, s:e], wb, lr / b, rows,
                                                             with_residuals=bool(on_step))
                    if G is None:  # Z was overwritten: recompute it for the stable path
                        Z = np.matmul(Xb * row_scale, Vf, out=zbuf[b]).reshape(R, b, C, K)
                if G is None:
                    loss, res = loss_and_residual(recipe.model, Z, ye[:, s:e, None])
                    batch_loss = np.einsum("rbc,rbc->rc", loss, wb) / b
                if not np.isfinite(batch_loss).all():
                    raise _diverged(recipe, step, epoch, ~np.isfinite(batch_loss), seeds)
                if G is None:
                    # lr folded into the residual weights: one BLAS call gives lr * gradient
                    G = res * (wb * (lr / b))[..., None]
                G = G.reshape(R, b, C * K)
                eps = None if noise is None else sigma * noise[:, j]  # (R, p, K)
                if on_step:
                    info = StepInfo(
                        V=V, row_scale=row_scale, Xb=Xb, G=G, l2=recipe.l2,
                        p_reg=p_reg, step=step, epoch=epoch, lr=lr,
                        batch_indices=perms[:, s:e], batch_weights=wb.transpose(0, 2, 1),
                        residuals=res.transpose(0, 2, 1, 3), batch_loss=batch_loss,
                        noise=eps, denominator=b)
                    for f in on_step:
                        f(info)
                if recipe.l2 > 0:
                    row_scale[:p_reg] *= 1.0 - lr * recipe.l2
                    if row_scale[0] < 1e-6:  # fold the scale back before it loses range
                        V *= row_scale[None, :, None, None]
                        row_scale[:] = 1.0
                Xinv = (Xb / row_scale).transpose(0, 2, 1)  # (R, p, b)
                Vf -= np.matmul(Xinv, G, out=step_buf)
                if eps is not None:
                    V -= (lr * eps / row_scale[None, :, None])[:, :, None, :]
                step += 1
    W = V * row_scale[None, :, None, None]
    params_view = np.moveaxis(W, 2, 1)
    if not np.isfinite(W).all():
        raise _diverged(recipe, step, recipe.epochs - 1,
                        ~np.isfinite(params_view).all(axis=(2, 3)), seeds)
    out = np.ascontiguousarray(np.moveaxis(W, 2, 1))
    for o in observers:
        if hasattr(o, "on_end"):
            o.on_end(out)
    return out
