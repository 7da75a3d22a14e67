"""Every primitive in layerwise.ops against a NumPy float64 reference, at edge
shapes (1, odd sizes, 1000+), float32 and float64. Tolerances: conftest.py."""
import numpy as np
import pytest

import layerwise as lw
from layerwise import ops

from conftest import assert_close

DTYPES = [np.float32, np.float64]
# (n, in, out): 1, odd sizes, shapes around tile sizes, and 1000+.
LINEAR_SHAPES = [(1, 1, 1), (1, 7, 1), (7, 33, 129), (33, 129, 7), (129, 1, 33), (2, 1000, 3), (16, 784, 1000), (1003, 65, 17)]
ACTS = ["identity", "sigmoid", "tanh", "relu", "threshold"]


def ref_act(z, mode):
    if mode == "identity":
        return z
    if mode == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if mode == "tanh":
        return np.tanh(z)
    if mode == "relu":
        return np.maximum(z, 0.0)
    if mode == "threshold":
        return (z > 0).astype(np.float64)
    raise AssertionError(mode)


def data(rng, n, i, o, dtype):
    x = rng.standard_normal((n, i))
    w = rng.standard_normal((o, i)) / np.sqrt(i)
    b = rng.standard_normal(o) * 0.5
    return x.astype(dtype), w.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LINEAR_SHAPES)
@pytest.mark.parametrize("act", ACTS)
def test_linear_forward(rng, dtype, shape, act):
    n, i, o = shape
    x, w, b = data(rng, n, i, o, dtype)
    z = x.astype(np.float64) @ w.astype(np.float64).T + b
    y = ops.linear_forward(x, w, b, activation=act)
    assert y.shape == (n, o) and y.dtype == dtype
    if act == "threshold":
        # Only values far from the step can be compared exactly.
        far = np.abs(z) > 1e-3
        np.testing.assert_array_equal(y[far], ref_act(z, act)[far])
    else:
        assert_close(y, ref_act(z, act), dtype, i)
    y2 = ops.linear_forward(x, w, activation=act)  # no bias
    z2 = x.astype(np.float64) @ w.astype(np.float64).T
    if act != "threshold":
        assert_close(y2, ref_act(z2, act), dtype, i)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LINEAR_SHAPES)
def test_linear_backward_data(rng, dtype, shape):
    n, i, o = shape
    _, w, _ = data(rng, n, i, o, dtype)
    dy = rng.standard_normal((n, o)).astype(dtype)
    dx = ops.linear_backward_data(dy, w)
    assert dx.shape == (n, i) and dx.dtype == dtype
    assert_close(dx, dy.astype(np.float64) @ w.astype(np.float64), dtype, o)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LINEAR_SHAPES)
def test_linear_backward_weights(rng, dtype, shape):
    n, i, o = shape
    x, _, _ = data(rng, n, i, o, dtype)
    dy = (rng.standard_normal((n, o)) / np.sqrt(n)).astype(dtype)
    dw, db = ops.linear_backward_weights(dy, x)
    assert dw.shape == (o, i) and db.shape == (o,)
    assert_close(dw, dy.astype(np.float64).T @ x.astype(np.float64), dtype, n)
    assert_close(db, dy.astype(np.float64).sum(0), dtype, n)
    # accumulate=True adds to what is there (beta = 1).
    dw2, db2 = ops.linear_backward_weights(dy, x, dweight=dw.copy(), dbias=db.copy(), accumulate=True)
    assert_close(dw2, 2 * (dy.astype(np.float64).T @ x.astype(np.float64)), dtype, n)
    assert_close(db2, 2 * dy.astype(np.float64).sum(0), dtype, n)
    dw3, db3 = ops.linear_backward_weights(dy, x, bias=False)
    assert db3 is None
    assert_close(dw3, dy.astype(np.float64).T @ x.astype(np.float64), dtype, n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (129, 1), (1000, 1001)])
