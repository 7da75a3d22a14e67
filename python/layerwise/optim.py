"""layerwise.optim -- stochastic gradient descent and learning-rate schedules.

The update is ops.sgd_update (torch.optim.SGD's convention, dampening 0)::

    g = grad + weight_decay * param
    v = momentum * v + g                      (when momentum != 0)
    g = g + momentum * v if nesterov else v
    param -= lr * g

Schedules give the learning rate of epoch t (0-based) from the base rate; the
trainer calls ``optimizer.set_epoch(t)`` at the start of every epoch.
"""
from __future__ import annotations

import math

from . import ops
from .nn import Parameter, array_module

__all__ = ["SGD", "Schedule", "Constant", "StepLR", "ExponentialLR", "InverseTimeLR", "make_optimizer",
           "make_schedule", "OPTIMIZERS"]


def _number(name, v, *, low=None, low_open=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
        raise TypeError(f"{name}: expected a number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {v}")
    if low is not None and (v <= low if low_open else v < low):
        raise ValueError(f"{name}: must be {'>' if low_open else '>='} {low}, got {v}")
    return v


# ---- schedules -------------------------------------------------------------------
class Schedule:
    """lr(epoch) = schedule(base_lr, epoch)."""

    def __call__(self, base_lr, epoch):
        raise NotImplementedError


class Constant(Schedule):
    """lr_t = lr."""

    def __call__(self, base_lr, epoch):
        return base_lr

    def __repr__(self):
        return "Constant()"


class StepLR(Schedule):
    """lr_t = lr * gamma ** (t // step_size): drop by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, step_size, gamma=0.1):
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"step_size: expected a positive integer, got {step_size!r}")
        self.step_size, self.gamma = step_size, _number("gamma", gamma, low=0)

    def __call__(self, base_lr, epoch):
        return base_lr * self.gamma ** (epoch // self.step_size)

    def __repr__(self):
        return f"StepLR(step_size={self.step_size}, gamma={self.gamma})"


class ExponentialLR(Schedule):
    """lr_t = lr * gamma ** t."""

    def __init__(self, gamma):
        self.gamma = _number("gamma", gamma, low=0)

    def __call__(self, base_lr, epoch):
        return base_lr * self.gamma ** epoch

    def __repr__(self):
        return f"ExponentialLR(gamma={self.gamma})"


class InverseTimeLR(Schedule):
    """lr_t = lr / (1 + decay * t) -- the 1/t decay of stochastic approximation."""

    def __init__(self, decay):
        self.decay = _number("decay", decay, low=0)

    def __call__(self, base_lr, epoch):
        return base_lr / (1.0 + self.decay * epoch)

    def __repr__(self):
        return f"InverseTimeLR(decay={self.decay})"


_SCHEDULES = {"constant": Constant, "step": StepLR, "exponential": ExponentialLR, "inverse_time": InverseTimeLR}


def make_schedule(spec=None, **kw):
    """A Schedule from None (constant), a Schedule, or a name (constant, step, exponential, inverse_time)."""
    if spec is None:
        return Constant()
    if isinstance(spec, Schedule):
        return spec
    try:
        cls = _SCHEDULES[spec]
    except (KeyError, TypeError):
        raise ValueError(f"schedule: unknown schedule {spec!r}; expected one of {', '.join(_SCHEDULES)}") from None
    return cls(**kw)


# ---- SGD ----------------------------------------------------------------------------
class SGD:
    """Minibatch SGD with optional (Nesterov) momentum and L2 weight decay.

    params: Parameters (e.g. ``net.parameters()``). Velocity buffers are created
    (zeros, on the parameter's device) at the first step. Create the optimizer
    after moving the net to its device. ``weight_decay`` applies to every parameter
    given, biases included (as in torch.optim.SGD); to exempt biases, give two
    optimizers the two groups."""

    def __init__(self, params, lr, *, momentum=0.0, weight_decay=0.0, nesterov=False, schedule=None):
        self.params = list(params)
        for p in self.params:
            if not isinstance(p, Parameter):
                raise TypeError(f"params: expected layerwise.nn.Parameter objects, got {type(p).__name__}")
        self.base_lr = _number("lr", lr, low=0, low_open=True)
        self.lr = self.base_lr
        self.momentum = _number("momentum", momentum, low=0)
        self.weight_decay = _number("weight_decay", weight_decay, low=0)
        if nesterov and self.momentum <= 0:
            raise ValueError("nesterov: needs momentum > 0")
        self.nesterov = bool(nesterov)
        self.schedule = make_schedule(schedule)
        self.velocity = [None] * len(self.params)
        self._index = {id(p): i for i, p in enumerate(self.params)}
        self.epoch = 0

    def set_epoch(self, epoch):
        """Sets the learning rate of epoch ``epoch`` (0-based) from the schedule; returns it."""
        self.epoch = epoch
        self.lr = float(self.schedule(self.base_lr, epoch))
        return self.lr

    def step(self):
        """One update of every parameter from its current ``.grad``."""
        self.step_params(self.params)

    def owns(self, p):
        """Whether ``p`` is one of the parameters this optimizer updates."""
        return id(p) in self._index

    def velocity_of(self, p):
        """The momentum buffer of parameter ``p`` (zeros at first use), or None without momentum."""
        if self.momentum == 0.0:
            return None
        i = self._index[id(p)]
        v = self.velocity[i]
        if v is None or v.shape != p.data.shape:
            v = self.velocity[i] = array_module(p.data).zeros_like(p.data)
        return v

    def step_params(self, params):
        """The update of those of ``params`` this optimizer owns, from their ``.grad``."""
        lr, mom, wd, nest = self.lr, self.momentum, self.weight_decay, self.nesterov
        for p in params:
            if self.owns(p):
                ops.sgd_update(p.data, p.grad, lr=lr, momentum=mom, velocity=self.velocity_of(p), weight_decay=wd,
                               nesterov=nest)

    def backward_step(self, net, dout, *, input_grad=False):
        """``net.backward(dout)`` then ``step()`` in one sweep, with the fused
        backward + update kernels where layers have them (same parameters after;
        ``.grad`` is not written). Returns the input gradient when asked for."""
        return net.backward_sgd(dout, self, input_grad=input_grad)

    def zero_grad(self):
        for p in self.params:
            p.grad.fill(0)

    def __repr__(self):
        return (f"SGD(lr={self.base_lr}, momentum={self.momentum}, weight_decay={self.weight_decay}, "
                f"nesterov={self.nesterov}, schedule={self.schedule!r})")


def _sgd(params, lr=0.1, **kw):
    return SGD(params, lr, **kw)


def _momentum(params, lr=0.1, momentum=0.9, **kw):
    return SGD(params, lr, momentum=momentum, **kw)


def _nesterov(params, lr=0.1, momentum=0.9, **kw):
    kw.pop("nesterov", None)
    return SGD(params, lr, momentum=momentum, nesterov=True, **kw)


OPTIMIZERS = {"sgd": _sgd, "momentum": _momentum, "nesterov": _nesterov}


def make_optimizer(name, params, **kw):
    """An optimizer by name: "sgd" (plain; momentum etc. as keywords), "momentum"
    (SGD, momentum 0.9 by default), "nesterov" (Nesterov momentum 0.9 by default)."""
    try:
        factory = OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"optimizer: unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}") from None
    return factory(params, **kw)
