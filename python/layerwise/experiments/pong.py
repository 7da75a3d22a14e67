"""Pong from pixels: a 6400-200-1 policy network trained with REINFORCE on the real Atari game.

    layerwise pong --minutes 60 --out results/pong          # train (or --episodes N)
    layerwise pong --minutes 60 --out results/pong --resume # continue a stopped run exactly
    layerwise pong --play results/pong --games 3 --gif game.gif

Needs the rl extra (pip install "layerwise[rl]": gymnasium, ale-py with the ROM, imageio).
See docs/pong.md and layerwise.rl."""
from __future__ import annotations

from .arguments import non_negative_int, positive_float, positive_int
from .registry import Experiment, ExperimentError, register

__all__ = ["add_arguments", "run", "EXPERIMENT"]


def add_arguments(parser) -> None:
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--episodes", type=positive_int, metavar="N",
                        help="train until N games have been played in all (counting resumed sessions)")
    length.add_argument("--minutes", type=positive_float, metavar="M",
                        help="train for M minutes in this session (stops at the next batch boundary)")
    length.add_argument("--play", metavar="DIR", help="play a trained policy (DIR or DIR/policy.safetensors)")
    parser.add_argument("--out", metavar="DIR", default="results/pong", help="run directory (default results/pong)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--envs", type=positive_int, default=2, metavar="K",
                        help="environment processes playing side by side (default 2)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="run seed (default 0)")
    parser.add_argument("--frameskip", type=positive_int, default=None, metavar="F",
                        help="Atari frames per decision (default 4, with --play the run's; the anchor's Pong-v0 "
                             "drew 2-4)")
    parser.add_argument("--batch", type=positive_int, default=10, metavar="B", help="games per update (default 10)")
    parser.add_argument("--checkpoint-minutes", type=positive_float, default=3.0, metavar="M",
                        help="checkpoint after the first batch that ends M minutes after the last (default 3)")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N", help="CPU kernel threads")
    parser.add_argument("--games", type=positive_int, default=3, metavar="N", help="with --play: games (default 3)")
    parser.add_argument("--gif", metavar="PATH", default=None, help="with --play: write the first game as a GIF")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from .. import ops
    from ..rl import atari

    try:
        atari.require_gymnasium()
    except atari.MissingExtra as e:
        raise ExperimentError(str(e)) from None
    if args.threads is not None:
        ops.set_num_threads(args.threads)
    if args.play is not None:
        return _play(args)
    if args.gif is not None:
        raise ExperimentError("--gif: only with --play")
    if args.episodes is None and args.minutes is None:
        raise ExperimentError("give --episodes N or --minutes M (or --play DIR)")
    from ..rl import trainer
    from pathlib import Path

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".layerwise-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise ExperimentError(f"--out {out}: not a writable directory ({e.strerror or e})") from None
    config = trainer.Config(seed=args.seed, frameskip=args.frameskip or atari.DEFAULT_FRAMESKIP, batch=args.batch,
                            envs=args.envs)
    try:
        trainer.train(out, config, episodes=args.episodes, minutes=args.minutes, resume=args.resume,
                      checkpoint_seconds=60.0 * args.checkpoint_minutes, progress=not args.no_progress)
    except (ValueError, FileExistsError) as e:
        raise ExperimentError(" ".join(str(e).split())) from None
    return 0


def _play(args) -> int:
    from ..rl import play

    try:
        play.play(args.play, games=args.games, seed=args.seed, frameskip=args.frameskip, gif=args.gif)
    except (ValueError, FileNotFoundError, ImportError, OSError) as e:
        raise ExperimentError(" ".join(str(e).split())) from None
    return 0


EXPERIMENT = register(Experiment(
    name="pong",
    help="Pong from pixels: REINFORCE on the real Atari game (needs the rl extra)",
    configure=add_arguments,
    main=run,
    description=(__doc__ or "").split("\n\n")[0],
    epilog="\n\n".join((__doc__ or "").split("\n\n")[1:]),
))
