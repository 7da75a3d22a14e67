"""layerwise.sklearn -- scikit-learn estimators on layerwise nets.

    from layerwise.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=20).fit(X, y)
    clf.predict(X_test)

Estimators:

* ``MLPClassifier``            -- a sigmoid (or tanh/relu) net trained end to end by
                                  minibatch SGD on softmax cross-entropy;
* ``PretrainedMLPClassifier``  -- the same net, its hidden layers first trained greedily
                                  (``pretraining="supervised"|"autoencoder"|"rbm"``,
                                  the last being a deep belief net), then fine-tuned;
* ``MLPRegressor``             -- linear output, quadratic loss, one or many targets;
* ``RBMTransformer``           -- features from a greedily trained stack of RBMs.

Parameters that mean what they mean in ``sklearn.neural_network.MLPClassifier``
carry its names: ``hidden_layer_sizes``, ``activation``, ``solver`` (here the
names ``layerwise.optim.make_optimizer`` accepts), ``batch_size``,
``learning_rate_init``, ``momentum``, ``alpha`` (L2 weight decay),
``max_iter`` (epochs), ``early_stopping``, ``validation_fraction``,
``n_iter_no_change``, ``random_state``, ``warm_start``. Parameters are checked in
``fit``, never in ``__init__`` (scikit-learn's convention), and the estimators
clone, pickle and plug into ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``.
Needs the ``search`` extra (scikit-learn).
"""
from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin, RegressorMixin, \
    TransformerMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import nn, optim, pretrain, train

__all__ = ["MLPClassifier", "PretrainedMLPClassifier", "MLPRegressor", "RBMTransformer"]

_PRETRAININGS = ("supervised", "autoencoder", "rbm")
_SGD_SOLVERS = ("sgd", "momentum", "nesterov")


# ---- parameter checks (run in fit) -----------------------------------------------------------
def _check_int(name, v, low=1):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {v!r}")
    return int(v)


def _check_float(name, v, low=0.0, high=None, low_open=False):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {v!r}")
    if (v <= low if low_open else v < low) or (high is not None and v >= high):
        bounds = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"{name}: expected a value in {bounds}, got {v!r}")
    return float(v)


def _check_hidden(v, *, allow_empty=True):
    sizes = [v] if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v
    try:
        sizes = list(sizes)
    except TypeError:
        raise ValueError(f"hidden_layer_sizes: expected a sequence of positive integers, got {v!r}") from None
    if not allow_empty and not sizes:
        raise ValueError("hidden_layer_sizes: pretraining needs at least one hidden layer")
    return [_check_int("hidden_layer_sizes", s) for s in sizes]


def _seed(random_state):
    """An int seed for layerwise from sklearn's random_state (None: fresh entropy per fit)."""
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def _batch_size(batch_size, n):
    if batch_size == "auto":
        return max(1, min(200, n))  # scikit-learn's MLP rule
    return min(_check_int("batch_size", batch_size), max(n, 1))


