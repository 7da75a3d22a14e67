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

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from . import nn, optim
from .data import _features, _net_placement, prepare_data
from .fit_step import make_step
from .nn import array_module, to_device

__all__ = ["History", "TrainingDiverged", "fit", "predict", "predict_proba", "error_rate", "evaluate", "prepare_data"]


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
class TrainingDiverged(ArithmeticError):
    """The training loss (or the weights) became NaN or infinite.

    Attributes: ``epoch`` and ``batch`` (0-based) where it was seen (``batch`` is None
    when the weights were found non-finite after an epoch), ``loss`` (the bad value, or
    None), ``history`` (the History up to the previous epoch). The net holds its last
    finite weights: those that produced the bad loss when they are finite, else the
    weights at the start of that epoch."""

    def __init__(self, message, *, epoch, batch, loss, history):
        super().__init__(message)
        self.epoch, self.batch, self.loss, self.history = epoch, batch, loss, history


def _all_finite(params):
    return all(bool(array_module(p.data).isfinite(p.data).all()) for p in params)


def _copy_params(params):
    return [p.data.copy() for p in params]


def _restore(params, saved):
    for p, b in zip(params, saved):
        p.data[...] = b  # in place: optimizers and callers keep their references


def _apply_max_norm(layers, max_norm):
    """Max-norm constraint (Srivastava et al. 2014): rescale every unit's incoming weight
    vector (a row of weight) whose L2 norm exceeds ``max_norm`` back onto that sphere."""
    for layer in layers:
        w = layer.weight.data
        xp = array_module(w)
        norms = xp.sqrt((w * w).sum(axis=1, keepdims=True))
        too_long = norms > max_norm
        if bool(too_long.any()):
            w *= xp.where(too_long, max_norm / xp.maximum(norms, xp.finfo(w.dtype).tiny), 1).astype(w.dtype)


