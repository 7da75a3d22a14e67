"""Training throughput (samples/s) of the 784-1000-1000-1000-10 sigmoid MLP.

Softmax cross-entropy, SGD with momentum 0.9, minibatches of 10, 32 and 128, on
synthetic MNIST-shaped data. Implementations of the same math:

  layerwise      -- layerwise.train.fit (one epoch per measurement, shuffling included);
                    it must take the native one-call step (fit native=True)
  lw-train-step  -- a Python loop of NativeNetwork.train_step (one C call per step)
  lw-ops-loop    -- a plain Python loop over layerwise.ops (forward, loss and fused
                    backward+SGD per layer: ~3 calls per layer and step)
  numpy          -- a plain NumPy training loop (the BLAS NumPy links against)
  torch          -- torch.nn + torch.optim.SGD on the CPU, when torch is installed

    python benchmarks/bench_train.py [--samples 1280] [--repeats 5] [--batches 10 32 128]
                                     [--threads 2] [--isa avx2 | --both-isas] [--json out.json]
                                     [--quick] [--profile]

Each implementation runs in its own fresh process, the processes take turns
(A B C A B C ...), and every library gets the same --threads (default 2); see
benchmarks/_harness.py for why. A process warms up, then times one epoch of
--samples samples per batch size. The table shows the median over repeats with
the spread (min-max), the ratios to PyTorch from the medians, and how close
layerwise gets to two limits of this machine (measured with the same threads
and ISA):

  bytes limit  -- a step must at least read every weight for the forward pass
                  and read and write weights and velocities once for the fused
                  backward + SGD update (20 bytes per float32 parameter); at
                  the measured copy bandwidth that bounds steps/s. It binds at
                  batch 10, where the activations are small.
  FLOPs limit  -- 2 FLOPs per weight per sample for the forward pass, as many
                  for the weight gradient and, except for the first layer, for
                  the data gradient; at the measured FMA peak that bounds
                  samples/s. It binds at batch 128.

Fractions are achieved / limit (1.0 would be the machine's limit).

--json PATH writes {"benchmark", "machine", "settings", "parameters",
"flops_per_sample", "bytes_per_step", "rows": [{"batch", "samples_per_second":
{contender: {median, min, max}}, "ratios": {"layerwise/torch": x, ...}, "limits":
{variant: {bytes_limit_samples_per_second, flops_limit_samples_per_second,
fraction_of_bytes_limit, fraction_of_flops_limit}}}], "raw_seconds", "profile"}.

--profile (the lw-ops-loop contender, in this process) breaks one epoch of the
per-layer Python path down by ops call and estimates the fixed per-call cost, to
show what the one-call native step (fit, lw-train-step) saves; fit itself makes
no ops calls per step any more.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

SIZES = [784, 1000, 1000, 1000, 10]
QUICK_SIZES = [64, 48, 48, 10]
LR, MOMENTUM = 0.01, 0.9
BYTES_PER_PARAMETER_STEP = 20  # float32: forward read (4) + fused backward/SGD read W, v and write W, v (16)


def synthetic(n, sizes, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.random((n, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], size=n)
    return X, y


def parameter_count(sizes):
    return sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))


def flops_per_sample(sizes):
    layers = list(zip(sizes[:-1], sizes[1:]))
    return sum(2.0 * i * o * (2 if k == 0 else 3) for k, (i, o) in enumerate(layers))


# ---- layerwise --------------------------------------------------------------------------
def make_layerwise(sizes):
    import layerwise as lw

    net = lw.nn.mlp(sizes, activation="sigmoid", seed=0)
    opt = lw.optim.SGD(net.parameters(), LR, momentum=MOMENTUM)
    why = lw.fit_step.native_blocker(net, opt, "softmax_cross_entropy")
    if why is not None:
        raise RuntimeError(f"bench_train: fit would not take the native step: {why}")

    def run(X, y, bs):
        lw.train.fit(net, X, y, optimizer=opt, epochs=1, batch_size=bs, progress=False, native=True)

    return run


def _shuffled_batches(X, y, bs):
    import numpy as np

    perm = np.random.default_rng(0).permutation(len(X))
    Xs, ys = X[perm], y[perm]
    for s in range(0, len(X), bs):
        yield Xs[s:s + bs], ys[s:s + bs]


def make_train_step_loop(sizes):
    import layerwise as lw

    net = lw.native.NativeNetwork(sizes, ["sigmoid"] * (len(sizes) - 2) + ["identity"], seed=0)

    def run(X, y, bs):
        for xb, yb in _shuffled_batches(X, y.astype("int32"), bs):
            net.train_step(xb, yb, loss="softmax_cross_entropy", optimizer="sgd", lr=LR, momentum=MOMENTUM)

    return run


def make_ops_loop(sizes):
    import numpy as np

    import layerwise as lw

    ops = lw.ops
    layers = lw.nn.linear_layers(lw.nn.mlp(sizes, activation="sigmoid", seed=0))
    Ws = [layer.weight.data for layer in layers]
    bs_ = [layer.bias.data for layer in layers]
    acts = [layer.activation for layer in layers]
    vW = [np.zeros_like(w) for w in Ws]
    vb = [np.zeros_like(b) for b in bs_]

    def step(x, y):
        a = [x]
        for W, b, act in zip(Ws, bs_, acts):
            a.append(ops.linear_forward(a[-1], W, b, activation=act))
        _, d = ops.softmax_cross_entropy(a[-1], y)
        for i in range(len(Ws) - 1, -1, -1):
            if acts[i] != "identity":
                d = ops.activation_backward(a[i + 1], d, acts[i])
            d = ops.linear_backward_sgd(d, a[i], Ws[i], bs_[i], lr=LR, momentum=MOMENTUM, weight_velocity=vW[i],
                                        bias_velocity=vb[i], dx=i > 0)

    def run(X, y, bs):
        for xb, yb in _shuffled_batches(X, y.astype(np.int32), bs):
            step(xb, yb)

    return run


# ---- plain NumPy ----------------------------------------------------------------------------
def make_numpy(sizes):
    import numpy as np

    rng = np.random.default_rng(0)
    Ws, bs_, vW, vb = [], [], [], []
    for i in range(len(sizes) - 1):
        r = 1.0 / np.sqrt(sizes[i])
        Ws.append(rng.uniform(-r, r, (sizes[i + 1], sizes[i])).astype(np.float32))
        bs_.append(rng.uniform(-r, r, sizes[i + 1]).astype(np.float32))
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
        for xb, yb in _shuffled_batches(X, y, bs):
            step(xb, yb)

    return run


# ---- PyTorch ---------------------------------------------------------------------------------
def make_torch(sizes):
    import torch

    torch.manual_seed(0)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
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

    return run


# ---- profile ----------------------------------------------------------------------------------
def profile(X, y, bs, sizes):
    """Times every ops call of one epoch of the ops loop; estimates the fixed cost per call."""
    import numpy as np

    import layerwise as lw

    ops = lw.ops
    names = ["linear_forward", "linear_backward_data", "linear_backward_weights", "activation_backward",
             "softmax_cross_entropy", "sgd_update", "linear_backward_sgd"]
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

    run = make_ops_loop(sizes)
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


# ---- the worker and the report ------------------------------------------------------------------
MAKERS = {"layerwise": make_layerwise, "lw-train-step": make_train_step_loop, "lw-ops-loop": make_ops_loop,
          "numpy": make_numpy, "torch": make_torch}


def train_worker(payload):
    """Worker: one contender's epoch time per batch size, {"seconds": {batch: s}}."""
    contender = payload["contender"]
    library = "layerwise" if contender.startswith("layerwise") else contender
    H.set_worker_threads(payload["threads"], with_torch=library == "torch")
    sizes = payload["sizes"]
    run = MAKERS[library](sizes)
    X, y = synthetic(payload["samples"], sizes)
    run(X[:256], y[:256], 32)  # warm up: buffers, BLAS threads, allocator
    seconds = {}
    for bs in payload["batches"]:
        t0 = time.perf_counter()
        run(X, y, bs)
        seconds[str(bs)] = time.perf_counter() - t0
    out = {"seconds": seconds}
    if library == "layerwise":
        import layerwise

        out["isa"] = layerwise.backend_info()["isa"]
    return out


