"""layerwise.adversarial -- adversarial examples, fooling images and adversarial training.

Fast gradient sign method (Goodfellow, Shlens & Szegedy 2015, "Explaining and
Harnessing Adversarial Examples"): for inputs in [0, 1],

    x' = clip(x + eps * sign(dJ/dx), 0, 1)

where J is the training loss of the true label; dJ/dx comes from the net's own
backward pass restricted to the input gradient (``backward(..., param_grad=False)``:
no weight or bias gradients), a whole batch at a time.

    X_adv = fgsm(net, X, y, eps=0.1)
    rows = evaluate(net, X, y, [0, 0.1, 0.25])      # error, confidence, distortion per eps
    images, info = fool(net, target_class=3)          # noise -> "3" at >= 99.6 % confidence
    adversarial_fit(net, X, y, eps=0.25, alpha=0.5, lr=0.1, epochs=5)

Adversarial training minimizes alpha J(x) + (1 - alpha) J(x + eps sign(dJ/dx)),
the adversarial batch made inside each training step with one extra forward and
backward pass (``adversarial_loss_step``). ``fgsm``, ``evaluate`` and ``fool`` leave
the parameters' ``.grad`` untouched; adversarial training overwrites it.

Arrays may be NumPy or CuPy (the net's device); results are on the net's device.
"""
from __future__ import annotations

import math

import numpy as np

from . import nn, ops, train
from .nn import Module, array_module

__all__ = ["fgsm", "evaluate", "fool", "adversarial_loss_step", "adversarial_objective", "adversarial_fit"]

PIXEL_RANGE = (0.0, 1.0)


