"""Networks held by the C library: a thin Python face of ``lwNetwork_t``.

A :class:`NativeNetwork` is a stack of dense layers whose parameters live in
memory owned by the C library. ``weight(i)`` and ``bias(i)`` are NumPy views of
that memory (no copy; a view keeps the network alive), ``forward`` is one
``lwNetworkForward`` call and ``train_step`` one ``lwNetworkTrainStep`` call
(forward, loss, backward and optimizer update), so a training step costs one
Python-to-C transition instead of several per layer. For data parallelism the
step also comes in three parts: ``compute_gradients`` (into one flat buffer,
``gradients()``, which an allreduce may change in place) and ``apply_gradients``;
``output()`` is the last step's network output and ``optimizer_state(layer,
tensor)`` views the optimizer state the network holds (what fit_step binds an
optim object's state arrays to).

:func:`from_sequential` copies an ``nn.Sequential`` of ``Linear`` layers (with
optional ``Activation`` modules fused into an identity Linear, and ``Dropout``,
which the C network treats as the identity) into a network, then rebinds each
Linear's ``weight.data`` / ``bias.data`` to the views: the ``nn`` modules, save
and diagnostics keep working and see the same memory as the network.

CPU only for now: a CUDA ``lwNetwork_t`` exists in the C API, but its memory
would need CuPy views, which this module does not build.

Results: ``forward`` gives exactly the bits of the ``nn`` forward (the same
``lwLinearForward`` calls). ``train_step`` with SGD gives exactly the bits of
``nn``'s fused per-layer SGD path (``optim.SGD.backward_step``), because both
issue the same primitive calls in the same order; with the other optimizers
(Adam, AdamW, RMSprop, Adagrad) it gives exactly the bits of ``net.backward``
then ``opt.step()`` (lwLinearBackwardWeights then lwOptimizerStep per tensor,
the same calls). ``tests/test_native.py`` and ``tests/test_fit_native.py``
check these.
"""

from __future__ import annotations

import numpy as np

from . import _core, nn, ops

_ACT = dict(_core.ACTIVATIONS)
_ACT_NAME = {v: k for k, v in _ACT.items()}
_LOSS = dict(_core.LOSSES)
_DTYPES = {np.dtype(np.float32): _core.FLOAT32, np.dtype(np.float64): _core.FLOAT64}


def _dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from e
    if dt not in _DTYPES:
        raise ValueError(f"dtype: expected float32 or float64, got {dt}")
    return dt