def _plain(obj):
    """A JSON-ready copy (NumPy scalars and arrays become Python numbers and lists)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    return obj


def fit(net, X, y, *, loss="softmax_cross_entropy", optimizer=None, lr=None, momentum=0.0, weight_decay=0.0,
        nesterov=False, schedule=None, epochs=10, batch_size=32, X_val=None, y_val=None, patience=None,
        seed=0, progress=None, diagnostics=False, callback=None, max_norm=None, check_finite=True,
        checkpoint=None, checkpoint_every="epoch", resume=False, adversarial=None, native=None, comm=None,
        _outer=None) -> History:
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
        Generator seeded with ``seed`` (a non-negative integer; the last batch may be smaller).
    X_val, y_val: validation data, evaluated after every epoch.
    patience: early stopping -- stop after ``patience`` epochs without a new lowest validation
        error; at the end (stopped early, or not, or interrupted with Ctrl-C) the weights of
        the best epoch are restored. Needs validation data. Without patience the final
        weights are kept (best_epoch is still recorded).
    progress: tqdm bar (samples of all epochs; postfix: epoch, loss, validation error);
        None = only when stderr is a terminal; False = off.
    diagnostics: record per-layer gradient norms (on up to 256 training samples) after each epoch.
    callback: ``callback(epoch, history)`` after each epoch; returning True stops training.
    max_norm: if given, after every update each Linear layer's rows (one unit's incoming
        weights) are rescaled to L2 norm <= max_norm (the max-norm constraint used with dropout).
    check_finite: X, X_val and dense targets must be free of NaN/infinity (ValueError naming
        the argument); False skips the check.
    checkpoint: path of a checkpoint file (layerwise.checkpoint), written atomically every
        ``checkpoint_every`` batches (a positive int) or at the end of every epoch ("epoch"),
        and when training ends. resume=True continues from that file if it exists (else
        starts afresh); the resumed run ends bitwise equal to an uninterrupted one with the
        same arguments, on the same machine and thread count. A file of a finished run
        makes fit return its History at once, with the final weights loaded.

    adversarial: ``dict(eps=0.25, alpha=0.5)`` trains on alpha J(x) + (1 - alpha) J(x + eps
        sign(dJ/dx)) (Goodfellow et al. 2015), the adversarial batch made inside each step
        (layerwise.adversarial.adversarial_objective); train_loss/train_error describe the
        clean batches.
    native: None runs each step as one C call (layerwise.fit_step: a NativeNetwork sharing the
        net's and the optimizer's memory) when the net, loss and optimizer allow it, else the
        per-layer Python path; True demands the native step (ValueError saying why not), False
        keeps the Python path.

    comm: data-parallel training over MPI ranks (an mpi4py communicator such as
        MPI.COMM_WORLD, or a layerwise.distributed.Distributed). Every rank passes the same
        arguments and data; ``batch_size`` is the global batch and each rank computes the
        gradient of its contiguous slice of it; rank 0's initial weights are broadcast and
        the gradients allreduced, so the ranks end bitwise identical and follow one process
        with the same batch_size up to the order of the floating-point sums. History,
        validation and early stopping are the same on every rank; only rank 0 writes the
        checkpoint; an exception on one rank aborts the job (docs/distributed.md).

    Failures: a NaN or infinite training loss raises TrainingDiverged (epoch, batch, and the
    net left at its last finite weights). KeyboardInterrupt is re-raised after restoring the
    best epoch's weights (under early stopping); the History so far is attached to it as
    ``.history``.
    """
    from . import checkpoint as ckpt
    from .checks import finite_array, integer, number, unit_interval

    epochs = integer("epochs", epochs, low=0)
    batch_size = _positive_int("batch_size", batch_size)
    seed = integer("seed", seed, low=0)
    if optimizer is None or isinstance(optimizer, str):
        if lr is not None:
            lr = number("lr", lr, low=0.0, low_open=True)
        momentum = unit_interval("momentum", momentum)
        weight_decay = number("weight_decay", weight_decay, low=0.0)
    if max_norm is not None:
        max_norm = number("max_norm", max_norm, low=0.0, low_open=True)
    every = ckpt.parse_every(checkpoint_every)
    if resume and checkpoint is None:
        raise ValueError("resume: needs checkpoint=PATH to resume from")
    if adversarial is not None:
        if not isinstance(adversarial, dict):
            raise TypeError(f"adversarial: expected a dict such as dict(eps=0.25, alpha=0.5), got "
                            f"{type(adversarial).__name__}")
        from .adversarial import adversarial_objective

        net, loss = adversarial_objective(net, loss, **adversarial)
    loss_fn = nn.get_loss(loss)
    X, y, labels = prepare_data(net, X, y, loss=loss)
    have_val = X_val is not None or y_val is not None
    if have_val:
        if X_val is None or y_val is None:
            raise ValueError("X_val, y_val: give both or neither")
        X_val, y_val, val_labels = prepare_data(net, X_val, y_val, loss=loss, names=("X_val", "y_val"))
        if val_labels != labels:
            raise ValueError("y_val: must be of the same kind as y (class labels, or dense targets)")
    if check_finite:
        finite_array("X", X)
        if not labels:
            finite_array("y", y)
        if have_val:
            finite_array("X_val", X_val)
            if not labels:
                finite_array("y_val", y_val)
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
    if checkpoint is not None:
        ckpt.optimizer_state(opt)  # an optimizer that cannot be saved fails now, not at the first checkpoint
    # ---- distributed (comm=): rank 0's weights everywhere, gradients in one flat buffer ----
    dist = grads = step_sums = None
    if comm is not None:
        from . import distributed

        dist = distributed.wrap(comm)
        grads = dist.flat_gradients(params)  # every p.grad is a view of it: backward fills it in place
        step_sums = np.zeros(2)  # (loss sum, wrong count) of the global batch, allreduced with the gradients
        dist.broadcast_parameters(params)

    xp = array_module(X)
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    # Distributed with DDP-style buckets overlaps the allreduce with the Python per-layer
    # backward, so it keeps that path unless the native step is demanded.
    step = make_step(net, opt, loss, native=False if native is None and dist is not None and dist.buckets else native)
    hist = History(error_unit="percent" if labels else "loss")
    # Shuffle into these once per epoch, then take contiguous slices: one gather per epoch
    # instead of one per batch, and every batch is a view the kernels accept as is.
    Xs, ys = xp.empty_like(X), xp.empty_like(y)
    diag = (X[: min(n, 256)], y[: min(n, 256)]) if diagnostics else None
    best_err, best_params, since_best = None, None, 0
    at_zero = _threshold_at_zero(net)
    max_norm_layers = nn.linear_layers(net) if max_norm is not None else []

    # Where training starts: the beginning, or a checkpoint's epoch and batch.
    start_epoch, start_pos, perm, total_loss, wrong, batches = 0, 0, None, 0.0, 0, 0
    reads = dist is None or dist.is_root
    saved = ckpt.read(checkpoint) if resume and reads and ckpt.exists(checkpoint) else None
    if dist is not None and resume:  # rank 0's file on every rank (no shared file system needed)
        saved = dist.broadcast_object(saved)
    if saved is not None and saved[1].get("fit") is not None:
        arrays, f = saved[0], saved[1]["fit"]
        if (f["n"], f["batch_size"]) != (n, batch_size):
            raise ValueError(f"checkpoint: {checkpoint} was written for {f['n']} samples in batches of "
                             f"{f['batch_size']}, this run has {n} in batches of {batch_size}")
        ckpt.load_params(params, ckpt.subset(arrays, "fit/param/"))
        hist = History(**f["history"])
        if f["finished"]:
            return hist
        ckpt.load_optimizer_state(opt, ckpt.subset(arrays, "fit/opt/"), f["optimizer"])
        ckpt.set_rng_state(rng, f["rng"])
        ckpt.set_module_counters(net, f["counters"])
        best = ckpt.subset(arrays, "fit/best/")
        if best:
            best_params = [xp.asarray(best[str(i)]) if xp is not np else best[str(i)].copy()
                           for i in range(len(params))]
        best_err, since_best = f["best_err"], f["since_best"]
        start_epoch, start_pos, batches = f["epoch"], f["position"], f["batches"]
        total_loss, wrong = f["total_loss"], f["wrong"]
        if "fit/perm" in arrays:
            perm = arrays["fit/perm"]

    def save(epoch, position, perm, total_loss, wrong, finished=False):
        arrays = ckpt.prefixed(ckpt.param_arrays(params), "fit/param/")
        if best_params is not None:
            arrays.update(ckpt.prefixed({str(i): b for i, b in enumerate(best_params)}, "fit/best/"))
        opt_arrays, opt_meta = ckpt.optimizer_state(opt)
        arrays.update(ckpt.prefixed(opt_arrays, "fit/opt/"))
        if perm is not None:
            arrays["fit/perm"] = perm
        meta = {"fit": {"n": n, "batch_size": batch_size, "epoch": epoch, "position": position,
                        "batches": batches, "total_loss": float(total_loss), "wrong": int(wrong),
                        "rng": ckpt.rng_state(rng), "counters": ckpt.module_counters(net),
                        "best_err": None if best_err is None else float(best_err), "since_best": since_best,
                        "history": _plain(hist.to_dict()), "optimizer": opt_meta, "finished": finished}}
        if _outer is not None:
            arrays.update(_outer[0])
            meta["outer"] = _outer[1]
        if dist is None or dist.is_root:  # distributed: the ranks are identical, rank 0 writes
            ckpt.write(checkpoint, arrays, meta)

    # One bar over all samples of all epochs: an epoch of a big net can take minutes, so the
    # bar advances per batch (tqdm redraws at most ~10 times a second; updates are cheap).
    bar = _progress_bar(progress if dist is None or dist.is_root else False, epochs * n, unit="sample")
    if bar is not None and start_epoch:
        bar.update(min(start_epoch * n + start_pos, epochs * n))
    last_good = None
    try:
        for epoch in range(start_epoch, epochs):
            lr_t = opt.set_epoch(epoch) if hasattr(opt, "set_epoch") else getattr(opt, "lr", float("nan"))
            t0 = time.perf_counter()
            if epoch != start_epoch or perm is None:
                perm, start_pos, total_loss, wrong = rng.permutation(n), 0, 0.0, 0
            perm_d = xp.asarray(perm) if xp is not np else perm
            xp.take(X, perm_d, axis=0, out=Xs)
            xp.take(y, perm_d, axis=0, out=ys)
            last_good = _copy_params(params)  # finite: checked at the end of the previous epoch
            for s in range(start_pos, n, batch_size):
                xb, yb = Xs[s:s + batch_size], ys[s:s + batch_size]
                if dist is not None:  # forward, backward and the gradient allreduce; the update below
                    value, nwrong = _distributed_gradients(dist, step, net, loss_fn, xb, yb, grads, step_sums,
                                                           labels, at_zero)
                else:
                    value, out = step(xb, yb)
                if not math.isfinite(float(value)):
                    kept = _all_finite(params)
                    if not kept:
                        _restore(params, last_good)
                    where = "the weights that produced it" if kept else f"the weights at the start of epoch {epoch}"
                    raise TrainingDiverged(
                        f"fit: the training loss became {float(value)} at epoch {epoch}, batch "
                        f"{s // batch_size} (lr {float(lr_t):g}); the net keeps {where}. "
                        f"Lower the learning rate, or check the data", epoch=epoch, batch=s // batch_size,
                        loss=float(value), history=hist)
                if dist is not None:
                    step.update()
                if max_norm is not None:
                    _apply_max_norm(max_norm_layers, max_norm)
                total_loss += value * xb.shape[0]
                if dist is not None:
                    wrong += nwrong
                elif labels:
                    wrong += _count_wrong(out, yb, at_zero)
                batches += 1
                if bar is not None:
                    bar.update(xb.shape[0])
                if checkpoint is not None and every != "epoch" and batches % every == 0 and s + batch_size < n:
                    save(epoch, s + batch_size, perm, total_loss, wrong)
            if not _all_finite(params):
                _restore(params, last_good)
                raise TrainingDiverged(
                    f"fit: the weights became non-finite during epoch {epoch} (lr {float(lr_t):g}); the net "
                    f"keeps the weights at the start of that epoch", epoch=epoch, batch=None, loss=None,
                    history=hist)
            seconds = time.perf_counter() - t0
            train_loss = total_loss / n if n else 0.0
            hist.train_loss.append(float(train_loss))
            hist.train_error.append(100.0 * float(wrong) / n if labels and n else float(train_loss))
            hist.lr.append(float(lr_t))
            hist.seconds.append(seconds)
            if diag is not None:
                from .diagnostics import gradient_norms
                hist.grad_norms.append(gradient_norms(net, diag[0], diag[1], loss=loss_fn))
            stop = False
            if have_val:
                if dist is not None:  # each rank evaluates a slice; the sums make one answer everywhere
                    err = _distributed_evaluate(dist, net, X_val, y_val, loss_fn, labels)
                else:
                    err = _evaluate(net, X_val, y_val, loss_fn, labels, 1024)[1]
                hist.valid_error.append(err)
                if best_err is None or err < best_err:
                    best_err, hist.best_epoch, since_best = err, epoch, 0
                    if patience is not None:  # snapshot, to restore when we stop
                        best_params = _copy_params(params)
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
            if checkpoint is not None and epoch + 1 < epochs:
                save(epoch + 1, 0, None, 0.0, 0)
    except KeyboardInterrupt as e:
        if best_params is not None:  # the weights moved on since the best epoch (maybe mid-epoch)
            _restore(params, best_params)
        e.history = hist
        if dist is not None:  # distributed: the other ranks would wait forever in the next allreduce
            dist.abort_with(e)
        raise
    except Exception as e:
        # Distributed: an exception on one rank aborts the job instead of hanging the others;
        # TrainingDiverged is raised on every rank at once (from allreduced values): it propagates.
        if dist is not None and not isinstance(e, TrainingDiverged):
            dist.abort_with(e)
        raise
    finally:
        if bar is not None:
            bar.close()
    if best_params is not None and hist.best_epoch != hist.epochs - 1:
        _restore(params, best_params)
    if checkpoint is not None:
        save(hist.epochs, 0, None, 0.0, 0, finished=True)
    return hist


