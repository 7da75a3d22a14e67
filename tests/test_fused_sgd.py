"""ops.linear_backward_sgd (lwLinearBackwardSgdUpdate) must take exactly the step
the unfused primitives take: dx = dy @ w (old w), then sgd_update of w and b
with dw = dy.T @ x, db = dy.sum(0). Checked at tile edges (rows not a multiple
of the 4-row block, columns not a multiple of the vector width, 1 row / 1
column, row-strided inputs) for every compiled ISA, forced with LAYERWISE_ISA
in a subprocess (the ISA is chosen once per process). Tolerances: conftest.py."""
import os
import subprocess
import sys

import numpy as np
import pytest

import layerwise as lw
from layerwise import ops

from conftest import assert_close, cpu_has

SHAPES = [(1, 1, 1), (1, 7, 5), (3, 16, 4), (10, 33, 9), (10, 784, 13), (32, 65, 31), (129, 100, 3)]
CONFIGS = [  # momentum, nesterov, weight_decay, bias, dx
    (0.0, False, 0.0, True, True),
    (0.9, False, 0.0, True, True),
    (0.9, True, 1e-2, True, False),
    (0.5, False, 1e-3, False, True),
    (0.0, False, 0.1, False, False),
]


def reference(dy, x, w, b, vw, vb, lr, mom, nest, wd):
    """float64 reference of the unfused step; returns (dx, w, b, vw, vb)."""
    dy, x, w = (a.astype(np.float64) for a in (dy, x, w))
    dx = dy @ w
    out = []
    for p, g, v in ((w, dy.T @ x, vw), (b, dy.sum(0), vb)):
        if p is None:
            out += [None, None]
            continue
        p = p.astype(np.float64)
        d = g + wd * p
        if mom:
            v = mom * v.astype(np.float64) + d
            d = d + mom * v if nest else v
        out += [p - lr * d, v]
    return dx, out[0], out[2], out[1], out[3]


def check_all(dtype):
    rng = np.random.default_rng(5)
    for n, i, o in SHAPES:
        for mom, nest, wd, use_b, want_dx in CONFIGS:
            big = rng.standard_normal((n, i + 3)).astype(dtype)
            x = big[:, 2:2 + i]  # row-strided view
            dy = (rng.standard_normal((n, o)) / max(n, 1)).astype(dtype)
            w = (rng.standard_normal((o, i)) / np.sqrt(i)).astype(dtype)
            b = rng.standard_normal(o).astype(dtype) if use_b else None
            vw = rng.standard_normal((o, i)).astype(dtype) if mom else None
            vb = rng.standard_normal(o).astype(dtype) if (mom and use_b) else None
            ref = reference(dy, x, w, b, vw, vb, 0.1, mom, nest, wd)
            dx = ops.linear_backward_sgd(dy, x, w, b, lr=0.1, momentum=mom, weight_velocity=vw, bias_velocity=vb,
                                         weight_decay=wd, nesterov=nest, dx=want_dx)
            tag = f"{np.dtype(dtype).name} n={n} in={i} out={o} mom={mom} nest={nest} wd={wd}"
            if want_dx:
                assert_close(dx, ref[0], dtype, o, err_msg=tag)
            else:
                assert dx is None
            assert_close(w, ref[1], dtype, n, err_msg=tag)
            if use_b:
                assert_close(b, ref[2], dtype, n, err_msg=tag)
            if mom:
                assert_close(vw, ref[3], dtype, n, err_msg=tag)
                if use_b:
                    assert_close(vb, ref[4], dtype, n, err_msg=tag)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_step_matches_unfused(dtype):
    check_all(dtype)


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_each_isa(isa):
    if isa not in lw.backend_info()["isas_compiled"]:
        pytest.skip(f"{isa} kernels not compiled in this build")
    if not cpu_has(isa):
        pytest.skip(f"this CPU cannot run {isa}")
    code = (
        "import sys, numpy as np, layerwise as lw\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        f"assert lw.backend_info()['isa'] == {isa!r}, lw.backend_info()['isa']\n"
        "import test_fused_sgd as t\n"
        "t.check_all(np.float32); t.check_all(np.float64)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "LAYERWISE_ISA": isa},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def test_same_step_as_primitives_in_float32_training_loop():
    """Ten steps of fused training equal ten unfused steps (float32, momentum)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 50)).astype(np.float32)
    w1 = (rng.standard_normal((20, 50)) * 0.1).astype(np.float32)
    b1 = np.zeros(20, np.float32)
    w2, b2 = w1.copy(), b1.copy()
    v1, vb1 = np.zeros_like(w1), np.zeros_like(b1)
    v2, vb2 = np.zeros_like(w2), np.zeros_like(b2)
    for _ in range(10):
        dy = ops.linear_forward(x, w1, b1, activation="sigmoid") - 0.5
        ops.linear_backward_sgd(dy, x, w1, b1, lr=0.05, momentum=0.9, weight_velocity=v1, bias_velocity=vb1)
        dy2 = ops.linear_forward(x, w2, b2, activation="sigmoid") - 0.5
        dw, db = ops.linear_backward_weights(dy2, x)
        ops.sgd_update(w2, dw, lr=0.05, momentum=0.9, velocity=v2)
        ops.sgd_update(b2, db, lr=0.05, momentum=0.9, velocity=vb2)
    np.testing.assert_allclose(w1, w2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b1, b2, rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    dy = np.zeros((2, 3), np.float32)
    x = np.zeros((2, 4), np.float32)
    w = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="velocity"):
        ops.linear_backward_sgd(dy, x, w, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="lr: must be finite"):
        ops.linear_backward_sgd(dy, x, w, lr=float("nan"))
    with pytest.raises(ValueError, match=r"weight: expected shape \(3, 4\)"):
        ops.linear_backward_sgd(dy, x, w.T.copy(), lr=0.1)
    with pytest.raises(ValueError, match="x: has 1 rows but dy has 2"):
        ops.linear_backward_sgd(dy, x[:1], w, lr=0.1)
    with pytest.raises(TypeError, match="weight: dtype float64"):
        ops.linear_backward_sgd(dy, x, w.astype(np.float64), lr=0.1)
    with pytest.raises(ValueError, match="bias: expected shape"):
        ops.linear_backward_sgd(dy, x, w, np.zeros(4, np.float32), lr=0.1)
