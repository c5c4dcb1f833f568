"""``finf demo``: the default f-INE calibration study, end to end, in a few minutes.

Digits (scikit-learn), multinomial logistic regression by minibatch SGD, 300 training points
with 5% flipped labels; 60 candidates (the flipped points and random ones); ground truth from
1000 retrains with and 1000 without every candidate; f-INE (the default ``adjoint`` preset,
the other variants and the paper's reconstruction), TracIn, TracInCP, influence functions
and TRAK from 5 independent single runs. Writes a run folder with report.md, summary.json,
truth.csv, scores.npz and figures/.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="the f-INE calibration study on digits (~1 min)",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None,
                   help="run folder (default runs/demo-<UTC timestamp>)")
    p.add_argument("--replicas", "-R", type=int, default=1000,
                   help="retrains per side for the ground truth (default 1000)")
    p.add_argument("--runs", type=int, default=5,
                   help="independent single runs for the consistency study (default 5)")
    p.add_argument("--candidates", default="flipped,random:45",
                   help="candidate spec (default 'flipped,random:45')")
    p.add_argument("--target", default="test-set-loss",
                   help="test-set-loss (default) or test-loss:I")
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="joblib workers (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from simulations.fine_study import StudyConfig, run_study

    if args.runs < 5:
        raise ValueError("--runs must be at least 5 (consistency needs R' >= 5 runs)")
    out = args.out or f"runs/demo-{_dt.datetime.now(_dt.UTC).strftime('%Y%m%d-%H%M%S')}"
    base = StudyConfig()
    config = replace(base, replicas=args.replicas, single_runs=args.runs,
                     candidates=args.candidates, target=args.target, seed=args.seed,
                     n_jobs=args.jobs, recipe=base.recipe.with_(epochs=args.epochs),
                     data=replace(base.data, n_train=args.n_train))
    print(f"finf demo: writing {out}", file=sys.stderr)
    summary = run_study(config, out, progress=not args.no_progress)
    m = summary["methods"]
    print(f"{'method':26s} {'spearman':>9s} {'jaccard':>8s} {'cv':>7s}")
    for name, v in m.items():
        print(f"{name:26s} {v['spearman']:9.3f} {v['jaccard']:8.3f} {v['cv']:7.3f}")
    f = summary["fine"]
    print(f"f-INE [{f['preset']}]: bias {f['bias']:+.3f}, coverage {f['coverage']:.2f}; "
          f"report: {out}/report.md")
    return 0