# ---- distributed (comm=): the parts of a step and of validation that talk to the other ranks ----
def _distributed_gradients(dist, step, net, loss_fn, xb, yb, grads, step_sums, labels, at_zero):
    """This rank's slice of the global batch (xb, yb): forward, loss, backward into a flat
    gradient buffer (the native network's, or ``grads``, which the parameters' .grad arrays
    are views of), then the allreduce that leaves the global-batch mean gradient in it on
    every rank; ``step.update()`` then applies it. Returns (global mean loss, global wrong
    count), the same on every rank."""
    from .distributed import shard_bounds, shard_modules

    rows = xb.shape[0]
    lo, hi = shard_bounds(rows, dist.rank, dist.size)
    if step.native:  # one C call; the allreduce works on the network's own buffer, no copy
        value, out = step.compute_gradients(xb[lo:hi], yb[lo:hi])
    else:
        shard_modules(net, lo, rows)  # counter-based noise draws what one process draws for these rows
        out = net.forward(xb[lo:hi], train=True)
        value, dout = loss_fn(out, yb[lo:hi])
    step_sums[0] = float(value) * (hi - lo)
    step_sums[1] = int(_count_wrong(out, yb[lo:hi], at_zero)) if labels and hi > lo else 0
    if step.native:
        dist.allreduce_gradients(step.flat_gradients(), hi - lo, rows, sums=step_sums)
    elif dist.buckets:
        dist.backward_allreduce(net, dout, grads, hi - lo, rows, sums=step_sums)
    else:
        net.backward(dout, input_grad=False)  # an empty slice leaves zeros: it adds nothing
        dist.allreduce_gradients(grads, hi - lo, rows, sums=step_sums)
    return step_sums[0] / rows, int(round(step_sums[1]))