class NativeNetwork:
    """A feed-forward stack of dense layers held by the C library (CPU).

    sizes: layer widths, input first (len = layers + 1); activations: one name per
    layer (see ``layerwise.ops.ACTIVATIONS``); bias: a bool or one bool per layer.
    Parameters start zeroed; ``seed`` (an int) fills them with
    ``lwNetworkInitUniform`` (U(-1/sqrt(fan_in), 1/sqrt(fan_in)), deterministic).
    """

    def __init__(self, sizes, activations, *, bias=True, dtype="float32", seed=None):
        sizes = list(sizes)
        activations = list(activations)
        for s in sizes:
            if not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 1:
                raise ValueError(f"sizes: every size must be a positive integer, got {sizes}")
        if len(sizes) != len(activations) + 1:
            raise ValueError(f"sizes: needs one more entry than activations ({len(activations)}), got {len(sizes)}")
        for a in activations:
            if a not in _ACT:
                raise ValueError(f"activations: unknown activation {a!r}; expected one of {', '.join(_ACT)}")
        has_bias = [bool(bias)] * len(activations) if isinstance(bias, (bool, np.bool_)) else [bool(b) for b in bias]
        if len(has_bias) != len(activations):
            raise ValueError(f"bias: needs one entry per layer ({len(activations)}), got {len(has_bias)}")
        dt = _dtype(dtype)
        self._net = _core.Network(ops._cpu_handle(), [int(s) for s in sizes], [_ACT[a] for a in activations],
                                  [int(b) for b in has_bias], _DTYPES[dt])
        self._steps = 0
        self._opt_layout = None  # (mode code, hyper) the held optimizer state is laid out for
        if seed is not None:
            self.init_uniform(seed)

    @classmethod
    def _wrap(cls, core_net):
        self = cls.__new__(cls)
        self._net = core_net
        self._steps = 0
        self._opt_layout = None
        return self

    @classmethod
    def load(cls, path):
        """Reads a model file (safetensors, as written by ``save`` or ``nn.save``).

        ValueError for a malformed file, OSError when it cannot be read, and
        RuntimeError (LayerwiseError) for a valid file whose modules the C
        network cannot express."""
        return cls._wrap(_core.Network.load(ops._cpu_handle(), str(path)))

    def save(self, path):
        """Writes the network as a model file, atomically (temp file, fsync, rename)."""
        self._net.save(str(path))

    # ---- architecture and parameters ------------------------------------------------
    @property
    def sizes(self):
        return list(self._net.sizes)

    @property
    def activations(self):
        return [_ACT_NAME[a] for a in self._net.activations]

    @property
    def num_layers(self):
        return self._net.num_layers

    @property
    def dtype(self):
        return np.dtype(np.float32) if self._net.dtype == _core.FLOAT32 else np.dtype(np.float64)

    def _layer(self, i):
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"layer: expected an int, got {type(i).__name__}")
        if not 0 <= i < self.num_layers:
            raise ValueError(f"layer: index {i} is out of range [0, {self.num_layers})")
        return int(i)

    def weight(self, i):
        """Layer i's weight (out, in): a view of the network's memory."""
        return self._net.weight(self._layer(i))

    def bias(self, i):
        """Layer i's bias (out,) as a view, or None when the layer has none."""
        return self._net.bias(self._layer(i))

    def init_uniform(self, seed):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
        self._net.init_uniform(int(seed))

    # ---- compute ----------------------------------------------------------------------
    def _input(self, X):
        if not isinstance(X, np.ndarray):
            raise TypeError(f"X: expected a NumPy array, got {type(X).__name__}")
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"X: expected shape (n, {self.sizes[0]}), got {X.shape}")
        if X.dtype != self.dtype:
            raise TypeError(f"X: expected dtype {self.dtype} (the network's), got {X.dtype}")
        return np.ascontiguousarray(X)

    def forward(self, X):
        """The network's outputs for X (n, inputs): a new (n, outputs) array."""
        X = self._input(X)
        y = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
        self._net.forward(X.shape[0], X, y)
        return y

    def _target(self, target, n, loss):
        if loss not in _LOSS:
            raise ValueError(f"loss: unknown loss {loss!r}; expected one of {', '.join(_LOSS)}")
        if loss == "softmax_cross_entropy":
            t = np.asarray(target)
            if t.ndim != 1 or t.shape[0] != n or t.dtype.kind not in "iu":
                raise ValueError(f"target: expected {n} integer class ids, got shape {t.shape} dtype {t.dtype}")
            return np.ascontiguousarray(t, dtype=np.int32)
        if not isinstance(target, np.ndarray) or target.dtype != self.dtype:
            raise TypeError(f"target: expected a NumPy array of dtype {self.dtype}")
        if target.shape != (n, self.sizes[-1]):
            raise ValueError(f"target: expected shape {(n, self.sizes[-1])}, got {target.shape}")
        return np.ascontiguousarray(target)

    def train_step(self, X, target, *, loss="softmax_cross_entropy", optimizer="sgd", **hyper):
        """One optimizer step on the batch (X, target); returns the batch loss before the update.

        target: class ids (n,) for softmax_cross_entropy, else an (n, outputs) array of
        the network's dtype. optimizer: a mode of ``layerwise.ops.OPTIMIZER_MODES`` with
        torch.optim hyperparameters (lr=..., momentum=...); the optimizer state lives in
        the network (reset when the mode changes, or with ``reset_optimizer_state``)."""
        X = self._input(X)
        t = self._target(target, X.shape[0], loss)
        code, values = ops._optimizer_args(optimizer, hyper)
        value = self._net.train_step(X.shape[0], X, t, _LOSS[loss], code, values, self._steps)
        self._steps += 1
        self._opt_layout = (code, values)
        return value

    # ---- the step in three parts (data parallelism) -------------------------------------
    def compute_gradients(self, X, target, *, loss="softmax_cross_entropy"):
        """Forward, loss and backward of the batch, no update; returns the batch loss.

        The gradients land in ``gradients()``; ``apply_gradients`` then steps. A data-parallel
        step is ``compute_gradients`` -> allreduce ``gradients()`` in place -> ``apply_gradients``,
        bitwise ``train_step`` (for SGD, whose ``train_step`` is fused, within rounding)."""
        X = self._input(X)
        t = self._target(target, X.shape[0], loss)
        return self._net.compute_gradients(X.shape[0], X, t, _LOSS[loss])

    def gradients(self):
        """The flat gradient buffer: a 1-D view (W0, b0, W1, b1, ... row-major; no entry for a
        missing bias) holding the last ``compute_gradients``; write it in place to change the update."""
        return self._net.gradients()

    def apply_gradients(self, optimizer="sgd", **hyper):
        """Steps every parameter from ``gradients()`` with the optimizer (as ``train_step``), then
        counts the step. RuntimeError (LayerwiseError) before any ``compute_gradients``."""
        code, values = ops._optimizer_args(optimizer, hyper)
        self._net.apply_gradients(code, values, self._steps)
        self._steps += 1
        self._opt_layout = (code, values)

    def output(self):
        """The last layer's output of the last ``train_step`` / ``compute_gradients`` (before that
        step's update): a view, valid until the next step."""
        return self._net.output()

    @property
    def completed_steps(self):
        """Steps taken under the current optimizer state (its t; set it to continue a run)."""
        return self._steps

    @completed_steps.setter
    def completed_steps(self, t):
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
            raise ValueError(f"completed_steps: expected a non-negative int, got {t!r}")
        self._steps = int(t)

    def prepare_optimizer_state(self, optimizer="sgd", **hyper):
        """Creates the optimizer state for this optimizer now (as its first step would), unless
        the held state already has its layout; returns the number of state buffers per tensor."""
        code, values = ops._optimizer_args(optimizer, hyper)
        count = self._net.prepare_optimizer_state(code, values)
        self._opt_layout = (code, values)
        return count

    def optimizer_state(self, layer, tensor):
        """Views of the optimizer state buffers of layer ``layer``'s weight (tensor 0 or "weight")
        or bias (1 or "bias"), in ``ops.optimizer_step``'s order; [] when the optimizer keeps none.
        The views stay valid memory, but a later change of optimizer layout (another mode or
        state count, ``reset_optimizer_state``) gives the network new buffers."""
        i = self._layer(layer)
        which = {"weight": 0, "bias": 1}.get(tensor, tensor)
        if which not in (0, 1) or isinstance(which, bool):
            raise ValueError(f"tensor: expected 0/'weight' or 1/'bias', got {tensor!r}")
        if which == 1 and self.bias(i) is None:
            raise ValueError(f"tensor: layer {i} has no bias")
        layout = getattr(self, "_opt_layout", None)
        if layout is None:
            raise ValueError("optimizer_state: no optimizer state yet (prepare_optimizer_state creates it)")
        count = _core.optimizer_state_count(*layout)
        return [self._net.optimizer_state(i, which, s) for s in range(count)]

    def reset_optimizer_state(self):
        self._net.reset_optimizer_state()
        self._steps = 0
        self._opt_layout = None

    def set_option(self, name, on):
        """name: "input_gradient" or "gradient_norms" (see lwNetworkSetOption)."""
        codes = {"input_gradient": _core.NETWORK_INPUT_GRADIENT, "gradient_norms": _core.NETWORK_GRADIENT_NORMS}
        if name not in codes:
            raise ValueError(f"name: unknown option {name!r}; expected one of {', '.join(codes)}")
        self._net.set_option(codes[name], bool(on))

    def input_gradient(self):
        """dJ/dx of the last step with the "input_gradient" option on (a view, valid until the next step)."""
        return self._net.input_gradient()

    def gradient_norms(self):
        """Per-layer ||(dW, db)|| of the last step with the "gradient_norms" option on."""
        return list(self._net.gradient_norms())

    def __repr__(self):
        return f"NativeNetwork(sizes={self.sizes}, activations={self.activations}, dtype={self.dtype})"


