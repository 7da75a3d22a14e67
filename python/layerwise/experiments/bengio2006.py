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
``quick`` (a few minutes on two CPU cores: a 10k-image subset and smaller
nets, still showing the qualitative result), ``full`` (the paper's setup).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["PAPER", "ROWS", "Preset", "PRESETS", "run", "format_table", "hyperparameters"]

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
@dataclass(frozen=True)
class Preset:
    """One configuration of the experiment: data sizes, architectures, and the
    hyperparameters of every row (defaults in the fields, per-row exceptions in
    ``overrides``). Everything here is recorded in results.json."""

    name: str
    description: str
    n_train: int  # first n_train images of the 50k training split
    n_valid: int  # first n_valid images of the 10k validation split
    n_test: Optional[int]  # None: the whole 10k test set
    hidden: Tuple[int, ...]  # hidden layer sizes of the deep nets
    shallow_hidden: int  # hidden layer size of the shallow net
    # fine-tuning (backprop on the whole net, softmax cross-entropy)
    epochs: int  # maximum fine-tuning epochs
    patience: int  # early stopping: epochs without a new best validation error
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float = 0.0
    # greedy pretraining, per layer
    pretrain_epochs: int = 5
    pretrain_lr: float = 0.1  # supervised and autoencoder layers
    rbm_lr: float = 0.05
    rbm_k: int = 1
    pretrain_batch_size: int = 20
    pretrain_momentum: float = 0.0
    init: str = "uniform"
    grad_examples: int = 1000  # examples used to measure per-layer gradient norms
    overrides: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    notes: str = ""


PRESETS: Dict[str, Preset] = {
    # Seconds: a tiny subset and tiny nets. Only checks that everything runs
    # end to end and learns something (tests assert far-below-chance error).
    "smoke": Preset(
        name="smoke",
        description="end-to-end check in seconds: 1000 training images, 64-unit layers, 3 epochs",
        n_train=1000, n_valid=500, n_test=1000,
        hidden=(64, 64, 64), shallow_hidden=64,
        epochs=3, patience=3, batch_size=20, lr=0.1, momentum=0.9,
        pretrain_epochs=1, pretrain_lr=0.1, rbm_lr=0.05, pretrain_batch_size=20,
        grad_examples=200,
    ),
    # A few minutes on two CPU cores: 10k training images, 3 x 256 hidden units.
    # Small enough data that a randomly initialised deep sigmoid net is visibly
    # worse than the pretrained ones within the epoch budget.
    "quick": Preset(
        name="quick",
        description="10k training images, 3 x 256 sigmoid units, <= 5 minutes on 2 CPU cores",
        n_train=10000, n_valid=5000, n_test=None,
        hidden=(256, 256, 256), shallow_hidden=256,
        epochs=10, patience=4, batch_size=50, lr=0.1, momentum=0.9,
        pretrain_epochs=2, pretrain_lr=0.1, rbm_lr=0.05, pretrain_batch_size=20,
    ),
    # The paper's setup: all 50k training images, three hidden layers of 1000.
    "full": Preset(
        name="full",
        description="the paper's setup: 50k/10k/10k, 784-1000-1000-1000-10 (shallow: 784-1000-10)",
        n_train=50000, n_valid=10000, n_test=None,
        hidden=(1000, 1000, 1000), shallow_hidden=1000,
        epochs=60, patience=10, batch_size=50, lr=0.1, momentum=0.9,
        pretrain_epochs=10, pretrain_lr=0.1, rbm_lr=0.05, pretrain_batch_size=20,
    ),
}


def hyperparameters(preset: Preset, row: str) -> dict:
    """The hyperparameters of one row (preset defaults + the row's overrides), as recorded in results.json."""
    hp = {
        "activation": "sigmoid",
        "init": preset.init,
        "loss": "softmax_cross_entropy",
        "optimizer": "sgd",
        "lr": preset.lr,
        "momentum": preset.momentum,
        "weight_decay": preset.weight_decay,
        "batch_size": preset.batch_size,
        "max_epochs": preset.epochs,
        "patience": preset.patience,
        "model_selection": "early stopping on validation error",
    }
    kind = _PRETRAINING.get(row)
    if kind is not None:
        hp["pretraining"] = kind
        hp["pretrain_epochs_per_layer"] = preset.pretrain_epochs
        hp["pretrain_batch_size"] = preset.pretrain_batch_size
        hp["pretrain_momentum"] = preset.pretrain_momentum
        if kind == "rbm":
            hp["pretrain_lr"] = preset.rbm_lr
            hp["cd_k"] = preset.rbm_k
        else:
            hp["pretrain_lr"] = preset.pretrain_lr
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


# ---- the experiment ---------------------------------------------------------------
def _load_data(preset: Preset, data, device: str, progress: bool):
    from .. import datasets, nn

    d = datasets.mnist(data, progress=progress)
    n_test = preset.n_test if preset.n_test is not None else d.X_test.shape[0]
    # Subsets take the first images of each split: deterministic, and MNIST's
    # order is not sorted by class, so they stay roughly class-balanced.
    arrays = {
        "X_train": d.X_train[: preset.n_train], "y_train": d.y_train[: preset.n_train],
        "X_valid": d.X_valid[: preset.n_valid], "y_valid": d.y_valid[: preset.n_valid],
        "X_test": d.X_test[:n_test], "y_test": d.y_test[:n_test],
    }
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    if device != "cpu":
        arrays = {k: nn.to_device(v, device) for k, v in arrays.items()}
    return d, arrays


def _first_layer_weights(net) -> np.ndarray:
    from .. import nn

    first = nn.linear_layers(net)[0]
    return np.asarray(nn.to_device(first.weight.data, "cpu"), dtype=np.float32)


def _pretrain(kind: str, sizes, X, y, hp: dict, *, seed: int, device: str, progress: bool):
    """Greedy layer-wise pretraining of the hidden layers; returns (net ready for fine-tuning, info)."""
    from .. import pretrain

    common = dict(epochs=hp["pretrain_epochs_per_layer"], lr=hp["pretrain_lr"], batch_size=hp["pretrain_batch_size"],
                  momentum=hp["pretrain_momentum"], seed=seed, device=device, progress=progress)
    if kind == "supervised":
        return pretrain.greedy_supervised(sizes, X, y, **common)
    if kind == "autoencoder":
        return pretrain.greedy_autoencoder(sizes, X, **common)
    if kind == "rbm":
        return pretrain.greedy_rbm(sizes, X, k=hp["cd_k"], **common)
    raise ValueError(f"unknown pretraining {kind!r}")


def _fit(net, data: dict, hp: dict, *, seed: int, progress: bool):
    from .. import train

    return train.fit(
        net, data["X_train"], data["y_train"],
        loss=hp["loss"], lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"],
        epochs=hp["max_epochs"], batch_size=hp["batch_size"],
        X_val=data["X_valid"], y_val=data["y_valid"], patience=hp["patience"],
        seed=seed, progress=progress,
    )


def _history_dict(history) -> dict:
    h = history.to_dict() if hasattr(history, "to_dict") else dict(history)
    return _to_builtin(h)


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
    log: Callable[[str], None] = print,
) -> dict:
    """Run the experiment; returns the results dict (also written to ``out``/results.json).

    ``preset``: a name in :data:`PRESETS` or a :class:`Preset`. ``data``: the
    MNIST directory (see :func:`layerwise.datasets.mnist` for the lookup
    order). ``rows``: a subset of :data:`ROWS` (default: all five). ``out``:
    directory for results.json and the figures (nothing is written when None).
    """
    from .. import diagnostics, nn, plots as plotting, train

    p = PRESETS[preset] if isinstance(preset, str) else preset
    names = list(rows) if rows else list(ROWS)
    unknown = [r for r in names if r not in ROWS]
    if unknown:
        raise ValueError(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    names = [r for r in ROWS if r in names]  # canonical order, no duplicates
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)

    t_start = time.perf_counter()
    mn, data_ = _load_data(p, data, device, progress)
    log(f"[bengio2006] preset {p.name!r}: {p.description}")
    log(f"[bengio2006] MNIST from {mn.source}: train {len(data_['y_train'])}, valid {len(data_['y_valid'])}, "
        f"test {len(data_['y_test'])}; device {device}")

    # Gradient norms per layer on a fixed batch: the vanishing-gradient picture.
    gX = data_["X_train"][: p.grad_examples]
    gy = data_["y_train"][: p.grad_examples]
    grad_norms: Dict[str, List[float]] = {}
    deep_sizes = architecture(p, "deep_no_pretraining")
    init_net = nn.mlp(deep_sizes, init=p.init, device=device, seed=seed)
    grad_norms["deep net, random init"] = [float(v) for v in diagnostics.gradient_norms(init_net, gX, gy, "softmax_cross_entropy")]
    del init_net

    results_rows = []
    filters: Dict[str, np.ndarray] = {}
    for name in names:
        hp = hyperparameters(p, name)
        sizes = architecture(p, name)
        log(f"[bengio2006] {name}: {'-'.join(map(str, sizes))}")
        t0 = time.perf_counter()
        pre_seconds = 0.0
        info = None
        kind = hp.get("pretraining")
        if kind is None:
            net = nn.mlp(sizes, init=hp["init"], device=device, seed=seed)
        else:
            net, info = _pretrain(kind, sizes, data_["X_train"], data_["y_train"], hp, seed=seed, device=device,
                                  progress=progress)
            pre_seconds = time.perf_counter() - t0
            grad_norms[f"after {kind} pretraining"] = [
                float(v) for v in diagnostics.gradient_norms(net, gX, gy, "softmax_cross_entropy")
            ]
        history = _fit(net, data_, hp, seed=seed, progress=progress)
        seconds = time.perf_counter() - t0
        errs = {k: float(train.error_rate(net, data_[f"X_{k}"], data_[f"y_{k}"])) for k in ("train", "valid", "test")}
        hist = _history_dict(history)
        row = {
            "name": name,
            "architecture": sizes,
            "hyperparameters": hp,
            "epochs": int(len(hist.get("valid_error") or hist.get("train_loss") or [])),
            "best_epoch": hist.get("best_epoch"),
            "train_error": errs["train"],
            "valid_error": errs["valid"],
            "test_error": errs["test"],
            "seconds": round(seconds, 2),
            "pretrain_seconds": round(pre_seconds, 2),
            "paper": dict(zip(("train_error", "valid_error", "test_error"), PAPER[name])),
            "history": hist,
        }
        if info is not None:
            row["pretraining_info"] = _to_builtin(_summarise_info(info))
        results_rows.append(row)
        filters[name] = _first_layer_weights(net)
        log(f"[bengio2006] {name}: train {errs['train']:.2f}%  valid {errs['valid']:.2f}%  "
            f"test {errs['test']:.2f}%  ({seconds:.1f}s)")

    results = {
        "experiment": "bengio2006",
        "preset": p.name,
        "preset_config": _to_builtin(asdict(p)),
        "dataset": {"name": "mnist", "source": mn.source, "n_train": int(len(data_["y_train"])),
                    "n_valid": int(len(data_["y_valid"])), "n_test": int(len(data_["y_test"]))},
        "device": device,
        "seed": seed,
        "rows": results_rows,
        "gradient_norms": grad_norms,
        "gradient_norms_examples": int(len(gy)),
        "paper": {k: list(v) for k, v in PAPER.items()},
        "total_seconds": round(time.perf_counter() - t_start, 2),
    }
    log("")
    log(format_table(results_rows))
    log(f"total {results['total_seconds']:.1f}s")

    if out_dir is not None:
        results["figures"] = {}
        if plots and plotting.available():
            results["figures"] = plotting.save_all(results, out_dir, filters=filters, paper=PAPER,
                                                   image_shape=mn.image_shape)
            log(f"[bengio2006] figures: {', '.join(sorted(os.path.basename(v) for v in results['figures'].values()))}")
        elif plots:
            log("[bengio2006] matplotlib not installed: plots skipped (pip install 'layerwise[plot]')")
        with open(out_dir / "results.json", "w") as f:
            json.dump(_to_builtin(results), f, indent=1)
        log(f"[bengio2006] wrote {out_dir / 'results.json'}")
    return results


def _summarise_info(info):
    """The pretraining info without bulky arrays (per-layer losses stay)."""
    if isinstance(info, dict):
        return {k: _summarise_info(v) for k, v in info.items() if not _is_bulky(v)}
    if isinstance(info, (list, tuple)):
        return [_summarise_info(v) for v in info if not _is_bulky(v)]
    return info


def _is_bulky(v) -> bool:
    return hasattr(v, "shape") and getattr(v, "size", 0) > 64
