"""train.fit on the one-call native step (layerwise.fit_step) against the Python path:
every optimizer, float32 and float64, the dense losses, resume from a checkpoint,
optimizer state_dict, and the nets, losses and optimizers that fall back."""
import numpy as np
import pytest

from layerwise import _core, checkpoint as ckpt, fit_step, nn, optim, train
from _lw_helpers import Stop, StopAfterWrites, _one_thread, prototypes  # noqa: F401  (fixture)

OPTIMIZERS = {
    "sgd": lambda p: optim.SGD(p, 0.3),
    "sgd_momentum_wd_step_schedule": lambda p: optim.SGD(p, 0.1, momentum=0.9, weight_decay=1e-3,
                                                         schedule=optim.StepLR(1, 0.5)),
    "sgd_nesterov": lambda p: optim.SGD(p, 0.1, momentum=0.8, nesterov=True),
    "adam": lambda p: optim.Adam(p, 1e-2, weight_decay=1e-3),
    "adamw": lambda p: optim.AdamW(p, 1e-2, schedule=optim.ExponentialLR(0.7)),
    "rmsprop": lambda p: optim.RMSprop(p, 2e-3, momentum=0.5, centered=True, weight_decay=1e-4),
    "adagrad": lambda p: optim.Adagrad(p, 5e-2, lr_decay=1e-3, initial_accumulator_value=0.1),
}


@pytest.fixture(scope="module")
def data():
    X, y = prototypes(n=260, d=12)
    return X[:200], y[:200], X[200:], y[200:]


def _net(dtype="float32", **kw):
    return nn.mlp([12, 10, 7, 4], seed=3, dtype=dtype, **kw)


def _on_native_memory(net):
    """Whether the net's Linear layers were rebound to a NativeNetwork's memory (the native path ran)."""
    return all(isinstance(layer.weight.data.base, _core.Network) for layer in nn.linear_layers(net))


def _fit(data, name, dtype, native, **kw):
    X, y, Xv, yv = data
    net = _net(dtype)
    opt = OPTIMIZERS[name](net.parameters())
    kw = {**dict(optimizer=opt, epochs=3, batch_size=16, X_val=Xv, y_val=yv, progress=False), **kw}
    hist = train.fit(net, X, y, native=native, **kw)
    return net, opt, hist


def _same_params(a, b):
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def _same_state(a, b):
    assert a["type"] == b["type"] and a["hyper"] == b["hyper"] and a["step"] == b["step"]
    assert len(a["state"]) == len(b["state"])
    for sa, sb in zip(a["state"], b["state"]):
        assert sorted(sa) == sorted(sb)
        for k in sa:
            np.testing.assert_array_equal(sa[k], sb[k])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_native_fit_is_bitwise_the_python_fit(data, name, dtype):
    # SGD: lwNetworkTrainStep's fused sweep issues the calls of optim.SGD.backward_step; the other
    # optimizers: compute_gradients + apply_gradients issue those of net.backward + opt.step().
    a, opt_a, ha = _fit(data, name, dtype, None)
    b, opt_b, hb = _fit(data, name, dtype, False)
    assert _on_native_memory(a) and not _on_native_memory(b)
    _same_params(a, b)
    assert ha.train_loss == hb.train_loss and ha.train_error == hb.train_error
    assert ha.valid_error == hb.valid_error and ha.lr == hb.lr
    assert not np.array_equal(a.parameters()[0].data, _net(dtype).parameters()[0].data)  # it trained
    _same_state(opt_a.state_dict(), opt_b.state_dict())


@pytest.mark.parametrize("loss,targets", [("quadratic", "labels"), ("mse", "dense"),
                                          ("binary_cross_entropy", "dense")])
def test_dense_losses_with_labels_or_dense_targets(data, loss, targets):
    X, y, _, _ = data
    Y = y if targets == "labels" else np.eye(4, dtype=np.float32)[y] * 0.8 + 0.1
    out_act = "sigmoid" if loss == "binary_cross_entropy" else "identity"
    nets = []
    for native in (True, False):
        net = _net(output_activation=out_act)
        opt = optim.Adam(net.parameters(), 1e-2)
        nets.append((net, train.fit(net, X, Y, loss=loss, optimizer=opt, epochs=2, batch_size=32,
                                    progress=False, native=native)))
    (a, ha), (b, hb) = nets
    assert _on_native_memory(a)
    _same_params(a, b)
    assert ha.train_loss == hb.train_loss and ha.train_error == hb.train_error


def test_fit_builds_sgd_from_keywords_and_activation_modules_fuse_with_max_norm_and_diagnostics(data):
    X, y, _, _ = data
    runs = []
    for native in (None, False):
        net = nn.Sequential(nn.Linear(12, 9, rng=1), nn.Tanh(), nn.Dropout(0.0), nn.Linear(9, 4, rng=2))
        h = train.fit(net, X, y, lr=0.2, momentum=0.9, nesterov=True, weight_decay=1e-4, epochs=2,
                      progress=False, native=native, max_norm=1.5, diagnostics=True)
        runs.append((net, h))
    (a, ha), (b, hb) = runs
    assert _on_native_memory(a)
    _same_params(a, b)
    assert ha.train_loss == hb.train_loss and ha.grad_norms == hb.grad_norms and len(ha.grad_norms) == 2
    assert all(np.linalg.norm(layer.weight.data, axis=1).max() <= 1.5 + 1e-6 for layer in nn.linear_layers(a))


