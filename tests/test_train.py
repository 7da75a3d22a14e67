"""layerwise.train (fit, predict, evaluate) and layerwise.diagnostics."""
import numpy as np
import pytest

import layerwise as lw
from layerwise import nn, optim, train
from _lw_helpers import _one_thread, prototypes  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def data():
    X, y = prototypes(n=600)
    return X[:480], y[:480], X[480:], y[480:]


def test_fit_deep_sigmoid_net_learns(data):
    X, y, Xt, yt = data
    net = nn.mlp([16, 24, 24, 4], seed=0)
    h = train.fit(net, X, y, lr=0.5, momentum=0.9, epochs=10, progress=False)
    assert h.epochs == 10 and h.train_loss[-1] < h.train_loss[0]
    assert train.error_rate(net, Xt, yt) < 10.0
    assert h.error_unit == "percent" and len(h.lr) == len(h.seconds) == 10 and h.valid_error == []
    d = h.to_dict()
    assert d["train_error"] == h.train_error and d["best_epoch"] is None


def test_fit_is_deterministic(data):
    X, y, Xt, yt = data
    runs = []
    for _ in range(2):
        net = nn.mlp([16, 12, 4], seed=3, dropout=0.2)
        h = train.fit(net, X, y, lr=0.3, momentum=0.5, epochs=3, seed=11, X_val=Xt, y_val=yt, progress=False)
        runs.append((net, h))
    (a, ha), (b, hb) = runs
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    assert ha.train_loss == hb.train_loss and ha.valid_error == hb.valid_error
    c = nn.mlp([16, 12, 4], seed=3, dropout=0.2)
    train.fit(c, X, y, lr=0.3, momentum=0.5, epochs=3, seed=12, progress=False)
    assert not np.array_equal(c[0].weight.data, a[0].weight.data)  # the shuffling seed matters


def test_early_stopping_restores_best_weights(data):
    X, y, Xt, yt = data
    net = nn.mlp([16, 12, 4], seed=0)
    snapshots = []
    # A huge learning rate makes validation error bounce, so stopping triggers.
    h = train.fit(net, X, y, lr=30.0, epochs=30, X_val=Xt, y_val=yt, patience=2, progress=False,
                  callback=lambda e, hist: snapshots.append([p.data.copy() for p in net.parameters()]))
    assert h.stopped_early and h.epochs < 30
    assert h.best_epoch == int(np.argmin(h.valid_error))
    for p, s in zip(net.parameters(), snapshots[h.best_epoch]):
        np.testing.assert_array_equal(p.data, s)
    assert train.error_rate(net, Xt, yt) == pytest.approx(min(h.valid_error))


def test_callback_can_stop(data):
    X, y, _, _ = data
    h = train.fit(nn.mlp([16, 4]), X, y, epochs=5, progress=False, callback=lambda e, hist: e == 1)
    assert h.epochs == 2


def test_schedule_and_optimizer_arguments(data):
    X, y, _, _ = data
    h = train.fit(nn.mlp([16, 4]), X, y, lr=0.4, epochs=3, schedule=optim.StepLR(1, 0.5), progress=False)
    assert h.lr == pytest.approx([0.4, 0.2, 0.1])
    net = nn.mlp([16, 4])
    opt = optim.SGD(net.parameters(), 0.2, momentum=0.9, schedule=optim.ExponentialLR(0.5))
    h = train.fit(net, X, y, optimizer=opt, epochs=2, progress=False)
    assert h.lr == pytest.approx([0.2, 0.1]) and opt.velocity[0] is not None
    h = train.fit(nn.mlp([16, 4]), X, y, optimizer="nesterov", lr=0.1, epochs=1, progress=False)
    assert h.epochs == 1
    with pytest.raises(ValueError, match="optimizer"):
        train.fit(nn.mlp([16, 4]), X, y, optimizer="lbfgs", progress=False)


def test_quadratic_loss_with_labels_and_dense_targets(data):
    X, y, Xt, yt = data
    net = nn.mlp([16, 20, 4], output_activation="sigmoid", seed=1)
    h = train.fit(net, X, y, loss="quadratic", lr=2.0, momentum=0.5, epochs=10, progress=False)
    assert train.error_rate(net, Xt, yt) < 10.0 and h.error_unit == "percent"
    # Dense targets (an autoencoder): "error" is the mean loss.
    ae = nn.mlp([16, 8, 16], activation="sigmoid", output_activation="sigmoid", seed=2)
    h = train.fit(ae, X, X, loss="binary_cross_entropy", lr=1.0, momentum=0.5, epochs=5, X_val=Xt, y_val=Xt,
                  progress=False)
    assert h.error_unit == "loss" and h.train_error == h.train_loss
    assert h.train_loss[-1] < h.train_loss[0] and h.valid_error[-1] < h.valid_error[0]
    ev = train.evaluate(ae, Xt, Xt, loss="binary_cross_entropy")
    assert ev["error"] is None and ev["loss"] == pytest.approx(h.valid_error[-1], rel=1e-6)


