"""layerwise.ops -- the primitives, on NumPy arrays (CPU) or CuPy arrays (GPU).

Every function takes float32 or float64 arrays (one dtype per call) that are
2-D and C-contiguous, or row-strided views whose rows are contiguous (the row
stride is passed to the kernel; nothing is ever copied silently). Biases are
1-D, class labels 1-D integers. Results are written into ``out=`` arrays when
given (validated like inputs) and freshly allocated otherwise, on the same
device as the inputs. Mixing NumPy and CuPy arrays in one call is a TypeError.

An empty batch (0 rows) is valid: outputs have 0 rows, losses are 0.0, and
``linear_backward_weights`` returns zero gradients (or leaves accumulated ones
unchanged). NaN and inf propagate through the arithmetic; they never crash.

The GIL is released while kernels run.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from . import _core

__all__ = [
    "linear_forward",
    "linear_backward_data",
    "linear_backward_weights",
    "activation_forward",
    "activation_backward",
    "softmax",
    "mse_loss",
    "binary_cross_entropy",
    "softmax_cross_entropy",
    "sgd_update",
    "linear_backward_sgd",
    "optimizer_step",
    "linear_backward_update",
    "optimizer_state_count",
    "optimizer_defaults",
    "OPTIMIZER_MODES",
    "OPTIMIZER_HYPERPARAMETERS",
    "bernoulli",
    "ACTIVATIONS",
    "set_num_threads",
    "get_num_threads",
]

ACTIVATIONS = tuple(_core.ACTIVATIONS)
_ACT = dict(_core.ACTIVATIONS)
_LOSS = dict(_core.LOSSES)
_DTYPE_CODE = {np.dtype(np.float32): _core.FLOAT32, np.dtype(np.float64): _core.FLOAT64}

try:  # CuPy is optional: without it every array must be a NumPy array.
    import cupy as _cupy  # type: ignore

    _CUPY_NDARRAY = _cupy.ndarray
except Exception:  # ImportError, or a broken CUDA install
    _cupy = None
    _CUPY_NDARRAY = ()


# ---- handles -----------------------------------------------------------------
# One CPU handle per thread (handles are cheap, and a thread-local one keeps
# set_num_threads() per thread, like torch.set_num_threads per process), and
# one CUDA handle per (thread, device).
_local = threading.local()
_threads = [0, 0]  # [requested count (0 = all cores), generation]


def _cpu_handle():
    h = getattr(_local, "cpu", None)
    if h is None or _local.cpu_gen != _threads[1]:
        if h is None:
            h = _local.cpu = _core.Handle("cpu")
        h.num_threads = _threads[0]
        _local.cpu_gen = _threads[1]
    return h


def _cuda_handle(device_id):
    handles = getattr(_local, "cuda", None)
    if handles is None:
        handles = _local.cuda = {}
    with _cupy.cuda.Device(device_id):
        h = handles.get(device_id)
        if h is None:
            h = handles[device_id] = _core.Handle("cuda")
        # Launch on CuPy's current stream of the arrays' device (CuPy keeps one
        # per device), as CuPy's own kernels do.
        h.set_stream(_cupy.cuda.get_current_stream().ptr)
    return h


def set_num_threads(n: int) -> None:
    """Threads used by CPU kernels, in every thread (n <= 0: all cores)."""
    _threads[0] = int(n)
    _threads[1] += 1


def get_num_threads() -> int:
    return _cpu_handle().num_threads


# ---- argument checking -------------------------------------------------------
class _Call:
    """Collects the arrays of one call: their device, dtype, and raw layout."""

    __slots__ = ("cuda", "device_id", "dtype", "xp", "first")

    def __init__(self):
        self.cuda = None
        self.device_id = None
        self.dtype = None
        self.xp = np
        self.first = None

    def _place(self, name, a):
        if isinstance(a, np.ndarray):
            cuda, dev = False, None
        elif _CUPY_NDARRAY and isinstance(a, _CUPY_NDARRAY):
            cuda, dev = True, a.device.id
        else:
            kinds = "numpy.ndarray or cupy.ndarray" if _cupy is not None else "numpy.ndarray"
            raise TypeError(f"{name}: expected a {kinds}, got {type(a).__name__}")
        if self.cuda is None:
            self.cuda, self.device_id, self.first = cuda, dev, name
            self.xp = _cupy if cuda else np
        elif cuda != self.cuda:
            raise TypeError(
                f"{name}: is a {'CuPy' if cuda else 'NumPy'} array but {self.first} is a "
                f"{'CuPy' if self.cuda else 'NumPy'} array; do not mix host and device arrays in one call"
            )
        elif cuda and dev != self.device_id:
            raise TypeError(f"{name}: is on CUDA device {dev} but {self.first} is on device {self.device_id}")

    def _float(self, name, a):
        dt = a.dtype
        if dt not in _DTYPE_CODE:
            raise TypeError(f"{name}: expected dtype float32 or float64, got {dt}")
        if self.dtype is None:
            self.dtype = dt
        elif dt != self.dtype:
            raise TypeError(f"{name}: dtype {dt} differs from the call's {self.dtype} (one dtype per call)")

    def mat(self, name, a, rows=None, cols=None, writable=False):
        """A 2-D float matrix -> (ptr, rows, cols, row_stride)."""
        # Fast path first (a C-contiguous NumPy array of the call's dtype): this
        # runs several times per primitive, so it avoids every avoidable lookup.
        if type(a) is np.ndarray and self.cuda is not True:
            if self.cuda is None:
                self.cuda, self.first = False, name
        else:
            if a is None:
                raise TypeError(f"{name}: expected an array, got None")
            self._place(name, a)
        shape = a.shape
        if len(shape) != 2:
            raise ValueError(f"{name}: expected a 2-D array, got {len(shape)}-D with shape {tuple(shape)}")
        if a.dtype is not self.dtype:
            self._float(name, a)
        r, c = shape
        if (rows is not None and r != rows) or (cols is not None and c != cols):
            exp = (rows if rows is not None else r, cols if cols is not None else c)
            raise ValueError(f"{name}: expected shape {exp}, got {tuple(shape)}")
        if writable and not _writeable(a):
            raise ValueError(f"{name}: array is read-only")
        if c and r > 1:
            s0, s1 = a.strides
            isz = a.itemsize
            if s0 == c * isz and (s1 == isz or c == 1):
                return _ptr(a), r, c, c
        return (_ptr(a),) + _layout(name, a, r, c)

    def vec(self, name, a, n=None, writable=False):
        """A 1-D float vector -> (ptr, length)."""
        self._place(name, a)
        if a.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D array, got {a.ndim}-D with shape {tuple(a.shape)}")
        self._float(name, a)
        if n is not None and a.shape[0] != n:
            raise ValueError(f"{name}: expected shape ({n},), got {tuple(a.shape)}")
        if a.shape[0] > 1 and a.strides[0] != a.itemsize:
            raise ValueError(f"{name}: must be contiguous (stride {a.strides[0]} bytes, itemsize {a.itemsize})")
        if writable and not _writeable(a):
            raise ValueError(f"{name}: array is read-only")
        return _ptr(a), a.shape[0]

    @property
    def code(self):
        return _DTYPE_CODE[self.dtype]

    def handle(self):
        return _cuda_handle(self.device_id) if self.cuda else _cpu_handle()

    def empty(self, shape):
        if self.cuda:  # on the inputs' device, whichever device is current
            with _cupy.cuda.Device(self.device_id):
                return _cupy.empty(shape, dtype=self.dtype)
        return np.empty(shape, dtype=self.dtype)


def _ptr(a):
    # NumPy arrays go to _core as they are (it reads the data pointer itself,
    # far cheaper than a.ctypes.data); CuPy arrays as their device address.
    return a if isinstance(a, np.ndarray) else a.data.ptr


def _writeable(a):
    return a.flags.writeable if isinstance(a, np.ndarray) else True


def _layout(name, a, r, c):
    """(rows, cols, row_stride in elements) of a matrix whose rows are contiguous."""
    if c == 0:
        raise ValueError(f"{name}: has 0 columns; every tensor needs at least one column")
    if r == 0:
        return 0, c, c  # nothing is read or written; NumPy reports arbitrary strides
    isz = a.itemsize
    s0, s1 = a.strides
    if c > 1 and s1 != isz:
        raise ValueError(
            f"{name}: rows must be contiguous (C-contiguous or row-strided), got strides {a.strides}; "
            f"pass numpy.ascontiguousarray({name})"
        )
    if r <= 1:
        return r, c, c
    if s0 <= 0 or s0 % isz or s0 // isz < c:
        raise ValueError(
            f"{name}: unsupported row stride {s0} bytes for {c} columns of {isz} bytes; "
            f"pass numpy.ascontiguousarray({name})"
        )
    return r, c, s0 // isz


def _activation(mode):
    try:
        return _ACT[mode]
    except (KeyError, TypeError):
        raise ValueError(f"mode: unknown activation {mode!r}; expected one of {', '.join(_ACT)}") from None


def _no_overlap(out_name, out, **inputs):
    for name, a in inputs.items():
        if a is not None and _may_share(out, a):
            raise ValueError(f"{out_name}: must not overlap {name} (the product reads {name} while writing)")


def _may_share(a, b):
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.may_share_memory(a, b)
    return _cupy is not None and _cupy.may_share_memory(a, b)


# ---- dense layers --------------------------------------------------------------
def linear_forward(x, weight, bias=None, *, activation="identity", out=None):
    """y = act(x @ weight.T + bias): x (n, in), weight (out, in), bias (out,) -> y (n, out).

    Bias and activation are fused into the matrix product's epilogue."""
    c = _Call()
    X = c.mat("x", x)
    W = c.mat("weight", weight)
    if W[2] != X[2]:
        raise ValueError(f"weight: expected shape (out_features, {X[2]}) to chain with x {tuple(x.shape)}, "
                         f"got {tuple(weight.shape)}")
    B = c.vec("bias", bias, W[1]) if bias is not None else (0, 0)
    act = _activation(activation)
    if out is None:
        out = c.empty((X[1], W[1]))
    else:
        _no_overlap("out", out, x=x, weight=weight, bias=bias)
    Y = c.mat("out", out, X[1], W[1], writable=True)
    _core.linear_forward(c.handle(), c.code, 1.0, *X, *W, *B, act, 0.0, *Y)
    return out


