"""layerwise.nn: layers, containers, gradients (finite differences), save/load, losses."""
import numpy as np
import pytest

import layerwise as lw
from layerwise import nn
from _lw_helpers import _one_thread, check_gradients, prototypes  # noqa: F401  (fixture)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ---- Linear ---------------------------------------------------------------------------
def test_linear_forward_matches_numpy():
    rng = np.random.default_rng(1)
    layer = nn.Linear(5, 3, activation="sigmoid", dtype="float64", rng=0)
    x = rng.normal(size=(4, 5))
    y = layer.forward(x)
    assert y.shape == (4, 3) and y.dtype == np.float64
    np.testing.assert_allclose(y, sigmoid(x @ layer.weight.data.T + layer.bias.data), rtol=1e-12)
    assert layer.weight.data.shape == (3, 5)


def test_linear_init_ranges():
    u = nn.Linear(100, 50, init="uniform", rng=0)
    assert np.abs(u.weight.data).max() <= 0.1 + 1e-7 and np.abs(u.weight.data).max() > 0.09
    g = nn.Linear(100, 50, init="glorot", activation="tanh", rng=0)
    r = np.sqrt(6 / 150)
    assert np.abs(g.weight.data).max() <= r + 1e-6 and np.all(g.bias.data == 0)
    gs = nn.Linear(100, 50, init="glorot", activation="sigmoid", rng=0)
    assert np.abs(gs.weight.data).max() > 2 * r  # the x4 sigmoid variant
    assert nn.Linear(3, 2, bias=False).parameters()[0].name == "weight"
    assert len(nn.Linear(3, 2, bias=False).parameters()) == 1


def test_linear_init_none_is_zeros_without_a_draw():
    rng = np.random.default_rng(5)
    lin = nn.Linear(3, 2, init=None, dtype="float64", rng=rng)
    np.testing.assert_array_equal(lin.weight.data, np.zeros((2, 3)))
    np.testing.assert_array_equal(lin.bias.data, np.zeros(2))
    assert lin.weight.data.dtype == np.float64 and lin.weight.grad.shape == (2, 3)
    assert rng.random() == np.random.default_rng(5).random()  # the generator was not advanced


def test_linear_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        nn.Linear(3, 2, activation="swish")
    with pytest.raises(ValueError, match="init"):
        nn.Linear(3, 2, init="orthogonal")
    with pytest.raises(ValueError, match="dtype"):
        nn.Linear(3, 2, dtype="float16")
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(0, 2)
    with pytest.raises(ValueError, match="device"):
        nn.Linear(3, 2, device="tpu")


def test_train_mode_reuses_buffers_eval_mode_does_not():
    net = nn.mlp([4, 6, 3], seed=0)
    x = np.ones((5, 4), np.float32)
    a = net.forward(x, train=True)
    b = net.forward(x, train=True)
    assert a is b  # preallocated per batch size
    c = net.forward(x)
    d = net.forward(x)
    assert c is not d and np.array_equal(c, d) and np.array_equal(a, c)


# ---- gradients: whole nets vs central differences (float64) --------------------------------
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_gradients_softmax_cross_entropy(activation):
    rng = np.random.default_rng(0)
    net = nn.mlp([5, 7, 6, 3], activation=activation, dtype="float64", seed=1)
    X = rng.normal(size=(4, 5))
    y = np.array([0, 2, 1, 2])
    check_gradients(net, X, y, "softmax_cross_entropy")


def test_gradients_quadratic():
    rng = np.random.default_rng(1)
    net = nn.mlp([5, 7, 6, 3], dtype="float64", output_activation="sigmoid", seed=2)
    X = rng.normal(size=(4, 5))
    T = rng.random((4, 3))
    check_gradients(net, X, T, "quadratic")
    check_gradients(net, X, np.array([0, 1, 2, 1]), "mse")  # labels -> one-hot targets


def test_gradients_binary_cross_entropy():
    rng = np.random.default_rng(2)
    net = nn.mlp([5, 7, 6, 3], dtype="float64", output_activation="sigmoid", seed=3)
    X = rng.normal(size=(4, 5))
    T = rng.random((4, 3))
    check_gradients(net, X, T, "binary_cross_entropy")


def test_gradients_separate_activation_layers_and_relu():
    rng = np.random.default_rng(3)
    lin = lambda i, o, r: nn.Linear(i, o, dtype="float64", rng=r)  # noqa: E731
    net = nn.Sequential(lin(4, 6, 0), nn.Tanh(), lin(6, 5, 1), nn.Sigmoid(), lin(5, 5, 2), nn.ReLU(),
                        lin(5, 3, 3), nn.Identity())
    X = rng.normal(size=(6, 4))
    check_gradients(net, X, np.array([0, 1, 2, 0, 1, 2]), "softmax_cross_entropy")


