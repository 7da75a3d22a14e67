"""The ``layerwise`` command line (also ``python -m layerwise``).

    layerwise info                   backend and build information
    layerwise <experiment> [...]     one subcommand per entry of layerwise.experiments.EXPERIMENTS,
                                     e.g. ``layerwise bengio2006 --preset quick [--resume] ...``

User errors (bad options, missing data, an unwritable --out, ...) are one line on stderr
and exit status 2; Ctrl-C is one line and exit status 130.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``layerwise bengio2006: error: ... (see --help)``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    from .experiments import EXPERIMENTS

    parser = _Parser(prog="layerwise", description="layerwise: dense sigmoid networks, fast.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    sub.add_parser("info", help="print backend and build information (JSON)")
    for exp in EXPERIMENTS.values():
        p = sub.add_parser(exp.name, help=exp.help, description=exp.description or exp.help, epilog=exp.epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        exp.configure(p)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``layerwise`` console script; returns the exit status."""
    from .experiments import EXPERIMENTS, ExperimentError

    args = build_parser().parse_args(argv)
    if args.command == "info":
        import layerwise

        print(json.dumps(layerwise.backend_info(), indent=2))
        return 0
    try:
        return EXPERIMENTS[args.command].main(args)
    except ExperimentError as e:
        print(f"layerwise {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"layerwise {args.command}: interrupted (finished work is kept; continue with --resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