def linear_backward_data(dy, weight, *, out=None):
    """dx = dy @ weight: dy (n, out), weight (out, in) -> dx (n, in)."""
    c = _Call()
    DY = c.mat("dy", dy)
    W = c.mat("weight", weight)
    if W[1] != DY[2]:
        raise ValueError(f"weight: expected shape ({DY[2]}, in_features) to chain with dy {tuple(dy.shape)}, "
                         f"got {tuple(weight.shape)}")
    if out is None:
        out = c.empty((DY[1], W[2]))
    else:
        _no_overlap("out", out, dy=dy, weight=weight)
    DX = c.mat("out", out, DY[1], W[2], writable=True)
    _core.linear_backward_data(c.handle(), c.code, 1.0, *DY, *W, 0.0, *DX)
    return out


def linear_backward_weights(dy, x, *, dweight=None, dbias=None, accumulate=False, bias=True):
    """dweight = dy.T @ x and dbias = dy.sum(0): dy (n, out), x (n, in).

    With ``accumulate=True`` the results are added to the given ``dweight`` (and
    ``dbias``) instead of overwriting them. Returns ``(dweight, dbias or None)``."""
    c = _Call()
    DY = c.mat("dy", dy)
    X = c.mat("x", x)
    if X[1] != DY[1]:
        raise ValueError(f"x: has {X[1]} rows but dy has {DY[1]} (one row per sample)")
    if accumulate and dweight is None:
        raise ValueError("dweight: accumulate=True needs the dweight array to add to")
    if accumulate and bias and dbias is None:
        raise ValueError("dbias: accumulate=True with bias=True needs the dbias array to add to")
    if dbias is not None and not bias:
        raise ValueError("dbias: given, but bias=False")
    if dweight is None:
        dweight = c.empty((DY[2], X[2]))
    else:
        _no_overlap("dweight", dweight, dy=dy, x=x)
    DW = c.mat("dweight", dweight, DY[2], X[2], writable=True)
    if bias:
        if dbias is None:
            dbias = c.empty((DY[2],))
        DB = c.vec("dbias", dbias, DY[2], writable=True)
    else:
        DB = (0, 0)
    beta = 1.0 if accumulate else 0.0
    _core.linear_backward_weights(c.handle(), c.code, 1.0, *DY, *X, beta, *DW, *DB)
    return dweight, (dbias if bias else None)


