"""CPU kernel edge cases for every compiled ISA path (issue #3).

Each ISA is forced with LAYERWISE_ISA in a fresh interpreter (the choice is made
once per process), which runs the check groups below and reports failures; an
ISA the library was not built with, or the CPU lacks, is skipped.

Tolerances (against NumPy float64 references):
  * products: |got - ref| <= tol * sqrt(K) * (|A| @ |B|)_ij + tiny, i.e. relative
    to the sum of absolute terms of each dot product, with tol = 1e-5 (float32:
    a few ulp per term, growing like sqrt(K) for round-to-nearest accumulation)
    and 1e-12 (float64). The activations are 1-Lipschitz, so the same bound holds
    after them; 'threshold' is only compared where |z| exceeds that bound.
  * elementwise float32: 1e-6 relative (sigmoid/tanh within a few ulp) plus
    1e-37 absolute (the AVX2 exp saturates below ~1e-38); float64: 1e-12.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import layerwise
from layerwise import ops, _core

from conftest import cpu_has

ACTS = ("identity", "sigmoid", "tanh", "relu", "threshold")
EDGE = (1, 2, 7, 15, 17, 31, 33, 63, 65, 129)


def act_ref(name, z):
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "sigmoid":
            return 1.0 / (1.0 + np.exp(-z))
        if name == "tanh":
            return np.tanh(z)
        if name == "relu":
            return np.where(np.isnan(z), z, np.maximum(z, 0.0))
        if name == "threshold":
            return (z > 0).astype(np.float64)
    return z


# ---- helpers that reach alpha/beta through the binding (ops always uses 1, 0) ----
def core_linear_forward(x, w, b, act, alpha, beta, out):
    c = ops._Call()
    X, W = c.mat("x", x), c.mat("w", w)
    B = c.vec("b", b, W[1]) if b is not None else (0, 0)
    Y = c.mat("out", out, X[1], W[1], writable=True)
    _core.linear_forward(c.handle(), c.code, alpha, *X, *W, *B, ops._ACT[act], beta, *Y)


def core_linear_backward_data(dy, w, alpha, beta, out):
    c = ops._Call()
    DY, W = c.mat("dy", dy), c.mat("w", w)
    DX = c.mat("out", out, DY[1], W[2], writable=True)
    _core.linear_backward_data(c.handle(), c.code, alpha, *DY, *W, beta, *DX)


def core_activation_forward(x, act, alpha, beta, out):
    c = ops._Call()
    X = c.mat("x", x)
    Y = c.mat("out", out, X[1], X[2], writable=True)
    _core.activation_forward(c.handle(), c.code, ops._ACT[act], alpha, *X, beta, Y[0], Y[3])


def strided(rng, rows, cols, dtype, pad=5):
    """A (rows, cols) view with row stride cols + pad of a wider random array."""
    wide = rng.standard_normal((rows, cols + pad)).astype(dtype)
    return wide[:, :cols]


def check_close(fails, name, got, ref, bound):
    got = np.asarray(got, dtype=np.float64)
    bad = ~(np.abs(got - ref) <= bound)
    bad &= ~(np.isnan(got) & np.isnan(ref)) & ~(got == ref)  # NaN matches NaN, inf matches inf
    if bad.any():
        i = np.unravel_index(np.argmax(bad), bad.shape)
        fails.append(f"{name}: {int(bad.sum())} bad, first at {i}: got {got[i]!r} want {ref[i]!r}"
                     f" (bound {np.broadcast_to(bound, bad.shape)[i]:.3g})")


# ---- check groups (run inside the per-ISA subprocess) ------------------------------
def gemm_shapes():
    rot = lambda s, k: s[k:] + s[:k]
    shapes = list(zip(EDGE, rot(EDGE, 3), rot(EDGE, 6)))
    shapes += list(zip(rot(EDGE, 5), rot(EDGE, 1), EDGE))
    shapes += [(1, 1, 1), (1, 1000, 1), (3, 1, 1000), (1, 1031, 1003), (40, 1031, 1003),
               (129, 520, 65), (300, 33, 1030), (1030, 17, 5), (64, 64, 64), (33, 300, 9)]
    return shapes


def check_gemm(dtype):
    fails = []
    rng = np.random.default_rng(1)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    tiny = 1e-30
    for si, (n, i, o) in enumerate(gemm_shapes()):
        view = si % 2 == 1  # every other shape uses row-strided inputs/outputs
        mk = (lambda r, c: strided(rng, r, c, dtype)) if view else \
            (lambda r, c: rng.standard_normal((r, c)).astype(dtype))
        x, w, dy = mk(n, i), mk(o, i), mk(n, o)
        b = rng.standard_normal(o).astype(dtype)
        X, Wt, DY = (a.astype(np.float64) for a in (x, w, dy))
        z = X @ Wt.T + b
        zb = tol * np.sqrt(i) * (np.abs(X) @ np.abs(Wt).T + np.abs(b)) + tiny
        out_eps = 1e-6 if dtype == np.float32 else 1e-13  # rounding of the activation's output
        for act in ACTS:
            if view:
                big = np.full((n, o + 3), 7.0, dtype)
                out = big[:, :o]
            else:
                out = None
            y = ops.linear_forward(x, w, b if act != "identity" or si % 3 else None, activation=act, out=out)
            zz = z if act != "identity" or si % 3 else X @ Wt.T
            ref = act_ref(act, zz)
            if act == "threshold":
                keep = np.abs(zz) > zb
                check_close(fails, f"fwd {act} {n, i, o}", np.where(keep, y, ref), ref, 0.0)
            else:
                check_close(fails, f"fwd {act} {n, i, o}", y, ref, zb + out_eps * np.abs(ref))
            if view and not np.all(big[:, o:] == 7.0):
                fails.append(f"fwd {act} {n, i, o}: wrote outside the out view")
        # backward data and weights (+ db)
        dx = ops.linear_backward_data(dy, w)
        check_close(fails, f"bwd data {n, i, o}", dx, DY @ Wt, tol * np.sqrt(o) * (np.abs(DY) @ np.abs(Wt)) + tiny)
        dw, db = ops.linear_backward_weights(dy, x)
        wb = tol * np.sqrt(n) * (np.abs(DY).T @ np.abs(X)) + tiny
        check_close(fails, f"bwd weights {n, i, o}", dw, DY.T @ X, wb)
        dbb = tol * np.sqrt(n) * np.abs(DY).sum(0) + tiny
        check_close(fails, f"db {n, i, o}", db, DY.sum(0), dbb)
        # accumulate (beta = 1), into row-strided gradients
        dw0 = strided(rng, o, i, dtype)
        db0 = rng.standard_normal(o).astype(dtype)
        dwr, dbr = dw0.astype(np.float64) + DY.T @ X, db0.astype(np.float64) + DY.sum(0)
        ops.linear_backward_weights(dy, x, dweight=dw0, dbias=db0, accumulate=True)
        check_close(fails, f"bwd weights accumulate {n, i, o}", dw0, dwr, wb + tol * np.abs(dwr))
        check_close(fails, f"db accumulate {n, i, o}", db0, dbr, dbb + tol * np.abs(dbr))
        # alpha/beta blending through the binding, and beta = 0 on a NaN-filled output
        for act in ("identity", "sigmoid", "relu"):
            c0 = rng.standard_normal((n, o)).astype(dtype)
            c0_ref = c0.astype(np.float64)
            ref = 0.5 * act_ref(act, z) - 1.5 * c0.astype(np.float64)
            core_linear_forward(x, w, b, act, 0.5, -1.5, c0)
            check_close(fails, f"fwd alpha/beta {act} {n, i, o}", c0, ref,
                        zb + out_eps * np.abs(act_ref(act, z)) + tol * (np.abs(ref) + 1.5 * np.abs(c0_ref)))
            nanout = np.full((n, o), np.nan, dtype)
            core_linear_forward(x, w, b, act, 2.0, 0.0, nanout)
            check_close(fails, f"fwd beta=0 NaN out {act} {n, i, o}", nanout, 2.0 * act_ref(act, z),
                        2 * zb + 2 * out_eps * np.abs(act_ref(act, z)))
        c1 = rng.standard_normal((n, i)).astype(dtype)
        ref = -1.0 * (DY @ Wt) + 0.25 * c1.astype(np.float64)
        core_linear_backward_data(dy, w, -1.0, 0.25, c1)
        check_close(fails, f"bwd data alpha/beta {n, i, o}", c1, ref,
                    tol * np.sqrt(o) * (np.abs(DY) @ np.abs(Wt)) + tol * np.abs(ref) + tiny)
        nanout = np.full((n, i), np.nan, dtype)
        core_linear_backward_data(dy, w, 1.0, 0.0, nanout)
        check_close(fails, f"bwd data beta=0 NaN out {n, i, o}", nanout, DY @ Wt,
                    tol * np.sqrt(o) * (np.abs(DY) @ np.abs(Wt)) + tiny)
    # NaN in an input propagates through the product
    x = np.ones((40, 70), dtype)
    x[3, 5] = np.nan
    w = np.ones((50, 70), dtype)
    y = ops.linear_forward(x, w, activation="sigmoid")
    if not (np.isnan(y[3]).all() and np.isfinite(np.delete(y, 3, 0)).all()):
        fails.append("fwd: NaN in x did not propagate to exactly its row")
    return fails


SPECIAL = [0.0, -0.0, 1e-30, 1e-8, 1e-3, 0.1, 0.2499, 0.25, 0.2501, 0.5, 1, 2, 5, 9, 20, 40, 80, 87, 88,
           88.7, 89, 100, 104, 200, 1e30, np.inf, np.nan]


def check_elementwise(dtype):
    fails = []
    rng = np.random.default_rng(2)
    f32 = dtype == np.float32
    # atol: float32 1 / (1 + exp(-x)) is 0 once exp(-x) overflows (x < -88.7), where
    # the exact value is a denormal below 1.2e-38; the exact-zero checks below pin
    # what must hold there
    rtol, atol = (1e-6, 1e-37) if f32 else (1e-12, 1e-300)
    special = np.array(SPECIAL + [-v for v in SPECIAL], dtype)
    grid = np.linspace(-110, 110, 200003).astype(dtype)
    dense = np.concatenate([special, grid, rng.standard_normal(1000).astype(dtype) * 3])
    for n_cols in (1, 7, 15, 16, 17, 33, 1000):
        rows = (dense.size + n_cols - 1) // n_cols
        flat = np.resize(dense, rows * n_cols)
        for view in (False, True):
            x = flat.reshape(rows, n_cols)
            if view:
                wide = np.full((rows, n_cols + 3), 3.0, dtype)
                wide[:, :n_cols] = x
                x = wide[:, :n_cols]
            X = x.astype(np.float64)
            for act in ACTS:
                y = ops.activation_forward(x, act)
                ref = act_ref(act, X)
                check_close(fails, f"act fwd {act} cols={n_cols} view={view}", y, ref, rtol * np.abs(ref) + atol)
            if n_cols != 17:
                continue
            yv = ops.activation_forward(x, "sigmoid")
            dyv = rng.standard_normal(x.shape).astype(dtype)
            Y, DY = yv.astype(np.float64), dyv.astype(np.float64)
            for act, ref in (("sigmoid", DY * Y * (1 - Y)), ("tanh", DY * (1 - Y * Y)),
                             ("identity", DY), ("threshold", 0 * DY), ("relu", np.where(X > 0, DY, 0.0))):
                dx = ops.activation_backward(yv, dyv, act, x=x)
                # bounded by the float rounding of the formula's terms (1 - y*y cancels near 1)
                check_close(fails, f"act bwd {act} view={view}", dx, ref,
                            4 * rtol * np.abs(DY) * (1 + np.abs(Y)) ** 2 + atol)
            dx = ops.activation_backward(yv, dyv, "relu")  # no x: decides on y
            check_close(fails, "act bwd relu from y", dx, np.where(Y > 0, DY, 0.0), atol)
            # alpha/beta and beta = 0 over NaN
            out = rng.standard_normal(x.shape).astype(dtype)
            ref = 0.5 * act_ref("sigmoid", X) + 2.0 * out.astype(np.float64)
            mag = 0.5 * act_ref("sigmoid", X) + 2.0 * np.abs(out.astype(np.float64))
            core_activation_forward(x, "sigmoid", 0.5, 2.0, out)
            check_close(fails, "act fwd alpha/beta", out, ref, 4 * rtol * mag + atol)
            out = np.full(x.shape, np.nan, dtype)
            core_activation_forward(x, "tanh", 1.0, 0.0, out)
            check_close(fails, "act fwd beta=0 NaN out", out, np.tanh(X), rtol * np.abs(np.tanh(X)) + atol)
    # where the correctly rounded result is 0 or +-1 (far outside exp's range in
    # float32), exactly that, not a saturated exp's tiny value
    far = np.array([[-1e30, -1000.0, -200.0, -105.0, 20.0, 105.0, 1000.0, np.inf, -np.inf]], dtype)
    for act in ("sigmoid", "tanh"):
        want = act_ref(act, far.astype(np.float64)).astype(dtype)
        exact = np.isin(want, [0.0, 1.0, -1.0])
        y = ops.activation_forward(far, act)
        if not np.array_equal(y[exact], want[exact]):
            fails.append(f"{act} far from 0: got {y[exact].tolist()} want {want[exact].tolist()}")
    for gap in (105.0, 200.0, 1000.0, 1e30):
        x = np.array([[0.0, -gap, 0.0]], dtype)
        e = np.exp(x.astype(np.float64))
        want = (e / e.sum()).astype(dtype)
        p = ops.softmax(x)
        if (want[0, 1] == 0.0 and p[0, 1] != 0.0) or p[0, 0] != 0.5 or p[0, 2] != 0.5:
            fails.append(f"softmax gap {gap}: got {p[0].tolist()} want {want[0].tolist()}")
    # softmax, incl. row-strided, 1 column and large logits
    for cols in (1, 5, 16, 17, 1000):
        x = strided(rng, 37, cols, dtype) * 30
        X = x.astype(np.float64)
        e = np.exp(X - X.max(1, keepdims=True))
        ref = e / e.sum(1, keepdims=True)
        # x - max is rounded before exp: relative error up to eps * |x - max| on top
        eps = np.finfo(dtype).eps
        check_close(fails, f"softmax cols={cols}", ops.softmax(x), ref,
                    (4 * rtol + eps * np.abs(X - X.max(1, keepdims=True))) * ref + atol)
    # SGD: plain, momentum, nesterov, weight decay; contiguous and row-strided
    for view in (False, True):
        for mom, nes, wd in ((0.0, False, 0.0), (0.0, False, 0.01), (0.9, False, 0.0), (0.9, True, 0.001),
                             (0.5, False, 0.1)):
            shape = (70, 1001)
            mk = (lambda: strided(rng, *shape, dtype)) if view else \
                (lambda: rng.standard_normal(shape).astype(dtype))
            p, g = mk(), mk()
            v = mk() if mom else None
            P, G = p.astype(np.float64), g.astype(np.float64)
            d = G + wd * P
            if mom:
                V = mom * v.astype(np.float64) + d
                step = d + mom * V if nes else V
            else:
                step = d
            Pn = P - 0.01 * step
            ops.sgd_update(p, g, lr=0.01, momentum=mom, velocity=v, weight_decay=wd, nesterov=nes)
            check_close(fails, f"sgd mom={mom} nes={nes} wd={wd} view={view}", p, Pn, 8 * rtol * (np.abs(Pn) + 1))
            if mom:
                check_close(fails, f"sgd velocity mom={mom} view={view}", v, V, 8 * rtol * (np.abs(V) + 1))
    # losses: value and gradient, incl. row-strided inputs and large logits
    eps = float(np.finfo(dtype).eps)
    for rows, cols in ((1, 1), (7, 10), (64, 17), (300, 1000)):
        pr, tg = strided(rng, rows, cols, dtype), rng.standard_normal((rows, cols)).astype(dtype)
        P, Tg = pr.astype(np.float64), tg.astype(np.float64)
        v, gr = ops.mse_loss(pr, tg)
        want = 0.5 * ((P - Tg) ** 2).sum() / rows
        if not abs(v - want) <= 1e3 * eps * want + 1e-300:
            fails.append(f"mse value {rows}x{cols}: {v} vs {want}")
        check_close(fails, f"mse grad {rows}x{cols}", gr, (P - Tg) / rows, 4 * eps * (np.abs(P) + np.abs(Tg)) / rows)
        logits = pr * 20
        L = logits.astype(np.float64)
        lab = rng.integers(0, cols, rows)
        v, gr = ops.softmax_cross_entropy(logits, lab)
        m = L.max(1, keepdims=True)
        e = np.exp(L - m)
        sm = e / e.sum(1, keepdims=True)
        want = np.mean(np.log(e.sum(1)) - (L[np.arange(rows), lab] - m[:, 0]))
        if not abs(v - want) <= 1e3 * eps * (abs(want) + np.abs(L).max()):
            fails.append(f"softmax xent value {rows}x{cols}: {v} vs {want}")
        onehot = np.zeros_like(sm)
        onehot[np.arange(rows), lab] = 1
        check_close(fails, f"softmax xent grad {rows}x{cols}", gr, (sm - onehot) / rows,
                    (8 * rtol + eps * np.abs(L - m)) * (sm + onehot) / rows + atol)
    # Bernoulli: exactly rng.h's draws, element (r, c) <- counter offset + r*cols + c
    for cols, view in ((1, False), (17, True), (1000, False)):
        pr = strided(rng, 53, cols, dtype) if view else rng.standard_normal((53, cols)).astype(dtype)
        pr[:] = np.abs(pr) / 3
        seed, offset = 0xDEADBEEF12345, 2**40 + 7
        y = ops.bernoulli(pr, seed=seed, offset=offset)
        ctr = np.uint64(offset) + np.arange(53 * cols, dtype=np.uint64).reshape(53, cols)
        want = (uniform01(seed, ctr) < pr.astype(np.float64)).astype(np.float64)
        if not np.array_equal(y, want):
            fails.append(f"bernoulli cols={cols}: {int((y != want).sum())} draws differ from rng.h")
    out = np.empty((9, 33), dtype)
    ops.bernoulli(0.25, seed=3, offset=0, out=out)
    want = (uniform01(3, np.arange(9 * 33, dtype=np.uint64).reshape(9, 33)) < 0.25).astype(np.float64)
    if not np.array_equal(out, want):
        fails.append("bernoulli scalar p: draws differ from rng.h")
    return fails


def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform01(seed, counters):
    """rng.h's uniform01 in NumPy uint64 arithmetic (wraps mod 2**64 like C)."""
    with np.errstate(over="ignore"):
        g = np.uint64(0x9E3779B97F4A7C15)
        key = _mix64(np.array([seed], dtype=np.uint64) + g)[0]
        bits = _mix64(key ^ _mix64(counters * g + key))
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


