#!/usr/bin/env python3
"""bench_kernels.py -- CPU kernels of layerwise.ops against NumPy (and PyTorch CPU
when importable), timed in one process, interleaved, median of repeats.

    python benchmarks/bench_kernels.py [--quick] [--json PATH] [--threads N] [--cpu-time]

Each row times one primitive and the NumPy expression computing the same result
(the brief's expressions: identity ``x @ W.T + b``, sigmoid
``1/(1+np.exp(-(x @ W.T + b)))``, backward data ``dy @ W``, backward weights
``dy.T @ x`` plus ``dy.sum(0)``, sigmoid forward/backward on 4M float32, SGD with
momentum as the three in-place ops). Contenders alternate call by call, so a
burst of load from other processes hits all of them alike. Linear layers are
called without ``out=`` (they allocate like NumPy); elementwise ops write into
preallocated outputs (the steady state of a training loop), which is stated in
the table. GEMM rows report GFLOP/s (2*n*in*out), elementwise rows GB/s (bytes
read + written once). The machine's peak is measured with a compiled FMA loop
on all threads (falls back to the best GEMM rate when no C compiler works).

--cpu-time: every library on ONE thread (OpenBLAS, torch, layerwise), timed by
process CPU time instead of the wall clock. On a machine shared with other
jobs this is the load-independent comparison of the kernels themselves (the
wall clock then mostly measures the scheduler).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

import layerwise
from layerwise import ops

try:
    import torch  # optional, comparison only
    import torch.nn.functional as F
except Exception:  # pragma: no cover
    torch = None

LAYERS = [(784, 1000), (1000, 1000), (1000, 10), (784, 500), (500, 500)]
BATCHES = [1, 10, 32, 128, 1024]
SQUARES = [512, 1024, 2048]
EW_N = 4 * 1024 * 1024


TIMER = time.perf_counter  # time.process_time under --cpu-time


def clock(fn, min_time=2e-3):
    """Calls per sample so that one sample takes ~min_time (tiny ops are
    otherwise dominated by timer resolution)."""
    fn()
    t0 = TIMER()
    fn()
    dt = TIMER() - t0
    return max(1, int(min_time / max(dt, 1e-7)))


BLOCKED = False  # --blocked: each contender's repeats back to back (diagnostic)


def bench(contenders, repeats):
    """contenders: {name: fn}. Returns {name: median seconds per call}."""
    reps = {k: clock(f) for k, f in contenders.items()}
    samples = {k: [] for k in contenders}
    names = list(contenders)
    if BLOCKED:
        for k in names:
            f, n = contenders[k], reps[k]
            for _ in range(repeats):
                t0 = TIMER()
                for _ in range(n):
                    f()
                samples[k].append((TIMER() - t0) / n)
        return {k: float(np.median(v)) for k, v in samples.items()}
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for k in order:
            f, n = contenders[k], reps[k]
            t0 = TIMER()
            for _ in range(n):
                f()
            samples[k].append((TIMER() - t0) / n)
    return {k: float(np.median(v)) for k, v in samples.items()}


def linear_rows(n, i, o, repeats, rng):
    x = rng.standard_normal((n, i), dtype=np.float32)
    w = (rng.standard_normal((o, i), dtype=np.float32) / np.float32(np.sqrt(i)))
    b = rng.standard_normal(o, dtype=np.float32)
    dy = rng.standard_normal((n, o), dtype=np.float32)
    flops = 2.0 * n * i * o
    cases = {
        "fwd_identity": (
            lambda: ops.linear_forward(x, w, b),
            lambda: x @ w.T + b,
        ),
        "fwd_sigmoid": (
            lambda: ops.linear_forward(x, w, b, activation="sigmoid"),
            lambda: 1 / (1 + np.exp(-(x @ w.T + b))),
        ),
        "bwd_data": (
            lambda: ops.linear_backward_data(dy, w),
            lambda: dy @ w,
        ),
        "bwd_weights": (
            lambda: ops.linear_backward_weights(dy, x),
            lambda: (dy.T @ x, dy.sum(0)),
        ),
    }
    tcases = {}
    if torch is not None:
        tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
        tcases = {
            "fwd_identity": lambda: F.linear(tx, tw, tb),
            "fwd_sigmoid": lambda: torch.sigmoid(F.linear(tx, tw, tb)),
            "bwd_data": lambda: tdy @ tw,
            "bwd_weights": lambda: (tdy.T @ tx, tdy.sum(0)),
        }
    rows = []
    for op, (ours, ref) in cases.items():
        c = {"layerwise": ours, "numpy": ref}
        if op in tcases:
            c["torch"] = tcases[op]
        t = bench(c, repeats)
        rows.append(make_row(op, f"{n}x{i}->{o}", n, t, flops / 1e9, "GFLOP/s"))
    return rows


def make_row(op, shape, batch, t, amount, unit):
    row = {"op": op, "shape": shape, "batch": batch, "unit": unit,
           "seconds": t, "rate": {k: amount / v for k, v in t.items()}}
    row["vs_numpy"] = t["numpy"] / t["layerwise"]
    row["vs_torch"] = t["torch"] / t["layerwise"] if "torch" in t else None
    return row


def elementwise_rows(repeats, rng):
    n = EW_N
    x = rng.standard_normal((1024, n // 1024), dtype=np.float32)
    y = np.empty_like(x)
    ysig = 1 / (1 + np.exp(-x))
    dy = rng.standard_normal(x.shape, dtype=np.float32)
    dx = np.empty_like(x)
    p = rng.standard_normal(x.shape, dtype=np.float32)
    g = rng.standard_normal(x.shape, dtype=np.float32)
    v = np.zeros_like(x)
    p2, v2 = p.copy(), v.copy()
    lr, mu = 0.01, 0.9

    def np_sgd():
        v2.__imul__(mu)
        v2.__iadd__(g)
        p2.__isub__(lr * v2)

    rows = []
    c = {"layerwise": lambda: ops.activation_forward(x, "sigmoid", out=y),
         "numpy": lambda: 1 / (1 + np.exp(-x))}
    if torch is not None:
        tx = torch.from_numpy(x)
        ty = torch.from_numpy(ysig.copy())
        c["torch"] = lambda: torch.sigmoid(tx, out=ty)
    rows.append(make_row("act_fwd_sigmoid", "4M f32 (out=)", n, bench(c, repeats), 8.0 * n / 1e9, "GB/s"))

    c = {"layerwise": lambda: ops.activation_backward(ysig, dy, "sigmoid", out=dx),
         "numpy": lambda: dy * ysig * (1 - ysig)}
    if torch is not None:
        tys, tdy, tdx = torch.from_numpy(ysig), torch.from_numpy(dy), torch.from_numpy(dx.copy())
        c["torch"] = lambda: torch.ops.aten.sigmoid_backward.grad_input(tdy, tys, grad_input=tdx)
    rows.append(make_row("act_bwd_sigmoid", "4M f32 (out=)", n, bench(c, repeats), 12.0 * n / 1e9, "GB/s"))

    xs = x[:, :1000]  # (1024, 1000) logits, row-strided view

    def np_softmax():
        e = np.exp(xs - xs.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    ys = np.empty((1024, 1000), np.float32)
    c = {"layerwise": lambda: ops.softmax(xs, out=ys), "numpy": np_softmax}
    if torch is not None:
        txs = torch.from_numpy(np.ascontiguousarray(xs))
        c["torch"] = lambda: torch.softmax(txs, 1)
    rows.append(make_row("softmax", "1024x1000 f32", 1024, bench(c, repeats), 8.0 * 1024 * 1000 / 1e9, "GB/s"))

    c = {"layerwise": lambda: ops.sgd_update(p, g, lr=lr, momentum=mu, velocity=v),
         "numpy": np_sgd}
    if torch is not None:
        tp, tg, tv = torch.from_numpy(p.copy()), torch.from_numpy(g), torch.from_numpy(v.copy())

        def t_sgd():
            tv.mul_(mu).add_(tg)
            tp.add_(tv, alpha=-lr)
        c["torch"] = t_sgd
    rows.append(make_row("sgd_momentum", "4M f32 in place", n, bench(c, repeats), 20.0 * n / 1e9, "GB/s"))
    return rows


FMA_SRC = r"""
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <time.h>
/* 12 independent FMA chains per thread (more than latency x throughput), no
   memory operands: the core's float32 FMA peak. Timed as a whole per thread. */
