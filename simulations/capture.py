r"""f-INE Stage 1: in-run capture of the per-step signals in the batched engine.

:class:`FineCapture` is an observer of :func:`simulations.engine.train`. The engine trains
``R = 2 R'`` replicas at once: replicas ``0 .. R'-1`` are the single runs f-INE is computed
on, replicas ``R' .. 2R'-1`` their auxiliary runs (same recipe, other seeds) for the
difference-in-differences, all in the same tensor computation (:func:`run_fine` lays the
seeds out). At every step, before the update, for every run and every candidate S at once:

.. math::

    g_t = \nabla\ell(\theta_t),\qquad
    d_t = -g_t^\top(\theta_{t+1}-\theta_t) = \eta_t\,g_t^\top(\nabla L_{B_t} + \sigma\xi_t),

    c_t(S) = \frac{\eta_t}{|B_t|}\sum_{z\in S\cap B_t} w_z\,g_t^\top\nabla\mathrm{loss}_z
    = \frac{\eta_t}{|B_t|}\sum_{z\in S\cap B_t} w_z\,(x_z^\top g_t)\,r_z,
    \qquad \mathrm{base}_t(S) = d_t - c_t(S)

(the ghost inner product: no per-example gradient is formed; ``similarity="cosine"``
divides each inner product by the norms, :math:`\lVert x r^\top\rVert = \lVert x\rVert
\lVert r\rVert`). ``effect="expected"`` replaces :math:`c_t` by
:math:`\eta_t\,w_z\,g_t^\top\nabla\mathrm{loss}_z / N` for every candidate at every logged
step. With ``discount="contraction"`` the capture also passes

.. math::

    \rho_t = \mathrm{clip}\Big(1 - \eta_t\,\frac{g_t^\top H_{B_t} g_t}{g_t^\top g_t}, 0, 1\Big),

the batch Hessian's contraction along the target gradient. The first-order quantities come
from :mod:`simulations.baselines` (ghost products), the statistics from
:mod:`finf_stats.fine` (Stage 2). TracIn (the sum of the actual :math:`c_t`) is recorded as a
by-product of the same products.

For the ``paper`` preset with single-point candidates the capture is sparse
(:class:`finf_stats.fine.EventFineAccumulator`): a step costs :math:`O(b)` beyond the
target gradient, whatever the number of candidates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from finf_stats.fine import (
    DEFAULT_PRESET,
    EventFineAccumulator,
    FineAccumulator,
    FineConfig,
    FineError,
    across_run_results,
    fine_config,
)
from simulations.baselines import (
    candidate_weights,
    residuals,
    residuals_from_logits,
    single_point_indices,
    target_gradient,
    target_value,
)
from simulations.engine import design_matrix, scaled_outputs, train
from simulations.models import curvature_product, mean_prediction
from simulations.recipes import Recipe

#: offset between a run's seed and its auxiliary run's seed
AUX_SEED_OFFSET = 1_000_003


class FineCapture:
    r"""Engine observer collecting f-INE signals for all candidates of ``n_runs`` runs.

    Parameters
    ----------
    X_t, y_t
        Target points, features *with* the intercept column (``(m, p)``) and labels.
    target
        ``"loss"`` (their mean loss) or ``"prediction"`` (their mean linear prediction;
        :func:`simulations.baselines.target_gradient`).
    candidates
        Indices of single training points ``(n_candidates,)`` or a list of index arrays
        (groups).
    config
        :class:`finf_stats.fine.FineConfig` or a preset name.
    n_runs
        ``R'``: the replicas ``0 .. R'-1`` are the runs, ``R' .. 2R'-1`` their auxiliary
        runs (only when the decorrelation is ``"did"``; otherwise the engine trains ``R'``).
    chunk_steps
        Steps buffered before the signals are computed at once (the fast path: single-point
        candidates, ``similarity="dot"``); memory :math:`O(\mathrm{chunk}\cdot R\,b\,K)`.
    fast
        ``False`` forces the step-by-step path (the reference the fast one is tested
        against; also taken for groups and cosine similarity).
    tracin
        Also compute TracIn of the same runs (:attr:`tracin`). ``None`` (default): when it
        is free, i.e. for every configuration but ``discount="adjoint"``, whose forward
        pass otherwise only keeps the trajectory.

    Attributes
    ----------
    acc
        The Stage-2 accumulator (batch shape ``(R', C)``; ``(R, C)`` on the fast path with
        ``scaling="spread"``, which keeps every replica's effect for the interval); ``None``
        for ``discount="adjoint"``, whose effect is :attr:`adjoint_effect`.
    adjoint_effect : ``(R, C, n_candidates)``
        ``discount="adjoint"`` only: every replica's effect sum :math:`A` from the backward
        pass (set at the end of training).
    tracin : ``(R', C, n_candidates)`` or None
        TracIn scores of the same runs (``None`` when not computed, see ``tracin``).
    final_target : ``(R, C)``
        The target statistic of every replica's final model.
    """

    def __init__(self, X_t: np.ndarray, y_t: np.ndarray,
                 candidates: np.ndarray | list[np.ndarray],
                 config: FineConfig | str = DEFAULT_PRESET, *, n_runs: int,
                 target: str = "loss", chunk_steps: int = 64, fast: bool = True,
                 tracin: bool | None = None) -> None:
        self.target = target
        self.config = fine_config(config) if isinstance(config, str) else config
        self.X_t = np.asarray(X_t, dtype=float)
        self.y_t = np.asarray(y_t)
        if not isinstance(candidates, np.ndarray) and all(
                np.size(g) == 1 for g in candidates):
            # a list of one-point groups is a list of single points (the fast path)
            candidates = np.array([int(np.ravel(g)[0]) for g in candidates], dtype=np.int64)
        self.singles = isinstance(candidates, np.ndarray) and candidates.ndim == 1
        self.candidates = candidates
        self.n_runs = int(n_runs)
        self.uses_aux = self.config.decorrelation == "did"
        self.acc: FineAccumulator | EventFineAccumulator | None = None
        self.tracin: np.ndarray | None = None
        self.want_tracin = tracin
        self.final_target: np.ndarray | None = None
        self.seconds = 0.0
        self.chunk_steps = int(chunk_steps)
        self.allow_fast = bool(fast)

    @property
    def membership(self) -> np.ndarray:
        """Candidate membership ``(n_candidates, n)`` (built on first use: the fast path of
        single points never needs it)."""
        if self._membership is None:
            self._membership = candidate_weights(self.candidates, self.n)
        return self._membership

    @property
    def n_replicas(self) -> int:
        """Replicas the engine must train: ``2 R'`` with auxiliary runs, else ``R'``."""
        return 2 * self.n_runs if self.uses_aux else self.n_runs

    def on_start(self, ctx: Any) -> None:
        R, C, p, K = ctx.shape
        if R != self.n_replicas:
            raise ValueError(f"FineCapture expects {self.n_replicas} replicas (runs and their "
                             f"auxiliary runs), the engine trains {R}")
        if self.X_t.shape[1] != p:
            raise ValueError(f"target features have {self.X_t.shape[1]} columns, the model "
                             f"{p} (include the intercept column: engine.design_matrix)")
        self.model = ctx.recipe.model
        self.l2 = ctx.recipe.l2
        self.p_reg = p - 1 if ctx.recipe.fit_intercept else p
        self.X = ctx.features
        self.y = ctx.labels
        self.n = ctx.features.shape[0]
        self.weights = ctx.weights
        self.C = C
        self._membership: np.ndarray | None = None
        self.n_cand = len(self.candidates)
        if self.singles:
            self.cand_idx = single_point_indices(self.candidates, self.n)
            self.pos = np.full(self.n, -1, dtype=np.int64)
            self.pos[self.cand_idx] = np.arange(self.n_cand)
        else:
            self._membership = candidate_weights(self.candidates, self.n)
        cfg = self.config
        self.R = R
        self.fast = self.allow_fast and self.singles and cfg.similarity == "dot"
        # scaling="spread" keeps every replica's effect (runs and auxiliary runs): the
        # across-run spread of the one-run effect is the interval of mu (FineAccumulator)
        self.acc_runs = R if (self.fast and cfg.scaling == "spread") else self.n_runs
        self.acc_steps = ctx.n_steps
        shape = (self.acc_runs, C)
        self._adjoint = cfg.discount == "adjoint"
        self._trajectory: list[dict[str, Any]] = []
        self.adjoint_effect: np.ndarray | None = None
        if self._adjoint and not self.fast:
            raise FineError("discount='adjoint' needs single-point candidates, similarity="
                            "'dot' and the fast capture (fast=True)")
        if self._adjoint:
            self.acc = None  # the effect comes from the backward pass after training
        elif self.fast and EventFineAccumulator.supports(cfg):
            self.acc = EventFineAccumulator(self.n_cand, cfg, batch_shape=shape,
                                            n_steps=ctx.n_steps)
        else:
            logged_steps = (ctx.n_steps if cfg.logging != "every_k"
                            else -(-ctx.n_steps // cfg.every_k))
            self.acc = FineAccumulator(self.n_cand, cfg, batch_shape=shape,
                                       n_steps=logged_steps)
        if self.want_tracin if self.want_tracin is not None else not self._adjoint:
            self.tracin = np.zeros((self.n_runs, C, self.n_cand))
        if self.fast:
            self._setup_fast(ctx)

    # ------------------------------------------------------------------ fast path
    def _setup_fast(self, ctx: Any) -> None:
        r"""Precompute what the features fix: :math:`G = X X_t^\top` (``(n, m)``, used when
        the target has at most ``p`` points, so :math:`x_z^\top g_t = G_z r_t/m`), the
        candidates' rows and the step buffers."""
        p = ctx.shape[2]
        m = self.X_t.shape[0]
        self.p = p
        self.fit_intercept = ctx.recipe.fit_intercept
        self.gram = self.X @ self.X_t.T if m <= p else None
        self.gram_tt = self.X_t @ self.X_t.T if m <= p else None
        xr = self.X_t[:, :self.p_reg]
        self.gram_tt_reg = xr @ xr.T if m <= p else None
        self.Xc = self.X[self.cand_idx]
        self.yc = self.y[self.cand_idx]
        self.gram_c = None if self.gram is None else self.gram[self.cand_idx]
        self.w_c = self.weights[:, self.cand_idx]                            # (C, S)
        K = ctx.shape[3]
        if self.target == "prediction":
            self.r_pred = np.zeros((m, K))
            self.r_pred[:, 0] = 1.0
        # the target rows and, for the L2 term, the intercept's unit row: one product a block
        # gives the target logits X_t theta_t and the intercept theta_int of its steps
        self._probe = self.X_t
        if self.l2 > 0 and self.fit_intercept:
            self._probe = np.vstack([self.X_t, np.eye(1, p, p - 1)])
        # open blocks by batch size (the last batch of an epoch may be smaller); the dense
        # accumulator takes steps in order, so it keeps one block at a time
        self._blocks: dict[int, dict[str, Any]] = {}
        self._in_order = not isinstance(self.acc, EventFineAccumulator)
        sizes = [e - s for s, e in ctx.recipe.batch_bounds(self.n)]
        self._depth: dict[int, int] = {}
        if self._in_order and len(set(sizes)) > 1:  # a smaller last batch ends every run
            self._depth = {sizes[0]: min(self.chunk_steps, len(sizes) - 1), sizes[-1]: 1}
        self._last_b = -1
        self._pending = np.ones((self.acc_runs, self.C))
        self._needs_theta = self.config.effect == "expected" and not self._adjoint

    def _new_block(self, info: Any) -> dict[str, Any]:
        """Step buffers of one batch size, ``chunk_steps`` deep (at most the steps in a row
        with this batch size when blocks are kept in step order)."""
        n, V = self._depth.get(info.denominator, self.chunk_steps), info.scaled_params
        res, idx, w = info.residuals, info.batch_indices, info.batch_weights
        return {"k": 0, "V": np.empty((n,) + V.shape, V.dtype),
                "rs": np.empty((n,) + info.row_scale.shape, V.dtype),
                "res": np.empty((n,) + res.shape, res.dtype),
                "idx": np.empty((n,) + idx.shape, idx.dtype),
                "w": np.empty((n,) + w.shape, w.dtype),
                "noise": None if info.noise is None else np.empty((n,) + info.noise.shape),
                "lr": np.empty(n), "step": np.empty(n, dtype=np.int64), "theta": [None] * n}

    def _record(self, info: Any) -> None:
        """Copy what the step's signals need into the block's buffers (the engine reuses
        its own); the signals of a full block are computed at once by :meth:`_flush`."""
        b = info.denominator
        if self._in_order and b != self._last_b:
            self._flush_all()
        self._last_b = b
        blk = self._blocks.get(b)
        if blk is None:
            blk = self._blocks[b] = self._new_block(info)
        k = blk["k"]
        blk["V"][k] = info.scaled_params
        blk["rs"][k] = info.row_scale
        blk["res"][k] = info.residuals
        blk["idx"][k] = info.batch_indices
        blk["w"][k] = info.batch_weights
        if blk["noise"] is not None:
            blk["noise"][k] = info.noise
        blk["lr"][k] = info.lr
        blk["step"][k] = info.step
        if self._needs_theta and self._is_logged(info.step):
            blk["theta"][k] = info.params[:self.acc_runs].copy()
        blk["k"] = k + 1
        if k + 1 == len(blk["lr"]):
            self._flush(b)

    def _flush_all(self) -> None:
        for b, blk in list(self._blocks.items()):
            if blk["k"]:
                self._flush(b)

    def _is_logged(self, step: int) -> bool:
        return self.config.logging != "every_k" or step % self.config.every_k == 0

    def _flush(self, b: int) -> None:
        r"""Signals of the buffered steps, vectorised over steps, replicas and the batch.

        With :math:`r_t` the target residuals and :math:`G` the Gram matrix,
        :math:`x_i^\top g_t = G_i r_t/m` and

        .. math::

            g_t^\top\nabla L_{B_t} = \frac1{|B|}\sum_{i\in B} w_i\,(x_i^\top g_t)^\top r_i
            + \lambda\,g_{t,\mathrm{w}}^\top\theta_{t,\mathrm{w}},\qquad
            g_{t,\mathrm{w}}^\top\theta_{t,\mathrm{w}} = \tfrac1m\langle r_t,\,
            X_t\theta_t - \mathbf 1\theta_{t,\mathrm{int}}\rangle,

        so no ``(p, K)`` gradient is formed when the target has few points.
        """
        blk = self._blocks[b]
        S, blk["k"] = blk["k"], 0
        if self._adjoint:  # keep the block for the backward pass; the next gets new buffers
            self._trajectory.append({k: blk[k][:S] for k in ("V", "rs", "res", "idx", "w",
                                                               "lr")})
            del self._blocks[b]
            if self.tracin is None:
                return
        Rm, C, m = self.n_runs, self.C, self.X_t.shape[0]
        probe = scaled_outputs(self._probe, blk["V"][:S], blk["rs"][:S])      # (S,R,C,m',K)
        zt = probe[..., :m, :]
        res, idx, w, lr = blk["res"][:S], blk["idx"][:S], blk["w"][:S], blk["lr"][:S]
        if self.target == "prediction":
            r_t = np.broadcast_to(self.r_pred, zt.shape)
        else:
            r_t = residuals_from_logits(self.model, zt, self.y_t)           # (S,R,C,m,K)
        g = xg = None
        if self.gram is not None:
            gram_b = self.gram[idx]                                           # (S,R,b,m)
            # x_i.g_t . r_i = sum_j G_ij (r_i . r_t,j) / m: no (S,R,C,b,K) product needed
            rr = np.matmul(res, r_t.swapaxes(-1, -2))                         # (S,R,C,b,m)
            dots = np.einsum("srcbj,srbj->srcb", rr, gram_b) / m
            if self._in_order and self.config.discount == "contraction":
                xg = np.matmul(gram_b[:, :, None], r_t) / m                   # (S,R,C,b,K)
        else:
            g = np.matmul(self.X_t.T, r_t) / m                                # (S,R,C,p,K)
            xg = np.matmul(self.X[idx][:, :, None], g)
            dots = np.einsum("srcbk,srcbk->srcb", xg, res)
        gB = np.einsum("srcb,srcb->src", w, dots) / b
        if self.l2 > 0:
            zreg = zt - probe[..., m:, :] if self.fit_intercept else zt
            gB += self.l2 / m * np.einsum("srcmk,srcmk->src", r_t, zreg)
        if blk["noise"] is not None:
            nz = np.matmul(self.X_t, blk["noise"][:S])                        # (S, R, m, K)
            gB += np.einsum("srcmk,srmk->src", r_t, nz) / m
        d = lr[:, None, None] * gB                                            # (S, R, C)
        Ra = self.acc_runs
        contrib = (lr / b)[:, None, None, None] * w[:, :Ra] * dots[:, :Ra]  # (S,Ra,C,b)
        # TracIn: scatter the in-batch effects of the runs into their candidates
        s_b = self.pos[idx[:, :Rm]]                                           # (S, Rm, b)
        ss, rr, jj = np.nonzero(s_b >= 0)
        cand = np.repeat(s_b[ss, rr, jj], C)
        run = (rr[:, None] * C + np.arange(C)[None, :]).reshape(-1)
        val = contrib[ss, rr, :, jj].reshape(-1)
        if self.tracin is not None:
            flat = run * self.n_cand + cand
            self.tracin.reshape(-1)[:] += np.bincount(flat, weights=val,
                                                      minlength=self.tracin.size)
        aux = d[:, self.n_runs:] if self.uses_aux else None
        if isinstance(self.acc, EventFineAccumulator):
            self.acc.update_many(d[:, :Rm], aux, np.repeat(ss, C), run, cand, val,
                                 steps=blk["step"][:S].copy())
        elif not self._adjoint:
            self._dense_block(blk, S, b, d, contrib, xg, res, w, r_t, g, idx, lr)

    def _dense_block(self, blk: dict[str, Any], S: int, b: int, d: np.ndarray,
                     contrib: np.ndarray, xg: np.ndarray, res: np.ndarray, w: np.ndarray,
                     r_t: np.ndarray, g: np.ndarray | None, idx: np.ndarray,
                     lr: np.ndarray) -> None:
        """Feed the dense accumulator the buffered steps (one update per logged step)."""
        cfg = self.config
        Ra, C, Rm = self.acc_runs, self.C, self.n_runs
        if self.uses_aux:
            # replica r's auxiliary run is r + R' (and, for the aux replicas themselves, r - R')
            partner = (np.arange(Ra) + Rm) % self.R
            aux_all = d[:, partner]                                           # (S, Ra, C)
        rho = None
        if cfg.discount == "contraction":
            rho = self._contraction_block(xg[:, :Ra], res[:, :Ra], w[:, :Ra], b,
                                          idx[:, :Ra], lr, r_t[:, :Ra],
                                          None if g is None else g[:, :Ra])   # (S, Ra, C)
        s_b = self.pos[idx[:, :Ra]]                                           # (S, Ra, b)
        for k in range(S):
            step = blk["step"][k]
            if rho is not None:
                self._pending *= rho[k]
            if not self._is_logged(step):
                continue
            rr, jj = np.nonzero(s_b[k] >= 0)
            actual = np.zeros((Ra, C, self.n_cand))
            actual[rr, :, s_b[k][rr, jj]] = contrib[k][rr, :, jj]
            in_b = np.zeros((Ra, 1, self.n_cand), dtype=bool)
            in_b[rr, 0, s_b[k][rr, jj]] = True
            base = d[k, :Ra, :, None] - actual
            if cfg.effect == "expected":
                effect = self._expected_block(blk["theta"][k], r_t[k, :Ra],
                                              None if g is None else g[k, :Ra], float(lr[k]))
            else:
                effect = actual
            logged = np.broadcast_to(in_b, actual.shape) if cfg.logging == "in_batch" else None
            contraction = None
            if rho is not None:
                contraction = self._pending[..., None]
                self._pending = np.ones_like(self._pending)
            self.acc.update(effect, base, aux_all[k, :, :, None] if self.uses_aux else None,
                            logged=logged, contraction=contraction)

    def _expected_block(self, theta: np.ndarray, r_t: np.ndarray, g: np.ndarray | None,
                        lr: float) -> np.ndarray:
        r""":math:`\eta_t w_z\,g_t^\top\nabla\mathrm{loss}_z/N` (times ``every_k`` under
        ``logging="every_k"``: each logged step stands for k steps, as TracInCP) for the
        candidates only, ``(Ra, C, S)``."""
        r_c = residuals(self.model, theta, self.Xc, self.yc)                  # (Ra, C, S, K)
        if self.gram_c is not None:
            xg = np.matmul(self.gram_c, r_t) / self.X_t.shape[0]              # (Ra, C, S, K)
        else:
            xg = np.matmul(self.Xc, g)
        dots = np.einsum("rcsk,rcsk->rcs", xg, r_c)
        k = self.config.every_k if self.config.logging == "every_k" else 1
        return (lr * k / self.n) * dots * self.w_c[None]

    def _contraction_block(self, xg: np.ndarray, res: np.ndarray, w: np.ndarray, b: int,
                           idx: np.ndarray, lr: np.ndarray, r_t: np.ndarray,
                           g: np.ndarray | None) -> np.ndarray:
        r""":math:`\rho_t` of every buffered step, ``(S, Ra, C)`` (see ``_contraction``),
        with :math:`\lVert g\rVert^2 = r_t^\top (X_t X_t^\top) r_t/m^2` from the Gram
        matrix."""
        m = self.X_t.shape[0]
        mean = mean_prediction(self.model, res, self.y[idx][:, :, None, :])
        quad = np.einsum("srcbk,srcbk->srcb", xg, curvature_product(self.model, mean, xg))
        curv = np.einsum("srcb,srcb->src", w, quad) / b
        if g is None:
            gg = np.einsum("srcjk,srcjk->src", np.matmul(self.gram_tt, r_t), r_t) / m ** 2
            gr = np.einsum("srcjk,srcjk->src", np.matmul(self.gram_tt_reg, r_t), r_t) / m ** 2
        else:
            gg = np.einsum("srcpk,srcpk->src", g, g)
            gr = np.einsum("srcpk,srcpk->src", g[..., :self.p_reg, :], g[..., :self.p_reg, :])
        curv = curv + self.l2 * gr
        return np.clip(1 - lr[:, None, None] * curv / np.maximum(gg, 1e-300), 0.0, 1.0)

    def _backward(self, params: np.ndarray) -> np.ndarray:
        r"""``discount="adjoint"``: the effect sum :math:`A` of every replica, ``(Ra, C, S)``.

        From the stored trajectory, last step first: :math:`v_T = \nabla\ell(\theta_T)`,
        the effect of step t is :math:`\eta_t w_z\,v_{t+1}^\top\nabla\mathrm{loss}_z
        (\theta_t)/b` for z in the batch (``effect="actual"``) or :math:`/N` for every
        candidate (``"expected"``), then :math:`v_t = v_{t+1} - \eta_t H_{B_t} v_{t+1}`
        with the batch Hessian of the weighted loss and the L2 term (ghost form:
        :math:`H_B v = \frac1b\sum_i w_i x_i\,(\partial r_i/\partial z)(x_i^\top v)`).
        """
        Ra, C = self.acc_runs, self.C
        v = target_gradient(self.model, params[:Ra], self.X_t, self.y_t, self.target)
        A = np.zeros((Ra, C, self.n_cand))
        expected = self.config.effect == "expected"
        offset = (np.arange(Ra)[:, None, None] * C + np.arange(C)[None, :, None]) * self.n_cand
        for blk in reversed(self._trajectory):
            # per block: the batches' rows and weights of every step; per step only the
            # sequential part (u = X_B v, the curvature, H_B v); the effects per block
            lr = blk["lr"]
            idx, res = blk["idx"][:, :Ra], blk["res"][:, :Ra]                 # (S,Ra,C,b,K)
            S, b = idx.shape[0], idx.shape[2]
            Xb = self.X[idx][:, :, None]                                      # (S,Ra,1,b,p)
            XbT = Xb.swapaxes(-1, -2)
            mean = mean_prediction(self.model, res, self.y[idx][:, :, None, :])
            scale = blk["w"][:, :Ra, :, :, None] * (lr / b)[:, None, None, None, None]
            # the L2 term: v <- v * (1 - lr l2) on the penalised rows, then v -= H_B v
            decay = np.ones((S, self.p, 1))
            decay[:, :self.p_reg] -= (self.l2 * lr)[:, None, None]
            U = np.empty(res.shape)
            Vs = np.empty((S,) + v.shape) if expected else None
            for k in range(S - 1, -1, -1):
                if expected:
                    Vs[k] = v
                u = np.matmul(Xb[k], v, out=U[k])                             # (Ra,C,b,K)
                Ju = curvature_product(self.model, None if mean is None else mean[k], u)
                Ju *= scale[k]
                v = v * decay[k] - np.matmul(XbT[k], Ju)                      # (Ra,C,p,K)
            if expected:  # every candidate at every step of the block, with v_{t+1}
                z_c = scaled_outputs(self.Xc, blk["V"][:, :Ra], blk["rs"])    # (S,Ra,C,S',K)
                r_c = residuals_from_logits(self.model, z_c, self.yc)
                dots = np.einsum("trcsk,trcsk,t->rcs", np.matmul(self.Xc, Vs), r_c, lr)
                A += dots * self.w_c / self.n
            else:  # the batch members: lr/b w (x_i . v_{t+1}) . r_i, into their candidates
                contrib = np.einsum("trcbk,trcbk->trcb", U, res) * scale[..., 0]
                s_b = self.pos[idx][:, :, None, :]                            # (S,Ra,1,b)
                hit = np.broadcast_to(s_b >= 0, contrib.shape)
                at = np.broadcast_to(offset + s_b, contrib.shape)[hit]
                A.reshape(-1)[:] += np.bincount(at, weights=contrib[hit], minlength=A.size)
        self._trajectory = []
        return A

    # ------------------------------------------------------------------ one step
    def on_step(self, info: Any) -> None:
        t0 = time.perf_counter()
        if self.fast:
            self._record(info)
        else:
            self._legacy_step(info)
        self.seconds += time.perf_counter() - t0

    def _legacy_step(self, info: Any) -> None:
        """Step-by-step capture for cosine similarity and group candidates."""
        cfg = self.config
        Rm, C, b = self.n_runs, self.C, info.denominator
        lr = info.lr
        P = info.params
        g = target_gradient(self.model, P, self.X_t, self.y_t, self.target)   # (R,C,p,K)
        full = info.gradient if info.noise is None else info.gradient + info.noise[:, None]
        gfull = np.einsum("rcpk,rcpk->rc", g, full)
        if cfg.similarity == "cosine":
            gn = np.sqrt(np.einsum("rcpk,rcpk->rc", g, g))
            fn = np.sqrt(np.einsum("rcpk,rcpk->rc", full, full))
            d = lr * gfull / np.maximum(gn * fn, 1e-300)
        else:
            d = lr * gfull                                                # (R, C)
        idx = info.batch_indices[:Rm]                                     # (Rm, b)
        Xb = self.X[idx]                                                  # (Rm, b, p)
        res = info.residuals[:Rm]                                         # (Rm, C, b, K)
        w = info.batch_weights[:Rm]                                       # (Rm, C, b)
        xg = np.einsum("rbp,rcpk->rcbk", Xb, g[:Rm])                      # (Rm, C, b, K)
        dots = np.einsum("rcbk,rcbk->rcb", xg, res)                       # g . grad loss_z
        contrib = lr * w * dots / b                                       # (Rm, C, b)
        aux = d[Rm:] if self.uses_aux else None
        if isinstance(self.acc, EventFineAccumulator):
            s_b = self.pos[idx]                                           # (Rm, b)
            rr, jj = np.nonzero(s_b >= 0)
            ss = s_b[rr, jj]
            cc = np.arange(C)
            run = (rr[:, None] * C + cc[None, :]).reshape(-1)
            cand = np.repeat(ss, C)
            val = contrib[rr, :, jj].reshape(-1)
            if self.tracin is not None:
                self.tracin.reshape(Rm * C, self.n_cand)[run, cand] += val
            self.acc.update(d[:Rm], aux, run, cand, val)
            return
        # dense path: effect and base for every candidate
        actual = self._scatter(contrib, idx)                              # (Rm, C, S)
        if self.tracin is not None:
            self.tracin += actual
        if cfg.similarity == "cosine":
            xn = np.linalg.norm(Xb, axis=2)[:, None, :]                   # (Rm, 1, b)
            rn = np.linalg.norm(res, axis=3)                              # (Rm, C, b)
            hn = xn * rn
            present = (w > 0).astype(float)
            c_b = lr * present * dots / np.maximum(gn[:Rm, :, None] * hn, 1e-300) / b
            xf = np.einsum("rbp,rcpk->rcbk", Xb, full[:Rm])
            fh = np.einsum("rcbk,rcbk->rcb", xf, res)                     # full . h_z
            a = w / b
            norm_wo = np.sqrt(np.maximum(fn[:Rm, :, None] ** 2 - 2 * a * fh
                                         + a ** 2 * hn ** 2, 1e-300))
            base_b = lr * (gfull[:Rm, :, None] - a * dots) / np.maximum(
                gn[:Rm, :, None] * norm_wo, 1e-300)
            effect_act = self._scatter(c_b, idx)
            in_b = self._scatter(np.ones_like(c_b), idx) > 0
            base = np.where(in_b, self._scatter(base_b, idx), d[:Rm, :, None])
        else:
            effect_act = actual
            in_b = self._scatter(np.ones_like(contrib), idx) > 0
            base = d[:Rm, :, None] - actual
        if cfg.effect == "expected":
            effect = self._expected_effect(g[:Rm], P[:Rm], lr,
                                           gn[:Rm] if cfg.similarity == "cosine" else None)
            if cfg.logging == "every_k":
                effect = effect * cfg.every_k
        else:
            effect = effect_act
        logged = None
        if cfg.logging == "in_batch":
            logged = in_b
        elif cfg.logging == "every_k" and info.step % cfg.every_k != 0:
            logged = np.zeros_like(in_b)
        rho = None
        if cfg.discount == "contraction":
            rho = self._contraction(g[:Rm], xg, res, w, b, idx, lr)[..., None]
        self.acc.update(effect, base, None if aux is None else aux[..., None], logged=logged,
                        contraction=rho)

    def _scatter(self, values: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Per-batch-member values ``(Rm, C, b)`` summed into candidates ``(Rm, C, S)``."""
        if self.singles:
            out = np.zeros(values.shape[:2] + (self.n_cand,))
            s_b = self.pos[idx]
            rr, jj = np.nonzero(s_b >= 0)
            np.add.at(out, (rr, slice(None), s_b[rr, jj]), values[rr, :, jj])
            return out
        Ab = self.membership[:, idx]                                      # (S, Rm, b)
        return np.einsum("rcb,srb->rcs", values, Ab)

    def _expected_effect(self, g: np.ndarray, P: np.ndarray, lr: float,
                         gn: np.ndarray | None) -> np.ndarray:
        r""":math:`\eta_t w_z\,\mathrm{sim}(g_t, \nabla\mathrm{loss}_z)/N` for every candidate."""
        r_all = residuals(self.model, P, self.X, self.y)                  # (Rm, C, n, K)
        xg = np.einsum("np,rcpk->rcnk", self.X, g)
        dots = np.einsum("rcnk,rcnk->rcn", xg, r_all)
        if gn is not None:
            hn = np.linalg.norm(self.X, axis=1)[None, None] * np.linalg.norm(r_all, axis=3)
            dots = dots / np.maximum(gn[..., None] * hn, 1e-300)
        per = lr * dots * self.weights[None] / self.n                     # (Rm, C, n)
        return per @ self.membership.T

    def _contraction(self, g: np.ndarray, xg: np.ndarray, res: np.ndarray, w: np.ndarray,
                     b: int, idx: np.ndarray, lr: float) -> np.ndarray:
        r""":math:`\rho_t` per run, ``(Rm, C)``: the batch Hessian's curvature along g."""
        mean = mean_prediction(self.model, res, self.y[idx][:, None, :])
        quad = np.einsum("rcbk,rcbk->rcb", xg, curvature_product(self.model, mean, xg))
        curv = np.einsum("rcb,rcb->rc", w, quad) / b
        gg = np.einsum("rcpk,rcpk->rc", g, g)
        curv = curv + self.l2 * np.einsum("rcpk,rcpk->rc", g[:, :, :self.p_reg],
                                          g[:, :, :self.p_reg])
        return np.clip(1 - lr * curv / np.maximum(gg, 1e-300), 0.0, 1.0)

    def on_end(self, params: np.ndarray) -> None:
        if self.fast:
            t0 = time.perf_counter()
            self._flush_all()
            if isinstance(self.acc, FineAccumulator):
                self.acc.discount(self._pending[..., None])   # steps after the last logged
                self._pending = np.ones_like(self._pending)
            if self._adjoint:
                self.adjoint_effect = self._backward(params)
            self.seconds += time.perf_counter() - t0
        self.final_target = target_value(self.model, params, self.X_t, self.y_t,
                                         self.target)                     # (R, C)

    # ------------------------------------------------------------------ results
    def spread(self) -> tuple[np.ndarray, int]:
        """Standard deviation of the final target over all replicas (per column) and K."""
        if self.final_target is None:
            raise RuntimeError("training has not finished")
        k = int(self.final_target.shape[0])
        if k < 2:
            return np.full(self.final_target.shape[1], np.nan), k
        return self.final_target.std(axis=0, ddof=1), k

    def results(self) -> list:
        """Stage 2: nested ``[run][column]`` lists of :class:`finf_stats.InfluenceResults`."""
        if self._adjoint:
            return self._adjoint_results()
        if self.config.scaling != "spread":
            return self.acc.results()
        s, k = self.spread()
        if k < 2:
            raise ValueError("scaling='spread' needs at least 2 replicas for the target's "
                             "spread (use decorrelation='did' or several runs)")
        spread = np.broadcast_to(s[None, :], (self.acc_runs, self.C))
        if self.acc_runs < 2 or self.acc_runs != self.R:
            return self.acc.results(spread=spread, n_spread=k)
        A = self.acc.effect_sum()                                # (R, C, S): every replica
        sd = np.broadcast_to(A.std(axis=0, ddof=1)[None], A.shape)
        return self.acc.results(spread=spread, n_spread=k, effect_sd=sd,
                                n_effect=self.acc_runs)[:self.n_runs]

    def _adjoint_results(self) -> list:
        """``discount="adjoint"``: the across-run interval of the backward-pass effect."""
        if self.adjoint_effect is None:
            raise RuntimeError("training has not finished")
        A = self.adjoint_effect                                          # (Ra, C, S)
        if A.shape[0] < 2:
            raise FineError("discount='adjoint' needs at least 2 replicas (use "
                            "decorrelation='did' or several runs) for the across-run spread")
        s, k = self.spread()
        sd = A.std(axis=0, ddof=1)
        steps = np.full(self.n_cand, self.acc_steps)
        return [[across_run_results(A[r, c], s[c], sd[c], n_spread=k, n_effect=A.shape[0],
                                    n_steps=steps, confidence=self.config.confidence)
                 for c in range(self.C)] for r in range(self.n_runs)]


@dataclass
class FineRun:
    """The outcome of :func:`run_fine`: the capture, final parameters and timings."""

    capture: FineCapture
    params: np.ndarray
    seconds: float
    capture_seconds: float
    seeds: np.ndarray

    def results(self) -> list:
        """Per run, the :class:`finf_stats.InfluenceResults` of column 0."""
        return [row[0] for row in self.capture.results()]


def run_fine(recipe: Recipe, X: np.ndarray, y: np.ndarray, X_t: np.ndarray, y_t: np.ndarray,
             candidates: np.ndarray | list[np.ndarray],
             config: FineConfig | str = DEFAULT_PRESET, *,
             seeds: np.ndarray | list[int] = (0,), weights: np.ndarray | None = None,
             observers: tuple = (), target: str = "loss", chunk_steps: int = 64,
             fast: bool = True) -> FineRun:
    """Train ``len(seeds)`` single runs (and their auxiliary runs) with f-INE capture.

    ``X_t`` has *no* intercept column (it is added like the engine adds it to ``X``). The
    auxiliary run of seed ``s`` uses seed ``s + AUX_SEED_OFFSET``. Extra ``observers`` (e.g.
    :class:`simulations.baselines.TracInObserver`) see all replicas.
    """
    seeds = np.asarray(seeds, dtype=np.int64)
    Xt = design_matrix(np.asarray(X_t, dtype=float), recipe.fit_intercept)
    cap = FineCapture(Xt, y_t, candidates, config, n_runs=len(seeds), target=target,
                      chunk_steps=chunk_steps, fast=fast)
    all_seeds = np.concatenate([seeds, seeds + AUX_SEED_OFFSET]) if cap.uses_aux else seeds
    t0 = time.perf_counter()
    params = train(recipe, X, y, weights, seeds=all_seeds, observers=(cap, *observers))
    return FineRun(capture=cap, params=params, seconds=time.perf_counter() - t0,
                   capture_seconds=cap.seconds, seeds=all_seeds)


__all__ = ["AUX_SEED_OFFSET", "FineCapture", "FineRun", "run_fine"]
