"""The Pong training loop: K games side by side, a REINFORCE update every batch of games,
atomic checkpoints and an exact ``resume``.

Schedule. A batch is ``batch`` consecutive games (10, as in the anchor). The K environments
(processes of one gymnasium AsyncVectorEnv) take the batch's games in order: an environment
that ends a game starts the next one not yet started; when none is left it idles until the
batch's last game ends. Then the policy is updated once, from all the batch's steps. So every
game of a batch is played by the same weights (the update is exactly on-policy), and a batch
boundary is a point where no game is in progress.

Randomness. Game number e (counted from 0 over the whole run) resets its environment with
``atari.episode_seed(seed, e)`` and samples its actions from its own numpy Generator seeded
with (seed, e). Nothing random depends on which process plays a game or on timing, so the
run is a function of (seed, hyperparameters); the RNG state to checkpoint is the game count.

Checkpoints and resume. After a batch whose end is ``checkpoint_seconds`` or more past the
last checkpoint (and after the last batch), ``DIR/checkpoint.npz`` is written atomically
(layerwise.checkpoint: policy weights, RMSprop state, game and update counts, the seed and
hyperparameters, the per-game history), then the outputs (episodes.csv, reward_curve.png,
policy.safetensors, summary.json). ``resume=True`` restarts from it with fresh environment
processes: the next game resets with its own seed, as it would have without the stop, so a
resumed run plays the same games and ends with bitwise the same weights as an uninterrupted
one (tested). What cannot be resumed is a batch in progress at the stop: its games are lost
and replayed. Wall-clock columns differ, naturally.

Throughput counts frames as the observations the policy sees (one per decision); the
emulator runs ``frameskip`` Atari frames for each.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from .. import checkpoint as ckpt
from .. import nn, optim
from ..atomic import write_json_atomic
from . import atari
from .history import RunState, plot_curve, preview_running, read_csv, summary, write_csv
from .policy import HIDDEN, make_policy, policy_forward
from .reinforce import GAMMA, discounted_returns, policy_gradient, standardize

__all__ = ["Config", "RunState", "train", "play_batch", "batch_arrays", "update", "close_envs", "CHECKPOINT", "POLICY",
           "CSV", "CURVE", "SUMMARY", "read_csv"]

CHECKPOINT = "checkpoint.npz"
POLICY = "policy.safetensors"
CSV = "episodes.csv"
CURVE = "reward_curve.png"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class Config:
    """What determines the run (compared on resume), plus ``envs`` (how many processes play it)."""

    seed: int = 0
    frameskip: int = atari.DEFAULT_FRAMESKIP
    batch: int = 10  # games per update
    gamma: float = GAMMA
    lr: float = 1e-4
    decay: float = 0.99  # RMSprop's alpha
    eps: float = 1e-5  # RMSprop's epsilon (the anchor's 1e-5)
    hidden: int = HIDDEN
    envs: int = 2

    def learning(self):
        """The fields a resumed run must share with the checkpoint (all but envs)."""
        d = asdict(self)
        d.pop("envs")
        return d

    def validate(self):
        for name in ("seed", "frameskip", "batch", "hidden", "envs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if name == "seed" else 1):
                raise ValueError(f"{name}: expected a {'non-negative' if name == 'seed' else 'positive'} integer, "
                                 f"got {v!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma: must be in [0, 1], got {self.gamma}")
        for name in ("lr", "eps"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name}: must be a positive number, got {getattr(self, name)}")
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"decay: must be in [0, 1), got {self.decay}")
        return self


class _Game:
    """What one game records per step: input (int8 difference image), hidden activations,
    action (UP or not) and reward."""

    __slots__ = ("index", "rng", "inputs", "hidden", "up", "rewards", "prev")

    def __init__(self, index, seed):
        self.index = index
        self.rng = np.random.default_rng([int(seed), int(index), 1])
        self.inputs, self.hidden, self.up, self.rewards = [], [], [], []
        self.prev = None  # the previous preprocessed frame

    @property
    def steps(self):
        return len(self.rewards)


def play_batch(venv, forward, first, count, seed, on_game: Callable[[_Game], None] = lambda g: None,
               dtype=np.float32) -> List[_Game]:
    """Plays games first .. first+count-1 on the vector env (see the module doc); returns them in
    order. ``forward(x)`` maps the (K, 6400) inputs (``dtype``) to (hidden activations, P(UP))
    (``policy_forward`` of the policy network; the benchmark passes others)."""
    k = venv.num_envs
    playing: List[Optional[_Game]] = [None] * k
    next_game = first
    finished = []
    frames = _start(venv, playing, range(min(k, count)), next_game, seed)
    next_game += min(k, count)
    while any(g is not None for g in playing):
        cur = atari.preprocess(frames)
        x = np.zeros_like(cur)
        for i, g in enumerate(playing):
            if g is not None and g.prev is not None:
                np.subtract(cur[i], g.prev, out=x[i])
        h, p = forward(x.astype(dtype))
        actions = np.full(k, atari.DOWN, dtype=np.int64)
        for i, g in enumerate(playing):
            if g is None:
                continue
            up = bool(g.rng.random() < p[i])
            actions[i] = atari.UP if up else atari.DOWN
            g.inputs.append(x[i])
            g.hidden.append(h[i])
            g.up.append(up)
            g.prev = cur[i]
        frames, rewards, terminated, truncated, _ = venv.step(actions)
        ended = []
        for i, g in enumerate(playing):
            if g is None:
                continue
            g.rewards.append(float(rewards[i]))
            if terminated[i] or truncated[i]:
                finished.append(g)
                on_game(g)
                playing[i] = None
                ended.append(i)
        start = ended[: max(0, first + count - next_game)]
        if start:
            frames = _start(venv, playing, start, next_game, seed)
            next_game += len(start)
    finished.sort(key=lambda g: g.index)
    return finished


def _start(venv, playing, slots, first_index, seed):
    """Resets the environments in ``slots`` for games first_index, first_index+1, ...; returns the frames."""
    slots = list(slots)
    mask = np.zeros(venv.num_envs, dtype=bool)
    seeds = [None] * venv.num_envs
    for j, i in enumerate(slots):
        playing[i] = _Game(first_index + j, seed)
        mask[i] = True
        seeds[i] = atari.episode_seed(seed, first_index + j)
    frames, _ = venv.reset(seed=seeds, options={"reset_mask": mask})
    return frames


def batch_arrays(games, gamma):
    """The batch's steps in game order: inputs (n, 6400) int8, hidden (n, h), up (n,) bool, and
    the advantages (n,): discounted returns standardized over the batch."""
    returns = np.concatenate([discounted_returns(g.rewards, gamma) for g in games])
    inputs = np.stack([x for g in games for x in g.inputs])
    hidden = np.stack([h for g in games for h in g.hidden])
    up = np.fromiter((u for g in games for u in g.up), dtype=bool, count=returns.size)
    return inputs, hidden, up, standardize(returns)


def update(net, opt, games, gamma):
    """One REINFORCE step from the batch's games."""
    policy_gradient(net, *batch_arrays(games, gamma))
    opt.step()