def _distributed_evaluate(dist, net, X, y, loss_fn, labels):
    """``_evaluate``'s error over all of (X, y), each rank evaluating its slice of the rows."""
    from .distributed import shard_bounds

    n = X.shape[0]
    lo, hi = shard_bounds(n, dist.rank, dist.size)
    total, wrong = _evaluate_sums(net, X[lo:hi], y[lo:hi], loss_fn, labels, 1024)
    total, wrong = dist.allreduce_sum([total, wrong])
    mean = total / n if n else 0.0
    return 100.0 * float(wrong) / n if labels and n else float(mean)


def _progress_bar(progress, total, *, unit="epoch", desc="training"):
    """A tqdm bar on stderr, or None. progress=None: only when stderr is a terminal."""
    if progress is None:
        progress = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "sample", file=sys.stderr, leave=True)


# ---- evaluation ------------------------------------------------------------------------------
def _evaluate_sums(net, X, y, loss_fn, labels, batch_size):
    """(sum of the loss over the rows, misclassified rows) on prepared arrays."""
    total, wrong = 0.0, 0
    for s in range(0, X.shape[0], batch_size):
        xb, yb = X[s:s + batch_size], y[s:s + batch_size]
        out = net.forward(xb, train=False)
        total += loss_fn(out, yb)[0] * xb.shape[0]
        if labels:
            wrong += _count_wrong(out, yb, _threshold_at_zero(net))
    return float(total), int(wrong)


def _evaluate(net, X, y, loss_fn, labels, batch_size):
    """(mean loss, error) on prepared arrays; error in percent for labels, else the mean loss."""
    n = X.shape[0]
    if n == 0:
        return 0.0, 0.0
    total, wrong = _evaluate_sums(net, X, y, loss_fn, labels, batch_size)
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