#define STEP(a) a = _mm512_fmadd_ps(a, b, c)
int main(void) {
  const long iters = 50000000;
  double best = 0, best_cpu = 0;
  float sink = 0;
  for (int rep = 0; rep < 3; ++rep) {
    double t0 = omp_get_wtime(), cpu_rate = 0;
#pragma omp parallel reduction(+ : sink, cpu_rate)
    {
      struct timespec c0, c1;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
      __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
      __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2), a3 = _mm512_set1_ps(3);
      __m512 a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5), a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7);
      __m512 a8 = _mm512_set1_ps(8), a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
      for (long k = 0; k < iters; ++k) {
        STEP(a0); STEP(a1); STEP(a2); STEP(a3); STEP(a4); STEP(a5);
        STEP(a6); STEP(a7); STEP(a8); STEP(a9); STEP(a10); STEP(a11);
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));
      }
      __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                               _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
      s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
      sink += _mm512_reduce_add_ps(s);
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
      cpu_rate += 2.0 * 16 * 12 * iters / ((c1.tv_sec - c0.tv_sec) + 1e-9 * (c1.tv_nsec - c0.tv_nsec)) / 1e9;
    }
    double g = 2.0 * 16 * 12 * iters * omp_get_max_threads() / (omp_get_wtime() - t0) / 1e9;
    if (g > best) best = g;
    if (cpu_rate > best_cpu) best_cpu = cpu_rate;
  }
  printf("%f %f %d %f\n", best, best_cpu, omp_get_max_threads(), sink);
  return 0;
}
"""


def measure_peak(threads):
    """float32 FMA peak of a 12-accumulator AVX-512 loop on all threads:
    (wall-clock GFLOP/s, GFLOP/s per CPU-second summed over threads), or (None, None)."""
    try:
        with tempfile.TemporaryDirectory() as d:
            src, exe = os.path.join(d, "fma.c"), os.path.join(d, "fma")
            open(src, "w").write(FMA_SRC)
            subprocess.run(["cc", "-O3", "-mavx512f", "-fopenmp", src, "-o", exe], check=True,
                           capture_output=True)
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            out = subprocess.run([exe], check=True, capture_output=True, text=True, env=env)
            f = out.stdout.split()
            return (float(f[0]), float(f[1])), "AVX-512 register-only FMA loop, 12 chains per thread, best of 3"
    except Exception as e:  # no compiler / no AVX-512
        return (None, None), f"unavailable ({type(e).__name__})"


def evaluate_targets(rows, peak, cpu_eff=None):
    by = {(r["op"], r["shape"]): r for r in rows}
    out = []

    def ratio(op, shape, key="vs_numpy"):
        r = by.get((op, shape))
        return None if r is None else r[key]

    def add(name, values, need):
        vals = [v for v in values if v is not None]
        ok = bool(vals) and len(vals) == len(values) and min(vals) >= need
        out.append({"target": name, "values": [round(v, 2) if v is not None else None for v in values],
                    "need": need, "pass": ok})

    main = ["128x784->1000", "32x1000->1000", "2048x2048->2048"]
    add("fwd identity >= 1.0x numpy (128x784->1000, 32x1000->1000, 2048^3)",
        [ratio("fwd_identity", s) for s in main], 1.0)
    add("fwd sigmoid fused >= 1.3x numpy (128x784->1000, 32x1000->1000)",
        [ratio("fwd_sigmoid", s) for s in main[:2]], 1.3)
    add("bwd data >= 1.0x numpy (same shapes)", [ratio("bwd_data", s) for s in main], 1.0)
    add("bwd weights >= 1.0x numpy (same shapes)", [ratio("bwd_weights", s) for s in main], 1.0)
    b10 = ["10x784->1000", "10x1000->1000"]
    add("batch 10, all four calls >= 1.5x numpy",
        [ratio(op, s) for op in ("fwd_identity", "fwd_sigmoid", "bwd_data", "bwd_weights") for s in b10], 1.5)
    add("activation_forward sigmoid 4M >= 5x numpy", [ratio("act_fwd_sigmoid", "4M f32 (out=)")], 5.0)
    add("activation_backward sigmoid 4M >= 2.5x numpy", [ratio("act_bwd_sigmoid", "4M f32 (out=)")], 2.5)
    add("sgd momentum 4M >= 1.3x numpy three-op", [ratio("sgd_momentum", "4M f32 in place")], 1.3)
    r = by.get(("fwd_identity", "2048x2048->2048"))
    if r is not None and peak:
        add("fwd identity 2048^3 >= 85% of measured peak (wall-clock)", [r["rate"]["layerwise"] / peak], 0.85)
    if cpu_eff is not None:
        add("fwd identity 2048^3 >= 85% of measured peak (per CPU-second, load-independent)", [cpu_eff], 0.85)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="target shapes only, fewer repeats")
    ap.add_argument("--json", metavar="PATH", help="write all rows + targets as JSON")
    ap.add_argument("--threads", type=int, default=0, help="threads for all libraries (0: all cores)")
    ap.add_argument("--repeats", type=int, default=0)
    ap.add_argument("--cpu-time", action="store_true",
                    help="one thread everywhere, timed by process CPU time (load-independent)")
    ap.add_argument("--blocked", action="store_true",
                    help="diagnostic: time each contender's repeats back to back instead of "
                         "interleaved (shows what a library's spinning idle threads cost the next call)")
    args = ap.parse_args()

    global TIMER, BLOCKED
    BLOCKED = args.blocked
    if args.cpu_time:
        if os.environ.get("LW_BENCH_CPU_TIME") != "1":
            # OpenBLAS reads its thread count at import: restart with it pinned.
            env = dict(os.environ, LW_BENCH_CPU_TIME="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
                       MKL_NUM_THREADS="1")
            os.execve(sys.executable, [sys.executable] + sys.argv, env)
        args.threads = 1
        TIMER = time.process_time
    threads = args.threads or os.cpu_count() or 1
    ops.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    repeats = args.repeats or (7 if args.quick else 15)
    rng = np.random.default_rng(0)

    shapes = []
    if args.quick:
        shapes = [(10, 784, 1000), (10, 1000, 1000), (32, 1000, 1000), (128, 784, 1000), (2048, 2048, 2048)]
    else:
        shapes = [(n, i, o) for (i, o) in LAYERS for n in BATCHES] + [(s, s, s) for s in SQUARES]

    info = layerwise.backend_info()
    print(f"layerwise {info['version']} isa={info['isa']} threads={threads} "
          f"timer={'process CPU time' if args.cpu_time else 'wall clock'}"
          f"{' BLOCKED (not interleaved)' if BLOCKED else ''}  numpy {np.__version__}"
          + (f"  torch {torch.__version__}" if torch is not None else "  (torch not importable)"))
    (peak, peak_cpu), how = measure_peak(threads)
    if peak:
        print(f"measured peak: {peak:.1f} GFLOP/s wall-clock on {threads} threads, "
              f"{peak_cpu:.1f} GFLOP/s per CPU-second summed over threads ({how})")
    else:
        print(f"peak: {how}")

    rows = []
    hdr = f"{'op':<16} {'shape':<18} {'unit':<8} {'layerwise':>10} {'numpy':>10} {'torch':>10} {'vs np':>7} {'vs torch':>8}"
    print(hdr)
    print("-" * len(hdr))

    def show(r):
        rt = r["rate"]
        tv = f"{rt['torch']:10.1f}" if "torch" in rt else f"{'-':>10}"
        vt = f"{r['vs_torch']:7.2f}x" if r["vs_torch"] else f"{'-':>8}"
        print(f"{r['op']:<16} {r['shape']:<18} {r['unit']:<8} {rt['layerwise']:10.1f} {rt['numpy']:10.1f} {tv} "
              f"{r['vs_numpy']:6.2f}x {vt}", flush=True)

    for (n, i, o) in shapes:
        reps = repeats if n * i * o < 1e9 else max(5, repeats // 2)
        for r in linear_rows(n, i, o, reps, rng):
            rows.append(r)
            show(r)
    for r in elementwise_rows(repeats * 2, rng):
        rows.append(r)
        show(r)

    r2048 = next((r for r in rows if r["op"] == "fwd_identity" and r["shape"] == "2048x2048->2048"), None)
    cpu_eff = None
    if r2048 and peak:
        # Load-independent view: flops per CPU-second actually consumed by the
        # process (pool threads included) against the FMA loop's per-CPU-second peak.
        x = rng.standard_normal((2048, 2048), dtype=np.float32)
        w = rng.standard_normal((2048, 2048), dtype=np.float32)
        b = np.zeros(2048, np.float32)
        effs = []
        for _ in range(5):
            c0 = time.process_time()
            ops.linear_forward(x, w, b)
            effs.append(2.0 * 2048 ** 3 / (time.process_time() - c0) / 1e9)
        cpu_rate = float(np.median(effs))
        cpu_eff = cpu_rate * threads / peak_cpu
        print(f"\nfwd identity 2048^3: {r2048['rate']['layerwise']:.1f} GFLOP/s wall-clock = "
              f"{100 * r2048['rate']['layerwise'] / peak:.1f}% of the wall-clock peak "
              f"(numpy {100 * r2048['rate']['numpy'] / peak:.1f}%); "
              f"{cpu_rate:.1f} GFLOP per CPU-second = {100 * cpu_eff:.1f}% of the per-CPU-second peak")
    targets = evaluate_targets(rows, peak, cpu_eff)
    print("\ntargets:")
    for t in targets:
        print(f"  {'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['values']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": platform.processor() or platform.machine(), "threads": threads,
                       "timer": "process_time" if args.cpu_time else "perf_counter",
                       "interleaved": not BLOCKED,
                       "backend": info, "numpy": np.__version__,
                       "torch": torch.__version__ if torch is not None else None,
                       "peak_gflops": peak, "peak_gflops_per_cpu_second": peak_cpu, "peak_method": how,
                       "fwd2048_fraction_of_cpu_peak": cpu_eff, "load_average": os.getloadavg(),
                       "rows": rows, "targets": targets},
                      f, indent=1)


if __name__ == "__main__":
    main()
