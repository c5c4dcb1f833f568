r"""f-INE Stage 2: from per-step signals of one training run to a signed Gaussian influence.

This module knows nothing about models. A capture observer (for example
:mod:`simulations.capture`) calls :meth:`FineAccumulator.update` once per logged training step
with, for every candidate subset :math:`S`,

* ``effect`` :math:`c_t(S) = \eta_t\,\mathrm{sim}(g_t, h_t(S))/b`, the first-order effect of S on
  the decrease of the target loss at step t (zero when S did not act at this step),
* ``base`` :math:`\mathrm{base}_t(S)`, the observed first-order decrease of the target loss at
  step t *without* S's contribution,
* ``aux`` :math:`\widehat{\mathrm{base}}_t`, the same decrease on an auxiliary run of the same
  recipe with another seed (needed by the difference-in-differences decorrelation),
* optionally ``contraction`` :math:`\rho_t \in (0, 1]`, how much a perturbation of the
  parameters along the target gradient survives step t (used by ``discount="contraction"``).

``discount="adjoint"`` replaces the scalar contraction by the exact first-order response: the
capture carries the final target's gradient back through the steps' batch Hessians,
:math:`v_T = \nabla\ell(\theta_T)`, :math:`v_t = (I - \eta_t H_{B_t}(\theta_t))\,v_{t+1}`,
and the effect of step t is :math:`c_t(S) = \eta_t\,v_{t+1}^\top h_t(S)/b` (or its
expectation over the batch, :math:`/N`), so :math:`A = \sum_t c_t` is the linearised change
of the final target when S is left out (as in SGD-influence, Hara et al. 2019). It needs the
run's trajectory, so it is computed after training (:func:`across_run_results` turns it into
:math:`\mu`; only ``scaling="spread"``).

Per-step signals (METHOD §6), all *decreases* of the target loss (larger = better):

.. math::

    O_t(S) = \mathrm{base}_t(S) + c_t(S) - d_t,\qquad O'_t(S) = \mathrm{base}_t(S) - d_t,

with the detrending term :math:`d_t = 0` (``decorrelation="none"``),
:math:`d_t = \mathrm{base}_{t^-}(S)` the candidate's previous logged base
(``"diff"``, first differences) or :math:`d_t = \widehat{\mathrm{base}}_t` (``"did"``,
difference-in-differences against the auxiliary run). :math:`O` are samples of P (with S),
:math:`O'` samples of Q (without S). Because the project's sign convention is stated for a
*loss* (METHOD §2: reject H0 when the loss is large), Stage 2 hands :math:`-O` and
:math:`-O'` to :func:`finf_stats.influence_from_samples`; hence
:math:`\mu_\mathrm{step} > 0` when S increases the per-step decrease, i.e. S helps the target.

Scaling to the whole trajectory (``scaling``):

* ``"sqrt_steps"`` (paper, Cor. 2.7): :math:`\mu = \sqrt{T_S}\,\mu_\mathrm{step}` with
  :math:`T_S` the number of logged steps of S; with ``discount="contraction"`` the factor is
  the effective :math:`W_1/\sqrt{W_2}`, :math:`W_k = \sum_t w_t^k`,
  :math:`w_t = \prod_{s>t}\rho_s`.
* ``"sum"`` (METHOD §3.3, the sum form): :math:`\mu = \sum_t w_t c_t / \sqrt{\sum_t w_t^2
  \hat\sigma_t^2}` with :math:`\hat\sigma_t^2` the within-block variance of :math:`O'`
  (blocks of ``block`` logged steps). It equals ``sqrt_steps`` with ``binormal`` for a
  constant effect and stationary noise, and is robust to slow trends in the base, which a
  pooled standard deviation would count as noise.
* ``"spread"`` (calibrated variant, ``docs/fine_variants.md``): :math:`\mu = \sum_t w_t c_t /
  s_K` with :math:`s_K` the standard deviation of the final target over K runs of the recipe,
  passed to :meth:`FineAccumulator.results`.
* ``"none"``: :math:`\mu_\mathrm{step}` itself.

Memory. Running moments (Welford), the effect sums and the discount weights cost
:math:`O(n)` for n candidates whatever the number of steps T. The sample-based estimators
(``threshold-max``, ``auc``, ``probit``) need the per-step samples themselves, so the
storage is an explicit choice (``storage``): ``"buffer"`` keeps every logged pair in a
float32 array of shape (candidates, logged steps) (the only option that grows with
:math:`T\times n`, and only when asked), ``"disk"`` the same array memory-mapped to a ``.npy``
file in ``store_dir``, ``"reservoir"`` a uniform sample of ``reservoir_size`` logged steps per
candidate (Vitter's algorithm R; memory :math:`O(n\cdot m)`, independent of T; a noisier but
unbiased sample of the per-step law) and ``"moments"`` nothing but the moments (only the
``binormal`` estimator, computed from the moments, and the ``sum``/``spread`` scalings).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import stats

Logging = Literal["every", "in_batch", "every_k"]
Effect = Literal["actual", "expected"]
Similarity = Literal["dot", "cosine"]
Decorrelation = Literal["none", "diff", "did"]
Estimator = Literal["threshold-max", "binormal", "auc", "probit"]
Scaling = Literal["sqrt_steps", "sum", "spread", "none"]
Discount = Literal["none", "contraction", "adjoint"]
Storage = Literal["buffer", "disk", "reservoir", "moments"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "logging": ("every", "in_batch", "every_k"),
    "effect": ("actual", "expected"),
    "similarity": ("dot", "cosine"),
    "decorrelation": ("none", "diff", "did"),
    "estimator": ("threshold-max", "binormal", "auc", "probit"),
    "scaling": ("sqrt_steps", "sum", "spread", "none"),
    "discount": ("none", "contraction", "adjoint"),
    "storage": ("buffer", "disk", "reservoir", "moments"),
}


class FineError(ValueError):
    """An f-INE option or input that cannot be used (the message says which and why)."""


@dataclass(frozen=True)
class FineConfig:
    """Every option of f-INE, recorded in the run config (``to_dict``/``from_dict``).

    Stage 1 (read by the capture observer)

    logging
        Which steps are logged: ``"every"`` step, only the steps whose batch contains S
        (``"in_batch"``) or every ``every_k``-th step (``"every_k"``, checkpoints as in
        TracInCP).
    every_k
        The period for ``logging="every_k"``.
    effect
        ``"actual"``: :math:`c_t(S) = \\eta_t\\,\\mathrm{sim}(g_t,h_t(S))/b` when S is in the
        batch of step t, else 0 (the realised first-order effect). ``"expected"``: its
        expectation over the batch draw, :math:`\\eta_t\\,\\mathrm{sim}(g_t,h_t(S))/N` at every
        logged step (TracInCP-like; smooth, no batch sparsity).
    similarity
        ``"dot"`` or ``"cosine"`` between target and candidate gradients.

    Stage 2 (this module)

    decorrelation
        ``"none"``, ``"diff"`` (first differences of the base) or ``"did"``
        (difference-in-differences against an auxiliary run).
    estimator
        The two-sample estimator of :func:`finf_stats.influence_from_samples`.
    scaling, discount, block
        See the module docstring. ``block`` is the block length (logged steps) of the
        heteroscedastic ``"sum"`` form.
    storage, reservoir_size, store_dir
        See the module docstring.
    confidence, seed, n_bootstrap, n_null
        Passed to the estimator.
    name
        The preset name (a key of :data:`PRESETS`) or ``"custom"``.
    """

    logging: Logging = "every"
    every_k: int = 1
    effect: Effect = "actual"
    similarity: Similarity = "dot"
    decorrelation: Decorrelation = "did"
    estimator: Estimator = "threshold-max"
    scaling: Scaling = "sqrt_steps"
    discount: Discount = "none"
    block: int = 16
    storage: Storage = "buffer"
    reservoir_size: int = 512
    store_dir: str | None = None
    confidence: float = 0.95
    seed: int = 0
    n_bootstrap: int = 200
    n_null: int = 500
    name: str = "paper"

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise FineError(f"FineConfig.{key}={value!r}; use one of {allowed}")
        if self.every_k < 1 or self.block < 2 or self.reservoir_size < 2:
            raise FineError("FineConfig needs every_k >= 1, block >= 2, reservoir_size >= 2")
        if self.storage == "moments" and self.estimator != "binormal" \
                and self.scaling in ("sqrt_steps", "none"):
            raise FineError(f"storage='moments' keeps no samples, so estimator "
                            f"{self.estimator!r} cannot run; use estimator='binormal', a "
                            "sample storage ('buffer', 'disk', 'reservoir') or scaling "
                            "'sum'/'spread'")
        if self.storage == "disk" and not self.store_dir:
            raise FineError("storage='disk' needs store_dir (a folder for the .npy store)")
        if self.logging == "in_batch" and self.effect == "expected":
            raise FineError("logging='in_batch' logs only steps where S acts; "
                            "effect='expected' needs 'every' or 'every_k' logging")
        if not 0 < self.confidence < 1:
            raise FineError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.discount == "adjoint" and (self.scaling != "spread"
                                           or self.logging != "every"
                                           or self.similarity != "dot"):
            raise FineError("discount='adjoint' gives the effect sum after training: it needs "
                            "scaling='spread', logging='every' and similarity='dot'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FineConfig:
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise FineError(f"unknown FineConfig fields: {sorted(unknown)}")
        return cls(**data)


#: Named presets. ``paper`` is METHOD §6's reconstruction of the paper; the others are the
#: variants of docs/fine_variants.md: the one-run first-order effect over the K-run spread of
#: the target, discounted by the exact backward response (``adjoint``, realised effect;
#: ``adjoint-expected``, its expectation over the batch draw) or by the scalar contraction
#: along the target gradient (``calibrated``, ``calibrated-realised``).
PRESETS: dict[str, FineConfig] = {
    "paper": FineConfig(),
    "calibrated": FineConfig(effect="expected", scaling="spread", discount="contraction",
                             estimator="binormal", storage="moments", name="calibrated"),
    "calibrated-realised": FineConfig(effect="actual", scaling="spread",
                                      discount="contraction", estimator="binormal",
                                      storage="moments", name="calibrated-realised"),
    "adjoint": FineConfig(effect="actual", scaling="spread", discount="adjoint",
                          estimator="binormal", storage="moments", name="adjoint"),
    "adjoint-expected": FineConfig(effect="expected", scaling="spread", discount="adjoint",
                                   estimator="binormal", storage="moments",
                                   name="adjoint-expected"),
}

#: the preset used when none is named: ``adjoint`` since the calibration study of
#: ``docs/fine_variants.md`` (``finf demo``): against the 1000-retrain ground truth it ranks
#: candidates best (Spearman 0.95), is the most consistent across runs (top-10% Jaccard 0.83),
#: has the smallest error (median 0.04) and the best coverage; and it is cheap (O(b) per step
#: plus a backward pass). The bare ``FineConfig()`` stays the paper's reconstruction.
DEFAULT_PRESET = "adjoint"


def fine_config(preset: str | FineConfig = DEFAULT_PRESET, **overrides: Any) -> FineConfig:
    """A :class:`FineConfig` from a preset name (or a config) with field overrides.

    The result is named ``"custom"`` when overrides change a preset, so run configs never
    claim a preset they do not match.
    """
    if isinstance(preset, FineConfig):
        base = preset
    else:
        if preset not in PRESETS:
            raise FineError(f"unknown f-INE preset {preset!r}; use one of {sorted(PRESETS)}")
        base = PRESETS[preset]
    if not overrides:
        return base
    cfg = dataclasses.replace(base, **overrides)
    if "name" not in overrides and cfg != base:
        cfg = dataclasses.replace(cfg, name="custom")
    return cfg


class FineAccumulator:
    r"""Streaming per-candidate accumulator of f-INE signals (Stage 2).

    Parameters
    ----------
    n_candidates
        Number of candidate subsets n.
    config
        The options (:class:`FineConfig`).
    batch_shape
        Leading shape of independent runs captured together, e.g. ``(R,)`` for R single runs
        trained as one batch; every array passed to :meth:`update` has shape
        ``batch_shape + (n_candidates,)`` (or broadcasts to it).
    n_steps
        The number of steps that will be logged (an upper bound). Required by
        ``storage="disk"``; lets ``"buffer"`` allocate once.

    Notes
    -----
    Memory is :math:`O(M)` for :math:`M = \prod\mathrm{batch\_shape}\cdot n` plus the sample
    store chosen by ``config.storage`` (see the module docstring).
    """

    def __init__(self, n_candidates: int, config: FineConfig | str = DEFAULT_PRESET, *,
                 batch_shape: tuple[int, ...] = (), n_steps: int | None = None) -> None:
        if n_candidates < 1:
            raise FineError("f-INE needs at least one candidate")
        self.config = fine_config(config) if isinstance(config, str) else config
        self.shape = tuple(batch_shape) + (int(n_candidates),)
        self.size = int(np.prod(self.shape))
        self.n_steps = n_steps
        m = self.size
        self.count = np.zeros(m, dtype=np.int64)        # logged pairs per candidate
        self.steps_seen = 0
        self._prev_base = np.zeros(m)
        self._has_prev = np.zeros(m, dtype=bool)
        # Welford moments of O (with S) and O' (without S)
        self._mean_p = np.zeros(m)
        self._m2_p = np.zeros(m)
        self._mean_q = np.zeros(m)
        self._m2_q = np.zeros(m)
        # discounted sums: A = sum w_t c_t, W1 = sum w_t, W2 = sum w_t^2, V = sum w_t^2 s_t^2
        self._A = np.zeros(m)
        self._W1 = np.zeros(m)
        self._W2 = np.zeros(m)
        self._V = np.zeros(m)
        self._sum_effect = np.zeros(m)
        # running block of O' for the heteroscedastic sum form
        self._b_n = np.zeros(m, dtype=np.int64)
        self._b_mean = np.zeros(m)
        self._b_m2 = np.zeros(m)
        self._b_w2 = np.zeros(m)     # sum of w^2 of the steps in the block (discounted lazily)
        self._rng = np.random.default_rng(self.config.seed)
        self._store_p: np.ndarray | None = None
        self._store_q: np.ndarray | None = None
        storage = self.config.storage
        if storage in ("buffer", "disk"):
            cap = n_steps if n_steps is not None else 64
            if storage == "disk":
                if n_steps is None:
                    raise FineError("storage='disk' needs n_steps (the number of logged steps)")
                folder = Path(self.config.store_dir or ".")
                folder.mkdir(parents=True, exist_ok=True)
                self._store_p = np.lib.format.open_memmap(
                    os.fspath(folder / "fine_with_s.npy"), mode="w+", dtype=np.float32,
                    shape=(m, cap))
                self._store_q = np.lib.format.open_memmap(
                    os.fspath(folder / "fine_without_s.npy"), mode="w+", dtype=np.float32,
                    shape=(m, cap))
                self._store_p[:] = np.nan
                self._store_q[:] = np.nan
            else:
                self._store_p = np.full((m, cap), np.nan, dtype=np.float32)
                self._store_q = np.full((m, cap), np.nan, dtype=np.float32)
        elif storage == "reservoir":
            r = self.config.reservoir_size
            self._store_p = np.full((m, r), np.nan, dtype=np.float32)
            self._store_q = np.full((m, r), np.nan, dtype=np.float32)

    @classmethod
    def from_samples(cls, with_signal: np.ndarray, without_signal: np.ndarray,
                     config: FineConfig | str = "paper") -> FineAccumulator:
        r"""An accumulator in the state it would reach after streaming these signals.

        ``with_signal`` :math:`O` and ``without_signal`` :math:`O'` have shape
        ``batch_shape + (n, T)`` (already decorrelated; no discount). Used by sparse
        captures that record the run-level series and the candidates' events and build the
        samples once at the end (:class:`EventFineAccumulator`).
        """
        p = np.asarray(with_signal, dtype=float)
        q = np.asarray(without_signal, dtype=float)
        if p.shape != q.shape or p.ndim < 2:
            raise FineError(f"signals must have equal shapes (..., n, T), got {p.shape}, {q.shape}")
        cfg = fine_config(config) if isinstance(config, str) else config
        if cfg.storage == "disk":
            cfg = dataclasses.replace(cfg, storage="buffer")
        T = p.shape[-1]
        acc = cls(p.shape[-2], cfg, batch_shape=p.shape[:-2], n_steps=T)
        P = p.reshape(acc.size, T)
        Q = q.reshape(acc.size, T)
        acc.count[:] = T
        acc.steps_seen = T
        acc._mean_p = P.mean(axis=1)
        acc._m2_p = ((P - acc._mean_p[:, None]) ** 2).sum(axis=1)
        acc._mean_q = Q.mean(axis=1)
        acc._m2_q = ((Q - acc._mean_q[:, None]) ** 2).sum(axis=1)
        acc._A = (P - Q).sum(axis=1)
        acc._sum_effect = acc._A.copy()
        acc._W1[:] = T
        acc._W2[:] = T
        nb = T // cfg.block
        if nb:
            blocks = Q[:, :nb * cfg.block].reshape(acc.size, nb, cfg.block)
            acc._V = blocks.var(axis=2, ddof=1).sum(axis=1) * cfg.block
        rest = Q[:, nb * cfg.block:]
        if rest.shape[1]:
            acc._b_n[:] = rest.shape[1]
            acc._b_mean = rest.mean(axis=1)
            acc._b_m2 = ((rest - acc._b_mean[:, None]) ** 2).sum(axis=1)
            acc._b_w2[:] = rest.shape[1]
        if cfg.storage == "buffer":
            acc._store_p = P.astype(np.float32)
            acc._store_q = Q.astype(np.float32)
        elif cfg.storage == "reservoir":
            m = min(cfg.reservoir_size, T)
            cols = np.sort(acc._rng.choice(T, size=m, replace=False))
            acc._store_p = np.full((acc.size, cfg.reservoir_size), np.nan, dtype=np.float32)
            acc._store_q = np.full((acc.size, cfg.reservoir_size), np.nan, dtype=np.float32)
            acc._store_p[:, :m] = P[:, cols]
            acc._store_q[:, :m] = Q[:, cols]
        return acc

    # ------------------------------------------------------------------ streaming
    def update(self, effect: np.ndarray, base: np.ndarray | float,
               aux: np.ndarray | float | None = None, logged: np.ndarray | None = None,
               contraction: np.ndarray | float | None = None) -> None:
        r"""Add one logged training step.

        Parameters
        ----------
        effect
            :math:`c_t(S)`, shape ``batch_shape + (n,)``.
        base
            :math:`\mathrm{base}_t(S)`, the decrease without S; broadcasts to that shape (a
            run-level scalar per run, shape ``batch_shape + (1,)``, is typical).
        aux
            :math:`\widehat{\mathrm{base}}_t` of the auxiliary run (required by ``"did"``).
        logged
            Boolean mask of the candidates this step is logged for (``logging="in_batch"``);
            ``None`` logs all.
        contraction
            :math:`\rho_t`; with ``discount="contraction"`` every earlier contribution is
            multiplied by it before this step is added. ``None`` means 1.
        """
        cfg = self.config
        c = np.broadcast_to(np.asarray(effect, dtype=float), self.shape).reshape(-1)
        b = np.broadcast_to(np.asarray(base, dtype=float), self.shape).reshape(-1)
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(b))):
            raise FineError(f"non-finite f-INE signal at logged step {self.steps_seen} "
                            "(did training diverge?)")
        mask = (np.ones(self.size, dtype=bool) if logged is None else
                np.broadcast_to(np.asarray(logged, dtype=bool), self.shape).reshape(-1))
        rho = 1.0 if contraction is None or cfg.discount == "none" else \
            np.broadcast_to(np.asarray(contraction, dtype=float), self.shape).reshape(-1)
        self.steps_seen += 1
        if cfg.discount == "contraction":
            # every earlier step's weight w_s is multiplied by rho_t (also for unlogged ones)
            self._A *= rho
            self._W1 *= rho
            self._W2 *= rho * rho
            self._V *= rho * rho
            self._b_w2 *= rho * rho
        if cfg.decorrelation == "did":
            if aux is None:
                raise FineError("decorrelation='did' needs the auxiliary run's base (aux)")
            d = np.broadcast_to(np.asarray(aux, dtype=float), self.shape).reshape(-1)
        elif cfg.decorrelation == "diff":
            d = self._prev_base.copy()
            first = mask & ~self._has_prev
            self._prev_base = np.where(mask, b, self._prev_base)
            self._has_prev |= mask
            mask = mask & ~first          # the first logged step has no predecessor
        else:
            d = 0.0
        q = b - d
        p = q + c
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return
        p_i, q_i, c_i = p[idx], q[idx], c[idx]
        n_new = self.count[idx] + 1
        # Welford
        delta = p_i - self._mean_p[idx]
        self._mean_p[idx] += delta / n_new
        self._m2_p[idx] += delta * (p_i - self._mean_p[idx])
        delta = q_i - self._mean_q[idx]
        self._mean_q[idx] += delta / n_new
        self._m2_q[idx] += delta * (q_i - self._mean_q[idx])
        self._A[idx] += c_i
        self._W1[idx] += 1.0
        self._W2[idx] += 1.0
        self._sum_effect[idx] += c_i
        self._block_update(idx, q_i)
        self._store(idx, p_i, q_i)
        self.count[idx] = n_new

    def discount(self, contraction: np.ndarray | float) -> None:
        r"""Apply the contraction :math:`\rho` of unlogged steps to every earlier contribution.

        With ``logging="every_k"`` the steps between two logged ones still contract what
        came before (:math:`w_t = \prod_{s>t}\rho_s` runs over *all* steps); a capture may
        pass their product here (or fold it into the next :meth:`update`). No-op without
        ``discount="contraction"``.
        """
        if self.config.discount != "contraction":
            return
        rho = np.broadcast_to(np.asarray(contraction, dtype=float), self.shape).reshape(-1)
        self._A *= rho
        self._W1 *= rho
        self._W2 *= rho * rho
        self._V *= rho * rho
        self._b_w2 *= rho * rho

    def _block_update(self, idx: np.ndarray, q: np.ndarray) -> None:
        n = self._b_n[idx] + 1
        delta = q - self._b_mean[idx]
        self._b_mean[idx] += delta / n
        self._b_m2[idx] += delta * (q - self._b_mean[idx])
        self._b_w2[idx] += 1.0
        self._b_n[idx] = n
        full = idx[n >= self.config.block]
        if full.size:
            self._flush_block(full)

    def _flush_block(self, idx: np.ndarray) -> None:
        n = self._b_n[idx]
        ok = n >= 2
        var = np.where(ok, self._b_m2[idx] / np.maximum(n - 1, 1), 0.0)
        self._V[idx] += self._b_w2[idx] * var
        self._b_n[idx] = 0
        self._b_mean[idx] = 0.0
        self._b_m2[idx] = 0.0
        self._b_w2[idx] = 0.0

    def _store(self, idx: np.ndarray, p: np.ndarray, q: np.ndarray) -> None:
        storage = self.config.storage
        if self._store_p is None:
            return
        k = self.count[idx]
        if storage == "reservoir":
            r = self.config.reservoir_size
            slot = np.where(k < r, k, self._rng.integers(0, np.maximum(k + 1, 1)))
            keep = slot < r
            rows, slot = idx[keep], slot[keep]
            self._store_p[rows, slot] = p[keep]
            self._store_q[rows, slot] = q[keep]
            return
        need = int(k.max()) + 1
        if need > self._store_p.shape[1]:
            if storage == "disk":
                raise FineError(f"more logged steps than n_steps={self.n_steps} declared for "
                                "the disk store")
            grow = max(need, 2 * self._store_p.shape[1])
            for name in ("_store_p", "_store_q"):
                old = getattr(self, name)
                new = np.full((self.size, grow), np.nan, dtype=np.float32)
                new[:, :old.shape[1]] = old
                setattr(self, name, new)
        self._store_p[idx, k] = p
        self._store_q[idx, k] = q

    # ------------------------------------------------------------------ read out
    def signals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored per-step samples ``(O, O', counts)``.

        ``O`` and ``O'`` have shape ``batch_shape + (n, slots)`` (float32, NaN beyond a
        candidate's count); ``counts`` the number of valid samples of each candidate.
        """
        if self._store_p is None:
            raise FineError("storage='moments' keeps no per-step samples")
        slots = self._store_p.shape[1]
        counts = np.minimum(self.count, slots)
        used = int(counts.max()) if counts.size else 0
        shape = self.shape + (used,)
        return (np.asarray(self._store_p[:, :used]).reshape(shape),
                np.asarray(self._store_q[:, :used]).reshape(shape),
                counts.reshape(self.shape))

    def effect_sum(self, discounted: bool = True) -> np.ndarray:
        r""":math:`\sum_t w_t c_t` (or the plain :math:`\sum_t c_t`), shape
        ``batch_shape + (n,)``: a TracIn-like score of the run."""
        return (self._A if discounted else self._sum_effect).reshape(self.shape).copy()

    def step_sd(self) -> np.ndarray:
        """Standard deviation of the per-step signal without S, per candidate."""
        return np.sqrt(self._m2_q / np.maximum(self.count - 1, 1)).reshape(self.shape)

    def scale_factor(self) -> np.ndarray:
        r"""The composition factor of ``"sqrt_steps"``: :math:`W_1/\sqrt{W_2}`
        (:math:`\sqrt{T_S}` without discount)."""
        return (self._W1 / np.sqrt(np.maximum(self._W2, 1e-300))).reshape(self.shape)

    def results(self, spread: np.ndarray | float | None = None,
                n_spread: int | None = None, effect_sd: np.ndarray | None = None,
                n_effect: int | None = None) -> Any:
        r"""Stage 2: the signed influence of every candidate.

        Parameters
        ----------
        spread
            For ``scaling="spread"``: the standard deviation :math:`s_K` of the final target
            over K runs of the recipe (a scalar, or one per run of ``batch_shape``).
        n_spread
            K, the number of runs behind ``spread``; ``None`` treats ``spread`` as exact.
        effect_sd, n_effect
            For ``scaling="spread"``: the across-run standard deviation
            :math:`\mathrm{sd}_K(A)` of the discounted one-run effect
            :math:`A = \sum_t w_t c_t` over ``n_effect`` runs (shape ``(n,)`` or
            ``batch_shape + (n,)``). With it the interval is the across-run one:

            .. math::

                \hat\mu = A/s_K,\qquad
                \widehat{\mathrm{se}}^2 = \frac{\mathrm{sd}_K(A)^2}{s_K^2}
                + \frac{\hat\mu^2}{2(K_s-1)},\qquad
                \hat\mu \pm t_{K_e-1,\,1-a/2}\,\widehat{\mathrm{se}},

            the variability of a single run's :math:`A` around its mean over runs plus the
            delta-method variance of :math:`1/s_K` (chi-square, :math:`K_s` = ``n_spread``);
            the p-value of :math:`\mu = 0` is that of :math:`t = A/\mathrm{sd}_K(A)` on
            :math:`K_e - 1` degrees of freedom (:math:`s_K` only scales). It does *not*
            contain the first-order error :math:`E[A] - E[\ell(D\setminus S) - \ell(D)]`.
            Without ``effect_sd`` the interval is the older one (relative width of the
            per-step binormal interval and the chi-square interval of :math:`s_K`), which
            measures per-step noise, not run-to-run variability (kept for comparison).

        Returns
        -------
        InfluenceResults or list
            One :class:`finf_stats.InfluenceResults` over the candidates; for a non-empty
            ``batch_shape`` a nested list of them, one per run.
        """
        if min(self.count) < 3 and self.config.scaling in ("sqrt_steps", "none"):
            raise FineError(f"f-INE needs at least 3 logged steps per candidate; the fewest "
                            f"logged is {int(min(self.count))}")
        flat = self._results_flat(spread, n_spread, effect_sd, n_effect)
        if len(self.shape) == 1:
            return flat
        return _split(flat, self.shape)

    def _results_flat(self, spread: Any, n_spread: int | None, effect_sd: Any = None,
                      n_effect: int | None = None) -> Any:
        from finf_stats.results import InfluenceResults

        cfg = self.config
        step = self._step_estimates()
        if cfg.scaling == "none":
            return step
        if cfg.scaling == "sqrt_steps":
            f = self.scale_factor().reshape(-1)
            return dataclasses.replace(step, mu=step.mu * f, ci_low=step.ci_low * f,
                                       ci_high=step.ci_high * f,
                                       method=f"fine[{step.method}, sqrt_steps]")
        num = self._A.copy()
        if cfg.scaling == "sum":
            # close the running block without mutating the state
            n = self._b_n
            var_open = np.where(n >= 2, self._b_m2 / np.maximum(n - 1, 1),
                                self._m2_q / np.maximum(self.count - 1, 1))
            den = np.sqrt(np.maximum(self._V + self._b_w2 * var_open, 1e-300))
            lo_f = hi_f = den
        else:
            if spread is None:
                raise FineError("scaling='spread' needs spread= (sd of the target over K runs)")
            s = np.broadcast_to(np.asarray(spread, dtype=float)[..., None]
                                if np.ndim(spread) else np.asarray(spread, dtype=float),
                                self.shape).reshape(-1)
            if np.any(~(s > 0)):
                raise FineError("spread must be positive")
            den = s
            if effect_sd is not None:
                return self._across_run_interval(num, s, effect_sd, n_spread, n_effect)
            if n_spread is not None and n_spread >= 2:
                a = 1 - cfg.confidence
                df = n_spread - 1
                lo_f = s * np.sqrt(df / stats.chi2.ppf(1 - a / 2, df))   # sd lower bound
                hi_f = s * np.sqrt(df / stats.chi2.ppf(a / 2, df))       # sd upper bound
            else:
                lo_f = hi_f = s
        mu = num / den
        # interval: the step estimator's relative uncertainty on the effect, and the spread's
        rel_lo = np.where(np.isfinite(step.mu) & (step.mu != 0),
                          step.ci_low / np.where(step.mu == 0, 1, step.mu), np.nan)
        rel_hi = np.where(np.isfinite(step.mu) & (step.mu != 0),
                          step.ci_high / np.where(step.mu == 0, 1, step.mu), np.nan)
        lo_eff = np.minimum(num * rel_lo, num * rel_hi)
        hi_eff = np.maximum(num * rel_lo, num * rel_hi)
        cand = np.stack([lo_eff / lo_f, lo_eff / hi_f, hi_eff / lo_f, hi_eff / hi_f])
        ci_low = np.nanmin(cand, axis=0)
        ci_high = np.nanmax(cand, axis=0)
        ci_low = np.where(np.isfinite(ci_low), np.minimum(ci_low, mu), mu)
        ci_high = np.where(np.isfinite(ci_high), np.maximum(ci_high, mu), mu)
        return InfluenceResults(
            mu=mu, ci_low=ci_low, ci_high=ci_high, p_value=step.p_value,
            method=f"fine[{step.method}, {cfg.scaling}]", n_with=step.n_with,
            n_without=step.n_without, confidence=cfg.confidence,
            probit_slope=step.probit_slope, max_gap=step.max_gap)

    def _across_run_interval(self, num: np.ndarray, s: np.ndarray, effect_sd: Any,
                             n_spread: int | None, n_effect: int | None) -> Any:
        """The across-run interval of ``scaling="spread"`` (see :meth:`results`)."""
        sd = np.broadcast_to(np.asarray(effect_sd, dtype=float), self.shape).reshape(-1)
        return across_run_results(num, s, sd, n_spread=n_spread, n_effect=n_effect,
                                  n_steps=self.count.copy(), confidence=self.config.confidence)

    def _step_estimates(self) -> Any:
        """The per-step estimator on every candidate's samples (flat, length M)."""
        cfg = self.config
        if cfg.storage == "moments" or (cfg.estimator == "binormal" and self._store_p is None):
            return self._binormal_from_moments()
        from finf_stats import influence_from_samples
        from finf_stats.results import InfluenceResults

        p, q, counts = self.signals()
        p = p.reshape(self.size, -1)
        q = q.reshape(self.size, -1)
        counts = counts.reshape(-1)
        fields = {k: np.full(self.size, np.nan) for k in
                  ("mu", "ci_low", "ci_high", "p_value", "probit_slope", "max_gap")}
        n_with = np.zeros(self.size, dtype=np.int64)
        method = cfg.estimator
        for k in np.unique(counts):
            rows = np.flatnonzero(counts == k)
            if k < 3:
                continue
            # signals are decreases; the estimator expects a loss (reject H0 when large)
            res = influence_from_samples(-p[rows, :k].astype(float), -q[rows, :k].astype(float),
                                         method=cfg.estimator, confidence=cfg.confidence,
                                         seed=cfg.seed, n_bootstrap=cfg.n_bootstrap,
                                         n_null=cfg.n_null)
            for key in fields:
                fields[key][rows] = np.asarray(getattr(res, key), dtype=float)
            n_with[rows] = k
            method = res.method
        return InfluenceResults(method=method, n_with=n_with, n_without=n_with.copy(),
                                confidence=cfg.confidence, **fields)

    def _binormal_from_moments(self) -> Any:
        r"""Binormal :math:`\hat\mu = (\bar O - \bar O')/s_\mathrm{pooled}` from the moments,
        with the large-sample interval :math:`\hat\mu \pm z\sqrt{2/n + \hat\mu^2/(4n)}`."""
        from finf_stats.results import InfluenceResults

        n = self.count.astype(float)
        var = (self._m2_p + self._m2_q) / np.maximum(2 * n - 2, 1)
        sd = np.sqrt(var)
        diff = self._mean_p - self._mean_q
        with np.errstate(divide="ignore", invalid="ignore"):
            mu = np.where(sd > 0, diff / np.where(sd > 0, sd, 1),
                          np.sign(diff) * np.inf)
            se = np.sqrt(2 / np.maximum(n, 1) + np.where(np.isfinite(mu), mu, 0) ** 2
                         / (4 * np.maximum(n, 1)))
        z = stats.norm.ppf(0.5 + self.config.confidence / 2)
        mu_f = np.where(np.isfinite(mu), mu, 0.0)
        p_value = np.where(np.isfinite(mu), 2 * stats.norm.sf(np.abs(mu_f) / se), 0.0)
        lo = np.where(np.isfinite(mu), mu_f - z * se, np.where(mu > 0, 0.0, -np.inf))
        hi = np.where(np.isfinite(mu), mu_f + z * se, np.where(mu > 0, np.inf, 0.0))
        count = self.count.copy()
        return InfluenceResults(mu=mu, ci_low=lo, ci_high=hi, p_value=p_value,
                                method="binormal-moments", n_with=count, n_without=count.copy(),
                                confidence=self.config.confidence,
                                probit_slope=np.full(self.size, np.nan),
                                max_gap=np.full(self.size, np.nan))


