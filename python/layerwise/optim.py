"""layerwise.optim -- optimizers (SGD, Adam, AdamW, RMSprop, Adagrad) and learning-rate schedules.

SGD's update is ops.sgd_update (torch.optim.SGD's convention, dampening 0)::

    g = grad + weight_decay * param
    v = momentum * v + g                      (when momentum != 0)
    g = g + momentum * v if nesterov else v
    param -= lr * g

Adam, AdamW, RMSprop and Adagrad run ops.optimizer_step, with torch.optim's
formulas, hyperparameter names and defaults (the formulas are documented in
layerwise.h). Every optimizer has ``state_dict()`` / ``load_state_dict(d)``:
``{"type": class name, "hyper": hyperparameters, "step": completed steps,
"state": [one dict name -> NumPy array per parameter]}``.

Schedules give the learning rate of epoch t (0-based) from the base rate; the
trainer calls ``optimizer.set_epoch(t)`` at the start of every epoch.
"""
from __future__ import annotations

import math

import numpy as np

from . import ops
from .nn import Parameter, array_module

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Schedule", "Constant", "StepLR", "ExponentialLR", "InverseTimeLR", "make_optimizer",
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


# ---- shared machinery ------------------------------------------------------------------
def _params_list(params):
    params = list(params)
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"params: expected layerwise.nn.Parameter objects, got {type(p).__name__}")
    return params


def _flag(name, v):
    if not isinstance(v, (bool, np.bool_, int, np.integer)) or v not in (0, 1):
        raise TypeError(f"{name}: expected a bool, got {v!r}")
    return bool(v)


def _beta(name, v):
    v = _number(name, v, low=0)
    if v >= 1:
        raise ValueError(f"{name}: must be < 1, got {v}")
    return v


def _betas(betas):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
    return (_beta("betas[0]", betas[0]), _beta("betas[1]", betas[1]))


def _host_copy(a):
    """A NumPy copy of a NumPy or CuPy array."""
    return np.array(a, copy=True) if isinstance(a, np.ndarray) else a.get()


