"""Losses: ``(output, target) -> (mean loss over the batch rows, d loss / d output)``."""
from __future__ import annotations

from .. import ops
from .device import array_module


def _quadratic(output, target):
    return ops.mse_loss(output, _dense_target(output, target))


def _bce(output, target):
    return ops.binary_cross_entropy(output, _dense_target(output, target))


def _softmax_ce(output, target):
    return ops.softmax_cross_entropy(output, target)


def _dense_target(output, target):
    """Targets for the dense losses: same dtype as the output; 1-D class labels become one-hot rows."""
    xp = array_module(output)
    if target.ndim == 1 and target.dtype.kind in "iu":
        classes = max(output.shape[1], 2)  # one output unit: labels 0/1 are the target itself
        if target.size and (int(target.min()) < 0 or int(target.max()) >= classes):
            raise ValueError(f"target: class labels must be in [0, {classes})")
        if output.shape[1] == 1:
            return target.astype(output.dtype).reshape(-1, 1)
        onehot = xp.zeros(output.shape, dtype=output.dtype)
        onehot[xp.arange(target.shape[0]), target] = 1
        return onehot
    if target.dtype != output.dtype:
        target = target.astype(output.dtype)
    return target


LOSSES = {
    "quadratic": _quadratic,
    "mse": _quadratic,
    "binary_cross_entropy": _bce,
    "softmax_cross_entropy": _softmax_ce,
}


def get_loss(name):
    """The loss ``name`` as a callable ``(output, target) -> (loss: float, doutput)``.

    quadratic (alias mse): 1/(2n) sum ||output - target||^2, dense targets or class labels
        (one-hot encoded; with a single output unit the 0/1 label itself);
    binary_cross_entropy: output = probabilities (sigmoid outputs), targets in [0, 1];
    softmax_cross_entropy: output = logits, targets = integer class labels.
    The loss is a mean over the batch rows; doutput is its gradient."""
    if callable(name):
        return name
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"loss: unknown loss {name!r}; expected one of {', '.join(LOSSES)}") from None


def loss_name(loss):
    """Canonical name of a loss given by name (aliases resolved); None for a custom callable."""
    if callable(loss):
        for k, v in LOSSES.items():
            if v is loss:
                return "quadratic" if k == "mse" else k
        return None
    get_loss(loss)
    return "quadratic" if loss == "mse" else loss