# ---- the shared net trainer ---------------------------------------------------------------------
class _BaseMLP(BaseEstimator):
    """Hyperparameters, net construction and the training loop shared by the MLP estimators."""

    _loss = "softmax_cross_entropy"

    def __init__(self, hidden_layer_sizes=(100,), activation="sigmoid", *, solver="sgd", alpha=0.0001,
                 batch_size="auto", learning_rate_init=0.1, max_iter=200, momentum=0.9, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, warm_start=False, random_state=None,
                 dtype="float32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.momentum = momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.warm_start = warm_start
        self.random_state = random_state
        self.dtype = dtype

    # -- hooks for the subclasses --
    def _targets(self, y, *, first):
        """(training targets for the net, number of outputs)."""
        raise NotImplementedError

    def _initial_net(self, sizes, X, y, seed):
        return nn.mlp(sizes, activation=self.activation, dtype=self.dtype, seed=seed)

    # -- checks --
    def _check_params(self):
        if self.activation not in nn.ACTIVATIONS:
            raise ValueError(f"activation: expected one of {', '.join(nn.ACTIVATIONS)}, got {self.activation!r}")
        if self.solver not in optim.OPTIMIZERS:
            raise ValueError(f"solver: expected one of {', '.join(optim.OPTIMIZERS)}, got {self.solver!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {self.dtype!r}")
        _check_float("alpha", self.alpha)
        _check_float("learning_rate_init", self.learning_rate_init, low_open=True)
        _check_float("momentum", self.momentum, high=1.0)
        _check_float("validation_fraction", self.validation_fraction, low_open=True, high=1.0)
        _check_int("max_iter", self.max_iter)
        _check_int("n_iter_no_change", self.n_iter_no_change)
        if self.batch_size != "auto":
            _check_int("batch_size", self.batch_size)
        return _check_hidden(self.hidden_layer_sizes)

    def _make_optimizer(self, net):
        kw = dict(lr=self.learning_rate_init, weight_decay=self.alpha)
        if self.momentum and self.solver in _SGD_SOLVERS:  # as in scikit-learn: momentum is SGD's
            kw["momentum"] = self.momentum
        return optim.make_optimizer(self.solver, net.parameters(), **kw)

    # -- training --
    def _train(self, X, y, *, epochs, incremental):
        hidden = self._check_params()
        fitted = hasattr(self, "net_")
        reset = not fitted if incremental else not (self.warm_start and fitted)
        X, y = validate_data(self, X, y, reset=reset, **self._validate_kw)
        targets, n_out = self._targets(y, first=reset)
        seed = _seed(self.random_state)
        if reset:
            self.net_ = self._initial_net([X.shape[1], *hidden, n_out], X, targets, seed)
            self.optimizer_ = self._make_optimizer(self.net_)
            self.loss_curve_, self.n_iter_, self.t_ = [], 0, 0
        elif not incremental or not hasattr(self, "optimizer_"):
            self.optimizer_ = self._make_optimizer(self.net_)
        X_val = y_val = None
        patience = None
        if self.early_stopping and not incremental:
            stratify = targets if self._loss == "softmax_cross_entropy" and _stratifiable(targets) else None
            if X.shape[0] < 2:
                raise ValueError(f"early_stopping: needs at least 2 samples, got {X.shape[0]}")
            X, X_val, targets, y_val = train_test_split(X, targets, test_size=self.validation_fraction,
                                                        random_state=seed, stratify=stratify)
            patience = self.n_iter_no_change
        hist = train.fit(self.net_, X, targets, loss=self._loss, optimizer=self.optimizer_, epochs=epochs,
                         batch_size=_batch_size(self.batch_size, X.shape[0]), X_val=X_val, y_val=y_val,
                         patience=patience, seed=seed + self.n_iter_, progress=False)
        self.net_.to("cpu")  # drops the training buffers (smaller pickles); the net is on the CPU already
        self.loss_curve_ = list(self.loss_curve_) + [float(v) for v in hist.train_loss]
        self.n_iter_ += hist.epochs
        self.t_ += hist.epochs * X.shape[0]
        if hist.valid_error:
            self.validation_error_curve_ = [float(v) for v in hist.valid_error]
            self.best_validation_error_ = float(min(hist.valid_error))
        return self

    def _outputs(self, X):
        check_is_fitted(self, "net_")
        X = validate_data(self, X, reset=False)
        return X, train.predict_proba(self.net_, X, softmax=False)

    @property
    def n_parameters_(self):
        """Number of trainable weights and biases of the fitted net."""
        check_is_fitted(self, "net_")
        return int(sum(p.data.size for p in self.net_.parameters()))


def _stratifiable(labels):
    counts = np.bincount(labels)
    return counts[counts > 0].min() >= 2


# ---- classifiers -----------------------------------------------------------------------------------
class _ClassifierBase(ClassifierMixin, _BaseMLP):
    _validate_kw = {}

    def _set_classes(self, classes, y):
        classes = np.unique(np.asarray(classes))
        if hasattr(self, "classes_") and not np.array_equal(classes, self.classes_):
            raise ValueError(f"classes: {classes} differ from the classes of the first partial_fit, {self.classes_}")
        self.classes_ = classes

    def _targets(self, y, *, first):
        check_classification_targets(y)
        if first and not getattr(self, "_classes_given", False):
            self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"y: a classifier needs at least 2 classes, got 1 class ({self.classes_[0]!r})")
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        if not np.array_equal(self.classes_[idx], y):
            unknown = np.setdiff1d(np.unique(y), self.classes_)
            raise ValueError(f"y: labels {unknown} are not among the classes {self.classes_}")
        return idx.astype(np.int32), len(self.classes_)

    def fit(self, X, y):
        """Trains the net on (X, y) for ``max_iter`` epochs (fewer with ``early_stopping``);
        with ``warm_start`` a second fit continues from the current weights. Returns self."""
        self._classes_given = False
        return self._train(X, y, epochs=self.max_iter, incremental=False)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``."""
        _, logits = self._outputs(X)
        z = logits.astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def predict_log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each row, as one of the labels seen in fit."""
        _, logits = self._outputs(X)
        return self.classes_[np.argmax(logits, axis=1)]


