"""test_cuda.py -- every layerwise.ops primitive on CuPy arrays (the CUDA
backend) against the same call on NumPy arrays (the CPU backend), on the same
random inputs.

Skipped as a whole when CuPy is missing, when layerwise was built without CUDA,
or when no GPU/driver is usable. Tolerances, per op (rtol, atol), and why:

  GEMM float32      rtol 1e-5, atol 2e-6 * K   both sides accumulate in float32 but
                                               in different orders (tiles vs rows);
                                               inputs are O(1), so the error grows ~K*eps
  GEMM float64      rtol 1e-12, atol 1e-13 * K same, in double
  db column sums    rtol 1e-6 / 1e-13          both sum in double; float32 output rounding
  activations       rtol 2e-6 / 1e-14          device expf/tanhf vs glibc: a few ulp
  softmax           rtol 1e-5 / 1e-13          sums in the dtype, different order
  loss values       rtol 1e-9 (both dtypes)    computed and summed in double on both sides
  loss gradients    rtol 2e-6 / 1e-13, atol tiny  double math rounded to the dtype
  SGD               rtol 1e-6 / 1e-14          nvcc contracts a*b+c into FMA, g++ does not
  GEMM TF32 opt-in  rtol 1e-2, atol 3e-3*sqrt(K) inputs rounded to 10 mantissa bits
  Bernoulli         exact                      the same counter-based generator in both
"""
import math

import numpy as np
import pytest

import layerwise
from layerwise import ops

# pytest.importorskip("cupy"), spelled out so that a broken CuPy install (an
# ImportError other than "not found") also skips, on every pytest version.
try:
    import cupy as cp
except Exception as e:  # noqa: BLE001
    pytest.skip(f"CuPy is not importable ({e}); pip install cupy-cuda13x", allow_module_level=True)


def _cupy_gpus():
    try:
        return cp.cuda.runtime.getDeviceCount()
    except Exception:  # no driver / no GPU: CuPy raises CUDARuntimeError
        return 0


if not layerwise._core.cuda_compiled():
    pytest.skip("layerwise was built without the CUDA backend (LAYERWISE_CUDA=OFF or no nvcc)",
                allow_module_level=True)
if layerwise._core.cuda_device_count() == 0 or _cupy_gpus() == 0:
    pytest.skip("no usable CUDA GPU or driver (cuda_device_count() == 0)", allow_module_level=True)

DTYPES = [np.float32, np.float64]
F32 = np.dtype(np.float32)


def rng(seed=0):
    return np.random.default_rng(seed)


def rand(r, shape, dtype, lo=-1.0, hi=1.0):
    return r.uniform(lo, hi, size=shape).astype(dtype)


def both(a):
    """The NumPy array and its CuPy copy."""
    return a, cp.asarray(a)


def close(gpu, cpu, rtol, atol=0.0):
    np.testing.assert_allclose(cp.asnumpy(gpu), cpu, rtol=rtol, atol=atol)


def gemm_tol(dtype, k):
    k = max(k, 1)
    return (1e-5, 2e-6 * k) if np.dtype(dtype) == F32 else (1e-12, 1e-13 * k)


# Shapes (n, in, out): single elements, odd sizes (scalar loads), multiples of 4
# that are not multiples of the tile (16-byte loads with a tail in K, M and N),
# edges of the 32x64 and 128x128 tiles, more than one tile, the MNIST layers,
# and three large enough (>= 132 tiles of 128x128, as many SMs as an H100/H200
# has) that the big-tile kernel runs for x W^T (1537x1409, scalar loads),
# dy W (1500x1500, vector loads) and dy^T x (1500x1500, vector loads).
GEMM_SHAPES = [
    (1, 1, 1),
    (1, 7, 3),
    (3, 5, 7),
    (2, 9, 1),
    (5, 4, 4),
    (17, 33, 65),
    (31, 8, 63),
    (33, 36, 68),
    (33, 17, 129),
    (64, 128, 64),
    (70, 44, 76),
    (129, 257, 130),
    (260, 132, 136),
    (128, 784, 1000),
    (32, 1000, 1000),
    (10, 784, 1000),
    (1537, 67, 1409),
    (1500, 1500, 68),
    (68, 1500, 1500),
]


