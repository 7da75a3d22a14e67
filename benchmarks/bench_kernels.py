#!/usr/bin/env python3
"""bench_kernels.py -- the CPU kernels of layerwise.ops against NumPy and PyTorch,
each contender in its own process, with the issue's targets judged per row.

    python benchmarks/bench_kernels.py [--threads 2] [--repeats 7] [--json PATH]
                                       [--isa avx2 | --both-isas] [--quick]

How the numbers are made (benchmarks/_harness.py has the reasons):
  - every contender (layerwise, numpy, torch when installed; layerwise[avx2]
    with --isa avx2 or --both-isas on an AVX-512 host) runs all cases in a
    fresh Python process of its own; the processes take turns, A B C A B C ...,
    `--repeats` times;
  - in a process, each case is warmed up once and timed as the median of a few
    samples of back-to-back calls lasting >= --min-time each;
  - per case, the table shows the median over repeats and the spread (min-max);
    ratios are medians over medians;
  - every library runs on --threads threads (default 2), set before import;
  - the machine record (CPU model, caches, ISA, measured FMA peak and copy
    bandwidth on the same threads, per ISA variant) is printed and stored with
    the rows.

Rows and targets (issue 13; benchmarks, not tests):
  - GEMM: forward identity and sigmoid, backward data (dy W) and weights
    (dy^T x plus the bias sum), at batch 10, 32 and 128 for 784->1000 and
    1000->1000, plus 2048^3: layerwise >= NumPy and >= PyTorch, and at batch 10
    >= 1.5x NumPy. Linear layers allocate their output, like NumPy's `@`.
  - 2048^3 forward identity >= 85 % of the measured FMA peak (all threads).
  - elementwise (sigmoid forward/backward, softmax, SGD momentum, and the
    Adam, AdamW, RMSprop and Adagrad steps when layerwise.ops has optimizer_step), all float32 into
    preallocated outputs or in place: >= 80 % of the measured copy bandwidth,
    counting the bytes the op must read and write once.
  - every optimizer step (SGD momentum included) >= 2x torch.optim's foreach
    implementation on the same 4M floats.

--json PATH writes {"benchmark", "machine" (see _harness.machine_record),
"settings", "rows": [{"id", "kind", "op", "unit", "batch", "seconds": {contender:
{median, min, max, q1, q3, n}}, "rate": {contender: {median, min, max}},
"ratios": {"layerwise/numpy": x, ...}, "errors"}], "targets": [{"target", "row",
"variant", "value", "need", "pass"}]}.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

GEMM_OPS = ("fwd_identity", "fwd_sigmoid", "bwd_data", "bwd_weights")
GEMM_LAYERS = ((784, 1000), (1000, 1000))
GEMM_BATCHES = (10, 32, 128)
SQUARE = 2048
ELEMENTS = 4 * 1024 * 1024
SOFTMAX_SHAPE = (1024, 1000)
LR, MOMENTUM = 0.01, 0.9

# float32 bytes each op must move per element: every input read once, every
# output written once (in-place buffers count as read and written).
BYTES_PER_ELEMENT = {
    "act_fwd_sigmoid": 8,    # x -> y
    "act_bwd_sigmoid": 12,   # y, dy -> dx
    "softmax": 8,            # x -> y
    "sgd_momentum": 20,      # p, g, v -> p, v
    "adam": 28,              # p, g, m, v -> p, m, v
    "adamw": 28,             # p, g, m, v -> p, m, v
    "rmsprop": 20,           # p, g, sq -> p, sq
    "adagrad": 20,           # p, g, sum -> p, sum
}
OPTIMIZERS = ("sgd_momentum", "adam", "adamw", "rmsprop", "adagrad")


# ---- the cases ---------------------------------------------------------------------------------
def make_cases(quick, with_optimizers):
    """The case list every worker gets (plain dicts: they travel as JSON)."""
    if quick:  # tiny shapes for the tests: the machinery, not the speed
        layers, batches, square, n = ((48, 40),), (10, 32), 96, 64 * 1024
        softmax_shape = (64, 100)
    else:
        layers, batches, square, n = GEMM_LAYERS, GEMM_BATCHES, SQUARE, ELEMENTS
        softmax_shape = SOFTMAX_SHAPE
    cases = []
    for (i, o) in layers:
        for b in batches:
            for op in GEMM_OPS:
                cases.append({"kind": "gemm", "op": op, "n": b, "in": i, "out": o})
    for op in GEMM_OPS:
        cases.append({"kind": "gemm", "op": op, "n": square, "in": square, "out": square, "square": True})
    for op in ("act_fwd_sigmoid", "act_bwd_sigmoid"):
        cases.append({"kind": "elementwise", "op": op, "elements": n})
    r, c = softmax_shape
    cases.append({"kind": "elementwise", "op": "softmax", "rows": r, "cols": c, "elements": r * c})
    for op in OPTIMIZERS:
        if op == "sgd_momentum" or with_optimizers:
            cases.append({"kind": "optimizer", "op": op, "elements": n})
    for case in cases:
        case["id"] = case_id(case)
    return cases


def case_id(case):
    if case["kind"] == "gemm":
        return f"{case['op']} {case['n']}x{case['in']}->{case['out']}"
    if case["op"] == "softmax":
        return f"softmax {case['rows']}x{case['cols']}"
    return f"{case['op']} {case['elements']}"


def case_amount(case):
    """(amount, unit): GFLOP per call for GEMMs, GB per call otherwise."""
    if case["kind"] == "gemm":
        return 2.0 * case["n"] * case["in"] * case["out"] / 1e9, "GFLOP/s"
    return BYTES_PER_ELEMENT[case["op"]] * case["elements"] / 1e9, "GB/s"


def case_data(case):
    """The float32 inputs of a case, the same in every contender (seeded by the case)."""
    import zlib

    import numpy as np

    rng = np.random.default_rng(zlib.crc32(case["id"].encode()))
    f32 = np.float32
    if case["kind"] == "gemm":
        n, i, o = case["n"], case["in"], case["out"]
        return {"x": rng.standard_normal((n, i), dtype=f32),
                "w": rng.standard_normal((o, i), dtype=f32) / f32(np.sqrt(i)),
                "b": rng.standard_normal(o, dtype=f32),
                "dy": rng.standard_normal((n, o), dtype=f32)}
    if case["op"] == "softmax":
        return {"x": rng.standard_normal((case["rows"], case["cols"]), dtype=f32)}
    shape = (1024, case["elements"] // 1024)
    x = rng.standard_normal(shape, dtype=f32)
    return {"x": x, "y": (1 / (1 + np.exp(-x))).astype(f32), "dy": rng.standard_normal(shape, dtype=f32),
            "p": rng.standard_normal(shape, dtype=f32), "g": rng.standard_normal(shape, dtype=f32)}


# ---- contenders: one function per library, returning a zero-argument call ----------------------
def layerwise_call(case, d):
    import numpy as np

    from layerwise import ops

    op = case["op"]
    if op == "fwd_identity":
        return lambda: ops.linear_forward(d["x"], d["w"], d["b"])
    if op == "fwd_sigmoid":
        return lambda: ops.linear_forward(d["x"], d["w"], d["b"], activation="sigmoid")
    if op == "bwd_data":
        return lambda: ops.linear_backward_data(d["dy"], d["w"])
    if op == "bwd_weights":
        return lambda: ops.linear_backward_weights(d["dy"], d["x"])
    if op == "act_fwd_sigmoid":
        y = np.empty_like(d["x"])
        return lambda: ops.activation_forward(d["x"], "sigmoid", out=y)
    if op == "act_bwd_sigmoid":
        dx = np.empty_like(d["y"])
        return lambda: ops.activation_backward(d["y"], d["dy"], "sigmoid", out=dx)
    if op == "softmax":
        y = np.empty_like(d["x"])
        return lambda: ops.softmax(d["x"], out=y)
    if op == "sgd_momentum":
        p, g, v = d["p"], d["g"], np.zeros_like(d["p"])
        return lambda: ops.sgd_update(p, g, lr=LR, momentum=MOMENTUM, velocity=v)
    return layerwise_optimizer_call(op, d)


def layerwise_optimizer_call(op, d):
    """Adam / AdamW / RMSprop / Adagrad through layerwise.ops.optimizer_step (the rows
    exist only when layerwise.ops has it), with torch.optim's defaults like the
    other contenders, zero-filled state, and step number 1 on every call."""
    import numpy as np

    from layerwise import ops

    p, g = d["p"], d["g"]
    state = [np.zeros_like(p) for _ in range(2 if op in ("adam", "adamw") else 1)]
    return lambda: ops.optimizer_step(p, g, state, mode=op, step=1)


def numpy_call(case, d):
    import numpy as np

    op = case["op"]
    x, w, b, dy = d.get("x"), d.get("w"), d.get("b"), d.get("dy")
    if op == "fwd_identity":
        return lambda: x @ w.T + b
    if op == "fwd_sigmoid":
        return lambda: 1 / (1 + np.exp(-(x @ w.T + b)))
    if op == "bwd_data":
        return lambda: dy @ w
    if op == "bwd_weights":
        return lambda: (dy.T @ x, dy.sum(0))
    if op == "act_fwd_sigmoid":
        y = np.empty_like(x)

        def sigmoid():
            np.negative(x, out=y)
            np.exp(y, out=y)
            y.__iadd__(1)
            np.reciprocal(y, out=y)
        return sigmoid
    if op == "act_bwd_sigmoid":
        ys, dx = d["y"], np.empty_like(d["y"])

        def sigmoid_backward():
            np.subtract(1, ys, out=dx)
            dx.__imul__(ys)
            dx.__imul__(dy)
        return sigmoid_backward
    if op == "softmax":
        y = np.empty_like(x)

        def softmax():
            np.subtract(x, x.max(1, keepdims=True), out=y)
            np.exp(y, out=y)
            y.__itruediv__(y.sum(1, keepdims=True))
        return softmax
    p, g = d["p"], d["g"]
    if op == "sgd_momentum":
        v = np.zeros_like(p)

        def sgd():
            v.__imul__(MOMENTUM)
            v.__iadd__(g)
            p.__isub__(LR * v)
        return sgd
    if op in ("adam", "adamw"):  # torch.optim's defaults, step 1's bias correction
        m, v, b1, b2, eps = np.zeros_like(p), np.zeros_like(p), 0.9, 0.999, 1e-8
        decay = 1 - 1e-3 * 1e-2 if op == "adamw" else None  # AdamW: lr 1e-3, weight_decay 1e-2

        def adam():
            if decay is not None:
                p.__imul__(decay)
            m.__imul__(b1)
            m.__iadd__((1 - b1) * g)
            v.__imul__(b2)
            v.__iadd__((1 - b2) * g * g)
            p.__isub__((1e-3 / (1 - b1)) * m / (np.sqrt(v) / np.sqrt(1 - b2) + eps))
        return adam
    if op == "rmsprop":
        sq, alpha, eps = np.zeros_like(p), 0.99, 1e-8

        def rmsprop():
            sq.__imul__(alpha)
            sq.__iadd__((1 - alpha) * g * g)
            p.__isub__(1e-2 * g / (np.sqrt(sq) + eps))
        return rmsprop
    if op == "adagrad":
        acc, eps = np.zeros_like(p), 1e-10

        def adagrad():
            acc.__iadd__(g * g)
            p.__isub__(1e-2 * g / (np.sqrt(acc) + eps))
        return adagrad
    raise ValueError(f"numpy: no case {op}")


def torch_call(case, d):
    import torch
    import torch.nn.functional as F

    op = case["op"]
    t = {k: torch.from_numpy(v) for k, v in d.items()}
    if op == "fwd_identity":
        return lambda: F.linear(t["x"], t["w"], t["b"])
    if op == "fwd_sigmoid":
        return lambda: torch.sigmoid(F.linear(t["x"], t["w"], t["b"]))
    if op == "bwd_data":
        return lambda: t["dy"] @ t["w"]
    if op == "bwd_weights":
        return lambda: (t["dy"].T @ t["x"], t["dy"].sum(0))
    if op == "act_fwd_sigmoid":
        y = torch.empty_like(t["x"])
        return lambda: torch.sigmoid(t["x"], out=y)
    if op == "act_bwd_sigmoid":
        dx = torch.empty_like(t["y"])
        return lambda: torch.ops.aten.sigmoid_backward.grad_input(t["dy"], t["y"], grad_input=dx)
    if op == "softmax":
        return lambda: torch.softmax(t["x"], 1)
    # torch.optim with foreach=True (its multi-tensor implementation), on one 4M tensor.
    param = t["p"].clone().requires_grad_(False)
    param.grad = t["g"]
    make = {"sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=LR, momentum=MOMENTUM, foreach=True),
            "adam": lambda ps: torch.optim.Adam(ps, foreach=True),
            "adamw": lambda ps: torch.optim.AdamW(ps, foreach=True),
            "rmsprop": lambda ps: torch.optim.RMSprop(ps, foreach=True),
            "adagrad": lambda ps: torch.optim.Adagrad(ps, foreach=True)}[op]
    opt = make([param])

    def step():
        with torch.no_grad():
            opt.step()
    return step


CALLS = {"layerwise": layerwise_call, "numpy": numpy_call, "torch": torch_call}


def kernel_worker(payload):
    """Worker: times every case for one contender; {"seconds": {id: s}, "errors": {id: msg}}."""
    contender = payload["contender"]
    library = "layerwise" if contender.startswith("layerwise") else contender
    H.set_worker_threads(payload["threads"], with_torch=library == "torch")
    build = CALLS[library]
    seconds, errors = {}, {}
    for case in payload["cases"]:
        try:
            fn = build(case, case_data(case))
            seconds[case["id"]] = H.seconds_per_call(fn, payload["min_time"], payload["samples"])
        except Exception as e:  # one failing case must not lose the others
            errors[case["id"]] = f"{type(e).__name__}: {e}"
    out = {"seconds": seconds, "errors": errors}
    if library == "layerwise":
        import layerwise

        out["isa"] = layerwise.backend_info()["isa"]
    return out


# ---- rows and verdicts --------------------------------------------------------------------------
def build_rows(cases, runs):
    """Per case: each contender's spread of seconds and rate, and the median ratios."""
    rows = []
    for case in cases:
        amount, unit = case_amount(case)
        row = {"id": case["id"], "kind": case["kind"], "op": case["op"], "unit": unit,
               "batch": case.get("n"), "square": bool(case.get("square")), "seconds": {}, "rate": {},
               "errors": {}}
        for name, reps in runs.items():
            s = H.spread([r["seconds"].get(case["id"]) for r in reps])
            errs = {r["errors"][case["id"]] for r in reps if case["id"] in r["errors"]}
            if errs:
                row["errors"][name] = sorted(errs)[0]
            if s is not None:
                row["seconds"][name] = s
                row["rate"][name] = {"median": amount / s["median"], "min": amount / s["max"],
                                     "max": amount / s["min"]}
        row["ratios"] = {}
        for name in runs:
            if not name.startswith("layerwise") or name not in row["seconds"]:
                continue
            mine = row["seconds"][name]["median"]
            for other in ("numpy", "torch"):
                if other in row["seconds"]:
                    row["ratios"][f"{name}/{other}"] = H.ratio(row["seconds"][other]["median"], mine)
        rows.append(row)
    return rows


