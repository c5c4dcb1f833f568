"""``finf stats``: the statistics core on users' own samples.

``finf stats two-sample --with A --without B`` reads the target statistic of models trained
with S (A) and without S (B) and prints the signed Gaussian influence mu with its interval,
p-value and Gaussian-fit diagnostic. ``finf stats calibration`` measures the coverage of the
estimators' intervals on Gaussian samples of known mu.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from finf_stats.estimators import INTERVALS, METHODS, influence_from_samples
from finf_stats.run_folder import jsonable
from finf_stats.sample_files import read_samples


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("stats", help="f-influence statistics on your own samples",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="stats_command", metavar="STATS_COMMAND", required=True)

    two = sub.add_parser(
        "two-sample", help="mu from samples with and without S",
        description="Estimate the signed Gaussian influence mu of S from the target statistic "
        "(e.g. a test loss) of models trained with S (--with) and without S (--without). "
        "mu > 0: removing S raises the loss (S helps the target).")
    two.add_argument("--with", dest="with_path", required=True, metavar="FILE",
                     help="samples with S (H0): .npy, .csv or .txt")
    two.add_argument("--without", dest="without_path", required=True, metavar="FILE",
                     help="samples without S (H1)")
    two.add_argument("--column", default=None,
                     help="column name or index when the files have several")
    two.add_argument("--method", choices=("all",) + METHODS, default="auc",
                     help="estimator (default auc; 'all' runs every one)")
    two.add_argument("--interval", default=None,
                     help="interval kind: " + "; ".join(f"{m}: {'/'.join(v)}"
                                                        for m, v in INTERVALS.items()))
    two.add_argument("--confidence", type=float, default=0.95)
    two.add_argument("--seed", type=int, default=0, help="seed of bootstrap and null draws")
    two.add_argument("--json", action="store_true", help="print JSON instead of text")
    two.add_argument("--plot", default=None, metavar="FILE.png",
                     help="write the trade-off curve with the fitted G_mu")
    two.set_defaults(handler=run_two_sample)

    cal = sub.add_parser("calibration", help="coverage of the intervals on Gaussian samples",
                         description="Measure coverage, bias and null rejection rate of each "
                         "estimator on N(0,1) vs N(mu,1) samples (seeded simulation).")
    cal.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    cal.add_argument("--mu", nargs="+", type=float, default=[0.0, 0.5, 1.5, 3.0])
    cal.add_argument("--n", nargs="+", type=int, default=[20, 50, 200])
    cal.add_argument("--repetitions", type=int, default=400)
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument("--json", action="store_true")
    cal.set_defaults(handler=run_calibration)


def run_two_sample(args: argparse.Namespace) -> int:
    x = read_samples(args.with_path, args.column)
    y = read_samples(args.without_path, args.column)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"expected 1-D samples, got shapes {x.shape} and {y.shape}")
    methods = METHODS if args.method == "all" else (args.method,)
    results = [influence_from_samples(x, y, method=m, confidence=args.confidence,
                                      interval=args.interval if len(methods) == 1 else None,
                                      seed=args.seed) for m in methods]
    if args.plot:
        from finf_stats.plots import plot_tradeoff
        from finf_stats.run_folder import atomic_path

        fig = plot_tradeoff(x, y, results[0])
        with atomic_path(args.plot) as tmp:
            fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    if args.json:
        out = [r.to_dict() for r in results]
        print(json.dumps(jsonable(out[0] if len(out) == 1 else out), indent=2))
    else:
        print(f"with S: {x.size} samples (mean {np.mean(x):.4g}); without S: {y.size} samples "
              f"(mean {np.mean(y):.4g})")
        for r in results:
            print(r)
        if args.plot:
            print(f"trade-off curve written to {args.plot}")
    return 0


def run_calibration(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from finf_stats.calibration import gaussian_calibration

    settings = [(m, n, mu) for m in args.methods for n in args.n for mu in args.mu]
    rows = [gaussian_calibration(m, mu, n, repetitions=args.repetitions, seed=args.seed)
            for m, n, mu in tqdm(settings, desc="calibration", disable=args.json)]
    if args.json:
        print(json.dumps(jsonable(rows), indent=2))
        return 0
    print("| method | n per side | true mu | coverage of 95% CI | bias | rejects mu=0 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['n']} | {r['mu']:.1f} | {r['coverage']:.3f} "
              f"± {r['coverage_se']:.3f} | {r['bias']:+.3f} ± {r['bias_se']:.3f} | "
              f"{r['rejection_rate']:.3f} |")
    return 0
