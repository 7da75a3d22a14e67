"""Autotuning of the CPU GEMM's cache blocking (``layerwise tune`` / ``lw.tune()``).

The GEMM derives its cache blocks (mc, kc, nc) from the caches the CPU reports
(the BLIS analytical model, csrc/cpu/cpuinfo.cpp). ``tune()`` times a few
candidate blockings around that point on the shapes training uses and keeps the
fastest per shape class:

- ``batch``: a training batch of 128 (forward 128x784 -> 1000 and the weight
  gradient dy^T x over the batch), the packed path's batch class;
- ``square``: a large square product (1024^3);
- batches of 1-32 take the unblocked small-batch paths, which have no blocking
  to tune; they are listed in the file as such.

The winners (float32; float64 keeps the analytical blocking) are written
atomically as JSON to ``$XDG_CACHE_HOME/layerwise/tune-<cpu model>-<isa>.json``
(``~/.cache`` when XDG_CACHE_HOME is unset), and ``load()`` (run when layerwise is
imported) applies the file for this CPU and ISA when present.
LAYERWISE_GEMM_BLOCKS, when set, overrides both.
"""
from __future__ import annotations

import json
import os
import re
import sys
import types
import time
import warnings
from typing import Optional

import numpy as np

from . import _core
from .atomic import write_json_atomic

FORMAT = "layerwise-tune-1"
_SHAPES = {"batch": _core.GEMM_SHAPES["batch"], "square": _core.GEMM_SHAPES["square"]}


def cache_path(info: Optional[dict] = None) -> str:
    """Where the tuning file for this CPU model and ISA lives."""
    info = info or _core.cpu_info()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    model = re.sub(r"[^a-z0-9]+", "-", (info["model"] or "unknown-cpu").lower()).strip("-") or "unknown-cpu"
    return os.path.join(base, "layerwise", f"tune-{model}-{info['isa']}.json")