# ---- files -------------------------------------------------------------------------------
def _save(out: Path, net, opt, config: Config, state: RunState):
    arrays = {f"param/{k}": v for k, v in ckpt.param_arrays(net.parameters()).items()}
    opt_arrays, opt_meta = ckpt.optimizer_state(opt)
    arrays.update({f"opt/{k}": v for k, v in opt_arrays.items()})
    arrays["history/reward"] = np.asarray(state.reward, np.float64)
    arrays["history/running"] = np.asarray(state.running, np.float64)
    arrays["history/frames"] = np.asarray(state.game_frames, np.int64)
    arrays["history/wall"] = np.asarray(state.game_wall, np.float64)
    meta = {"kind": "layerwise-pong", "config": asdict(config), "episodes": state.episodes,
            "updates": state.updates, "frames": state.frames, "wall": state.wall, "optimizer": opt_meta}
    ckpt.write(out / CHECKPOINT, arrays, meta)
    nn.save(net, out / POLICY)
    write_csv(out / CSV, state)
    write_json_atomic(out / SUMMARY, summary(asdict(config), state))
    plot_curve(out / CURVE, state)


def _load(out: Path, net, opt, config: Config) -> RunState:
    arrays, meta = ckpt.read(out / CHECKPOINT)
    if meta.get("kind") != "layerwise-pong":
        raise ValueError(f"checkpoint: {out / CHECKPOINT} is not a Pong run's checkpoint")
    saved = Config(**meta["config"])
    if saved.learning() != config.learning():
        diff = {k: (v, config.learning()[k]) for k, v in saved.learning().items() if config.learning()[k] != v}
        raise ValueError("resume: the run in " + str(out) + " was started with other settings (saved, given): "
                         + ", ".join(f"{k} {a} vs {b}" for k, (a, b) in diff.items()))
    ckpt.load_params(net.parameters(), ckpt.subset(arrays, "param/"), "policy")
    ckpt.load_optimizer_state(opt, ckpt.subset(arrays, "opt/"), meta["optimizer"])
    state = RunState(episodes=int(meta["episodes"]), updates=int(meta["updates"]), frames=int(meta["frames"]),
                     wall=float(meta["wall"]), reward=arrays["history/reward"].tolist(),
                     running=arrays["history/running"].tolist(), game_frames=arrays["history/frames"].tolist(),
                     game_wall=arrays["history/wall"].tolist())
    if len(state.reward) != state.episodes:
        raise ValueError(f"checkpoint: {out / CHECKPOINT} has {len(state.reward)} games of history for "
                         f"{state.episodes} games played")
    return state


