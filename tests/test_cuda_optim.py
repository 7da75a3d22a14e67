"""test_cuda_optim.py -- the optimizer kernels (csrc/cuda/optimizer.cu) on CuPy arrays
against the same calls on NumPy arrays (the CPU backend), on the same inputs:
ops.optimizer_step for every mode and branch over several steps (contiguous and
row-strided), ops.linear_backward_update, and the SGD entry points that now run
through the same kernels.

Skipped as a whole when CuPy is missing, when layerwise was built without CUDA,
or when no GPU/driver is usable. Tolerances: float64 rtol 1e-12, float32 rtol
2e-5 (nvcc contracts a*b+c into FMA and uses its own sqrt/division rounding
paths, g++ may not; errors of a few ulp per step accumulate over the steps); the
fused layer update adds the dw reduction (float accumulation in a different
order): rtol 1e-4 for float32.
"""
import numpy as np
import pytest

import layerwise
from layerwise import ops

try:
    import cupy as cp
except Exception as e:  # noqa: BLE001
    pytest.skip(f"CuPy is not importable ({e}); pip install cupy-cuda13x", allow_module_level=True)


def _cupy_gpus():
    try:
        return cp.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


if not layerwise._core.cuda_compiled():
    pytest.skip("layerwise was built without the CUDA backend (LAYERWISE_CUDA=OFF or no nvcc)",
                allow_module_level=True)
if layerwise._core.cuda_device_count() == 0 or _cupy_gpus() == 0:
    pytest.skip("no usable CUDA GPU or driver (cuda_device_count() == 0)", allow_module_level=True)

from test_optim import CONFIGS, full_hyper  # noqa: E402


def _states(mode, hyper, shape, dtype, xp, ld=None):
    h = full_hyper(mode, hyper)
    fill = h["initial_accumulator_value"] if mode == "adagrad" else 0.0
    out = []
    for _ in range(ops.optimizer_state_count(mode, **hyper)):
        if ld is None:
            out.append(xp.full(shape, fill, dtype=dtype))
        else:
            out.append(xp.full((shape[0], ld), fill, dtype=dtype)[:, :shape[1]])
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,strided", [((1, 1), False), ((7, 13), True), ((33, 1000), False)])
@pytest.mark.parametrize("mode,hyper", CONFIGS, ids=[f"{m}-{h}" for m, h in CONFIGS])
def test_optimizer_step_matches_cpu(mode, hyper, shape, strided, dtype):
    rng = np.random.default_rng(0)
    ld = shape[1] + 5 if strided else None
    p = rng.standard_normal((shape[0], ld or shape[1])).astype(dtype)[:, :shape[1]]
    pg = cp.asarray(np.ascontiguousarray(p)) if not strided else cp.asarray(p.base)[:, :shape[1]]
    s, sg = _states(mode, hyper, shape, dtype, np, ld), _states(mode, hyper, shape, dtype, cp, ld)
    for t in range(1, 11):
        g = rng.standard_normal(shape).astype(dtype)
        gb = np.zeros((shape[0], ld or shape[1]), dtype=dtype)
        gb[:, :shape[1]] = g
        gv, ggv = gb[:, :shape[1]], cp.asarray(gb)[:, :shape[1]]
        ops.optimizer_step(p, gv, s, mode=mode, step=t, **hyper)
        ops.optimizer_step(pg, ggv, sg, mode=mode, step=t, **hyper)
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(cp.asnumpy(pg), p, rtol=rtol, atol=rtol)
    for a, b in zip(sg, s):
        np.testing.assert_allclose(cp.asnumpy(a), b, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode,hyper", CONFIGS, ids=[f"{m}-{h}" for m, h in CONFIGS])
def test_linear_backward_update_matches_cpu(mode, hyper, dtype):
    rng = np.random.default_rng(1)
    n, fin, fout = 17, 130, 33
    dy = rng.standard_normal((n, fout)).astype(dtype)
    x = rng.standard_normal((n, fin)).astype(dtype)
    w = rng.standard_normal((fout, fin)).astype(dtype)
    b = rng.standard_normal(fout).astype(dtype)
    wg, bg = cp.asarray(w), cp.asarray(b)
    ws, bs = _states(mode, hyper, w.shape, dtype, np), [a[0] for a in _states(mode, hyper, (1, fout), dtype, np)]
    wsg, bsg = _states(mode, hyper, w.shape, dtype, cp), [a[0] for a in _states(mode, hyper, (1, fout), dtype, cp)]
    for t in (1, 2, 3):
        dx = ops.linear_backward_update(dy, x, w, b, weight_state=ws, bias_state=bs, mode=mode, step=t, dx=True,
                                        **hyper)
        dxg = ops.linear_backward_update(cp.asarray(dy), cp.asarray(x), wg, bg, weight_state=wsg, bias_state=bsg,
                                         mode=mode, step=t, dx=True, **hyper)
    rtol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(cp.asnumpy(dxg), dx, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(cp.asnumpy(wg), w, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(cp.asnumpy(bg), b, rtol=rtol, atol=rtol)
    for a, c in zip(wsg + bsg, ws + bs):
        np.testing.assert_allclose(cp.asnumpy(a), c, rtol=rtol, atol=rtol)