def test_threshold_has_zero_gradient():
    net = nn.Sequential(nn.Linear(3, 4, dtype="float64", rng=0), nn.Threshold(), nn.Linear(4, 2, dtype="float64", rng=1))
    X = np.random.default_rng(0).normal(size=(5, 3))
    out = net.forward(X)
    assert set(np.unique(net[1]._y)) <= {0.0, 1.0}
    _, d = nn.get_loss("softmax_cross_entropy")(out, np.zeros(5, int))
    assert np.all(net.backward(d) == 0) and np.all(net[0].weight.grad == 0)


def test_backward_overwrites_gradients():
    net = nn.mlp([3, 4, 2], dtype="float64", seed=0)
    X = np.random.default_rng(0).normal(size=(5, 3))
    loss = nn.get_loss("softmax_cross_entropy")
    for _ in range(2):
        _, d = loss(net.forward(X), np.zeros(5, int))
        net.backward(d)
        g = [p.grad.copy() for p in net.parameters()]
    _, d = loss(net.forward(X), np.zeros(5, int))
    net.backward(d)
    for p, gg in zip(net.parameters(), g):
        np.testing.assert_array_equal(p.grad, gg)
    net.zero_grad()
    assert all(np.all(p.grad == 0) for p in net.parameters())


def test_input_grad_false_returns_none():
    net = nn.mlp([3, 4, 2], seed=0)
    out = net.forward(np.ones((2, 3), np.float32), train=True)
    _, d = nn.get_loss("softmax_cross_entropy")(out, np.array([0, 1]))
    assert net.backward(d, input_grad=False) is None
    assert np.any(net[0].weight.grad != 0)


# ---- dropout ---------------------------------------------------------------------------------
def test_dropout_train_and_eval():
    d = nn.Dropout(0.25, seed=3)
    x = np.ones((200, 50), np.float32)
    assert d.forward(x) is x  # evaluation: identity
    y = d.forward(x, train=True).copy()
    vals = set(np.unique(y).tolist())
    assert vals <= {0.0, np.float32(1 / 0.75)}
    assert abs((y != 0).mean() - 0.75) < 0.02
    dx = d.backward(np.full_like(x, 2.0))
    np.testing.assert_allclose(dx, 2.0 * y)
    y2 = d.forward(x, train=True)
    assert not np.array_equal(y, y2)  # the counter advanced
    e = nn.Dropout(0.25, seed=3)
    np.testing.assert_array_equal(e.forward(x, train=True), y)  # same seed, same first mask
    with pytest.raises(ValueError, match="p"):
        nn.Dropout(1.0)


def test_mlp_with_dropout_layers():
    net = nn.mlp([4, 8, 8, 2], dropout=0.5)
    assert [type(m).__name__ for m in net] == ["Linear", "Dropout", "Linear", "Dropout", "Linear"]


