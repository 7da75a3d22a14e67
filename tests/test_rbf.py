"""RBF units: ops.rbf_forward / rbf_backward against a float64 NumPy reference at edge
shapes, float64 finite-difference gradients for x, centers and gamma, bad inputs, the
nn-style RBF module (gradient check, k-means initialization) and an RBF network
trained end to end with train.fit."""
import numpy as np
import pytest

import layerwise as lw
from layerwise import ops
from layerwise.rbf import RBF, kmeans_centers, rbf_network

from _lw_helpers import _one_thread, numeric_grad, rel_err  # noqa: F401  (autouse fixture)
from conftest import assert_close

SHAPES = [(1, 1, 1), (1, 5, 3), (7, 13, 5), (33, 70, 19), (130, 17, 65), (97, 300, 70)]  # 300 > a K block


def reference(x, c, g):
    x, c, g = (np.asarray(a, dtype=np.float64) for a in (x, c, g))
    d = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
    return np.exp(-g[None, :] * d), d


def reference_grads(x, c, g, dy):
    y, d = reference(x, c, g)
    dy = np.asarray(dy, dtype=np.float64)
    G = -g[None, :] * y * dy                      # dL/dD
    diff = x[:, None, :] - c[None, :, :]           # (n, units, in)
    dx = 2 * (G[:, :, None] * diff).sum(axis=1)
    dc = -2 * (G[:, :, None] * diff).sum(axis=0)
    dg = -(dy * y * d).sum(axis=0)
    return dx, dc, dg


def inputs(rng, n, d, u, dtype):
    x = rng.random((n, d)).astype(dtype)
    c = rng.random((u, d)).astype(dtype)
    g = rng.uniform(0.5, 3.0, size=u).astype(dtype) / d  # exponent O(1)
    return x, c, g


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,d,u", SHAPES)
def test_forward_matches_numpy(rng, dtype, n, d, u):
    x, c, g = inputs(rng, n, d, u, dtype)
    y = ops.rbf_forward(x, c, g)
    assert y.shape == (n, u) and y.dtype == dtype
    assert_close(y, reference(x, c, g)[0], dtype, k=d)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,d,u", SHAPES)
def test_backward_matches_numpy(rng, dtype, n, d, u):
    x, c, g = inputs(rng, n, d, u, dtype)
    dy = rng.standard_normal((n, u)).astype(dtype)
    y = ops.rbf_forward(x, c, g)
    dx, dc, dg = ops.rbf_backward(x, c, g, y, dy)
    rx, rc, rg = reference_grads(x, c, g, dy)
    assert_close(dx, rx, dtype, k=u * d)
    assert_close(dc, rc, dtype, k=n * d)
    assert_close(dg, rg, dtype, k=n * d)


def test_strided_inputs_and_out(rng):
    base = rng.random((9, 12))
    x = base[:, :7]  # row-strided view
    c = rng.random((4, 7))
    g = np.full(4, 0.5)
    out = np.full((9, 4), np.nan)
    got = ops.rbf_forward(x, c, g, out=out)
    assert got is out
    assert_close(out, reference(x, c, g)[0], np.float64, k=7)


def test_finite_differences_float64(rng):
    n, d, u = 4, 5, 3
    x, c, g = inputs(rng, n, d, u, np.float64)
    w = rng.standard_normal((n, u))

    def loss():
        return float((w * ops.rbf_forward(x, c, g)).sum())

    y = ops.rbf_forward(x, c, g)
    dx, dc, dg = ops.rbf_backward(x, c, g, y, w)
    assert rel_err(dx, numeric_grad(loss, x)) < 1e-7
    assert rel_err(dc, numeric_grad(loss, c)) < 1e-7
    assert rel_err(dg, numeric_grad(loss, g)) < 1e-7


