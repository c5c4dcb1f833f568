"""``finf bench NAME``: speed and memory benchmarks that print (and write) JSON records.

Each benchmark is a function ``run(quick: bool) -> dict`` in the package it measures; this
module only maps names to them and adds the hardware description.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from finf_stats.run_folder import provenance, write_json

#: benchmark name -> "module:function"
BENCHMARKS = {
    "stats": "finf_stats.benchmark:run",
    "retrain": "simulations.benchmark:retrain",
    "fine": "simulations.benchmark:fine",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="speed and memory benchmarks (JSON)",
                              description=__doc__)
    p.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark")
    p.add_argument("--json", action="store_true", help="print only the JSON record")
    p.add_argument("--quick", action="store_true", help="a smaller problem (a smoke test)")
    p.add_argument("--out", default=None, help="also write the record to this JSON file")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    module_name, function_name = BENCHMARKS[args.name].split(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ModuleNotFoundError, AttributeError) as err:
        raise ValueError(f"benchmark {args.name!r} is not available: {err}") from None
    record = {"benchmark": args.name, **function(quick=args.quick), "hardware": provenance()}
    text = json.dumps(record, indent=2, default=str)
    if args.out:
        write_json(args.out, record)
    if not args.json:
        print(f"benchmark {args.name}:", file=sys.stderr)
    print(text)
    return 0