# ---- containers and mlp ------------------------------------------------------------------------
def test_sequential_container():
    net = nn.mlp([4, 5, 6, 3], seed=0)
    assert len(net) == 3 and isinstance(net[0], nn.Linear) and net[-1].out_features == 3
    assert [m.out_features for m in net] == [5, 6, 3]
    head = net[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2
    assert head.out_features == 6 and net.in_features == 4
    net.append(nn.Linear(3, 2))
    assert len(net) == 4 and net.out_features == 2
    assert len(net.parameters()) == 8
    with pytest.raises(ValueError, match="chain"):
        net.append(nn.Linear(7, 2))
    with pytest.raises(TypeError):
        net.append("not a module")
    assert net.dtype == np.float32 and net.device == "cpu"
    assert net.to("cpu") is net


def test_mlp_arguments():
    net = nn.mlp([4, 5, 3], activation="tanh", output_activation="sigmoid", dtype="float64")
    assert [l.activation for l in net] == ["tanh", "sigmoid"] and net.dtype == np.float64
    with pytest.raises(ValueError, match="sizes"):
        nn.mlp([4])
    with pytest.raises(ValueError, match="sizes"):
        nn.mlp([4, 0, 3])
    with pytest.raises(ValueError, match="activation"):
        nn.mlp([4, 3], activation="gelu")
    with pytest.raises(ValueError, match="output_activation"):
        nn.mlp([4, 3], output_activation="softmax")


def test_mlp_is_deterministic_in_seed():
    a, b, c = nn.mlp([6, 5, 2], seed=7), nn.mlp([6, 5, 2], seed=7), nn.mlp([6, 5, 2], seed=8)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    assert not np.array_equal(a[0].weight.data, c[0].weight.data)


# ---- the module tree -------------------------------------------------------------------------
def test_children_walk_names_parameters_by_dotted_path():
    inner = nn.Sequential(nn.Linear(4, 3, rng=0), nn.Tanh(), nn.Linear(3, 2, bias=False, rng=1))
    net = nn.Sequential(nn.Linear(5, 4, rng=2), nn.Dropout(0.1), inner)
    named = net.named_parameters()
    assert [n for n, _ in named] == ["0.weight", "0.bias", "2.0.weight", "2.0.bias", "2.2.weight"]
    assert [p for _, p in named] == net.parameters()
    assert [p.shape for p in net.parameters()] == [(4, 5), (4,), (3, 4), (3,), (2, 3)]
    assert net.children() == [net[0], net[1], inner] and [n for n, _ in net.named_children()] == ["0", "1", "2"]
    assert net.walk() == [net, net[0], net[1], inner, inner[0], inner[1], inner[2]]
    assert net.layers() == [net[0], net[1], inner[0], inner[1], inner[2]]
    assert nn.linear_layers(net) == [net[0], inner[0], inner[2]]
    assert [n for n, _ in nn.Linear(2, 2).named_parameters()] == ["weight", "bias"]


@pytest.mark.parametrize("tied", [False, True])
def test_autoencoder_is_one_layer_with_children(tied):
    from layerwise.pretrain import AutoEncoder

    ae = AutoEncoder(5, 3, tied=tied, rng=0)
    names = [n for n, _ in ae.named_parameters()]
    assert names == ["encoder.weight", "encoder.bias"] + (["decoder_bias"] if tied else
                                                           ["decoder.weight", "decoder.bias"])
    assert ae.parameters() == [p for _, p in ae.named_parameters()]
    assert ae.layers() == [ae] and nn.linear_layers(ae) == []  # its forward is not a plain chain of them
    x = np.random.default_rng(0).uniform(size=(4, 5)).astype(np.float32)
    ae.forward(x, train=True)
    assert ae.encoder._x is not None
    ae.to("cpu")  # the walk drops every child's per-batch state as well
    assert ae.encoder._x is None and ae._xr is None and not ae.encoder._buf.sets


# ---- save / load ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_round_trip(tmp_path, dtype):
    pytest.importorskip("safetensors", reason="model files need safetensors, a dependency of layerwise")
    X, y = prototypes(n=64, d=10)
    net = nn.mlp([10, 12, 8, 4], dtype=dtype, seed=5, dropout=0.1)
    lw.train.fit(net, X, y, epochs=1, progress=False)
    path = tmp_path / "net"  # no extension: saved exactly there
    net.save(path)
    loaded = nn.load(path)
    assert loaded.config() == net.config() and loaded.dtype == net.dtype
    np.testing.assert_array_equal(loaded.forward(X.astype(dtype)), net.forward(X.astype(dtype)))
    np.testing.assert_array_equal(lw.train.predict(loaded, X), lw.train.predict(net, X))
    nn.save(net, tmp_path / "b.npz")
    assert nn.load(tmp_path / "b.npz").config() == net.config()


# ---- losses ------------------------------------------------------------------------------------
def test_get_loss():
    out = np.array([[0.2, 0.8], [0.6, 0.4]])
    t = np.array([[0.0, 1.0], [1.0, 0.0]])
    v, d = nn.get_loss("quadratic")(out, t)
    assert v == pytest.approx(((out - t) ** 2).sum() / 4)
    np.testing.assert_allclose(d, (out - t) / 2)
    assert nn.get_loss("mse") is nn.get_loss("quadratic")
    v2, _ = nn.get_loss("quadratic")(out, np.array([1, 0]))  # labels -> one-hot
    assert v2 == pytest.approx(v)
    v, _ = nn.get_loss("binary_cross_entropy")(out, t)
    assert v == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2 - (np.log(0.8) + np.log(0.6)) / 2)
    v, _ = nn.get_loss("softmax_cross_entropy")(out, np.array([1, 0]))
    assert v > 0
    with pytest.raises(ValueError, match="quadratic.*binary_cross_entropy.*softmax_cross_entropy"):
        nn.get_loss("hinge")


def test_activation_layer_classes():
    for cls, mode in ((nn.Sigmoid, "sigmoid"), (nn.Tanh, "tanh"), (nn.ReLU, "relu"), (nn.Threshold, "threshold"),
                      (nn.Identity, "identity")):
        layer = cls()
        assert isinstance(layer, nn.Activation) and layer.mode == mode and layer.parameters() == []
    with pytest.raises(ValueError, match="mode"):
        nn.Activation("softplus")
    x = np.array([[-1.0, 0.5]])
    np.testing.assert_allclose(nn.ReLU().forward(x), [[0.0, 0.5]])


@pytest.mark.skipif(lw.ops._cupy is not None, reason="CuPy present: 'cuda' is a valid device here")
def test_cuda_without_cupy_is_a_clear_error():
    with pytest.raises(RuntimeError, match="CuPy"):
        nn.mlp([3, 2]).to("cuda")
    with pytest.raises(RuntimeError, match="CuPy"):
        nn.Linear(3, 2, device="cuda")