# ---- dense layers --------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,fin,fout", GEMM_SHAPES)
@pytest.mark.parametrize("act", ["identity", "sigmoid"])
def test_linear_forward(dtype, n, fin, fout, act):
    r = rng(n * 1000 + fin)
    x, xg = both(rand(r, (n, fin), dtype))
    w, wg = both(rand(r, (fout, fin), dtype))
    b, bg = both(rand(r, (fout,), dtype))
    want = ops.linear_forward(x, w, b, activation=act)
    got = ops.linear_forward(xg, wg, bg, activation=act)
    assert isinstance(got, cp.ndarray) and got.dtype == dtype and got.shape == (n, fout)
    close(got, want, *gemm_tol(dtype, fin))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["tanh", "relu", "threshold"])
def test_linear_forward_activations(dtype, act):
    r = rng(5)
    x, xg = both(rand(r, (37, 45), dtype))
    w, wg = both(rand(r, (53, 45), dtype))
    want = ops.linear_forward(x, w, None, activation=act)
    got = ops.linear_forward(xg, wg, None, activation=act)
    if act == "threshold":  # a pre-activation within rounding of 0 may flip: allow a few
        assert (cp.asnumpy(got) != want).sum() <= 2
    else:
        close(got, want, *gemm_tol(dtype, 45))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,fin,fout", GEMM_SHAPES)
def test_linear_backward_data(dtype, n, fin, fout):
    r = rng(n * 7 + fout)
    dy, dyg = both(rand(r, (n, fout), dtype))
    w, wg = both(rand(r, (fout, fin), dtype))
    want = ops.linear_backward_data(dy, w)
    got = ops.linear_backward_data(dyg, wg)
    close(got, want, *gemm_tol(dtype, fout))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,fin,fout", GEMM_SHAPES)
def test_linear_backward_weights(dtype, n, fin, fout):
    r = rng(n * 13 + fin)
    dy, dyg = both(rand(r, (n, fout), dtype))
    x, xg = both(rand(r, (n, fin), dtype))
    dw, db = ops.linear_backward_weights(dy, x)
    dwg, dbg = ops.linear_backward_weights(dyg, xg)
    close(dwg, dw, *gemm_tol(dtype, n))
    close(dbg, db, 1e-6 if np.dtype(dtype) == F32 else 1e-13, 1e-6 if np.dtype(dtype) == F32 else 1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_backward_weights_accumulate(dtype):
    """beta = 1: results are added to the given gradients."""
    r = rng(3)
    dy, dyg = both(rand(r, (19, 21), dtype))
    x, xg = both(rand(r, (19, 23), dtype))
    dw0, dwg = both(rand(r, (21, 23), dtype))
    db0, dbg = both(rand(r, (21,), dtype))
    dw, db = ops.linear_backward_weights(dy, x, dweight=dw0.copy(), dbias=db0.copy(), accumulate=True)
    ops.linear_backward_weights(dyg, xg, dweight=dwg, dbias=dbg, accumulate=True)
    close(dwg, dw, *gemm_tol(dtype, 19))
    close(dbg, db, 1e-6, 1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_empty_batch(dtype):
    # Sliced from a 1-row array: NumPy 2 gives freshly made empty arrays zero
    # strides, which ops' layout check rejects (not a CUDA matter).
    x = cp.ones((1, 5), dtype)[:0]
    w = cp.ones((4, 5), dtype)
    assert ops.linear_forward(x, w).shape == (0, 4)
    dw, db = ops.linear_backward_weights(cp.ones((1, 4), dtype)[:0], x)
    assert float(cp.abs(dw).max()) == 0.0 and float(cp.abs(db).max()) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_forward_ignores_nan_output(dtype):
    """beta == 0: NaN garbage in out must not leak into the result."""
    r = rng(1)
    x, xg = both(rand(r, (33, 20), dtype))
    w, wg = both(rand(r, (40, 20), dtype))
    out = cp.full((33, 40), cp.nan, dtype)
    ops.linear_forward(xg, wg, out=out)
    close(out, ops.linear_forward(x, w), *gemm_tol(dtype, 20))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0, 1, 3])