@pytest.mark.parametrize("act", ACTS)
def test_activation_forward_backward(rng, dtype, shape, act):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    y = ops.activation_forward(x, act)
    x64 = x.astype(np.float64)
    y_ref = ref_act(x64, act)
    assert_close(y, y_ref, dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    dx = ops.activation_backward(y, dy, act, x=x)
    y64 = y.astype(np.float64)
    d64 = dy.astype(np.float64)
    grad_ref = {
        "identity": d64,
        "sigmoid": d64 * y64 * (1 - y64),
        "tanh": d64 * (1 - y64 * y64),
        "relu": d64 * (x64 > 0),
        "threshold": np.zeros_like(d64),
    }[act]
    assert_close(dx, grad_ref, dtype)
    if act == "relu":  # without x, relu uses y > 0 (same mask)
        assert_close(ops.activation_backward(y, dy, act), grad_ref, dtype)


def test_activation_in_place(rng):
    x = rng.standard_normal((5, 9)).astype(np.float32)
    ref = 1 / (1 + np.exp(-x.astype(np.float64)))
    out = ops.activation_forward(x, "sigmoid", out=x)
    assert out is x
    assert_close(x, ref, np.float32)


def test_sigmoid_extremes():
    x = np.array([[-1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0]], dtype=np.float32)
    y = ops.activation_forward(x, "sigmoid")
    assert np.all(np.isfinite(y)) and np.all((y >= 0) & (y <= 1))
    assert y[0, 3] == 0.5 and y[0, -1] == 1.0 and y[0, 0] == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (7, 33), (1000, 10), (3, 1001)])
def test_softmax(rng, dtype, shape):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    p = ops.softmax(x)
    e = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
    assert_close(p, e / e.sum(1, keepdims=True), dtype)


def test_softmax_large_logits_do_not_overflow():
    x = np.array([[1000.0, 1000.0, -1000.0]], dtype=np.float32)
    np.testing.assert_allclose(ops.softmax(x), [[0.5, 0.5, 0.0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (1000, 10), (3, 1001)])
def test_mse_loss(rng, dtype, shape):
    p = rng.standard_normal(shape).astype(dtype)
    t = rng.standard_normal(shape).astype(dtype)
    loss, g = ops.mse_loss(p, t)
    d = p.astype(np.float64) - t
    n = shape[0]
    np.testing.assert_allclose(loss, 0.5 * (d * d).sum() / n, rtol=1e-6 if dtype == np.float32 else 1e-12)
    assert_close(g, d / n, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (1000, 10)])
def test_binary_cross_entropy(rng, dtype, shape):
    p = rng.uniform(0.01, 0.99, shape).astype(dtype)
    t = rng.uniform(0, 1, shape).astype(dtype)
    loss, g = ops.binary_cross_entropy(p, t)
    p64, t64 = p.astype(np.float64), t.astype(np.float64)
    n = shape[0]
    ref = -(t64 * np.log(p64) + (1 - t64) * np.log1p(-p64)).sum() / n
    np.testing.assert_allclose(loss, ref, rtol=1e-6 if dtype == np.float32 else 1e-12)
    assert_close(g, (p64 - t64) / (p64 * (1 - p64)) / n, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_clamps_saturated_probabilities(dtype):
    eps = 1e-7 if dtype == np.float32 else 1e-12
    p = np.array([[0.0, 1.0, 0.5]], dtype=dtype)
    t = np.array([[1.0, 0.0, 1.0]], dtype=dtype)
    loss, g = ops.binary_cross_entropy(p, t)
    ref = -2 * np.log(eps) + np.log(2)
    np.testing.assert_allclose(loss, ref, rtol=1e-6)
    assert np.all(np.isfinite(g))
    assert g[0, 0] < 0 and g[0, 1] > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (7, 33), (1000, 10), (3, 1001)])
def test_softmax_cross_entropy(rng, dtype, shape):
    n, k = shape
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    labels = rng.integers(0, k, n)
    for lab in (labels, labels.astype(np.int32)):
        loss, g = ops.softmax_cross_entropy(z, lab)
        z64 = z.astype(np.float64)
        m = z64.max(1, keepdims=True)
        logp = z64 - m - np.log(np.exp(z64 - m).sum(1, keepdims=True))
        ref = -logp[np.arange(n), labels].mean()
        np.testing.assert_allclose(loss, ref, rtol=1e-6 if dtype == np.float32 else 1e-12)
        onehot = np.zeros(shape)
        onehot[np.arange(n), labels] = 1
        assert_close(g, (np.exp(logp) - onehot) / n, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (33, 129), (1000, 1001)])
@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.0, False, 0.01), (0.9, False, 0.0),
                                                   (0.9, True, 1e-3), (0.5, False, 0.1)])