def test_point_on_a_center_is_exactly_one_not_above():
    c = np.array([[0.1, 0.7, 0.3, 0.9]])
    y = ops.rbf_forward(c.copy(), c, np.array([10.0]))
    assert 1.0 - 1e-14 <= y[0, 0] <= 1.0


def test_backward_optional_outputs_and_empty_batch(rng):
    x, c, g = inputs(rng, 6, 4, 3, np.float64)
    dy = rng.standard_normal((6, 3))
    y = ops.rbf_forward(x, c, g)
    full = ops.rbf_backward(x, c, g, y, dy)
    only = ops.rbf_backward(x, c, g, y, dy, need=("dgamma",))
    assert only[0] is None and only[1] is None
    np.testing.assert_allclose(only[2], full[2], rtol=1e-13)
    dx, dc, dg = ops.rbf_backward(x[:0], c, g, y[:0], dy[:0])
    assert dx.shape == (0, 4)
    np.testing.assert_array_equal(dc, 0)
    np.testing.assert_array_equal(dg, 0)
    assert ops.rbf_forward(x[:0], c, g).shape == (0, 3)


def test_bad_inputs_name_the_argument(rng):
    x, c, g = inputs(rng, 3, 4, 2, np.float64)
    with pytest.raises(ValueError, match="centers"):
        ops.rbf_forward(x, c[:, :3], g)
    with pytest.raises(ValueError, match="gamma"):
        ops.rbf_forward(x, c, g[:1])
    with pytest.raises(TypeError, match="gamma"):
        ops.rbf_forward(x, c, g.astype(np.float32))
    with pytest.raises(TypeError, match="gamma"):
        ops.rbf_forward(x, c, None)
    with pytest.raises(TypeError, match="x"):
        ops.rbf_forward(x.tolist(), c, g)
    with pytest.raises(ValueError, match="out"):
        ops.rbf_forward(x, c, g, out=np.empty((3, 3)))
    with pytest.raises(ValueError, match="out"):
        ops.rbf_forward(x, c, g, out=x[:, :2])  # overlaps x
    y = ops.rbf_forward(x, c, g)
    with pytest.raises(ValueError, match="dy"):
        ops.rbf_backward(x, c, g, y, np.ones((3, 3)))
    with pytest.raises(ValueError, match="y"):
        ops.rbf_backward(x, c, g, y[:2], np.ones((3, 2)))
    with pytest.raises(ValueError, match="dcenters"):
        ops.rbf_backward(x, c, g, y, np.ones((3, 2)), dcenters=np.empty((2, 3)))
    with pytest.raises(ValueError, match="need"):
        ops.rbf_backward(x, c, g, y, np.ones((3, 2)), need=("dw",))


# ---- the module ------------------------------------------------------------------------
def test_module_gradients_float64(rng):
    layer = RBF(5, 4, gamma=0.7, dtype="float64", rng=1)
    net = lw.nn.Sequential(layer, lw.nn.Linear(4, 3, dtype="float64", rng=2))
    X = rng.random((6, 5))
    y = np.array([0, 1, 2, 0, 1, 2])
    loss_fn = lw.nn.get_loss("softmax_cross_entropy")
    _, dout = loss_fn(net.forward(X), y)
    dx = net.backward(dout).copy()
    grads = [p.grad.copy() for p in net.parameters()]

    def f():
        return loss_fn(net.forward(X), y)[0]

    for p, gr in zip(net.parameters(), grads):
        assert rel_err(gr, numeric_grad(f, p.data)) < 1e-7, p.name
    assert rel_err(dx, numeric_grad(f, X)) < 1e-7
    assert layer.config() == {"type": "RBF", "in_features": 5, "units": 4}
    same = RBF.from_config(layer.config(), "float64")
    assert [p.shape for p in same.parameters()] == [p.shape for p in layer.parameters()]
    with pytest.raises(ValueError, match="RBF"):
        RBF.from_config({"type": "Linear"})
    assert [p.name for p in layer.parameters()] == ["centers", "log_gamma"]
    np.testing.assert_allclose(layer.gamma, 0.7)