class MLPClassifier(_ClassifierBase):
    """A dense net classifier trained by minibatch SGD on softmax cross-entropy.

    hidden_layer_sizes: units of each hidden layer (an empty tuple: logistic regression);
    activation: sigmoid (default), tanh, relu, ...; solver: optimizer name for
    ``layerwise.optim.make_optimizer`` (``momentum`` applies to the SGD ones); alpha: L2 weight decay; batch_size: int or
    "auto" (min(200, n_samples)); learning_rate_init, momentum: SGD settings;
    max_iter: epochs; early_stopping: hold out ``validation_fraction`` (stratified),
    stop after ``n_iter_no_change`` epochs without a lower validation error and keep
    the best epoch's weights; warm_start: fit continues from the current net;
    random_state: seeds initialization and shuffling; dtype: "float32" or "float64".

    Fitted attributes: classes_, n_features_in_, net_ (a layerwise ``nn.Sequential``
    that ``nn.save`` writes), loss_curve_, n_iter_, t_ (samples seen), and with early
    stopping validation_error_curve_ and best_validation_error_ (percent)."""

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y), continuing the optimizer's state; ``classes`` is required
        on the first call (every label that will ever appear)."""
        if not hasattr(self, "net_"):
            if classes is None:
                raise ValueError("classes: required on the first call to partial_fit")
            self.classes_ = np.unique(np.asarray(classes))
            self._classes_given = True
        elif classes is not None:
            self._set_classes(classes, y)
        return self._train(X, y, epochs=1, incremental=True)


class PretrainedMLPClassifier(_ClassifierBase):
    """MLPClassifier whose hidden layers are first trained greedily, one at a time.

    pretraining: "supervised" (each layer with a temporary softmax output, idea #2),
    "autoencoder" (each layer as an autoencoder of the codes below, idea #3; ``noise``
    > 0 makes it denoising), or "rbm" (each layer an RBM trained by CD-``cd_k``: a deep
    belief net; sigmoid units only). pretrain_epochs: epochs per layer;
    pretrain_learning_rate: that stage's SGD rate. Then the whole net is fine-tuned as
    in MLPClassifier (same parameters). With ``warm_start`` a second fit fine-tunes
    further without pretraining again. The other parameters and attributes are
    MLPClassifier's; ``pretraining_info_`` holds the per-layer records."""

    def __init__(self, hidden_layer_sizes=(100,), activation="sigmoid", *, pretraining="autoencoder",
                 pretrain_epochs=5, pretrain_learning_rate=0.1, noise=0.0, cd_k=1, solver="sgd", alpha=0.0001,
                 batch_size="auto", learning_rate_init=0.1, max_iter=200, momentum=0.9, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, warm_start=False, random_state=None,
                 dtype="float32"):
        super().__init__(hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
                         learning_rate_init=learning_rate_init, max_iter=max_iter, momentum=momentum,
                         early_stopping=early_stopping, validation_fraction=validation_fraction,
                         n_iter_no_change=n_iter_no_change, warm_start=warm_start, random_state=random_state,
                         dtype=dtype)
        self.pretraining = pretraining
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_learning_rate = pretrain_learning_rate
        self.noise = noise
        self.cd_k = cd_k

    def _check_params(self):
        hidden = super()._check_params()
        _check_hidden(self.hidden_layer_sizes, allow_empty=False)
        if self.pretraining not in _PRETRAININGS:
            raise ValueError(f"pretraining: expected one of {', '.join(_PRETRAININGS)}, got {self.pretraining!r}")
        if self.pretraining == "rbm" and self.activation != "sigmoid":
            raise ValueError(f"activation: RBM pretraining builds sigmoid units, got {self.activation!r}")
        _check_int("pretrain_epochs", self.pretrain_epochs, low=0)
        _check_float("pretrain_learning_rate", self.pretrain_learning_rate, low_open=True)
        _check_float("noise", self.noise, high=1.0)
        _check_int("cd_k", self.cd_k)
        return hidden

    def _initial_net(self, sizes, X, y, seed):
        common = dict(epochs_per_layer=self.pretrain_epochs, lr=self.pretrain_learning_rate,
                      momentum=self.momentum, batch_size=_batch_size(self.batch_size, X.shape[0]),
                      seed=seed, dtype=self.dtype, progress=False)
        if self.pretraining == "supervised":
            net, info = pretrain.greedy_supervised(sizes, X, y, activation=self.activation,
                                                   weight_decay=self.alpha, **common)
        elif self.pretraining == "autoencoder":
            net, info = pretrain.greedy_autoencoder(sizes, X, activation=self.activation, noise=self.noise,
                                                    weight_decay=self.alpha, **common)
        else:
            net, info = pretrain.greedy_rbm(sizes, X, k=self.cd_k, **common)
        self.pretraining_info_ = {k: v for k, v in info.items() if k in ("reconstruction_error",)}
        if "histories" in info:
            self.pretraining_info_["train_loss"] = [h.train_loss for h in info["histories"]]
        return net


# ---- regressor ------------------------------------------------------------------------------------
class MLPRegressor(RegressorMixin, _BaseMLP):
    """A dense net with a linear output layer trained on the quadratic loss, for one target
    (y 1-D) or several (y 2-D). Parameters and attributes as in MLPClassifier; the default
    learning rate is lower, since squared errors give larger gradients than
    cross-entropy. partial_fit runs one epoch."""

    _loss = "quadratic"
    _validate_kw = {"multi_output": True, "y_numeric": True}

    def __init__(self, hidden_layer_sizes=(100,), activation="sigmoid", *, solver="sgd", alpha=0.0001,
                 batch_size="auto", learning_rate_init=0.01, max_iter=200, momentum=0.9, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, warm_start=False, random_state=None,
                 dtype="float32"):
        super().__init__(hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
                         learning_rate_init=learning_rate_init, max_iter=max_iter, momentum=momentum,
                         early_stopping=early_stopping, validation_fraction=validation_fraction,
                         n_iter_no_change=n_iter_no_change, warm_start=warm_start, random_state=random_state,
                         dtype=dtype)

    def _targets(self, y, *, first):
        y = np.asarray(y, dtype=self.dtype)
        if first:
            self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
            self._y_1d = y.ndim == 1
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        if Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y: has {Y.shape[1]} targets but the net was fitted with {self.n_outputs_}")
        return np.ascontiguousarray(Y), self.n_outputs_

    def fit(self, X, y):
        """Trains on (X, y) for ``max_iter`` epochs; returns self."""
        return self._train(X, y, epochs=self.max_iter, incremental=False)

    def partial_fit(self, X, y):
        """One epoch over (X, y), continuing from the current net and optimizer state."""
        return self._train(X, y, epochs=1, incremental=True)

    def predict(self, X):
        _, out = self._outputs(X)
        out = out.astype(np.float64)
        return out[:, 0] if self._y_1d else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


# ---- RBM features ---------------------------------------------------------------------------------
class RBMTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Features from a stack of Bernoulli RBMs trained greedily with contrastive divergence
    (layerwise.pretrain.greedy_rbm), like sklearn's BernoulliRBM but stacked.

    hidden_layer_sizes: units of each RBM (the last is the number of features);
    learning_rate, momentum, weight_decay, batch_size: CD-``k`` SGD settings
    (``persistent``: PCD); n_iter: epochs per layer; random_state; dtype. Inputs should
    lie in [0, 1]. ``transform`` gives the top layer's hidden probabilities.

    Fitted attributes: n_features_in_, layers_ (the recognition net: sigmoid Linear
    layers), components_ (the top RBM's weights, (n_components, n_inputs of that
    layer)), reconstruction_error_ (per layer, per epoch), n_iter_."""

    def __init__(self, hidden_layer_sizes=(256,), *, learning_rate=0.05, momentum=0.5, weight_decay=2e-4,
                 batch_size=10, n_iter=10, k=1, persistent=False, random_state=None, dtype="float32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.k = k
        self.persistent = persistent
        self.random_state = random_state
        self.dtype = dtype

    def fit(self, X, y=None):
        """Trains the RBMs layer by layer on X (y is ignored); returns self."""
        hidden = _check_hidden(self.hidden_layer_sizes, allow_empty=False)
        _check_float("learning_rate", self.learning_rate, low_open=True)
        _check_float("momentum", self.momentum, high=1.0)
        _check_float("weight_decay", self.weight_decay)
        _check_int("batch_size", self.batch_size)
        _check_int("n_iter", self.n_iter)
        _check_int("k", self.k)
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {self.dtype!r}")
        X = validate_data(self, X, dtype=self.dtype)
        # greedy_rbm adds an output layer on top for fine-tuning; a transformer drops it.
        net, info = pretrain.greedy_rbm([X.shape[1], *hidden, 1], X, epochs_per_layer=self.n_iter,
                                        lr=self.learning_rate, momentum=self.momentum,
                                        weight_decay=self.weight_decay, batch_size=self.batch_size, k=self.k,
                                        persistent=self.persistent, seed=_seed(self.random_state),
                                        dtype=self.dtype, progress=False)
        self.layers_ = net[:-1]
        self.components_ = np.array(nn.to_device(info["rbms"][-1].weight.data, "cpu"))
        self.reconstruction_error_ = [[float(e) for e in errs] for errs in info["reconstruction_error"]]
        self.n_iter_ = self.n_iter
        self._n_features_out = hidden[-1]
        return self

    def transform(self, X):
        """The top RBM's hidden probabilities p(h = 1 | codes below) of each row."""
        check_is_fitted(self, "layers_")
        X = validate_data(self, X, reset=False, dtype=self.dtype)
        return train.predict_proba(self.layers_, X, softmax=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = [self.dtype] if self.dtype in ("float32", "float64") else []
        return tags