def _layers(module, out):
    """Appends [linear, activation name] pairs of module to out, fusing Activation modules."""
    if isinstance(module, nn.Sequential):
        for m in module.modules:
            _layers(m, out)
    elif isinstance(module, nn.Linear):
        out.append([module, module.activation])
    elif isinstance(module, nn.Activation):
        if not out or (out[-1][1] != "identity" and module.mode != "identity"):
            raise ValueError("seq: an Activation must follow a Linear whose activation is identity")
        if module.mode != "identity":
            out[-1][1] = module.mode
    elif isinstance(module, nn.Dropout):
        pass  # identity at inference; the C training step does not drop units
    else:
        raise ValueError(f"seq: {type(module).__name__} cannot be expressed as a native network "
                         "(Sequential, Linear, Activation and Dropout can)")


def from_sequential(seq):
    """A NativeNetwork with seq's architecture and parameters; seq's Linear layers then
    use the network's memory (their weight.data / bias.data become the zero-copy views)."""
    pairs = []
    _layers(seq, pairs)
    if not pairs:
        raise ValueError("seq: has no Linear layer")
    linears = [p[0] for p in pairs]
    for a, b in zip(linears, linears[1:]):
        if a.out_features != b.in_features:
            raise ValueError(f"seq: a Linear with {a.out_features} outputs feeds one with {b.in_features} inputs")
    dtypes = {np.dtype(l.weight.data.dtype) for l in linears}
    if len(dtypes) != 1:
        raise ValueError(f"seq: layers mix dtypes {sorted(map(str, dtypes))}")
    for l in linears:
        if not isinstance(l.weight.data, np.ndarray):
            raise ValueError("seq: native networks are CPU-only; move the model to the CPU first")
    net = NativeNetwork([linears[0].in_features] + [l.out_features for l in linears], [p[1] for p in pairs],
                        bias=[l.bias is not None for l in linears], dtype=dtypes.pop())
    for i, l in enumerate(linears):
        w = net.weight(i)
        w[...] = l.weight.data
        l.weight.data = w
        if l.bias is not None:
            b = net.bias(i)
            b[...] = l.bias.data
            l.bias.data = b
    return net