# ---- activations ---------------------------------------------------------------
def activation_forward(x, mode, *, out=None):
    """y = act(x) elementwise; ``out`` may be ``x`` itself (in place)."""
    act = _activation(mode)
    c = _Call()
    X = c.mat("x", x)
    if out is None:
        out = c.empty(x.shape)
    Y = c.mat("out", out, X[1], X[2], writable=True)
    _core.activation_forward(c.handle(), c.code, act, 1.0, *X, 0.0, Y[0], Y[3])
    return out


def activation_backward(y, dy, mode, *, x=None, out=None):
    """dx = act'(.) * dy, from the forward output y (and input x for 'relu', optional).

    'threshold' has zero derivative almost everywhere: dx is all zeros."""
    act = _activation(mode)
    c = _Call()
    Y = c.mat("y", y)
    DY = c.mat("dy", dy, Y[1], Y[2])
    XX = c.mat("x", x, Y[1], Y[2]) if x is not None else (0, 0, 0, 0)
    if out is None:
        out = c.empty(y.shape)
    DX = c.mat("out", out, Y[1], Y[2], writable=True)
    _core.activation_backward(c.handle(), c.code, act, 1.0, *Y, DY[0], DY[3], XX[0], XX[3], 0.0,
                              DX[0], DX[3])
    return out