def _candidates(b: dict) -> list:
    """The analytical (mc, kc, nc) and a few neighbours: kc and mc halved and
    raised by half, and a narrower B block."""
    mr, nr = b["mr"], b["nr"]

    def fit(mc, kc, nc):
        mc = max(mr, min(16384, -(-int(mc) // mr) * mr))
        kc = max(32, min(8192, int(kc) // 8 * 8))
        nc = max(nr, min(65536, -(-int(nc) // nr) * nr))
        return (mc, kc, nc)

    mc, kc, nc = b["mc"], b["kc"], b["nc"]
    out = []
    for c in (fit(mc, kc, nc), fit(mc, kc / 2, nc), fit(mc, kc * 1.5, nc), fit(mc / 2, kc, nc),
              fit(mc * 2, kc, nc), fit(mc, kc, nc / 4)):
        if c not in out:
            out.append(c)
    return out


def _workloads(rng):
    """name -> (shape class, callable running one repetition) on float32 data."""
    from . import ops

    f32 = np.float32
    x = rng.standard_normal((128, 784)).astype(f32)
    w = rng.standard_normal((1000, 784)).astype(f32)
    dy = rng.standard_normal((128, 1000)).astype(f32)
    a = rng.standard_normal((1024, 1024)).astype(f32)
    bsq = rng.standard_normal((1024, 1024)).astype(f32)
    y = np.empty((128, 1000), f32)
    dw = np.empty((1000, 784), f32)
    c = np.empty((1024, 1024), f32)

    def batch():
        ops.linear_forward(x, w, activation="sigmoid", out=y)
        ops.linear_backward_weights(dy, x, dweight=dw, bias=False)

    def square():
        ops.linear_forward(a, bsq, out=c)

    return {"batch": batch, "square": square}


def tune(seconds: float = 60.0, *, write: bool = True, path: Optional[str] = None) -> dict:
    """Times candidate blockings for about ``seconds`` and applies the winners.

    Returns the record it writes (see the module docstring); with ``write=False``
    nothing is written. Raises ValueError for a bad ``seconds`` and RuntimeError
    when there is nothing to tune (generic ISA, or LAYERWISE_GEMM_BLOCKS set)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not np.isfinite(seconds) \
            or seconds <= 0 or seconds > 3600:
        raise ValueError(f"seconds: must be a number in (0, 3600], got {seconds!r}")
    if os.environ.get("LAYERWISE_GEMM_BLOCKS"):
        raise RuntimeError("LAYERWISE_GEMM_BLOCKS is set and overrides any tuning; unset it to tune")
    info = _core.cpu_info()
    if info["isa"] == "generic":
        raise RuntimeError("the generic ISA runs the reference GEMM, which has no blocking to tune")
    for shape in _SHAPES.values():
        _core.set_gemm_blocking(_core.FLOAT32, shape, None)
    analytical = _core.cpu_info()["gemm_float32"]
    candidates = _candidates(analytical)
    work = _workloads(np.random.default_rng(0))
    deadline = time.perf_counter() + float(seconds)
    per_class = float(seconds) / len(work)
    classes = {}
    for cls, run in work.items():
        shape = _SHAPES[cls]
        times = {c: [] for c in candidates}
        class_end = min(deadline, time.perf_counter() + per_class)
        # Round-robin over the candidates, so a change in machine load hits them all alike.
        rounds = 0
        while rounds < 2 or (time.perf_counter() < class_end and rounds < 50):
            for c in candidates:
                _core.set_gemm_blocking(_core.FLOAT32, shape, c)
                if rounds == 0:
                    run()  # warm-up: packing buffers, page faults
                t0 = time.perf_counter()
                run()
                times[c].append(time.perf_counter() - t0)
            rounds += 1
        medians = {c: float(np.median(v)) for c, v in times.items()}
        best = min(candidates, key=lambda c: medians[c])
        _core.set_gemm_blocking(_core.FLOAT32, shape, best)
        classes[cls] = {
            "mc": best[0], "kc": best[1], "nc": best[2], "median_s": medians[best],
            "analytical_median_s": medians[candidates[0]], "rounds": rounds,
            "candidates": [{"mc": c[0], "kc": c[1], "nc": c[2], "median_s": medians[c]} for c in candidates],
        }
    record = {
        "format": FORMAT,
        "cpu_model": info["model"],
        "isa": info["isa"],
        "caches": {k: info[k] for k in ("l1d_bytes", "l1d_ways", "l2_bytes", "l2_ways", "l3_bytes",
                                        "l3_bytes_per_core")},
        "threads": _threads(),
        "created_unix": time.time(),
        "analytical": {"mc": analytical["mc"], "kc": analytical["kc"], "nc": analytical["nc"]},
        "float32": classes,
        "batch_1_32": "unblocked small-batch paths: no blocking to tune",
    }
    if write:
        _write_atomic(path or cache_path(info), record)
    return record


def _threads() -> int:
    from . import ops

    return ops.get_num_threads()


def _write_atomic(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_json_atomic(path, record)


def _validated(record, info) -> dict:
    """(shape class -> (mc, kc, nc)) from a tuning record, or ValueError."""
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    if record.get("isa") != info["isa"] or record.get("cpu_model") != info["model"]:
        raise ValueError(f"made for {record.get('cpu_model')!r}/{record.get('isa')!r}, "
                         f"this is {info['model']!r}/{info['isa']!r}")
    classes = record.get("float32")
    if not isinstance(classes, dict):
        raise ValueError("no float32 section")
    out = {}
    for cls, entry in classes.items():
        if cls not in _SHAPES:
            raise ValueError(f"unknown shape class {cls!r}")
        try:
            vals = tuple(entry[k] for k in ("mc", "kc", "nc"))
        except (TypeError, KeyError):
            raise ValueError(f"{cls}: needs mc, kc, nc") from None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            raise ValueError(f"{cls}: mc, kc, nc must be integers")
        out[cls] = vals
    return out


def load(path: Optional[str] = None) -> bool:
    """Applies the tuning file for this CPU and ISA when there is one; returns
    whether it did. A file that is unreadable, malformed or made for another CPU
    is ignored with a warning (the analytical blocking stays)."""
    if os.environ.get("LAYERWISE_GEMM_BLOCKS"):
        return False  # overrides any tuning (and is validated where it is used)
    info = _core.cpu_info()
    if info["isa"] == "generic":
        return False
    path = path or cache_path(info)
    if not os.path.isfile(path):
        return False
    try:
        if os.path.getsize(path) > 1 << 20:
            raise ValueError("larger than 1 MiB")
        with open(path) as f:
            blocks = _validated(json.load(f), info)
        for cls, b in blocks.items():
            _core.set_gemm_blocking(_core.FLOAT32, _SHAPES[cls], b)
    except (OSError, ValueError) as e:
        for shape in _SHAPES.values():
            _core.set_gemm_blocking(_core.FLOAT32, shape, None)
        warnings.warn(f"layerwise: ignoring the tuning file {path}: {e}", RuntimeWarning, stacklevel=2)
        return False
    return True


def reset() -> None:
    """Back to the analytical blocking (the tuning file stays)."""
    for shape in _SHAPES.values():
        _core.set_gemm_blocking(_core.FLOAT32, shape, None)


__all__ = ["tune", "load", "reset", "cache_path", "FORMAT"]


class _CallableModule(types.ModuleType):
    """``lw.tune()`` runs tune() while ``lw.tune.load()`` etc. stay reachable."""

    def __call__(self, seconds: float = 60.0, **kwargs) -> dict:
        return tune(seconds, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