class EventFineAccumulator:
    r"""Sparse Stage-2 accumulator for the common case of the ``paper`` preset.

    With ``logging="every"``, ``effect="actual"`` and ``decorrelation`` ``"did"`` or
    ``"none"`` (no discount), a candidate's signals at step t are
    :math:`O_t(S) = q_t` and :math:`O'_t(S) = q_t - c_t(S)` with the *run-level* series
    :math:`q_t = d_t - \widehat{d}_t` (:math:`d_t` the observed decrease, :math:`\widehat d_t`
    the auxiliary run's), and :math:`c_t(S) \ne 0` only at the steps whose batch contains S.
    So a step costs :math:`O(b)` (the batch's events) instead of :math:`O(n)`, memory is
    :math:`T + (\text{number of events})` per run (:math:`T\cdot b`, not :math:`T\cdot n`),
    and the dense samples are built once, in :meth:`finalize`.

    Parameters
    ----------
    n_candidates, config, batch_shape
        As for :class:`FineAccumulator`.
    n_steps
        The number of steps of the run.
    """

    def __init__(self, n_candidates: int, config: FineConfig | str = "paper", *,
                 batch_shape: tuple[int, ...] = (), n_steps: int) -> None:
        self.config = fine_config(config) if isinstance(config, str) else config
        if not self.supports(self.config):
            raise FineError("EventFineAccumulator needs logging='every', effect='actual', "
                            "decorrelation 'did' or 'none' and discount='none'")
        self.shape = tuple(batch_shape) + (int(n_candidates),)
        self.runs = int(np.prod(batch_shape)) if batch_shape else 1
        self.n_steps = int(n_steps)
        self._q = np.zeros((self.runs, self.n_steps))
        self._ev_step: list[np.ndarray] = []
        self._ev_index: list[np.ndarray] = []
        self._ev_value: list[np.ndarray] = []
        self._t = 0

    @staticmethod
    def supports(config: FineConfig) -> bool:
        """Whether ``config`` has the sparse structure this class relies on."""
        return (config.logging == "every" and config.effect == "actual"
                and config.decorrelation in ("did", "none") and config.discount == "none")

    def update(self, decrease: np.ndarray, aux: np.ndarray | None, run_index: np.ndarray,
               candidate_index: np.ndarray, effect: np.ndarray) -> None:
        r"""Add one step.

        Parameters
        ----------
        decrease
            :math:`d_t` per run, shape ``batch_shape`` (the observed decrease *with* every
            candidate present).
        aux
            :math:`\widehat d_t` per run (``"did"``), or ``None`` (``"none"``).
        run_index, candidate_index, effect
            The events of this step: flat run index, candidate index and :math:`c_t(S)`.
        """
        if self._t >= self.n_steps:
            raise FineError(f"more steps than n_steps={self.n_steps}")
        d = np.asarray(decrease, dtype=float).reshape(self.runs)
        if self.config.decorrelation == "did":
            if aux is None:
                raise FineError("decorrelation='did' needs the auxiliary run's decrease")
            d = d - np.asarray(aux, dtype=float).reshape(self.runs)
        if not np.all(np.isfinite(d)) or not np.all(np.isfinite(effect)):
            raise FineError(f"non-finite f-INE signal at step {self._t} (did training diverge?)")
        self._q[:, self._t] = d
        if np.size(effect):
            n = self.shape[-1]
            self._ev_step.append(np.full(np.size(effect), self._t, dtype=np.int64))
            self._ev_index.append(np.asarray(run_index, dtype=np.int64) * n
                                  + np.asarray(candidate_index, dtype=np.int64))
            self._ev_value.append(np.asarray(effect, dtype=float).reshape(-1))
        self._t += 1

    def update_many(self, decrease: np.ndarray, aux: np.ndarray | None, step: np.ndarray,
                    run_index: np.ndarray, candidate_index: np.ndarray,
                    effect: np.ndarray, steps: np.ndarray | None = None) -> None:
        r"""Add ``S`` steps at once (the same as ``S`` calls of :meth:`update`).

        Parameters
        ----------
        decrease, aux
            :math:`d_t` and :math:`\widehat d_t`, shape ``(S,) + batch_shape`` (``aux``
            ``None`` for ``"none"``).
        step, run_index, candidate_index, effect
            The events of the ``S`` steps: the step within the block (``0 .. S-1``), flat run
            index, candidate index and :math:`c_t(S)`.
        steps
            The run's step numbers of the ``S`` steps (``(S,)``, each in ``0 .. n_steps-1``
            and given once); default: the next ``S`` steps after those added so far.
        """
        d = np.asarray(decrease, dtype=float).reshape(-1, self.runs)
        S = d.shape[0]
        if self._t + S > self.n_steps:
            raise FineError(f"more steps than n_steps={self.n_steps}")
        at = (np.arange(self._t, self._t + S) if steps is None
              else np.asarray(steps, dtype=np.int64).reshape(-1))
        if at.shape != (S,) or at.min() < 0 or at.max() >= self.n_steps:
            raise FineError(f"steps must be {S} step numbers in [0, {self.n_steps}), "
                            f"got {at.tolist()[:5]}")
        if self.config.decorrelation == "did":
            if aux is None:
                raise FineError("decorrelation='did' needs the auxiliary run's decrease")
            d = d - np.asarray(aux, dtype=float).reshape(S, self.runs)
        if not np.all(np.isfinite(d)) or not np.all(np.isfinite(effect)):
            raise FineError(f"non-finite f-INE signal in steps {at.min()}..{at.max()} "
                            "(did training diverge?)")
        self._q[:, at] = d.T
        if np.size(effect):
            n = self.shape[-1]
            self._ev_step.append(at[np.asarray(step, dtype=np.int64)])
            self._ev_index.append(np.asarray(run_index, dtype=np.int64) * n
                                  + np.asarray(candidate_index, dtype=np.int64))
            self._ev_value.append(np.asarray(effect, dtype=float).reshape(-1))
        self._t += S

    def signals(self) -> tuple[np.ndarray, np.ndarray]:
        """Dense ``(O, O')`` of shape ``batch_shape + (n, T)`` (built on demand)."""
        T = self._t
        n = self.shape[-1]
        sig_p = np.repeat(self._q[:, None, :T], n, axis=1).reshape(self.runs * n, T)
        sig_q = sig_p.copy()
        if self._ev_step:
            steps = np.concatenate(self._ev_step)
            rows = np.concatenate(self._ev_index)
            np.subtract.at(sig_q, (rows, steps), np.concatenate(self._ev_value))
        return sig_p.reshape(self.shape + (T,)), sig_q.reshape(self.shape + (T,))

    def finalize(self) -> FineAccumulator:
        """The equivalent :class:`FineAccumulator` (same results as streaming densely)."""
        sig_p, sig_q = self.signals()
        return FineAccumulator.from_samples(sig_p, sig_q, self.config)

    def results(self, spread: np.ndarray | float | None = None,
                n_spread: int | None = None, effect_sd: np.ndarray | None = None,
                n_effect: int | None = None) -> Any:
        """See :meth:`FineAccumulator.results`."""
        return self.finalize().results(spread=spread, n_spread=n_spread, effect_sd=effect_sd,
                                       n_effect=n_effect)