def softmax(x, *, out=None):
    """Row-wise softmax (max-subtracted, so large logits do not overflow)."""
    c = _Call()
    X = c.mat("x", x)
    if out is None:
        out = c.empty(x.shape)
    Y = c.mat("out", out, X[1], X[2], writable=True)
    _core.softmax_forward(c.handle(), c.code, 1.0, *X, 0.0, Y[0], Y[3])
    return out


# ---- losses --------------------------------------------------------------------
def _dense_loss(kind, pred_name, pred, target):
    c = _Call()
    P = c.mat(pred_name, pred)
    T = c.mat("target", target, P[1], P[2])
    grad = c.empty(pred.shape)
    G = c.mat("grad", grad)
    value = _core.loss_forward_backward(c.handle(), _LOSS[kind], c.code, *P, c.code, T[0], T[2], T[3],
                                        G[0], G[3])
    return float(value), grad


def mse_loss(pred, target):
    """The quadratic cost C = 1/(2n) sum_rows ||pred - target||^2 and dC/dpred = (pred - target)/n."""
    return _dense_loss("quadratic", "pred", pred, target)


def binary_cross_entropy(prob, target):
    """C = -1/n sum (t log p + (1-t) log(1-p)), summed over outputs, averaged over rows.

    p is clamped to [eps, 1-eps] (eps 1e-7 for float32, 1e-12 for float64) in
    both the value and the gradient dC/dp = (p - t) / (p (1 - p)) / n."""
    return _dense_loss("binary_cross_entropy", "prob", prob, target)


def softmax_cross_entropy(logits, labels):
    """C = -1/n sum log softmax(logits)[label]; dC/dlogits = (softmax - onehot) / n.

    labels: 1-D integer class ids in [0, classes); other integer dtypes are
    converted to int32 (n integers). One fused pass computes loss and gradient."""
    c = _Call()
    P = c.mat("logits", logits)
    labels = _labels(c, labels, P[1], P[2])
    grad = c.empty(logits.shape)
    G = c.mat("grad", grad)
    value = _core.loss_forward_backward(c.handle(), _LOSS["softmax_cross_entropy"], c.code, *P, _core.INT32,
                                        _ptr(labels), 1, 1, G[0], G[3])
    return float(value), grad


def _labels(c, labels, n, classes):
    if labels is None:
        raise TypeError("labels: expected an integer array, got None")
    c._place("labels", labels)
    if labels.ndim != 1:
        raise ValueError(f"labels: expected a 1-D array of class ids, got shape {tuple(labels.shape)}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels: expected an integer dtype, got {labels.dtype}")
    if labels.shape[0] != n:
        raise ValueError(f"labels: expected {n} labels (one per row of logits), got {labels.shape[0]}")
    if labels.dtype != np.int32 or (labels.shape[0] > 1 and labels.strides[0] != 4):
        xp = c.xp
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            bad = labels[(labels < 0) | (labels >= classes)][0]
            raise ValueError(f"labels: class id {int(bad)} is out of range [0, {classes})")
        labels = xp.ascontiguousarray(labels, dtype=xp.int32)
    return labels