class Optimizer:
    """What every optimizer here shares: its parameters, the scheduled learning
    rate, per-parameter state arrays (created on the parameter's device at the
    first step), the count of completed steps, and state_dict / load_state_dict.

    Subclasses set ``_mode`` (the ops.optimizer_step mode), define ``_state_names()``
    (the state arrays of one parameter, in ops.optimizer_step's order) and
    ``_hyper()`` (the constructor's hyperparameters, torch.optim's names)."""

    _mode = None

    def __init__(self, params, lr, schedule):
        self.params = _params_list(params)
        self.base_lr = _number("lr", lr, low=0, low_open=True)
        self.lr = self.base_lr
        self.schedule = make_schedule(schedule)
        self._index = {id(p): i for i, p in enumerate(self.params)}
        self.state = [None] * len(self.params)
        self.steps = 0  # completed steps; the next update is step number steps + 1
        self.epoch = 0

    # -- the interface the trainer uses --
    def set_epoch(self, epoch):
        """Sets the learning rate of epoch ``epoch`` (0-based) from the schedule; returns it."""
        self.epoch = epoch
        self.lr = float(self.schedule(self.base_lr, epoch))
        return self.lr

    def step(self):
        """One update of every parameter from its current ``.grad``."""
        self.step_params(self.params)
        self.steps += 1

    def backward_step(self, net, dout, *, input_grad=False):
        """``net.backward(dout)`` then ``step()``. Returns the input gradient when asked for."""
        dx = net.backward(dout, input_grad=input_grad)
        self.step()
        return dx

    def owns(self, p):
        """Whether ``p`` is one of the parameters this optimizer updates."""
        return id(p) in self._index

    def zero_grad(self):
        for p in self.params:
            p.grad.fill(0)

    # -- the update --
    def _state_names(self):
        raise NotImplementedError

    def _initial_state(self, name):
        return 0.0

    def state_of(self, p):
        """The state arrays of parameter ``p`` (dict name -> array), created at first use."""
        i = self._index[id(p)]
        st = self.state[i]
        if st is None or any(a.shape != p.data.shape for a in st.values()):
            xp = array_module(p.data)
            st = self.state[i] = {}
            for name in self._state_names():
                a = xp.empty_like(p.data)
                a.fill(self._initial_state(name))
                st[name] = a
        return st

    def _step_hyper(self):
        """ops.optimizer_step's keywords for this step (the scheduled lr)."""
        raise NotImplementedError

    def step_params(self, params):
        """The update of those of ``params`` this optimizer owns, from their ``.grad``,
        as step number ``steps + 1`` (``step()`` then advances the count)."""
        hyper = self._step_hyper()
        names = self._state_names()
        for p in params:
            if self.owns(p):
                st = self.state_of(p)
                ops.optimizer_step(p.data, p.grad, [st[n] for n in names], mode=self._mode, step=self.steps + 1,
                                   **hyper)

    # -- checkpoints --
    def _hyper(self):
        raise NotImplementedError

    def state_dict(self):
        """{"type", "hyper", "step", "state"}: a copy (NumPy arrays) of everything a resumed run needs
        (the schedule is not included: it is part of the optimizer's construction)."""
        return {
            "type": type(self).__name__,
            "hyper": self._hyper(),
            "step": int(self.steps),
            "state": [{} if st is None else {k: _host_copy(a) for k, a in st.items()} for st in self.state],
        }

    def load_state_dict(self, d):
        """Restores ``state_dict()``'s hyperparameters, step count and state (copied onto the
        parameters' devices). Raises ValueError naming what does not match."""
        if not isinstance(d, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(d).__name__}")
        missing = {"type", "hyper", "step", "state"} - set(d)
        if missing:
            raise ValueError(f"state_dict: missing keys {sorted(missing)}")
        if d["type"] != type(self).__name__:
            raise ValueError(f"state_dict: type is {d['type']!r}, but this optimizer is {type(self).__name__}")
        hyper = d["hyper"]
        if not isinstance(hyper, dict) or set(hyper) != set(self._hyper()):
            got = sorted(hyper) if isinstance(hyper, dict) else type(hyper).__name__
            raise ValueError(f"state_dict: hyper has keys {got}, expected {sorted(self._hyper())}")
        step = d["step"]
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"state_dict: step must be an integer >= 0, got {step!r}")
        state = d["state"]
        if not isinstance(state, (list, tuple)) or len(state) != len(self.params):
            n = len(state) if isinstance(state, (list, tuple)) else type(state).__name__
            raise ValueError(f"state_dict: state has {n} entries, but this optimizer has {len(self.params)} parameters")
        # Validate everything before changing anything.
        old = self._hyper()
        self._set_hyper(hyper)
        try:
            names = set(self._state_names())
            for i, (p, st) in enumerate(zip(self.params, state)):
                if not isinstance(st, dict):
                    raise ValueError(f"state_dict: state[{i}] must be a dict, got {type(st).__name__}")
                if st and set(st) != names:
                    raise ValueError(f"state_dict: state[{i}] has buffers {sorted(st)}, expected {sorted(names)}")
                for k, a in st.items():
                    shape = tuple(getattr(a, "shape", ()))
                    if shape != tuple(p.data.shape):
                        raise ValueError(f"state_dict: state[{i}][{k!r}] has shape {shape}, but parameter {i} "
                                         f"has shape {tuple(p.data.shape)}")
        except Exception:
            self._set_hyper(old)
            raise
        for i, (p, st) in enumerate(zip(self.params, state)):
            xp = array_module(p.data)
            self.state[i] = {k: xp.array(np.asarray(a), dtype=p.data.dtype) for k, a in st.items()} if st else None
        self.steps = int(step)
        self._after_load()

    def _set_hyper(self, hyper):
        raise NotImplementedError

    def _after_load(self):
        pass


