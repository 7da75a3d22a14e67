"""layerwise.experiments.bengio2006_plots -- the figures of the Bengio et al. (2006) experiment.

Matplotlib is optional (``pip install layerwise[plot]``): :func:`available`
says whether it can be used, and every plotting function raises
``ImportError`` without it. The non-interactive ``Agg`` backend is selected
before pyplot is imported, so plotting works on headless machines and never
opens windows. :func:`tile_images` is pure NumPy.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "available",
    "tile_images",
    "bar_chart",
    "learning_curves",
    "filter_grid",
    "gradient_norm_plot",
]

# Display names in the slide's wording, in the slide's order.
LABELS = {
    "dbn": "Deep net, DBN (RBM)\npretraining",
    "deep_autoencoder_pretraining": "Deep net, autoencoder\npretraining",
    "deep_supervised_pretraining": "Deep net, supervised\nlayer-wise pretraining",
    "deep_no_pretraining": "Deep net,\nno pretraining",
    "shallow": "Shallow net,\nno pretraining",
}
COLORS = {
    "dbn": "#1b9e77",
    "deep_autoencoder_pretraining": "#7570b3",
    "deep_supervised_pretraining": "#e6ab02",
    "deep_no_pretraining": "#d95f02",
    "shallow": "#666666",
}


_FLOOR = 0.01  # percent: where a zero error is drawn on log axes


def _plt():
    """pyplot on the Agg backend (ImportError when matplotlib is missing)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def available() -> bool:
    """Whether matplotlib can be imported (plots are skipped otherwise)."""
    try:
        _plt()
    except Exception:  # ImportError, or a broken install: treat both as "no plots"
        return False
    return True


def _label(name: str) -> str:
    return LABELS.get(name, name)


def tile_images(
    weights: np.ndarray,
    image_shape: Tuple[int, int] = (28, 28),
    *,
    n: Optional[int] = None,
    cols: Optional[int] = None,
    pad: int = 1,
) -> np.ndarray:
    """Arrange rows of ``weights`` (units, h*w) as an image mosaic in [0, 1].

    Each tile is scaled by its own min/max: the sign pattern of a filter
    matters, not its magnitude, which differs by orders between a random
    init and a pretrained layer. Gaps between tiles are 0.5 (mid grey) so
    neither extreme is mistaken for the border. Returns a 2-D float array.
    """
    w = np.asarray(weights, dtype=np.float64)
    h, wd = image_shape
    if w.ndim != 2 or w.shape[1] != h * wd:
        raise ValueError(f"weights: expected shape (units, {h * wd}), got {w.shape}")
    if n is not None:
        w = w[:n]
    count = w.shape[0]
    cols = cols or max(1, int(math.ceil(math.sqrt(count))))
    rows = max(1, int(math.ceil(count / cols)))
    out = np.full((rows * (h + pad) + pad, cols * (wd + pad) + pad), 0.5)
    for i in range(count):
        tile = w[i].reshape(h, wd)
        lo, hi = tile.min(), tile.max()
        tile = (tile - lo) / (hi - lo) if hi > lo else np.full_like(tile, 0.5)
        r, c = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (wd + pad): pad + c * (wd + pad) + wd] = tile
    return out


