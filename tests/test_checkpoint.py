"""Checkpoints: fit and every greedy_* function, interrupted and resumed, end bitwise equal
to an uninterrupted run; the file format (atomic, no pickle) and its validation."""
import json
import os

import numpy as np
import pytest

from layerwise import checkpoint as ckpt
from layerwise import nn, optim, pretrain, train
from layerwise.atomic import write_atomic, write_json_atomic
from _lw_helpers import Stop, StopAfterWrites, _one_thread, prototypes  # noqa: F401  (fixture)


class CountingLoss:
    """A loss that raises Stop at its ``stop_at``-th call (None: never)."""

    def __init__(self, name, stop_at=None):
        self.fn, self.calls, self.stop_at = nn.get_loss(name), 0, stop_at

    def __call__(self, out, target):
        self.calls += 1
        if self.stop_at is not None and self.calls == self.stop_at:
            raise Stop()
        return self.fn(out, target)


@pytest.fixture(scope="module")
def data():
    X, y = prototypes(n=300, d=12)
    return X[:200], y[:200], X[200:], y[200:]


def _params(net):
    return [p.data.copy() for p in net.parameters()]


def _same_history(a, b):
    da, db = a.to_dict(), b.to_dict()
    da.pop("seconds"), db.pop("seconds")
    assert da == db


def _assert_same_params(a, b):
    assert len(a) == len(b)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)


def _fit_kwargs(Xv, yv):
    return dict(lr=0.3, momentum=0.9, epochs=5, batch_size=16, X_val=Xv, y_val=yv, patience=3, seed=7,
                progress=False, schedule=optim.ExponentialLR(0.9))


@pytest.mark.parametrize("every", [5, "epoch"])
@pytest.mark.parametrize("stop_at", [3, 20, 41])
def test_fit_resumed_equals_uninterrupted(data, tmp_path, every, stop_at):
    X, y, Xv, yv = data
    ref = nn.mlp([12, 10, 10, 4], seed=1, dropout=0.2)
    h_ref = train.fit(ref, X, y, loss=CountingLoss("softmax_cross_entropy"), **_fit_kwargs(Xv, yv))

    path = tmp_path / "fit.ckpt"
    net = nn.mlp([12, 10, 10, 4], seed=1, dropout=0.2)
    with pytest.raises(Stop):
        train.fit(net, X, y, loss=CountingLoss("softmax_cross_entropy", stop_at), checkpoint=path,
                  checkpoint_every=every, **_fit_kwargs(Xv, yv))
    fresh = nn.mlp([12, 10, 10, 4], seed=1, dropout=0.2)  # a new process: a new net
    h = train.fit(fresh, X, y, loss=CountingLoss("softmax_cross_entropy"), checkpoint=path,
                  checkpoint_every=every, resume=True, **_fit_kwargs(Xv, yv))
    _assert_same_params(_params(fresh), _params(ref))
    _same_history(h, h_ref)
    # The file of a finished run: fit returns its history and final weights at once.
    again = nn.mlp([12, 10, 10, 4], seed=99, dropout=0.2)
    h2 = train.fit(again, X, y, checkpoint=path, resume=True, **_fit_kwargs(Xv, yv))
    _assert_same_params(_params(again), _params(ref))
    _same_history(h2, h_ref)


def test_fit_resume_without_file_starts_afresh(data, tmp_path):
    X, y, Xv, yv = data
    a = nn.mlp([12, 8, 4], seed=0)
    train.fit(a, X, y, **_fit_kwargs(Xv, yv))
    b = nn.mlp([12, 8, 4], seed=0)
    train.fit(b, X, y, checkpoint=tmp_path / "none.ckpt", resume=True, **_fit_kwargs(Xv, yv))
    _assert_same_params(_params(a), _params(b))
    assert (tmp_path / "none.ckpt").exists()


def test_fit_resume_checks_the_run_matches(data, tmp_path):
    X, y, Xv, yv = data
    path = tmp_path / "c.ckpt"
    with pytest.raises(Stop):
        train.fit(nn.mlp([12, 8, 4]), X, y, loss=CountingLoss("softmax_cross_entropy", 5), checkpoint=path,
                  checkpoint_every=2, **_fit_kwargs(Xv, yv))
    with pytest.raises(ValueError, match="checkpoint: .*batches of 16, this run has 200 in batches of 8"):
        train.fit(nn.mlp([12, 8, 4]), X, y, checkpoint=path, resume=True, **{**_fit_kwargs(Xv, yv),
                                                                              "batch_size": 8})
    with pytest.raises(ValueError, match="checkpoint: parameters: array 0 has shape"):
        train.fit(nn.mlp([12, 9, 4]), X, y, checkpoint=path, resume=True, **_fit_kwargs(Xv, yv))
    with pytest.raises(ValueError, match="optimizer hyperparameters differ"):
        train.fit(nn.mlp([12, 8, 4]), X, y, checkpoint=path, resume=True, **{**_fit_kwargs(Xv, yv),
                                                                              "momentum": 0.5})
    with pytest.raises(ValueError, match="resume: needs checkpoint"):
        train.fit(nn.mlp([12, 8, 4]), X, y, resume=True, progress=False)
    with pytest.raises(ValueError, match="checkpoint_every"):
        train.fit(nn.mlp([12, 8, 4]), X, y, checkpoint=path, checkpoint_every=0, progress=False)


