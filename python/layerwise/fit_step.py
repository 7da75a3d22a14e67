"""layerwise.fit_step -- the training step ``train.fit`` runs on every minibatch.

``make_step(net, opt, loss)`` returns ``step(xb, yb) -> (loss_value, out)``: one
forward, loss, backward and optimizer update on the batch, where ``out`` is the
net's output the loss saw (before the update). Two implementations:

* native: the whole step is one C call on a ``NativeNetwork`` built once from the
  net (``native.from_sequential``, which rebinds every Linear's weight and bias to
  the network's memory, zero-copy). The optimizer object's state arrays are
  rebound the same way to the state the network holds (after copying their
  current values in), so ``opt.state_dict()``, checkpoints and resume work
  unchanged; its step count and scheduled learning rate are passed at every step.
  SGD takes ``lwNetworkTrainStep``'s fused path, which issues exactly the calls
  of ``optim.SGD.backward_step`` (same bits); the other optimizers take
  ``compute_gradients`` then ``apply_gradients``, exactly the calls of
  ``net.backward`` then ``opt.step()`` (same bits), with the loss checked in
  between so that a non-finite loss leaves the weights that produced it.
* python: ``net.forward``, the loss, then ``opt.backward_step`` (SGD's fused sweep)
  or ``net.backward`` + ``opt.step()``: any module, loss callable or optimizer.

The native path is taken when it can give the same result: CPU NumPy float32 or
float64 parameters, a Sequential of Linear and Activation modules (Dropout only
with p=0), a loss the C network knows by name, and an optim.SGD, Adam, AdamW,
RMSprop or Adagrad object that updates exactly the net's parameters.
``step.native`` says which path was taken (``step.why_not`` why not).
"""
from __future__ import annotations

import math

import numpy as np

from . import _core, native as native_mod, nn, ops, optim

__all__ = ["make_step", "native_blocker"]

_NATIVE_OPTIMIZERS = (optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adagrad)
_LOSS_CODES = dict(_core.LOSSES)


def _module_blocker(m):
    if type(m) is nn.Sequential:
        for child in m.modules:
            why = _module_blocker(child)
            if why:
                return why
        return None
    if type(m) is nn.Linear or isinstance(m, nn.Activation):
        return None
    if type(m) is nn.Dropout:
        return None if m.p == 0.0 else f"Dropout with p={m.p} (the C step does not drop units)"
    return f"a {type(m).__name__} module (only Sequential, Linear, Activation and Dropout(p=0) run natively)"


def native_blocker(net, opt, loss):
    """Why the native step cannot train ``net`` with ``opt`` and ``loss`` (a sentence), or None."""
    if type(net) is not nn.Sequential:
        return f"the net is a {type(net).__name__}, not an nn.Sequential"
    why = _module_blocker(net)
    if why:
        return f"the net has {why}"
    params = net.parameters()
    if not params:
        return "the net has no parameters"
    for p in params:
        if not isinstance(p.data, np.ndarray):
            return "the net is not on the CPU (native steps take NumPy arrays)"
        if p.data.dtype not in (np.float32, np.float64):
            return f"the net's dtype is {p.data.dtype} (native steps take float32 or float64)"
    if callable(loss):
        return "the loss is a callable (native steps take a loss by name)"
    lname = nn.loss_name(loss)
    if lname not in _LOSS_CODES:
        return f"the C network has no loss {lname!r}"
    if type(opt) not in _NATIVE_OPTIMIZERS:
        return (f"the optimizer is a {type(opt).__name__} (native steps take optim.SGD, Adam, AdamW, RMSprop "
                "or Adagrad objects)")
    if len(opt.params) != len(params) or not all(opt.owns(p) for p in params):
        return "the optimizer does not update exactly the net's parameters"
    try:
        pairs = []
        native_mod._layers(net, pairs)
    except ValueError as e:
        return f"the C network cannot express the net ({e})"
    return None


def _optimizer_hyper(opt):
    """(mode name, ops.optimizer_step keywords) of the optimizer's next step (scheduled lr)."""
    if isinstance(opt, optim.SGD):
        return "sgd", dict(lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay, nesterov=opt.nesterov)
    hyper = opt._step_hyper()
    if isinstance(opt, optim.Adagrad):  # the C state starts at it (the Python one at _initial_state)
        hyper["initial_accumulator_value"] = opt.initial_accumulator_value
    return opt._mode, hyper


class _PythonStep:
    """The per-layer path: forward, loss, backward and update from Python."""

    native = False

    def __init__(self, net, opt, loss, why_not):
        self.net, self.opt, self.loss_fn, self.why_not = net, opt, nn.get_loss(loss), why_not
        # optim.SGD can run backward and update as one sweep (fused kernels, no gradient
        # arrays): same parameters after each step, less memory traffic.
        self.fused = isinstance(opt, optim.SGD) and hasattr(net, "backward_sgd")

    def __call__(self, xb, yb):
        out = self.net.forward(xb, train=True)
        value, dout = self.loss_fn(out, yb)
        if not math.isfinite(float(value)):
            return value, out  # no update: the caller reports it with the weights that produced it
        if self.fused:
            self.opt.backward_step(self.net, dout)
        else:
            self.net.backward(dout, input_grad=False)
            self.opt.step()
        return value, out

    def update(self):
        """The update from the parameters' ``.grad`` (after the caller filled and e.g.
        allreduced them): the last part of a step split for data parallelism."""
        self.opt.step()