# ---- SGD ----------------------------------------------------------------------------
class SGD(Optimizer):
    """Minibatch SGD with optional (Nesterov) momentum and L2 weight decay.

    params: Parameters (e.g. ``net.parameters()``). Velocity buffers are created
    (zeros, on the parameter's device) at the first step. Create the optimizer
    after moving the net to its device. ``weight_decay`` applies to every parameter
    given, biases included (as in torch.optim.SGD); to exempt biases, give two
    optimizers the two groups."""

    _mode = "sgd"

    def __init__(self, params, lr, *, momentum=0.0, weight_decay=0.0, nesterov=False, schedule=None):
        super().__init__(params, lr, schedule)
        self._set_hyper(dict(lr=self.base_lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov))

    def _set_hyper(self, h):
        lr = _number("lr", h["lr"], low=0, low_open=True)
        momentum = _number("momentum", h["momentum"], low=0)
        weight_decay = _number("weight_decay", h["weight_decay"], low=0)
        if h["nesterov"] and momentum <= 0:
            raise ValueError("nesterov: needs momentum > 0")
        self.base_lr, self.momentum, self.weight_decay, self.nesterov = lr, momentum, weight_decay, bool(h["nesterov"])
        self.lr = float(self.schedule(self.base_lr, self.epoch))

    def _hyper(self):
        return {"lr": self.base_lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "nesterov": self.nesterov}

    # SGD keeps its buffers in ``velocity`` (one array or None per parameter).
    @property
    def velocity(self):
        return [None if st is None else st.get("momentum_buffer") for st in self.state]

    def _state_names(self):
        return ("momentum_buffer",) if self.momentum != 0.0 else ()

    def velocity_of(self, p):
        """The momentum buffer of parameter ``p`` (zeros at first use), or None without momentum."""
        if self.momentum == 0.0:
            return None
        return self.state_of(p)["momentum_buffer"]

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
        dx = net.backward_sgd(dout, self, input_grad=input_grad)
        self.steps += 1
        return dx

    def __repr__(self):
        return (f"SGD(lr={self.base_lr}, momentum={self.momentum}, weight_decay={self.weight_decay}, "
                f"nesterov={self.nesterov}, schedule={self.schedule!r})")