def test_module_train_buffers_and_no_input_grad(rng):
    layer = RBF(3, 2, dtype="float32", rng=0)
    X = rng.random((4, 3)).astype(np.float32)
    y = layer.forward(X, train=True)
    assert layer.backward(np.ones_like(y), input_grad=False) is None
    assert np.all(layer.centers.grad != 0)
    with pytest.raises(ValueError, match="gamma"):
        RBF(3, 2, gamma=-1.0)
    with pytest.raises(ValueError, match="units"):
        RBF(3, 0)
    with pytest.raises(RuntimeError, match="forward"):
        RBF(3, 2).backward(np.ones((1, 2), np.float32))


def test_kmeans_centers_and_widths_from_cluster_spread():
    pytest.importorskip("sklearn", reason="k-means initialization needs the rbf extra (scikit-learn)")
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 5.0]])
    sigmas = np.array([0.1, 0.3, 0.5])
    X = np.concatenate([m + s * rng.standard_normal((400, 2)) for m, s in zip(means, sigmas)])
    layer = RBF(2, 3, dtype="float64").init_kmeans(X, seed=0, max_iter=20)
    order = [int(np.argmin(((layer.centers.data - m) ** 2).sum(1))) for m in means]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(layer.centers.data[order], means, atol=0.1)
    # spread = mean squared distance = 2 sigma^2 in 2-D, so gamma = 1 / (4 sigma^2)
    np.testing.assert_allclose(layer.gamma[order], 1 / (4 * sigmas ** 2), rtol=0.15)
    with pytest.raises(ValueError, match="X"):
        kmeans_centers(X[:2], 3)
    with pytest.raises(ValueError, match="X"):
        RBF(3, 3).init_kmeans(X)


def test_rbf_network_trains_with_fit():
    pytest.importorskip("sklearn", reason="k-means initialization needs the rbf extra (scikit-learn)")
    rng = np.random.default_rng(1)
    centers = rng.random((4, 8))
    y = rng.integers(0, 4, size=800)
    X = np.clip(centers[y] + 0.08 * rng.standard_normal((800, 8)), 0, 1).astype(np.float32)
    net = rbf_network(8, 12, 4, X_init=X[:600], seed=0)
    assert net.in_features == 8 and net.out_features == 4
    before = lw.train.error_rate(net, X[600:], y[600:])
    hist = lw.train.fit(net, X[:600], y[:600], lr=0.5, momentum=0.9, epochs=8, batch_size=32, progress=False)
    after = lw.train.error_rate(net, X[600:], y[600:])
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert after < 5.0 and after < before


def _cuda_or_skip():
    try:
        import cupy as cp
    except Exception as e:  # noqa: BLE001  (a broken CuPy install also skips)
        pytest.skip(f"CuPy is not importable ({e})")
    if not lw._core.cuda_compiled():
        pytest.skip("layerwise was built without the CUDA backend")
    try:
        gpus = cp.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001
        gpus = 0
    if lw._core.cuda_device_count() == 0 or gpus == 0:
        pytest.skip("no usable CUDA GPU or driver")
    return cp


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,d,u", [(1, 1, 1), (33, 70, 19), (257, 129, 300)])
def test_cuda_matches_cpu(rng, dtype, n, d, u):
    cp = _cuda_or_skip()
    x, c, g = inputs(rng, n, d, u, dtype)
    dy = rng.standard_normal((n, u)).astype(dtype)
    y = ops.rbf_forward(x, c, g)
    grads = ops.rbf_backward(x, c, g, y, dy)
    X, C, G, DY = (cp.asarray(a) for a in (x, c, g, dy))
    Y = ops.rbf_forward(X, C, G)
    got = ops.rbf_backward(X, C, G, Y, DY)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(Y), y, **tol)
    for name, a, b in zip(("dx", "dcenters", "dgamma"), got, grads):
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(cp.asnumpy(a) / scale, b / scale, err_msg=name, **tol)


