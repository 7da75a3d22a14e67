"""Bengio, Lamblin, Popovici & Larochelle (2006), "Greedy layer-wise training of
deep networks" (NIPS 19), Table 1 on MNIST -- the lecture's experiment.

Five ways to train a sigmoid network on MNIST, compared by classification
error on a held-out test set:

    shallow                        one hidden layer, backprop from random init
    deep_no_pretraining            three hidden layers, backprop from random init
    deep_supervised_pretraining    greedy layer-wise *supervised* pretraining, then backprop
    deep_autoencoder_pretraining   greedy layer-wise autoencoder pretraining, then backprop
    dbn                            greedy layer-wise RBM (CD-k) pretraining, then backprop

Protocol (as in the paper): 50k training / 10k validation / 10k test images;
the validation set alone chooses hyperparameters and the fine-tuning epoch
(early stopping); the test set is evaluated once per row, at the end.

Run it as ``layerwise bengio2006 --preset quick`` (or :func:`run`). Presets
(:data:`PRESETS`) trade fidelity for time: ``smoke`` (seconds, for tests),
``quick`` (the paper's protocol at reduced effort, <= 5 minutes on two CPU
cores), ``full`` (the paper's setup, ~35 minutes), ``record`` (DBN pretraining
plus dropout fine-tuning with max-norm: hours). docs/bengio2006.md has the
tuning history behind every value.

As a library: :func:`load_data`, :func:`pretrain`, :func:`finetune` and
:func:`evaluate_row` are the steps of one row; :func:`run` strings them together
with checkpoints (``resume=True`` continues a stopped run), and
``benchmarks/sweep_bengio2006.py`` uses the same steps for its grids.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .arguments import non_negative_int, positive_int
from .registry import Experiment, ExperimentError, register

__all__ = ["PAPER", "ROWS", "Preset", "PRESETS", "run", "format_table", "hyperparameters", "architecture",
           "load_data", "pretrain", "finetune", "evaluate_row", "train_row"]

# ---- the paper -----------------------------------------------------------------
# % classification error (train, valid, test), Bengio et al. 2006, Table 1 (MNIST).
PAPER: Dict[str, Tuple[float, float, float]] = {
    "dbn": (0.0, 1.2, 1.2),
    "deep_autoencoder_pretraining": (0.0, 1.4, 1.4),
    "deep_supervised_pretraining": (0.0, 1.7, 2.0),
    "deep_no_pretraining": (0.004, 2.1, 2.4),
    "shallow": (0.004, 1.8, 1.9),
}
# Training order: cheapest first, so a short run shows results early.
ROWS: Tuple[str, ...] = (
    "shallow",
    "deep_no_pretraining",
    "deep_supervised_pretraining",
    "deep_autoencoder_pretraining",
    "dbn",
)
_PRETRAINING = {
    "deep_supervised_pretraining": "supervised",
    "deep_autoencoder_pretraining": "autoencoder",
    "dbn": "rbm",
}


# ---- presets -------------------------------------------------------------------
# Defaults shared by the presets. Fine-tuning: minibatch SGD with momentum on
# softmax cross-entropy, early stopping on validation error (fit restores the
# best epoch's weights). Pretraining: per-strategy settings, per hidden layer.
# lr_decay: the rate of epoch t is lr * lr_decay**t (optim.ExponentialLR); 1.0 keeps it constant.
_FINETUNE = dict(lr=0.1, momentum=0.9, weight_decay=0.0, batch_size=50, max_epochs=10, patience=4, lr_decay=1.0)
_PRETRAIN = {
    # a hidden layer + a temporary softmax layer, trained on the labels
    "supervised": dict(epochs_per_layer=2, lr=0.1, momentum=0.9, weight_decay=0.0, batch_size=50),
    # tied-weight sigmoid autoencoder, cross-entropy reconstruction (inputs in [0, 1])
    "autoencoder": dict(epochs_per_layer=2, lr=0.1, momentum=0.9, weight_decay=0.0, batch_size=50,
                        loss="binary_cross_entropy", tied=True, noise=0.0),
    # Bernoulli RBM, CD-1; small weight decay and momentum 0.5 (Hinton's practical guide)
    "rbm": dict(epochs_per_layer=2, lr=0.05, momentum=0.5, weight_decay=2e-4, batch_size=20, k=1,
                persistent=False),
}


@dataclass(frozen=True)
class Preset:
    """One configuration of the experiment: data sizes, architectures, and every
    hyperparameter. ``finetune`` applies to every row (``overrides`` holds per-row
    exceptions); ``pretrain`` holds the settings of each pretraining strategy
    ("supervised", "autoencoder", "rbm"). Everything is recorded in results.json."""

    name: str
    description: str
    n_train: int  # the first n_train images of the 50k training split
    n_valid: int  # the first n_valid images of the 10k validation split
    n_test: Optional[int]  # None: the whole 10k test set
    hidden: Tuple[int, ...]  # hidden layer sizes of the deep nets
    shallow_hidden: int  # hidden layer size of the shallow net
    finetune: Mapping[str, object] = field(default_factory=lambda: dict(_FINETUNE))
    pretrain: Mapping[str, Mapping[str, object]] = field(default_factory=lambda: {k: dict(v) for k, v in _PRETRAIN.items()})
    overrides: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    init: str = "uniform"  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as in the paper's era
    grad_examples: int = 1000  # examples used to measure the per-layer gradient norms
    notes: str = ""


def _with(base: Mapping, **changes) -> dict:
    out = dict(base)
    out.update(changes)
    return out


def _pre(**per_kind) -> Dict[str, dict]:
    """The default pretraining settings with per-strategy changes, e.g. _pre(rbm=dict(lr=0.1))."""
    return {k: _with(v, **per_kind.get(k, {})) for k, v in _PRETRAIN.items()}


def _pre_all(**changes) -> Dict[str, dict]:
    """The default pretraining settings with the same change applied to every strategy."""
    return {k: _with(v, **changes) for k, v in _PRETRAIN.items()}


# Why each value: one line here; the measurements behind them are in docs/bengio2006.md.
PRESETS: Dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        description="end-to-end check in seconds: 1000 training images, 3 x 64 units, 4 epochs",
        n_train=1000, n_valid=500, n_test=1000,  # seconds: only checks that every code path runs and learns
        hidden=(64, 64, 64), shallow_hidden=64,
        # small batches and a large rate: as many updates as possible in seconds
        finetune=_with(_FINETUNE, lr=0.3, batch_size=10, max_epochs=4, patience=4),
        # one pretraining epoch per layer is enough to exercise pretraining
        pretrain=_pre(supervised=dict(epochs_per_layer=1, batch_size=10),
                      autoencoder=dict(epochs_per_layer=1, batch_size=10),
                      rbm=dict(epochs_per_layer=1, batch_size=10, lr=0.1)),
        grad_examples=200,
        notes="not a measurement, only exercises every code path; at this scale the deep net "
              "without pretraining is still on its initial ~90%-error plateau",
    ),
    "quick": Preset(
        name="quick",
        description="the paper's protocol at reduced effort: 50k/10k/10k, 784-500-500-500-10, few epochs, "
                    "<= 5 minutes on 2 CPU cores",
        n_train=50000, n_valid=10000, n_test=None,  # the paper's split: fewer images cost more error than fewer epochs
        hidden=(500, 500, 500), shallow_hidden=500,  # the full preset's nets, so its tuning carries over
        # full's per-epoch costs (2 Zen 3 cores) budget ~260 s: 10 fine-tuning epochs at full's rate
        # and decay, so full's learning curves predict these rows (a faster 0.8 decay underfit: shallow
        # 2.36 % valid vs 2.25 at 0.93)
        finetune=_with(_FINETUNE, lr=0.1, max_epochs=10, patience=10, lr_decay=0.93),
        # two pretraining epochs per layer: most of the first epochs' gain at 1/15-1/20 of full's cost;
        # autoencoders at 3x full's rate (0.03, as good as 0.01 at full scale) to make up for fewer epochs
        pretrain=_pre(supervised=dict(epochs_per_layer=2),
                      autoencoder=dict(epochs_per_layer=2, lr=0.03, noise=0.25),
                      rbm=dict(epochs_per_layer=2)),
        overrides={
            # no pretraining: 14 epochs -- it must first leave its ~70 % plateau
            "deep_no_pretraining": {"max_epochs": 14, "patience": 14},
            # the full preset's selected fine-tuning noise for the pretrained rows, fewer epochs
            "deep_supervised_pretraining": {"lr": 0.5, "max_epochs": 8, "patience": 8},
            "deep_autoencoder_pretraining": {"lr": 0.2, "batch_size": 20, "max_epochs": 6, "patience": 6},
            "dbn": {"lr": 0.2, "batch_size": 20, "lr_decay": 0.95, "max_epochs": 6, "patience": 6},
        },
        notes="designed from the full preset's per-epoch costs and learning curves (docs/bengio2006.md)",
    ),
    "full": Preset(
        name="full",
        description="the paper's setup: 50k/10k/10k, 784-500-500-500-10 (shallow: 784-500-10), <= 45 min target",
        n_train=50000, n_valid=10000, n_test=None,  # the paper's split
        hidden=(500, 500, 500), shallow_hidden=500,  # the paper's 500-1000 units, low end: 1000 costs ~4x, no gain
        # lr 0.1 momentum 0.9 batch 50 decayed 0.93/epoch for 40 epochs: best valid of the first round
        finetune=_with(_FINETUNE, lr=0.1, max_epochs=40, patience=40, lr_decay=0.93),
        pretrain=_pre(supervised=dict(epochs_per_layer=10),  # supervised layers fit in a few epochs
                      # lr 0.01 (0.1 saturated units), 25 % masking noise, 40 epochs: 1.38 % valid
                      autoencoder=dict(epochs_per_layer=40, lr=0.01, noise=0.25),
                      rbm=dict(epochs_per_layer=30)),  # CD-1, 30 epochs beat 15 and 60
        overrides={
            "deep_supervised_pretraining": {"lr": 0.5},  # more fine-tuning noise: 1.65 vs 1.75 % valid
            "deep_autoencoder_pretraining": {"batch_size": 10},  # same: 1.19 vs 1.38 % valid
            "dbn": {"lr": 0.2, "batch_size": 20, "lr_decay": 0.95},  # same: 1.10 vs 1.37 % valid
        },
        notes="hyperparameters selected on the validation set at full scale (docs/bengio2006.md)",
    ),
    "record": Preset(
        name="record",
        description="the best sigmoid net we know a recipe for: DBN pretraining (784-500-500-2000), dropout "
                    "fine-tuning, long schedule; about an hour on 2 CPU cores",
        n_train=50000, n_valid=10000, n_test=None,  # the paper's split: validation still chooses the epoch
        hidden=(500, 500, 2000), shallow_hidden=2000,  # Srivastava et al. 2014's DBN for their 0.92 %
        # dropout 0.25 on hidden units (1.12 % valid after 30 epochs vs 1.29 at 0.5; 0.95 vs 1.10 over 150)
        # and 0.2 on inputs; no max-norm: the RBMs' incoming weight norms are ~5.4 (median), so a 3.5
        # ball rescales every pretrained unit (1.70 vs 1.29 % valid after 30 epochs); momentum 0.95 and
        # lr 0.2 as Srivastava et al., decayed 0.98 per epoch so it falls 20x within the 150 epochs an hour holds
        finetune=_with(_FINETUNE, lr=0.2, momentum=0.95, batch_size=100, max_epochs=150, patience=40,
                       lr_decay=0.98, dropout_input=0.2, dropout_hidden=0.25),
        # the full preset's pretraining: CD-1, momentum 0.5 throughout (the 0.5 -> 0.9 switch raised the
        # first RBM's reconstruction error 5.5 -> 7.2 in the first run), 30 epochs per layer
        pretrain=_pre(supervised=dict(epochs_per_layer=10),
                      autoencoder=dict(epochs_per_layer=40, lr=0.01, noise=0.25),
                      rbm=dict(epochs_per_layer=30)),
        notes="chosen on validation with benchmarks/sweep_bengio2006.py (docs/bengio2006.md); first run, "
              "Srivastava et al.'s values untuned: 1.39 % test",
    ),
}


def hyperparameters(preset: Preset, row: str) -> dict:
    """The hyperparameters of one row (preset defaults + the row's overrides), as recorded in results.json."""
    hp = {
        "activation": "sigmoid",
        "init": preset.init,
        "loss": "softmax_cross_entropy",
        "optimizer": "sgd",
        **preset.finetune,
        "model_selection": "early stopping on validation error (best epoch's weights restored)",
    }
    kind = _PRETRAINING.get(row)
    if kind is not None:
        hp["pretraining"] = kind
        hp["pretrain"] = dict(preset.pretrain[kind])
    hp.update(preset.overrides.get(row, {}))
    return hp


def architecture(preset: Preset, row: str, n_in: int = 784, n_out: int = 10) -> List[int]:
    """Layer sizes of one row's network."""
    if row == "shallow":
        return [n_in, preset.shallow_hidden, n_out]
    return [n_in, *preset.hidden, n_out]


# ---- reporting --------------------------------------------------------------------
def format_table(rows: Sequence[Mapping], *, paper: Mapping = PAPER) -> str:
    """A text table: our train/valid/test % error and seconds per row, the paper's beside them."""
    head = f"{'row':<30} {'train':>7} {'valid':>7} {'test':>7} {'epochs':>6} {'time':>8}  | paper: {'train':>6} {'valid':>6} {'test':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        p = paper.get(r["name"], (math.nan,) * 3)
        lines.append(
            f"{r['name']:<30} {r['train_error']:7.2f} {r['valid_error']:7.2f} {r['test_error']:7.2f} "
            f"{r['epochs']:6d} {r['seconds']:7.1f}s  |        {p[0]:6.3g} {p[1]:6.3g} {p[2]:6.3g}"
        )
    return "\n".join(lines)


def _to_builtin(obj):
    """JSON-serialisable copy (NumPy scalars/arrays -> Python numbers/lists)."""
    if isinstance(obj, dict):
        return {str(k): _to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_builtin(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# ---- the steps of one row (the library) ------------------------------------------------------
def load_data(preset, data=None, *, device: str = "cpu", progress: bool = False):
    """MNIST split as the preset asks: returns ``(dataset, arrays)`` with arrays
    X_train, y_train, X_valid, y_valid, X_test, y_test (C-contiguous, on ``device``).

    ``data``: the MNIST directory; it must exist (None: the usual lookup of
    :func:`layerwise.datasets.mnist`, which may download into its cache). Subsets take
    the first images of each split: deterministic, and MNIST's order is not sorted by
    class, so they stay roughly class-balanced. Raises ExperimentError (one line) when
    the data is missing or unreadable."""
    from .. import datasets, nn

    p = _preset(preset)
    if data is not None and not Path(data).is_dir():
        raise ExperimentError(f"--data {data}: no such directory (it should hold the four MNIST files "
                              f"{', '.join(datasets.MNIST_FILES)}, optionally gzipped)")
    try:
        d = datasets.mnist(data, progress=progress)
    except datasets.DatasetNotFoundError as e:
        raise ExperimentError(" ".join(str(e).split())) from None
    except (ValueError, OSError) as e:  # corrupt or truncated IDX files, unreadable files
        raise ExperimentError(f"cannot load MNIST from {data if data is not None else 'the default location'}: "
                              f"{' '.join(str(e).split())}") from None
    n_test = p.n_test if p.n_test is not None else d.X_test.shape[0]
    arrays = {
        "X_train": d.X_train[: p.n_train], "y_train": d.y_train[: p.n_train],
        "X_valid": d.X_valid[: p.n_valid], "y_valid": d.y_valid[: p.n_valid],
        "X_test": d.X_test[:n_test], "y_test": d.y_test[:n_test],
    }
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    if device != "cpu":
        arrays = {k: nn.to_device(v, device) for k, v in arrays.items()}
    return d, arrays


def pretrain(kind: str, sizes, data: Mapping, hp: Mapping, *, seed: int = 0, device: str = "cpu",
             progress: bool = False, checkpoint=None, checkpoint_every="epoch", resume: bool = False, comm=None):
    """Greedy layer-wise pretraining of the hidden layers with strategy ``kind``
    ("supervised", "autoencoder" or "rbm") and the settings ``hp["pretrain"]``, on
    ``data["X_train"]`` (and its labels for "supervised"). Returns ``(net, info)``: a
    net ready for :func:`finetune` and the per-layer records of layerwise.pretrain.
    checkpoint / checkpoint_every / resume / comm: as in ``layerwise.pretrain.greedy_*``."""
    from .. import pretrain as lw_pretrain

    kw = dict(hp["pretrain"])
    kw.update(seed=seed, device=device, progress=progress, init=hp["init"], checkpoint=checkpoint,
              checkpoint_every=checkpoint_every, resume=resume, comm=comm)
    X, y = data["X_train"], data["y_train"]
    if kind == "supervised":
        return lw_pretrain.greedy_supervised(sizes, X, y, **kw)
    if kind == "autoencoder":
        return lw_pretrain.greedy_autoencoder(sizes, X, **kw)
    if kind == "rbm":
        return lw_pretrain.greedy_rbm(sizes, X, **kw)
    raise ValueError(f"kind: unknown pretraining {kind!r}; expected supervised, autoencoder or rbm")


def _with_dropout(net, hp: Mapping, seed: int):
    """The net's Linear layers with Dropout before each (``dropout_input`` before the first,
    ``dropout_hidden`` before the others); the net itself when the row has no dropout."""
    from .. import nn

    p_in, p_hidden = float(hp.get("dropout_input", 0.0)), float(hp.get("dropout_hidden", 0.0))
    if p_in == 0.0 and p_hidden == 0.0:
        return net
    modules = []
    for i, layer in enumerate(nn.linear_layers(net)):
        p = p_in if i == 0 else p_hidden
        if p > 0:
            modules.append(nn.Dropout(p, seed=seed * 1000 + i))
        modules.append(layer)
    return nn.Sequential(*modules)


def finetune(net, data: Mapping, hp: Mapping, *, seed: int = 0, progress: bool = False, checkpoint=None,
             checkpoint_every="epoch", resume: bool = False, comm=None):
    """Fine-tunes ``net`` on the training split with backprop (``hp``: lr, momentum,
    weight_decay, batch_size, max_epochs, patience, lr_decay; optional dropout_input,
    dropout_hidden, max_norm), early-stopped on the validation split (the best epoch's
    weights are restored). Returns ``(net, history)``: the net that was trained (``net``
    itself, or ``net``'s layers with Dropout inserted when the row uses dropout) and
    its train.History. checkpoint / checkpoint_every / resume / comm: as in ``train.fit``."""
    from .. import optim, train

    net = _with_dropout(net, hp, seed)
    decay = hp.get("lr_decay", 1.0)
    history = train.fit(
        net, data["X_train"], data["y_train"],
        loss=hp["loss"], lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"],
        schedule=optim.ExponentialLR(decay) if decay != 1.0 else None,
        epochs=hp["max_epochs"], batch_size=hp["batch_size"],
        X_val=data["X_valid"], y_val=data["y_valid"], patience=hp["patience"], max_norm=hp.get("max_norm"),
        seed=seed, progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
        comm=comm,
    )
    return net, history


def _pretraining_summary(kind: str, info: dict) -> dict:
    """Per-layer, per-epoch pretraining losses (the JSON-friendly part of pretrain's info)."""
    if kind == "supervised":
        hs = info.get("histories", [])
        return {"train_loss": [list(h.train_loss) for h in hs], "train_error": [list(h.train_error) for h in hs]}
    return {"reconstruction_error": [list(map(float, e)) for e in info.get("reconstruction_error", [])]}


def evaluate_row(name: str, net, data: Mapping, *, sizes, hp: Mapping, history, pretraining_info=None,
                 timing: Optional[Mapping] = None) -> dict:
    """The results.json record of one trained row: train/valid/test % error of ``net``
    on the three splits, the architecture, hyperparameters, history, pretraining
    records, the paper's numbers, and ``timing`` (seconds, pretrain_seconds, cpu_seconds)."""
    from .. import train

    errs = {k: float(train.error_rate(net, data[f"X_{k}"], data[f"y_{k}"])) for k in ("train", "valid", "test")}
    hist = _to_builtin(history.to_dict() if hasattr(history, "to_dict") else dict(history))
    timing = dict(timing or {})
    row = {
        "name": name,
        "architecture": list(sizes),
        "hyperparameters": dict(hp),
        "epochs": int(len(hist.get("valid_error") or hist.get("train_loss") or [])),
        "best_epoch": hist.get("best_epoch"),
        "train_error": errs["train"],
        "valid_error": errs["valid"],
        "test_error": errs["test"],
        "seconds": round(float(timing.get("seconds", 0.0)), 2),
        "pretrain_seconds": round(float(timing.get("pretrain_seconds", 0.0)), 2),
        "cpu_seconds": round(float(timing.get("cpu_seconds", 0.0)), 2),
        "paper": dict(zip(("train_error", "valid_error", "test_error"), PAPER.get(name, (math.nan,) * 3))),
        "history": hist,
    }
    kind = hp.get("pretraining")
    if kind is not None and pretraining_info is not None:
        row["pretraining_info"] = _to_builtin(_pretraining_summary(kind, pretraining_info))
    return row


def _gradient_norms(net, data: Mapping, preset: Preset) -> List[float]:
    """Per-layer weight-gradient norms on a fixed batch: the vanishing-gradient picture."""
    from .. import diagnostics

    gX, gy = data["X_train"][: preset.grad_examples], data["y_train"][: preset.grad_examples]
    return [float(v) for v in diagnostics.gradient_norms(net, gX, gy, "softmax_cross_entropy")]


def train_row(preset, name: str, data: Mapping, *, seed: int = 0, device: str = "cpu", progress: bool = False,
              checkpoints=None, checkpoint_every="epoch", resume: bool = False, comm=None):
    """Trains one row (pretraining, then fine-tuning) and evaluates it.

    ``checkpoints``: a directory for the row's two checkpoint files (None: none);
    resume=True continues from them. Returns ``(row, net, gradient_norms)``: the
    results.json record, the trained net, and the per-layer gradient norms right after
    pretraining (None for rows without pretraining). ``seconds`` in the record counts
    this call only (a resumed row reports the time since it was resumed). comm: train
    data-parallel over MPI ranks (layerwise.distributed; every rank gets the same result)."""
    from .. import nn

    p = _preset(preset)
    hp = hyperparameters(p, name)
    sizes = architecture(p, name, n_in=int(data["X_train"].shape[1]))
    ck = Path(checkpoints) if checkpoints is not None else None
    t0, c0 = time.perf_counter(), time.process_time()
    pre_seconds, info, grads = 0.0, None, None
    kind = hp.get("pretraining")
    if kind is None:
        net = nn.mlp(sizes, init=hp["init"], device=device, seed=seed)
    else:
        net, info = pretrain(kind, sizes, data, hp, seed=seed, device=device, progress=progress,
                             checkpoint=ck / f"{name}-pretrain.ckpt" if ck else None,
                             checkpoint_every=checkpoint_every, resume=resume, comm=comm)
        pre_seconds = time.perf_counter() - t0
        # The diagnostic is not part of training: its time is left out of the row's.
        td, cd = time.perf_counter(), time.process_time()
        grads = _gradient_norms(net, data, p)
        t0 += time.perf_counter() - td
        c0 += time.process_time() - cd
    net, history = finetune(net, data, hp, seed=seed, progress=progress,
                            checkpoint=ck / f"{name}-finetune.ckpt" if ck else None,
                            checkpoint_every=checkpoint_every, resume=resume, comm=comm)
    # seconds: wall time of training (pretraining + fine-tuning). cpu_seconds: CPU time of
    # all our threads over the same span -- with other jobs on the machine wall time is
    # inflated by waiting but this is not, so time estimates should start from it.
    timing = {"seconds": time.perf_counter() - t0, "pretrain_seconds": pre_seconds,
              "cpu_seconds": time.process_time() - c0}
    row = evaluate_row(name, net, data, sizes=sizes, hp=hp, history=history, pretraining_info=info, timing=timing)
    return row, net, grads


def _first_layer_weights(net) -> np.ndarray:
    from .. import nn

    first = nn.linear_layers(net)[0]
    return np.asarray(nn.to_device(first.weight.data, "cpu"), dtype=np.float32)


def _preset(preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    try:
        return PRESETS[preset]
    except (KeyError, TypeError):
        raise ExperimentError(f"--preset {preset}: unknown preset; choose from {', '.join(PRESETS)}") from None


def _row_names(rows) -> List[str]:
    names = list(rows) if rows else list(ROWS)
    unknown = [r for r in names if r not in ROWS]
    if unknown:
        raise ExperimentError(f"--rows: unknown row(s) {', '.join(map(str, unknown))}; choose from {', '.join(ROWS)}")
    return [r for r in ROWS if r in names]  # canonical order, no duplicates


# ---- the output directory -----------------------------------------------------------------------
class _OutDir:
    """--out: results.json (rewritten atomically after every row, ``"complete": false``
    until the end), nets/<row>.safetensors (every trained net, written by layerwise.nn.save) and
    checkpoints/ (the row in progress; removed when the run completes)."""

    def __init__(self, path):
        self.path = Path(path)
        self.results = self.path / "results.json"
        self.nets = self.path / "nets"
        self.checkpoints = self.path / "checkpoints"

    def check_writable(self):
        """Creates --out if needed and proves it writable, before any training."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".layerwise-write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise ExperimentError(f"--out {self.path}: not a writable directory ({e.strerror or e})") from None

    def previous(self) -> Optional[dict]:
        if not self.results.is_file():
            return None
        try:
            return json.loads(self.results.read_text())
        except (OSError, ValueError) as e:
            raise ExperimentError(f"--resume: cannot read {self.results} ({e}); remove it or drop --resume") from None

    def clear(self):
        """A new run: nothing of a previous run may remain looking current."""
        self.results.unlink(missing_ok=True)
        for d in (self.nets, self.checkpoints):
            shutil.rmtree(d, ignore_errors=True)

    def write(self, results: Mapping):
        from ..atomic import write_json_atomic

        write_json_atomic(self.results, _to_builtin(results))

    def net_path(self, name: str) -> Path:
        return self.nets / f"{name}.safetensors"

    def save_net(self, name: str, net):
        from .. import nn

        self.nets.mkdir(exist_ok=True)
        target = self.net_path(name)
        tmp = target.with_name(f".{target.name}.tmp")
        nn.save(net, str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)

    def row_checkpoints(self) -> Path:
        self.checkpoints.mkdir(exist_ok=True)
        return self.checkpoints

    def drop_row_checkpoints(self, name: str):
        for f in self.checkpoints.glob(f"{name}-*.ckpt"):
            f.unlink(missing_ok=True)


def _run_key(p: Preset, names, seed: int, device: str) -> dict:
    """What must match for --resume to continue a previous run's results.json."""
    return _to_builtin({"preset_config": asdict(p), "rows": list(names), "seed": seed, "device": device})


# ---- the experiment ---------------------------------------------------------------------------
def run(
    preset="quick",
    *,
    data=None,
    device: str = "cpu",
    out=None,
    seed: int = 0,
    rows: Optional[Sequence[str]] = None,
    progress: bool = True,
    plots: bool = True,
    threads: Optional[int] = None,
    resume: bool = False,
    checkpoint_every="epoch",
    log: Callable[[str], None] = print,
    comm=None,
) -> dict:
    """Run the experiment; returns the results dict (also written to ``out``/results.json).

    ``preset``: a name in :data:`PRESETS` or a :class:`Preset`. ``data``: the
    MNIST directory (see :func:`load_data`). ``rows``: a subset of :data:`ROWS`
    (default: all five). ``out``: directory for results.json, the trained nets and
    the figures (nothing is written when None); it is checked writable before any
    training. ``threads``: CPU kernel threads (None: the library's default, all cores).
    ``resume``: continue the run stopped in ``out`` (finished rows are kept, the row in
    progress continues from its last checkpoint, in pretraining or fine-tuning); with
    nothing to resume it starts from the beginning. Without ``resume`` a previous run's
    files in ``out`` are removed first. ``checkpoint_every``: batches between
    checkpoints (or "epoch"). Raises ExperimentError for problems the user must fix.
    ``comm``: an mpi4py communicator (or layerwise.distributed.Distributed): every row's
    pretraining and fine-tuning run data-parallel over its ranks, with ``batch_size`` the
    global batch; only rank 0 logs and writes files (launch with ``mpirun -n N``).
    """
    from .. import ops

    if threads is None:
        return _run(preset, data=data, device=device, out=out, seed=seed, rows=rows, progress=progress,
                    plots=plots, resume=resume, checkpoint_every=checkpoint_every, log=log, comm=comm)
    # The thread count is process-wide: restore it, so that a caller's (or a test
    # session's) other work is unaffected.
    before = ops.get_num_threads()
    ops.set_num_threads(threads)
    try:
        return _run(preset, data=data, device=device, out=out, seed=seed, rows=rows, progress=progress,
                    plots=plots, resume=resume, checkpoint_every=checkpoint_every, log=log, comm=comm)
    finally:
        ops.set_num_threads(before)


def _results_doc(p: Preset, mn, data: Mapping, *, device, seed, key, rows, grad_norms, complete, t_start, c_start):
    from .. import ops

    return {
        "experiment": "bengio2006",
        "complete": complete,
        "preset": p.name,
        "preset_config": _to_builtin(asdict(p)),
        "run_key": key,
        "dataset": {"name": "mnist", "source": mn.source, "n_train": int(len(data["y_train"])),
                    "n_valid": int(len(data["y_valid"])), "n_test": int(len(data["y_test"]))},
        "device": device,
        "seed": seed,
        "threads": ops.get_num_threads() if device == "cpu" else None,
        "rows": list(rows),
        "gradient_norms": dict(grad_norms),
        "gradient_norms_examples": int(min(p.grad_examples, len(data["y_train"]))),
        "paper": {k: list(v) for k, v in PAPER.items()},
        "total_seconds": round(time.perf_counter() - t_start, 2),
        "total_cpu_seconds": round(time.process_time() - c_start, 2),
    }


def _previous_run(outdir: Optional[_OutDir], resume: bool, key: dict) -> Optional[dict]:
    """Creates --out and checks it writable; with resume, the previous run's results.json
    (None if there is none), which must be of the same run."""
    if outdir is None:
        return None
    outdir.check_writable()
    prev = outdir.previous() if resume else None
    if prev is not None and prev.get("run_key") != key:
        raise ExperimentError(f"--resume: {outdir.results} is from another run (preset {prev.get('preset')!r}, "
                              f"seed {prev.get('seed')}, rows "
                              f"{','.join(r['name'] for r in prev.get('rows', [])) or '-'}); "
                              f"use another --out, or drop --resume to start over")
    return prev


def _run(preset, *, data, device, out, seed, rows, progress, plots, resume, checkpoint_every, log, comm=None) -> dict:
    if comm is None:
        return _run_rows(preset, data=data, device=device, out=out, seed=seed, rows=rows, progress=progress,
                         plots=plots, resume=resume, checkpoint_every=checkpoint_every, log=log)
    # ---- distributed: rank 0 checks --out and reads what a resumed run kept, every rank learns
    # the outcome (so a user error is the same one-line error everywhere), then trains together.
    from .. import distributed

    dist = distributed.wrap(comm)
    check = None
    if dist.is_root and out is not None:
        try:
            _previous_run(_OutDir(out), resume, _run_key(_preset(preset), _row_names(rows), seed, device))
        except ExperimentError as e:
            check = str(e)
    check = dist.broadcast_object(check)
    if check is not None:
        if not dist.is_root:
            raise SystemExit(2)  # the same exit status everywhere, but one error line (rank 0's)
        raise ExperimentError(check)
    with dist.guard():  # a failure on one rank aborts the job instead of hanging the others
        return _run_rows(preset, data=data, device=device, out=out if dist.is_root else None, seed=seed, rows=rows,
                         progress=progress if dist.is_root else False, plots=plots, resume=resume,
                         checkpoint_every=checkpoint_every, log=log if dist.is_root else (lambda _: None),
                         dist=dist, shared_out=out)


def _run_rows(preset, *, data, device, out, seed, rows, progress, plots, resume, checkpoint_every, log, dist=None,
              shared_out=None) -> dict:
    """The experiment in one process, or on one rank of ``dist`` (``out`` is None on the ranks
    that do not write; ``shared_out`` is rank 0's --out, for the checkpoint paths)."""
    from .. import checkpoint as ckpt
    from .. import nn
    from ..checks import integer

    p = _preset(preset)
    names = _row_names(rows)
    try:
        seed = integer("seed", seed, low=0)
        checkpoint_every = ckpt.parse_every(checkpoint_every)
    except ValueError as e:
        raise ExperimentError(f"--{e}".replace("_", "-", 1)) from None
    outdir = _OutDir(out) if out is not None else None
    key = _run_key(p, names, seed, device)
    prev = _previous_run(outdir, resume, key)  # every check that needs no training comes first
    t_start, c_start = time.perf_counter(), time.process_time()
    mn, data_ = load_data(p, data, device=device, progress=progress)
    # Rows by name: those kept from the previous run, then each one as it finishes.
    finished: Dict[str, dict] = {}
    grad_norms: Dict[str, List[float]] = {}
    if outdir is not None and prev is not None:
        finished = {r["name"]: r for r in prev.get("rows", []) if outdir.net_path(r["name"]).is_file()}
        grad_norms = dict(prev.get("gradient_norms", {}))
        log(f"[bengio2006] resuming in {outdir.path}: {len(finished)} finished row(s) kept")
    elif outdir is not None:
        outdir.clear()
    if dist is not None:  # distributed: every rank skips the rows rank 0 found finished
        finished = dist.broadcast_object(finished)
    log(f"[bengio2006] preset {p.name!r}: {p.description}")
    log(f"[bengio2006] MNIST from {mn.source}: train {len(data_['y_train'])}, valid {len(data_['y_valid'])}, "
        f"test {len(data_['y_test'])}; device {device}")

    init_net = nn.mlp(architecture(p, "deep_no_pretraining"), init=p.init, device=device, seed=seed)
    grad_norms["deep net, random init"] = _gradient_norms(init_net, data_, p)
    del init_net

    def doc(complete):
        rows_ = [finished[n] for n in names if n in finished]
        return _results_doc(p, mn, data_, device=device, seed=seed, key=key, rows=rows_,
                            grad_norms=grad_norms, complete=complete, t_start=t_start, c_start=c_start)

    if outdir is not None:  # replaces a previous run's file at once; keeps the finished rows when resuming
        outdir.write(doc(False))
    filters: Dict[str, np.ndarray] = {}
    for name in names:
        if name in finished:
            if outdir is not None:  # (distributed: the other ranks draw no figures)
                filters[name] = _first_layer_weights(nn.load(str(outdir.net_path(name))))
            log(f"[bengio2006] {name}: finished in the previous run (test {finished[name]['test_error']:.2f}%)")
            continue
        log(f"[bengio2006] {name}: {'-'.join(map(str, architecture(p, name)))}")
        checkpoints = outdir.row_checkpoints() if outdir is not None else None
        if dist is not None and shared_out is not None:  # rank 0 writes them; the others need the paths
            checkpoints = _OutDir(shared_out).checkpoints
        row, net, grads = train_row(p, name, data_, seed=seed, device=device, progress=progress,
                                    checkpoints=checkpoints, checkpoint_every=checkpoint_every, resume=resume,
                                    comm=dist)
        if grads is not None:
            grad_norms[f"after {row['hyperparameters']['pretraining']} pretraining"] = grads
        finished[name] = row
        filters[name] = _first_layer_weights(net)
        if outdir is not None:  # (distributed: rank 0 only)
            outdir.save_net(name, net)
            outdir.write(doc(False))
            outdir.drop_row_checkpoints(name)
        log(f"[bengio2006] {name}: train {row['train_error']:.2f}%  valid {row['valid_error']:.2f}%  "
            f"test {row['test_error']:.2f}%  ({row['seconds']:.1f}s)")

    results = doc(True)
    results_rows = results["rows"]
    log("")
    log(format_table(results_rows))
    log(f"total {results['total_seconds']:.1f}s wall, {results['total_cpu_seconds']:.1f}s CPU")
    if outdir is not None:
        results["figures"] = _write_figures(results, outdir.path, filters, mn.image_shape, plots, log)
        outdir.write(results)
        shutil.rmtree(outdir.checkpoints, ignore_errors=True)
        log(f"[bengio2006] wrote {outdir.results}")
    return results


def _write_figures(results, out_dir: Path, filters, image_shape, plots: bool, log) -> dict:
    from . import bengio2006_plots as plotting

    if not plots:
        return {}
    if not plotting.available():
        log("[bengio2006] matplotlib not installed: plots skipped (pip install 'layerwise[plot]')")
        return {}
    written = plotting.save_all(results, out_dir, filters=filters, paper=PAPER, image_shape=image_shape)
    figures = {k: os.path.basename(v) for k, v in written.items()}  # relative to --out
    log(f"[bengio2006] figures: {', '.join(sorted(figures.values()))}")
    return figures


# ---- the command line ---------------------------------------------------------------------------
def _rows_arg(value: str):
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in ROWS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown row(s) {', '.join(bad) or repr(value)}; choose from {', '.join(ROWS)}")
    return names


def _every_arg(value: str):
    return "epoch" if value == "epoch" else positive_int(value)


def configure_parser(b: argparse.ArgumentParser) -> None:
    """The options of ``layerwise bengio2006``."""
    b.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="size of the run (default: quick)")
    b.add_argument("--data", metavar="DIR", default=None,
                   help="MNIST directory, must exist (default: $LAYERWISE_DATA, then ~/.cache/layerwise/mnist, "
                        "then download)")
    b.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    b.add_argument("--out", metavar="DIR", default=None,
                   help="where to write results.json, the trained nets, checkpoints and the figures "
                        "(default: results/bengio2006-PRESET)")
    b.add_argument("--seed", type=non_negative_int, default=0)
    b.add_argument("--rows", type=_rows_arg, default=None, metavar="NAME,...", help="train only these rows")
    b.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="CPU kernel threads (default: all cores; on a machine busy with other jobs, "
                        "fewer threads than cores can be faster)")
    b.add_argument("--resume", action="store_true",
                   help="continue the run stopped in --out: finished rows are kept, the row in progress "
                        "continues from its last checkpoint (nothing to resume: start from the beginning)")
    b.add_argument("--checkpoint-every", type=_every_arg, default="epoch", metavar="N|epoch",
                   help="batches between checkpoints (default: at the end of every epoch)")
    b.add_argument("--no-progress", action="store_true",
                   help="no progress bars (by default they are drawn when stderr is a terminal)")
    b.add_argument("--no-plots", action="store_true", help="do not draw the figures")
    b.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI ranks (mpirun -n N layerwise bengio2006 --distributed; "
                        "needs mpi4py: pip install 'layerwise[mpi]'); rank 0 prints and writes")


def main(args: argparse.Namespace) -> int:
    """``layerwise bengio2006``: runs :func:`run` from parsed arguments."""
    out = args.out if args.out is not None else f"results/bengio2006-{args.preset}"
    comm = None
    if getattr(args, "distributed", False):
        from .. import distributed

        if not distributed.mpi_available():
            raise ExperimentError("--distributed: needs mpi4py and an MPI library (pip install 'layerwise[mpi]'; "
                                  "apt-get install openmpi-bin libopenmpi-dev)")
        comm = distributed.world()
    run(args.preset, data=args.data, device=args.device, out=out, seed=args.seed, rows=args.rows,
        progress=False if args.no_progress else None, plots=not args.no_plots, threads=args.threads,
        resume=args.resume, checkpoint_every=args.checkpoint_every, comm=comm)
    return 0


EXPERIMENT = register(Experiment(
    name="bengio2006",
    help="Bengio et al. (2006) on MNIST: five training strategies vs the paper",
    configure=configure_parser,
    main=main,
    description=(__doc__ or "").split("\n\n")[0],
    epilog="presets:\n" + "\n".join(f"  {k:<7} {v.description}" for k, v in PRESETS.items())
    + "\nrows: " + ", ".join(ROWS),
))