# ---- optimizer -----------------------------------------------------------------
def _check_sgd(lr, momentum, weight_decay, nesterov):
    for name, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        if not isinstance(v, (int, float, np.floating, np.integer)) or isinstance(v, bool):
            raise TypeError(f"{name}: expected a number, got {type(v).__name__}")
        if not math.isfinite(v):
            raise ValueError(f"{name}: must be finite, got {v}")
    if momentum < 0:
        raise ValueError(f"momentum: must be >= 0, got {momentum}")
    if nesterov and momentum <= 0:
        raise ValueError("nesterov: needs momentum > 0")


def sgd_update(param, grad, *, lr, momentum=0.0, velocity=None, weight_decay=0.0, nesterov=False):
    """In-place SGD step, torch.optim.SGD's convention (dampening 0)::

        g = grad + weight_decay * param
        v = momentum * v + g                    (when momentum != 0)
        g = g + momentum * v if nesterov else v
        param -= lr * g

    param, grad (and velocity) are 1-D or 2-D arrays of one shape."""
    _check_sgd(lr, momentum, weight_decay, nesterov)
    if momentum != 0 and velocity is None:
        raise ValueError("velocity: momentum != 0 needs a velocity array (same shape as param, zeros at start)")
    c = _Call()
    P = _as_mat(c, "param", param, writable=True)
    G = _as_mat(c, "grad", grad, P[1], P[2])
    V = _as_mat(c, "velocity", velocity, P[1], P[2], writable=True) if momentum != 0 else (0, 0, 0, 0)
    if G[3] != P[3] or (momentum != 0 and V[3] != P[3]):
        raise ValueError("grad, velocity: must have the same row stride as param")
    _core.sgd_update(c.handle(), c.code, float(lr), float(momentum), float(weight_decay), bool(nesterov),
                     *P, G[0], V[0])


def linear_backward_sgd(dy, x, weight, bias=None, *, lr, momentum=0.0, weight_velocity=None, bias_velocity=None,
                        weight_decay=0.0, nesterov=False, dx=False):
    """One dense layer's backward pass fused with its SGD step.

    Computes ``dx = dy @ weight`` (with the weights before the step; only when
    ``dx`` is True or an array to write into), then updates ``weight`` (and
    ``bias``) in place exactly as ``sgd_update`` would with the gradients
    ``dy.T @ x`` (and ``dy.sum(0)``), without ever writing those gradients to
    memory. Returns dx, or None."""
    _check_sgd(lr, momentum, weight_decay, nesterov)
    if momentum != 0 and (weight_velocity is None or (bias is not None and bias_velocity is None)):
        raise ValueError("weight_velocity, bias_velocity: momentum != 0 needs velocity arrays "
                         "(same shapes as weight and bias, zeros at start)")
    c = _Call()
    DY = c.mat("dy", dy)
    X = c.mat("x", x)
    if X[1] != DY[1]:
        raise ValueError(f"x: has {X[1]} rows but dy has {DY[1]} (one row per sample)")
    W = c.mat("weight", weight, DY[2], X[2], writable=True)
    mom = momentum != 0
    WV = c.mat("weight_velocity", weight_velocity, DY[2], X[2], writable=True) if mom else (0, 0, 0, 0)
    if mom and WV[3] != W[3]:
        raise ValueError("weight_velocity: must have the same row stride as weight")
    B = c.vec("bias", bias, DY[2], writable=True) if bias is not None else (0, 0)
    BV = c.vec("bias_velocity", bias_velocity, DY[2], writable=True) if (mom and bias is not None) else (0, 0)
    if dx is True:
        dx = c.empty((DY[1], X[2]))
    elif dx is False or dx is None:
        dx = None
    if dx is not None:
        _no_overlap("dx", dx, dy=dy, x=x, weight=weight)
        DX = c.mat("dx", dx, DY[1], X[2], writable=True)
    else:
        DX = (0, 0, 0, 0)
    _core.linear_backward_sgd(c.handle(), c.code, *DY, *X, float(lr), float(momentum), float(weight_decay),
                              bool(nesterov), *W, WV[0], *B, BV[0], DX[0], DX[3])
    return dx



