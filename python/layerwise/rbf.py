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

The classic two-stage RBF training (unsupervised centers, then the output layer by
linear least squares) is the starting point ``y_init`` gives:
``rbf_network(..., X_init=X_train, y_init=y_train)`` also solves the readout in
closed form (``init_readout_least_squares``), and ``fit`` then trains everything end
to end. The RBF features are all positive and strongly correlated (every unit sees
every input through a wide Gaussian), an ill-conditioned problem on which SGD moves
the readout slowly; the solve does not care.

k-means comes from scikit-learn (the optional extra ``layerwise[rbf]``).
"""
from __future__ import annotations

import numpy as np

from . import nn, ops
from .nn import Module, Parameter, array_module, to_device

__all__ = ["RBF", "rbf_network", "kmeans_centers", "init_readout_least_squares"]


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

    def local_parameters(self):
        return [self.centers, self.log_gamma]

    # No children: the walk reduces to this. (Defining only ``parameters`` hid both from
    # containers, so ``fit`` on an RBF network never trained them and ``save`` dropped them.)
    parameters = local_parameters

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


def rbf_network(in_features, units, classes, *, gamma=1.0, X_init=None, y_init=None, dtype="float32",
                device="cpu", seed=0, kmeans_kw=None, readout_kw=None):
    """An RBF network: ``units`` Gaussian units and a linear output layer with
    ``classes`` logits (for softmax_cross_entropy), all trainable with ``train.fit``.

    With ``X_init`` the centers and widths come from k-means on it (``RBF.init_kmeans``);
    with ``y_init`` too (its class labels), the output layer is solved by least squares
    on the RBF features of ``X_init`` (``init_readout_least_squares``, ``readout_kw``)."""
    rng = np.random.default_rng(seed)
    layer = RBF(in_features, units, gamma=gamma, dtype=dtype, device="cpu", rng=rng)
    if y_init is not None and X_init is None:
        raise ValueError("y_init: the least-squares readout needs X_init (the inputs of those labels)")
    if X_init is not None:
        layer.init_kmeans(X_init, seed=seed, **(kmeans_kw or {}))
    out = nn.Linear(units, _positive_int("classes", classes), dtype=dtype, rng=rng)
    net = nn.Sequential(layer, out)
    if y_init is not None:
        init_readout_least_squares(net, X_init, y_init, **(readout_kw or {}))
    return net.to(device) if device != "cpu" else net


def init_readout_least_squares(net, X, y, *, confidence=0.9, ridge=1e-5, batch_size=4096):
    """Solves the output layer of ``net`` (a Sequential: RBF layer(s), then a Linear with
    identity activation) by ridge regression of its logits on the features of X.

    Each sample's target logits are ``a`` for its class and 0 elsewhere, with
    a = log(confidence (K - 1) / (1 - confidence)): the logits at which the softmax gives
    the true class probability ``confidence`` (a one-hot 0/1 target would mean
    near-uniform softmax outputs, which the cross entropy then spends epochs
    sharpening). The normal equations are accumulated in float64 over batches and
    solved by ``numpy.linalg.solve`` with ``ridge`` times the mean diagonal added (the
    features' Gram matrix is close to singular). Returns ``net``."""
    if not isinstance(net, nn.Sequential) or len(net) < 2 or not isinstance(net[len(net) - 1], nn.Linear):
        raise TypeError("net: expected a Sequential ending in a Linear output layer (as rbf_network builds)")
    head = net[len(net) - 1]
    if head.activation != "identity":
        raise ValueError("net: the output layer must output logits (identity activation)")
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence: expected a probability in (0, 1), got {confidence!r}")
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not np.isfinite(ridge) or ridge < 0:
        raise ValueError(f"ridge: expected a finite number >= 0, got {ridge!r}")
    batch_size = _positive_int("batch_size", batch_size)
    X = np.asarray(to_device(X, "cpu"))
    labels = np.asarray(to_device(y, "cpu"))
    if X.ndim != 2 or labels.ndim != 1 or labels.shape[0] != X.shape[0]:
        raise ValueError(f"X, y: expected (n, features) and (n,) arrays, got shapes {X.shape} and {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError("y: expected integer class labels")
    k = head.out_features
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"y: class labels must lie in [0, {k})")
    a = float(np.log(confidence * (k - 1) / (1.0 - confidence))) if k > 1 else 0.0
    features = nn.Sequential(*[net[i] for i in range(len(net) - 1)])
    has_bias = head.bias is not None
    m = head.in_features + has_bias  # the bias as a constant feature
    gram = np.zeros((m, m))
    rhs = np.zeros((m, k))
    device = nn.device_of(head.weight.data)
    for s in range(0, X.shape[0], batch_size):
        xb = to_device(np.ascontiguousarray(X[s:s + batch_size], dtype=head.weight.data.dtype), device)
        f = np.asarray(to_device(features.forward(xb), "cpu"), dtype=np.float64)
        f1 = np.hstack([f, np.ones((f.shape[0], 1))]) if has_bias else f
        gram += f1.T @ f1
        t = np.zeros((f.shape[0], k))
        t[np.arange(f.shape[0]), labels[s:s + batch_size]] = a
        rhs += f1.T @ t
    gram[np.diag_indices(m)] += ridge * max(float(np.trace(gram)) / m, 1e-12)
    sol = np.linalg.solve(gram, rhs)  # (m, k)
    dtype = head.weight.data.dtype
    head.weight.data[...] = to_device(np.ascontiguousarray(sol[:head.in_features].T, dtype=dtype), device)
    if has_bias:
        head.bias.data[...] = to_device(sol[-1].astype(dtype), device)
    return net


nn.register_module(
    "RBF", fields={"in_features": "size", "units": "size"},
    build=lambda cfg, dtype: RBF.from_config(cfg, dtype),
    parameter_shapes=lambda cfg: [("centers", (cfg["units"], cfg["in_features"])), ("log_gamma", (cfg["units"],))])
