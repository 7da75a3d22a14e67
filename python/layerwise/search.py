"""layerwise.search -- topology and hyperparameter search on Optuna.

    from layerwise import datasets, search
    data = datasets.mnist()
    result = search.run(data, trials=50, storage="sqlite:///study.db", study="mnist", out="results/search")
    result.best_config        # {"hidden": [...], "activation": ..., "lr": ..., ...}

The search space (``Space``) covers the number of hidden layers and their units,
the activation, the pretraining strategy (none, supervised, autoencoder, rbm) with
its epochs, rate and noise, the optimizer (the names ``layerwise.optim`` accepts at
run time) with its learning rate and momentum, the batch size, weight decay and
dropout. Narrow it with ``Space(...)`` fields (or a JSON file of them), or give
your own ``space(trial) -> config`` function.

Each trial trains a net and reports its validation error after every epoch
(``trial.report``), so the pruner (median or Hyperband) stops bad trials early.
The objective is the lowest validation error; the test set is evaluated once, for
the best trial, at the end.

Storage: in memory (default), an RDB URL (``sqlite:///study.db`` resumes after a
stop; ``postgresql://user@host/db`` lets many machines share one study, through
psycopg), or ``journal:FILE`` (Optuna's journal file: many processes on one
machine). Needs the ``search`` extra (optuna; psycopg for PostgreSQL).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

try:  # the 'search' extra; without it the module still imports, so the CLI can say what is missing
    import optuna
except ImportError:  # pragma: no cover - exercised only without the extra
    optuna = None

from . import nn, optim, pretrain, train
from .atomic import write_atomic

__all__ = ["Space", "SearchError", "SearchResult", "open_study", "make_objective", "train_config", "run",
           "load_space", "reproduce", "pareto_front", "PRETRAININGS"]

PRETRAININGS = ("none", "supervised", "autoencoder", "rbm")
_MOMENTUM_OPTIMIZERS = ("momentum", "nesterov")  # SGD flavours whose momentum the space tunes


class SearchError(Exception):
    """A user error of the search (bad storage URL, unreachable database, invalid space, ...)."""


# ---- the search space --------------------------------------------------------------------------------
@dataclass
class Space:
    """The default search space; every field narrows one dimension.

    Ranges are (low, high) pairs (equal ends fix the value), choices are lists.
    ``optimizers=None`` offers every name ``layerwise.optim.make_optimizer`` accepts
    at run time. ``epochs`` is each trial's budget (the pruner may stop it sooner),
    ``patience`` stops a trial after that many epochs without a lower validation
    error (None: never; either way the trial's net is its best epoch's), ``seed`` seeds every trial's initialization and shuffling
    (so a trial is reproducible from its parameters)."""

    layers: Tuple[int, int] = (1, 5)
    units: Tuple[int, int] = (32, 1024)
    activations: Sequence[str] = ("sigmoid", "tanh", "relu")
    pretrainings: Sequence[str] = PRETRAININGS
    pretrain_epochs: Tuple[int, int] = (1, 10)
    pretrain_lr: Tuple[float, float] = (0.001, 0.5)
    noise: Tuple[float, float] = (0.0, 0.5)
    optimizers: Optional[Sequence[str]] = None
    lr: Tuple[float, float] = (0.001, 1.0)
    momentum: Tuple[float, float] = (0.5, 0.99)
    batch_sizes: Sequence[int] = (16, 32, 64, 128, 256)
    weight_decay: Tuple[float, float] = (1e-7, 1e-3)
    dropout: Tuple[float, float] = (0.0, 0.5)
    epochs: int = 20
    patience: Optional[int] = 5
    seed: int = 0

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raises SearchError naming the first field that cannot give a valid net."""
        def pair(name, kind, low_min, high_max=None):
            v = getattr(self, name)
            if not isinstance(v, (list, tuple)) or len(v) != 2 or not all(
                    isinstance(x, kind) and not isinstance(x, bool) for x in v):
                raise SearchError(f"space: {name} must be a [low, high] pair of {kind.__name__}s, got {v!r}")
            lo, hi = v
            if not (low_min <= lo <= hi) or (high_max is not None and hi > high_max):
                raise SearchError(f"space: {name} = {list(v)} must satisfy {low_min} <= low <= high"
                                  + (f" <= {high_max}" if high_max is not None else ""))
            setattr(self, name, (lo, hi))

        def choices(name, allowed):
            v = getattr(self, name)
            if isinstance(v, str) or not isinstance(v, (list, tuple)) or not v:
                raise SearchError(f"space: {name} must be a non-empty list, got {v!r}")
            bad = [c for c in v if c not in allowed]
            if bad:
                raise SearchError(f"space: {name} has {bad}; expected some of {', '.join(map(str, allowed))}")
            setattr(self, name, list(v))

        pair("layers", int, 1, 5)
        pair("units", int, 1)
        choices("activations", nn.ACTIVATIONS)
        choices("pretrainings", PRETRAININGS)
        pair("pretrain_epochs", int, 0)
        pair("pretrain_lr", (int, float), 1e-12)
        pair("noise", (int, float), 0.0, 0.99)
        if self.optimizers is not None:
            choices("optimizers", tuple(optim.OPTIMIZERS))
        pair("lr", (int, float), 1e-12)
        pair("momentum", (int, float), 0.0, 0.999)
        if not isinstance(self.batch_sizes, (list, tuple)) or not self.batch_sizes or not all(
                isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in self.batch_sizes):
            raise SearchError(f"space: batch_sizes must be a list of positive integers, got {self.batch_sizes!r}")
        self.batch_sizes = list(self.batch_sizes)
        pair("weight_decay", (int, float), 0.0)
        pair("dropout", (int, float), 0.0, 0.95)
        for name, low in (("epochs", 1), ("seed", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise SearchError(f"space: {name} must be an integer >= {low}, got {v!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise SearchError(f"space: patience must be a positive integer or null, got {self.patience!r}")

    def offered_optimizers(self):
        """The optimizer names this space offers: those make_optimizer accepts now."""
        return list(self.optimizers) if self.optimizers is not None else sorted(optim.OPTIMIZERS)

    def fingerprint(self) -> str:
        """A stable description of the space, stored with a study to catch reuse with another space."""
        d = dataclasses.asdict(self)
        d["optimizers"] = self.offered_optimizers()
        return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}, sort_keys=True)

    def __call__(self, trial) -> dict:
        """Samples a trial's config (define-by-run: conditional dimensions appear only when used)."""
        def flt(name, rng, log=False):
            lo, hi = rng
            if lo == hi:
                return float(lo)
            return trial.suggest_float(name, lo, hi, log=log and lo > 0)

        def integer(name, rng, log=False):
            lo, hi = rng
            return lo if lo == hi else trial.suggest_int(name, lo, hi, log=log)

        n_layers = integer("n_layers", self.layers)
        hidden = [integer(f"units_{i}", self.units, log=True) for i in range(n_layers)]
        pretraining = trial.suggest_categorical("pretraining", self.pretrainings)
        config = {"hidden": hidden, "pretraining": pretraining}
        if pretraining == "rbm":
            config["activation"] = "sigmoid"  # an RBM's units are sigmoid
        else:
            config["activation"] = trial.suggest_categorical("activation", self.activations)
        if pretraining != "none":
            config["pretrain_epochs"] = integer("pretrain_epochs", self.pretrain_epochs)
            config["pretrain_lr"] = flt("pretrain_lr", self.pretrain_lr, log=True)
            if pretraining == "autoencoder":
                config["noise"] = flt("noise", self.noise)
        config["optimizer"] = trial.suggest_categorical("optimizer", self.offered_optimizers())
        config["lr"] = flt("lr", self.lr, log=True)
        if config["optimizer"] in _MOMENTUM_OPTIMIZERS:
            config["momentum"] = flt("momentum", self.momentum)
        config["batch_size"] = trial.suggest_categorical("batch_size", self.batch_sizes)
        config["weight_decay"] = flt("weight_decay", self.weight_decay, log=True)
        config["dropout"] = flt("dropout", self.dropout)
        config.update(epochs=self.epochs, patience=self.patience, seed=self.seed)
        return config


_SPACE_FIELDS = {f.name for f in dataclasses.fields(Space)}


def load_space(path):
    """A space from a file: JSON of ``Space`` fields (narrowing the default), or a Python
    file defining ``space(trial) -> config``. Raises SearchError on a bad file."""
    path = Path(path)
    if not path.is_file():
        raise SearchError(f"space: no such file {str(path)!r}")
    if path.suffix == ".py":
        spec = importlib.util.spec_from_file_location(f"_layerwise_space_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise SearchError(f"space: {path} fails to import: {type(e).__name__}: {e}") from None
        fn = getattr(module, "space", None)
        if not callable(fn):
            raise SearchError(f"space: {path} defines no space(trial) function")
        fn._layerwise_fingerprint = "python:" + hashlib.sha256(path.read_bytes()).hexdigest()
        return fn
    try:
        fields = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SearchError(f"space: {path} is not valid JSON ({e})") from None
    if not isinstance(fields, dict):
        raise SearchError(f"space: {path} must hold a JSON object of Space fields")
    unknown = sorted(set(fields) - _SPACE_FIELDS)
    if unknown:
        raise SearchError(f"space: unknown field(s) {', '.join(unknown)}; expected some of "
                          f"{', '.join(sorted(_SPACE_FIELDS))}")
    return Space(**fields)


def _fingerprint(space) -> str:
    if isinstance(space, Space):
        return space.fingerprint()
    return getattr(space, "_layerwise_fingerprint", None) or f"function:{space.__module__}.{space.__qualname__}"


# ---- one trial's training --------------------------------------------------------------------------
_CONFIG_KEYS = {"hidden", "activation", "pretraining", "optimizer", "lr", "batch_size", "epochs"}


def check_config(config) -> dict:
    """Validates a config (what a space returns); raises SearchError naming the bad entry."""
    if not isinstance(config, dict):
        raise SearchError(f"space: must return a dict config, got {type(config).__name__}")
    missing = sorted(_CONFIG_KEYS - set(config))
    if missing:
        raise SearchError(f"space: config lacks {', '.join(missing)}")
    hidden = config["hidden"]
    if not isinstance(hidden, (list, tuple)) or not all(
            isinstance(u, (int, np.integer)) and not isinstance(u, bool) and u >= 1 for u in hidden):
        raise SearchError(f"space: hidden must be a list of positive integers, got {hidden!r}")
    if config["pretraining"] not in PRETRAININGS:
        raise SearchError(f"space: pretraining {config['pretraining']!r} is not one of {', '.join(PRETRAININGS)}")
    if config["pretraining"] != "none" and not hidden:
        raise SearchError("space: pretraining needs at least one hidden layer")
    if config["activation"] not in nn.ACTIVATIONS:
        raise SearchError(f"space: activation {config['activation']!r} is not one of {', '.join(nn.ACTIVATIONS)}")
    if config["optimizer"] not in optim.OPTIMIZERS:
        raise SearchError(f"space: optimizer {config['optimizer']!r} is not one of {', '.join(optim.OPTIMIZERS)}")
    for key in ("lr", "pretrain_lr"):
        if key in config and not (isinstance(config[key], (int, float)) and config[key] > 0):
            raise SearchError(f"space: {key} must be a positive number, got {config[key]!r}")
    if not 0.0 <= float(config.get("dropout", 0.0)) < 1.0:
        raise SearchError(f"space: dropout must be in [0, 1), got {config['dropout']!r}")
    for key in ("batch_size", "epochs"):
        if not isinstance(config[key], (int, np.integer)) or config[key] < 1:
            raise SearchError(f"space: {key} must be a positive integer, got {config[key]!r}")
    return config


def _with_dropout(net, p, seed):
    """``net`` with a Dropout(p) after every hidden layer (pretraining builds nets without)."""
    layers = nn.linear_layers(net)
    modules = []
    for i, layer in enumerate(layers):
        modules.append(layer)
        if i < len(layers) - 1:
            modules.append(nn.Dropout(p, seed=seed * 1000 + i))
    return nn.Sequential(*modules)


def build_net(config, X, y, *, dtype="float32", device="cpu"):
    """The initial net of a config: random, or greedily pretrained on (X, y); then dropout."""
    sizes = [X.shape[1], *[int(u) for u in config["hidden"]], int(y.max()) + 1]
    seed = int(config.get("seed", 0))
    kind = config["pretraining"]
    common = dict(seed=seed, dtype=dtype, device=device, progress=False, batch_size=int(config["batch_size"]))
    if kind != "none":
        common.update(epochs_per_layer=int(config.get("pretrain_epochs", 5)), lr=float(config.get("pretrain_lr", 0.1)))
    if kind == "none":
        net = nn.mlp(sizes, activation=config["activation"], dtype=dtype, device=device, seed=seed)
    elif kind == "supervised":
        net, _ = pretrain.greedy_supervised(sizes, X, y, activation=config["activation"], **common)
    elif kind == "autoencoder":
        net, _ = pretrain.greedy_autoencoder(sizes, X, activation=config["activation"],
                                             noise=float(config.get("noise", 0.0)), **common)
    else:
        net, _ = pretrain.greedy_rbm(sizes, X, **common)
    dropout = float(config.get("dropout", 0.0))
    return _with_dropout(net, dropout, seed) if dropout > 0 else net


def n_parameters(net) -> int:
    """Trainable weights and biases of a net."""
    return int(sum(p.data.size for p in net.parameters()))


def train_config(config, data, *, on_epoch: Optional[Callable[[int, float], None]] = None, device="cpu"):
    """Builds and trains the net of ``config`` on data's training split, validating after
    every epoch (``on_epoch(epoch, valid_error)`` may raise optuna.TrialPruned).

    Returns (net, history); the net holds the weights of its best validation epoch (the
    config's ``patience`` stops training early). Same config, same data: the same net."""
    check_config(config)
    net = build_net(config, data.X_train, data.y_train, device=device)
    kw = {}
    if config.get("momentum"):
        kw["momentum"] = float(config["momentum"])

    # A patience of the whole budget never stops early, but still makes fit restore the
    # best epoch's weights: the net returned is the one the objective value describes.
    patience = config.get("patience") or int(config["epochs"])

    def callback(epoch, history):
        if on_epoch is not None:
            on_epoch(epoch, history.valid_error[-1])

    history = train.fit(net, data.X_train, data.y_train, optimizer=config["optimizer"], lr=float(config["lr"]),
                        weight_decay=float(config.get("weight_decay", 0.0)), epochs=int(config["epochs"]),
                        batch_size=int(config["batch_size"]), X_val=data.X_valid, y_val=data.y_valid,
                        patience=patience, seed=int(config.get("seed", 0)), progress=False,
                        callback=callback, **kw)
    return net, history


_WORKER = f"{socket.gethostname()}:{os.getpid()}"  # which process ran a trial (shared studies)


def make_objective(data, space, *, device="cpu", keep_best=None):
    """The Optuna objective: sample a config, train it, report every epoch's validation
    error for pruning, return the lowest. ``keep_best``: a dict that receives this
    process's best (value, trial number, net, config)."""
    def objective(trial):
        trial.set_user_attr("worker", _WORKER)
        config = check_config(space(trial))
        trial.set_user_attr("config", config)

        def on_epoch(epoch, err):
            trial.report(err, epoch)
            trial.set_user_attr("epochs_trained", epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} at validation error {err:.3f}")

        try:
            net, history = train_config(config, data, on_epoch=on_epoch, device=device)
        except train.TrainingDiverged as e:
            # a rate too high for its config is a finding about the space, not a crash:
            # the trial is recorded as failed, with the reason, and the study goes on
            trial.set_user_attr("failure", str(e))
            raise
        value = float(min(history.valid_error))
        trial.set_user_attr("n_params", n_parameters(net))
        if keep_best is not None and ("value" not in keep_best or value < keep_best["value"]):
            keep_best.update(value=value, number=trial.number, net=net, config=config)
        return value

    return objective


def reproduce(trial, data, space, *, device="cpu"):
    """Retrains a stored trial from its parameters alone (optuna.trial.FixedTrial):
    returns (net, lowest validation error)."""
    config = check_config(space(optuna.trial.FixedTrial(trial.params, trial.number)))
    net, history = train_config(config, data, device=device)
    return net, float(min(history.valid_error))


# ---- storage and study ---------------------------------------------------------------------------
_RDB_PREFIXES = ("sqlite:", "postgresql:", "postgresql+", "postgres:", "mysql:", "mysql+")


def make_storage(url):
    """An Optuna storage from a URL: None (in memory), sqlite:///FILE, postgresql://...,
    mysql://..., or journal:FILE. Raises SearchError for an unknown URL or an unreachable
    database."""
    if url is None:
        return optuna.storages.InMemoryStorage()
    if not isinstance(url, str) or not url:
        raise SearchError(f"storage: expected a URL string, got {url!r}")
    if url.startswith("journal:"):
        path = url[len("journal:"):]
        if not path:
            raise SearchError("storage: journal:FILE needs a file name")
        try:
            backend = optuna.storages.journal.JournalFileBackend(path)
        except OSError as e:
            raise SearchError(f"storage: cannot open journal file {path!r}: {e}") from None
        return optuna.storages.JournalStorage(backend)
    if not url.startswith(_RDB_PREFIXES):
        raise SearchError(f"storage: unknown storage URL {url!r}; expected sqlite:///FILE, "
                          "postgresql://USER@HOST/DB, mysql://..., or journal:FILE")
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3, not SQLAlchemy's default psycopg2
    last = None
    for attempt in range(3):
        try:
            return _rdb_storage(url)
        except ImportError as e:
            raise SearchError(f"storage: the database driver is missing ({e}); "
                              "pip install 'layerwise[search]'") from None
        except Exception as e:  # SQLAlchemy's OperationalError and friends: the server is unreachable
            last = e
            # Workers that start together on an empty database race to create Optuna's
            # tables; the loser sees a duplicate-key error and succeeds on a second try.
            if not any(word in str(e) for word in ("duplicate key", "already exists")):
                break
            time.sleep(0.5 * (attempt + 1))
    raise SearchError(f"storage: cannot open {_redact(url)}: {_first_line(last)}") from None


def _rdb_storage(url):
    """An RDBStorage whose heartbeats mark the trials of a worker that died (or lost the
    database) as failed and queue them again, so an outage loses no trial."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        kw = dict(engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=30, grace_period=120)
        if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # Optuna >= 4.9
            kw["heartbeat_stale_trial_callback"] = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)
        else:
            kw["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=2)
        return optuna.storages.RDBStorage(url, **kw)


def _redact(url):
    """The URL without its password, for messages."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}@{host}"
    return url


def _first_line(e):
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _storage_failure(e):
    """The database error behind ``e`` (anywhere in its chain of causes), or None.

    When the database goes away mid-trial, Optuna can end up raising an unrelated error
    from its own cleanup; the original failure is still in the chain."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, optuna.exceptions.StorageInternalError) or type(e).__module__.split(".")[0] in (
                "sqlalchemy", "psycopg", "psycopg2", "sqlite3"):
            return getattr(e, "__cause__", None) or e
        e = e.__cause__ or e.__context__
    return None


def _pruner(name, epochs):
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise SearchError(f"pruner: expected median, hyperband or none, got {name!r}")


def _sampler(name, seed):
    # "random" draws the same configs in the same order for a given seed whatever the
    # trials return, which is what an A/B of pruners needs; "tpe" learns from them.
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SearchError(f"sampler: expected tpe or random, got {name!r}")


def open_study(space, *, storage=None, study=None, pruner="median", epochs=20, sampler_seed=None, sampler="tpe"):
    """Creates or loads the study ``study`` in ``storage`` (a URL or None). A study that
    exists already must have been created with the same space (SearchError otherwise).
    sampler: "tpe" (default) or "random"."""
    store = make_storage(storage)
    name = study or "layerwise"
    sampler = _sampler(sampler, sampler_seed)
    try:
        s = optuna.create_study(storage=store, study_name=name, direction="minimize", load_if_exists=True,
                                sampler=sampler, pruner=_pruner(pruner, epochs))
        fingerprint = _fingerprint(space)
        stored = s.user_attrs.get("space")
        if stored is None:
            s.set_user_attr("space", fingerprint)
        elif stored != fingerprint:
            raise SearchError(f"study: {name!r} was created with another search space; choose a new --study "
                              "name or the same space")
    except SearchError:
        raise
    except Exception as e:
        cause = _storage_failure(e)
        if cause is None:
            raise
        raise SearchError(f"storage: database error: {_first_line(cause)}") from None
    return s


# ---- the whole search ------------------------------------------------------------------------------
@dataclass
class SearchResult:
    """What a search found (also written to best.json, less ``net`` and ``study``).

    epochs_total: training epochs over all trials (what pruning saves shows here);
    reproduced_value: the validation error of the best trial retrained from its
    parameters, when this process did not hold its net (None otherwise)."""

    best_value: float
    best_trial: int
    best_params: dict
    best_config: dict
    test_error: float
    reproduced_value: Optional[float]
    n_params: int
    trials: int
    complete: int
    pruned: int
    failed: int
    epochs_total: int
    net: object = field(repr=False, default=None)
    figures: list = field(default_factory=list)
    study: object = field(repr=False, default=None)

    def to_dict(self):
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("net", "study")}
        return json.loads(json.dumps(d, default=float))


def pareto_front(study):
    """The complete trials not beaten on both validation error and parameter count, sorted by size."""
    points = [(t.value, t.user_attrs["n_params"], t) for t in study.trials
              if t.state == optuna.trial.TrialState.COMPLETE and "n_params" in t.user_attrs]
    front = [p for p in points if not any((q[0] <= p[0] and q[1] <= p[1]) and (q[0] < p[0] or q[1] < p[1])
                                          for q in points)]
    return [t for _, _, t in sorted(front, key=lambda p: p[1])]


def _figures(study, out):
    """Optimization history, the per-epoch validation curves (pruning.png), parameter importances
    and the Pareto front of validation error vs parameter count (Optuna's matplotlib plots);
    returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    written = []
    with warnings.catch_warnings():
        # Optuna marks its matplotlib plots experimental, and the importance estimate warns
        # about sparse regimes of conditional parameters; neither is news to the user.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        return _draw(study, out, plt, ovm, written)


def _draw(study, out, plt, ovm, written):
    def save(ax, name):
        fig = (ax[0] if isinstance(ax, np.ndarray) else ax).figure
        fig.tight_layout()
        path = Path(out) / name
        write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120))
        plt.close(fig)
        written.append(str(path))

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        save(ovm.plot_optimization_history(study), "history.png")
    if any(t.intermediate_values for t in study.trials):
        # Each trial's validation error per epoch: pruned trials' curves end early.
        ax = ovm.plot_intermediate_values(study)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation error (%)")
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        save(ax, "pruning.png")
    if len(complete) >= 2:
        try:
            save(ovm.plot_param_importances(study), "importances.png")
        except (ValueError, RuntimeError, ZeroDivisionError):
            pass  # too few distinct parameters for an importance estimate
    # The Pareto plot needs a two-objective study: copy the trials' (error, size) into one.
    points = optuna.create_study(directions=["minimize", "minimize"])
    for t in complete:
        if "n_params" in t.user_attrs:
            points.add_trial(optuna.trial.create_trial(values=[t.value, t.user_attrs["n_params"]],
                                                       params={}, distributions={},
                                                       user_attrs={"trial": t.number}))
    if points.trials:
        save(ovm.plot_pareto_front(points, target_names=["validation error (%)", "parameters"]), "pareto.png")
    return written


def _epochs_of(t):
    return int(t.user_attrs.get("epochs_trained", 0))


def run(data, *, trials=None, timeout=None, storage=None, study=None, space=None, out=None, pruner="median",
        device="cpu", reproduce_best=False, plots=True, sampler_seed=None, sampler="tpe", log=print) -> SearchResult:
    """Runs ``trials`` trials (this process's share; None: until ``timeout`` seconds) on
    ``data`` (a datasets.Dataset), then evaluates the study's best trial on the test set once.

    space: a Space (default Space()) or a ``space(trial) -> config`` function. out: a
    folder for best.json, best_net.npz (nn.save format) and the figures.
    reproduce_best: retrain the best trial from its stored parameters even when this
    process holds its net, and record that run's validation error.
    sampler / sampler_seed: Optuna's TPE ("tpe") or random ("random") sampler and its seed."""
    space = Space() if space is None else space
    if not (isinstance(space, Space) or callable(space)):
        raise SearchError(f"space: expected a Space or a space(trial) function, got {type(space).__name__}")
    if trials is None and timeout is None:
        raise SearchError("trials: give a number of trials, a timeout, or both")
    epochs = space.epochs if isinstance(space, Space) else 20
    s = open_study(space, storage=storage, study=study, pruner=pruner, epochs=epochs, sampler_seed=sampler_seed,
                   sampler=sampler)
    kept = {}
    objective = make_objective(data, space, device=device, keep_best=kept)

    def progress(st, trial):
        if log is not None:
            log(f"trial {trial.number}: {trial.state.name.lower()}"
                + (f", validation error {trial.value:.2f}%" if trial.value is not None else "")
                + f" after {_epochs_of(trial)} epoch(s)"
                + (f" ({trial.user_attrs['failure']})" if "failure" in trial.user_attrs else ""))

    try:
        s.optimize(objective, n_trials=trials, timeout=timeout, callbacks=[progress], gc_after_trial=False,
                   catch=(train.TrainingDiverged,))
        all_trials = s.trials
    except SearchError:
        raise
    except Exception as e:
        cause = _storage_failure(e)
        if cause is None:
            raise
        raise SearchError("storage: database lost during the search (finished trials are kept; the "
                          "interrupted one is retried once its heartbeat goes stale, after 2 minutes): "
                          f"{_first_line(cause)}") from None

    states = [t.state for t in all_trials]
    TS = optuna.trial.TrialState
    if TS.COMPLETE not in states:
        raise SearchError("search: no trial completed (all pruned or failed); widen the space or run more trials")
    best = s.best_trial
    reproduced = None
    if kept.get("number") == best.number and not reproduce_best:
        net = kept["net"]
    else:
        net, reproduced = reproduce(best, data, space, device=device)
    test_error = train.error_rate(net, data.X_test, data.y_test)
    result = SearchResult(
        best_value=float(best.value), best_trial=best.number, best_params=dict(best.params),
        best_config=best.user_attrs.get("config", {}), test_error=float(test_error), reproduced_value=reproduced,
        n_params=n_parameters(net), trials=len(all_trials), complete=states.count(TS.COMPLETE),
        pruned=states.count(TS.PRUNED), failed=states.count(TS.FAIL),
        epochs_total=sum(_epochs_of(t) for t in all_trials), net=net, study=s)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        nn.save(net, out / "best_net.npz")  # atomic itself
        if plots:
            result.figures = _figures(s, out)
        payload = json.dumps(result.to_dict(), indent=2, default=float).encode()
        write_atomic(out / "best.json", lambda f: f.write(payload))
    return result


# ---- command line ----------------------------------------------------------------------------------
def add_arguments(parser):
    """The ``layerwise search`` options."""
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="MNIST or any dataset in the four MNIST-named IDX files (default: MNIST lookup)")
    parser.add_argument("--split", metavar="TRAIN,VALID", default="50000,10000",
                        help="training / validation rows cut from the training file (default 50000,10000)")
    parser.add_argument("--trials", type=int, default=None, metavar="N", help="trials this process runs")
    parser.add_argument("--timeout", type=float, default=None, metavar="S", help="stop starting trials after S s")
    parser.add_argument("--storage", metavar="URL", default=None,
                        help="sqlite:///FILE, postgresql://USER@HOST/DB, journal:FILE (default: in memory)")
    parser.add_argument("--study", metavar="NAME", default=None, help="study name (default: layerwise)")
    parser.add_argument("--space", metavar="FILE", default=None,
                        help="JSON of Space fields narrowing the default space, or a .py file with space(trial)")
    parser.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median")
    parser.add_argument("--sampler", choices=("tpe", "random"), default="tpe",
                        help="Optuna sampler (default tpe; random draws the same configs for a given --seed)")
    parser.add_argument("--seed", type=int, default=None, metavar="N", help="sampler seed (default: random)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where to write best.json, best_net.npz and figures (default: results/search-STUDY)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="CPU kernel threads")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the figures")


