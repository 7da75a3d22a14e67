"""layerwise.nn -- modules for dense feed-forward networks, on top of layerwise.ops.

A module maps a batch ``x`` (n, features) to ``y`` and back-propagates::

    y  = module.forward(x, train=True)   # remembers what backward needs
    dx = module.backward(dy)             # writes parameter .grad, returns dJ/dx

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
"""
from __future__ import annotations

import json
import math

import numpy as np

from . import ops

__all__ = [
    "Parameter", "Module", "Linear", "Activation", "Sigmoid", "Tanh", "ReLU", "Threshold", "Identity",
    "Dropout", "Sequential", "mlp", "save", "load", "get_loss", "LOSSES", "linear_layers",
]

_DTYPES = {"float32": np.float32, "float64": np.float64}
ACTIVATIONS = tuple(ops.ACTIVATIONS)
_MAX_BUFFER_SETS = 4  # batch sizes remembered per module (full batch, last partial batch, ...)


# ---- array-module helpers ------------------------------------------------------
def _cupy():
    return ops._cupy


def array_module(a):
    """numpy or cupy, whichever ``a`` belongs to."""
    cp = _cupy()
    if cp is not None and isinstance(a, cp.ndarray):
        return cp
    return np


def device_of(a) -> str:
    """"cuda" for a CuPy array, "cpu" otherwise."""
    return "cuda" if array_module(a) is not np else "cpu"


def to_device(a, device):
    """``a`` as an array on ``device`` ("cpu" or "cuda"); no copy when it is there already."""
    device = _check_device(device)
    if device == "cpu":
        return a if isinstance(a, np.ndarray) else _cupy().asnumpy(a)
    return _cupy().asarray(a)


def _check_device(device):
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and _cupy() is None:
        raise RuntimeError("device: 'cuda' needs CuPy and a CUDA build of layerwise; neither is available")
    return device


def _check_dtype(dtype):
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in _DTYPES:
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    return name


def _check_activation(mode, name="activation"):
    if mode not in ACTIVATIONS:
        raise ValueError(f"{name}: unknown activation {mode!r}; expected one of {', '.join(ACTIVATIONS)}")
    return mode