def across_run_results(effect_sum: np.ndarray, spread: np.ndarray, effect_sd: np.ndarray, *,
                       n_spread: int | None, n_effect: int | None, n_steps: np.ndarray,
                       confidence: float = 0.95) -> Any:
    r""":math:`\mu` of ``scaling="spread"`` with its across-run interval (flat arrays).

    .. math::

        \hat\mu = A/s_K,\qquad
        \widehat{\mathrm{se}}^2 = \frac{\mathrm{sd}_K(A)^2}{s_K^2}
        + \frac{\hat\mu^2}{2(K_s-1)},\qquad
        \hat\mu \pm t_{K_e-1,\,1-a/2}\,\widehat{\mathrm{se}},

    and the p-value of :math:`t = A/\mathrm{sd}_K(A)` on :math:`K_e - 1` degrees of freedom
    (see :meth:`FineAccumulator.results`). ``effect_sum`` :math:`A`, ``spread``
    :math:`s_K`, ``effect_sd`` and ``n_steps`` (logged steps, reported as the sample sizes)
    have one entry per candidate; ``n_effect`` :math:`K_e \ge 2` runs gave ``effect_sd``,
    ``n_spread`` :math:`K_s` runs ``spread`` (``None``: exact).
    """
    from finf_stats.results import InfluenceResults

    if n_effect is None or n_effect < 2:
        raise FineError("effect_sd needs n_effect >= 2 runs")
    num = np.asarray(effect_sum, dtype=float)
    s = np.broadcast_to(np.asarray(spread, dtype=float), num.shape)
    sd = np.broadcast_to(np.asarray(effect_sd, dtype=float), num.shape)
    if not (np.all(np.isfinite(num)) and np.all(np.isfinite(sd))):
        raise FineError("non-finite f-INE effect (did training diverge?)")
    if np.any(~(s > 0)):
        raise FineError("spread must be positive")
    mu = num / s
    var = (sd / s) ** 2
    if n_spread is not None and n_spread >= 2:
        var = var + mu ** 2 / (2 * (n_spread - 1))
    se = np.sqrt(var)
    df = n_effect - 1
    q = stats.t.ppf(0.5 + confidence / 2, df)
    # the test of mu = 0 is the test of E[A] = 0: s_K > 0 only scales, so its
    # uncertainty does not enter the t statistic (it would cap |t| at sqrt(2(K_s-1)))
    se0 = sd / s
    with np.errstate(divide="ignore", invalid="ignore"):
        tstat = np.where(se0 > 0, np.abs(mu) / np.where(se0 > 0, se0, 1), np.inf)
    p_value = np.where(mu == 0, 1.0, 2 * stats.t.sf(tstat, df))
    count = np.broadcast_to(np.asarray(n_steps), num.shape).copy()
    return InfluenceResults(
        mu=mu, ci_low=mu - q * se, ci_high=mu + q * se, p_value=p_value,
        method=f"fine[across-run t{df}, spread]", n_with=count, n_without=count.copy(),
        confidence=confidence, probit_slope=np.full(num.size, np.nan),
        max_gap=np.full(num.size, np.nan))


def _split(flat: Any, shape: tuple[int, ...]) -> list:
    """Split flat InfluenceResults of ``prod(shape)`` rows into nested per-run lists."""
    n = shape[-1]
    runs = int(np.prod(shape[:-1]))
    out = []
    for r in range(runs):
        sl = slice(r * n, (r + 1) * n)
        out.append(dataclasses.replace(
            flat, **{k: np.asarray(getattr(flat, k))[sl] for k in
                     ("mu", "ci_low", "ci_high", "p_value", "n_with", "n_without",
                      "probit_slope", "max_gap")}))
    for size in reversed(shape[1:-1]):
        out = [out[i:i + size] for i in range(0, len(out), size)]
    return out


def combine_sqrt(mu_step: np.ndarray, n_steps: np.ndarray | int) -> np.ndarray:
    r"""Paper composition :math:`\mu = \sqrt{T}\,\mu_\mathrm{step}` (Cor. 2.7), elementwise."""
    return np.asarray(mu_step, dtype=float) * np.sqrt(np.asarray(n_steps, dtype=float))


__all__ = ["DEFAULT_PRESET", "PRESETS", "EventFineAccumulator", "FineAccumulator", "FineConfig",
           "FineError", "across_run_results", "combine_sqrt", "fine_config"]