def build_results(runs, batches, samples, sizes, machine, variants):
    """samples/s spreads per contender and batch, ratios to torch and numpy, and the two limits."""
    params, flops = parameter_count(sizes), flops_per_sample(sizes)
    rows = []
    for bs in batches:
        row = {"batch": bs, "samples_per_second": {}, "ratios": {}, "limits": {}}
        for name, reps in runs.items():
            s = H.spread([r["seconds"].get(str(bs)) for r in reps])
            if s is not None:
                row["samples_per_second"][name] = {"median": samples / s["median"], "min": samples / s["max"],
                                                   "max": samples / s["min"]}
        for name in variants:
            mine = row["samples_per_second"].get(name)
            if mine is None:
                continue
            for other in runs:
                if other not in variants and other in row["samples_per_second"]:
                    row["ratios"][f"{name}/{other}"] = H.ratio(mine["median"],
                                                               row["samples_per_second"][other]["median"])
            probe = machine["probes"][name]
            bytes_limit = H.ratio(bs * probe["copy_gbps_all_threads"] * 1e9, BYTES_PER_PARAMETER_STEP * params)
            flops_limit = H.ratio(probe["fma_gflops_all_threads"] * 1e9, flops)
            row["limits"][name] = {
                "bytes_limit_samples_per_second": bytes_limit,
                "flops_limit_samples_per_second": flops_limit,
                "fraction_of_bytes_limit": H.ratio(mine["median"], bytes_limit),
                "fraction_of_flops_limit": H.ratio(mine["median"], flops_limit),
            }
        rows.append(row)
    return rows