def test_threaded_passes_match_one_thread(rng):
    # 200 x 400 outputs: enough elements for the row passes to split across threads.
    x, c, g = inputs(rng, 200, 50, 400, np.float64)
    dy = rng.standard_normal((200, 400))
    one = [ops.rbf_forward(x, c, g)]
    one += ops.rbf_backward(x, c, g, one[0], dy)
    ops.set_num_threads(2)
    try:
        two = [ops.rbf_forward(x, c, g)]
        two += ops.rbf_backward(x, c, g, two[0], dy)
    finally:
        ops.set_num_threads(1)
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    assert_close(one[0], reference(x, c, g)[0], np.float64, k=50)


# ---- the vectorized epilogue under every ISA --------------------------------------------
# Output widths around the SIMD widths (8 and 16 floats, 4 and 8 doubles), so every
# masked tail length of the exp epilogue runs; checked in a fresh interpreter per ISA
# (LAYERWISE_ISA is read once per process).
EPILOGUE_SHAPES = [(1, 1, 1), (3, 5, 7), (2, 9, 8), (5, 4, 9), (4, 31, 15), (6, 3, 16), (9, 17, 17),
                   (11, 70, 33), (1, 784, 1000)]


def _epilogue_child(isa):
    assert lw.backend_info()["isa"] == isa, lw.backend_info()["isa"]
    rng = np.random.default_rng(5)
    for dtype in (np.float32, np.float64):
        for n, d, u in EPILOGUE_SHAPES:
            x, c, g = inputs(rng, n, d, u, dtype)
            c[0] = x[0]  # a zero distance: the clamp keeps y at most 1 despite cancellation
            ref = reference(x, c, g)[0]
            y = ops.rbf_forward(x, c, g)
            assert_close(y, ref, dtype, k=d, err_msg=f"{isa} {np.dtype(dtype).name} {(n, d, u)}")
            assert float(y[0, 0]) <= 1.0 and abs(float(y[0, 0]) - 1.0) < (1e-5 if dtype == np.float32 else 1e-12)
            out = np.full((n, u + 3), np.nan, dtype=dtype)[:, 1:u + 1]  # strided out
            ops.rbf_forward(x, c, g, out=out)
            np.testing.assert_array_equal(out, y)
            # far from every center: exp underflows to 0, never to NaN or a negative value
            far = ops.rbf_forward(x + dtype(50.0), c, g * dtype(d))
            assert np.all(far >= 0) and np.all(np.isfinite(far))


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_forward_epilogue_under_each_isa(isa):
    import os
    import subprocess
    import sys
    from conftest import cpu_has
    if isa not in lw.backend_info()["isas_compiled"]:
        pytest.skip(f"{isa} not compiled in")
    if not cpu_has(isa):
        pytest.skip(f"CPU lacks {isa}")
    here = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys; sys.path.insert(0, {here!r}); import test_rbf as t; t._epilogue_child({isa!r})"
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, LAYERWISE_ISA=isa),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{isa}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def test_module_input_gradient_only_leaves_parameter_gradients(rng):
    layer = RBF(6, 9, gamma=0.4, dtype="float64", rng=1)
    x = rng.random((5, 6))
    dy = rng.standard_normal((5, 9))
    layer.forward(x, train=True)
    full = layer.backward(dy).copy()
    grads = [p.grad.copy() for p in layer.parameters()]
    for p in layer.parameters():
        p.grad.fill(7.0)
    layer.forward(x, train=True)
    only = layer.backward(dy, param_grad=False)
    np.testing.assert_array_equal(only, full)
    assert all(np.all(p.grad == 7.0) for p in layer.parameters())
    assert layer.backward(dy, input_grad=False, param_grad=False) is None
    layer.backward(dy)
    for p, g in zip(layer.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)