class _NativeStep:
    """The one-call path on a NativeNetwork sharing the net's and the optimizer's memory."""

    native = True
    why_not = None

    def __init__(self, net, opt, loss):
        self.opt = opt
        self.lname = nn.loss_name(loss)
        self.loss_code = _LOSS_CODES[self.lname]
        self.network = native_mod.from_sequential(net)
        self.core = self.network._net
        linears = nn.linear_layers(net)
        # (parameter index in opt, layer, tensor 0 weight / 1 bias) for every parameter.
        self.slots = []
        for i, layer in enumerate(linears):
            self.slots.append((opt._index[id(layer.weight)], i, 0))
            if layer.bias is not None:
                self.slots.append((opt._index[id(layer.bias)], i, 1))
        self.outputs = linears[-1].out_features
        self.dtype = linears[0].weight.data.dtype
        self.bound = None  # (layout key, [state dict per slot]) the optimizer's state is bound to
        self._bind_state()

    def _layout(self, mode, hyper):
        return mode, self.opt._state_names(), hyper.get("initial_accumulator_value", 0.0)

    def _bind_state(self):
        """Points the optimizer's state arrays at the network's (their current values copied in)."""
        opt = self.opt
        mode, hyper = _optimizer_hyper(opt)
        self.network.prepare_optimizer_state(mode, **hyper)
        names = opt._state_names()
        dicts = []
        for index, layer, tensor in self.slots:
            views = self.network.optimizer_state(layer, tensor)
            old = opt.state[index]
            fresh = old is None or set(old) != set(names)
            for name, view in zip(names, views):  # no state yet: what the optimizer's first use makes
                view[...] = opt._initial_state(name) if fresh else old[name]
            st = dict(zip(names, views)) if names else None
            opt.state[index] = st
            dicts.append(st)
        self.bound = (self._layout(mode, hyper), dicts)

    def _state_is_bound(self, mode, hyper):
        layout, dicts = self.bound
        state = self.opt.state
        return (all(state[index] is st for (index, _, _), st in zip(self.slots, dicts))
                and self._layout(mode, hyper) == layout)

    def _target(self, yb):
        if self.lname == "softmax_cross_entropy" or yb.ndim == 2:
            return yb
        # Class labels for a dense loss: the loss's own one-hot encoding.
        return nn.losses._dense_target(np.empty((yb.shape[0], self.outputs), self.dtype), yb)

    def __call__(self, xb, yb):
        opt = self.opt
        mode, hyper = _optimizer_hyper(opt)
        if not self._state_is_bound(mode, hyper):  # e.g. opt.load_state_dict replaced the arrays
            self._bind_state()
        code, values = ops._optimizer_args(mode, hyper)
        n = xb.shape[0]
        xb = np.ascontiguousarray(xb)
        t = np.ascontiguousarray(self._target(yb))
        if mode == "sgd":  # the fused sweep: SGD's own path, one call
            value = self.core.train_step(n, xb, t, self.loss_code, code, values, opt.steps)
        else:
            value = self.core.compute_gradients(n, xb, t, self.loss_code)
            if not math.isfinite(value):
                return value, self.core.output()
            self.core.apply_gradients(code, values, opt.steps)
        opt.steps += 1
        return value, self.core.output()

    # -- the step in three parts, for data parallelism: compute_gradients, then the caller
    # -- changes flat_gradients() in place (an allreduce), then update() --
    def compute_gradients(self, xb, yb):
        """Forward, loss and backward of (xb, yb) into the network's flat gradient buffer,
        no update; returns (loss value, output). An empty batch gives zero gradients."""
        n = xb.shape[0]
        xb = np.ascontiguousarray(xb)
        t = np.ascontiguousarray(self._target(yb))
        value = self.core.compute_gradients(n, xb, t, self.loss_code)
        out = self.core.output() if n else np.empty((0, self.outputs), self.dtype)
        return value, out

    def flat_gradients(self):
        """The network's flat gradient buffer (W0, b0, W1, b1, ...): a writable view."""
        return self.network.gradients()

    def update(self):
        """The optimizer step from the flat gradient buffer (the optimizer's scheduled lr and
        step count), as ``opt.step()`` would from the parameters' gradients."""
        opt = self.opt
        mode, hyper = _optimizer_hyper(opt)
        if not self._state_is_bound(mode, hyper):
            self._bind_state()
        code, values = ops._optimizer_args(mode, hyper)
        self.core.apply_gradients(code, values, opt.steps)
        opt.steps += 1


def make_step(net, opt, loss, *, native=None):
    """``step(xb, yb) -> (loss_value, out)`` training ``net`` with ``opt`` on ``loss`` (a name or
    a callable). native: None picks the native path when eligible (see the module docstring),
    True demands it (ValueError saying why it cannot), False keeps the Python path."""
    if native is not None and not isinstance(native, (bool, np.bool_)):
        raise TypeError(f"native: expected None, True or False, got {native!r}")
    why = native_blocker(net, opt, loss) if native is not False else "native=False"
    if why is None:
        return _NativeStep(net, opt, loss)
    if native:
        raise ValueError(f"native: the native training step cannot run here: {why}")
    return _PythonStep(net, opt, loss, why)
