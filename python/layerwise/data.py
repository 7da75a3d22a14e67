"""layerwise.data -- checking and converting (X, y) for a net: the input layer below
train and diagnostics (both call ``prepare_data``; neither imports the other for it)."""
from __future__ import annotations

import numpy as np

from . import nn
from .nn import array_module, to_device

__all__ = ["prepare_data"]


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
