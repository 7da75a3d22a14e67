"""Shared helpers for the layerwise test suite.

Tolerances (documented once, used everywhere): results are compared with a
NumPy float64 reference computed from the same inputs. Inputs are scaled so
that outputs are O(1); a product summing K terms is allowed
    float32: atol = 3e-6 * sqrt(K) + 1e-6, rtol = 1e-5
    float64: atol = 1e-12 * sqrt(K),       rtol = 1e-12
which covers any summation order (blocked, FMA, threaded) at these scales.
Elementwise kernels use K = 1 (float32 sigmoid/tanh/exp are checked to a
few ulp by the same bound).
"""
import math
import os
from pathlib import Path

import numpy as np
import pytest


def tolerances(dtype, k=1):
    if np.dtype(dtype) == np.float32:
        return dict(rtol=1e-5, atol=3e-6 * math.sqrt(k) + 1e-6)
    return dict(rtol=1e-12, atol=1e-12 * math.sqrt(k) + 1e-14)


def assert_close(got, ref, dtype, k=1, err_msg=""):
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), ref, err_msg=err_msg, **tolerances(dtype, k))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def cpu_has(isa):
    """Whether this CPU can run the kernels of one ISA ("generic", "avx2", "avx512")."""
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    need = {"generic": [], "avx2": ["avx2", "fma"], "avx512": ["avx512f", "avx512vl", "avx512bw", "avx512dq"]}
    return all(f" {f}" in flags for f in need[isa])


def mnist_dir():
    """The directory holding the four MNIST files ($LAYERWISE_DATA or its mnist/), or None."""
    from layerwise.datasets import MNIST_FILES

    env = os.environ.get("LAYERWISE_DATA")
    if not env:
        return None
    for d in (Path(env), Path(env) / "mnist"):
        if all((d / (n + ".gz")).is_file() or (d / n).is_file() for n in MNIST_FILES):
            return d
    return None
