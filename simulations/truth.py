"""Ground-truth f-influence from many retrains (METHOD §5).

For every candidate ``S`` and target ``ℓ``: ``R`` models trained on ``D`` (shared by all
candidates) give the sample ``X`` of the law ``P``; ``R`` models trained on ``D \\ S`` give
``Y`` from ``Q``; :func:`finf_stats.influence_from_samples` turns them into ``mu_true`` with
its interval, p-value and Gaussian-fit diagnostics (probit-ROC slope, largest gap to
:math:`G_\\mu`).

Seeds. Replica ``r`` of side ``s`` (0 = with S, 1 = without) gets the integer seed
``SeedSequence([seed, s, r]).generate_state(1)[0]``; with ``pairing="paired"`` both sides
use side 0's seeds (the same init, batches and noise: the marginals P and Q are unchanged
but X and Y are positively correlated, so the independent-sample intervals are
conservative); the default ``"independent"`` matches the estimators' assumptions.

Work is split into chunks (blocks of replicas × blocks of candidates, each one engine call),
executed by :mod:`simulations.scaleout`. A candidate whose two samples are the same constant
(no training randomness: fully converged convex training) gets ``mu = nan`` and the note
``degenerate``, never a crash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulations.candidates import candidate_label, check_candidates, removal_weights
from simulations.data import Dataset
from simulations.engine import train
from simulations.recipes import Recipe
from simulations.targets import Target, evaluate


def replica_seeds(seed: int, side: int, replicas: range | np.ndarray) -> np.ndarray:
    """Integer seeds of the given replicas of one side (0: with S, 1: without S)."""
    return np.array([np.random.SeedSequence([int(seed), side, int(r)]).generate_state(1)[0]
                     for r in replicas], dtype=np.int64)


@dataclass
class TruthJob:
    """Everything that defines a ground-truth computation (and its chunking).

    ``base_weights`` (default all ones) is the weighting of ``D`` itself: a point of base
    weight 2 is duplicated, of weight 0 absent; removing ``S`` sets its points to 0.
    """

    recipe: Recipe
    data: Dataset
    candidates: list[np.ndarray]
    targets: list[Target]
    replicas: int = 100
    seed: int = 0
    pairing: str = "independent"
    base_weights: np.ndarray | None = None
    chunk_replicas: int = 50
    chunk_candidates: int = 64

    def __post_init__(self) -> None:
        self.recipe.validate()
        self.candidates = check_candidates(self.candidates, self.data.n)
        if not self.targets:
            raise ValueError("give at least one target statistic")
        K = self.recipe.n_outputs(self.data.y)
        for t in self.targets:
            t.validate(self.data, K)
        if self.replicas < 2:
            raise ValueError("replicas must be >= 2 (each side needs a sample)")
        if self.pairing not in ("independent", "paired"):
            raise ValueError("pairing must be 'independent' or 'paired'")
        if self.base_weights is None:
            self.base_weights = np.ones(self.data.n)
        self.base_weights = np.asarray(self.base_weights, dtype=np.float64)
        if self.base_weights.shape != (self.data.n,):
            raise ValueError(f"base_weights must have shape ({self.data.n},)")
        if self.chunk_replicas < 1 or self.chunk_candidates < 1:
            raise ValueError("chunk sizes must be >= 1")

    @property
    def labels(self) -> list[str]:
        return [candidate_label(g) for g in self.candidates]

    def config(self) -> dict[str, Any]:
        """JSON description (data by spec; arrays by content hash)."""
        h = hashlib.sha256()
        for a in (self.data.X, self.data.y, self.data.X_test, self.data.y_test,
                  self.base_weights):
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        return {
            "recipe": self.recipe.to_dict(),
            "data": self.data.spec.to_dict() if self.data.spec else {"name": self.data.name},
            "data_sha256": h.hexdigest(),
            "candidates": [g.tolist() for g in self.candidates],
            "targets": [t.to_dict() for t in self.targets],
            "replicas": self.replicas, "seed": self.seed, "pairing": self.pairing,
            "chunk_replicas": self.chunk_replicas, "chunk_candidates": self.chunk_candidates,
        }

    def key(self) -> str:
        """Hash of :meth:`config`: chunks of another job are never mixed in on resume."""
        return hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()[:16]

    def chunks(self) -> list[Chunk]:
        rb = [(lo, min(lo + self.chunk_replicas, self.replicas))
              for lo in range(0, self.replicas, self.chunk_replicas)]
        nc = len(self.candidates)
        cb = [(lo, min(lo + self.chunk_candidates, nc))
              for lo in range(0, nc, self.chunk_candidates)]
        out = []
        if self.pairing == "independent":
            out += [Chunk("with", i, 0, r, (0, nc)) for i, r in enumerate(rb)]
            out += [Chunk("without", i, j, r, c) for i, r in enumerate(rb)
                    for j, c in enumerate(cb)]
        else:
            out += [Chunk("paired", i, j, r, c) for i, r in enumerate(rb)
                    for j, c in enumerate(cb)]
        return out


@dataclass(frozen=True)
class Chunk:
    """One engine call: ``kind`` in with/without/paired, replica and candidate ranges."""

    kind: str
    r_block: int
    c_block: int
    replicas: tuple[int, int]
    cands: tuple[int, int]

    @property
    def name(self) -> str:
        return f"{self.kind}_r{self.r_block:04d}_c{self.c_block:04d}"


def run_chunk(job: TruthJob, chunk: Chunk) -> dict[str, np.ndarray]:
    """Train one chunk and evaluate every target; pure (same inputs, same numbers).

    Returns ``{"with": (T, Cb, Rb)}`` for a with-chunk, ``{"without": ...}`` for a
    without-chunk, both for a paired chunk (``Cb`` candidates, ``Rb`` replicas).
    """
    r0, r1 = chunk.replicas
    c0, c1 = chunk.cands
    groups = job.candidates[c0:c1]
    out: dict[str, np.ndarray] = {}
    if chunk.kind in ("with", "paired"):
        side_seeds = replica_seeds(job.seed, 0, range(r0, r1))
        cols = [job.base_weights]
        if chunk.kind == "paired":
            cols = [job.base_weights, *removal_weights(groups, job.base_weights)]
        params = train(job.recipe, job.data.X, job.data.y, np.stack(cols), side_seeds)
        full = np.repeat(params[:, :1], len(groups), axis=1)
        out["with"] = np.stack([evaluate(t, job.recipe, job.data, full, groups).T
                                for t in job.targets])
        if chunk.kind == "paired":
            out["without"] = np.stack([evaluate(t, job.recipe, job.data, params[:, 1:],
                                                groups).T for t in job.targets])
    else:
        side_seeds = replica_seeds(job.seed, 1, range(r0, r1))
        params = train(job.recipe, job.data.X, job.data.y,
                       removal_weights(groups, job.base_weights), side_seeds)
        out["without"] = np.stack([evaluate(t, job.recipe, job.data, params, groups).T
                                   for t in job.targets])
    return out


def assemble(job: TruthJob, results: dict[str, dict[str, np.ndarray]]
             ) -> tuple[np.ndarray, np.ndarray]:
    """Samples ``with (T, n_cand, R)`` and ``without (T, n_cand, R)`` from chunk results."""
    T, nc, R = len(job.targets), len(job.candidates), job.replicas
    X = np.full((T, nc, R), np.nan)
    Y = np.full((T, nc, R), np.nan)
    for chunk in job.chunks():
        res = results[chunk.name]
        (r0, r1), (c0, c1) = chunk.replicas, chunk.cands
        if "with" in res:
            X[:, c0:c1, r0:r1] = res["with"]
        if "without" in res:
            Y[:, c0:c1, r0:r1] = res["without"]
    if np.isnan(X).any() or np.isnan(Y).any():
        raise RuntimeError("some chunks are missing or produced NaN target values")
    return X, Y


@dataclass
class GroundTruth:
    """The truth for every candidate × target, with the raw samples.

    ``with_s``/``without_s`` have shape ``(T, n_cand, R)``; ``results[t]`` is the
    :class:`finf_stats.InfluenceResults` of target ``t`` (``nan`` rows for degenerate ones).
    """

    job: TruthJob
    with_s: np.ndarray
    without_s: np.ndarray
    results: list[Any]
    method: str
    degenerate: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))

    def table(self) -> Any:
        """One row per candidate × target: candidate, target, mu, ci_low, ci_high, p_value,
        n_with, n_without, plus size, probit_slope, max_gap, note."""
        import pandas as pd

        rows = []
        for t, (target, res) in enumerate(zip(self.job.targets, self.results, strict=True)):
            for c, lab in enumerate(self.job.labels):
                rows.append({
                    "candidate": lab, "target": target.label, "mu": res.mu[c],
                    "ci_low": res.ci_low[c], "ci_high": res.ci_high[c],
                    "p_value": res.p_value[c], "n_with": int(res.n_with[c]),
                    "n_without": int(res.n_without[c]),
                    "size": len(self.job.candidates[c]),
                    "probit_slope": res.probit_slope[c], "max_gap": res.max_gap[c],
                    "note": "degenerate" if self.degenerate[t, c] else "",
                })
        return pd.DataFrame(rows)

    def adequacy(self, threshold: float = 0.5) -> list[dict[str, Any]]:
        """Was ``R`` enough? Per target: median interval half-width against the spread
        (standard deviation) of ``mu`` over candidates; enough when ``ratio < threshold``.
        ``replicas_for_quarter`` extrapolates the ``R`` giving ratio 0.25 (half-width
        :math:`\\propto 1/\\sqrt{R}`)."""
        out = []
        for target, res in zip(self.job.targets, self.results, strict=True):
            ok = np.isfinite(res.mu) & np.isfinite(res.ci_low) & np.isfinite(res.ci_high)
            half = float(np.median((res.ci_high[ok] - res.ci_low[ok]) / 2)) if ok.any() \
                else float("nan")
            spread = float(np.std(res.mu[ok], ddof=1)) if ok.sum() > 1 else float("nan")
            ratio = half / spread if spread > 0 else float("inf")
            out.append({
                "target": target.label, "median_half_width": half, "mu_spread": spread,
                "ratio": ratio, "enough": bool(ratio < threshold),
                "replicas": self.job.replicas,
                "replicas_for_quarter": (int(np.ceil(self.job.replicas * (ratio / 0.25) ** 2))
                                         if np.isfinite(ratio) else None),
                "n_infinite": int(np.sum(~np.isfinite(res.mu) & ~np.isnan(res.mu))),
            })
        return out


def estimate(job: TruthJob, with_s: np.ndarray, without_s: np.ndarray, method: str = "auc",
             confidence: float = 0.95, seed: int = 0) -> GroundTruth:
    """Run :func:`finf_stats.influence_from_samples` for every target (rows = candidates)."""
    from finf_stats import influence_from_samples
    from finf_stats.results import InfluenceResults

    results = []
    T, nc, _ = with_s.shape
    degenerate = np.zeros((T, nc), dtype=bool)
    for t in range(T):
        X, Y = with_s[t], without_s[t]
        same = (X.min(1) == X.max(1)) & (Y.min(1) == Y.max(1)) & (X[:, 0] == Y[:, 0])
        degenerate[t] = same
        mu = np.full(nc, np.nan)
        fields = {k: np.full(nc, np.nan) for k in ("ci_low", "ci_high", "p_value",
                                                   "probit_slope", "max_gap")}
        ok = ~same
        if ok.any():
            r = influence_from_samples(X[ok], Y[ok], method=method, confidence=confidence,
                                       seed=seed)
            mu[ok] = r.mu
            for k in fields:
                fields[k][ok] = getattr(r, k)
        results.append(InfluenceResults(
            mu=mu, method=method, n_with=np.full(nc, X.shape[1]),
            n_without=np.full(nc, Y.shape[1]), confidence=confidence,
            labels=tuple(job.labels), **fields))
    return GroundTruth(job=job, with_s=with_s, without_s=without_s, results=results,
                       method=method, degenerate=degenerate)


def ground_truth(job: TruthJob, method: str = "auc", confidence: float = 0.95,
                 **run_options: Any) -> GroundTruth:
    """Train every chunk (see :func:`simulations.scaleout.run_job` for ``run_options``:
    ``folder``, ``n_jobs``, ``scheduler``, ``progress``) and estimate the truth."""
    from simulations.scaleout import run_job

    results = run_job(job, **run_options)
    X, Y = assemble(job, results)
    return estimate(job, X, Y, method=method, confidence=confidence, seed=job.seed)
