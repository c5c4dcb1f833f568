r"""The calibration study of f-INE and the baselines against ground truth (``finf demo``).

One study = one recipe, one dataset, a set of candidates and one target statistic:

1. **Ground truth** (:mod:`simulations.truth`): ``replicas`` retrains on D and on D \ S for
   every candidate give :math:`\mu_\mathrm{true}` with its interval (``auc`` estimator), and
   the LOO-mean.
2. **Single runs**: ``single_runs`` = R' independent training runs (each with its auxiliary
   run, all in one engine call) capture, in the same runs, f-INE for every preset of
   ``fine_presets``, TracIn and TracInCP (observers); influence functions (exact Hessian) and
   TRAK (ensemble of the run and its auxiliary run: the two models f-INE also uses) are
   computed on the final models.
3. **Metrics** (:mod:`finf_stats.metrics`): per method, Spearman's correlation of each single
   run's scores with :math:`\mu_\mathrm{true}` (mean over runs, with the mean of the per-run
   bootstrap intervals), sign agreement on the candidates whose truth is significant,
   consistency across the R' runs (top-k Jaccard, k = 10% of candidates; median coefficient
   of variation), and for f-INE the bias of :math:`\hat\mu`, the scale slope
   (:math:`\hat\mu` regressed on :math:`\mu_\mathrm{true}` through 0) and the coverage of its
   interval.

Outputs (a :class:`finf_stats.run_folder.RunFolder`): ``config.json``, ``provenance.json``,
``summary.json`` (stable keys ``methods.<name>.{spearman, spearman_ci, sign_agreement,
jaccard, jaccard_sd, cv}``, ``fine.{coverage, bias, slope}`` for the default preset,
``fine_variants.<preset>.*``, ``truth``, ``spread``, ``recipe``, ``timings``), ``truth.csv``,
``scores.npz``, ``figures/*.png`` and ``report.md``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finf_stats.fine import fine_config
from finf_stats.metrics import coefficient_of_variation, spearman_with_interval, topk_jaccard
from finf_stats.run_folder import RunFolder
from simulations.baselines import (
    TracInObserver,
    candidate_weights,
    influence_function,
    loo_mean,
    trak_scores,
)
from simulations.candidates import parse_candidates
from simulations.capture import AUX_SEED_OFFSET, FineCapture
from simulations.data import DataSpec, load_dataset
from simulations.engine import design_matrix, train
from simulations.recipes import Recipe, Schedule
from simulations.targets import parse_target
from simulations.truth import TruthJob, ground_truth

#: the paper's published top-k Jaccard consistency (METHOD §8)
PAPER_JACCARD = {"influence_function": 0.567, "tracin": 0.564, "trak": 0.736, "fine": 0.938}


def paper_jaccard(method: str) -> float:
    """The paper's Jaccard for a method of this study (every f-INE preset gets f-INE's)."""
    return PAPER_JACCARD.get("fine" if method.startswith("fine") else method, float("nan"))


def default_recipe() -> Recipe:
    """The demo recipe: multinomial logistic regression by minibatch SGD."""
    return Recipe(model="multinomial", epochs=10, batch_size=32, schedule=Schedule(lr=0.1),
                  l2=1e-3, name="digits-multinomial")


@dataclass
class StudyConfig:
    """Everything a study needs (JSON-serialisable through :meth:`to_dict`)."""

    recipe: Recipe = field(default_factory=default_recipe)
    data: DataSpec = field(default_factory=lambda: DataSpec(
        source="digits", n_train=300, n_test=100, flip_fraction=0.05, seed=0))
    candidates: str = "flipped,random:45"
    target: str = "test-set-loss"
    replicas: int = 1000
    single_runs: int = 5
    seed: int = 0
    #: the first preset is the headline ``fine`` row (the project's default preset)
    fine_presets: tuple[str, ...] = ("adjoint", "adjoint-expected", "calibrated",
                                     "calibrated-realised", "paper")
    trak_proj_dim: int | None = None    # None: exact gradient features (pK = 650)
    n_jobs: int = 2

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["recipe"] = self.recipe.to_dict()
        d["data"] = self.data.to_dict()
        d["fine_presets"] = list(self.fine_presets)
        d["fine_configs"] = {p: fine_config(p).to_dict() for p in self.fine_presets}
        return d


def _spearman(scores: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    ok = np.isfinite(truth)
    rows = [spearman_with_interval(s[ok], truth[ok], n_bootstrap=1000, seed=i)
            for i, s in enumerate(scores)]
    return {"spearman": float(np.mean([r["rho"] for r in rows])),
            "spearman_ci": [float(np.mean([r["ci_low"] for r in rows])),
                            float(np.mean([r["ci_high"] for r in rows]))],
            "spearman_runs": [r["rho"] for r in rows]}


def _sign_agreement(scores: np.ndarray, truth: np.ndarray, sig: np.ndarray) -> float:
    if not sig.any():
        return float("nan")
    return float(np.mean(np.sign(scores[:, sig]) == np.sign(truth[sig])))


def _method_metrics(scores: np.ndarray, truth: np.ndarray, sig: np.ndarray) -> dict[str, Any]:
    finite = np.where(np.isfinite(scores), scores,
                      np.sign(scores) * np.nanmax(np.abs(scores[np.isfinite(scores)]),
                                                  initial=1.0) * 10)
    out = _spearman(finite, truth)
    out["sign_agreement"] = _sign_agreement(finite, truth, sig)
    jac = topk_jaccard(finite, fraction=0.1)
    out["jaccard"], out["jaccard_sd"] = jac["mean"], jac["sd"]       # sd over pairs of runs
    try:
        out["cv"] = coefficient_of_variation(finite)["median"]
    except ValueError:
        out["cv"] = float("nan")
    return out


def _fine_calibration(res_by_run: list, truth: np.ndarray, truth_lo: np.ndarray,
                      truth_hi: np.ndarray) -> dict[str, Any]:
    r"""Bias, scale, coverage and width of f-INE's intervals against :math:`\mu_\mathrm{true}`,
    and a false-discovery check of its Holm / Benjamini–Hochberg flags.

    Coverage: share of (run, candidate) pairs whose interval contains the point
    :math:`\mu_\mathrm{true}` (itself estimated from the retrains, with the half-width of
    ``truth.adequacy``). A flag is *confirmed* when :math:`\mu_\mathrm{true}`'s interval
    excludes 0 with the same sign as :math:`\hat\mu`; the false-discovery proportion is
    1 - confirmed / flagged (pooled over runs).
    """
    mu = np.array([r.mu for r in res_by_run])
    lo = np.array([r.ci_low for r in res_by_run])
    hi = np.array([r.ci_high for r in res_by_run])
    ok = np.isfinite(truth)[None, :] & np.isfinite(mu)
    t = np.broadcast_to(truth, mu.shape)
    cover = float(np.mean((lo[ok] <= t[ok]) & (t[ok] <= hi[ok])))
    err = mu[ok] - t[ok]
    slope = float(np.sum(mu[ok] * t[ok]) / np.sum(t[ok] ** 2))
    width = (hi - lo)[ok & np.isfinite(hi - lo)]
    # the same intervals widened in quadrature by mu_true's own standard error (its interval
    # half-width / 1.96): coverage of the truth up to the truth's estimation noise
    z = 1.959963984540054
    se_t = np.broadcast_to((truth_hi - truth_lo) / (2 * z), mu.shape)
    h_lo, h_hi = (mu - lo) / z, (hi - mu) / z
    w_lo = mu - z * np.sqrt(h_lo ** 2 + se_t ** 2)
    w_hi = mu + z * np.sqrt(h_hi ** 2 + se_t ** 2)
    cover_noise = float(np.mean((w_lo[ok] <= t[ok]) & (t[ok] <= w_hi[ok])))
    sig_pos, sig_neg = truth_lo > 0, truth_hi < 0
    flags: dict[str, Any] = {}
    for method in ("holm", "fdr_bh"):
        f = np.array([r.flags(method, 0.05) for r in res_by_run])          # (runs, cand)
        confirmed = f & (((mu > 0) & sig_pos[None]) | ((mu < 0) & sig_neg[None]))
        n_flag = int(f.sum())
        flags[method] = {"flagged_per_run": float(f.sum(axis=1).mean()),
                         "confirmed_per_run": float(confirmed.sum(axis=1).mean()),
                         "false_discovery_proportion": (
                             float(1 - confirmed.sum() / n_flag) if n_flag else 0.0)}
    return {"coverage": cover, "coverage_with_truth_error": cover_noise,
            "bias": float(np.mean(err)),
            "abs_error": float(np.median(np.abs(err))), "slope": slope,
            "median_width": float(np.median(width)) if width.size else float("nan"),
            "n_infinite": int(np.sum(~np.isfinite(mu))), "flags": flags,
            "method": str(res_by_run[0].method)}


def run_study(config: StudyConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Run the whole study and write the run folder; returns ``summary.json``'s content."""
    timings: dict[str, float] = {}
    folder = RunFolder(out, config.to_dict())
    t0 = time.perf_counter()
    data = load_dataset(config.data)
    cands = parse_candidates(config.candidates, data, seed=config.seed)
    target = parse_target(config.target)
    if target.kind not in ("test-set-loss", "test-loss"):
        raise ValueError("the f-INE study supports test-loss:i and test-set-loss targets")
    Xt = data.X_test if target.kind == "test-set-loss" else data.X_test[[target.index]]
    yt = data.y_test if target.kind == "test-set-loss" else data.y_test[[target.index]]
    timings["data_s"] = time.perf_counter() - t0

    # 1. ground truth
    t0 = time.perf_counter()
    job = TruthJob(recipe=config.recipe, data=data, candidates=cands, targets=[target],
                   replicas=config.replicas, seed=config.seed)
    gt = ground_truth(job, method="auc", n_jobs=config.n_jobs, progress=progress)
    truth_res = gt.results[0]
    mu_true = np.asarray(truth_res.mu, dtype=float)
    sig = (truth_res.ci_low > 0) | (truth_res.ci_high < 0)
    timings["ground_truth_s"] = time.perf_counter() - t0

    # 2. single runs: f-INE presets, TracIn(CP) observers, final models
    t0 = time.perf_counter()
    Rp = config.single_runs
    seeds = np.random.SeedSequence([config.seed, 77]).generate_state(Rp).astype(np.int64) % (
        2 ** 31)
    all_seeds = np.concatenate([seeds, seeds + AUX_SEED_OFFSET])
    Xta = design_matrix(Xt, config.recipe.fit_intercept)
    caps = {p: FineCapture(Xta, yt, cands, p, n_runs=Rp, tracin=p == config.fine_presets[0])
            for p in config.fine_presets}
    A = candidate_weights(cands, data.n)
    tracin_obs = TracInObserver(Xta, yt, A, every_k=max(1, config.recipe.steps_per_epoch(
        data.n)))
    params = train(config.recipe, data.X, data.y, seeds=all_seeds,
                   observers=[*caps.values(), tracin_obs])
    timings["single_runs_train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fine_res = {p: [row[0] for row in cap.results()] for p, cap in caps.items()}
    spread, n_spread = caps[config.fine_presets[0]].spread()
    s_K = float(spread[0])
    # pooled sd of the final target over the retrains on D: the sigma that the one-run s_K
    # estimates from the K replicas of the single runs
    target_sd = float(np.sqrt(np.mean(np.var(gt.with_s[0], axis=1, ddof=1))))
    timings["fine_stage2_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    Xa = design_matrix(data.X, config.recipe.fit_intercept)
    model = config.recipe.model
    scores: dict[str, np.ndarray] = {}
    for p in config.fine_presets:
        scores["fine" if p == config.fine_presets[0] else f"fine_{p}"] = np.array(
            [r.mu for r in fine_res[p]])
    scores["tracin"] = caps[config.fine_presets[0]].tracin[:, 0]
    scores["tracin_cp"] = tracin_obs.tracin_cp[:Rp, 0]
    scores["influence_function"] = np.array([
        influence_function(model, params[r, 0], Xa, data.y, Xta, yt, A, l2=config.recipe.l2,
                           fit_intercept=config.recipe.fit_intercept) for r in range(Rp)])
    scores["trak"] = np.array([
        trak_scores(model, np.stack([params[r, 0], params[Rp + r, 0]]), Xa, data.y, Xta, yt,
                    A, proj_dim=config.trak_proj_dim, seed=config.seed)
        for r in range(Rp)])
    # LOO-mean from disjoint blocks of the retrains (one block per "run")
    W, Wo = gt.with_s[0], gt.without_s[0]                 # (n_cand, R)
    blocks = np.array_split(np.arange(W.shape[1]), Rp)
    scores["loo_mean"] = np.array([loo_mean(W[:, b], Wo[:, b]) for b in blocks])
    timings["baselines_s"] = time.perf_counter() - t0

    # 3. metrics
    methods = {name: _method_metrics(s, mu_true, sig) for name, s in scores.items()}
    variants = {p: _fine_calibration(fine_res[p], mu_true, np.asarray(truth_res.ci_low),
                                     np.asarray(truth_res.ci_high))
                for p in config.fine_presets}
    summary = {
        "methods": methods,
        "fine": {**variants[config.fine_presets[0]], "preset": config.fine_presets[0]},
        "fine_variants": variants,
        "paper_jaccard": PAPER_JACCARD,
        "truth": {"method": "auc", "replicas": config.replicas,
                  "n_candidates": len(cands), "n_significant": int(sig.sum()),
                  "adequacy": gt.adequacy()[0],
                  "median_probit_slope": float(np.nanmedian(truth_res.probit_slope)),
                  "target_sd": target_sd},
        "spread": {"s_K": s_K, "K": n_spread, "ratio_to_retrain_sd": s_K / target_sd},
        "flipped": [int(i) for i in data.flipped],
        "recipe": config.recipe.to_dict(),
        "data": config.data.to_dict(),
        "single_runs": Rp,
        "timings": timings,
    }
    labels = [",".join(str(int(i)) for i in g) for g in cands]
    folder.write_csv("truth.csv", gt.table())
    folder.write_npz("scores.npz", mu_true=mu_true, truth_ci_low=truth_res.ci_low,
                     truth_ci_high=truth_res.ci_high,
                     **{f"score_{k}": v for k, v in scores.items()},
                     **{f"ci_low_{p}": np.array([r.ci_low for r in fine_res[p]])
                        for p in config.fine_presets},
                     **{f"ci_high_{p}": np.array([r.ci_high for r in fine_res[p]])
                        for p in config.fine_presets})
    t0 = time.perf_counter()
    _figures(folder, mu_true, truth_res, fine_res, methods, labels, config.replicas)
    timings["figures_s"] = time.perf_counter() - t0
    folder.write_json("summary.json", summary)
    folder.write_text("report.md", render_report(summary, config))
    return summary


def _figures(folder: RunFolder, mu_true: np.ndarray, truth_res: Any, fine_res: dict,
             methods: dict, labels: list[str], replicas: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(fine_res), figsize=(5.5 * len(fine_res), 4.5),
                             squeeze=False)
    for ax, (p, res) in zip(axes[0], fine_res.items(), strict=True):
        for r in res:
            mu = np.clip(r.mu, -50, 50)
            ax.errorbar(mu_true, mu, yerr=[np.clip(mu - r.ci_low, 0, 50),
                                           np.clip(r.ci_high - mu, 0, 50)],
                        fmt="o", ms=3, alpha=0.35, lw=0.6)
        lim = np.nanmax(np.abs(mu_true)) * 1.1
        ax.plot([-lim, lim], [-lim, lim], "k--", lw=1, label="mu_hat = mu_true")
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_xlabel(f"mu_true ({replicas} + {replicas} retrains)")
        ax.set_ylabel("f-INE mu_hat (one run)")
        ax.set_title(f"f-INE [{p}] calibration")
        ax.legend(loc="upper left", fontsize=8)
    folder.save_figure("figures/fine_calibration.png", fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(methods)
    ours = [methods[n]["jaccard"] for n in names]
    ax.bar(np.arange(len(names)) - 0.2, ours, width=0.4, label="this study (± sd over pairs)",
           yerr=[methods[n]["jaccard_sd"] for n in names], capsize=3)
    paper = [paper_jaccard(n) for n in names]
    ax.bar(np.arange(len(names)) + 0.2, paper, width=0.4, label="paper")
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("top-10% Jaccard across runs")
    ax.legend()
    folder.save_figure("figures/consistency.png", fig)

    try:
        from finf_stats.plots import plot_ranking

        fig = plot_ranking(truth_res.with_labels(labels), top=30)
        folder.save_figure("figures/truth_ranking.png", fig)
    except (ImportError, ValueError, TypeError):  # pragma: no cover - optional figure
        pass


def _f(v: Any, nd: int = 3) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "n/a" if not np.isfinite(v) else f"{v:.{nd}f}"


def render_report(summary: dict[str, Any], config: StudyConfig) -> str:
    """``report.md``: the tables, what they mean, the paper's numbers beside ours."""
    m = summary["methods"]
    tr = summary["truth"]
    lines = [
        "# f-INE calibration study", "",
        f"Recipe `{config.recipe.name}` ({config.recipe.model}, {config.recipe.epochs} epochs, "
        f"batch {config.recipe.batch_size}, lr {config.recipe.schedule.lr}, "
        f"l2 {config.recipe.l2}) on `{config.data.source}` (n = {config.data.n_train}, "
        f"{len(summary['flipped'])} flipped labels); target `{config.target}`; "
        f"{tr['n_candidates']} candidates.", "",
        f"Ground truth: {tr['replicas']} retrains with and {tr['replicas']} without each "
        f"candidate, mu_true by the `auc` estimator; {tr['n_significant']} candidates have an "
        f"interval excluding 0; median interval half-width "
        f"{_f(tr['adequacy']['median_half_width'])} against a spread of mu_true of "
        f"{_f(tr['adequacy']['mu_spread'])}; median probit-ROC slope "
        f"{_f(tr['median_probit_slope'], 2)} (1 = Gaussian trade-off).", "",
        f"Every method below is computed from {summary['single_runs']} independent single "
        "training runs (f-INE and TRAK also use each run's auxiliary run).", "",
        "## Agreement with ground truth and consistency across runs", "",
        "| method | Spearman vs mu_true [95% CI] | sign agreement | top-10% Jaccard "
        "(± sd over pairs of runs) | paper's Jaccard | median CV |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in m.items():
        lines.append(
            f"| {name} | {_f(v['spearman'])} [{_f(v['spearman_ci'][0])}, "
            f"{_f(v['spearman_ci'][1])}] | {_f(v['sign_agreement'])} | {_f(v['jaccard'])} ± "
            f"{_f(v['jaccard_sd'])} | "
            f"{_f(paper_jaccard(name))} | {_f(v['cv'])} |")
    lines += [
        "", "Spearman: mean over the single runs of each run's rank correlation with "
        "mu_true; the interval is the mean of the per-run bootstrap intervals (over "
        "candidates). Sign agreement: share of (run, candidate) pairs with the sign of "
        "mu_true, among candidates whose mu_true is significant. Jaccard: mean over pairs of "
        "runs of the overlap of the top-10% candidates. CV: median over candidates of the "
        "across-run coefficient of variation. `loo_mean` uses disjoint blocks of the "
        "retrains, not single runs (it is the scalar ground truth, for reference).", "",
        "## f-INE: is the one-run mu a calibrated estimate of mu_true?", "",
        f"Headline preset (the `fine` row above): `{summary['fine']['preset']}`.", "",
        "| preset | bias (mean mu_hat - mu_true) | median abs error | scale slope | "
        "coverage of the 95% interval | coverage allowing mu_true's error | "
        "median interval width | infinite estimates |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p, v in summary["fine_variants"].items():
        lines.append(f"| {p} | {_f(v['bias'])} | {_f(v['abs_error'])} | {_f(v['slope'])} | "
                     f"{_f(v['coverage'])} | {_f(v['coverage_with_truth_error'])} | "
                     f"{_f(v['median_width'])} | {v['n_infinite']} |")
    lines += [
        "", "Coverage is against the point mu_true, itself estimated (median half-width "
        f"{_f(tr['adequacy']['median_half_width'])}); the next column widens each interval "
        "in quadrature by mu_true's standard error. The spread-scaled presets divide by "
        f"s_K = {_f(summary['spread']['s_K'], 5)}, the sd of the final target over the "
        f"K = {summary['spread']['K']} replicas of the single runs; over the retrains on D "
        f"it is {_f(tr['target_sd'], 5)} (ratio {_f(summary['spread']['ratio_to_retrain_sd'])}"
        "), a common scale error of every spread-scaled mu_hat (the scale slope times this "
        "ratio is the slope against the retrains' sd) that the interval carries as the "
        "delta-method term. "
        "Every preset but `paper` has the "
        "across-run interval: the spread of the discounted one-run effect over the K runs "
        "trained anyway (the runs and their auxiliary runs) with a t quantile, plus the "
        "delta-method uncertainty of s_K; it does not contain the first-order approximation "
        "error. `paper`'s is the paper's: a percentile bootstrap of threshold-max on the "
        "per-step samples, scaled by sqrt(T).", "",
        "### Flagged candidates (p-values of mu = 0, level 0.05)", "",
        "| preset | Holm: flagged per run | confirmed by mu_true | BH: flagged per run | "
        "confirmed by mu_true | BH unconfirmed share |",
        "|---|---|---|---|---|---|",
    ]
    for p, v in summary["fine_variants"].items():
        h, bh = v["flags"]["holm"], v["flags"]["fdr_bh"]
        lines.append(f"| {p} | {_f(h['flagged_per_run'], 1)} | {_f(h['confirmed_per_run'], 1)}"
                     f" | {_f(bh['flagged_per_run'], 1)} | {_f(bh['confirmed_per_run'], 1)} | "
                     f"{_f(bh['false_discovery_proportion'], 2)} |")
    lines += [
        "", f"Confirmed: mu_true's interval excludes 0 with the sign of mu_hat "
        f"({tr['n_significant']} of {tr['n_candidates']} candidates have a significant "
        "mu_true). An unconfirmed flag is a false discovery *or* a true effect too small "
        "for the retrains to resolve, so the unconfirmed share bounds the false-discovery "
        "proportion from above.", "",
        "", "Scale slope: least-squares slope of mu_hat on mu_true through the origin (1 = "
        "calibrated scale). `paper` is METHOD §6's reconstruction (threshold-max on "
        "difference-in-differences signals, sqrt(T) composition); the other presets divide "
        "the one-run first-order effect of S on the final target by the spread of the target "
        "over the K runs trained anyway (docs/fine_variants.md). `adjoint` carries the final "
        "target's gradient back through every step's batch Hessian (the exact linear "
        "response) and sums the realised effect (the steps whose batch holds S); "
        "`adjoint-expected` uses its expectation over the batch draw at every step; "
        "`calibrated` and `calibrated-realised` replace the backward pass by a scalar "
        "contraction along the current target gradient. The `fine` row is the default "
        f"preset, `{summary['fine']['preset']}`; the paper's Jaccard beside every f-INE row "
        "is the paper's f-INE figure.", "",
        "Figures: `figures/fine_calibration.png` (mu_hat against mu_true with intervals), "
        "`figures/consistency.png` (Jaccard beside the paper's), "
        "`figures/truth_ranking.png` (mu_true with intervals).", "",
        "## Timings (s)", "",
        *[f"- {k}: {_f(v, 1)}" for k, v in summary["timings"].items()], "",
    ]
    return "\n".join(lines)


__all__ = ["PAPER_JACCARD", "StudyConfig", "default_recipe", "paper_jaccard", "render_report",
           "run_study"]