# ---- argument checking -----------------------------------------------------------------------
def _eps(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
    return float(v)


def _alpha(v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not 0.0 <= v <= 1.0:
        raise ValueError(f"alpha: expected a number in [0, 1], got {v!r}")
    return float(v)


def _check_net(net):
    if not isinstance(net, Module):
        raise TypeError(f"net: expected a layerwise.nn.Module, got {type(net).__name__}")


def _outputs_logits(net):
    ls = nn.linear_layers(net)
    return bool(ls) and ls[-1].activation == "identity"


def _probabilities(net, out):
    """Class probabilities from a batch of outputs: softmax of logits, else the outputs."""
    return ops.softmax(out) if _outputs_logits(net) and out.shape[1] > 1 else out


# ---- input gradients ---------------------------------------------------------------------------
def _input_gradient(net, xb, yb, loss_fn):
    """(loss, outputs, dJ/dx) of one batch with the net in evaluation mode; no parameter gradients."""
    out = net.forward(xb, train=False)
    value, dout = loss_fn(out, yb)
    dx = nn.backward_of(net, dout, input_grad=True, param_grad=False)
    return value, out, dx


def _gradient_signs(net, X, y, loss_fn, batch_size):
    """sign(dJ/dx) for every row of prepared (X, y), batch by batch."""
    xp = array_module(X)
    signs = xp.empty_like(X)
    for s in range(0, X.shape[0], batch_size):
        _, _, dx = _input_gradient(net, X[s:s + batch_size], y[s:s + batch_size], loss_fn)
        xp.sign(dx, out=signs[s:s + batch_size])
    return signs


def _step_and_clip(X, signs, eps, out=None):
    """clip(X + eps * signs, 0, 1)."""
    xp = array_module(X)
    out = xp.multiply(signs, X.dtype.type(eps), out=out)
    out += X
    return xp.clip(out, *PIXEL_RANGE, out=out)


def fgsm(net, X, y, eps, *, loss="softmax_cross_entropy", batch_size=1024):
    """Adversarial examples x' = clip(x + eps sign(dJ/dx), 0, 1) of (X, y) for ``net``.

    X: inputs (n, features) in [0, 1]; y: the true labels (or dense targets of ``loss``).
    Returns an array like X on the net's device, in its dtype."""
    _check_net(net)
    eps = _eps("eps", eps)
    batch_size = train._positive_int("batch_size", batch_size)
    loss_fn = nn.get_loss(loss)
    X, y, _ = train.prepare_data(net, X, y, loss=loss)
    signs = _gradient_signs(net, X, y, loss_fn, batch_size)
    return _step_and_clip(X, signs, eps, out=signs)


def _distortion(X_adv, X):
    """Per-sample (L-inf, L2) distances, host float64."""
    xp = array_module(X)
    d = (X_adv - X).astype(xp.float64)
    linf = xp.abs(d).max(axis=1) if d.shape[1] else xp.zeros(d.shape[0])
    l2 = xp.sqrt((d * d).sum(axis=1))
    return nn.to_device(linf, "cpu"), nn.to_device(l2, "cpu")


def _batched_probabilities(net, X, batch_size):
    xp = array_module(X)
    parts = [_probabilities(net, net.forward(X[s:s + batch_size], train=False))
             for s in range(0, X.shape[0], batch_size)]
    return nn.to_device(xp.concatenate(parts), "cpu") if parts else np.zeros((0, 0))


def evaluate(net, X, y, eps_list, *, loss="softmax_cross_entropy", batch_size=1024):
    """FGSM robustness of a classifier: one dict per eps in ``eps_list`` with

    eps; error (percent misclassified after the attack); mean_confidence_wrong (mean
    top-class probability over the misclassified samples, None when none is);
    mean_confidence (over all samples); linf and l2 (mean per-sample distortion).

    sign(dJ/dx) is computed once and shared by every eps."""
    _check_net(net)
    eps_values = [_eps("eps_list", e) for e in ([eps_list] if np.isscalar(eps_list) else list(eps_list))]
    batch_size = train._positive_int("batch_size", batch_size)
    loss_fn = nn.get_loss(loss)
    X, y, labels = train.prepare_data(net, X, y, loss=loss)
    if not labels:
        raise ValueError("y: evaluate counts classification errors and needs integer class labels")
    n = X.shape[0]
    truth = np.asarray(nn.to_device(y, "cpu"))
    signs = _gradient_signs(net, X, y, loss_fn, batch_size) if any(e > 0 for e in eps_values) else None
    xp = array_module(X)
    X_adv = xp.empty_like(X)
    rows = []
    for eps in eps_values:
        if eps > 0:
            _step_and_clip(X, signs, eps, out=X_adv)
        else:
            X_adv[...] = X
        prob = _batched_probabilities(net, X_adv, batch_size)
        if n and prob.shape[1] == 1:  # one output unit: P(class 1) = output
            p1 = prob[:, 0]
            pred = (p1 > 0.5).astype(np.int64)
            conf = np.where(pred == 1, p1, 1.0 - p1)
        else:
            pred = prob.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
            conf = prob.max(axis=1) if n else np.zeros(0)
        wrong = pred != truth
        linf, l2 = _distortion(X_adv, X)
        rows.append({
            "eps": eps,
            "error": 100.0 * float(wrong.mean()) if n else 0.0,
            "mean_confidence_wrong": float(conf[wrong].mean()) if wrong.any() else None,
            "mean_confidence": float(conf.mean()) if n else None,
            "linf": float(linf.mean()) if n else 0.0,
            "l2": float(l2.mean()) if n else 0.0,
        })
    return rows


# ---- fooling images ------------------------------------------------------------------------------
def _start_images(net, start, count, rng):
    dtype, device = train._net_placement(net)
    n_in = train._features(net)[0]
    if isinstance(start, str):
        if n_in is None:
            raise ValueError("net: its input size is unknown; pass start as an array")
        if count is None:
            count = 1
        count = train._positive_int("count", count)
        if start == "noise":
            x = rng.uniform(0.0, 1.0, size=(count, n_in))
        elif start == "blank":
            x = np.zeros((count, n_in))
        else:
            raise ValueError(f"start: expected 'noise', 'blank' or an array of images, got {start!r}")
        return nn.to_device(np.ascontiguousarray(x, dtype=dtype), device)
    if count is not None:
        raise ValueError("count: only for start='noise' or 'blank' (an array gives the images itself)")
    X, _, _ = train.prepare_data(net, start, names=("start", "y"))
    if X.size and (float(X.min()) < PIXEL_RANGE[0] or float(X.max()) > PIXEL_RANGE[1]):
        raise ValueError("start: pixels must lie in [0, 1]")
    return X  # may be the caller's array: fool works on a copy


def fool(net, target_class, *, start="noise", count=None, steps=1000, lr=0.01, confidence=0.996,
         seed=0, batch_size=1024):
    """Fooling images: gradient ascent on log softmax[target] over the input.

    Each step moves every image not yet at ``confidence`` by ``lr`` against the sign of
    the cross-entropy gradient towards its target class (a signed step, as in FGSM,
    so ``lr`` is the change per pixel and step), keeping pixels in [0, 1]. Images stop
    moving once the target's softmax probability reaches ``confidence``.

    net: a classifier whose last layer outputs logits. target_class: one class for
    every image, or one per image. start: "noise" (uniform, ``count`` images from a
    Generator seeded with ``seed``), "blank" (zeros) or an array of images in [0, 1].

    Returns ``(images, info)``: images on the net's device; info (host NumPy) with
    "target", "confidence" (final target probability), "reached" (bool), "steps"
    (steps each image took), "linf"/"l2" (distortion from its start)."""
    _check_net(net)
    if not _outputs_logits(net):
        raise ValueError("net: fool needs a classifier whose last Linear layer outputs logits (identity activation)")
    steps = int(steps) if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool) else steps
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: expected an integer >= 0, got {steps!r}")
    lr = _eps("lr", lr)
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence: expected a probability in (0, 1), got {confidence!r}")
    batch_size = train._positive_int("batch_size", batch_size)
    X0 = _start_images(net, start, count, np.random.default_rng(seed))
    n = X0.shape[0]
    classes = train._features(net)[1]
    target = np.asarray(target_class)
    if target.dtype.kind not in "iu" or target.ndim > 1:
        raise ValueError(f"target_class: expected an integer class or a 1-D array of them, got {target_class!r}")
    target = np.broadcast_to(target, (n,)) if target.ndim == 0 else target
    if target.shape != (n,):
        raise ValueError(f"target_class: has {target.shape[0]} entries for {n} images")
    if n and classes is not None and (int(target.min()) < 0 or int(target.max()) >= classes):
        raise ValueError(f"target_class: classes must be in [0, {classes})")
    xp = array_module(X0)
    X = X0.copy()
    t_dev = nn.to_device(np.ascontiguousarray(target, dtype=np.int32), nn.device_of(X))
    taken = np.zeros(n, dtype=np.int64)
    conf = np.zeros(n)
    loss_fn = nn.get_loss("softmax_cross_entropy")
    ix = (lambda i: i) if xp is np else xp.asarray  # host index arrays onto the device
    for s in range(0, n, batch_size):
        xb, tb = X[s:s + batch_size], t_dev[s:s + batch_size]
        idx = np.arange(xb.shape[0])  # images of this batch still below the confidence
        for step in range(steps + 1):
            sub = xb[ix(idx)]
            out = net.forward(sub, train=False)
            p = nn.to_device(ops.softmax(out), "cpu")[np.arange(len(idx)), target[s + idx]]
            conf[s + idx] = p
            below = p < confidence
            if step == steps or not below.any():
                break
            _, dout = loss_fn(out, tb[ix(idx)])
            dx = nn.backward_of(net, dout, input_grad=True, param_grad=False)
            keep = ix(np.flatnonzero(below))
            # descend the cross entropy = ascend log softmax[target]
            moved = sub[keep] - X.dtype.type(lr) * xp.sign(dx[keep])
            idx = idx[below]
            xb[ix(idx)] = xp.clip(moved, *PIXEL_RANGE)
            taken[s + idx] += 1
    linf, l2 = _distortion(X, X0)
    info = {"target": target.astype(np.int64), "confidence": conf, "reached": conf >= confidence,
            "steps": taken, "linf": linf, "l2": l2}
    return X, info


# ---- adversarial training --------------------------------------------------------------------------
def _adversarial_backward(net, xb, yb, dout, eps, alpha, loss_fn):
    """After ``net.forward(xb, train=True)`` gave the clean loss gradient ``dout``:
    leaves alpha dJ(x)/dtheta + (1 - alpha) dJ(x_adv)/dtheta in the parameters' .grad,
    x_adv = clip(x + eps sign(dJ/dx), 0, 1) (x_adv held constant). Returns J(x_adv)."""
    dx = net.backward(dout, input_grad=True)
    signs = array_module(dx).sign(dx)
    x_adv = _step_and_clip(xb, signs, eps, out=signs)
    params = net.parameters()
    clean = [p.grad * p.grad.dtype.type(alpha) for p in params]
    out_adv = net.forward(x_adv, train=True)
    value_adv, dout_adv = loss_fn(out_adv, yb)
    net.backward(dout_adv, input_grad=False)
    for p, g in zip(params, clean):
        p.grad *= p.grad.dtype.type(1.0 - alpha)
        p.grad += g
    return value_adv


def adversarial_loss_step(net, xb, yb, eps, alpha, loss_fn):
    """Gradients of Goodfellow et al.'s objective alpha J(x) + (1 - alpha) J(x + eps sign(dJ/dx))
    for one prepared batch, left in the parameters' ``.grad`` for an optimizer step.

    Costs one extra forward and backward over plain training. Returns
    ``(objective value, clean outputs)`` (a copy, for counting training errors)."""
    eps, alpha = _eps("eps", eps), _alpha(alpha)
    out = net.forward(xb, train=True)
    value, dout = loss_fn(out, yb)
    out = out.copy()  # the adversarial forward reuses the training buffers
    value_adv = _adversarial_backward(net, xb, yb, dout, eps, alpha, loss_fn)
    return alpha * value + (1.0 - alpha) * value_adv, out


class _AdversarialObjective(Module):
    """``net`` seen by ``train.fit`` as a module whose backward pass leaves the gradients of
    the adversarial objective: its loss records each training batch's targets, its
    backward makes the adversarial batch and runs the extra forward and backward."""

    def __init__(self, net, loss_fn, eps, alpha):
        self.net, self.loss_fn, self.eps, self.alpha = net, loss_fn, eps, alpha
        self._xb = self._yb = None

    @property
    def in_features(self):
        return train._features(self.net)[0]

    @property
    def out_features(self):
        return train._features(self.net)[1]

    def parameters(self):
        return self.net.parameters()

    def loss(self, out, target):
        self._yb = target
        return self.loss_fn(out, target)

    def forward(self, x, *, train=False):
        self._xb = x if train else None
        return self.net.forward(x, train=train)

    def backward(self, dy, *, input_grad=True):
        if self._xb is None:
            raise RuntimeError("backward: call forward(train=True) first")
        _adversarial_backward(self.net, self._xb, self._yb, dy, self.eps, self.alpha, self.loss_fn)
        return None

    def to(self, device):
        self.net.to(device)
        return self

    def config(self):
        return self.net.config()


def adversarial_objective(net, loss="softmax_cross_entropy", *, eps=0.25, alpha=0.5):
    """``(module, loss_fn)`` to pass to ``train.fit`` in place of ``(net, loss)`` to train
    ``net`` on alpha J(x) + (1 - alpha) J(x + eps sign(dJ/dx)). History.train_loss and
    train_error then describe the clean batches.

    This is the hook for ``fit(..., adversarial=dict(eps=..., alpha=...))``: at the top of
    ``fit``, ``net, loss_fn = adversarial_objective(net, loss, **adversarial)``; the
    training loop, validation, early stopping and every optimizer work unchanged
    (the module's backward runs the extra forward and backward; fused SGD falls back
    to backward + step for it)."""
    _check_net(net)
    wrapper = _AdversarialObjective(net, nn.get_loss(loss), _eps("eps", eps), _alpha(alpha))
    return wrapper, wrapper.loss


def adversarial_fit(net, X, y, *, eps=0.25, alpha=0.5, loss="softmax_cross_entropy", **fit_kwargs):
    """``train.fit`` on the adversarial objective (Goodfellow et al. 2015: eps 0.25, alpha 0.5);
    every other keyword as in ``train.fit``. Returns its History."""
    return train.fit(net, X, y, loss=loss, adversarial=dict(eps=eps, alpha=alpha), **fit_kwargs)
