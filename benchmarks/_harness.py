"""_harness.py -- what bench_kernels.py and bench_train.py share: contenders in their
own processes, alternated over repeats, medians and spreads, and the machine record.

Why one process per contender
    OpenBLAS, MKL (PyTorch) and OpenMP keep their worker threads spinning for a
    while after each call. When two libraries live in one process and are
    timed one after the other, the first one's spinning threads still hold the
    other cores while the second one runs, so the second is measured on a
    machine it shares with an idle-but-busy library. Both benchmarks were
    misled by this before. Here every contender runs in a fresh Python that
    imports only its own library (plus NumPy for the data, and layerwise,
    whose idle pool sleeps instead of spinning), and the contenders take turns
    (A B C A B C ...), so slow drift of the machine's load hits all of them alike.

Why the thread count is set explicitly, and the same for all
    Each library would otherwise pick its own default (all cores, or the
    physical cores, or what an environment variable says), and a ratio between
    a 2-thread and a 1-thread run says nothing about the kernels. The workers
    get OPENBLAS/OMP/MKL/BLIS_NUM_THREADS in their environment before any
    import (BLAS pools are sized at import) and call set_num_threads for
    layerwise and torch.

Worker protocol
    ``python _harness.py <script.py> <function>`` reads one JSON payload from
    stdin, imports script.py by path, calls function(payload) and writes its
    JSON-serializable return value to stdout. Anything a library prints goes to
    stderr instead (stdout is re-pointed before the function runs), so the JSON
    cannot be corrupted by a stray print.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
DEFAULT_THREADS = 2


# ---- running contenders ------------------------------------------------------------------
def worker_env(threads, extra=None):
    """The environment of a worker: the parent's, every BLAS/OpenMP pool pinned to
    `threads`, plus the contender's own variables (LAYERWISE_ISA for a forced ISA)."""
    env = dict(os.environ)
    for var in THREAD_VARIABLES:
        env[var] = str(threads)
    env.update(extra or {})
    return env


def run_worker(script, function, payload, env, timeout):
    """Runs function(payload) from script in a fresh interpreter; returns its result."""
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), os.path.abspath(script), function],
                          input=json.dumps(payload), capture_output=True, text=True, env=env,
                          timeout=timeout)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"worker {function} of {os.path.basename(script)} failed "
                           f"(exit {proc.returncode}): " + " | ".join(tail))
    return json.loads(proc.stdout)


def alternate(script, function, contenders, payload, repeats, threads, timeout=900, log=None):
    """Runs every contender `repeats` times, one fresh process each, in the order
    A B C A B C ... . contenders: {name: extra environment}; each worker gets
    payload plus {"contender": name, "threads": threads}. Returns {name: [result per repeat]}."""
    results = {name: [] for name in contenders}
    for rep in range(repeats):
        for name, extra in contenders.items():
            t0 = time.perf_counter()
            out = run_worker(script, function, dict(payload, contender=name, threads=threads),
                             worker_env(threads, extra), timeout)
            results[name].append(out)
            if log:
                log(f"  repeat {rep + 1}/{repeats} {name:<16s} {time.perf_counter() - t0:6.1f} s")
    return results


def set_worker_threads(threads, with_torch=False):
    """Called first thing in a worker, for the libraries that take a call (torch
    only in the torch worker: the others must not even import it)."""
    import layerwise

    layerwise.ops.set_num_threads(threads)
    if with_torch:
        import torch

        torch.set_num_threads(threads)


# ---- statistics ---------------------------------------------------------------------------
def spread(values):
    """Median, min, max and quartiles of a list of floats (None entries dropped)."""
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    if len(v) >= 2:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    else:
        q1 = q3 = v[0]
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "q1": q1, "q3": q3, "n": len(v)}


def ratio(numerator, denominator):
    """numerator / denominator when both are positive finite numbers, else None."""
    if numerator is None or denominator is None:
        return None
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or numerator <= 0 or denominator <= 0:
        return None
    return numerator / denominator


def seconds_per_call(fn, min_time, samples):
    """Median over `samples` samples of the time per call, each sample as many
    back-to-back calls as take about min_time (so a microsecond op is not timer
    noise). One warm-up call first: allocation, page faults, pool start."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    calls = max(1, int(min_time / max(once, 1e-7)))
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
    return statistics.median(times)


# ---- the machine -----------------------------------------------------------------------------
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_sizes():
    """{"L1d": bytes, "L1i": ..., "L2": ..., "L3": ...} of cpu0 from sysfs (empty off Linux)."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    out = {}
    try:
        entries = sorted(e for e in os.listdir(base) if e.startswith("index"))
    except OSError:
        return out
    for e in entries:
        try:
            level = open(os.path.join(base, e, "level")).read().strip()
            kind = open(os.path.join(base, e, "type")).read().strip()
            size = open(os.path.join(base, e, "size")).read().strip()
        except OSError:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        num = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        out[f"L{level}{suffix}"] = num
    return out


