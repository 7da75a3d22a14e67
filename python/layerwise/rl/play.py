"""Runs a saved Pong policy: a few games, the score of each, optionally a GIF of the first.

The policy acts as in training: it samples UP with its probability P(UP) (a trained
REINFORCE policy is stochastic; taking the likelier action every frame can get stuck in
loops the sampled policy escapes). Games use their own seeds, ``atari.episode_seed(seed,
10**9 + i)``, so they are never training games.

The GIF shows what the emulator renders (it is derived from the ROM: never commit one).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import nn
from . import atari
from .policy import check_policy, policy_forward

__all__ = ["play", "write_gif"]

_PLAY_OFFSET = 10 ** 9  # game indices far from any training run's


def play(policy_path, *, games=3, seed=0, frameskip=None, gif=None, log=print):
    """Plays ``games`` games with the policy in ``policy_path`` (a policy.safetensors or a
    training directory). ``frameskip`` None: the training run's (from its summary.json), else 4.
    Returns one dict per game (points won and lost, reward, frames)."""
    if isinstance(games, bool) or not isinstance(games, (int, np.integer)) or games < 1:
        raise ValueError(f"games: expected a positive integer, got {games!r}")
    path = Path(policy_path)
    if path.is_dir():
        path = path / "policy.safetensors"
    if frameskip is None:
        frameskip = _run_frameskip(path.parent / "summary.json")
    if gif is not None and not Path(gif).resolve().parent.is_dir():
        raise FileNotFoundError(f"gif: the directory of {gif} does not exist")  # found out before a game, not after
    if not path.is_file():
        raise FileNotFoundError(f"play: no policy file at {path} (train one with layerwise pong --out DIR)")
    net = nn.load(path)
    layers = check_policy(net)
    if layers[0].in_features != atari.INPUTS:
        raise ValueError(f"play: {path} takes {layers[0].in_features} inputs, Pong's preprocessing gives {atari.INPUTS}")
    env = atari.make_env(frameskip)
    results = []
    try:
        for i in range(games):
            index = _PLAY_OFFSET + i
            rng = np.random.default_rng([int(seed), index, 1])
            frame, _ = env.reset(seed=atari.episode_seed(seed, index))
            frames = [frame] if (gif is not None and i == 0) else None
            prev = None
            won = lost = steps = 0
            while True:
                cur = atari.preprocess(frame)
                x = np.zeros(atari.INPUTS, np.float32) if prev is None else (cur - prev).astype(np.float32)
                prev = cur
                _, p = policy_forward(net, x[None].astype(layers[0].weight.data.dtype))
                action = atari.UP if rng.random() < p[0] else atari.DOWN
                frame, reward, terminated, truncated, _ = env.step(action)
                steps += 1
                won += reward > 0
                lost += reward < 0
                if frames is not None:
                    frames.append(frame)
                if terminated or truncated:
                    break
            results.append({"game": i + 1, "won": int(won), "lost": int(lost), "reward": int(won - lost),
                            "frames": steps})
            log(f"game {i + 1}: {int(won)}-{int(lost)} (reward {int(won - lost):+d}, {steps} frames)")
            if frames is not None:
                write_gif(gif, frames, fps=60.0 / frameskip)
                log(f"wrote {gif} ({len(frames)} frames)")
    finally:
        env.close()
    mean = sum(r["reward"] for r in results) / len(results)
    log(f"mean reward over {len(results)} games: {mean:+.2f}")
    return results


def _run_frameskip(summary_path):
    """The frameskip a run was trained with (its summary.json), or the default."""
    import json

    try:
        return int(json.loads(Path(summary_path).read_text())["config"]["frameskip"])
    except (OSError, ValueError, KeyError, TypeError):
        return atari.DEFAULT_FRAMESKIP


def write_gif(path, frames, fps=15.0):
    """Writes RGB frames as an endlessly looping GIF, atomically (imageio, the rl extra)."""
    try:
        import imageio.v3 as iio
    except ImportError:
        raise ImportError("a GIF needs imageio (part of the rl extra): pip install \"layerwise[rl]\"") from None
    from ..atomic import write_atomic_path

    stack = np.stack(frames)
    write_atomic_path(path, lambda tmp: iio.imwrite(tmp, stack, extension=".gif", duration=1000.0 / fps, loop=0))