def test_linear_strided_and_misaligned(dtype, offset):
    """Row-strided views whose rows start 4, 12 bytes off 16-byte alignment and
    whose row stride is not a multiple of 16 bytes: the scalar load path."""
    r = rng(offset)
    big_x = rand(r, (70, 51 + offset), dtype)
    big_w = rand(r, (66, 47 + offset), dtype)
    x = big_x[:, offset:offset + 45]
    w = big_w[:, offset:offset + 45]
    xg = cp.asarray(big_x)[:, offset:offset + 45]
    wg = cp.asarray(big_w)[:, offset:offset + 45]
    out_big = cp.zeros((70, 67 + offset), dtype)
    out = out_big[:, offset:offset + 66]
    ops.linear_forward(xg, wg, out=out)
    close(out, ops.linear_forward(x, w), *gemm_tol(dtype, 45))
    close(ops.linear_backward_data(out, wg), ops.linear_backward_data(cp.asnumpy(out), w),
          *gemm_tol(dtype, 66))
    dwg, dbg = ops.linear_backward_weights(out, xg)
    dw, db = ops.linear_backward_weights(cp.asnumpy(out), x)
    close(dwg, dw, *gemm_tol(dtype, 70))


@pytest.mark.parametrize("n,fin,fout", [(3, 5, 7), (128, 784, 1000), (260, 132, 136), (1500, 1500, 68)])
def test_linear_tf32_opt_in(monkeypatch, n, fin, fout):
    """LAYERWISE_CUDA_TF32=1 (read per call) switches float32 products to TF32 tensor
    cores on sm_80+; inputs keep 10 mantissa bits, so the tolerance is ~1e-3*sqrt(K)."""
    monkeypatch.setenv("LAYERWISE_CUDA_TF32", "1")
    r = rng(n + fout)
    x, xg = both(rand(r, (n, fin), np.float32))
    w, wg = both(rand(r, (fout, fin), np.float32))
    dy, dyg = both(rand(r, (n, fout), np.float32))
    close(ops.linear_forward(xg, wg, activation="identity"), ops.linear_forward(x, w), 1e-2,
          3e-3 * math.sqrt(fin))
    close(ops.linear_backward_data(dyg, wg), ops.linear_backward_data(dy, w), 1e-2, 3e-3 * math.sqrt(fout))
    close(ops.linear_backward_weights(dyg, xg)[0], ops.linear_backward_weights(dy, x)[0], 1e-2,
          3e-3 * math.sqrt(n))