def markdown(rows, machine, meta, variants):
    names = meta["contenders"]
    sizes = meta["sizes"]
    lines = [f"bench_train: {'-'.join(map(str, sizes))} sigmoid MLP, softmax CE, SGD momentum {MOMENTUM}, "
             f"{meta['samples']} samples per epoch, {meta['repeats']} repeats alternated, each contender in its "
             f"own process; samples/s median (min-max)", ""]
    lines += H.machine_lines(machine)
    lines += [f"- {parameter_count(sizes)} parameters: {BYTES_PER_PARAMETER_STEP * parameter_count(sizes) / 1e6:.1f} "
              f"MB per step at least; {flops_per_sample(sizes) / 1e6:.2f} MFLOP per sample", ""]
    keys = [k for k in (rows[0]["ratios"] if rows else {})]
    lim = [f"{v} % of bytes limit | {v} % of FLOPs limit" for v in variants]
    lines.append("| batch | " + " | ".join(names) + " | " + " | ".join(keys + lim) + " |")
    lines.append("|" + "---|" * (1 + len(names) + len(keys) + 2 * len(variants)))
    for row in rows:
        cells = []
        for n in names:
            r = row["samples_per_second"].get(n)
            cells.append(f"{r['median']:.0f} ({r['min']:.0f}-{r['max']:.0f})" if r else "-")
        ratios = [f"{row['ratios'][k]:.2f}x" if row["ratios"].get(k) else "-" for k in keys]
        fracs = []
        for v in variants:
            L = row["limits"].get(v, {})
            for key in ("fraction_of_bytes_limit", "fraction_of_flops_limit"):
                fracs.append(f"{100 * L[key]:.0f} %" if L.get(key) else "-")
        lines.append(f"| {row['batch']} | " + " | ".join(cells + ratios + fracs) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=0, help="samples per measured epoch (default 1280, --quick 64)")
    ap.add_argument("--repeats", type=int, default=0, help="processes per contender (default 5, --quick 2)")
    ap.add_argument("--batches", type=int, nargs="+", default=[10, 32, 128])
    ap.add_argument("--threads", type=int, default=H.DEFAULT_THREADS,
                    help=f"threads for every implementation, NumPy's BLAS included (default {H.DEFAULT_THREADS})")
    ap.add_argument("--isa", choices=("generic", "avx2", "avx512"),
                    help="force LAYERWISE_ISA for the layerwise worker")
    ap.add_argument("--both-isas", action="store_true",
                    help="run layerwise with its own ISA and with AVX2 forced (on AVX-512 hosts)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a tiny MLP and few samples (for the tests)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    if args.samples < 0 or args.repeats < 0 or min(args.batches) < 1:
        ap.error("--samples and --repeats must be >= 0, --batches >= 1")
    if args.isa and args.both_isas:
        ap.error("--isa and --both-isas exclude each other")

    sizes = QUICK_SIZES if args.quick else SIZES
    samples = args.samples or (64 if args.quick else 1280)
    repeats = args.repeats or (2 if args.quick else 5)
    variants = H.isa_variants(args.isa, args.both_isas)
    contenders = dict(variants)
    contenders["lw-train-step"] = {}
    contenders["lw-ops-loop"] = {}
    contenders["numpy"] = {}
    if not args.no_torch and importlib.util.find_spec("torch") is not None:
        contenders["torch"] = {}
    log = (lambda m: print(m, file=sys.stderr, flush=True))
    machine = H.machine_record(args.threads, variants, "torch" in contenders, quick=args.quick)
    runs = H.alternate(__file__, "train_worker", contenders,
                       {"sizes": sizes, "samples": samples, "batches": args.batches}, repeats, args.threads, log=log)
    for name in variants:
        isas = {r.get("isa") for r in runs[name]}
        machine["probes"][name]["kernel_isa"] = sorted(isas)[0] if len(isas) == 1 else sorted(isas)
    rows = build_results(runs, args.batches, samples, sizes, machine, list(variants))
    meta = {"contenders": list(contenders), "repeats": repeats, "samples": samples, "sizes": sizes,
            "batches": args.batches, "quick": args.quick}
    print(markdown(rows, machine, meta, list(variants)))
    prof = None
    if args.profile:
        import layerwise

        layerwise.ops.set_num_threads(args.threads)
        X, y = synthetic(samples, sizes)
        prof = [profile(X, y, bs, sizes) for bs in args.batches]
    if args.json:
        H.write_json(args.json, {"benchmark": "train_throughput", "machine": machine, "settings": meta,
                                 "loss": "softmax_cross_entropy", "lr": LR, "momentum": MOMENTUM,
                                 "parameters": parameter_count(sizes), "flops_per_sample": flops_per_sample(sizes),
                                 "bytes_per_step": BYTES_PER_PARAMETER_STEP * parameter_count(sizes),
                                 "rows": rows, "raw_seconds": {n: [r["seconds"] for r in reps]
                                                               for n, reps in runs.items()},
                                 "profile": prof})
    return rows


if __name__ == "__main__":
    main()
