"""layerwise.native: C-held networks against the nn path, zero-copy views, and
model files shared between Python (the safetensors package) and C."""

import json

import numpy as np
import pytest

from layerwise import native, nn, optim


def _data(n, d, classes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, classes, n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_equals_nn_forward_bitwise(dtype):
    seq = nn.mlp([7, 9, 5, 3], activation="sigmoid", dtype=dtype, seed=1)
    X, _ = _data(13, 7, 3, dtype)
    expected = np.array(seq.forward(X))
    net = native.from_sequential(seq)
    assert np.array_equal(net.forward(X), expected)
    assert np.array_equal(seq.forward(X), expected)  # seq now runs on the network's memory


def test_views_share_memory_with_the_network_and_the_modules():
    seq = nn.mlp([4, 3, 2], dtype="float64", seed=2)
    net = native.from_sequential(seq)
    lin = nn.linear_layers(seq)
    for i, l in enumerate(lin):
        assert np.shares_memory(l.weight.data, net.weight(i))
        assert np.shares_memory(l.bias.data, net.bias(i))
    X, _ = _data(5, 4, 2, "float64")
    before = net.forward(X)
    lin[1].weight.data[0, 0] += 1.0  # nn writes ...
    assert not np.array_equal(net.forward(X), before)  # ... the network sees it
    w = net.weight(0)
    del net  # the view keeps the network alive
    assert w.shape == (3, 4) and np.isfinite(w).all()


def test_activation_modules_fuse_and_dropout_is_identity():
    seq = nn.Sequential(nn.Linear(5, 4, activation="identity", rng=0, dtype="float64"), nn.Activation("tanh"),
                        nn.Dropout(0.5, seed=0), nn.Linear(4, 2, activation="sigmoid", rng=1, dtype="float64"))
    X, _ = _data(6, 5, 2, "float64")
    expected = np.array(seq.forward(X))
    net = native.from_sequential(seq)
    assert net.activations == ["tanh", "sigmoid"]
    np.testing.assert_allclose(net.forward(X), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_train_step_equals_per_layer_fused_sgd_bitwise(momentum):
    ref = nn.mlp([6, 8, 5, 4], activation="sigmoid", dtype="float32", seed=3)
    seq = nn.mlp([6, 8, 5, 4], activation="sigmoid", dtype="float32", seed=3)
    net = native.from_sequential(seq)
    opt = optim.SGD(ref.parameters(), 0.1, momentum=momentum)
    loss_fn = nn.get_loss("softmax_cross_entropy")
    for step in range(4):
        X, y = _data(9 + step, 6, 4, "float32", seed=10 + step)
        out = ref.forward(X, train=True)
        value, dout = loss_fn(out, y)
        opt.backward_step(ref, dout)
        got = net.train_step(X, y, loss="softmax_cross_entropy", optimizer="sgd", lr=0.1, momentum=momentum)
        assert got == value
        for a, b in zip(nn.linear_layers(ref), nn.linear_layers(seq)):
            assert np.array_equal(a.weight.data, b.weight.data)
            assert np.array_equal(a.bias.data, b.bias.data)


def test_train_step_options_and_errors():
    net = native.NativeNetwork([3, 4, 2], ["sigmoid", "identity"], dtype="float64", seed=0)
    X, y = _data(5, 3, 2, "float64")
    net.set_option("input_gradient", True)
    net.set_option("gradient_norms", True)
    loss = net.train_step(X, y, optimizer="adam", lr=1e-3)
    assert loss > 0
    assert net.input_gradient().shape == (5, 3)
    norms = net.gradient_norms()
    assert len(norms) == 2 and all(v > 0 for v in norms)
    with pytest.raises(ValueError, match="class id"):
        net.train_step(X, np.array([0, 1, 2, 0, 1]))
    with pytest.raises(TypeError, match="X"):
        net.forward(X.astype(np.float32))
    with pytest.raises(ValueError, match="X"):
        net.forward(X[:, :2])
    with pytest.raises(ValueError, match="loss"):
        net.train_step(X, y, loss="hinge")
    with pytest.raises(ValueError, match="optimizer"):
        net.train_step(X, y, optimizer="lbfgs")
    with pytest.raises(ValueError, match="layer"):
        net.weight(2)
    with pytest.raises(ValueError, match="sizes"):
        native.NativeNetwork([3, 0], ["sigmoid"])
    with pytest.raises(ValueError, match="activations"):
        native.NativeNetwork([3, 2], ["swish"])
    class Custom(nn.Module):
        pass

    with pytest.raises(ValueError, match="Custom cannot be expressed"):
        native.from_sequential(nn.Sequential(nn.Linear(2, 2, rng=0), Custom()))


def test_save_load_round_trip_and_errors(tmp_path):
    net = native.NativeNetwork([5, 3, 2], ["relu", "identity"], bias=[True, False], dtype="float32", seed=4)
    path = tmp_path / "net.safetensors"
    net.save(path)
    back = native.NativeNetwork.load(path)
    assert back.sizes == [5, 3, 2] and back.activations == ["relu", "identity"]
    assert back.bias(1) is None
    X, _ = _data(4, 5, 2, "float32")
    assert np.array_equal(back.forward(X), net.forward(X))
    with pytest.raises(OSError, match="missing.safetensors"):
        native.NativeNetwork.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match="bad.safetensors"):
        native.NativeNetwork.load(bad)


def test_files_interoperate_with_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy", reason="safetensors, a dependency of layerwise is not installed")
    safe_open = pytest.importorskip("safetensors").safe_open
    # Python-trained (nn path) -> written by the safetensors package per the contract -> C loads it.
    seq = nn.mlp([6, 5, 3], activation="sigmoid", dtype="float32", seed=5)
    X, y = _data(40, 6, 3, "float32", seed=6)
    opt = optim.SGD(seq.parameters(), 0.2, momentum=0.9)
    loss_fn = nn.get_loss("softmax_cross_entropy")
    for _ in range(5):
        opt.backward_step(seq, loss_fn(seq.forward(X, train=True), y)[1])
    tensors = {}
    for i, l in enumerate(seq.modules):
        tensors[f"{i}.weight"] = np.ascontiguousarray(l.weight.data)
        tensors[f"{i}.bias"] = np.ascontiguousarray(l.bias.data)
    meta = {"format": "layerwise", "format_version": "1", "dtype": "float32", "architecture": json.dumps(seq.config())}
    path = tmp_path / "py.safetensors"
    st.save_file(tensors, str(path), metadata=meta)
    net = native.NativeNetwork.load(path)
    assert np.array_equal(net.forward(X), seq.forward(X))
    assert np.array_equal(net.forward(X).argmax(1), np.asarray(seq.forward(X)).argmax(1))
    # C-written files read back with the package, metadata included.
    out = tmp_path / "c.safetensors"
    net.save(out)
    loaded = st.load_file(str(out))
    assert sorted(loaded) == sorted(tensors)
    for k, v in tensors.items():
        assert np.array_equal(loaded[k], v)
    with safe_open(str(out), framework="numpy") as f:
        m = f.metadata()
    assert m["format"] == "layerwise" and m["format_version"] == "1" and m["dtype"] == "float32"
    assert json.loads(m["architecture"]) == seq.config()


# ---- the step in three parts: compute_gradients -> (allreduce) -> apply_gradients -----------
_HYPER = {"sgd": dict(lr=0.1, momentum=0.9, nesterov=True), "adam": dict(lr=1e-2, weight_decay=1e-3),
          "adamw": dict(lr=1e-2), "rmsprop": dict(lr=1e-3, momentum=0.5, centered=True),
          "adagrad": dict(lr=5e-2, initial_accumulator_value=0.1)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", sorted(_HYPER))
def test_compute_then_apply_equals_train_step(mode, dtype):
    nets = [native.NativeNetwork([6, 8, 5, 4], ["sigmoid", "tanh", "identity"], bias=[True, False, True],
                                 dtype=dtype, seed=4) for _ in range(2)]
    one, split = nets
    if mode == "sgd":  # train_step's SGD is fused unless gradient norms are recorded: compare that path
        one.set_option("gradient_norms", True)
    for step in range(4):
        X, y = _data(11, 6, 4, dtype, seed=20 + step)
        before = one.forward(X)
        v1 = one.train_step(X, y, optimizer=mode, **_HYPER[mode])
        v2 = split.compute_gradients(X, y)
        np.testing.assert_array_equal(split.output(), before)
        split.apply_gradients(mode, **_HYPER[mode])
        assert v1 == v2
        for i in range(3):
            assert np.array_equal(one.weight(i), split.weight(i))
        for i in (0, 2):
            assert np.array_equal(one.bias(i), split.bias(i))
            for a, b in zip(one.optimizer_state(i, "bias"), split.optimizer_state(i, 1)):
                assert np.array_equal(a, b)
    assert one.completed_steps == split.completed_steps == 4


def test_data_parallel_average_of_half_batches_is_the_full_batch_step():
    # Two workers with half the batch each, their gradients averaged in place (the allreduce),
    # then the update: the full-batch step up to summation order (mean losses over equal halves).
    full, w0, w1 = (native.NativeNetwork([5, 7, 3], ["sigmoid", "identity"], dtype="float64", seed=2)
                    for _ in range(3))
    X, y = _data(16, 5, 3, "float64", seed=3)
    for _ in range(3):
        full.compute_gradients(X, y)
        full.apply_gradients("adam", lr=1e-2)
        l0, l1 = w0.compute_gradients(X[:8], y[:8]), w1.compute_gradients(X[8:], y[8:])
        g0, g1 = w0.gradients(), w1.gradients()
        assert g0.ndim == 1 and g0.size == 5 * 7 + 7 + 7 * 3 + 3
        avg = (g0 + g1) / 2
        g0[...] = avg
        g1[...] = avg
        w0.apply_gradients("adam", lr=1e-2)
        w1.apply_gradients("adam", lr=1e-2)
    for i in range(2):
        np.testing.assert_allclose(w0.weight(i), full.weight(i), rtol=1e-12, atol=1e-14)
        assert np.array_equal(w0.weight(i), w1.weight(i))
    assert np.isfinite([l0, l1]).all()


def test_gradients_view_is_the_flat_layout_and_state_views_share_memory():
    net = native.NativeNetwork([3, 4, 2], ["relu", "identity"], bias=[True, False], dtype="float64", seed=0)
    X, y = _data(6, 3, 2, "float64")
    flat = net.gradients()
    net.compute_gradients(X, y)
    assert np.shares_memory(flat, net.gradients()) and flat.size == 3 * 4 + 4 + 4 * 2
    before = [net.weight(0).copy(), net.bias(0).copy(), net.weight(1).copy()]
    net.apply_gradients("sgd", lr=1.0)  # p -= g: read the layout off the update
    np.testing.assert_array_equal(net.weight(0), before[0] - flat[:12].reshape(4, 3))
    np.testing.assert_array_equal(net.bias(0), before[1] - flat[12:16])
    np.testing.assert_array_equal(net.weight(1), before[2] - flat[16:].reshape(2, 4))
    assert np.abs(flat).sum() > 0
    assert net.prepare_optimizer_state("rmsprop", momentum=0.9) == 2
    sq, buf = net.optimizer_state(1, "weight")
    assert sq.shape == (2, 4) and buf.shape == (2, 4) and not sq.any()
    assert net.optimizer_state(0, "bias")[0].shape == (4,)
    sq[...] = 1.0  # the network sees writes into the views
    assert net.optimizer_state(1, 0)[0].sum() == 8.0
    assert net.prepare_optimizer_state("sgd", lr=0.1) == 0 and net.optimizer_state(0, 0) == []


def test_split_errors():
    net = native.NativeNetwork([3, 4, 2], ["sigmoid", "identity"], bias=[True, False], seed=0)
    X, y = _data(5, 3, 2, "float32")
    with pytest.raises(RuntimeError, match="no lwNetworkComputeGradients"):
        net.apply_gradients("adam")
    with pytest.raises(RuntimeError, match="no training step"):
        net.output()
    with pytest.raises(ValueError, match="no optimizer state"):
        net.optimizer_state(0, 0)
    net.prepare_optimizer_state("adam")
    with pytest.raises(ValueError, match="layer 1 has no bias"):
        net.optimizer_state(1, "bias")
    with pytest.raises(ValueError, match="tensor"):
        net.optimizer_state(0, 2)
    with pytest.raises(ValueError, match="layer"):
        net.optimizer_state(5, 0)
    with pytest.raises(ValueError, match="class id"):
        net.compute_gradients(X, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="loss"):
        net.compute_gradients(X, y, loss="hinge")
    with pytest.raises(ValueError, match="completed_steps"):
        net.completed_steps = -1
    assert net.compute_gradients(X[:0], y[:0]) == 0.0
