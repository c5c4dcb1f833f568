"""``finf simulate``: ground-truth f-influence from many retrains of a convex model.

Trains ``R`` models on D and ``R`` on D \\ S for every candidate S (all at once, in the
batched engine), estimates ``mu`` for every candidate and target, and writes a run folder
(config.json, truth.csv, samples.npz, figures/, report.md). Rerunning on the same folder
resumes the unfinished chunks; ``--config`` replays a run folder's config.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("simulate", help="ground-truth influence from many retrains",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="a config.json to replay (other options override it)")
    p.add_argument("--out", default="runs/simulate", help="run folder (default runs/simulate)")
    d = p.add_argument_group("data")
    d.add_argument("--data", choices=["mixture", "regression", "digits", "fashion-mnist",
                                      "mnist"], help="data source (default mixture)")
    d.add_argument("--data-path", help="folder of idx files (mnist, fashion-mnist)")
    d.add_argument("--n-train", type=int)
    d.add_argument("--n-test", type=int)
    d.add_argument("--n-features", type=int, help="synthetic sources only")
    d.add_argument("--n-classes", type=int, help="mixture only")
    d.add_argument("--flip", type=float, help="fraction of training labels flipped")
    d.add_argument("--outliers", type=float, help="fraction of regression outliers")
    d.add_argument("--pool", type=int, help="average-pool images by k×k")
    d.add_argument("--data-seed", type=int)
    r = p.add_argument_group("recipe")
    r.add_argument("--model", choices=["linear", "ridge", "logistic", "multinomial"])
    r.add_argument("--epochs", type=int)
    r.add_argument("--batch-size", type=int, help="0 = full batch")
    r.add_argument("--lr", type=float)
    r.add_argument("--schedule", choices=["constant", "step", "cosine"])
    r.add_argument("--l2", type=float)
    r.add_argument("--noise", type=float, help="Gaussian gradient-noise sd")
    r.add_argument("--init-scale", type=float)
    s = p.add_argument_group("study")
    s.add_argument("--candidates", help="e.g. 'flipped,random:40,groups:5x3,7,3-5'")
    s.add_argument("--target", action="append", dest="targets",
                   help="test-loss:I | test-set-loss | self-loss | prediction:I[:K]; repeatable")
    s.add_argument("--replicas", "-R", type=int, help="retrains per side (default 200)")
    s.add_argument("--seed", type=int)
    s.add_argument("--pairing", choices=["independent", "paired"])
    s.add_argument("--method", choices=["auc", "binormal", "probit", "threshold-max"])
    s.add_argument("--chunk-replicas", type=int)
    x = p.add_argument_group("execution")
    x.add_argument("--jobs", "-j", type=int, default=1, help="local joblib workers")
    x.add_argument("--scheduler", help="Dask scheduler address (tcp://host:8786)")
    x.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Merge ``--config`` (if any), the defaults and the options given."""
    cfg: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"no such config file: {path}")
        cfg = json.loads(path.read_text())
        cfg.pop("data_summary", None)
        cfg.pop("job_key", None)
    data = {"source": "mixture", "n_train": 200, "n_test": 100, "n_features": 10,
            "n_classes": 2, **cfg.get("data", {})}
    for opt, key in [("data", "source"), ("data_path", "path"), ("n_train", "n_train"),
                     ("n_test", "n_test"), ("n_features", "n_features"),
                     ("n_classes", "n_classes"), ("flip", "flip_fraction"),
                     ("outliers", "outlier_fraction"), ("pool", "pool"),
                     ("data_seed", "seed")]:
        if getattr(args, opt) is not None:
            data[key] = getattr(args, opt)
    if data["source"] in ("digits", "fashion-mnist", "mnist") and args.n_classes is None:
        data.pop("n_classes", None)
    recipe = dict(cfg.get("recipe", {}))
    if args.model is not None:
        recipe["model"] = args.model
    recipe.setdefault("model", "linear" if data["source"] == "regression" else
                      "logistic" if data.get("n_classes", 10) == 2 else "multinomial")
    for opt, key in [("epochs", "epochs"), ("l2", "l2"), ("noise", "grad_noise")]:
        if getattr(args, opt) is not None:
            recipe[key] = getattr(args, opt)
    if args.batch_size is not None:
        recipe["batch_size"] = None if args.batch_size == 0 else args.batch_size
    sched = dict(recipe.get("schedule", {}))
    if args.lr is not None:
        sched["lr"] = args.lr
    if args.schedule is not None:
        sched["kind"] = args.schedule
    if sched:
        recipe["schedule"] = sched
    if args.init_scale is not None:
        recipe["init"] = {**recipe.get("init", {}), "scale": args.init_scale}
    recipe.setdefault("name", f"{recipe['model']}-{data['source']}")
    cfg["data"], cfg["recipe"] = data, recipe
    for opt in ("candidates", "targets", "replicas", "seed", "pairing", "method",
                "chunk_replicas"):
        if getattr(args, opt) is not None:
            cfg[opt] = getattr(args, opt)
    return cfg


def run(args: argparse.Namespace) -> int:
    from simulations.study import run_study

    cfg = config_from_args(args)
    summary = run_study(cfg, args.out, n_jobs=args.jobs, scheduler=args.scheduler,
                        progress=not args.no_progress)
    print(f"wrote {args.out}/report.md ({summary['models_trained']} models in "
          f"{summary['seconds']:.1f} s)")
    for a in summary["adequacy"]:
        print(f"  {a['target']}: CI half-width {a['median_half_width']:.3f} vs spread of mu "
              f"{a['mu_spread']:.3f} -> R {'enough' if a['enough'] else 'NOT enough'}")
    return 0