def bar_chart(rows: Sequence[Mapping], paper: Mapping[str, Sequence[float]], path, *, title: str = "") -> str:
    """Test error (%) per strategy, the paper's bar beside ours (the slide's bar chart)."""
    plt = _plt()
    names = [r["name"] for r in rows]
    ours = [r["test_error"] for r in rows]
    theirs = [paper[n][2] if n in paper else np.nan for n in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.9 * len(names) + 2, 4.6))
    b1 = ax.bar(x - 0.2, theirs, 0.4, label="Bengio et al. 2006 (full MNIST)", color="white", edgecolor="black",
                hatch="//")
    b2 = ax.bar(x + 0.2, ours, 0.4, label="layerwise (this run)", color=[COLORS.get(n, "C0") for n in names],
                edgecolor="black")
    for bars in (b1, b2):
        for b in bars:
            v = b.get_height()
            if np.isfinite(v):
                ax.annotate(f"{v:.2f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8,
                            xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x)
    ax.set_xticklabels([_label(n) for n in names], fontsize=8)
    ax.set_ylabel("test classification error (%)")
    ax.set_title(title or "MNIST test error: greedy layer-wise pretraining vs none")
    ax.legend(fontsize=8)
    ax.set_ylim(0, max([v for v in ours + theirs if np.isfinite(v)] + [1.0]) * 1.2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def learning_curves(rows: Sequence[Mapping], path) -> str:
    """Validation error (solid) and training error (dashed) per fine-tuning epoch, one line per strategy."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for r in rows:
        h = r.get("history") or {}
        valid = h.get("valid_error") or []
        train = h.get("train_error") or []
        color = COLORS.get(r["name"], None)
        label = _label(r["name"]).replace("\n", " ")
        if valid:
            ax.plot(np.arange(1, len(valid) + 1), np.maximum(valid, _FLOOR), "-", color=color, label=label + " (valid)")
        if train:
            # 0% training error has no place on a log axis: draw it at the floor
            ax.plot(np.arange(1, len(train) + 1), np.maximum(train, _FLOOR), "--", color=color, alpha=0.6)
        best = h.get("best_epoch")  # 0-based
        if valid and best is not None and 0 <= best < len(valid):
            ax.plot([best + 1], [max(valid[best], _FLOOR)], "o", color=color)
    ax.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("fine-tuning epoch")
    ax.set_ylabel("classification error (%)")
    ax.set_title(f"Learning curves (solid: validation, dashed: training, dot: selected epoch; 0% drawn at {_FLOOR}%)",
                 fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def filter_grid(filters: Mapping[str, np.ndarray], path, *, image_shape=(28, 28), n: int = 64) -> str:
    """First-layer weights (units, 784) of each strategy as a mosaic of 28x28 tiles, one panel per strategy."""
    plt = _plt()
    names = list(filters)
    cols = min(3, len(names))
    rows = int(math.ceil(len(names) / cols))
    # constrained layout keeps the two-line panel titles clear of the row above
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.7 * rows + 0.4), squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        ax.imshow(tile_images(filters[name], image_shape, n=n), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(_label(name), fontsize=9)
    fig.suptitle(f"First-layer filters after training (first {n} units, each scaled to its own range)", fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def gradient_norm_plot(norms: Mapping[str, Sequence[float]], path, *, title: str = "") -> str:
    """Per-layer gradient norms (layer 1 = nearest the input), one line per network state, log scale."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    for i, (label, values) in enumerate(norms.items()):
        values = list(values)
        ax.plot(np.arange(1, len(values) + 1), values, "o-", label=label, color=f"C{i}")
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = input side)")
    ax.set_ylabel("||dLoss/dW|| (Frobenius)")
    n_layers = max((len(v) for v in norms.values()), default=1)
    ax.set_xticks(np.arange(1, n_layers + 1))
    ax.set_title(title or "Gradient norm per layer: random init vs after greedy pretraining", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def save_all(results: Mapping, out_dir, *, filters: Optional[Dict[str, np.ndarray]] = None,
             paper: Optional[Mapping] = None, image_shape=(28, 28)) -> Dict[str, str]:
    """Write every figure of a results dict into ``out_dir``; returns {figure: path}.

    ``results`` is the experiment's results.json content; ``filters`` the
    first-layer weights by row name (not in results.json: too large).
    """
    from pathlib import Path

    out = Path(out_dir)
    rows = results["rows"]
    written = {}
    if paper is not None:
        written["bars"] = bar_chart(rows, paper, out / "bars.png",
                                    title=f"MNIST test error, preset '{results.get('preset', '')}'")
    written["learning_curves"] = learning_curves(rows, out / "learning_curves.png")
    if filters:
        written["filters"] = filter_grid(filters, out / "filters.png", image_shape=image_shape)
    norms = results.get("gradient_norms")
    if norms:
        written["gradient_norms"] = gradient_norm_plot(norms, out / "gradient_norms.png")
    return written