def _split(text):
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise SearchError(f"split: expected TRAIN,VALID row counts, got {text!r}") from None
    return a, b


def main(args) -> int:
    """Runs ``layerwise search`` from parsed arguments; user errors become one line on stderr."""
    import sys

    from . import datasets, ops

    try:
        if optuna is None:
            raise SearchError("search needs Optuna: pip install 'layerwise[search]'")
        if args.trials is not None and args.trials < 1:
            raise SearchError(f"trials: expected a positive integer, got {args.trials}")
        if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
            raise SearchError(f"timeout: expected a positive number of seconds, got {args.timeout}")
        if args.threads is not None:
            ops.set_num_threads(args.threads)
        if args.seed is not None and args.seed < 0:
            raise SearchError(f"seed: expected a non-negative integer, got {args.seed}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the CLI prints its own line per trial
        space = load_space(args.space) if args.space else Space()
        split = _split(args.split)
        try:
            if args.data is not None:
                data = datasets.load_idx_dataset(args.data, split=split)
            else:
                data = datasets.mnist(split=split, progress=False)
        except (FileNotFoundError, ValueError) as e:
            raise SearchError(f"data: {e}") from None
        out = args.out if args.out is not None else f"results/search-{args.study or 'layerwise'}"
        result = run(data, trials=args.trials, timeout=args.timeout, storage=args.storage, study=args.study,
                     space=space, out=out, pruner=args.pruner, device=args.device, plots=not args.no_plots,
                     sampler=args.sampler, sampler_seed=args.seed,
                     log=lambda m: print(m, file=sys.stderr))
    except SearchError as e:
        print(f"layerwise: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in result.to_dict().items() if k != "best_config"}, default=float))
    return 0
