"""layerwise.rbf -- radial basis function units and RBF networks.

    y_j = exp(-gamma_j * ||x - c_j||^2)

with centers c (units, in_features) and widths gamma (units,), both trainable.
The module trains log(gamma) rather than gamma: widths stay positive, and the
gradient d/dlog(gamma) = gamma * d/dgamma is O(1) whatever the input dimension
(d/dgamma itself scales with the squared distances, hundreds on MNIST, and
one learning rate for centers and widths would then diverge). The distances come from the matrix-product kernel (``ops.rbf_forward``), so an
RBF layer costs about what a dense layer of the same shape costs.

    layer = RBF(784, 1000).init_kmeans(X_train)        # centers by k-means, widths from the spread
    net = rbf_network(784, 1000, 10, X_init=X_train)   # RBF + linear softmax output
    train.fit(net, X_train, y_train, lr=0.1, epochs=10)

k-means comes from scikit-learn (the optional extra ``layerwise[rbf]``).
"""
from __future__ import annotations

import numpy as np

from . import nn, ops
from .nn import Module, Parameter, array_module, to_device

__all__ = ["RBF", "RBFNetwork", "rbf_network", "kmeans_centers"]


def _positive_int(name, v):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    return int(v)


def _gamma_vector(gamma, units):
    g = np.asarray(gamma, dtype=np.float64)
    if g.ndim == 0:
        g = np.full(units, float(g))
    if g.shape != (units,):
        raise ValueError(f"gamma: expected a number or shape ({units},), got shape {g.shape}")
    if not np.all(np.isfinite(g)) or np.any(g <= 0):
        raise ValueError("gamma: widths must be finite and > 0")
    return g


class RBF(Module):
    """A layer of ``units`` Gaussian radial basis units on ``in_features`` inputs.

    gamma: initial width, a number or one per unit (y = exp(-gamma ||x - c||^2),
        so gamma = 1 / (2 sigma^2) for a Gaussian of standard deviation sigma).
    Centers start uniform in [0, 1) (the range of pixel inputs) drawn from ``rng``;
    ``init_kmeans`` replaces them with k-means centers of training data."""

    def __init__(self, in_features, units, *, gamma=1.0, dtype="float32", device="cpu", rng=None):
        self.in_features = _positive_int("in_features", in_features)
        self.units = _positive_int("units", units)
        dtype = nn._check_dtype(dtype)
        nn._check_device(device)
        c = nn._rng(rng).uniform(0.0, 1.0, size=(self.units, self.in_features))
        g = _gamma_vector(gamma, self.units)
        self.centers = Parameter(to_device(c.astype(dtype), device), "centers")
        self.log_gamma = Parameter(to_device(np.log(g).astype(dtype), device), "log_gamma")
        self._gamma = None  # exp(log_gamma) of the last forward
        self._buf = nn._Buffers()
        self._x = self._y = None
        self._train = False

    @property
    def out_features(self):
        return self.units

    @property
    def gamma(self):
        """The widths exp(log_gamma) (a fresh array)."""
        return array_module(self.log_gamma.data).exp(self.log_gamma.data)

    def parameters(self):
        return [self.centers, self.log_gamma]

    def forward(self, x, *, train=False):
        out = self._buf.get(("y", x.shape[0]), self.centers.data, (x.shape[0], self.units)) if train else None
        gamma = self.gamma
        y = ops.rbf_forward(x, self.centers.data, gamma, out=out)
        self._x, self._y, self._gamma, self._train = x, y, gamma, train
        return y

    def backward(self, dy, *, input_grad=True, param_grad=True):
        if self._x is None:
            raise RuntimeError("backward: call forward first")
        n = dy.shape[0]
        dx = None
        if input_grad and self._train:
            dx = self._buf.get(("dx", n), dy, (n, self.in_features))
        need = ("dx",) if input_grad else ()
        if not param_grad:
            if not input_grad:
                return None
            return ops.rbf_backward(self._x, self.centers.data, self._gamma, self._y, dy, dx=dx, need=need)[0]
        dx, _, dgamma = ops.rbf_backward(self._x, self.centers.data, self._gamma, self._y, dy, dx=dx,
                                         dcenters=self.centers.grad, dgamma=self.log_gamma.grad, need=need)
        dgamma *= self._gamma  # d/dlog(gamma) = gamma d/dgamma, in place in log_gamma.grad
        return dx

    def _clear_state(self):
        self._buf.clear()
        self._x = self._y = self._gamma = None

    def config(self):
        return {"type": "RBF", "in_features": self.in_features, "units": self.units}

    @classmethod
    def from_config(cls, cfg, dtype="float32"):
        """An RBF layer shaped by ``config()`` (parameters to be loaded into it), for nn.load."""
        if cfg.get("type") != "RBF":
            raise ValueError(f"architecture: expected an RBF config, got type {cfg.get('type')!r}")
        return cls(cfg["in_features"], cfg["units"], dtype=dtype, rng=0)

    def init_kmeans(self, X, *, batch_size=1024, max_iter=100, n_init=1, seed=0, width_scale=1.0):
        """Sets the centers to MiniBatchKMeans cluster centers of ``X`` and each width
        from its cluster's spread: gamma_j = 1 / (2 * width_scale^2 * s_j^2), where s_j^2 is
        the mean squared distance of the cluster's members to its center (clusters with
        fewer than two members take the median spread). Returns self."""
        centers, spread = kmeans_centers(X, self.units, batch_size=batch_size, max_iter=max_iter,
                                         n_init=n_init, seed=seed)
        if centers.shape[1] != self.in_features:
            raise ValueError(f"X: has {centers.shape[1]} features but the layer takes {self.in_features}")
        if not (isinstance(width_scale, (int, float)) and np.isfinite(width_scale) and width_scale > 0):
            raise ValueError(f"width_scale: expected a positive number, got {width_scale!r}")
        gamma = 1.0 / (2.0 * width_scale ** 2 * spread)
        device, dtype = nn.device_of(self.centers.data), self.centers.data.dtype
        self.centers.data = to_device(np.ascontiguousarray(centers, dtype=dtype), device)
        self.log_gamma.data = to_device(np.ascontiguousarray(np.log(gamma), dtype=dtype), device)
        xp = array_module(self.centers.data)
        self.centers.grad = xp.zeros_like(self.centers.data)
        self.log_gamma.grad = xp.zeros_like(self.log_gamma.data)
        self._clear_state()
        return self

    def __repr__(self):
        return f"RBF({self.in_features}, {self.units})"