@pytest.mark.parametrize("name", ["sgd_momentum_wd_step_schedule", "adam", "adagrad"])
def test_resume_mid_run_equals_uninterrupted_on_the_native_path(data, tmp_path, monkeypatch, name):
    ref, opt_ref, h_ref = _fit(data, name, "float32", True)
    path = tmp_path / "fit.ckpt"
    monkeypatch.setattr(ckpt, "write", StopAfterWrites(3))  # mid-epoch 1 (every 5 of 13 batches)
    with pytest.raises(Stop):
        _fit(data, name, "float32", True, checkpoint=path, checkpoint_every=5)
    monkeypatch.undo()
    net, opt, h = _fit(data, name, "float32", True, checkpoint=path, checkpoint_every=5, resume=True)
    assert _on_native_memory(net)
    _same_params(net, ref)
    assert h.train_loss == h_ref.train_loss and h.valid_error == h_ref.valid_error
    _same_state(opt.state_dict(), opt_ref.state_dict())


def test_a_second_fit_continues_from_the_optimizer_state(data):
    # The state arrays the first fit bound to its network are copied into the second's.
    X, y, _, _ = data
    runs = []
    for native in (True, False):
        net = _net()
        opt = optim.RMSprop(net.parameters(), 1e-3, momentum=0.3)
        for _ in range(2):
            train.fit(net, X, y, optimizer=opt, epochs=1, progress=False, native=native)
        runs.append((net, opt))
    _same_params(runs[0][0], runs[1][0])
    _same_state(runs[0][1].state_dict(), runs[1][1].state_dict())


def test_ineligible_nets_losses_and_optimizers_fall_back(data):
    X, y, _, _ = data
    net = _net()
    opt = optim.SGD(net.parameters(), 0.1)
    assert fit_step.make_step(net, opt, "softmax_cross_entropy").native
    cases = [
        (_net(dropout=0.5), "softmax_cross_entropy", None, "Dropout with p=0.5"),
        (_net(), nn.get_loss("softmax_cross_entropy"), None, "callable"),
        (nn.Linear(12, 4), "softmax_cross_entropy", None, "not an nn.Sequential"),
        (_net(), "softmax_cross_entropy", "subset", "exactly the net's parameters"),
    ]
    for net, loss, which, why in cases:
        params = net.parameters()
        opt = optim.Adam(params[:1] if which == "subset" else params)
        step = fit_step.make_step(net, opt, loss)
        assert not step.native and why in step.why_not
        with pytest.raises(ValueError, match=f"^native: .*{why}"):
            fit_step.make_step(net, opt, loss, native=True)
        # fit trains them on the Python path
        train.fit(net, X, y, loss=loss, optimizer=opt, epochs=1, progress=False)
        assert not _on_native_memory(net) if isinstance(net, nn.Sequential) else True
    with pytest.raises(TypeError, match="^native:"):
        fit_step.make_step(_net(), optim.SGD(_net().parameters(), 0.1), "quadratic", native="yes")
    # Adversarial training wraps the net: the Python path, and native=True says why.
    train.fit(_net(), X, y, adversarial=dict(eps=0.1, alpha=0.5), epochs=1, progress=False)
    with pytest.raises(ValueError, match="^native: "):
        train.fit(_net(), X, y, adversarial=dict(eps=0.1, alpha=0.5), epochs=1, progress=False, native=True)


def test_divergence_on_the_native_path_keeps_finite_weights(data):
    X, y, _, _ = data
    for opt_fn in (lambda p: optim.SGD(p, 1e3, momentum=0.9), lambda p: optim.Adam(p, 1e20)):
        net = nn.mlp([12, 16, 4], seed=0)
        with pytest.raises(train.TrainingDiverged):
            train.fit(net, X, X[:, :4] * 1e3, loss="quadratic", optimizer=opt_fn(net.parameters()), epochs=30,
                      progress=False, native=True)
        assert all(np.isfinite(p.data).all() for p in net.parameters())


def test_load_state_dict_between_steps_rebinds_the_network_state(data):
    # The step notices replaced state arrays and copies them in; an emptied state restarts.
    X, y, _, _ = data
    results = []
    for native in (True, False):
        net = _net()
        opt = optim.Adam(net.parameters(), 1e-2)
        step = fit_step.make_step(net, opt, "softmax_cross_entropy", native=native)
        saved = None
        for k in range(6):
            xb, yb = X[16 * k:16 * k + 16], y[16 * k:16 * k + 16].astype(np.int32)
            step(xb, yb)
            if k == 1:
                saved = opt.state_dict()
            if k == 3:
                opt.load_state_dict(saved)
            if k == 4:
                opt.load_state_dict({**saved, "state": [{} for _ in saved["state"]], "step": 0})
        results.append((net, opt))
    assert results[0][0] is not results[1][0]
    _same_params(results[0][0], results[1][0])
    _same_state(results[0][1].state_dict(), results[1][1].state_dict())
