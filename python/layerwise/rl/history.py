"""The per-game history of a Pong run and the files made from it: episodes.csv,
summary.json's numbers and the reward curve (reward_curve.png)."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import List

import numpy as np

from ..atomic import write_atomic

__all__ = ["RUNNING_DECAY", "RunState", "write_csv", "read_csv", "summary", "plot_curve", "preview_running"]

RUNNING_DECAY = 0.99  # running mean reward: m = 0.99 m + 0.01 r (the anchor's)


@dataclass
class RunState:
    """Counters and the per-game history (one entry per finished game)."""

    episodes: int = 0
    updates: int = 0
    frames: int = 0
    wall: float = 0.0  # training seconds over every session of the run
    reward: List[float] = field(default_factory=list)
    running: List[float] = field(default_factory=list)
    game_frames: List[int] = field(default_factory=list)
    game_wall: List[float] = field(default_factory=list)

    def add_game(self, reward, frames, wall):
        prev = self.running[-1] if self.running else reward  # the anchor starts the mean at the first game
        self.running.append(RUNNING_DECAY * prev + (1.0 - RUNNING_DECAY) * reward)
        self.reward.append(float(reward))
        self.game_frames.append(int(frames))
        self.game_wall.append(float(wall))
        self.episodes += 1
        self.frames += int(frames)


def write_csv(path, state: RunState):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["episode", "reward", "running_mean", "frames", "wall_s"])
    for i, (r, m, f, t) in enumerate(zip(state.reward, state.running, state.game_frames, state.game_wall)):
        w.writerow([i + 1, f"{r:g}", f"{m:.4f}", f, f"{t:.2f}"])
    data = buf.getvalue().encode()
    write_atomic(path, lambda fh: fh.write(data))


def read_csv(path):
    """The per-game columns of an episodes.csv as a dict of NumPy arrays."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cols = ["episode", "reward", "running_mean", "frames", "wall_s"]
    return {c: np.array([float(r[c]) for r in rows]) for c in cols}


def summary(config: dict, state: RunState) -> dict:
    """summary.json: the run's configuration (a dict), counters and running-mean landmarks."""
    start = state.running[0] if state.running else None
    return {"config": dict(config), "episodes": state.episodes, "updates": state.updates, "frames": state.frames,
            "atari_frames": state.frames * config["frameskip"], "wall_s": round(state.wall, 2),
            "frames_per_s": round(state.frames / state.wall, 1) if state.wall > 0 else None,
            "running_mean_start": start, "running_mean_end": state.running[-1] if state.running else None,
            "running_mean_min": min(state.running) if state.running else None,
            "running_mean_max": max(state.running) if state.running else None,
            # the target: the rise of the running mean over the run (end minus start)
            "running_mean_rise": (state.running[-1] - start) if state.running else None}


def plot_curve(path, state: RunState):
    """The reward curve (skipped without matplotlib, the plot extra)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    games = np.arange(1, state.episodes + 1)
    ax.plot(games, state.reward, ".", ms=2, alpha=0.35, color="tab:gray", label="game reward")
    ax.plot(games, state.running, color="tab:blue", lw=2, label="running mean (0.99)")
    ax.set_xlabel("game")
    ax.set_ylabel("reward (points won - points lost)")
    ax.set_ylim(-21.5, 21.5)
    ax.grid(alpha=0.3)
    hours = state.wall / 3600
    ax.set_title(f"Pong from pixels: {state.episodes} games, {state.frames:,} frames, {hours:.2f} h")
    ax.legend(loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    data = buf.getvalue()
    write_atomic(path, lambda fh: fh.write(data))


def preview_running(state: RunState, pending):
    """The running mean including the games of the batch in progress (for the progress bar)."""
    m = state.running[-1] if state.running else None
    for reward, _, _, _ in sorted(pending, key=lambda t: t[3]):
        m = reward if m is None else RUNNING_DECAY * m + (1.0 - RUNNING_DECAY) * reward
    return m