def copy_buffer_bytes(caches):
    """Large enough that the copy streams from memory: 4x the last-level cache, >= 64 MiB."""
    return max(64 << 20, 4 * max(caches.values(), default=0))


def probe_worker(payload):
    """Worker: the probes of layerwise._core under this process's LAYERWISE_ISA."""
    import layerwise
    from layerwise import _core

    threads = payload["threads"]
    set_worker_threads(threads)
    secs, reps, nbytes = payload["min_seconds"], payload["repeats"], payload["copy_bytes"]
    return {
        "isa": layerwise.backend_info()["isa"],
        "fma_gflops_1_thread": _core.measure_fma_peak(1, secs, reps),
        "fma_gflops_all_threads": _core.measure_fma_peak(threads, secs, reps),
        "copy_gbps_1_thread": _core.measure_copy_bandwidth(1, nbytes, reps),
        "copy_gbps_all_threads": _core.measure_copy_bandwidth(threads, nbytes, reps),
    }


def machine_record(threads, isa_envs, with_torch, quick=False, timeout=300):
    """What every run records: CPU, caches, versions, and per ISA variant the
    measured FMA peak and copy bandwidth (in a worker of its own, with that
    variant's environment). isa_envs: {label: extra env}. The torch version is
    recorded only when torch is a contender of the run."""
    import layerwise
    import numpy

    caches = cache_sizes()
    nbytes = (8 << 20) if quick else copy_buffer_bytes(caches)
    payload = {"min_seconds": 0.02 if quick else 0.2, "repeats": 2 if quick else 5, "copy_bytes": nbytes}
    probes = {label: run_worker(__file__, "probe_worker", dict(payload, threads=threads),
                                worker_env(threads, env), timeout)
              for label, env in isa_envs.items()}
    torch_version = None
    if with_torch:
        import importlib.metadata as md

        torch_version = md.version("torch")
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "caches_bytes": caches,
        "threads": threads,
        "backend": layerwise.backend_info(),
        "probes": probes,
        "copy_buffer_bytes": nbytes,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch_version,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def isa_variants(isa, both_isas):
    """The layerwise contenders to run: {label: extra env}. label "layerwise" is the
    default dispatch; "layerwise[avx2]" forces LAYERWISE_ISA=avx2, and so on."""
    import layerwise

    native = layerwise.backend_info()["isa"]
    if both_isas:
        wanted = [native] + (["avx2"] if native == "avx512" else [])
    else:
        wanted = [isa or native]
    out = {}
    for w in wanted:
        out["layerwise" if w == native else f"layerwise[{w}]"] = {"LAYERWISE_ISA": w}
    return out


def machine_lines(machine):
    """The machine record as a few markdown lines."""
    c = machine["caches_bytes"]
    caches = ", ".join(f"{k} {v // 1024} KiB" for k, v in sorted(c.items())) or "unknown"
    lines = [f"- CPU: {machine['cpu_model']} ({machine['logical_cpus']} logical CPUs), caches of cpu0: {caches}",
             f"- threads for every contender: {machine['threads']}; numpy {machine['numpy']}, "
             f"torch {machine['torch'] or 'not run'}, layerwise {machine['backend'].get('version')}; "
             f"load average {machine['load_average']}"]
    for label, p in machine["probes"].items():
        if "[" in label and label.split("[")[1].rstrip("]") != p["isa"]:
            lines.append(f"- note: {label} asked for an ISA this CPU or build lacks; it ran {p['isa']}")
        lines.append(f"- {label} (ISA {p['isa']}): FMA peak {p['fma_gflops_1_thread']:.1f} GFLOP/s on 1 thread, "
                     f"{p['fma_gflops_all_threads']:.1f} on {machine['threads']}; copy bandwidth "
                     f"{p['copy_gbps_1_thread']:.1f} GB/s on 1 thread, {p['copy_gbps_all_threads']:.1f} on "
                     f"{machine['threads']} (read + write, {machine['copy_buffer_bytes'] >> 20} MiB buffers)")
    return lines


def write_json(path, obj):
    """Atomically: a temp file in the same directory, fsync, rename."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---- worker entry point --------------------------------------------------------------------
def _worker_main(script, function):
    payload = json.loads(sys.stdin.read())
    result_stream = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # libraries that print now print to stderr
    sys.stdout = sys.stderr
    if os.path.abspath(script) == os.path.abspath(__file__):
        module = sys.modules[__name__]
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        spec = importlib.util.spec_from_file_location("_bench_worker_module", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    result = getattr(module, function)(payload)
    json.dump(result, result_stream)
    result_stream.flush()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python _harness.py SCRIPT FUNCTION  (payload JSON on stdin; used by the benchmarks)")
    _worker_main(sys.argv[1], sys.argv[2])
