"""layerwise.nn -- modules for dense feed-forward networks, on top of layerwise.ops.

A module maps a batch ``x`` (n, features) to ``y`` and back-propagates::

    y  = module.forward(x, train=True)   # remembers what backward needs
    dx = module.backward(dy)             # writes parameter .grad, returns dJ/dx
    dx = module.backward(dy, param_grad=False)   # dJ/dx only, .grad untouched

``backward`` overwrites the parameter gradients (it never accumulates), so an
optimizer step needs no ``zero_grad`` in between; ``zero_grad`` exists for code
that wants explicit zeros.

Buffers: in training mode (``train=True``) a module writes its outputs and
gradients into arrays it owns and reuses (one set per batch size), so a
training step allocates nothing; such a returned array stays valid until the
module's next training ``forward``/``backward``. In evaluation mode
(``train=False``, the default) every result is a fresh array.

Arrays are NumPy (device "cpu") or CuPy (device "cuda"); all arithmetic goes
through layerwise.ops or the array module of the data, so the same code runs
on both.

The package: ``device`` (array/device/dtype helpers), ``module`` (Parameter, the
Module protocol and its children walk), ``layers`` (Linear, activations, Dropout,
Sequential, mlp), ``losses``, ``state`` (save/load of model files).
"""
from __future__ import annotations

# Everything layerwise.nn offered before the split stays importable from here (including the
# private helpers pretrain and optim use); the submodules hold the code.
from .device import DTYPES as _DTYPES  # noqa: F401
from .device import _cupy, array_module, device_of, to_device
from .device import check_device as _check_device
from .device import check_dtype as _check_dtype
from .layers import (Activation, Dropout, Identity, Linear, ReLU, Sequential, Sigmoid, Tanh, Threshold,
                     linear_layers, mlp)
from .losses import LOSSES, get_loss, loss_name
from .module import ACTIVATIONS, Module, Parameter, backward_of
from .module import Buffers as _Buffers
from .module import check_activation as _check_activation
from .module import make_rng as _rng
from .state import FORMAT, FORMAT_VERSION, load, register_module, save

__all__ = [
    "Parameter", "Module", "Linear", "Activation", "Sigmoid", "Tanh", "ReLU", "Threshold", "Identity",
    "Dropout", "Sequential", "mlp", "save", "load", "get_loss", "LOSSES", "linear_layers", "register_module", "backward_of",
]


def __getattr__(name):
    # nn.RBF lives in layerwise.rbf, which builds on this package: imported on first use.
    if name == "RBF":
        from ..rbf import RBF
        return RBF
    raise AttributeError(f"module 'layerwise.nn' has no attribute {name!r}")