def test_checkpoint_file_is_npz_with_json_and_no_pickle(data, tmp_path):
    X, y, Xv, yv = data
    path = tmp_path / "c.ckpt"
    train.fit(nn.mlp([12, 8, 4]), X, y, checkpoint=path, **_fit_kwargs(Xv, yv))
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        assert all(z[k].dtype != object for k in z.files)
    assert meta["format"] == ckpt.FORMAT and meta["fit"]["finished"] is True
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # no temp file left behind
    (tmp_path / "junk.ckpt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable layerwise checkpoint"):
        ckpt.read(tmp_path / "junk.ckpt")


def test_atomic_write_keeps_the_old_file_on_error(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"a": 1})

    def half(f):
        f.write(b"{\"a\": ")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomic(path, half)
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["r.json"]


# ---- greedy pretraining -----------------------------------------------------------------------
def _greedy(kind, X, y, **kw):
    common = dict(epochs_per_layer=3, batch_size=16, seed=5, progress=False)
    if kind == "supervised":
        return pretrain.greedy_supervised([12, 10, 8, 4], X, y, lr=0.2, **common, **kw)
    if kind == "autoencoder":
        return pretrain.greedy_autoencoder([12, 10, 8, 4], X, noise=0.2, tied=True, **common, **kw)
    return pretrain.greedy_rbm([12, 10, 8, 4], X, lr=0.1, final_momentum=0.9, momentum_switch=1,
                               persistent=True, k=2, **common, **kw)


@pytest.mark.parametrize("kind", ["supervised", "autoencoder", "rbm"])
def test_greedy_resumed_equals_uninterrupted(data, tmp_path, monkeypatch, kind):
    X, y, _, _ = data
    ref_net, ref_info = _greedy(kind, X, y)
    # Count the writes of a whole checkpointed run, then stop at several points across it
    # (inside a layer, at a layer boundary, after the last layer) and resume once each.
    counter = StopAfterWrites(10**9)
    monkeypatch.setattr(ckpt, "write", counter)
    _greedy(kind, X, y, checkpoint=tmp_path / "count.ckpt", checkpoint_every=4)
    total = counter.count
    assert total > 10
    for n in sorted({1, 2, total // 3, total // 2, total - 1, total}):
        path = tmp_path / f"g{n}.ckpt"
        monkeypatch.setattr(ckpt, "write", StopAfterWrites(n))
        with pytest.raises(Stop):
            _greedy(kind, X, y, checkpoint=path, checkpoint_every=4)
        monkeypatch.setattr(ckpt, "write", StopAfterWrites(10**9))
        net, info = _greedy(kind, X, y, checkpoint=path, checkpoint_every=4, resume=True)
        _assert_same_params(_params(net), _params(ref_net))
        if kind == "rbm":
            assert info["reconstruction_error"] == ref_info["reconstruction_error"]
            for a, b in zip(info["rbms"], ref_info["rbms"]):
                _assert_same_params(_params(a), _params(b))
        else:
            for a, b in zip(info["histories"], ref_info["histories"]):
                _same_history(a, b)


def test_greedy_resume_rejects_another_runs_file(data, tmp_path):
    X, y, _, _ = data
    path = tmp_path / "s.ckpt"
    _greedy("supervised", X, y, checkpoint=path)
    with pytest.raises(ValueError, match="not a checkpoint of greedy_rbm"):
        _greedy("rbm", X, y, checkpoint=path, resume=True)


def test_atomic_write_honours_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = write_json_atomic(tmp_path / "r.json", [1])
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o640


@pytest.mark.parametrize("name", ["adam", "rmsprop", "nesterov"])
def test_fit_resumed_with_other_optimizers(data, tmp_path, name):
    X, y, Xv, yv = data
    kw = dict(optimizer=name, lr=0.01, epochs=3, batch_size=16, X_val=Xv, y_val=yv, seed=3, progress=False)
    ref = nn.mlp([12, 10, 4], seed=2)
    train.fit(ref, X, y, **kw)
    path = tmp_path / "o.ckpt"
    with pytest.raises(Stop):
        train.fit(nn.mlp([12, 10, 4], seed=2), X, y, loss=CountingLoss("softmax_cross_entropy", 17),
                  checkpoint=path, checkpoint_every=3, **kw)
    net = nn.mlp([12, 10, 4], seed=2)
    train.fit(net, X, y, checkpoint=path, checkpoint_every=3, resume=True, **kw)
    _assert_same_params(_params(net), _params(ref))