# ---- optimizers (the descriptor API: SGD, Adam, AdamW, RMSprop, Adagrad) --------------
_OPT_MODE = dict(_core.OPTIMIZERS)
OPTIMIZER_MODES = tuple(_OPT_MODE)
_FLAG_HYPER = ("nesterov", "centered")
OPTIMIZER_HYPERPARAMETERS = ("lr", "momentum", "weight_decay", "nesterov", "beta1", "beta2", "alpha", "eps",
                             "centered", "lr_decay", "initial_accumulator_value")


def _optimizer_args(mode, hyper):
    """(mode code, {name: float}) after Python-level type checks; ranges are checked by the C API."""
    if not isinstance(mode, str) or mode not in _OPT_MODE:
        raise ValueError(f"mode: unknown optimizer {mode!r}; expected one of {', '.join(OPTIMIZER_MODES)}")
    values = {}
    for name, v in hyper.items():
        if name not in OPTIMIZER_HYPERPARAMETERS:
            raise TypeError(f"{name}: not a hyperparameter of optimizer_step (expected some of "
                            f"{', '.join(OPTIMIZER_HYPERPARAMETERS)})")
        if name in _FLAG_HYPER:
            if not isinstance(v, (bool, np.bool_, int, np.integer)) or v not in (0, 1):
                raise TypeError(f"{name}: expected a bool, got {v!r}")
            values[name] = float(bool(v))
            continue
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise TypeError(f"{name}: expected a number, got {type(v).__name__}")
        values[name] = float(v)
    return _OPT_MODE[mode], values


def _step_number(step):
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"step: expected an int (1 for the first update), got {type(step).__name__}")
    if step < 1:
        raise ValueError(f"step: the step number starts at 1, got {step}")
    return int(step) - 1  # the C API counts completed steps


def optimizer_defaults(mode):
    """torch.optim's default hyperparameters of ``mode`` (a dict; unused ones are 0)."""
    code, _ = _optimizer_args(mode, {})
    d = _core.optimizer_params_default(code)
    return {k: (bool(d[k]) if k in _FLAG_HYPER else d[k]) for k in OPTIMIZER_HYPERPARAMETERS}


def optimizer_state_count(mode, **hyper):
    """How many state arrays (each shaped like the parameter) ``optimizer_step`` needs."""
    code, values = _optimizer_args(mode, hyper)
    return _core.optimizer_state_count(code, values)


def _state_ptrs(c, name, state, rows, cols, stride, count):
    if state is None:
        state = ()
    if not isinstance(state, (list, tuple)):
        raise TypeError(f"{name}: expected a list of arrays, got {type(state).__name__}")
    if len(state) != count:
        raise ValueError(f"{name}: this optimizer needs {count} state arrays, got {len(state)}")
    ptrs = []
    for k, s in enumerate(state):
        S = _as_mat(c, f"{name}[{k}]", s, rows, cols, writable=True)
        if S[3] != stride:
            raise ValueError(f"{name}[{k}]: must have the same row stride as the parameter")
        ptrs.append(S[0])
    return ptrs


def optimizer_step(param, grad, state, *, mode, step, **hyper):
    """One in-place update of ``param`` (and its ``state`` arrays) in one pass.

    mode: "sgd", "adam", "adamw", "rmsprop" or "adagrad", with torch.optim's
    formulas, hyperparameter names and defaults (see layerwise.h; Adam's betas
    are ``beta1``, ``beta2``). step: this update's step number, 1 for the first
    (Adam's bias correction, Adagrad's lr decay use it). state: the list of
    ``optimizer_state_count(mode, **hyper)`` arrays shaped like param (zeros
    before the first step; Adagrad's filled with initial_accumulator_value), in
    the order: SGD [momentum_buffer]; Adam/AdamW [exp_avg, exp_avg_sq]; RMSprop
    [square_avg, momentum_buffer (momentum > 0), grad_avg (centered)]; Adagrad [sum].
    param, grad and state are 1-D or 2-D arrays of one shape and row stride."""
    code, values = _optimizer_args(mode, hyper)
    t = _step_number(step)
    count = _core.optimizer_state_count(code, values)
    c = _Call()
    P = _as_mat(c, "param", param, writable=True)
    G = _as_mat(c, "grad", grad, P[1], P[2])
    if G[3] != P[3]:
        raise ValueError("grad: must have the same row stride as param")
    S = _state_ptrs(c, "state", state, P[1], P[2], P[3], count)
    _core.optimizer_step(c.handle(), c.code, code, values, t, *P, G[0], S)