def verdicts(rows, machine, variants):
    """The issue's targets, per layerwise variant: [{target, row, variant, value, need, pass}]."""
    out = []

    def add(target, row, variant, value, need):
        out.append({"target": target, "row": row["id"], "variant": variant, "value": value, "need": need,
                    "pass": value is not None and value >= need})

    for variant in variants:
        probe = machine["probes"][variant]
        for row in rows:
            if variant not in row["rate"]:
                continue
            rate = row["rate"][variant]["median"]
            r_np, r_t = row["ratios"].get(f"{variant}/numpy"), row["ratios"].get(f"{variant}/torch")
            if row["kind"] == "gemm":
                add(">= 1.5x numpy" if row["batch"] == 10 else ">= numpy", row, variant, r_np,
                    1.5 if row["batch"] == 10 else 1.0)
                if f"{variant}/torch" in row["ratios"]:
                    add(">= torch", row, variant, r_t, 1.0)
                if row["op"] == "fwd_identity" and row["square"]:
                    add(">= 85% FMA peak", row, variant, H.ratio(rate, probe["fma_gflops_all_threads"]), 0.85)
            else:
                add(">= 80% copy bandwidth", row, variant, H.ratio(rate, probe["copy_gbps_all_threads"]), 0.80)
                if row["kind"] == "optimizer" and f"{variant}/torch" in row["ratios"]:
                    add(">= 2x torch foreach", row, variant, r_t, 2.0)
    return out


