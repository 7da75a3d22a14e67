"""bench_robustness.py -- issue 16's two speed targets, each contender in its own process
(benchmarks/_harness.py), taking turns over the repeats:

  * FGSM throughput: adversarial images per second of ``adversarial.fgsm`` for the
    784-500-500-500-10 sigmoid net (target: >= 5,000 img/s on 2 cores), through the
    input-gradient-only backward at a few batch sizes, and through the full backward
    (dW and db as well) for comparison;
  * RBF forward / linear forward: ``ops.rbf_forward`` against ``ops.linear_forward``
    (bias, sigmoid) at the same shape (target: ratio <= 1.3).

    python benchmarks/bench_robustness.py                    # full run, writes results_robustness.json
    python benchmarks/bench_robustness.py --quick --out /tmp/r.json   # seconds: proves it runs

Work per FGSM image (forward + input gradient): 2 * (784*500 + 2*500*500 + 500*10)
multiply-adds twice, ~3.6 MFLOP; the full backward adds the weight gradients (~1.8 MFLOP).
RBF and linear forward share the (n, in) x (in, units) GEMM (2 n in units FLOP); the RBF
adds the squared row norms (one pass over x and over the centers) and the
norm/clamp/exp epilogue (one read and write of the output)."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

SIZES = [784, 500, 500, 500, 10]
FGSM_BATCHES = (256, 1024, 4096)


def _fgsm_flops_per_image():
    return 2 * 2 * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))


# ---- workers (each in a fresh process) ------------------------------------------------------------
def fgsm_worker(payload):
    """Adversarial images per second of one contender: "<path>@<batch size>"."""
    import numpy as np

    import layerwise as lw
    from layerwise import adversarial

    H.set_worker_threads(payload["threads"])
    path, bs = payload["contender"].split("@")
    n, bs = payload["images"], int(bs)
    rng = np.random.default_rng(0)
    X = rng.uniform(0.0, 1.0, size=(n, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], size=n).astype(np.int32)
    net = lw.nn.mlp(SIZES, activation="sigmoid", seed=0)
    if path == "input_grad_only":
        def attack():
            adversarial.fgsm(net, X, y, 0.1, batch_size=bs)
    else:  # the full backward, parameter gradients included: what fgsm ran before
        loss_fn = lw.nn.get_loss("softmax_cross_entropy")

        def attack():
            out_adv = np.empty_like(X)
            for s in range(0, n, bs):
                xb, yb = X[s:s + bs], y[s:s + bs]
                _, dout = loss_fn(net.forward(xb), yb)
                dx = net.backward(dout, input_grad=True)
                np.clip(xb + np.float32(0.1) * np.sign(dx), 0.0, 1.0, out=out_adv[s:s + bs])
    sec = H.seconds_per_call(attack, payload["min_seconds"], payload["samples"])
    return {"seconds": sec, "images_per_s": n / sec, "gflops": n * _fgsm_flops_per_image() / sec / 1e9}


def forward_worker(payload):
    """Seconds per call of the contender (rbf_forward or linear_forward) at (n, in) -> units, float32."""
    import numpy as np

    from layerwise import ops

    H.set_worker_threads(payload["threads"])
    n, d, u = payload["n"], payload["in"], payload["units"]
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 1.0, size=(n, d)).astype(np.float32)
    w = rng.uniform(0.0, 1.0, size=(u, d)).astype(np.float32)  # weights, or centers
    out = np.empty((n, u), np.float32)
    if payload["contender"] == "rbf_forward":
        gamma = np.full(u, 1.0 / d, np.float32)

        def call():
            ops.rbf_forward(x, w, gamma, out=out)
    else:
        b = np.zeros(u, np.float32)

        def call():
            ops.linear_forward(x, w, b, activation="sigmoid", out=out)
    sec = H.seconds_per_call(call, payload["min_seconds"], payload["samples"])
    return {"seconds": sec, "gflops": 2.0 * n * d * u / sec / 1e9}


# ---- the run -----------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and short samples (proves the script runs)")
    ap.add_argument("--threads", type=int, default=H.DEFAULT_THREADS)
    ap.add_argument("--repeats", type=int, default=None, help="processes per contender (default 5, quick 1)")
    ap.add_argument("--out", default=os.path.join(H.HERE, "results_robustness.json"))
    args = ap.parse_args(argv)
    quick = args.quick
    repeats = args.repeats or (1 if quick else 5)
    timing = {"min_seconds": 0.05 if quick else 1.0, "samples": 2 if quick else 5}
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    machine = H.machine_record(args.threads, {"layerwise": {}}, with_torch=False, quick=quick)

    images = 512 if quick else 10240
    batches = (64, 256) if quick else FGSM_BATCHES
    contenders = {f"input_grad_only@{bs}": {} for bs in batches}
    contenders[f"full_backward@{batches[-1]}"] = {}
    log(f"fgsm: {', '.join(contenders)}")
    runs = H.alternate(__file__, "fgsm_worker", contenders, dict(timing, images=images), repeats, args.threads,
                       log=log)
    fgsm = {name: {"images_per_s": H.spread([r["images_per_s"] for r in rs]),
                   "gflops": H.spread([r["gflops"] for r in rs])} for name, rs in runs.items()}

    shape = dict(n=64, units=50, **{"in": 40}) if quick else dict(n=1024, units=1000, **{"in": 784})
    log(f"rbf_forward vs linear_forward at {shape}")
    fw = H.alternate(__file__, "forward_worker",
                     {"rbf_forward": {}, "linear_forward": {}}, dict(timing, **shape), repeats, args.threads,
                     log=log)
    rbf_sec = [r["seconds"] for r in fw["rbf_forward"]]
    lin_sec = [r["seconds"] for r in fw["linear_forward"]]
    ratios = [r / l for r, l in zip(rbf_sec, lin_sec)]  # repeat by repeat: neighbours in time
    result = {
        "machine": machine,
        "fgsm": {"net": SIZES, "images": images, "flops_per_image": _fgsm_flops_per_image(), "runs": fgsm},
        "rbf_vs_linear": {"shape": shape, "rbf_seconds": H.spread(rbf_sec), "linear_seconds": H.spread(lin_sec),
                          "ratio": H.spread(ratios)},
        "targets": {"fgsm_images_per_s": 5000, "rbf_over_linear": 1.3},
    }
    H.write_json(args.out, result)
    for line in H.machine_lines(machine):
        print(line)
    print(f"\nFGSM, {'-'.join(map(str, SIZES))} sigmoid net, {images} images, {args.threads} threads "
          f"(target >= 5,000 img/s):")
    for name, r in fgsm.items():
        print(f"  {name:<24s} {r['images_per_s']['median']:9.0f} img/s  ({r['gflops']['median']:.1f} GFLOP/s)")
    print(f"\nrbf_forward / linear_forward at n={shape['n']} in={shape['in']} units={shape['units']} "
          f"(target <= 1.3): {statistics.median(ratios):.3f}  "
          f"(rbf {statistics.median(rbf_sec) * 1e3:.2f} ms, linear {statistics.median(lin_sec) * 1e3:.2f} ms)")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