# ---- activations and softmax ------------------------------------------------------
ACT_TOL = {F32: 2e-6, np.dtype(np.float64): 1e-14}
ELEM_SHAPES = [(1, 1), (3, 7), (33, 65), (128, 1000), (1000, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", list(ops.ACTIVATIONS))
@pytest.mark.parametrize("shape", ELEM_SHAPES)
def test_activation_forward_backward(dtype, mode, shape):
    r = rng(shape[0])
    x, xg = both(rand(r, shape, dtype, -4, 4))
    dy, dyg = both(rand(r, shape, dtype))
    y = ops.activation_forward(x, mode)
    yg = ops.activation_forward(xg, mode)
    tol = ACT_TOL[np.dtype(dtype)]
    close(yg, y, tol, tol)
    dx = ops.activation_backward(y, dy, mode, x=x)
    dxg = ops.activation_backward(cp.asarray(y), dyg, mode, x=xg)
    close(dxg, dx, tol, tol)
    if mode == "relu":  # without x, relu uses y
        close(ops.activation_backward(cp.asarray(y), dyg, mode), ops.activation_backward(y, dy, mode),
              tol, tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_in_place_and_strided(dtype):
    r = rng(9)
    big = rand(r, (40, 30), dtype, -3, 3)
    want = big.copy()
    want[:, 5:25] = ops.activation_forward(big[:, 5:25], "sigmoid")
    g = cp.asarray(big)
    view = g[:, 5:25]
    ops.activation_forward(view, "sigmoid", out=view)
    close(g, want, ACT_TOL[np.dtype(dtype)], ACT_TOL[np.dtype(dtype)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (5, 10), (64, 1000), (3, 1025), (7, 5000)])
def test_softmax(dtype, shape):
    r = rng(shape[1])
    x, xg = both(rand(r, shape, dtype, -20, 20))
    tol = 1e-5 if np.dtype(dtype) == F32 else 1e-13
    close(ops.softmax(xg), ops.softmax(x), tol, tol * 1e-2)


# ---- losses -----------------------------------------------------------------------
def _loss_tols(dtype):
    return 1e-9, (2e-6 if np.dtype(dtype) == F32 else 1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (10, 10), (129, 33), (1000, 784)])
def test_mse_loss(dtype, shape):
    r = rng(shape[0])
    p, pg = both(rand(r, shape, dtype))
    t, tg = both(rand(r, shape, dtype))
    v, g = ops.mse_loss(p, t)
    vg, gg = ops.mse_loss(pg, tg)
    vtol, gtol = _loss_tols(dtype)
    assert vg == pytest.approx(v, rel=vtol)
    close(gg, g, gtol, 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (10, 10), (129, 33), (1000, 784)])
def test_binary_cross_entropy(dtype, shape):
    r = rng(shape[1])
    p = rand(r, shape, dtype, 0.0, 1.0)
    p.flat[0] = 0.0  # exercises the clamp
    if p.size > 1:
        p.flat[1] = 1.0
    t = (r.uniform(size=shape) < 0.5).astype(dtype)
    v, g = ops.binary_cross_entropy(p, t)
    vg, gg = ops.binary_cross_entropy(cp.asarray(p), cp.asarray(t))
    vtol, gtol = _loss_tols(dtype)
    assert vg == pytest.approx(v, rel=vtol)
    close(gg, g, gtol, 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (10, 10), (128, 1000), (9, 3000)])
def test_softmax_cross_entropy(dtype, shape):
    r = rng(shape[0] + shape[1])
    x, xg = both(rand(r, shape, dtype, -10, 10))
    labels = r.integers(0, shape[1], size=shape[0]).astype(np.int32)
    v, g = ops.softmax_cross_entropy(x, labels)
    vg, gg = ops.softmax_cross_entropy(xg, cp.asarray(labels))
    vtol, gtol = _loss_tols(dtype)
    assert vg == pytest.approx(v, rel=vtol)
    close(gg, g, gtol, 1e-12)


def test_softmax_cross_entropy_label_out_of_range():
    """Labels are device memory: the CUDA backend checks them in the kernel."""
    x = cp.zeros((4, 3), cp.float32)
    labels = cp.asarray([0, 2, 3, 1], cp.int32)
    with pytest.raises(ValueError, match=r"class id 3 at row 2 is out of range \[0, 3\)"):
        ops.softmax_cross_entropy(x, labels)
    with pytest.raises(ValueError, match="out of range"):
        ops.softmax_cross_entropy(x, cp.asarray([-1, 0, 0, 0], cp.int32))
    # the handle keeps working afterwards
    v, _ = ops.softmax_cross_entropy(x, cp.asarray([0, 1, 2, 0], cp.int32))
    assert v == pytest.approx(math.log(3.0), rel=1e-9)


def test_losses_deterministic():
    r = rng(11)
    p = cp.asarray(rand(r, (4096, 300), np.float32))
    t = cp.asarray(rand(r, (4096, 300), np.float32))
    values = {ops.mse_loss(p, t)[0] for _ in range(5)}
    assert len(values) == 1


# ---- SGD and sampling -------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.0, False, 1e-3),
                                                  (0.9, False, 1e-4), (0.9, True, 1e-4)])