def linear_backward_update(dy, x, weight, bias=None, *, weight_state, bias_state=None, mode, step, dx=False,
                           **hyper):
    """One dense layer's backward pass fused with an optimizer step.

    Computes ``dx = dy @ weight`` (with the weights before the step; only when
    ``dx`` is True or an array to write into), then updates ``weight`` (and
    ``bias``) and their state lists in place exactly as ``optimizer_step`` would
    with the gradients ``dy.T @ x`` (and ``dy.sum(0)``). SGD runs the fused
    register-tiled kernel (no gradient in memory); other modes go through a
    workspace on CPU. Returns dx, or None."""
    code, values = _optimizer_args(mode, hyper)
    t = _step_number(step)
    count = _core.optimizer_state_count(code, values)
    c = _Call()
    DY = c.mat("dy", dy)
    X = c.mat("x", x)
    if X[1] != DY[1]:
        raise ValueError(f"x: has {X[1]} rows but dy has {DY[1]} (one row per sample)")
    W = c.mat("weight", weight, DY[2], X[2], writable=True)
    WS = _state_ptrs(c, "weight_state", weight_state, DY[2], X[2], W[3], count)
    if bias is not None:
        B = c.vec("bias", bias, DY[2], writable=True)
        BS = _state_ptrs(c, "bias_state", bias_state, 1, DY[2], DY[2], count)
    else:
        B, BS = (0, 0), []
    if dx is True:
        dx = c.empty((DY[1], X[2]))
    elif dx is False or dx is None:
        dx = None
    if dx is not None:
        _no_overlap("dx", dx, dy=dy, x=x, weight=weight)
        DX = c.mat("dx", dx, DY[1], X[2], writable=True)
    else:
        DX = (0, 0, 0, 0)
    _core.linear_backward_update(c.handle(), c.code, code, values, t, *DY, *X, *W, WS, *B, BS, DX[0], DX[3])
    return dx


def _as_mat(c, name, a, rows=None, cols=None, writable=False):
    """A 1-D vector (as one row) or a 2-D matrix -> (ptr, rows, cols, row_stride)."""
    if a is not None and getattr(a, "ndim", None) == 1:
        ptr, n = c.vec(name, a, cols if rows == 1 else None, writable=writable)
        if rows is not None and rows != 1:
            raise ValueError(f"{name}: expected shape ({rows}, {cols}), got {tuple(a.shape)}")
        return ptr, 1, n, n
    return c.mat(name, a, rows, cols, writable=writable)


# ---- sampling ------------------------------------------------------------------
def bernoulli(p, *, seed, offset=0, out=None):
    """Samples 1[u < p] as 0.0/1.0 from the counter-based generator.

    ``p`` is an array of probabilities (1-D or 2-D; the result has its shape) or a
    float, in which case ``out`` must be given and is filled. Element i of the
    flattened result uses counter ``offset + i`` under ``seed``: same seed and
    offset, same sample, on any device and thread count. Advance ``offset`` by
    ``size`` between draws."""
    seed, offset = int(seed), int(offset)
    if not (0 <= seed < 2**64 and 0 <= offset < 2**64):
        raise ValueError("seed, offset: must be in [0, 2**64)")
    c = _Call()
    if isinstance(p, (int, float, np.floating, np.integer)) and not isinstance(p, bool):
        if out is None:
            raise ValueError("out: a scalar p needs an out array to fill")
        if math.isnan(p):
            raise ValueError("p: must not be NaN")
        Y = _as_mat(c, "out", out, writable=True)
        _core.bernoulli_sample(c.handle(), c.code, seed, offset, 0, 0, float(p), *Y)
        return out
    P = _as_mat(c, "p", p)
    if out is None:
        out = c.empty(p.shape)
    Y = _as_mat(c, "out", out, P[1], P[2], writable=True)
    _core.bernoulli_sample(c.handle(), c.code, seed, offset, P[0], P[3], 0.0, *Y)
    return out