GROUPS = {
    "gemm_f32": lambda: check_gemm(np.float32),
    "gemm_f64": lambda: check_gemm(np.float64),
    "elementwise_f32": lambda: check_elementwise(np.float32),
    "elementwise_f64": lambda: check_elementwise(np.float64),
}


def _child(isa, group):
    info = layerwise.backend_info()
    if info["isa"] != isa:
        print(f"ISA-MISMATCH active={info['isa']}")
        sys.exit(3)
    fails = GROUPS[group]()
    for f in fails[:30]:
        print(f)
    print(f"{len(fails)} failures")
    sys.exit(1 if fails else 0)


@pytest.mark.parametrize("group", sorted(GROUPS))
@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_kernels_per_isa(isa, group):
    if isa not in layerwise.backend_info()["isas_compiled"]:
        pytest.skip(f"{isa} not compiled in")
    if not cpu_has(isa):
        pytest.skip(f"CPU lacks {isa}")
    env = dict(os.environ, LAYERWISE_ISA=isa)
    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys; sys.path.insert(0, {here!r}); import test_cpu_kernels as t; "
            f"t._child({isa!r}, {group!r})")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{isa}/{group}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"


def test_thread_counts_agree():
    """Results do not depend on the thread count (the pool splits work, never sums)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 300)).astype(np.float32)
    w = rng.standard_normal((150, 300)).astype(np.float32)
    dy = rng.standard_normal((200, 150)).astype(np.float32)
    outs = []
    try:
        for t in (1, 2, 3):
            ops.set_num_threads(t)
            outs.append((ops.linear_forward(x, w, activation="sigmoid"), ops.linear_backward_data(dy, w),
                         ops.linear_backward_weights(dy, x)[0], ops.activation_forward(x, "tanh")))
    finally:
        ops.set_num_threads(0)
    for o in outs[1:]:
        for a, b in zip(outs[0], o):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
