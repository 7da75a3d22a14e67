"""Data-parallel training throughput: 2 single-threaded MPI ranks vs 1 process with 2 threads.

    python benchmarks/bench_distributed.py [--samples 2000] [--ranks 2] [--btl self,vader] [--json out.json] [--tiny]

The nets are the bengio2006 full preset's (784-500-10 and 784-500-500-500-10, fine-tuning
batch 50), trained with layerwise.train.fit (softmax cross-entropy, SGD momentum 0.9) on
synthetic MNIST-shaped data, one epoch of --samples samples per measurement:

  1 process   -- OMP_NUM_THREADS=2 (the library's thread-count variable), fit's fused path
  N ranks     -- mpirun -n N, OMP_NUM_THREADS=1 per rank, fit(comm=...) with the gradients
                 in one flat buffer reduced by Iallreduce + Test polling ("flat") or by a
                 blocking Allreduce under a watchdog ("blocking"), or in per-layer buckets
                 whose Iallreduce starts while the lower layers' backward runs ("buckets")

For the ranks the epoch time splits into allreduce (time inside the gradient allreduce,
including waiting for the slower rank) and compute (the rest). The allreduce moves
4 bytes x parameters per step (reported as bytes_per_step), which
benchmarks/scaling_model.py takes with the measured compute time per step.
--tiny: small nets and few samples, to check that the script runs (numbers meaningless).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DISTRIBUTED_MODES = ("flat", "blocking", "buckets")
# The ranks share one machine: shared memory (vader) by default, --btl self,tcp for loopback TCP.
MPI_ARGS = ["--oversubscribe", "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo"]


def nets(tiny):
    if tiny:
        return {"shallow": [64, 32, 10], "deep": [64, 32, 32, 10]}
    from layerwise.experiments import bengio2006 as b

    full = b.PRESETS["full"]
    return {"shallow": b.architecture(full, "shallow"), "deep": b.architecture(full, "deep_no_pretraining")}


def measure(mode, sizes, samples, batch, repeats):
    """Best-of-``repeats`` epoch of fit in this process; with mode "flat"/"buckets" over MPI.COMM_WORLD."""
    import numpy as np

    import layerwise as lw

    rng = np.random.default_rng(0)
    X = rng.random((samples, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], samples)
    dist = None
    if mode != "single":
        from layerwise import distributed

        dist = distributed.world(buckets=mode == "buckets", blocking=mode == "blocking")
    best = None
    for _ in range(repeats + 1):  # the first epoch warms up (buffers, pages, MPI connections)
        net = lw.nn.mlp(sizes, seed=0)
        if dist is not None:
            dist.seconds_allreduce = 0.0
        hist = lw.train.fit(net, X, y, lr=0.1, momentum=0.9, epochs=1, batch_size=batch, progress=False,
                            comm=dist)
        t = hist.seconds[0]
        allreduce = dist.seconds_allreduce if dist is not None else 0.0
        if dist is not None:  # the slowest rank sets the pace
            t, allreduce = (float(v) for v in dist.allreduce_sum([t, allreduce]) / dist.size)
        if best is None or t < best[0]:
            best = (t, allreduce)
    params = sum(p.data.size for p in lw.nn.mlp(sizes, seed=0).parameters())
    steps = -(-samples // batch)
    t, allreduce = best
    return {"mode": mode, "sizes": sizes, "batch": batch, "samples": samples, "seconds": t,
            "samples_per_second": samples / t, "allreduce_seconds": allreduce, "compute_seconds": t - allreduce,
            "steps": steps, "compute_seconds_per_step": (t - allreduce) / steps, "parameters": int(params),
            "bytes_per_step": int(params) * 4, "ranks": dist.size if dist is not None else 1,
            "threads": lw.ops.get_num_threads()}


def worker(args):
    """One measurement in this process (under mpirun for the distributed modes); prints JSON on rank 0."""
    res = measure(args.worker, json.loads(args.sizes), args.samples, args.batch, args.repeats)
    rank = 0
    if args.worker != "single":
        from mpi4py import MPI

        rank = MPI.COMM_WORLD.Get_rank()
    if rank == 0:
        print("RESULT " + json.dumps(res), flush=True)


def launch(mode, sizes, args):
    base = [sys.executable, os.path.abspath(__file__), "--worker", mode, "--sizes", json.dumps(sizes),
            "--samples", str(args.samples), "--batch", str(args.batch), "--repeats", str(args.repeats)]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    if mode == "single":
        env["OMP_NUM_THREADS"] = str(args.ranks)
        cmd = base
    else:
        env["OMP_NUM_THREADS"] = "1"
        mpirun = shutil.which("mpirun")
        if mpirun is None:
            raise SystemExit("bench_distributed: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)")
        cmd = [mpirun, "-n", str(args.ranks), *MPI_ARGS, "--mca", "btl", args.btl, *base]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"bench_distributed: {mode} run failed:\n{proc.stdout}\n{proc.stderr}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=50, help="global batch (the full preset fine-tunes with 50)")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--btl", default="self,vader", help="Open MPI transports (default self,vader: shared memory)")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--worker", choices=("single",) + DISTRIBUTED_MODES, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.tiny:
        args.samples, args.repeats = min(args.samples, 200), 1
    rows = []
    t0 = time.time()
    for name, sizes in nets(args.tiny).items():
        for mode in ("single",) + DISTRIBUTED_MODES:
            r = launch(mode, sizes, args)
            r["net"] = name
            rows.append(r)
            print(f"{name:8s} {'-'.join(map(str, sizes)):22s} {mode:8s} ranks {r['ranks']} threads {r['threads']}: "
                  f"{r['samples_per_second']:9.0f} samples/s  compute {r['compute_seconds']:.3f}s  "
                  f"allreduce {r['allreduce_seconds']:.3f}s  ({r['bytes_per_step'] / 1e6:.2f} MB/step)", flush=True)
    doc = {"benchmark": "bench_distributed", "settings": vars(args), "rows": rows, "wall_seconds": time.time() - t0}
    if args.json:
        sys.path.insert(0, os.path.join(HERE, "..", "python"))
        from layerwise.atomic import write_json_atomic

        write_json_atomic(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
