"""layerwise.topology: saliency (float64 finite differences), physical unit removal, pruning rounds."""
import os

import numpy as np
import pytest

from layerwise import nn, topology, train


def _problem(n=600, seed=0):
    """Three classes in 10 dimensions, separable by a few directions (many units are spare)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5).astype(np.int64)
    return X, y


def _loss_with_replacement(net, X, y, layer_module, unit, mean, eps):
    """Summed loss when unit ``unit`` of module ``layer_module`` outputs a + eps * (mean - a)."""
    x = X
    for i, m in enumerate(net.modules):
        x = m.forward(x)
        if i == layer_module:
            x = x.copy()
            x[:, unit] += eps * (mean - x[:, unit])
    return nn.get_loss("softmax_cross_entropy")(x, y.astype(np.int32))[0] * X.shape[0]


def test_saliency_matches_finite_differences_in_float64():
    X, y = _problem(n=64)
    net = nn.mlp([10, 7, 5, 3], activation="sigmoid", dtype="float64", seed=1)
    train.fit(net, X, y, lr=0.5, epochs=3, batch_size=16, progress=False)
    scores = topology.unit_saliency(net, X, y)
    linear_modules = [i for i, m in enumerate(net.modules) if isinstance(m, nn.Linear)][:-1]
    eps = 1e-6
    for k, module in enumerate(linear_modules):
        saliency, means = scores[k]
        assert saliency.shape == (net.modules[module].out_features,)
        for j in range(len(saliency)):
            up = _loss_with_replacement(net, X, y, module, j, means[j], eps)
            down = _loss_with_replacement(net, X, y, module, j, means[j], -eps)
            assert saliency[j] == pytest.approx(abs(up - down) / (2 * eps), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_removing_a_constant_unit_leaves_outputs_unchanged(dtype):
    X, _ = _problem(n=50)
    net = nn.mlp([10, 6, 4, 3], dtype=dtype, seed=2, dropout=0.2)
    first = nn.linear_layers(net)[0]
    first.weight.data[3] = 0  # unit 3 ignores its input: its activation is the constant sigmoid(b_3)
    const = 1.0 / (1.0 + np.exp(-first.bias.data[3].astype(np.float64)))
    means = [np.full(6, const), np.zeros(4)]
    smaller = topology.remove_units(net, {0: [3]}, means)
    assert topology.hidden_sizes(smaller) == [5, 4]
    assert nn.linear_layers(smaller)[0].weight.shape == (5, 10)
    assert nn.linear_layers(smaller)[1].weight.shape == (4, 5)
    assert smaller.dtype == np.dtype(dtype)
    assert sum(isinstance(m, nn.Dropout) for m in smaller.modules) == 2
    x = X.astype(dtype)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(smaller.forward(x), net.forward(x), rtol=tol, atol=tol)


def test_remove_units_rejects_bad_indices():
    net = nn.mlp([4, 3, 2], seed=0)
    means = [np.zeros(3)]
    with pytest.raises(ValueError, match="every unit"):
        topology.remove_units(net, {0: [0, 1, 2]}, means)
    with pytest.raises(ValueError, match="indices"):
        topology.remove_units(net, {0: [5]}, means)


def test_prune_units_shrinks_within_tolerance_and_result_round_trips(tmp_path):
    X, y = _problem(n=900)
    Xt, yt, Xv, yv = X[:600], y[:600], X[600:], y[600:]
    net = nn.mlp([10, 24, 16, 3], activation="sigmoid", seed=0)
    train.fit(net, Xt, yt, lr=0.3, momentum=0.9, epochs=30, batch_size=32, progress=False)
    before = [p.data.copy() for p in net.parameters()]
    result = topology.prune_units(net, Xv, yv, X_train=Xt, y_train=yt, fraction=0.15, tolerance=1.0,
                                  stop_margin=3.0, max_rounds=8, finetune_epochs=2, lr=0.1)
    for p, b in zip(net.parameters(), before):  # the input net is left alone
        np.testing.assert_array_equal(p.data, b)
    curve = result.curve
    assert curve[0]["units"] == 40 and curve[0]["valid_error"] == result.baseline_error
    assert all(a["units"] > b["units"] for a, b in zip(curve, curve[1:]))
    kept = sum(topology.hidden_sizes(result.net))
    assert kept < 40
    assert train.error_rate(result.net, Xv, yv) <= result.baseline_error + 1.0
    assert result.units_removed_fraction == pytest.approx(1 - kept / 40)
    assert any(c["units"] == kept for c in curve)

    old = os.umask(0o022)
    try:
        result.save(tmp_path / "pruned")
    finally:
        os.umask(old)
    # written atomically, with the permissions a plain open() would give (not mkstemp's 0600)
    assert {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "pruned").iterdir()} == {
        "net.npz": 0o644, "pruning.json": 0o644}
    loaded = topology.PruneResult.load(tmp_path / "pruned")
    assert loaded.curve == curve and topology.hidden_sizes(loaded.net) == topology.hidden_sizes(result.net)
    x = Xv.astype(np.float32)
    np.testing.assert_array_equal(loaded.net.forward(x), result.net.forward(x))


def test_prune_units_checks_its_arguments():
    X, y = _problem(n=40)
    with pytest.raises(TypeError, match="net"):
        topology.prune_units(nn.Linear(10, 3), X, y)
    with pytest.raises(ValueError, match="hidden layer"):
        topology.prune_units(nn.mlp([10, 3]), X, y)
    with pytest.raises(ValueError, match="fraction"):
        topology.prune_units(nn.mlp([10, 4, 3]), X, y, fraction=1.5)
    with pytest.raises(ValueError, match="X_train, y_train"):
        topology.prune_units(nn.mlp([10, 4, 3]), X, y, X_train=X)
    with pytest.raises(ValueError, match="Linear and Dropout"):
        topology.prune_units(nn.Sequential(nn.Linear(10, 4), nn.Sigmoid(), nn.Linear(4, 3)), X, y)
