"""The ``finf`` command: one front door to every job of the project.

Each sub-command lives in its own module of :mod:`finf.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` to a function taking the
parsed arguments and returning an exit code. This module only composes them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from finf import __version__

#: sub-command modules, in the order ``finf --help`` lists them
COMMAND_MODULES = ("demo", "simulate", "check", "bench", "llm", "stats")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finf",
        description="f-influence: training-data influence as a hypothesis test over training "
        "randomness. Every result is a signed mu with an interval and a p-value.",
    )
    parser.add_argument("--version", action="version", version=f"finf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"finf.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"finf.commands.{name}":
                continue  # not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        # user-facing problems (bad files, bad options, bad data) get one clear line
        print(f"finf {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"finf {args.command}: interrupted; finished work is kept and the run resumes "
              "where it stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
