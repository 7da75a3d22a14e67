"""bench_gpu.py -- layerwise's CUDA kernels against CuPy on the same GPU.

    python benchmarks/bench_gpu.py [--json benchmarks/results_gpu.json] [--reps 50]

What is compared (float32, timed with CUDA events on one stream after warm-up;
the median over --reps runs is reported):
  linear_forward   layerwise: one fused kernel  y = sigmoid(x W^T + b)
                   CuPy:      cuBLAS  x @ W.T + b, then a separate elementwise sigmoid
  linear_bwd_data  layerwise dy W          vs  cuBLAS dy @ W
  linear_bwd_wts   layerwise dy^T x, db    vs  cuBLAS dy.T @ x and dy.sum(0)
  sigmoid          4M elements: layerwise activation_forward vs a CuPy ElementwiseKernel
  sgd_momentum     4M parameters: layerwise sgd_update vs one fused CuPy ElementwiseKernel
  d2d_copy         device-to-device copy bandwidth (cudaMemcpy via CuPy): the roofline
Shapes (n x in -> out): 128x784->1000, 32x1000->1000, 10x784->1000 (MNIST-sized
layers) and square 1024^2, 2048^2, 4096^2. Prints a table, writes JSON.
Exits with status 2 and a message when CuPy, a GPU or layerwise's CUDA backend is missing.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys


def _fail(msg: str) -> None:
    print(f"bench_gpu: {msg}", file=sys.stderr)
    sys.exit(2)


try:
    import cupy as cp
except Exception as e:  # ImportError or a broken CUDA install
    _fail(f"CuPy is not importable ({e}); install it with pip install cupy-cuda13x")

import numpy as np

import layerwise
from layerwise import ops

LINEAR_SHAPES = [
    (128, 784, 1000),
    (32, 1000, 1000),
    (10, 784, 1000),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (4096, 4096, 4096),
]
ELEMENTWISE_N = 4 * 1024 * 1024


def time_ms(fn, reps: int, warmup: int = 5) -> float:
    """Median milliseconds of fn() on the current stream, by CUDA events."""
    for _ in range(warmup):
        fn()
    cp.cuda.get_current_stream().synchronize()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(reps):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


_sigmoid = None
_sgd = None


def cupy_kernels():
    global _sigmoid, _sgd
    if _sigmoid is None:
        _sigmoid = cp.ElementwiseKernel("T x", "T y", "y = 1 / (1 + exp(-x))", "lw_bench_sigmoid")
        _sgd = cp.ElementwiseKernel(
            "T g, T lr, T mu, T wd", "T p, T v",
            "T d = g + wd * p; v = mu * v + d; p = p - lr * v;", "lw_bench_sgd")
    return _sigmoid, _sgd


def bench_linear(n, fin, fout, reps, rows):
    rng = cp.random.default_rng(0)
    x = rng.standard_normal((n, fin), dtype=cp.float32)
    w = rng.standard_normal((fout, fin), dtype=cp.float32) * (1.0 / fin ** 0.5)
    b = rng.standard_normal((fout,), dtype=cp.float32)
    dy = rng.standard_normal((n, fout), dtype=cp.float32)
    y = cp.empty((n, fout), cp.float32)
    dx = cp.empty((n, fin), cp.float32)
    dw = cp.empty((fout, fin), cp.float32)
    db = cp.empty((fout,), cp.float32)
    sigmoid, _ = cupy_kernels()
    flops = 2.0 * n * fin * fout
    shape = f"{n}x{fin}->{fout}"

    def lw_fwd():
        ops.linear_forward(x, w, b, activation="sigmoid", out=y)

    def cp_fwd():
        sigmoid(x @ w.T + b, y)

    def lw_bwd_data():
        ops.linear_backward_data(dy, w, out=dx)

    def cp_bwd_data():
        cp.matmul(dy, w, out=dx)

    def lw_bwd_wts():
        ops.linear_backward_weights(dy, x, dweight=dw, dbias=db)

    def cp_bwd_wts():
        cp.matmul(dy.T, x, out=dw)
        dy.sum(axis=0, out=db)

    # correctness sanity check before timing
    lw_fwd()
    ref = 1 / (1 + cp.exp(-(x @ w.T + b)))
    err = float(cp.abs(y - ref).max())
    for op, f_lw, f_cp in (("linear_forward", lw_fwd, cp_fwd), ("linear_bwd_data", lw_bwd_data, cp_bwd_data),
                           ("linear_bwd_wts", lw_bwd_wts, cp_bwd_wts)):
        t_lw = time_ms(f_lw, reps)
        t_cp = time_ms(f_cp, reps)
        rows.append({
            "op": op, "shape": shape, "layerwise_ms": t_lw, "cupy_ms": t_cp,
            "layerwise_gflops": flops / t_lw / 1e6, "cupy_gflops": flops / t_cp / 1e6,
            "speedup_vs_cupy": t_cp / t_lw,
            **({"max_abs_err_vs_cupy": err} if op == "linear_forward" else {}),
        })


def bench_elementwise(reps, rows):
    n = ELEMENTWISE_N
    rng = cp.random.default_rng(1)
    x = rng.standard_normal((1024, n // 1024), dtype=cp.float32)
    y = cp.empty_like(x)
    p = rng.standard_normal(x.shape, dtype=cp.float32)
    g = rng.standard_normal(x.shape, dtype=cp.float32)
    v = cp.zeros_like(x)
    sigmoid, sgd = cupy_kernels()
    lr, mu, wd = cp.float32(0.01), cp.float32(0.9), cp.float32(1e-4)

    t_lw = time_ms(lambda: ops.activation_forward(x, "sigmoid", out=y), reps)
    t_cp = time_ms(lambda: sigmoid(x, y), reps)
    bytes_moved = 2 * 4 * n
    rows.append({"op": "sigmoid", "shape": f"{n} elems", "layerwise_ms": t_lw, "cupy_ms": t_cp,
                 "layerwise_gbs": bytes_moved / t_lw / 1e6, "cupy_gbs": bytes_moved / t_cp / 1e6,
                 "speedup_vs_cupy": t_cp / t_lw})

    t_lw = time_ms(lambda: ops.sgd_update(p, g, lr=0.01, momentum=0.9, velocity=v, weight_decay=1e-4), reps)
    t_cp = time_ms(lambda: sgd(g, lr, mu, wd, p, v), reps)
    bytes_moved = 5 * 4 * n  # read p, g, v; write p, v
    rows.append({"op": "sgd_momentum", "shape": f"{n} params", "layerwise_ms": t_lw, "cupy_ms": t_cp,
                 "layerwise_gbs": bytes_moved / t_lw / 1e6, "cupy_gbs": bytes_moved / t_cp / 1e6,
                 "speedup_vs_cupy": t_cp / t_lw})

    for count in (n, 64 * n):
        src = cp.ones(count, cp.float32)
        dst = cp.empty_like(src)
        t = time_ms(lambda: cp.copyto(dst, src), reps)
        rows.append({"op": "d2d_copy", "shape": f"{count} floats", "cupy_ms": t,
                     "cupy_gbs": 2 * 4 * count / t / 1e6})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default="benchmarks/results_gpu.json", help="where to write the results")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="skip the 4096^2 shape")
    args = ap.parse_args()

    info = layerwise.backend_info()
    if not info["cuda_compiled"]:
        _fail("this build of layerwise has no CUDA backend (rebuild with nvcc available or LAYERWISE_CUDA=ON)")
    try:
        gpus = cp.cuda.runtime.getDeviceCount()
    except Exception as e:
        _fail(f"no CUDA GPU or driver is usable ({e})")
    if gpus == 0 or info["cuda_devices"] == 0:
        _fail("no CUDA GPU is available: nothing to benchmark")

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    gpu = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    rows = []
    for shape in LINEAR_SHAPES:
        if args.quick and shape[0] >= 4096:
            continue
        bench_linear(*shape, args.reps, rows)
    bench_elementwise(args.reps, rows)

    print(f"GPU: {gpu} (cc {props['major']}.{props['minor']}), layerwise {info['version']}, "
          f"CuPy {cp.__version__}, median of {args.reps}")
    print(f"{'op':<16} {'shape':<20} {'layerwise ms':>13} {'cupy ms':>10} {'lw GF/s|GB/s':>13} "
          f"{'cupy GF/s|GB/s':>15} {'speedup':>8}")
    for r in rows:
        rate_lw = r.get("layerwise_gflops", r.get("layerwise_gbs", float("nan")))
        rate_cp = r.get("cupy_gflops", r.get("cupy_gbs", float("nan")))
        print(f"{r['op']:<16} {r['shape']:<20} {r.get('layerwise_ms', float('nan')):>13.4f} "
              f"{r['cupy_ms']:>10.4f} {rate_lw:>13.1f} {rate_cp:>15.1f} "
              f"{r.get('speedup_vs_cupy', float('nan')):>8.2f}")
    out = {"gpu": gpu, "compute_capability": f"{props['major']}.{props['minor']}",
           "layerwise": info, "cupy": cp.__version__, "numpy": np.__version__,
           "python": platform.python_version(), "reps": args.reps, "results": rows}
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