def markdown(rows, checks, machine, runs_meta):
    names = runs_meta["contenders"]
    lines = [f"bench_kernels: {runs_meta['repeats']} repeats, contenders alternated, each in its own "
             f"process; median (min-max) over repeats", ""]
    lines += H.machine_lines(machine) + [""]
    head = "| row | unit | " + " | ".join(names) + " | " + " | ".join(
        k for k in ratio_keys(rows)) + " |"
    lines += [head, "|" + "---|" * (2 + len(names) + len(ratio_keys(rows)))]
    for row in rows:
        cells = []
        for n in names:
            r = row["rate"].get(n)
            cells.append(f"{r['median']:.1f} ({r['min']:.1f}-{r['max']:.1f})" if r else
                         ("error" if n in row["errors"] else "-"))
        ratios = [f"{row['ratios'][k]:.2f}x" if row["ratios"].get(k) else "-" for k in ratio_keys(rows)]
        lines.append(f"| {row['id']} | {row['unit']} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    lines += ["", "| target | row | variant | value | need | verdict |", "|---|---|---|---|---|---|"]
    for c in checks:
        v = "-" if c["value"] is None else f"{c['value']:.2f}"
        lines.append(f"| {c['target']} | {c['row']} | {c['variant']} | {v} | {c['need']} | "
                     f"{'PASS' if c['pass'] else 'MISS'} |")
    passed = sum(c["pass"] for c in checks)
    lines += ["", f"{passed} of {len(checks)} targets met."]
    errors = [(row["id"], n, e) for row in rows for n, e in row["errors"].items()]
    if errors:
        lines += ["", "Errors:"] + [f"- {i} [{n}]: {e}" for i, n, e in errors]
    return "\n".join(lines)


def ratio_keys(rows):
    keys = []
    for row in rows:
        for k in row["ratios"]:
            if k not in keys:
                keys.append(k)
    return keys


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=H.DEFAULT_THREADS,
                    help=f"threads for every library (default {H.DEFAULT_THREADS})")
    ap.add_argument("--repeats", type=int, default=0, help="processes per contender (default 7, --quick 2)")
    ap.add_argument("--min-time", type=float, default=0.0, help="seconds per timed sample (default 0.02)")
    ap.add_argument("--samples", type=int, default=3, help="timed samples per case in each process")
    ap.add_argument("--isa", choices=("generic", "avx2", "avx512"),
                    help="force LAYERWISE_ISA for the layerwise worker")
    ap.add_argument("--both-isas", action="store_true",
                    help="run layerwise with its own ISA and with AVX2 forced (on AVX-512 hosts)")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when installed")
    ap.add_argument("--quick", action="store_true", help="tiny shapes and few repeats (for the tests)")
    ap.add_argument("--json", metavar="PATH", help="also write machine, rows and verdicts as JSON")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    if args.repeats < 0 or args.samples < 1:
        ap.error("--repeats must be >= 0 and --samples >= 1")
    if args.isa and args.both_isas:
        ap.error("--isa and --both-isas exclude each other")

    from layerwise import ops

    repeats = args.repeats or (2 if args.quick else 7)
    min_time = args.min_time or (0.002 if args.quick else 0.02)
    variants = H.isa_variants(args.isa, args.both_isas)
    contenders = dict(variants)
    contenders["numpy"] = {}
    if not args.no_torch and importlib.util.find_spec("torch") is not None:
        contenders["torch"] = {}
    log = (lambda m: print(m, file=sys.stderr, flush=True))
    machine = H.machine_record(args.threads, variants, "torch" in contenders, quick=args.quick)
    cases = make_cases(args.quick, with_optimizers=hasattr(ops, "optimizer_step"))
    runs = H.alternate(__file__, "kernel_worker", contenders,
                       {"cases": cases, "min_time": min_time, "samples": args.samples},
                       repeats, args.threads, log=log)
    for name in variants:
        isas = {r.get("isa") for r in runs[name]}
        machine["probes"][name]["kernel_isa"] = sorted(isas)[0] if len(isas) == 1 else sorted(isas)
    rows = build_rows(cases, runs)
    checks = verdicts(rows, machine, list(variants))
    meta = {"contenders": list(contenders), "repeats": repeats, "min_time": min_time, "samples": args.samples,
            "quick": args.quick}
    print(markdown(rows, checks, machine, meta))
    if args.json:
        H.write_json(args.json, {"benchmark": "kernels", "machine": machine, "settings": meta, "rows": rows,
                                 "targets": checks})
    return rows, checks


if __name__ == "__main__":
    main()
