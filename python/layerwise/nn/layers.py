"""Layers: the dense ``Linear`` (activation fused), elementwise ``Activation`` layers,
inverted ``Dropout``, the ``Sequential`` container, and ``mlp`` to build a stack."""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from .device import array_module, check_device, check_dtype, to_device
from .module import Buffers, Module, Parameter, backward_of, check_activation, make_rng


# ---- dense layer -------------------------------------------------------------------
class Linear(Module):
    """y = act(x @ W.T + b) with W (out_features, in_features); the activation is fused.

    init:
      "uniform" -- W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (the classic LeCun-style
                   default, as in torch.nn.Linear).
      "glorot"  -- W ~ U(-r, r), r = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio
                   2010), times 4 when the activation is sigmoid (their recommendation,
                   since sigmoid'(0) = 1/4); b = 0.
      None      -- W = b = 0 without a random draw, for callers that set the parameters
                   next (nn.load).
    rng: a numpy Generator, an int seed, or None (fresh entropy).
    """

    def __init__(self, in_features, out_features, *, bias=True, activation="identity", init="uniform",
                 dtype="float32", device="cpu", rng=None):
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.activation = check_activation(activation)
        self.init = init
        dtype = check_dtype(dtype)
        check_device(device)
        if init is None:  # zeros from calloc: no draw, no cast, pages only touched when written
            w, b = np.zeros((self.out_features, self.in_features), dtype), np.zeros(self.out_features, dtype)
        else:
            w, b = _init_weights(self.in_features, self.out_features, init, activation, make_rng(rng))
        self.weight = Parameter(to_device(w.astype(dtype, copy=False), device), "weight")
        self.bias = Parameter(to_device(b.astype(dtype, copy=False), device), "bias") if bias else None
        self._buf = Buffers()
        self._x = self._y = None
        self._train = False

    def local_parameters(self):
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    parameters = local_parameters  # no children: the walk reduces to this (and backward_sgd calls it per step)

    def forward(self, x, *, train=False):
        out = self._buf.get(("y", x.shape[0]), self.weight.data, (x.shape[0], self.out_features)) if train else None
        b = self.bias.data if self.bias is not None else None
        y = ops.linear_forward(x, self.weight.data, b, activation=self.activation, out=out)
        self._x, self._y, self._train = x, y, train  # backward needs the input and the output
        return y

    def _dz(self, dy):
        """dJ/d(pre-activation) from dJ/dy."""
        if self._x is None:
            raise RuntimeError("backward: call forward first")
        if self.activation == "identity":
            return dy  # act' = 1: skip a pass over the data
        # The kernel takes act' from the output y (sigmoid: y(1-y), tanh: 1-y^2, relu: y>0).
        out = self._buf.get(("dz", dy.shape[0]), dy, dy.shape) if self._train else None
        return ops.activation_backward(self._y, dy, self.activation, out=out)

    def backward_sgd(self, dy, opt, *, input_grad=True):
        params = self.parameters()
        if not all(opt.owns(p) for p in params):  # a frozen parameter: take the unfused path
            return Module.backward_sgd(self, dy, opt, input_grad=input_grad)
        dz = self._dz(dy)
        n = dy.shape[0]
        dx = (self._buf.get(("dx", n), dy, (n, self.in_features)) if self._train else True) if input_grad else False
        has_b = self.bias is not None
        return ops.linear_backward_sgd(
            dz, self._x, self.weight.data, self.bias.data if has_b else None, lr=opt.lr, momentum=opt.momentum,
            weight_velocity=opt.velocity_of(self.weight), bias_velocity=opt.velocity_of(self.bias) if has_b else None,
            weight_decay=opt.weight_decay, nesterov=opt.nesterov, dx=dx)

    def backward(self, dy, *, input_grad=True, param_grad=True):
        n = dy.shape[0]
        dz = self._dz(dy)
        if param_grad:
            ops.linear_backward_weights(dz, self._x, dweight=self.weight.grad,
                                        dbias=self.bias.grad if self.bias is not None else None,
                                        bias=self.bias is not None)
        if not input_grad:
            return None
        out = self._buf.get(("dx", n), dy, (n, self.in_features)) if self._train else None
        return ops.linear_backward_data(dz, self.weight.data, out=out)

    def _clear_state(self):
        self._buf.clear()
        self._x = self._y = None

    def config(self):
        return {"type": "Linear", "in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "activation": self.activation}

    def __repr__(self):
        return (f"Linear({self.in_features}, {self.out_features}, activation={self.activation!r}"
                f"{'' if self.bias is not None else ', bias=False'})")


def _init_weights(fan_in, fan_out, init, activation, rng):
    """Float64 initial (weight, bias) drawn from ``rng`` (cast later, so every dtype sees the same draw)."""
    if init == "uniform":
        r = 1.0 / math.sqrt(fan_in)
        w = rng.uniform(-r, r, size=(fan_out, fan_in))
        b = rng.uniform(-r, r, size=fan_out)
    elif init == "glorot":
        r = math.sqrt(6.0 / (fan_in + fan_out)) * (4.0 if activation == "sigmoid" else 1.0)
        w = rng.uniform(-r, r, size=(fan_out, fan_in))
        b = np.zeros(fan_out)
    else:
        raise ValueError(f"init: unknown initialization {init!r}; expected one of uniform, glorot")
    return w, b


# ---- activation layers ------------------------------------------------------------------
class Activation(Module):
    """An elementwise nonlinearity as its own layer (mode: sigmoid, tanh, relu, threshold, identity)."""

    def __init__(self, mode):
        self.mode = check_activation(mode, "mode")
        self._buf = Buffers()
        self._y = None
        self._train = False

    def forward(self, x, *, train=False):
        out = self._buf.get(("y", x.shape[0]), x, x.shape) if train else None
        self._y, self._train = ops.activation_forward(x, self.mode, out=out), train
        return self._y

    def backward(self, dy, *, input_grad=True, param_grad=True):
        if self._y is None:
            raise RuntimeError("backward: call forward first")
        if not input_grad:
            return None
        out = self._buf.get(("dx", dy.shape[0]), dy, dy.shape) if self._train else None
        return ops.activation_backward(self._y, dy, self.mode, out=out)

    def _clear_state(self):
        self._buf.clear()
        self._y = None

    def config(self):
        return {"type": "Activation", "mode": self.mode}

    def __repr__(self):
        return f"Activation({self.mode!r})"


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x))."""

    def __init__(self):
        super().__init__("sigmoid")


class Tanh(Activation):
    """y = tanh(x)."""

    def __init__(self):
        super().__init__("tanh")


class ReLU(Activation):
    """y = max(x, 0)."""

    def __init__(self):
        super().__init__("relu")


class Threshold(Activation):
    """Heaviside step (perceptron unit); its gradient is zero almost everywhere."""

    def __init__(self):
        super().__init__("threshold")


class Identity(Activation):
    """y = x."""

    def __init__(self):
        super().__init__("identity")


class Dropout(Module):
    """Inverted dropout: in training each unit is kept with probability 1-p and scaled by 1/(1-p),
    so evaluation (``train=False``) is the identity.

    Masks come from ops.bernoulli under ``seed`` with a counter offset that advances by
    the mask size on every training forward: same seed, same masks, on any device."""

    def __init__(self, p, seed=0):
        if not (isinstance(p, (int, float)) and 0.0 <= p < 1.0):
            raise ValueError(f"p: dropout probability must be in [0, 1), got {p!r}")
        self.p, self.seed, self.offset = float(p), int(seed), 0
        self._buf = Buffers()
        self._mask = None

    def forward(self, x, *, train=False):
        if not train or self.p == 0.0:
            self._mask = None
            return x
        mask = self._buf.get(("mask", x.shape[0]), x, x.shape)
        ops.bernoulli(1.0 - self.p, seed=self.seed, offset=self.offset, out=mask)
        self.offset += mask.size
        mask *= 1.0 / (1.0 - self.p)  # fold the inverted-dropout scale into the mask
        self._mask = mask
        y = self._buf.get(("y", x.shape[0]), x, x.shape)
        array_module(x).multiply(x, mask, out=y)
        return y

    def backward(self, dy, *, input_grad=True, param_grad=True):
        if not input_grad:
            return None
        if self._mask is None:
            return dy
        dx = self._buf.get(("dx", dy.shape[0]), dy, dy.shape)
        array_module(dy).multiply(dy, self._mask, out=dx)
        return dx

    def _clear_state(self):
        self._buf.clear()
        self._mask = None

    def config(self):
        return {"type": "Dropout", "p": self.p, "seed": self.seed}

    def __repr__(self):
        return f"Dropout(p={self.p})"


# ---- containers ---------------------------------------------------------------------------
class Sequential(Module):
    """Modules applied in order; backward runs them in reverse."""

    def __init__(self, *modules):
        if len(modules) == 1 and isinstance(modules[0], (list, tuple)):
            modules = tuple(modules[0])
        self.modules = []
        for m in modules:
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"module: expected a layerwise.nn.Module, got {type(module).__name__}")
        prev = [m for m in linear_layers(self)]
        new = linear_layers(module)
        if prev and new and prev[-1].out_features != new[0].in_features:
            raise ValueError(f"module: its input size {new[0].in_features} does not chain with the "
                             f"previous output size {prev[-1].out_features}")
        self.modules.append(module)
        return self

    def forward(self, x, *, train=False):
        for m in self.modules:
            x = m.forward(x, train=train)
        return x

    def backward(self, dy, *, input_grad=True, param_grad=True):
        for i in range(len(self.modules) - 1, -1, -1):
            dy = backward_of(self.modules[i], dy, input_grad=input_grad or i > 0, param_grad=param_grad)
        return dy

    def backward_sgd(self, dy, opt, *, input_grad=True):
        # Layer i's step only changes layer i's weights, after its input gradient was
        # taken with the old ones: the sweep equals backward() then opt.step().
        for i in range(len(self.modules) - 1, -1, -1):
            dy = self.modules[i].backward_sgd(dy, opt, input_grad=input_grad or i > 0)
        return dy

    def named_children(self):
        return [(str(i), m) for i, m in enumerate(self.modules)]

    def children(self):
        return list(self.modules)

    def layers(self):
        return [leaf for m in self.modules for leaf in m.layers()]

    def _clear_state(self):
        for m in self.modules:
            m._clear_state()

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(*self.modules[i])
        return self.modules[i]

    def __len__(self):
        return len(self.modules)

    def __iter__(self):
        return iter(self.modules)

    def config(self):
        return {"type": "Sequential", "modules": [m.config() for m in self.modules]}

    def save(self, path):
        """Same as ``layerwise.nn.save(self, path)``."""
        from .state import save  # state builds Sequentials: import it lazily
        save(self, path)

    @property
    def in_features(self):
        """Inputs of the first layer that declares a size (Linear, RBF, ...); None if none does."""
        sized = [m for m in self.layers() if getattr(m, "in_features", None) is not None]
        return sized[0].in_features if sized else None

    @property
    def out_features(self):
        sized = [m for m in self.layers() if getattr(m, "out_features", None) is not None]
        return sized[-1].out_features if sized else None

    def __repr__(self):
        inner = ",\n  ".join(repr(m) for m in self.modules)
        return f"Sequential(\n  {inner}\n)"


def linear_layers(module):
    """The Linear layers inside ``module``, in forward order."""
    return [m for m in module.layers() if isinstance(m, Linear)]


def mlp(sizes, *, activation="sigmoid", output_activation="identity", init="uniform", dtype="float32",
        device="cpu", seed=0, dropout=0.0):
    """A fully connected net: Linear(sizes[0], sizes[1]) ... Linear(sizes[-2], sizes[-1]).

    Hidden layers use ``activation`` (fused), the last layer ``output_activation``
    ("identity" gives logits for softmax_cross_entropy). With ``dropout`` > 0 a
    Dropout layer follows each hidden layer. Weights come from a numpy Generator
    seeded with ``seed``."""
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes: need at least [inputs, outputs], got {sizes}")
    for s in sizes:
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 1:
            raise ValueError(f"sizes: every size must be a positive integer, got {sizes}")
    check_activation(activation)
    check_activation(output_activation, "output_activation")
    rng = np.random.default_rng(seed)
    net = Sequential()
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        net.append(Linear(sizes[i], sizes[i + 1], activation=output_activation if last else activation,
                          init=init, dtype=dtype, device=device, rng=rng))
        if dropout and not last:
            net.append(Dropout(dropout, seed=seed * 1000 + i))
    return net
