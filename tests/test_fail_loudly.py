"""fit fails loudly: divergence, non-finite data, Ctrl-C under early stopping, strict
argument checks; and the max-norm constraint."""
import numpy as np
import pytest

from layerwise import nn, train
from layerwise.train import TrainingDiverged
from _lw_helpers import _one_thread, prototypes  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def data():
    X, y = prototypes(n=300, d=12)
    return X[:200], y[:200], X[200:], y[200:]


def test_divergence_raises_with_epoch_and_batch_and_keeps_finite_weights(data):
    X, y, _, _ = data
    net = nn.mlp([12, 16, 4], seed=0)  # linear outputs, quadratic loss: a huge rate overflows
    with pytest.raises(TrainingDiverged, match=r"loss became (inf|nan) at epoch \d+, batch \d+") as ei:
        train.fit(net, X, X[:, :4], loss="quadratic", lr=1e3, momentum=0.9, epochs=20, progress=False)
    e = ei.value
    assert e.epoch >= 0 and (e.batch is None or e.batch >= 0)
    assert e.loss is None or not np.isfinite(e.loss)
    assert all(np.isfinite(p.data).all() for p in net.parameters())
    assert len(e.history.train_loss) == e.epoch  # the finished epochs


def test_divergence_restores_epoch_start_weights_when_the_weights_blew_up(data):
    X, y, _, _ = data
    net = nn.mlp([12, 8, 4], seed=0)
    start = [p.data.copy() for p in net.parameters()]
    calls = {"n": 0}

    def poisoned(out, target):  # a finite loss with an infinite gradient: the weights blow up
        value, d = nn.get_loss("softmax_cross_entropy")(out, target)
        calls["n"] += 1
        if calls["n"] == 3:
            d = d * np.float32(np.inf)
        return value, d

    with pytest.raises(TrainingDiverged, match="epoch 0") as ei:
        train.fit(net, X, y, loss=poisoned, lr=0.1, epochs=3, batch_size=20, progress=False)
    assert ei.value.epoch == 0
    for p, s in zip(net.parameters(), start):
        np.testing.assert_array_equal(p.data, s)


@pytest.mark.parametrize("where", ["X", "X_val"])
def test_non_finite_inputs_are_rejected_by_name(data, where):
    X, y, Xv, yv = data
    X, Xv = X.copy(), Xv.copy()
    (X if where == "X" else Xv)[3, 2] = np.nan
    with pytest.raises(ValueError, match=rf"^{where}: contains 1 non-finite"):
        train.fit(nn.mlp([12, 4]), X, y, X_val=Xv, y_val=yv, epochs=1, progress=False)


def test_non_finite_dense_targets_are_rejected_and_the_check_can_be_skipped(data):
    X, _, _, _ = data
    T = X[:, :4].copy()
    T[0, 0] = np.inf
    with pytest.raises(ValueError, match="^y: contains 1 non-finite"):
        train.fit(nn.mlp([12, 4]), X, T, loss="quadratic", epochs=1, progress=False)
    T[0, 0] = 0.5
    X2 = X.copy()
    X2[0, 0] = np.inf  # opted out: trains (and then diverges or not, the caller's business)
    try:
        train.fit(nn.mlp([12, 4]), X2, T, loss="quadratic", epochs=1, progress=False, check_finite=False)
    except TrainingDiverged:
        pass


def test_keyboard_interrupt_restores_best_weights_and_keeps_history(data):
    X, y, Xv, yv = data
    net = nn.mlp([12, 12, 4], seed=0)
    snapshots = []

    def cb(epoch, hist):
        snapshots.append([p.data.copy() for p in net.parameters()])

    calls = {"n": 0}
    per_epoch = 200 // 20 + 1  # training batches + one validation batch per epoch

    def loss(out, target):
        calls["n"] += 1
        if calls["n"] == 4 * per_epoch + 5:  # in the middle of the fifth epoch
            raise KeyboardInterrupt
        return nn.get_loss("softmax_cross_entropy")(out, target)

    with pytest.raises(KeyboardInterrupt) as ei:
        train.fit(net, X, y, loss=loss, lr=3.0, epochs=50, batch_size=20, X_val=Xv, y_val=yv, patience=50,
                  progress=False, callback=cb)
    h = ei.value.history
    assert h.epochs == 4 and h.best_epoch == int(np.argmin(h.valid_error))
    for p, s in zip(net.parameters(), snapshots[h.best_epoch]):
        np.testing.assert_array_equal(p.data, s)


@pytest.mark.parametrize("kw, msg", [
    (dict(epochs=2.7), "epochs: expected an integer"),
    (dict(epochs=True), "epochs: expected an integer"),
    (dict(epochs=-1), "epochs: must be >= 0"),
    (dict(momentum=1.0), "momentum: must be < 1"),
    (dict(momentum=-0.1), "momentum: must be >= 0"),
    (dict(seed=-1), "seed: must be >= 0"),
    (dict(seed=1.5), "seed: expected an integer"),
    (dict(lr=0.0), "lr: must be > 0"),
    (dict(lr=float("nan")), "lr: must be finite"),
    (dict(weight_decay=-1e-3), "weight_decay: must be >= 0"),
    (dict(batch_size=0), "batch_size"),
    (dict(max_norm=0.0), "max_norm: must be > 0"),
    (dict(checkpoint_every="often"), "checkpoint_every"),
])
def test_arguments_are_validated_by_name(data, kw, msg):
    X, y, _, _ = data
    with pytest.raises(ValueError, match=msg):
        train.fit(nn.mlp([12, 4]), X, y, progress=False, **kw)


@pytest.mark.parametrize("fn", ["greedy_supervised", "greedy_autoencoder", "greedy_rbm"])
def test_greedy_functions_validate_seed_and_epochs(data, fn):
    from layerwise import pretrain

    X, y, _, _ = data
    f = getattr(pretrain, fn)
    args = ([12, 8, 4], X, y) if fn == "greedy_supervised" else ([12, 8, 4], X)
    with pytest.raises(ValueError, match="seed"):
        f(*args, seed=-3, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        f(*args, epochs_per_layer=1.5, progress=False)


def test_max_norm_bounds_every_units_incoming_weights(data):
    X, y, _, _ = data
    free = nn.mlp([12, 16, 4], seed=0)
    train.fit(free, X, y, lr=2.0, momentum=0.9, epochs=3, progress=False)
    norms = [np.linalg.norm(l.weight.data, axis=1).max() for l in nn.linear_layers(free)]
    c = 0.5 * min(norms)  # a bound the unconstrained run exceeds in every layer
    net = nn.mlp([12, 16, 4], seed=0)
    calls = {"n": 0}

    def check(epoch, hist):
        calls["n"] += 1
        for l in nn.linear_layers(net):
            assert np.linalg.norm(l.weight.data.astype(np.float64), axis=1).max() <= c * (1 + 1e-6)

    train.fit(net, X, y, lr=2.0, momentum=0.9, epochs=3, progress=False, max_norm=c, callback=check)
    assert calls["n"] == 3
    # Rows at the bound are rescaled onto it, not below (the constraint is a projection).
    n = np.linalg.norm(nn.linear_layers(net)[0].weight.data, axis=1)
    assert np.isclose(n.max(), c, rtol=1e-5)
