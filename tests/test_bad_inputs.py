"""Bad input never crashes: wrong shapes, dtypes, layouts and values raise
TypeError/ValueError naming the argument; NaN/inf propagate; empty batches
(0 rows) are defined: outputs with 0 rows, loss 0.0, zero weight gradients."""
import numpy as np
import pytest

from layerwise import ops


@pytest.fixture
def arrs(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    dy = rng.standard_normal((4, 3)).astype(np.float32)
    return x, w, b, dy


def test_shapes_that_do_not_chain(arrs):
    x, w, b, dy = arrs
    with pytest.raises(ValueError, match=r"weight.*\(out_features, 5\).*\(3, 4\)"):
        ops.linear_forward(x, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"bias: expected shape \(3,\), got \(4,\)"):
        ops.linear_forward(x, w, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"out: expected shape \(4, 3\), got \(4, 2\)"):
        ops.linear_forward(x, w, out=np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="weight"):
        ops.linear_backward_data(dy, np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="x: has 3 rows but dy has 4"):
        ops.linear_backward_weights(dy, x[:3])
    with pytest.raises(ValueError, match=r"dweight: expected shape \(3, 5\)"):
        ops.linear_backward_weights(dy, x, dweight=np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match="dy: expected shape"):
        ops.activation_backward(x, dy, "sigmoid")
    with pytest.raises(ValueError, match="target: expected shape"):
        ops.mse_loss(x, dy)
    with pytest.raises(ValueError, match="grad: expected shape"):
        ops.sgd_update(w, np.zeros((5, 3), np.float32), lr=0.1)


def test_wrong_and_mixed_dtypes(arrs):
    x, w, b, dy = arrs
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got int64"):
        ops.linear_forward(x.astype(np.int64), w)
    with pytest.raises(TypeError, match="weight: dtype float64 differs from the call's float32"):
        ops.linear_forward(x, w.astype(np.float64))
    with pytest.raises(TypeError, match="bias: dtype float64"):
        ops.linear_forward(x, w, b.astype(np.float64))
    with pytest.raises(TypeError, match="out: dtype float64"):
        ops.activation_forward(x, "tanh", out=np.zeros(x.shape, np.float64))
    with pytest.raises(TypeError, match="float16"):
        ops.softmax(x.astype(np.float16))
    with pytest.raises(TypeError, match="labels: expected an integer dtype, got float32"):
        ops.softmax_cross_entropy(dy, np.zeros(4, np.float32))


def test_not_arrays_and_none(arrs):
    x, w, b, dy = arrs
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray"):
        ops.linear_forward(x.tolist(), w)
    with pytest.raises(TypeError, match="weight: expected an array, got None"):
        ops.linear_forward(x, None)
    with pytest.raises(TypeError, match="x: expected an array, got None"):
        ops.activation_forward(None, "sigmoid")
    with pytest.raises(TypeError, match="labels"):
        ops.softmax_cross_entropy(dy, None)


def test_layouts(arrs):
    x, w, b, dy = arrs
    with pytest.raises(ValueError, match="x: expected a 2-D array, got 3-D"):
        ops.linear_forward(x.reshape(2, 2, 5), w)
    with pytest.raises(ValueError, match="x: expected a 2-D array, got 1-D"):
        ops.activation_forward(x.ravel(), "sigmoid")
    with pytest.raises(ValueError, match="weight: rows must be contiguous"):
        ops.linear_forward(x, np.asfortranarray(w))
    with pytest.raises(ValueError, match="x: rows must be contiguous"):
        ops.linear_forward(x[:, ::2], w[:, :3])
    with pytest.raises(ValueError, match="x: unsupported row stride"):
        ops.linear_forward(x[::-1], w)
    with pytest.raises(ValueError, match="bias: must be contiguous"):
        ops.linear_forward(x, w, np.zeros(6, np.float32)[::2])
    with pytest.raises(ValueError, match="x: has 0 columns"):
        ops.activation_forward(np.zeros((3, 0), np.float32), "sigmoid")


def test_outputs_validated(arrs):
    x, w, b, dy = arrs
    ro = np.zeros((4, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: array is read-only"):
        ops.linear_forward(x, w, out=ro)
    with pytest.raises(ValueError, match="out: must not overlap x"):
        xx = np.zeros((4, 4), np.float32)
        ops.linear_forward(xx, np.zeros((4, 4), np.float32), out=xx)
    with pytest.raises(ValueError, match="dweight: accumulate=True needs"):
        ops.linear_backward_weights(dy, x, accumulate=True)


def test_unknown_modes(arrs):
    x, w, b, dy = arrs
    with pytest.raises(ValueError, match="mode: unknown activation 'softplus'"):
        ops.linear_forward(x, w, activation="softplus")
    with pytest.raises(ValueError, match="unknown activation"):
        ops.activation_forward(x, None)
    with pytest.raises(ValueError, match="unknown activation"):
        ops.activation_backward(x, x, "Sigmoid")


def test_labels_out_of_range(arrs):
    x, w, b, dy = arrs
    for bad in ([0, 1, 3, 0], [0, -1, 2, 0]):
        for dt in (np.int32, np.int64):
            with pytest.raises(ValueError, match="out of range"):
                ops.softmax_cross_entropy(dy, np.array(bad, dt))
    with pytest.raises(ValueError, match="labels: expected 4 labels"):
        ops.softmax_cross_entropy(dy, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="labels: expected a 1-D"):
        ops.softmax_cross_entropy(dy, np.zeros((4, 1), np.int64))


def test_sgd_arguments(arrs):
    x, w, b, dy = arrs
    g = np.ones_like(w)
    for lr in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lr: must be finite"):
            ops.sgd_update(w, g, lr=lr)
    with pytest.raises(ValueError, match="velocity: momentum != 0 needs"):
        ops.sgd_update(w, g, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="nesterov: needs momentum"):
        ops.sgd_update(w, g, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="momentum: must be >= 0"):
        ops.sgd_update(w, g, lr=0.1, momentum=-1, velocity=np.zeros_like(w))
    with pytest.raises(TypeError, match="lr: expected a number"):
        ops.sgd_update(w, g, lr="0.1")
    with pytest.raises(ValueError, match=r"velocity: expected shape \(3, 5\)"):
        ops.sgd_update(w, g, lr=0.1, momentum=0.9, velocity=np.zeros((5, 3), np.float32))


def test_bernoulli_arguments():
    with pytest.raises(ValueError, match="out: a scalar p needs an out array"):
        ops.bernoulli(0.5, seed=0)
    with pytest.raises(ValueError, match="p: must not be NaN"):
        ops.bernoulli(float("nan"), seed=0, out=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="seed"):
        ops.bernoulli(np.zeros((2, 2)), seed=-1)


def test_empty_batch(arrs):
    x, w, b, dy = arrs
    x0 = np.zeros((0, 5), np.float32)
    dy0 = np.zeros((0, 3), np.float32)
    assert ops.linear_forward(x0, w, b, activation="sigmoid").shape == (0, 3)
    assert ops.linear_backward_data(dy0, w).shape == (0, 5)
    dw, db = ops.linear_backward_weights(dy0, x0)
    np.testing.assert_array_equal(dw, np.zeros((3, 5)))
    np.testing.assert_array_equal(db, np.zeros(3))
    acc_w, acc_b = np.ones((3, 5), np.float32), np.ones(3, np.float32)
    ops.linear_backward_weights(dy0, x0, dweight=acc_w, dbias=acc_b, accumulate=True)
    np.testing.assert_array_equal(acc_w, 1)  # nothing added
    assert ops.activation_forward(x0, "tanh").shape == (0, 5)
    assert ops.softmax(x0).shape == (0, 5)
    assert ops.mse_loss(dy0, dy0)[0] == 0.0
    loss, g = ops.softmax_cross_entropy(dy0, np.zeros(0, np.int64))
    assert loss == 0.0 and g.shape == (0, 3)


def test_nan_and_inf_propagate(arrs):
    x, w, b, dy = arrs
    x = x.copy()
    x[1, 2] = np.nan
    x[2, 0] = np.inf
    y = ops.linear_forward(x, w, b, activation="sigmoid")
    assert np.isnan(y[1]).all()
    assert np.isfinite(y[0]).all() and np.isfinite(y[3]).all()
    assert np.isnan(ops.activation_forward(x, "relu")[1, 2])
    assert np.isnan(ops.softmax(x)[1]).all()
    loss, g = ops.softmax_cross_entropy(x[:, :3], np.array([0, 1, 2, 0]))
    assert np.isnan(loss)
    loss, g = ops.mse_loss(x, np.zeros_like(x))
    assert np.isnan(loss) and np.isnan(g[1, 2])
    p = np.ones_like(w)
    ops.sgd_update(p, np.full_like(w, np.nan), lr=0.1)
    assert np.isnan(p).all()
