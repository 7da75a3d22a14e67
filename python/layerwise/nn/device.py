"""Array-module, device and dtype helpers shared by the nn modules.

Arrays are NumPy (device "cpu") or CuPy (device "cuda"); these helpers tell them
apart and move data between them without importing CuPy when it is absent."""
from __future__ import annotations

import numpy as np

from .. import ops

DTYPES = {"float32": np.float32, "float64": np.float64}


def _cupy():
    return ops._cupy


def array_module(a):
    """numpy or cupy, whichever ``a`` belongs to."""
    cp = _cupy()
    if cp is not None and isinstance(a, cp.ndarray):
        return cp
    return np


def device_of(a) -> str:
    """"cuda" for a CuPy array, "cpu" otherwise."""
    return "cuda" if array_module(a) is not np else "cpu"


def to_device(a, device):
    """``a`` as an array on ``device`` ("cpu" or "cuda"); no copy when it is there already."""
    device = check_device(device)
    if device == "cpu":
        return a if isinstance(a, np.ndarray) else _cupy().asnumpy(a)
    return _cupy().asarray(a)


def check_device(device):
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and _cupy() is None:
        raise RuntimeError("device: 'cuda' needs CuPy and a CUDA build of layerwise; neither is available")
    return device


def check_dtype(dtype):
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    return name
