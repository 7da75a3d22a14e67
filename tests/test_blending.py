"""alpha/beta blending (out = alpha * result + beta * out) of every primitive,
through layerwise._core, which passes alpha and beta straight to the C API.
beta == 0 must never read the output: NaN garbage in it must not leak."""
import numpy as np
import pytest

from layerwise import _core

from conftest import assert_close

H = _core.Handle("cpu")
CODE = {np.float32: _core.FLOAT32, np.float64: _core.FLOAT64}


def T(a):
    a2 = a if a.ndim == 2 else a.reshape(1, -1)
    return a.ctypes.data, a2.shape[0], a2.shape[1], a2.strides[0] // a.itemsize


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 0.0), (2.0, 1.0), (-1.5, 0.25)])
@pytest.mark.parametrize("n,i,o", [(1, 1, 1), (7, 33, 17), (65, 129, 31)])
def test_dense_blending(rng, dtype, alpha, beta, n, i, o):
    c = CODE[dtype]
    x = rng.standard_normal((n, i)).astype(dtype)
    w = (rng.standard_normal((o, i)) / np.sqrt(i)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)

    def start(shape):
        # beta == 0: fill with NaN, which must not leak into the result.
        return np.full(shape, np.nan, dtype) if beta == 0 else rng.standard_normal(shape).astype(dtype)

    y = start((n, o))
    y0 = y.astype(np.float64)
    _core.linear_forward(H, c, alpha, *T(x), *T(w), b.ctypes.data, o, 1, beta, *T(y))  # 1 = sigmoid
    ref = alpha / (1 + np.exp(-(x64 @ w64.T + b))) + (beta * y0 if beta else 0)
    assert_close(y, ref, dtype, i)

    dy = rng.standard_normal((n, o)).astype(dtype)
    dx = start((n, i))
    dx0 = dx.astype(np.float64)
    _core.linear_backward_data(H, c, alpha, *T(dy), *T(w), beta, *T(dx))
    assert_close(dx, alpha * (dy.astype(np.float64) @ w64) + (beta * dx0 if beta else 0), dtype, o)

    dw, db = start((o, i)), start((o,))
    dw0, db0 = dw.astype(np.float64), db.astype(np.float64)
    _core.linear_backward_weights(H, c, alpha, *T(dy), *T(x), beta, *T(dw), db.ctypes.data, o)
    assert_close(dw, alpha * (dy.astype(np.float64).T @ x64) + (beta * dw0 if beta else 0), dtype, n)
    assert_close(db, alpha * dy.astype(np.float64).sum(0) + (beta * db0 if beta else 0), dtype, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (3.0, 0.0), (0.5, 2.0)])
def test_elementwise_blending(rng, dtype, alpha, beta):
    c = CODE[dtype]
    x = rng.standard_normal((9, 13)).astype(dtype)
    x64 = x.astype(np.float64)

    def start():
        return np.full(x.shape, np.nan, dtype) if beta == 0 else rng.standard_normal(x.shape).astype(dtype)

    y = start()
    y0 = y.astype(np.float64)
    _core.activation_forward(H, c, 2, alpha, *T(x), beta, y.ctypes.data, 13)  # 2 = tanh
    assert_close(y, alpha * np.tanh(x64) + (beta * y0 if beta else 0), dtype)

    s = np.tanh(x)
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx = start()
    dx0 = dx.astype(np.float64)
    _core.activation_backward(H, c, 2, alpha, *T(s), dy.ctypes.data, 13, 0, 0, beta, dx.ctypes.data, 13)
    s64 = s.astype(np.float64)
    assert_close(dx, alpha * dy * (1 - s64 * s64) + (beta * dx0 if beta else 0), dtype)

    p = start()
    p0 = p.astype(np.float64)
    _core.softmax_forward(H, c, alpha, *T(x), beta, p.ctypes.data, 13)
    e = np.exp(x64 - x64.max(1, keepdims=True))
    assert_close(p, alpha * e / e.sum(1, keepdims=True) + (beta * p0 if beta else 0), dtype)