# ---- adaptive methods -----------------------------------------------------------------
class Adam(Optimizer):
    """Adam (Kingma & Ba), torch.optim.Adam's formula and defaults (amsgrad off)::

        g = grad + weight_decay * param                    (L2, coupled)
        m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
        param -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    t is the step number (1 for the first step). State: exp_avg (m), exp_avg_sq (v)."""

    _mode = "adam"

    def __init__(self, params, lr=1e-3, *, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, schedule=None):
        super().__init__(params, lr, schedule)
        self._set_hyper(dict(lr=self.base_lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _set_hyper(self, h):
        self.base_lr = _number("lr", h["lr"], low=0, low_open=True)
        self.betas = _betas(h["betas"])
        self.eps = _number("eps", h["eps"], low=0)
        self.weight_decay = _number("weight_decay", h["weight_decay"], low=0)
        self.lr = float(self.schedule(self.base_lr, self.epoch))

    def _hyper(self):
        return {"lr": self.base_lr, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def _state_names(self):
        return ("exp_avg", "exp_avg_sq")

    def _step_hyper(self):
        return dict(lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], eps=self.eps,
                    weight_decay=self.weight_decay)

    def __repr__(self):
        return (f"{type(self).__name__}(lr={self.base_lr}, betas={self.betas}, eps={self.eps}, "
                f"weight_decay={self.weight_decay}, schedule={self.schedule!r})")


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter), torch.optim.AdamW: Adam with decoupled weight decay,
    ``param *= 1 - lr * weight_decay`` before the Adam step (default weight_decay 1e-2)."""

    _mode = "adamw"

    def __init__(self, params, lr=1e-3, *, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, schedule=None):
        super().__init__(params, lr, betas=betas, eps=eps, weight_decay=weight_decay, schedule=schedule)


class RMSprop(Optimizer):
    """RMSprop, torch.optim.RMSprop's formula and defaults::

        g = grad + weight_decay * param
        sq = alpha sq + (1 - alpha) g^2
        centered: ga = alpha ga + (1 - alpha) g,  d = sqrt(sq - ga^2) + eps;  else d = sqrt(sq) + eps
        momentum > 0: buf = momentum buf + g / d,  param -= lr buf;  else param -= lr g / d

    State: square_avg, momentum_buffer (momentum > 0), grad_avg (centered)."""

    _mode = "rmsprop"

    def __init__(self, params, lr=1e-2, *, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 schedule=None):
        super().__init__(params, lr, schedule)
        self._set_hyper(dict(lr=self.base_lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                             centered=centered))

    def _set_hyper(self, h):
        self.base_lr = _number("lr", h["lr"], low=0, low_open=True)
        self.alpha = _number("alpha", h["alpha"], low=0)
        self.eps = _number("eps", h["eps"], low=0)
        self.weight_decay = _number("weight_decay", h["weight_decay"], low=0)
        self.momentum = _number("momentum", h["momentum"], low=0)
        self.centered = _flag("centered", h["centered"])
        self.lr = float(self.schedule(self.base_lr, self.epoch))

    def _hyper(self):
        return {"lr": self.base_lr, "alpha": self.alpha, "eps": self.eps, "weight_decay": self.weight_decay,
                "momentum": self.momentum, "centered": self.centered}

    def _state_names(self):
        return ("square_avg",) + (("momentum_buffer",) if self.momentum > 0 else ()) + \
            (("grad_avg",) if self.centered else ())

    def _step_hyper(self):
        return dict(lr=self.lr, alpha=self.alpha, eps=self.eps, weight_decay=self.weight_decay,
                    momentum=self.momentum, centered=self.centered)

    def __repr__(self):
        return (f"RMSprop(lr={self.base_lr}, alpha={self.alpha}, eps={self.eps}, weight_decay={self.weight_decay}, "
                f"momentum={self.momentum}, centered={self.centered}, schedule={self.schedule!r})")


class Adagrad(Optimizer):
    """Adagrad (Duchi et al.), torch.optim.Adagrad's formula and defaults::

        g = grad + weight_decay * param
        sum += g^2
        param -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum) + eps)

    t is the step number; ``sum`` starts at initial_accumulator_value. State: sum."""

    _mode = "adagrad"

    def __init__(self, params, lr=1e-2, *, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                 schedule=None):
        super().__init__(params, lr, schedule)
        self._set_hyper(dict(lr=self.base_lr, lr_decay=lr_decay, weight_decay=weight_decay,
                             initial_accumulator_value=initial_accumulator_value, eps=eps))

    def _set_hyper(self, h):
        self.base_lr = _number("lr", h["lr"], low=0, low_open=True)
        self.lr_decay = _number("lr_decay", h["lr_decay"], low=0)
        self.weight_decay = _number("weight_decay", h["weight_decay"], low=0)
        self.initial_accumulator_value = _number("initial_accumulator_value", h["initial_accumulator_value"], low=0)
        self.eps = _number("eps", h["eps"], low=0)
        self.lr = float(self.schedule(self.base_lr, self.epoch))

    def _hyper(self):
        return {"lr": self.base_lr, "lr_decay": self.lr_decay, "weight_decay": self.weight_decay,
                "initial_accumulator_value": self.initial_accumulator_value, "eps": self.eps}

    def _state_names(self):
        return ("sum",)

    def _initial_state(self, name):
        return self.initial_accumulator_value

    def _step_hyper(self):
        return dict(lr=self.lr, lr_decay=self.lr_decay, weight_decay=self.weight_decay, eps=self.eps)

    def __repr__(self):
        return (f"Adagrad(lr={self.base_lr}, lr_decay={self.lr_decay}, weight_decay={self.weight_decay}, "
                f"initial_accumulator_value={self.initial_accumulator_value}, eps={self.eps}, "
                f"schedule={self.schedule!r})")


# ---- by name --------------------------------------------------------------------------
def _sgd(params, lr=0.1, **kw):
    return SGD(params, lr, **kw)


def _momentum(params, lr=0.1, momentum=0.9, **kw):
    return SGD(params, lr, momentum=momentum, **kw)


def _nesterov(params, lr=0.1, momentum=0.9, **kw):
    kw.pop("nesterov", None)
    return SGD(params, lr, momentum=momentum, nesterov=True, **kw)


OPTIMIZERS = {"sgd": _sgd, "momentum": _momentum, "nesterov": _nesterov, "adam": Adam, "adamw": AdamW,
              "rmsprop": RMSprop, "adagrad": Adagrad}


def make_optimizer(name, params, **kw):
    """An optimizer by name: "sgd" (plain; momentum etc. as keywords), "momentum"
    (SGD, momentum 0.9 by default), "nesterov" (Nesterov momentum 0.9 by default),
    "adam", "adamw", "rmsprop", "adagrad" (torch.optim's defaults; keywords as
    their classes take them)."""
    try:
        factory = OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"optimizer: unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}") from None
    try:
        return factory(params, **kw)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            bad = str(e).split("argument")[-1].strip().strip("'")
            raise TypeError(f"{bad}: not a hyperparameter of optimizer {name!r}") from None
        raise
