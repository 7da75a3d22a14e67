"""layerwise.train -- minibatch SGD training, evaluation and prediction.

    net = layerwise.nn.mlp([784, 100, 10])
    hist = layerwise.train.fit(net, X, y, lr=0.5, momentum=0.9, epochs=10, batch_size=32,
                               X_val=Xv, y_val=yv, patience=3)

Targets are either class labels (1-D integers; every loss takes them, the dense
losses one-hot encode them) or dense arrays (n, outputs) for the quadratic and
binary cross-entropy losses (regression, autoencoders). "Error" means the
classification error in percent for class labels, and the mean loss for dense
targets (there are no classes to count).
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from . import nn, optim
from .nn import array_module, to_device

__all__ = ["History", "fit", "predict", "predict_proba", "error_rate", "evaluate", "prepare_data"]


@dataclass
class History:
    """Per-epoch record of a ``fit`` run (lists indexed by epoch).

    train_loss / train_error: averaged over the epoch's minibatches while the weights
    were changing (what the training loop saw, no extra pass); valid_error: on
    (X_val, y_val) after the epoch (empty without validation data); lr: the learning
    rate used; seconds: wall time of the epoch's training steps; grad_norms: with
    ``diagnostics=True``, per-layer weight-gradient norms after each epoch; best_epoch:
    the epoch (0-based) with the lowest validation error (None without validation)."""

    train_loss: list = field(default_factory=list)
    train_error: list = field(default_factory=list)
    valid_error: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    grad_norms: list = field(default_factory=list)
    best_epoch: Optional[int] = None
    stopped_early: bool = False
    error_unit: str = "percent"

    @property
    def epochs(self):
        return len(self.train_loss)

    def to_dict(self):
        return asdict(self)


# ---- input checking ---------------------------------------------------------------------
def _features(net):
    """(in_features, out_features) of a net, None where unknown."""
    return getattr(net, "in_features", None), getattr(net, "out_features", None)


def _net_placement(net):
    dtype = net.dtype if net.dtype is not None else np.dtype(np.float32)
    device = net.device or "cpu"
    return dtype, device


def prepare_data(net, X, y=None, *, loss="softmax_cross_entropy", names=("X", "y")):
    """Checks and converts (X, y) for ``net``: X to the net's dtype and device (2-D,
    C-contiguous), y to int32 labels or to dense targets of the net's dtype.

    Returns ``(X, y, is_labels)``. Raises ValueError naming the bad argument."""
    nx, ny = names
    dtype, device = _net_placement(net)
    n_in, n_out = _features(net)
    if X is None:
        raise ValueError(f"{nx}: expected an array, got None")
    xp_in = array_module(X)
    X = xp_in.asarray(X) if xp_in is not np else np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{nx}: expected a 2-D array (samples, features), got shape {tuple(X.shape)}")
    if X.dtype.kind not in "fiub":
        raise ValueError(f"{nx}: expected numbers, got dtype {X.dtype}")
    if n_in is not None and X.shape[1] != n_in:
        raise ValueError(f"{nx}: has {X.shape[1]} features but the net takes {n_in}")
    X = to_device(X, device)
    xp = array_module(X)
    X = xp.ascontiguousarray(X, dtype=dtype)
    if y is None:
        return X, None, False
    y = array_module(y).asarray(y) if array_module(y) is not np else np.asarray(y)
    if y.shape[:1] != X.shape[:1]:
        raise ValueError(f"{ny}: has {y.shape[0] if y.ndim else 0} samples but {nx} has {X.shape[0]}")
    lname = nn.loss_name(loss)
    if y.ndim == 1:
        if y.dtype.kind not in "iu":
            raise ValueError(f"{ny}: 1-D targets must be integer class labels, got dtype {y.dtype}")
        if n_out is not None and y.size:
            lo, hi = int(y.min()), int(y.max())
            classes = 2 if n_out == 1 else n_out
            if lo < 0 or hi >= classes:
                bad = lo if lo < 0 else hi
                raise ValueError(f"{ny}: label {bad} is out of range [0, {classes}) for a net with "
                                 f"{n_out} outputs")
        y = xp.ascontiguousarray(to_device(y, device), dtype=xp.int32)
        return X, y, True
    if lname == "softmax_cross_entropy":
        raise ValueError(f"{ny}: softmax_cross_entropy needs 1-D integer class labels, got shape "
                         f"{tuple(y.shape)}")
    if y.ndim != 2:
        raise ValueError(f"{ny}: expected 1-D class labels or 2-D targets, got shape {tuple(y.shape)}")
    if n_out is not None and y.shape[1] != n_out:
        raise ValueError(f"{ny}: has {y.shape[1]} columns but the net has {n_out} outputs")
    y = xp.ascontiguousarray(to_device(y, device), dtype=dtype)
    return X, y, False


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    return int(v)


def _count_wrong(out, labels, at_zero):
    """Misclassified rows of a batch (stays on the device: no sync per batch)."""
    xp = array_module(out)
    if out.shape[1] == 1:  # one output unit: a binary classifier, like predict()
        return xp.count_nonzero((out[:, 0] > (0.0 if at_zero else 0.5)) != labels)
    return xp.count_nonzero(out.argmax(axis=1) != labels)


def _threshold_at_zero(net):
    """A single-output net thresholds at 0 when its output layer is linear (or tanh), else at 0.5."""
    ls = nn.linear_layers(net)
    return bool(ls) and ls[-1].activation in ("identity", "tanh")


# ---- training ---------------------------------------------------------------------------
def fit(net, X, y, *, loss="softmax_cross_entropy", optimizer=None, lr=None, momentum=0.0, weight_decay=0.0,
        nesterov=False, schedule=None, epochs=10, batch_size=32, X_val=None, y_val=None, patience=None,
        seed=0, progress=None, diagnostics=False, callback=None) -> History:
    """Trains ``net`` with minibatch SGD on (X, y); returns a History.

    loss: "softmax_cross_entropy" (net outputs logits, y class labels), "quadratic"/"mse"
        or "binary_cross_entropy" (y class labels or dense targets), or a callable
        ``(output, target) -> (loss, doutput)``.
    optimizer: None (SGD built from lr, momentum, weight_decay, nesterov, schedule), a name
        for optim.make_optimizer ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop",
        "adagrad"; given with the same keywords, where lr, weight_decay, momentum and nesterov
        left at None/0/False keep that optimizer's own defaults), or an optimizer object with
        ``set_epoch(epoch)`` and ``step()`` (e.g. optim.SGD, optim.Adam).
    lr: learning rate; None means 0.1 for SGD and the named optimizer's default otherwise.
    epochs, batch_size: every epoch visits the samples once in an order drawn from a numpy
        Generator seeded with ``seed`` (the last batch may be smaller).
    X_val, y_val: validation data, evaluated after every epoch.
    patience: early stopping -- stop after ``patience`` epochs without a new lowest validation
        error; at the end (stopped early or not) the weights of the best epoch are restored.
        Needs validation data. Without patience the final weights are kept (best_epoch is
        still recorded).
    progress: tqdm bar (samples of all epochs; postfix: epoch, loss, validation error);
        None = only when stderr is a terminal; False = off.
    diagnostics: record per-layer gradient norms (on up to 256 training samples) after each epoch.
    callback: ``callback(epoch, history)`` after each epoch; returning True stops training.
    """
    epochs = int(epochs)
    if epochs < 0:
        raise ValueError(f"epochs: must be >= 0, got {epochs}")
    batch_size = _positive_int("batch_size", batch_size)
    loss_fn = nn.get_loss(loss)
    X, y, labels = prepare_data(net, X, y, loss=loss)
    have_val = X_val is not None or y_val is not None
    if have_val:
        if X_val is None or y_val is None:
            raise ValueError("X_val, y_val: give both or neither")
        X_val, y_val, val_labels = prepare_data(net, X_val, y_val, loss=loss, names=("X_val", "y_val"))
        if val_labels != labels:
            raise ValueError("y_val: must be of the same kind as y (class labels, or dense targets)")
    if patience is not None:
        patience = _positive_int("patience", patience)
        if not have_val:
            raise ValueError("patience: early stopping needs validation data (X_val, y_val)")
    params = net.parameters()
    if optimizer is None:
        opt = optim.SGD(params, 0.1 if lr is None else lr, momentum=momentum, weight_decay=weight_decay,
                        nesterov=nesterov, schedule=schedule)
    elif isinstance(optimizer, str):
        kw = dict(schedule=schedule)
        if lr is not None:
            kw["lr"] = lr
        if weight_decay:
            kw["weight_decay"] = weight_decay
        if momentum:
            kw["momentum"] = momentum
        if nesterov:
            kw["nesterov"] = nesterov
        opt = optim.make_optimizer(optimizer, params, **kw)
    else:
        opt = optimizer

    xp = array_module(X)
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    # optim.SGD can run backward and update as one sweep (fused kernels, no gradient
    # arrays): same parameters after each step, less memory traffic.
    fused = isinstance(opt, optim.SGD) and hasattr(net, "backward_sgd")
    hist = History(error_unit="percent" if labels else "loss")
    # Shuffle into these once per epoch, then take contiguous slices: one gather per epoch
    # instead of one per batch, and every batch is a view the kernels accept as is.
    Xs, ys = xp.empty_like(X), xp.empty_like(y)
    diag = (X[: min(n, 256)], y[: min(n, 256)]) if diagnostics else None
    best_err, best_params, since_best = None, None, 0
    at_zero = _threshold_at_zero(net)

    # One bar over all samples of all epochs: an epoch of a big net can take minutes, so the
    # bar advances per batch (tqdm redraws at most ~10 times a second; updates are cheap).
    bar = _progress_bar(progress, epochs * n, unit="sample")
    try:
        for epoch in range(epochs):
            lr_t = opt.set_epoch(epoch) if hasattr(opt, "set_epoch") else getattr(opt, "lr", float("nan"))
            t0 = time.perf_counter()
            perm = rng.permutation(n)
            if xp is not np:
                perm = xp.asarray(perm)
            xp.take(X, perm, axis=0, out=Xs)
            xp.take(y, perm, axis=0, out=ys)
            total_loss, wrong = 0.0, 0
            for s in range(0, n, batch_size):
                xb, yb = Xs[s:s + batch_size], ys[s:s + batch_size]
                out = net.forward(xb, train=True)
                value, dout = loss_fn(out, yb)
                if fused:
                    opt.backward_step(net, dout)
                else:
                    net.backward(dout, input_grad=False)
                    opt.step()
                total_loss += value * xb.shape[0]
                if labels:
                    wrong += _count_wrong(out, yb, at_zero)
                if bar is not None:
                    bar.update(xb.shape[0])
            seconds = time.perf_counter() - t0
            train_loss = total_loss / n if n else 0.0
            hist.train_loss.append(train_loss)
            hist.train_error.append(100.0 * float(wrong) / n if labels and n else train_loss)
            hist.lr.append(float(lr_t))
            hist.seconds.append(seconds)
            if diag is not None:
                from .diagnostics import gradient_norms
                hist.grad_norms.append(gradient_norms(net, diag[0], diag[1], loss=loss_fn))
            stop = False
            if have_val:
                err = _evaluate(net, X_val, y_val, loss_fn, labels, 1024)[1]
                hist.valid_error.append(err)
                if best_err is None or err < best_err:
                    best_err, hist.best_epoch, since_best = err, epoch, 0
                    if patience is not None:  # snapshot, to restore when we stop
                        best_params = [p.data.copy() for p in params]
                else:
                    since_best += 1
                    if patience is not None and since_best >= patience:
                        hist.stopped_early = stop = True
            if bar is not None:
                post = {"epoch": f"{epoch + 1}/{epochs}", "loss": f"{train_loss:.4g}"}
                if have_val:
                    post["val_err"] = f"{hist.valid_error[-1]:.4g}"
                bar.set_postfix(post)
            if callback is not None and callback(epoch, hist) is True:
                stop = True
            if stop:
                break
    finally:
        if bar is not None:
            bar.close()
    if best_params is not None and hist.best_epoch != hist.epochs - 1:
        for p, b in zip(params, best_params):
            p.data[...] = b  # in place: optimizers and callers keep their references
    return hist


def _progress_bar(progress, total, *, unit="epoch", desc="training"):
    """A tqdm bar on stderr, or None. progress=None: only when stderr is a terminal."""
    if progress is None:
        progress = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "sample", file=sys.stderr, leave=True)


# ---- evaluation ------------------------------------------------------------------------------
def _evaluate(net, X, y, loss_fn, labels, batch_size):
    """(mean loss, error) on prepared arrays; error in percent for labels, else the mean loss."""
    n = X.shape[0]
    if n == 0:
        return 0.0, 0.0
    total, wrong = 0.0, 0
    for s in range(0, n, batch_size):
        xb, yb = X[s:s + batch_size], y[s:s + batch_size]
        out = net.forward(xb, train=False)
        total += loss_fn(out, yb)[0] * xb.shape[0]
        if labels:
            wrong += _count_wrong(out, yb, _threshold_at_zero(net))
    mean = total / n
    return mean, (100.0 * float(wrong) / n if labels else mean)


def evaluate(net, X, y, *, loss="softmax_cross_entropy", batch_size=1024) -> dict:
    """{"loss": mean loss, "error": classification error in percent (None for dense targets)}."""
    batch_size = _positive_int("batch_size", batch_size)
    X, y, labels = prepare_data(net, X, y, loss=loss)
    value, err = _evaluate(net, X, y, nn.get_loss(loss), labels, batch_size)
    return {"loss": value, "error": err if labels else None}


def _outputs(net, X, batch_size):
    batch_size = _positive_int("batch_size", batch_size)
    X, _, _ = prepare_data(net, X)
    for s in range(0, X.shape[0], batch_size):
        yield net.forward(X[s:s + batch_size], train=False)


def predict_proba(net, X, batch_size=1024, *, softmax=None):
    """The net's outputs for X as a host NumPy array (n, outputs).

    softmax: apply a row softmax (for a net that outputs logits); None = when the last
    Linear layer's activation is identity and it has more than one output."""
    from . import ops

    if softmax is None:
        ls = nn.linear_layers(net)
        softmax = bool(ls) and ls[-1].activation == "identity" and ls[-1].out_features > 1
    parts = []
    for out in _outputs(net, X, batch_size):
        parts.append(to_device(ops.softmax(out) if softmax else out, "cpu"))
    n_out = _features(net)[1] or 0
    return np.concatenate(parts) if parts else np.zeros((0, n_out), dtype=_net_placement(net)[0])


def predict(net, X, batch_size=1024):
    """Predicted class labels (host NumPy int64 array): the argmax output, or for a single
    output unit the output > 0.5 (> 0 when the last layer is linear)."""
    at_zero = _threshold_at_zero(net)
    parts = []
    for out in _outputs(net, X, batch_size):
        if out.shape[1] == 1:
            lab = out[:, 0] > (0.0 if at_zero else 0.5)
        else:
            lab = out.argmax(axis=1)
        parts.append(to_device(lab, "cpu").astype(np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def error_rate(net, X, y, batch_size=1024) -> float:
    """Classification error of ``net`` on (X, y) in percent; y class labels (or one-hot rows)."""
    if y is None:
        raise ValueError("y: expected class labels, got None")
    y = np.asarray(to_device(y, "cpu"))
    if y.ndim == 2:  # one-hot rows
        y = y.argmax(axis=1)
    X, _, _ = prepare_data(net, X, y)
    if X.shape[0] == 0:
        return 0.0
    pred = predict(net, X, batch_size)
    return 100.0 * float(np.count_nonzero(pred != y)) / X.shape[0]