def test_sgd_update(rng, dtype, shape, momentum, nesterov, wd):
    p = rng.standard_normal(shape).astype(dtype)
    v = rng.standard_normal(shape).astype(dtype) if momentum else None
    p64 = p.astype(np.float64)
    v64 = v.astype(np.float64) if momentum else None
    lr = 0.1
    for _ in range(3):
        g = rng.standard_normal(shape).astype(dtype)
        ops.sgd_update(p, g, lr=lr, momentum=momentum, velocity=v, weight_decay=wd, nesterov=nesterov)
        d = g.astype(np.float64) + wd * p64
        if momentum:
            v64 = momentum * v64 + d
            d = d + momentum * v64 if nesterov else v64
        p64 = p64 - lr * d
        assert_close(p, p64, dtype, 4)
        if momentum:
            assert_close(v, v64, dtype, 4)


def test_sgd_matches_torch_formula_by_hand():
    p = np.array([[1.0, -2.0]], dtype=np.float64)
    v = np.zeros_like(p)
    g = np.array([[0.5, 0.25]])
    ops.sgd_update(p, g, lr=0.1, momentum=0.9, velocity=v, weight_decay=0.0, nesterov=True)
    # v = g; nesterov step uses g + 0.9 v = 1.9 g
    np.testing.assert_allclose(v, [[0.5, 0.25]])
    np.testing.assert_allclose(p, [[1.0 - 0.1 * 0.95, -2.0 - 0.1 * 0.475]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli(rng, dtype):
    p = rng.uniform(0, 1, (300, 301)).astype(dtype)
    s1 = ops.bernoulli(p, seed=7)
    s2 = ops.bernoulli(p, seed=7)
    np.testing.assert_array_equal(s1, s2)  # deterministic
    assert set(np.unique(s1)) <= {0.0, 1.0}
    assert not np.array_equal(s1, ops.bernoulli(p, seed=8))
    # Mean matches p: sum of 90k Bernoullis, 5-sigma bound.
    assert abs(s1.sum() - p.sum()) < 5 * np.sqrt((p * (1 - p)).sum())
    # Counter offsets: the second half of one draw equals a draw at that offset.
    flat = rng.uniform(0, 1, (1, 1000)).astype(dtype)
    a = ops.bernoulli(flat, seed=3)
    b = ops.bernoulli(flat[:, 500:].copy(), seed=3, offset=500)
    np.testing.assert_array_equal(a[:, 500:], b)
    out = np.empty((64, 64), dtype)
    ops.bernoulli(0.25, seed=1, out=out)
    assert abs(out.mean() - 0.25) < 0.03
    np.testing.assert_array_equal(ops.bernoulli(np.zeros((3, 3), dtype), seed=1), 0)
    np.testing.assert_array_equal(ops.bernoulli(np.ones((3, 3), dtype), seed=1), 1)


def test_row_strided_views_are_used_without_copy(rng):
    big = rng.standard_normal((8, 50)).astype(np.float32)
    x = big[:, 5:38]  # rows contiguous, row stride 50
    w = rng.standard_normal((9, 33)).astype(np.float32)
    ybig = np.full((8, 20), np.nan, np.float32)
    y = ybig[:, 2:11]
    ops.linear_forward(x, w, activation="tanh", out=y)
    assert_close(y, np.tanh(x.astype(np.float64) @ w.T.astype(np.float64)), np.float32, 33)
    assert np.isnan(ybig[:, :2]).all() and np.isnan(ybig[:, 11:]).all()  # nothing outside the view


def test_num_threads_does_not_change_results(rng):
    x, w, b = data(rng, 64, 300, 200, np.float64)
    before = ops.get_num_threads()
    try:
        ops.set_num_threads(1)
        assert ops.get_num_threads() == 1
        y1 = ops.linear_forward(x, w, b, activation="sigmoid")
    finally:
        ops.set_num_threads(0)
    y2 = ops.linear_forward(x, w, b, activation="sigmoid")
    np.testing.assert_allclose(y1, y2, rtol=1e-13, atol=1e-14)
    assert ops.get_num_threads() == before


def test_backend_info():
    info = lw.backend_info()
    for key in ("version", "isas_compiled", "isa", "threads", "cuda_compiled", "cuda_devices"):
        assert key in info
    assert "generic" in info["isas_compiled"] and info["isa"] in info["isas_compiled"]
    assert info["threads"] >= 1 and isinstance(info["cuda_compiled"], bool)
    assert info["version"] == lw.__version__