# ---- the loop --------------------------------------------------------------------------------
def train(out, config: Config = Config(), *, episodes=None, minutes=None, resume=False, checkpoint_seconds=180.0,
          progress=True, log=print):
    """Trains (or, with ``resume``, continues) the run in directory ``out`` until ``episodes``
    games have been played in all (counting earlier sessions) or this session has run
    ``minutes``, whichever is given, stopping at a batch boundary. Returns (net, RunState)."""
    config.validate()
    if (episodes is None) == (minutes is None):
        raise ValueError("give exactly one of episodes and minutes")
    if episodes is not None and (isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer))
                                 or episodes < 1):
        raise ValueError(f"episodes: expected a positive integer, got {episodes!r}")
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"minutes: expected a positive number, got {minutes!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    net = make_policy(atari.INPUTS, config.hidden, seed=config.seed)
    opt = optim.RMSprop(net.parameters(), lr=config.lr, alpha=config.decay, eps=config.eps)
    if resume and ckpt.exists(out / CHECKPOINT):
        state = _load(out, net, opt, config)
        log(f"resuming {out}: {state.episodes} games, {state.updates} updates, running mean "
            f"{state.running[-1] if state.running else float('nan'):.2f}")
    else:
        if ckpt.exists(out / CHECKPOINT):
            raise FileExistsError(f"out: {out} already holds a Pong run ({CHECKPOINT}); continue it with --resume "
                                  f"or choose another --out")
        state = RunState()
    if episodes is not None and state.episodes >= episodes:
        log(f"{out}: {state.episodes} games already played (>= {episodes}); nothing to do")
        return net, state

    from tqdm.auto import tqdm

    venv = atari.make_vector_env(config.envs, config.frameskip)
    # Every process gets a game now, so that one left idle at a batch's end (or by a batch smaller
    # than --envs) can be stepped; a process that plays a game of the run resets for it again.
    venv.reset(seed=config.seed)
    t0 = time.perf_counter()
    wall0, frames0 = state.wall, state.frames
    last_ckpt = t0
    bar = tqdm(total=episodes, initial=state.episodes, unit="game", disable=not progress, dynamic_ncols=True,
               desc="pong")
    session_frames = [0]

    def on_game(g):
        now = time.perf_counter()
        session_frames[0] += g.steps
        state_wall = wall0 + (now - t0)
        pending.append((float(sum(g.rewards)), g.steps, state_wall, g.index))
        bar.update(1)
        elapsed = now - t0
        mean = preview_running(state, pending)
        bar.set_postfix_str(f"running {mean:+.2f}  fps {session_frames[0] / elapsed:.0f}", refresh=False)

    try:
        while True:
            if episodes is not None:
                count = min(config.batch, episodes - state.episodes)
            else:
                count = config.batch
            pending = []
            games = play_batch(venv, lambda x: policy_forward(net, x), state.episodes, count, config.seed, on_game,
                               dtype=net[0].weight.data.dtype)
            update(net, opt, games, config.gamma)
            # Record in game order (games of a batch can end out of order on different processes).
            for reward, steps, wall, _ in sorted(pending, key=lambda t: t[3]):
                state.add_game(reward, steps, wall)
            state.updates += 1
            now = time.perf_counter()
            state.wall = wall0 + (now - t0)
            done = (state.episodes >= episodes) if episodes is not None else (now - t0 >= minutes * 60)
            if done or now - last_ckpt >= checkpoint_seconds:
                _save(out, net, opt, config, state)
                last_ckpt = time.perf_counter()
            if done:
                break
    finally:
        bar.close()
        close_envs(venv)
    secs = time.perf_counter() - t0
    log(f"{state.episodes} games ({state.frames - frames0:,} frames this session, "
        f"{(state.frames - frames0) / secs:.0f} frames/s), running mean {state.running[-1]:+.2f}; "
        f"written to {out}")
    return net, state


def close_envs(venv):
    """Stops the environment processes; after Ctrl-C a step is still pending, which gymnasium
    would warn about on top of the one-line message the CLI prints."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        venv.close(terminate=True)
