"""The Atari environment and Karpathy's preprocessing.

The game is the real Atari 2600 Pong, ``ALE/Pong-v5`` from ale-py (whose wheel ships the
ROM), configured like the anchor's ``Pong-v0`` where it matters for learning: no sticky
actions (``repeat_action_probability=0``) and the raw 210x160x3 RGB frame. Pong-v0 repeated
each action a random 2-4 frames; here the repeat (``frameskip``) is fixed, 4 by default:
deterministic, 25 % fewer decisions per game than v0's mean of 3 (so more games per
second on a CPU), and the choice of DeepMind's Atari work. An episode is one full game,
to 21 points.

Preprocessing (``preprocess``): crop rows 35:195 (the play field without the score), keep
every second row and column of the red channel (80x80), erase the two background colours
(144 and 109), set everything else (paddles, ball) to 1, flatten to 6400 values. The
policy sees the difference of consecutive preprocessed frames (zeros on the first step
of a game), so it can tell which way the ball moves.
"""
from __future__ import annotations

import numpy as np

ENV_ID = "ALE/Pong-v5"
UP, DOWN = 2, 3  # ALE action indices (RIGHT / LEFT on the joystick move the paddle up / down)
ROWS = slice(35, 195)
BACKGROUND = (144, 109)  # red channel of the two background shades
INPUTS = 80 * 80
DEFAULT_FRAMESKIP = 4

__all__ = ["ENV_ID", "UP", "DOWN", "INPUTS", "DEFAULT_FRAMESKIP", "require_gymnasium", "make_env",
           "make_vector_env", "preprocess", "episode_seed"]


class MissingExtra(ImportError):
    """Gymnasium or ale-py is not installed."""


def require_gymnasium():
    """(gymnasium, ale_py), with ALE's environments registered; MissingExtra if absent."""
    try:
        import gymnasium
        import ale_py
    except ImportError as e:
        raise MissingExtra(f"Pong needs the rl extra (gymnasium, ale-py): pip install \"layerwise[rl]\" ({e})") from None
    gymnasium.register_envs(ale_py)
    return gymnasium, ale_py


def _check_frameskip(frameskip):
    if isinstance(frameskip, bool) or not isinstance(frameskip, (int, np.integer)) or frameskip < 1:
        raise ValueError(f"frameskip: expected a positive integer, got {frameskip!r}")
    return int(frameskip)


def make_env(frameskip=DEFAULT_FRAMESKIP, render_mode=None):
    """One Pong environment (raw RGB frames, no sticky actions, fixed frameskip)."""
    gym, _ = require_gymnasium()
    return gym.make(ENV_ID, repeat_action_probability=0.0, frameskip=_check_frameskip(frameskip),
                    full_action_space=False, render_mode=render_mode)


class _EnvFactory:
    """A picklable ``make_env`` with fixed arguments (the vector env calls it in each worker)."""

    def __init__(self, frameskip):
        self.frameskip = frameskip

    def __call__(self):
        return make_env(self.frameskip)


def make_vector_env(num_envs, frameskip=DEFAULT_FRAMESKIP):
    """``num_envs`` Pong environments, each in its own process (gymnasium AsyncVectorEnv), with
    autoreset disabled: the trainer resets each environment itself, with the seed of the game
    it starts next, so which process plays a game never changes the game."""
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"envs: expected a positive integer, got {num_envs!r}")
    gym, _ = require_gymnasium()
    from gymnasium.vector import AsyncVectorEnv, AutoresetMode

    factory = _EnvFactory(_check_frameskip(frameskip))
    return AsyncVectorEnv([factory] * int(num_envs), autoreset_mode=AutoresetMode.DISABLED)


def preprocess(frames, out=None):
    """(n, 210, 160, 3) uint8 RGB frames -> (n, 6400) int8 in {0, 1}: ball and paddles 1,
    background 0 (a single frame (210, 160, 3) gives (6400,))."""
    frames = np.asarray(frames)
    single = frames.ndim == 3
    if single:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[1:] != (210, 160, 3) or frames.dtype != np.uint8:
        raise ValueError(f"frames: expected uint8 RGB frames of shape (n, 210, 160, 3), got "
                         f"{frames.dtype} {frames.shape}")
    red = frames[:, ROWS, ::2, 0][:, ::2]  # (n, 80, 80): crop, then every second row and column
    field = (red != BACKGROUND[0]) & (red != BACKGROUND[1])
    n = frames.shape[0]
    if out is None:
        out = np.empty((n, INPUTS), np.int8)
    np.copyto(out, field.reshape(n, INPUTS), casting="unsafe")
    return out[0] if single else out


def episode_seed(seed, episode):
    """The environment seed of game number ``episode`` of a run seeded ``seed`` (32 bits)."""
    return int(np.random.SeedSequence([int(seed), int(episode), 0x9E3779B9]).generate_state(1)[0])
