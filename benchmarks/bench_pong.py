"""Pong from pixels: frames per second with learning on, and the policy network's share of it.

Two implementations of the same policy (6400-200-1, ReLU, sigmoid, no biases) and the same
REINFORCE + RMSprop update play the same schedule of games (layerwise.rl.trainer.play_batch:
K environment processes, a batch of games per update):

  layerwise -- layerwise.rl: the nn.Linear policy, the batched backward through layerwise.ops,
               optim.RMSprop (the code `layerwise pong` runs)
  numpy     -- the same math written with plain NumPy matrix products (the BLAS NumPy links
               against) and a NumPy RMSprop, written here for the comparison
  numpy-1thread -- the same, with NumPy's BLAS pinned to one thread

    python benchmarks/bench_pong.py [--games 20] [--batch 10] [--envs 2] [--repeats 3]
                                    [--threads 2] [--frameskip 4] [--json out.json] [--quick]

Each contender runs in its own fresh process and the processes take turns (see
benchmarks/_harness.py). A process plays one warm-up game (and its update), then --games
games with an update after every --batch games, and reports:

  frames_per_second -- observations (policy decisions) per wall second, updates included;
                       the emulator runs --frameskip Atari frames for each
  forward_share     -- the share of the wall time spent in the policy's per-step forward
  backward_share    -- ... in the batched backward and the RMSprop step
  policy_share      -- the two together (target: at most 0.25, so the policy is not the
                       bottleneck; the rest is the emulator, preprocessing and the env IPC)

Games are seeded as in training, so both contenders start with the same games; they drift
apart once float rounding changes an action, so compare rates, not rewards. --quick plays
1 game of batch 1 on 1 env after the warm-up game (to prove the script runs; numbers meaningless).

--json PATH writes {"benchmark", "machine", "settings", "rows": {contender: {metric:
{median, min, max, ...}}}, "ratios", "raw"}.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _harness as H  # noqa: E402

# name -> extra worker environment. numpy-1thread pins NumPy's BLAS to one thread: with K env
# processes on 2 cores a 2-thread BLAS pool is oversubscribed, and OpenBLAS's spinning threads
# can then be far slower than one thread (seen on a busy machine), so NumPy gets both chances.
CONTENDERS = {"layerwise": {}, "numpy": {}, "numpy-1thread": {v: "1" for v in H.THREAD_VARIABLES}}
METRICS = ("frames_per_second", "forward_share", "backward_share", "policy_share", "seconds", "frames")


# ---- the NumPy contender ------------------------------------------------------------------------
class NumpyPolicy:
    """The policy and its update in plain NumPy (float32, as the layerwise one)."""

    def __init__(self, seed, inputs=6400, hidden=200, lr=1e-4, alpha=0.99, eps=1e-5):
        import numpy as np

        rng = np.random.default_rng(seed)  # the same initial weights as rl.policy.make_policy
        self.w1 = (rng.standard_normal((hidden, inputs)) / math.sqrt(inputs)).astype(np.float32)
        self.w2 = (rng.standard_normal((1, hidden)) / math.sqrt(hidden)).astype(np.float32)
        self.cache = [np.zeros_like(self.w1), np.zeros_like(self.w2)]
        self.lr, self.alpha, self.eps = lr, alpha, eps

    def forward(self, x):
        import numpy as np

        h = x @ self.w1.T
        np.maximum(h, 0.0, out=h)
        p = 1.0 / (1.0 + np.exp(-(h @ self.w2.T)))
        return h, p[:, 0]

    def learn(self, inputs, hidden, up, advantages, chunk=4096):
        import numpy as np

        p = 1.0 / (1.0 + np.exp(-(hidden @ self.w2.T)))[:, 0]
        dz2 = ((p - up.astype(np.float32)) * advantages.astype(np.float32))[:, None]
        g2 = dz2.T @ hidden
        dz1 = dz2 @ self.w2
        dz1[hidden <= 0] = 0.0
        g1 = np.zeros_like(self.w1)
        for start in range(0, len(up), chunk):
            g1 += dz1[start:start + chunk].T @ inputs[start:start + chunk].astype(np.float32)
        for w, g, c in ((self.w1, g1, self.cache[0]), (self.w2, g2, self.cache[1])):
            c *= self.alpha
            c += (1.0 - self.alpha) * g * g
            w -= self.lr * g / (np.sqrt(c) + self.eps)


# ---- one measurement (in a worker process) ----------------------------------------------------------
def measure(payload):
    """Plays a warm-up game, then payload["games"] games with learning on; returns the rates."""
    import numpy as np

    H.set_worker_threads(payload["threads"])
    from layerwise import optim
    from layerwise.rl import atari, trainer
    from layerwise.rl.policy import make_policy, policy_forward
    from layerwise.rl.reinforce import policy_gradient

    seed, batch, gamma = payload["seed"], payload["batch"], 0.99
    if payload["contender"] == "layerwise":
        net = make_policy(seed=seed)
        opt = optim.RMSprop(net.parameters(), lr=1e-4, alpha=0.99, eps=1e-5)

        def forward(x):
            return policy_forward(net, x)

        def learn(arrays):
            policy_gradient(net, *arrays)
            opt.step()
    elif payload["contender"] in ("numpy", "numpy-1thread"):
        pol = NumpyPolicy(seed)
        forward = pol.forward

        def learn(arrays):
            pol.learn(*arrays)
    else:
        raise ValueError(f"unknown contender {payload['contender']!r}")

    clock = {"forward": 0.0, "backward": 0.0}

    def timed_forward(x):
        t0 = time.perf_counter()
        out = forward(x)
        clock["forward"] += time.perf_counter() - t0
        return out

    venv = atari.make_vector_env(payload["envs"], payload["frameskip"])
    try:
        venv.reset(seed=seed)
        episode = 0

        def one_batch(count):
            nonlocal episode
            games = trainer.play_batch(venv, timed_forward, episode, count, seed)
            episode += count
            arrays = trainer.batch_arrays(games, gamma)  # returns and advantages: shared data preparation
            t0 = time.perf_counter()
            learn(arrays)
            clock["backward"] += time.perf_counter() - t0
            return sum(g.steps for g in games)

        one_batch(1)  # warm-up, one game and its update: process start, page faults, first touch of the weights
        clock.update(forward=0.0, backward=0.0)
        frames, left = 0, payload["games"]
        t0 = time.perf_counter()
        while left > 0:
            frames += one_batch(min(batch, left))
            left -= batch
        seconds = time.perf_counter() - t0
    finally:
        trainer.close_envs(venv)
    fwd, bwd = clock["forward"] / seconds, clock["backward"] / seconds
    return {"frames_per_second": frames / seconds, "forward_share": fwd, "backward_share": bwd,
            "policy_share": fwd + bwd, "seconds": seconds, "frames": frames, "numpy": np.__version__}


# ---- the driver ---------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--games", type=int, default=0, help="measured games per process (default 20, --quick 1)")
    ap.add_argument("--batch", type=int, default=0, help="games per update (default 10, --quick 1)")
    ap.add_argument("--envs", type=int, default=0, help="environment processes (default 2, --quick 1)")
    ap.add_argument("--repeats", type=int, default=0, help="processes per contender (default 3, --quick 1)")
    ap.add_argument("--threads", type=int, default=H.DEFAULT_THREADS, help="kernel/BLAS threads (default 2)")
    ap.add_argument("--frameskip", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--contenders", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS))
    ap.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON")
    ap.add_argument("--quick", action="store_true", help="1 game on 1 env (for the tests)")
    args = ap.parse_args(argv)
    q = args.quick
    settings = {"games": args.games or (1 if q else 20), "batch": args.batch or (1 if q else 10),
                "envs": args.envs or (1 if q else 2), "repeats": args.repeats or (1 if q else 3),
                "threads": args.threads, "frameskip": args.frameskip, "seed": args.seed, "quick": q}
    for k in ("games", "batch", "envs", "repeats", "threads", "frameskip"):
        if settings[k] < 1:
            ap.error(f"--{k}: must be a positive integer")
    payload = {k: settings[k] for k in ("games", "batch", "envs", "frameskip", "seed")}
    machine = H.machine_record(args.threads, {"layerwise": {}}, False, quick=q)
    print(f"Pong, {settings['games']} games per process (batch {settings['batch']}, {settings['envs']} env "
          f"processes, frameskip {settings['frameskip']}), {settings['repeats']} processes per contender")
    for line in H.machine_lines(machine):
        print(line)
    contenders = {name: CONTENDERS[name] for name in args.contenders}
    raw = H.alternate(__file__, "measure", contenders, payload, settings["repeats"], args.threads,
                      timeout=3600, log=print)
    rows = {name: {m: H.spread([r[m] for r in runs]) for m in METRICS} for name, runs in raw.items()}
    print()
    print("| contender | frames/s | policy share | forward | backward + RMSprop |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, row in rows.items():
        f = row["frames_per_second"]
        print(f"| {name} | {f['median']:.0f} ({f['min']:.0f}-{f['max']:.0f}) | {100 * row['policy_share']['median']:.1f} % "
              f"| {100 * row['forward_share']['median']:.1f} % | {100 * row['backward_share']['median']:.1f} % |")
    ratios = {}
    lw = rows.get("layerwise")
    for other in (n for n in rows if n != "layerwise" and lw is not None):
        o = rows[other]
        fps = ratios[f"frames_per_second layerwise/{other}"] = H.ratio(lw["frames_per_second"]["median"],
                                                                       o["frames_per_second"]["median"])
        pol = ratios[f"policy_seconds_per_frame {other}/layerwise"] = H.ratio(
            o["policy_share"]["median"] / o["frames_per_second"]["median"],
            lw["policy_share"]["median"] / lw["frames_per_second"]["median"])
        print(f"frames/s layerwise / {other}: {fps:.2f}x; policy time per frame {other} / layerwise: {pol:.2f}x")
    if "layerwise" in rows:
        share = rows["layerwise"]["policy_share"]["median"]
        print(f"layerwise policy share {100 * share:.1f} % of the step time: target <= 25 % "
              f"{'met' if share <= 0.25 else 'MISSED'}")
    if args.json:
        H.write_json(args.json, {"benchmark": "pong_throughput", "machine": machine, "settings": settings,
                                 "rows": rows, "ratios": ratios, "raw": raw})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