def test_least_squares_readout_solves_the_logit_regression():
    from layerwise.rbf import init_readout_least_squares
    rng = np.random.default_rng(6)
    X = rng.random((300, 5))
    y = rng.integers(0, 3, size=300)
    net = lw.nn.Sequential(RBF(5, 11, gamma=0.7, dtype="float64", rng=0), lw.nn.Linear(11, 3, dtype="float64", rng=1))
    init_readout_least_squares(net, X, y, confidence=0.8, ridge=0.0, batch_size=64)  # batches: 64 ... 44
    F = np.hstack([reference(X, net[0].centers.data, net[0].gamma)[0], np.ones((300, 1))])
    a = np.log(0.8 * 2 / 0.2)
    T = np.where(np.arange(3)[None, :] == y[:, None], a, 0.0)
    sol = np.linalg.lstsq(F, T, rcond=None)[0]
    np.testing.assert_allclose(net[1].weight.data, sol[:-1].T, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(net[1].bias.data, sol[-1], rtol=1e-6, atol=1e-8)
    # a separable problem is nearly solved before any gradient step
    centers = rng.random((4, 8))
    yb = rng.integers(0, 4, size=400)
    Xb = np.clip(centers[yb] + 0.05 * rng.standard_normal((400, 8)), 0, 1).astype(np.float32)
    pytest.importorskip("sklearn", reason="k-means initialization needs the rbf extra (scikit-learn)")
    net = rbf_network(8, 16, 4, X_init=Xb[:300], y_init=yb[:300], seed=0)
    assert lw.train.error_rate(net, Xb[300:], yb[300:]) < 5.0


def test_least_squares_readout_bad_inputs():
    from layerwise.rbf import init_readout_least_squares
    X, y = np.random.default_rng(0).random((20, 4)), np.arange(20) % 3
    net = lw.nn.Sequential(RBF(4, 6, rng=0), lw.nn.Linear(6, 3, rng=0))
    with pytest.raises(TypeError, match="net"):
        init_readout_least_squares(RBF(4, 6), X, y)
    with pytest.raises(ValueError, match="net"):
        init_readout_least_squares(lw.nn.Sequential(RBF(4, 6, rng=0), lw.nn.Linear(6, 3, activation="sigmoid")), X, y)
    with pytest.raises(ValueError, match="confidence"):
        init_readout_least_squares(net, X, y, confidence=1.0)
    with pytest.raises(ValueError, match="ridge"):
        init_readout_least_squares(net, X, y, ridge=-1.0)
    with pytest.raises(ValueError, match="y"):
        init_readout_least_squares(net, X, y + 1)
    with pytest.raises(ValueError, match="y"):
        init_readout_least_squares(net, X, y.astype(float))
    with pytest.raises(ValueError, match="X, y"):
        init_readout_least_squares(net, X, y[:5])
    with pytest.raises(ValueError, match="y_init"):
        rbf_network(4, 6, 3, y_init=y)


def test_network_exposes_trains_and_saves_the_rbf_parameters(tmp_path):
    net = rbf_network(5, 4, 3, gamma=0.5, seed=0)
    assert [n for n, _ in net.named_parameters()] == ["0.centers", "0.log_gamma", "1.weight", "1.bias"]
    rng = np.random.default_rng(8)
    X = rng.random((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=64)
    before = [p.data.copy() for p in net[0].parameters()]
    lw.train.fit(net, X, y, lr=0.5, momentum=0.9, epochs=2, batch_size=16, progress=False)
    for p, b in zip(net[0].parameters(), before):
        assert not np.array_equal(p.data, b), p.name  # fit trains centers and widths too
    path = tmp_path / "rbf.safetensors"
    lw.nn.save(net, path)
    back = lw.nn.load(path)
    for (na, a), (nb, b) in zip(net.named_parameters(), back.named_parameters()):
        assert na == nb
        np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(back.forward(X), net.forward(X))
