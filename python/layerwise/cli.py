"""The ``layerwise`` command line (also ``python -m layerwise``).

    layerwise info                                   backend and build information
    layerwise tune [--seconds S] [--no-write]        time GEMM cache blockings, keep the fastest
    layerwise bengio2006 [--preset smoke|quick|full] [--data DIR] [--device cpu|cuda]
                         [--out DIR] [--seed N] [--rows NAME,...] [--threads N]
                         [--no-progress] [--no-plots]
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence


def _rows(value: str):
    from .experiments import bengio2006

    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in bengio2006.ROWS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown row(s) {', '.join(bad) or repr(value)}; choose from {', '.join(bengio2006.ROWS)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    from .experiments import bengio2006

    parser = argparse.ArgumentParser(prog="layerwise", description="layerwise: dense sigmoid networks, fast.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    sub.add_parser("info", help="print backend and build information (JSON)")
    t = sub.add_parser("tune", help="time candidate GEMM cache blockings (about a minute) and store the fastest")
    t.add_argument("--seconds", type=float, default=60.0, help="time budget (default: 60)")
    t.add_argument("--no-write", action="store_true", help="print the result without writing the tuning file")

    b = sub.add_parser(
        "bengio2006",
        help="Bengio et al. (2006) on MNIST: five training strategies vs the paper",
        description=(bengio2006.__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets:\n" + "\n".join(f"  {k:<6} {v.description}" for k, v in bengio2006.PRESETS.items())
        + "\nrows: " + ", ".join(bengio2006.ROWS),
    )
    b.add_argument("--preset", choices=sorted(bengio2006.PRESETS), default="quick", help="size of the run (default: quick)")
    b.add_argument("--data", metavar="DIR", default=None,
                   help="MNIST directory (default: $LAYERWISE_DATA, then ~/.cache/layerwise/mnist, then download)")
    b.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    b.add_argument("--out", metavar="DIR", default=None,
                   help="where to write results.json and the figures (default: results/bengio2006-PRESET)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--rows", type=_rows, default=None, metavar="NAME,...", help="train only these rows")
    b.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU kernel threads (default: all cores; on a machine busy with other jobs, "
                        "fewer threads than cores can be faster)")
    b.add_argument("--no-progress", action="store_true",
                   help="no progress bars (by default they are drawn when stderr is a terminal)")
    b.add_argument("--no-plots", action="store_true", help="do not draw the figures")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``layerwise`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "info":
        import layerwise

        print(json.dumps(layerwise.backend_info(), indent=2))
        return 0
    if args.command == "tune":
        from . import tune

        try:
            record = tune.tune(args.seconds, write=not args.no_write)
        except (ValueError, RuntimeError, OSError) as e:
            print(f"layerwise: error: {e}", file=sys.stderr)
            return 2
        print(json.dumps({"path": None if args.no_write else tune.cache_path(), **record}, indent=2))
        return 0
    if args.command == "bengio2006":
        from .datasets import DatasetNotFoundError
        from .experiments import bengio2006

        out = args.out if args.out is not None else f"results/bengio2006-{args.preset}"
        try:
            bengio2006.run(args.preset, data=args.data, device=args.device, out=out, seed=args.seed,
                           rows=args.rows, progress=False if args.no_progress else None,
                           plots=not args.no_plots, threads=args.threads)
        except DatasetNotFoundError as e:
            print(f"layerwise: error: {e}", file=sys.stderr)
            return 2
        return 0
    return 2  # unreachable: argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
