"""A ground-truth study end to end: config -> retrains -> run folder (``finf simulate``).

The config (``config.json`` of the run folder, replayable with ``finf simulate --config``)::

    {"recipe": {...Recipe...}, "data": {...DataSpec...},
     "candidates": "flipped,random:40,groups:5x3", "targets": ["self-loss", "test-loss:0"],
     "replicas": 200, "seed": 0, "pairing": "independent", "method": "auc",
     "confidence": 0.95, "chunk_replicas": 50, "chunk_candidates": 64}

The run folder holds ``config.json``, ``provenance.json``, ``chunks/`` (finished work; a
rerun resumes), ``truth.csv`` (one row per candidate × target), ``samples.npz`` (raw
samples ``with_s``/``without_s`` of shape ``(targets, candidates, R)``, the candidate
indices as ``cand_index``/``cand_offset`` and the target labels), ``adequacy.json``,
``summary.json``, ``figures/`` and ``report.md``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from simulations.candidates import parse_candidates
from simulations.data import DataSpec, load_dataset
from simulations.recipes import Recipe
from simulations.scaleout import run_job
from simulations.targets import parse_target
from simulations.truth import GroundTruth, TruthJob, assemble, estimate

DEFAULTS: dict[str, Any] = {
    "candidates": "random:30", "targets": ["test-set-loss"], "replicas": 200, "seed": 0,
    "pairing": "independent", "method": "auc", "confidence": 0.95, "chunk_replicas": 50,
    "chunk_candidates": 64,
}


def build_job(config: dict[str, Any]) -> TruthJob:
    """The :class:`TruthJob` a config describes (unknown keys are refused)."""
    cfg = {**DEFAULTS, **config}
    unknown = set(cfg) - set(DEFAULTS) - {"recipe", "data"}
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}")
    recipe = Recipe.from_dict(cfg["recipe"])
    data = load_dataset(DataSpec.from_dict(cfg["data"]))
    candidates = parse_candidates(cfg["candidates"], data, seed=int(cfg["seed"]))
    targets = [parse_target(t) for t in cfg["targets"]]
    return TruthJob(recipe=recipe, data=data, candidates=candidates, targets=targets,
                    replicas=int(cfg["replicas"]), seed=int(cfg["seed"]),
                    pairing=cfg["pairing"], chunk_replicas=int(cfg["chunk_replicas"]),
                    chunk_candidates=int(cfg["chunk_candidates"]))


def _fmt(v: float) -> str:
    return f"{v:+.3f}" if np.isfinite(v) else ("+inf" if v > 0 else "-inf" if v < 0 else "nan")


def write_outputs(folder: Any, gt: GroundTruth, config: dict[str, Any], seconds: float,
                  n_trees: int = 3) -> dict[str, Any]:
    """Write truth.csv, samples.npz, adequacy.json, summary.json, figures and report.md."""
    from finf_stats.plots import plot_ranking, plot_tradeoff

    job = gt.job
    table = gt.table()
    folder.write_csv("truth.csv", table)
    offsets = np.cumsum([0] + [len(g) for g in job.candidates])
    folder.write_npz("samples.npz", with_s=gt.with_s, without_s=gt.without_s,
                     cand_index=np.concatenate(job.candidates), cand_offset=offsets,
                     targets=np.array([t.label for t in job.targets]))
    adequacy = gt.adequacy()
    folder.write_json("adequacy.json", adequacy)
    figures = []
    for t, (target, res) in enumerate(zip(job.targets, gt.results, strict=True)):
        name = f"figures/ranking_{t}_{target.label.replace(':', '-')}.png"
        folder.save_figure(name, plot_ranking(res, top=40))
        figures.append(name)
    res0 = gt.results[0]
    finite = np.flatnonzero(np.isfinite(res0.mu))
    picks: list[int] = []
    if finite.size:
        order = finite[np.argsort(res0.mu[finite])]
        picks = sorted({int(order[-1]), int(order[len(order) // 2]), int(order[0])})[:n_trees]
    for k in picks:
        name = f"figures/tradeoff_{job.labels[k]}.png"
        fig = plot_tradeoff(gt.with_s[0, k], gt.without_s[0, k], res0[k],
                            title=f"S = {{{job.labels[k]}}}, target {job.targets[0].label}")
        folder.save_figure(name, fig)
        figures.append(name)
    flipped = set(int(i) for i in job.data.flipped) | set(int(i) for i in job.data.outliers)
    summary: dict[str, Any] = {"seconds": seconds, "models_trained": _models(job),
                               "retrains_per_s": _models(job) / max(seconds, 1e-9),
                               "adequacy": adequacy, "targets": {}}
    lines = [
        "# Ground-truth f-influence from retrains", "",
        f"- recipe: `{job.recipe.name}` ({job.recipe.model}, {job.recipe.epochs} epochs, batch "
        f"{job.recipe.batch_size}, lr {job.recipe.schedule.lr} {job.recipe.schedule.kind}, "
        f"l2 {job.recipe.l2}, gradient noise {job.recipe.grad_noise})",
        f"- data: {job.data.name}, n = {job.data.n}, d = {job.data.X.shape[1]}, "
        f"{job.data.n_classes} classes, {len(job.data.flipped)} flipped labels, "
        f"{len(job.data.outliers)} outliers",
        f"- {len(job.candidates)} candidates, R = {job.replicas} retrains with and R without "
        f"each ({job.pairing} seeds), estimator `{gt.method}`; {_models(job)} models in "
        f"{seconds:.1f} s", "",
        "mu > 0: removing S raises the target (S helps it); mu < 0: S hurts it. "
        "Infinite mu: the samples with and without S are perfectly separated (the interval "
        "gives the finite bound).", "",
        "## Was R enough?", "",
        "| target | median CI half-width | sd of mu over candidates | ratio | enough (< 0.5) "
        "| R for ratio 0.25 | infinite mu |", "|---|---|---|---|---|---|---|"]
    for a in adequacy:
        lines.append(f"| {a['target']} | {a['median_half_width']:.3f} | {a['mu_spread']:.3f} "
                     f"| {a['ratio']:.2f} | {'yes' if a['enough'] else 'no'} "
                     f"| {a['replicas_for_quarter']} | {a['n_infinite']} |")
    for t, (target, res) in enumerate(zip(job.targets, gt.results, strict=True)):
        slope = res.probit_slope[np.isfinite(res.probit_slope)]
        sig = float(np.mean(res.p_value < 0.05)) if len(res) else float("nan")
        entry = {"median_probit_slope": float(np.median(slope)) if slope.size else None,
                 "fraction_p_below_0.05": sig,
                 "n_degenerate": int(gt.degenerate[t].sum())}
        slope_txt = _fmt(entry["median_probit_slope"] or np.nan)
        lines += ["", f"## Target `{target.label}`", "",
                  f"- median probit-ROC slope {slope_txt} (1 = Gaussian "
                  f"trade-off), {100 * sig:.0f}% of candidates with p < 0.05, "
                  f"{entry['n_degenerate']} degenerate (no training randomness)"]
        if flipped:
            corrupted = np.array([bool(set(g.tolist()) & flipped) for g in job.candidates])
            rank = np.argsort(-np.nan_to_num(res.mu, nan=-np.inf, posinf=1e300,
                                             neginf=-1e300), kind="stable")
            k = int(corrupted.sum())
            if 0 < k < len(corrupted):
                hit = float(np.mean(corrupted[rank[:k]]))
                entry["corrupted_in_top_k"] = hit
                lines.append(f"- corrupted candidates (flipped/outliers) among the top {k} by "
                             f"mu: {100 * hit:.0f}%")
        lines += ["", "| candidate | mu | CI | p |", "|---|---|---|---|"]
        order = np.argsort(-np.abs(np.nan_to_num(res.mu, posinf=1e300, neginf=-1e300)))[:10]
        for c in order:
            lines.append(f"| {job.labels[c]} | {_fmt(res.mu[c])} | [{_fmt(res.ci_low[c])}, "
                         f"{_fmt(res.ci_high[c])}] | {res.p_value[c]:.2g} |")
        summary["targets"][target.label] = entry
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
    lines += ["", f"Replay: `finf simulate --config {Path(folder.path) / 'config.json'}`", ""]
    folder.write_text("report.md", "\n".join(lines))
    folder.write_json("summary.json", summary)
    return summary


def _models(job: TruthJob) -> int:
    extra = job.replicas if job.pairing == "independent" else 0
    return job.replicas * len(job.candidates) + job.replicas + extra


def run_study(config: dict[str, Any], out: str | Path, n_jobs: int = 1,
              scheduler: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the study of ``config`` into the run folder ``out`` (resuming finished chunks)."""
    from finf_stats.run_folder import RunFolder

    cfg = {**DEFAULTS, **config}
    job = build_job(cfg)
    folder = RunFolder(out, {**cfg, "data_summary": job.data.summary(), "job_key": job.key()})
    t0 = time.perf_counter()
    chunks = run_job(job, folder=folder.path / "chunks", n_jobs=n_jobs, scheduler=scheduler,
                     progress=progress)
    X, Y = assemble(job, chunks)
    gt = estimate(job, X, Y, method=cfg["method"], confidence=float(cfg["confidence"]),
                  seed=job.seed)
    seconds = time.perf_counter() - t0
    return write_outputs(folder, gt, cfg, seconds)
