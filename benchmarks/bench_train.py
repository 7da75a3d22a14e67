"""Training throughput (samples/s) of the 784-1000-1000-1000-10 sigmoid MLP.

Softmax cross-entropy, SGD with momentum 0.9, minibatches of 10, 32 and 128, on
synthetic MNIST-shaped data. Three implementations of the same math, in one
process, interleaved (so machine-load drift hits all of them alike), median of
repeats:

  layerwise  -- layerwise.train.fit (one epoch per measurement, shuffling included)
  numpy      -- a plain NumPy training loop (the BLAS NumPy links against)
  torch      -- torch.nn + torch.optim.SGD on the CPU, when torch is importable

    python benchmarks/bench_train.py [--samples 1280] [--repeats 3] [--batches 10 32 128]
                                     [--threads N] [--json out.json] [--profile]

--profile additionally breaks one layerwise epoch down by ops call (time and
call counts) and estimates the fixed per-call cost, to show where time goes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict


def _limit_blas_threads(argv):
    """--threads N must also bind NumPy's BLAS, whose pool size is fixed when numpy is
    imported: set the usual variables before that import."""
    n = None
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            n = argv[i + 1]
        elif a.startswith("--threads="):
            n = a.split("=", 1)[1]
    if n is not None and n.isdigit() and int(n) > 0:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
            os.environ[var] = n


if __name__ == "__main__":
    _limit_blas_threads(sys.argv[1:])

import numpy as np  # noqa: E402

import layerwise as lw  # noqa: E402

SIZES = [784, 1000, 1000, 1000, 10]
LR, MOMENTUM = 0.01, 0.9


def synthetic(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], size=n)
    return X, y


# ---- layerwise --------------------------------------------------------------------------
def make_layerwise():
    net = lw.nn.mlp(SIZES, activation="sigmoid", seed=0)
    opt = lw.optim.SGD(net.parameters(), LR, momentum=MOMENTUM)

    def run(X, y, bs):
        lw.train.fit(net, X, y, optimizer=opt, epochs=1, batch_size=bs, progress=False)

    return run


# ---- plain NumPy ----------------------------------------------------------------------------
def make_numpy():
    rng = np.random.default_rng(0)
    Ws, bs_, vW, vb = [], [], [], []
    for i in range(len(SIZES) - 1):
        r = 1.0 / np.sqrt(SIZES[i])
        Ws.append(rng.uniform(-r, r, (SIZES[i + 1], SIZES[i])).astype(np.float32))
        bs_.append(rng.uniform(-r, r, SIZES[i + 1]).astype(np.float32))
        vW.append(np.zeros_like(Ws[-1]))
        vb.append(np.zeros_like(bs_[-1]))
    L = len(Ws)

    def step(x, y):
        acts = [x]
        for i in range(L):
            z = acts[-1] @ Ws[i].T
            z += bs_[i]
            if i < L - 1:
                np.negative(z, out=z)
                np.exp(z, out=z)
                z += 1
                np.reciprocal(z, out=z)
            acts.append(z)
        logits = acts[-1]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        n = x.shape[0]
        d = p
        d[np.arange(n), y] -= 1
        d /= n
        for i in range(L - 1, -1, -1):
            gW = d.T @ acts[i]
            gb = d.sum(axis=0)
            if i > 0:
                a = acts[i]
                d = (d @ Ws[i]) * a * (1 - a)
            vW[i] *= MOMENTUM
            vW[i] += gW
            Ws[i] -= LR * vW[i]
            vb[i] *= MOMENTUM
            vb[i] += gb
            bs_[i] -= LR * vb[i]

    def run(X, y, bs):
        perm = np.random.default_rng(0).permutation(len(X))
        Xs, ys = X[perm], y[perm]
        for s in range(0, len(X), bs):
            step(Xs[s:s + bs], ys[s:s + bs])

    return run


# ---- PyTorch ---------------------------------------------------------------------------------
def make_torch():
    import torch

    torch.manual_seed(0)
    layers = []
    for i in range(len(SIZES) - 1):
        layers.append(torch.nn.Linear(SIZES[i], SIZES[i + 1]))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.Sigmoid())
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    lossf = torch.nn.CrossEntropyLoss()

    def run(X, y, bs):
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        perm = torch.randperm(len(X))
        Xs, ys = Xt[perm], yt[perm]
        for s in range(0, len(X), bs):
            opt.zero_grad(set_to_none=True)
            loss = lossf(net(Xs[s:s + bs]), ys[s:s + bs])
            loss.backward()
            opt.step()

    return run, torch


# ---- profile ----------------------------------------------------------------------------------
def profile(X, y, bs):
    """Times every ops call of one layerwise epoch; estimates the fixed cost per call."""
    ops = lw.ops
    names = ["linear_forward", "linear_backward_data", "linear_backward_weights", "activation_backward",
             "softmax_cross_entropy", "sgd_update"]
    totals, counts = defaultdict(float), defaultdict(int)
    originals = {n: getattr(ops, n) for n in names}

    def wrap(name, f):
        def timed(*a, **k):
            t = time.perf_counter()
            r = f(*a, **k)
            totals[name] += time.perf_counter() - t
            counts[name] += 1
            return r
        return timed

    run = make_layerwise()
    run(X[: bs * 2], y[: bs * 2], bs)  # warm the buffers
    for n in names:
        setattr(ops, n, wrap(n, originals[n]))
    try:
        t = time.perf_counter()
        run(X, y, bs)
        total = time.perf_counter() - t
    finally:
        for n in names:
            setattr(ops, n, originals[n])
    # Fixed cost of one call: a 1x1 problem is all argument checking + dispatch.
    a, w, o = np.ones((1, 1), np.float32), np.ones((1, 1), np.float32), np.empty((1, 1), np.float32)
    reps = 2000
    t = time.perf_counter()
    for _ in range(reps):
        ops.linear_forward(a, w, out=o)
    per_call = (time.perf_counter() - t) / reps
    steps = -(-len(X) // bs)
    calls = sum(counts.values())
    print(f"\nprofile: batch {bs}, {steps} steps, {total:.3f} s ({total / steps * 1e3:.2f} ms/step)")
    for n in sorted(names, key=lambda k: -totals[k]):
        print(f"  {n:26s} {counts[n] / steps:5.1f} calls/step  {totals[n] / steps * 1e3:8.3f} ms/step "
              f"({100 * totals[n] / total:5.1f}%)")
    in_ops = sum(totals.values())
    print(f"  {'(outside ops: Python)':26s} {'':15s} {(total - in_ops) / steps * 1e3:8.3f} ms/step "
          f"({100 * (total - in_ops) / total:5.1f}%)")
    print(f"  fixed cost per ops call ~{per_call * 1e6:.1f} us x {calls / steps:.0f} calls/step = "
          f"{per_call * calls / steps * 1e3:.3f} ms/step ({100 * per_call * calls / total:.1f}% of the time)")
    return {"batch": bs, "seconds_per_step": total / steps, "by_op_seconds_per_step":
            {n: totals[n] / steps for n in names}, "calls_per_step": {n: counts[n] / steps for n in names},
            "python_seconds_per_step": (total - in_ops) / steps, "fixed_cost_per_call_s": per_call}


# ---- main ------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=1280, help="samples per measured epoch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, nargs="+", default=[10, 32, 128])
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for every implementation, NumPy's BLAS included (0: all cores)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)

    lw.ops.set_num_threads(args.threads)
    threads = lw.ops.get_num_threads()
    impls = {"layerwise": make_layerwise(), "numpy": make_numpy()}
    torch_version = None
    if not args.no_torch:
        try:
            run, torch = make_torch()
            torch.set_num_threads(threads)
            impls["torch"] = run
            torch_version = torch.__version__
        except ImportError:
            print("torch not importable: skipping it", file=sys.stderr)
    X, y = synthetic(args.samples)
    for run in impls.values():  # warm up: buffers, BLAS threads, allocator
        run(X[:256], y[:256], 32)

    times = defaultdict(list)
    for rep in range(args.repeats):
        for bs in args.batches:
            for name, run in impls.items():
                t = time.perf_counter()
                run(X, y, bs)
                times[(name, bs)].append(time.perf_counter() - t)
                print(f"  rep {rep} batch {bs:4d} {name:9s} {args.samples / times[(name, bs)][-1]:9.0f} samples/s",
                      file=sys.stderr)

    results = {name: {bs: args.samples / statistics.median(times[(name, bs)]) for bs in args.batches}
               for name in impls}
    print(f"\n{'-'.join(map(str, SIZES))} sigmoid MLP, softmax CE, SGD momentum {MOMENTUM}: samples/s "
          f"(median of {args.repeats}, {args.samples} samples, {threads} threads)")
    print(f"{'batch':>6s}" + "".join(f"{n:>12s}" for n in impls))
    for bs in args.batches:
        print(f"{bs:6d}" + "".join(f"{results[n][bs]:12.0f}" for n in impls))

    prof = [profile(X, y, bs) for bs in args.batches] if args.profile else None
    if args.json:
        out = {"benchmark": "train_throughput", "sizes": SIZES, "loss": "softmax_cross_entropy",
               "lr": LR, "momentum": MOMENTUM, "samples": args.samples, "repeats": args.repeats,
               "threads": threads, "backend": lw.backend_info(), "torch": torch_version,
               "machine": platform.machine(), "python": platform.python_version(),
               "samples_per_second": {n: {str(bs): v for bs, v in r.items()} for n, r in results.items()},
               "raw_seconds": {f"{n}/{bs}": v for (n, bs), v in times.items()}, "profile": prof}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return results


if __name__ == "__main__":
    main()