def kmeans_centers(X, k, *, batch_size=1024, max_iter=100, n_init=1, seed=0):
    """(centers (k, d), spread (k,)) of MiniBatchKMeans on X (host copy, float64).

    spread_j is the mean squared distance of cluster j's members to its center; a
    cluster with fewer than two members gets the median spread of the others (its
    own would be 0, an infinitely narrow unit)."""
    try:
        from sklearn.cluster import MiniBatchKMeans
    except ImportError:
        raise ImportError("k-means initialization needs scikit-learn: pip install 'layerwise[rbf]'") from None
    k = _positive_int("k", k)
    X = np.asarray(to_device(X, "cpu"), dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X: expected a 2-D array (samples, features), got shape {X.shape}")
    if X.shape[0] < k:
        raise ValueError(f"X: has {X.shape[0]} samples, fewer than the {k} centers to fit")
    km = MiniBatchKMeans(n_clusters=k, batch_size=_positive_int("batch_size", batch_size),
                         max_iter=_positive_int("max_iter", max_iter), n_init=_positive_int("n_init", n_init),
                         random_state=seed)
    labels = km.fit_predict(X)
    centers = km.cluster_centers_
    sq = np.empty(X.shape[0])
    for s in range(0, X.shape[0], 8192):  # in chunks: X - centers[labels] is as big as X
        sq[s:s + 8192] = ((X[s:s + 8192] - centers[labels[s:s + 8192]]) ** 2).sum(axis=1)
    counts = np.bincount(labels, minlength=k)
    sums = np.bincount(labels, weights=sq, minlength=k)
    spread = np.divide(sums, counts, out=np.zeros(k), where=counts > 0)
    ok = (counts >= 2) & (spread > 0)
    fallback = float(np.median(spread[ok])) if ok.any() else float(np.mean(sq)) or 1.0
    spread[~ok] = fallback
    return centers, spread


def rbf_network(in_features, units, classes, *, gamma=1.0, X_init=None, dtype="float32", device="cpu", seed=0,
                kmeans_kw=None):
    """An RBF network: ``units`` Gaussian units and a linear output layer with
    ``classes`` logits (for softmax_cross_entropy), all trainable with ``train.fit``.

    With ``X_init`` the centers and widths come from k-means on it (``RBF.init_kmeans``)."""
    rng = np.random.default_rng(seed)
    layer = RBF(in_features, units, gamma=gamma, dtype=dtype, device="cpu", rng=rng)
    if X_init is not None:
        layer.init_kmeans(X_init, seed=seed, **(kmeans_kw or {}))
    out = nn.Linear(units, _positive_int("classes", classes), dtype=dtype, rng=rng)
    net = nn.Sequential(layer, out)
    return net.to(device) if device != "cpu" else net


nn.register_module(
    "RBF", fields={"in_features": "size", "units": "size"},
    build=lambda cfg, dtype: RBF.from_config(cfg, dtype),
    parameter_shapes=lambda cfg: [("centers", (cfg["units"], cfg["in_features"])), ("log_gamma", (cfg["units"],))])