@pytest.mark.parametrize("shape", [(1,), (7,), (33, 65), (1000, 784)])
def test_sgd_update(dtype, momentum, nesterov, wd, shape):
    r = rng(len(shape))
    p, pg = both(rand(r, shape, dtype))
    g, gg = both(rand(r, shape, dtype))
    v, vg = both(rand(r, shape, dtype))
    kw = dict(lr=0.1, momentum=momentum, weight_decay=wd, nesterov=nesterov)
    ops.sgd_update(p, g, velocity=v if momentum else None, **kw)
    ops.sgd_update(pg, gg, velocity=vg if momentum else None, **kw)
    tol = 1e-6 if np.dtype(dtype) == F32 else 1e-14
    close(pg, p, tol, tol)
    if momentum:
        close(vg, v, tol, tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,fin,fout", [(1, 1, 1), (10, 33, 7), (32, 784, 1000), (129, 65, 3)])
@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, True, 1e-3)])
def test_linear_backward_sgd(dtype, n, fin, fout, momentum, nesterov, wd):
    r = rng(n)
    dy, dyg = both(rand(r, (n, fout), dtype))
    x, xg = both(rand(r, (n, fin), dtype))
    w, wg = both(rand(r, (fout, fin), dtype))
    b, bg = both(rand(r, (fout,), dtype))
    vw, vwg = both(rand(r, (fout, fin), dtype))
    vb, vbg = both(rand(r, (fout,), dtype))
    kw = dict(lr=0.1, momentum=momentum, weight_decay=wd, nesterov=nesterov)
    dx = ops.linear_backward_sgd(dy, x, w, b, weight_velocity=vw if momentum else None,
                                 bias_velocity=vb if momentum else None, dx=True, **kw)
    dxg = ops.linear_backward_sgd(dyg, xg, wg, bg, weight_velocity=vwg if momentum else None,
                                  bias_velocity=vbg if momentum else None, dx=True, **kw)
    rtol, atol = gemm_tol(dtype, max(n, fout))
    close(dxg, dx, rtol, atol)
    close(wg, w, rtol, atol)
    close(bg, b, rtol, atol)
    if momentum:
        close(vwg, vw, rtol, atol)
        close(vbg, vb, rtol, atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (1, 1), (13, 7), (300, 1000)])
def test_bernoulli_identical_to_cpu(dtype, shape):
    r = rng(2)
    p, pg = both(rand(r, shape, dtype, 0.0, 1.0))
    a = ops.bernoulli(p, seed=1234, offset=77)
    b = ops.bernoulli(pg, seed=1234, offset=77)
    np.testing.assert_array_equal(cp.asnumpy(b), a)
    out_c = np.empty(shape, dtype)
    out_g = cp.empty(shape, dtype)
    ops.bernoulli(0.3, seed=5, out=out_c)
    ops.bernoulli(0.3, seed=5, out=out_g)
    np.testing.assert_array_equal(cp.asnumpy(out_g), out_c)


def test_bernoulli_strided_in_place():
    r = rng(4)
    big = rand(r, (20, 30), np.float64, 0.0, 1.0)
    want = big.copy()
    want[:, 3:13] = ops.bernoulli(big[:, 3:13], seed=9, offset=2**40)
    g = cp.asarray(big)
    ops.bernoulli(g[:, 3:13], seed=9, offset=2**40, out=g[:, 3:13])
    np.testing.assert_array_equal(cp.asnumpy(g), want)


# ---- placement ---------------------------------------------------------------------
def test_mixing_numpy_and_cupy_is_type_error():
    x = np.ones((2, 3), np.float32)
    w = cp.ones((4, 3), cp.float32)
    with pytest.raises(TypeError, match="do not mix host and device arrays"):
        ops.linear_forward(x, w)
    with pytest.raises(TypeError, match="do not mix"):
        ops.mse_loss(cp.asarray(x), x)


def test_results_are_on_the_inputs_device_and_stream():
    x = cp.ones((3, 4), cp.float32)
    w = cp.ones((5, 4), cp.float32)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        y = ops.linear_forward(x, w, activation="identity")
        s.synchronize()
    assert isinstance(y, cp.ndarray) and y.device.id == x.device.id
    np.testing.assert_array_equal(cp.asnumpy(y), np.full((3, 5), 4.0, np.float32))
