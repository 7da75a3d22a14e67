"""Ring-allreduce scaling model of data-parallel training, from a measured compute time per step.

    python benchmarks/scaling_model.py [--from bench_distributed.json] [--compute-ms 20] [--params 1290000]
                                       [--batch 50] [--latency-us 20] [--json out.json]

Per step, with N nodes, P float32 parameters (bytes = 4P), link bandwidth B and per-message
latency L, a ring allreduce costs

    t_comm(N) = 2 (N - 1) / N x bytes / B + 2 (N - 1) x L

(reduce-scatter then allgather: N - 1 rounds each; each node sends and receives 2(N-1)/N
of the buffer). t_step(1) = t_compute is the measured compute time of one step of the
global batch on one node; without overlap of compute and communication:

    strong scaling (global batch fixed):      t_step(N) = t_compute / N + t_comm(N)
    weak scaling (per-node batch fixed):      t_step(N) = t_compute + t_comm(N)

speedup(N) = N t_compute / t_step(N) for weak scaling (samples/s relative to one node),
t_compute / t_step(N) for strong scaling; efficiency = speedup / N. Scaling "stops" where
the efficiency falls below 50% (communication takes as long as computing), which the
script prints for 4-64 nodes over 10, 25 and 100 Gb/s links.

--from takes a benchmarks/bench_distributed.py --json file: the single-process row of the
deep net gives t_compute (epoch seconds / steps) and the parameter count.
"""
from __future__ import annotations

import argparse
import json
import sys

NODES = (1, 2, 4, 8, 16, 32, 64)
LINKS_GBPS = (10, 25, 100)


def allreduce_seconds(nodes, nbytes, gbps, latency):
    """Ring allreduce of ``nbytes`` over ``nodes`` nodes on ``gbps`` Gb/s links with ``latency`` s per message."""
    if nodes == 1:
        return 0.0
    return 2 * (nodes - 1) / nodes * nbytes / (gbps * 1e9 / 8) + 2 * (nodes - 1) * latency


def table(compute, nbytes, latency):
    """Rows {link, nodes, strong/weak step seconds, speedup, efficiency}."""
    rows = []
    for gbps in LINKS_GBPS:
        for n in NODES:
            comm = allreduce_seconds(n, nbytes, gbps, latency)
            strong = compute / n + comm
            weak = compute + comm
            rows.append({"gbps": gbps, "nodes": n, "comm_seconds": comm, "strong_step_seconds": strong,
                         "strong_speedup": compute / strong, "strong_efficiency": compute / strong / n,
                         "weak_step_seconds": weak, "weak_speedup": n * compute / weak,
                         "weak_efficiency": compute / weak})
    return rows


def stops(rows, kind):
    """Per link: the first node count whose efficiency is below 50% (None: scales to 64)."""
    out = {}
    for gbps in LINKS_GBPS:
        bad = [r["nodes"] for r in rows if r["gbps"] == gbps and r[f"{kind}_efficiency"] < 0.5]
        out[gbps] = bad[0] if bad else None
    return out


def from_bench(path):
    doc = json.load(open(path))
    single = [r for r in doc["rows"] if r["mode"] == "single"]
    row = max(single, key=lambda r: r["parameters"])  # the deep net
    return row["seconds"] / row["steps"], row["parameters"], row["batch"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="bench", metavar="JSON", help="a bench_distributed.py --json result")
    ap.add_argument("--compute-ms", type=float, default=None, help="compute time of one global-batch step, ms")
    ap.add_argument("--params", type=int, default=784 * 500 + 500 + 2 * (500 * 500 + 500) + 500 * 10 + 10)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--latency-us", type=float, default=20.0, help="per-message latency (default 20 us, TCP)")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    if args.bench:
        compute, params, batch = from_bench(args.bench)
    elif args.compute_ms is not None:
        compute, params, batch = args.compute_ms / 1e3, args.params, args.batch
    else:
        ap.error("give --from JSON (a bench_distributed.py result) or --compute-ms")
    if compute <= 0 or params <= 0:
        ap.error("compute time and parameter count must be positive")
    nbytes = 4 * params
    rows = table(compute, nbytes, args.latency_us * 1e-6)
    print(f"compute {compute * 1e3:.3f} ms/step (global batch {batch}), {params} parameters = "
          f"{nbytes / 1e6:.2f} MB allreduced per step, latency {args.latency_us:g} us")
    print(f"{'Gb/s':>5} {'nodes':>5} {'comm ms':>9} | {'strong x':>8} {'eff':>5} | {'weak x':>8} {'eff':>5}")
    for r in rows:
        print(f"{r['gbps']:>5} {r['nodes']:>5} {r['comm_seconds'] * 1e3:>9.3f} | {r['strong_speedup']:>8.2f} "
              f"{r['strong_efficiency']:>5.0%} | {r['weak_speedup']:>8.2f} {r['weak_efficiency']:>5.0%}")
    result = {"compute_seconds_per_step": compute, "parameters": params, "batch": batch,
              "latency_seconds": args.latency_us * 1e-6, "rows": rows,
              "strong_stops_at": stops(rows, "strong"), "weak_stops_at": stops(rows, "weak")}
    for kind in ("strong", "weak"):
        for gbps, n in result[f"{kind}_stops_at"].items():
            print(f"{kind} scaling over {gbps} Gb/s: " + (f"efficiency below 50% from {n} nodes" if n else
                                                          "efficiency stays above 50% up to 64 nodes"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
