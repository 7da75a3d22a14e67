"""The ``layerwise`` command line (also ``python -m layerwise``).

    layerwise info                   backend and build information
    layerwise <experiment> [...]     one subcommand per entry of layerwise.experiments.EXPERIMENTS,
                                     e.g. ``layerwise bengio2006 --preset quick [--resume] ...``,
                                     ``layerwise robustness --nets DIR``
    layerwise search [...]           Optuna search over topologies and hyperparameters
    layerwise tune [...]             time GEMM cache blockings, keep the fastest
    layerwise make-digits --out DIR  a second digit dataset in MNIST's IDX layout (layerwise.digits)

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


def _tune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=60.0, help="time budget (default: 60)")
    p.add_argument("--no-write", action="store_true", help="print the result without writing the tuning file")


def _tune_main(args: argparse.Namespace) -> int:
    from . import tune
    from .experiments import ExperimentError

    try:
        record = tune.tune(args.seconds, write=not args.no_write)
    except (ValueError, RuntimeError, OSError) as e:
        raise ExperimentError(" ".join(str(e).split())) from None
    print(json.dumps({"path": None if args.no_write else tune.cache_path(), **record}, indent=2))
    return 0


def _digits_arguments(p: argparse.ArgumentParser) -> None:
    from .experiments.arguments import non_negative_int, positive_int

    p.add_argument("--out", metavar="DIR", required=True, help="folder for the four MNIST-named IDX files")
    p.add_argument("--train", type=positive_int, default=60000, metavar="N", help="training-file images (60000)")
    p.add_argument("--test", type=positive_int, default=10000, metavar="N", help="test-file images (10000)")
    p.add_argument("--seed", type=non_negative_int, default=0)


def _digits_main(args: argparse.Namespace) -> int:
    from . import digits
    from .experiments import ExperimentError

    try:
        out = digits.build_digits_idx(args.out, n_train=args.train, n_test=args.test, seed=args.seed)
        shapes = digits.file_shapes(out)
    except (ImportError, OSError, ValueError) as e:
        raise ExperimentError(" ".join(str(e).split())) from None
    print(json.dumps({"path": str(out), "shapes": {k: list(v) for k, v in shapes.items()}}))
    return 0


def _search_main(args: argparse.Namespace) -> int:
    from . import search

    return search.main(args)


def commands():
    """Every subcommand but ``info``: the registered experiments, then the tools. Each entry
    has the registry's fields (name, help, configure, main, description, epilog)."""
    from . import digits, search
    from .experiments import EXPERIMENTS, Experiment

    tools = [
        Experiment(name="search", help="topology and hyperparameter search on Optuna",
                   configure=search.add_arguments, main=_search_main,
                   description=(search.__doc__ or "").split("\n\n")[0]),
        Experiment(name="tune", help="time candidate GEMM cache blockings (about a minute) and store the fastest",
                   configure=_tune_arguments, main=_tune_main),
        Experiment(name="make-digits", help="build a second digit dataset (IDX) from scikit-learn's 8x8 digits",
                   configure=_digits_arguments, main=_digits_main,
                   description=(digits.__doc__ or "").split("\n\n")[0]),
    ]
    return {**EXPERIMENTS, **{t.name: t for t in tools}}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""

    parser = _Parser(prog="layerwise", description="layerwise: dense sigmoid networks, fast.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    sub.add_parser("info", help="print backend and build information (JSON)")
    for exp in commands().values():
        p = sub.add_parser(exp.name, help=exp.help, description=exp.description or exp.help, epilog=exp.epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        exp.configure(p)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``layerwise`` console script; returns the exit status."""
    from .experiments import ExperimentError

    args = build_parser().parse_args(argv)
    if args.command == "info":
        import layerwise

        print(json.dumps(layerwise.backend_info(), indent=2))
        return 0
    try:
        return commands()[args.command].main(args)
    except ExperimentError as e:
        print(f"layerwise {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"layerwise {args.command}: interrupted (finished work is kept; continue with --resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