def _rng(rng):
    """A numpy Generator from a Generator, an int seed, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


# ---- parameters and the module protocol ------------------------------------------
class Parameter:
    """A trainable array ``data`` with its gradient ``grad`` (same shape, dtype, device)."""

    __slots__ = ("data", "grad", "name")

    def __init__(self, data, name=""):
        self.data = data
        self.grad = array_module(data).zeros_like(data)
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
    """Base class: ``forward``, ``backward``, ``parameters``, ``zero_grad``, ``to``, ``dtype``."""

    def forward(self, x, *, train=False):
        raise NotImplementedError

    def backward(self, dy, *, input_grad=True):
        """dJ/dx from dJ/dy, for the input of the last ``forward``.

        Writes (overwrites) the gradients of this module's parameters. With
        ``input_grad=False`` the input gradient is not computed (saves a matrix
        product in the first layer) and None is returned."""
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

    def parameters(self):
        return []

    def zero_grad(self):
        for p in self.parameters():
            p.grad.fill(0)

    def to(self, device):
        """Moves parameters to ``device`` ("cpu" or "cuda"); returns self."""
        for p in self.parameters():
            p.to(device)
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


class _Buffers:
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


# ---- dense layer -------------------------------------------------------------------
class Linear(Module):
    """y = act(x @ W.T + b) with W (out_features, in_features); the activation is fused.

    init:
      "uniform" -- W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (the classic LeCun-style
                   default, as in torch.nn.Linear).
      "glorot"  -- W ~ U(-r, r), r = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio
                   2010), times 4 when the activation is sigmoid (their recommendation,
                   since sigmoid'(0) = 1/4); b = 0.
    rng: a numpy Generator, an int seed, or None (fresh entropy).
    """

    def __init__(self, in_features, out_features, *, bias=True, activation="identity", init="uniform",
                 dtype="float32", device="cpu", rng=None):
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.activation = _check_activation(activation)
        self.init = init
        dtype = _check_dtype(dtype)
        _check_device(device)
        w, b = _init_weights(self.in_features, self.out_features, init, activation, _rng(rng))
        self.weight = Parameter(to_device(w.astype(dtype), device), "weight")
        self.bias = Parameter(to_device(b.astype(dtype), device), "bias") if bias else None
        self._buf = _Buffers()
        self._x = self._y = None
        self._train = False

    def parameters(self):
        return [self.weight] if self.bias is None else [self.weight, self.bias]

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

    def backward(self, dy, *, input_grad=True):
        n = dy.shape[0]
        dz = self._dz(dy)
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
        self.mode = _check_activation(mode, "mode")
        self._buf = _Buffers()
        self._y = None
        self._train = False

    def forward(self, x, *, train=False):
        out = self._buf.get(("y", x.shape[0]), x, x.shape) if train else None
        self._y, self._train = ops.activation_forward(x, self.mode, out=out), train
        return self._y

    def backward(self, dy, *, input_grad=True):
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
        self._buf = _Buffers()
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

    def backward(self, dy, *, input_grad=True):
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

    def backward(self, dy, *, input_grad=True):
        for i in range(len(self.modules) - 1, -1, -1):
            dy = self.modules[i].backward(dy, input_grad=input_grad or i > 0)
        return dy

    def backward_sgd(self, dy, opt, *, input_grad=True):
        # Layer i's step only changes layer i's weights, after its input gradient was
        # taken with the old ones: the sweep equals backward() then opt.step().
        for i in range(len(self.modules) - 1, -1, -1):
            dy = self.modules[i].backward_sgd(dy, opt, input_grad=input_grad or i > 0)
        return dy

    def parameters(self):
        return [p for m in self.modules for p in m.parameters()]

    def to(self, device):
        for m in self.modules:
            m.to(device)
        return self

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
        save(self, path)

    @property
    def in_features(self):
        ls = linear_layers(self)
        return ls[0].in_features if ls else None

    @property
    def out_features(self):
        ls = linear_layers(self)
        return ls[-1].out_features if ls else None

    def __repr__(self):
        inner = ",\n  ".join(repr(m) for m in self.modules)
        return f"Sequential(\n  {inner}\n)"


def linear_layers(module):
    """The Linear layers inside ``module``, in forward order."""
    if isinstance(module, Linear):
        return [module]
    if isinstance(module, Sequential):
        return [l for m in module.modules for l in linear_layers(m)]
    return []


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
    _check_activation(activation)
    _check_activation(output_activation, "output_activation")
    rng = np.random.default_rng(seed)
    net = Sequential()
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        net.append(Linear(sizes[i], sizes[i + 1], activation=output_activation if last else activation,
                          init=init, dtype=dtype, device=device, rng=rng))
        if dropout and not last:
            net.append(Dropout(dropout, seed=seed * 1000 + i))
    return net


# ---- save / load ----------------------------------------------------------------------------
_FORMAT = "layerwise-net-1"


def save(net, path):
    """Writes ``net`` to an .npz file: architecture JSON, dtype, and every parameter.

    ``load(path)`` rebuilds it (on the CPU) and predicts bit-identically."""
    params = net.parameters()
    arrays = {f"param_{i}": to_device(p.data, "cpu") for i, p in enumerate(params)}
    meta = {"format": _FORMAT, "architecture": net.config(),
            "dtype": str(net.dtype) if net.dtype is not None else "float32",
            "names": [p.name for p in params]}
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a bare name
        np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)


def load(path, *, device="cpu"):
    """Reads a net written by ``save``."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"path: {path} is not a layerwise network file")
        net = _build(meta["architecture"], meta["dtype"])
        params = net.parameters()
        for i, p in enumerate(params):
            a = z[f"param_{i}"]
            if a.shape != p.data.shape:
                raise ValueError(f"path: parameter {i} has shape {a.shape}, architecture expects {p.data.shape}")
            p.data = np.ascontiguousarray(a)
            p.grad = np.zeros_like(p.data)
    return net.to(device) if device != "cpu" else net


def _build(cfg, dtype):
    kind = cfg.get("type")
    if kind == "Sequential":
        return Sequential(*[_build(c, dtype) for c in cfg["modules"]])
    if kind == "Linear":
        return Linear(cfg["in_features"], cfg["out_features"], bias=cfg["bias"], activation=cfg["activation"],
                      dtype=dtype, rng=0)
    if kind == "Activation":
        return Activation(cfg["mode"])
    if kind == "Dropout":
        return Dropout(cfg["p"], seed=cfg["seed"])
    raise ValueError(f"architecture: unknown module type {kind!r}")


# ---- losses -------------------------------------------------------------------------------
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
