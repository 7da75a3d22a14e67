"""The module protocol: ``Parameter``, ``Module`` (forward/backward, the children walk,
device moves) and the per-batch-size work buffers layers share."""
from __future__ import annotations

import inspect

import numpy as np

from .. import ops
from .device import array_module, device_of, to_device

ACTIVATIONS = tuple(ops.ACTIVATIONS)
_MAX_BUFFER_SETS = 4  # batch sizes remembered per module (full batch, last partial batch, ...)


def check_activation(mode, name="activation"):
    if mode not in ACTIVATIONS:
        raise ValueError(f"{name}: unknown activation {mode!r}; expected one of {', '.join(ACTIVATIONS)}")
    return mode


def make_rng(rng):
    """A numpy Generator from a Generator, an int seed, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


class Parameter:
    """A trainable array ``data`` with its gradient ``grad`` (same shape, dtype, device)."""

    __slots__ = ("data", "grad", "name")

    def __init__(self, data, name=""):
        self.data = data
        self.grad = array_module(data).zeros(data.shape, data.dtype)  # not zeros_like: calloc'd pages stay untouched
        self.name = name

    @property
    def shape(self):
        return self.data.shape

    def to(self, device):
        self.data = to_device(self.data, device)
        self.grad = to_device(self.grad, device)
        return self

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


class Module:
    """Base class: ``forward``, ``backward``, ``parameters``, ``zero_grad``, ``to``, ``dtype``.

    The tree: a module holds parameters of its own (``local_parameters``) and named
    submodules (``named_children``). ``named_parameters`` walks both and names every
    parameter by its dotted path ("0.weight", "encoder.bias"); ``parameters`` is the
    same walk without the names (children first, in order, then the module's own).
    ``layers`` is a different view: the leaf modules ``forward`` applies one after
    another (a Sequential flattens into its contents, any other module is one layer)."""

    def forward(self, x, *, train=False):
        raise NotImplementedError

    def backward(self, dy, *, input_grad=True, param_grad=True):
        """dJ/dx from dJ/dy, for the input of the last ``forward``.

        Writes (overwrites) the gradients of this module's parameters. With
        ``input_grad=False`` the input gradient is not computed (saves a matrix
        product in the first layer) and None is returned. With ``param_grad=False``
        only dJ/dx is computed and every ``.grad`` is left as it was (what
        adversarial examples need: about a third of the backward's work less).
        A subclass whose ``backward`` has no ``param_grad`` keyword still works in
        containers (``backward_of``): it computes its parameter gradients anyway."""
        raise NotImplementedError

    def backward_sgd(self, dy, opt, *, input_grad=True):
        """``backward(dy)`` followed by ``opt``'s step of this module's parameters.

        ``opt`` is an ``optim.SGD``. Layers that can (Linear) fuse the two, so the
        gradients are never written to memory and ``.grad`` is left as it was;
        the parameters end up exactly where the unfused step would put them."""
        dx = self.backward(dy, input_grad=input_grad)
        opt.step_params(self.parameters())
        return dx

    def __call__(self, x, *, train=False):
        return self.forward(x, train=train)

    # -- the tree --
    def named_children(self):
        """[(name, submodule)], in forward order. Leaves have none."""
        return []

    def children(self):
        return [m for _, m in self.named_children()]

    def walk(self):
        """This module and every module below it, depth first (parents before children)."""
        out = [self]
        for child in self.children():
            out.extend(child.walk())
        return out

    def local_parameters(self):
        """The parameters this module holds itself (not through a child)."""
        return []

    def named_parameters(self):
        """[(dotted path, Parameter)]: the children's (prefixed with the child's name), then our own."""
        out = []
        for name, child in self.named_children():
            out.extend((f"{name}.{sub}", p) for sub, p in child.named_parameters())
        out.extend((p.name, p) for p in self.local_parameters())
        return out

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def layers(self):
        """The leaf modules that ``forward`` applies in order: [self] unless a container says otherwise."""
        return [self]

    def zero_grad(self):
        for p in self.parameters():
            p.grad.fill(0)

    def to(self, device):
        """Moves parameters to ``device`` ("cpu" or "cuda"); returns self."""
        for p in self.parameters():  # all of them, also for a subclass that lists its own
            p.to(device)
        for child in self.children():
            child.to(device)  # through the child's own ``to``, so it drops its device-bound state
        self._clear_state()
        return self

    def _clear_state(self):
        pass

    @property
    def dtype(self):
        ps = self.parameters()
        return ps[0].data.dtype if ps else None

    @property
    def device(self):
        ps = self.parameters()
        return device_of(ps[0].data) if ps else None

    def config(self) -> dict:
        """JSON-able architecture description (used by ``save``)."""
        raise NotImplementedError


_TAKES_PARAM_GRAD = {}  # module type -> whether its backward accepts param_grad


def backward_of(module, dy, *, input_grad=True, param_grad=True):
    """``module.backward(dy, input_grad=..., param_grad=...)``, for any module: one whose
    ``backward`` predates the ``param_grad`` keyword is called without it (and so
    still writes its parameter gradients, which is correct, only slower)."""
    if param_grad:
        return module.backward(dy, input_grad=input_grad)
    kind = type(module)
    takes = _TAKES_PARAM_GRAD.get(kind)
    if takes is None:
        params = inspect.signature(kind.backward).parameters
        takes = _TAKES_PARAM_GRAD[kind] = "param_grad" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if takes:
        return module.backward(dy, input_grad=input_grad, param_grad=False)
    return module.backward(dy, input_grad=input_grad)


class Buffers:
    """Per-batch-size work arrays, so training steps reuse memory instead of allocating."""

    __slots__ = ("sets",)

    def __init__(self):
        self.sets = {}

    def get(self, key, like, shape):
        """An uninitialized array of ``shape`` (dtype/device of ``like``), reused per key."""
        # type() tells NumPy from CuPy cheaply (device_of costs more than the rest of this).
        a = self.sets.get(key)
        if a is None or a.shape != shape or a.dtype != like.dtype or type(a) is not type(like):
            if len(self.sets) >= _MAX_BUFFER_SETS * 4:
                self.sets.clear()
            a = self.sets[key] = array_module(like).empty(shape, dtype=like.dtype)
        return a

    def clear(self):
        self.sets.clear()