def test_predict_and_evaluate(data):
    X, y, Xt, yt = data
    net = nn.mlp([16, 12, 4], seed=0)
    train.fit(net, X, y, lr=0.5, momentum=0.9, epochs=5, progress=False)
    p = train.predict_proba(net, Xt, batch_size=7)
    assert p.shape == (120, 4) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    labels = train.predict(net, Xt, batch_size=7)
    assert labels.dtype == np.int64 and np.array_equal(labels, p.argmax(axis=1))
    ev = train.evaluate(net, Xt, yt)
    assert ev["error"] == pytest.approx(train.error_rate(net, Xt, yt))
    assert ev["error"] == pytest.approx(100 * np.mean(labels != yt))
    onehot = np.eye(4)[yt]
    assert train.error_rate(net, Xt, onehot) == ev["error"]
    assert train.predict(net, Xt[:0]).shape == (0,)
    # float64 input to a float32 net is converted, not rejected
    assert np.array_equal(train.predict(net, Xt.astype(np.float64)), labels)


def test_single_output_binary_classifier(data):
    X, y, Xt, yt = data
    yb, ytb = (y % 2), (yt % 2)
    net = nn.mlp([16, 12, 1], output_activation="sigmoid", seed=0)
    train.fit(net, X, yb, loss="binary_cross_entropy", lr=1.0, momentum=0.5, epochs=10, progress=False)
    assert train.error_rate(net, Xt, ytb) < 15.0
    assert set(np.unique(train.predict(net, Xt))) <= {0, 1}


def test_bad_arguments(data):
    X, y, Xt, yt = data
    net = nn.mlp([16, 8, 4])
    kw = dict(epochs=1, progress=False)
    with pytest.raises(ValueError, match="y: has 479 samples but X has 480"):
        train.fit(net, X, y[:-1], **kw)
    with pytest.raises(ValueError, match="y: label 4 is out of range"):
        train.fit(net, X, np.where(y == 0, 4, y), **kw)
    with pytest.raises(ValueError, match="y: label -1"):
        train.fit(net, X, y - 1, **kw)
    with pytest.raises(ValueError, match="X: expected a 2-D"):
        train.fit(net, X[0], y[:1], **kw)
    with pytest.raises(ValueError, match="X: has 15 features but the net takes 16"):
        train.fit(net, X[:, :15], y, **kw)
    with pytest.raises(ValueError, match="y: softmax_cross_entropy needs 1-D integer class labels"):
        train.fit(net, X, np.eye(4)[y], **kw)
    with pytest.raises(ValueError, match="y: 1-D targets must be integer"):
        train.fit(net, X, y.astype(np.float32), **kw)
    with pytest.raises(ValueError, match="y: has 3 columns"):
        train.fit(net, X, np.zeros((480, 3)), loss="quadratic", **kw)
    with pytest.raises(ValueError, match="y_val: has"):
        train.fit(net, X, y, X_val=Xt, y_val=yt[:5], **kw)
    with pytest.raises(ValueError, match="y_val: must be of the same kind"):
        train.fit(net, X, y, loss="quadratic", X_val=Xt, y_val=np.eye(4)[yt], **kw)
    with pytest.raises(ValueError, match="patience"):
        train.fit(net, X, y, patience=2, **kw)
    with pytest.raises(ValueError, match="loss"):
        train.fit(net, X, y, loss="hinge", **kw)
    with pytest.raises(ValueError, match="batch_size"):
        train.fit(net, X, y, batch_size=0, **kw)
    with pytest.raises(ValueError, match="X: has 3 features"):
        train.predict(net, X[:, :3])


def test_progress_bar_runs(data, capsys):
    X, y, _, _ = data
    train.fit(nn.mlp([16, 4]), X, y, epochs=2, progress=True)
    assert "epoch" in capsys.readouterr().err


# ---- diagnostics ----------------------------------------------------------------------------
def test_vanishing_gradients_in_deep_sigmoid_net(data):
    X, y, _, _ = data
    net = nn.mlp([16, 24, 24, 24, 24, 4], seed=0)
    norms = lw.diagnostics.gradient_norms(net, X[:200], y[:200])
    assert len(norms) == 5 and all(n > 0 for n in norms)
    # Each sigmoid layer scales the backpropagated signal by at most 1/4: the lowest
    # layer's gradient is far smaller than the top one's.
    assert norms[0] < norms[-1] / 20
    h = train.fit(net, X, y, lr=0.1, epochs=2, diagnostics=True, progress=False)
    assert len(h.grad_norms) == 2 and len(h.grad_norms[0]) == 5


def test_layer_stats(data):
    X, _, _, _ = data
    net = nn.mlp([16, 24, 4], seed=0)
    s = lw.diagnostics.layer_stats(net, X)
    assert [d["shape"] for d in s] == [(24, 16), (4, 24)]
    assert 0 < s[0]["activation_mean"] < 1 and 0 <= s[0]["saturation"] <= 1 and s[1]["saturation"] == 0
    net[0].weight.data *= 100  # huge weights: sigmoid units saturate
    assert lw.diagnostics.layer_stats(net, X)[0]["saturation"] > 0.5


def test_patience_restores_best_even_without_stopping(data):
    X, y, Xt, yt = data
    net = nn.mlp([16, 12, 4], seed=0)
    snaps = []
    h = train.fit(net, X, y, lr=30.0, epochs=4, X_val=Xt, y_val=yt, patience=10, progress=False,
                  callback=lambda e, hist: snaps.append([p.data.copy() for p in net.parameters()]))
    assert not h.stopped_early and h.epochs == 4
    for p, s in zip(net.parameters(), snaps[h.best_epoch]):
        np.testing.assert_array_equal(p.data, s)
