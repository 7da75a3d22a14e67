"""Inference speed ("fast classification once trained") of the 784-500-500-500-10 sigmoid MLP.

One net (lw.nn.mlp, seed 0) is saved once as a layerwise model file and exported once
to ONNX; every contender loads those same weights and computes the logits for batches
of 1, 10 and 1000 float32 inputs:

  layerwise-python -- net.forward of the net read back with lw.nn.load
  layerwise-cpp    -- a compiled program given with --cpp-bin (see below); skipped without it
  onnxruntime      -- an InferenceSession on the exported model (CPU provider)
  torch            -- torch.nn.Linear + Sigmoid under torch.inference_mode, on the CPU
  numpy            -- x @ W.T + b and 1 / (1 + exp(-z)) with the BLAS NumPy links against

Each contender runs in its own process (spinning BLAS/OpenMP thread pools of one
library distort the timings of another in the same process), one process per repeat,
and the order of the contenders rotates from repeat to repeat so drift in machine
load hits all alike. Within a process every batch size is warmed up, then called
until --min-time seconds have passed; the process reports seconds per call. The
report gives, per batch size, the median over repeats (latency per call and
samples/s) and the spread (min-max over repeats). Before timing, every process
computes the logits of the same 4 inputs; they must agree with layerwise-python's
to float32 tolerance, or the contender is reported as wrong.

The C++ hook: --cpp-bin PATH runs ``PATH MODEL_FILE BATCH MIN_SECONDS`` once per batch
size and repeat. The program loads MODEL_FILE (layerwise format v1, via lwNetworkLoad),
times lwNetworkForward on BATCH random inputs for at least MIN_SECONDS after a warm-up,
and prints a last line ``seconds_per_call: X``. It is not checked for agreement (it
reads the same file that the C loader's own tests check).

    python benchmarks/bench_inference.py [--repeats 5] [--min-time 0.5] [--batches 1 10 1000]
        [--contenders ...] [--threads N] [--cpp-bin PATH] [--json out.json] [--quick]

--quick: 2 repeats of 0.02 s each, to check that everything runs (numbers meaningless).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

SIZES = [784, 500, 500, 500, 10]
CONTENDERS = ["layerwise-python", "layerwise-cpp", "onnxruntime", "torch", "numpy"]
CHECK_ROWS = 4
CHECK_TOL = 1e-4  # float32 logits of a 4-layer net, different summation orders


# ---- worker side: one contender in this process --------------------------------------------------------
def _set_thread_env(threads):
    """Pins BLAS/OpenMP pools; must run before numpy (or torch) is imported."""
    if threads:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
            os.environ[var] = str(threads)


def _weights(model_file):
    """[(W, b)] float32 from the model file, in layer order (the file's tensor names "i.weight"/"i.bias")."""
    import json as _json

    from safetensors import safe_open

    with safe_open(model_file, framework="numpy") as f:
        arch = _json.loads(f.metadata()["architecture"])
        layers = []
        for i, m in enumerate(arch["modules"]):
            if m["type"] == "Linear":
                layers.append((f.get_tensor(f"{i}.weight"), f.get_tensor(f"{i}.bias")))
    return layers


def _forward_layerwise(model_dir, threads):
    import layerwise as lw

    if threads:
        lw.ops.set_num_threads(threads)
    net = lw.nn.load(os.path.join(model_dir, "net.safetensors"))
    return lambda x: net.forward(x)


def _forward_onnxruntime(model_dir, threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(model_dir, "net.onnx"), opts, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(["output"], {"input": x})[0]


def _forward_torch(model_dir, threads):
    import torch

    if threads:
        torch.set_num_threads(threads)
    mods = []
    layers = _weights(os.path.join(model_dir, "net.safetensors"))
    for i, (w, b) in enumerate(layers):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        mods.append(lin)
        if i < len(layers) - 1:
            mods.append(torch.nn.Sigmoid())
    net = torch.nn.Sequential(*mods).eval()

    def run(x):
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    return run


def _forward_numpy(model_dir, threads):
    import numpy as np

    layers = _weights(os.path.join(model_dir, "net.safetensors"))
    last = len(layers) - 1

    def run(x):
        for i, (w, b) in enumerate(layers):
            x = x @ w.T
            x += b
            if i < last:
                np.negative(x, out=x)
                np.exp(x, out=x)
                x += 1.0
                np.reciprocal(x, out=x)
        return x

    return run


FORWARDS = {"layerwise-python": _forward_layerwise, "onnxruntime": _forward_onnxruntime,
            "torch": _forward_torch, "numpy": _forward_numpy}


def _time_calls(fn, x, min_time):
    """Seconds per call of fn(x): warm up, then call until min_time has passed (at least 3 calls)."""
    warm_until = time.perf_counter() + min(0.2 * min_time, 0.5)
    fn(x)
    while time.perf_counter() < warm_until:
        fn(x)
    calls, start = 0, time.perf_counter()
    while True:
        fn(x)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and calls >= 3:
            return elapsed / calls


def worker(name, model_dir, batches, min_time, threads):
    """Runs in the child process: {"check": logits of the check rows, "seconds": {batch: s/call}}."""
    try:
        fn = FORWARDS[name](model_dir, threads)
    except ImportError as e:
        return {"error": f"not available: {e}"}
    import numpy as np

    data = np.load(os.path.join(model_dir, "inputs.npy"))
    out = {"check": np.asarray(fn(np.ascontiguousarray(data[:CHECK_ROWS]))).tolist(), "seconds": {}}
    for b in batches:
        x = np.ascontiguousarray(data[:b])
        out["seconds"][str(b)] = _time_calls(fn, x, min_time)
    return out


# ---- parent side ----------------------------------------------------------------------------------------
def _prepare(model_dir, max_batch):
    """Saves the net, its ONNX export and the inputs once, for all contenders."""
    import numpy as np

    import layerwise as lw

    net = lw.nn.mlp(SIZES, activation="sigmoid", seed=0)
    lw.nn.save(net, os.path.join(model_dir, "net.safetensors"))
    try:
        import layerwise.onnx

        layerwise.onnx.export(net, os.path.join(model_dir, "net.onnx"))
    except ImportError:
        pass  # the onnxruntime contender then reports itself unavailable
    x = np.random.default_rng(1).random((max(max_batch, CHECK_ROWS), SIZES[0]), dtype=np.float32)
    np.save(os.path.join(model_dir, "inputs.npy"), x)


def _run_worker(name, model_dir, batches, min_time, threads, cpp_bin):
    if name == "layerwise-cpp":
        return _run_cpp(cpp_bin, model_dir, batches, min_time, threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--model-dir", model_dir,
           "--min-time", str(min_time), "--threads", str(threads), "--batches", *map(str, batches)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": f"worker failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_cpp(cpp_bin, model_dir, batches, min_time, threads):
    if not cpp_bin:
        return {"error": "no --cpp-bin given"}
    if not (os.path.isfile(cpp_bin) and os.access(cpp_bin, os.X_OK)):
        return {"error": f"--cpp-bin {cpp_bin} is not an executable file"}
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["LAYERWISE_NUM_THREADS"] = str(threads)
    seconds = {}
    for b in batches:
        proc = subprocess.run([cpp_bin, os.path.join(model_dir, "net.safetensors"), str(b), str(min_time)],
                              capture_output=True, text=True, env=env)
        last = proc.stdout.strip().splitlines()[-1:] or [""]
        if proc.returncode != 0 or not last[0].startswith("seconds_per_call:"):
            return {"error": f"{cpp_bin} failed (exit {proc.returncode}): {last[0] or proc.stderr.strip()[-200:]}"}
        seconds[str(b)] = float(last[0].split(":", 1)[1])
    return {"seconds": seconds}


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _summarize(samples, batches):
    """Per contender and batch: median/min/max seconds per call over the repeats, samples/s."""
    out = {}
    for name, runs in samples.items():
        per_batch = {}
        for b in batches:
            t = [r[str(b)] for r in runs]
            med = statistics.median(t)
            per_batch[str(b)] = {"latency_ms": 1e3 * med, "latency_ms_min": 1e3 * min(t),
                                 "latency_ms_max": 1e3 * max(t), "samples_per_s": b / med, "repeats": len(t)}
        out[name] = per_batch
    return out


def _agreement(checks):
    """Max |logit difference| of every contender from layerwise-python on the check rows."""
    import numpy as np

    ref = checks.get("layerwise-python")
    if ref is None:
        return {}
    return {name: float(np.max(np.abs(np.asarray(c) - np.asarray(ref)))) for name, c in checks.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="processes per contender (median over them)")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds of calls timed per batch size")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 10, 1000])
    ap.add_argument("--contenders", nargs="+", default=CONTENDERS, choices=CONTENDERS)
    ap.add_argument("--threads", type=int, default=0, help="threads per contender (0: each library's default)")
    ap.add_argument("--cpp-bin", metavar="PATH", help="compiled layerwise C++ contender (see the module doc)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--quick", action="store_true", help="2 repeats of 0.02 s: a smoke test, not a measurement")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.min_time <= 0 or any(b < 1 for b in args.batches) or args.threads < 0:
        ap.error("--repeats and --batches need positive integers, --min-time a positive number, --threads >= 0")
    if args.worker:
        _set_thread_env(args.threads)
        print(json.dumps(worker(args.worker, args.model_dir, args.batches, args.min_time, args.threads)))
        return 0
    if args.quick:
        args.repeats, args.min_time = 2, 0.02

    samples, checks, skipped = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as model_dir:
        _prepare(model_dir, max(args.batches))
        order = list(args.contenders)
        for r in range(args.repeats):
            for name in order[r % len(order):] + order[:r % len(order)]:  # rotate the order per repeat
                if name in skipped:
                    continue
                res = _run_worker(name, model_dir, args.batches, args.min_time, args.threads, args.cpp_bin)
                if "error" in res:
                    skipped[name] = res["error"]
                    samples.pop(name, None)
                    continue
                samples.setdefault(name, []).append(res["seconds"])
                if "check" in res:
                    checks.setdefault(name, res["check"])
                print(f"  repeat {r + 1}/{args.repeats} {name} done", file=sys.stderr)
    agreement = _agreement(checks)
    wrong = {n: d for n, d in agreement.items() if d > CHECK_TOL}
    summary = _summarize({n: s for n, s in samples.items() if n not in wrong}, args.batches)

    print(f"\nInference, {'-'.join(map(str, SIZES))} sigmoid MLP, float32 logits; {_cpu_model()}, "
          f"{os.cpu_count()} CPUs; median of {args.repeats} processes x >= {args.min_time} s"
          + (" (--quick: not a measurement)" if args.quick else ""))
    print(f"{'batch':>6} {'contender':<18} {'latency ms':>11} {'min-max ms':>19} {'samples/s':>12}")
    for b in args.batches:
        for name, per_batch in sorted(summary.items(), key=lambda kv: kv[1][str(b)]["latency_ms"]):
            s = per_batch[str(b)]
            spread = f"{s['latency_ms_min']:.4g}-{s['latency_ms_max']:.4g}"
            print(f"{b:>6} {name:<18} {s['latency_ms']:>11.4g} {spread:>19} {s['samples_per_s']:>12.4g}")
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    for name, d in wrong.items():
        print(f"WRONG {name}: logits differ from layerwise-python by {d:.3g} (> {CHECK_TOL})")

    if args.json:
        import layerwise as lw

        doc = {"benchmark": "inference", "sizes": SIZES, "dtype": "float32", "quick": args.quick,
               "repeats": args.repeats, "min_time_s": args.min_time, "threads": args.threads or None,
               "machine": {"cpu": _cpu_model(), "cpus": os.cpu_count(), "platform": platform.platform(),
                           "python": platform.python_version(), "layerwise": lw.backend_info()},
               "results": summary, "max_abs_logit_diff": agreement, "skipped": skipped,
               "wrong": wrong}
        from layerwise.atomic import write_json_atomic

        write_json_atomic(args.json, doc, indent=2)
    return 1 if wrong else 0


if __name__ == "__main__":
    if "--worker" in sys.argv:
        i = sys.argv.index("--threads") if "--threads" in sys.argv else -1
        _set_thread_env(int(sys.argv[i + 1]) if 0 <= i < len(sys.argv) - 1 and sys.argv[i + 1].isdigit() else 0)
    sys.exit(main())
