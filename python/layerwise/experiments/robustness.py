"""Robustness of the Bengio et al. (2006) nets: adversarial examples (FGSM), fooling
images, adversarial training, and an RBF network -- the lecture's warning that a
trained net is "fooled by a little distortion" with ">99.6 % confidence in the
wrong answer", measured.

``layerwise robustness`` either loads the nets a ``layerwise bengio2006 --out DIR``
run saved (``--nets DIR``: every *.safetensors / *.npz there, named by file stem)
or trains the five rows itself with a bengio2006 ``--preset``. It then adds

    deep_adversarial   the deep architecture trained on alpha J(x) + (1-alpha) J(x + eps sign(dJ/dx))
                       (Goodfellow, Shlens & Szegedy 2015: eps 0.25, alpha 0.5)
    rbf_network        Gaussian RBF units (k-means centers, widths from the cluster spread)
                       + a linear softmax layer solved by least squares (the classic two-stage
                       RBF training), then optionally ``--rbf-epochs`` of end-to-end SGD
                       (needs scikit-learn)

and reports, for every net, the FGSM test error, mean confidence on the wrong answers
and mean L-inf / L2 distortion at eps 0, 0.02, 0.05, 0.1, 0.15, 0.25 (pixels in [0, 1]),
plus fooling images (noise and real digits of other classes driven to >= 99.6 %
confidence). Outputs in ``--out``: results.json, adversarial_error.png,
adversarial_digits.png, fooling_images.png (all written atomically).

Anchors (Goodfellow et al. 2015, eps 0.25 on MNIST): a shallow softmax classifier has
99.9 % error at 79.3 % mean confidence; a maxout net 89.4 % at 97.6 %; adversarial
training of maxout + dropout took clean error 0.94 % -> 0.84 % and adversarial error
89.4 % -> 17.9 %.
"""
from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np

from ..atomic import write_atomic, write_json_atomic
from .registry import Experiment, ExperimentError, register

__all__ = ["EPS", "PAPER", "add_arguments", "run", "experiment", "format_table"]

EPS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.25)
PAPER = {
    "shallow softmax (eps 0.25)": {"error": 99.9, "mean_confidence_wrong": 0.793},
    "maxout (eps 0.25)": {"error": 89.4, "mean_confidence_wrong": 0.976},
    "maxout + dropout, adversarially trained": {"clean_error": 0.84, "adversarial_error": 17.9},
}
FOOL_CONFIDENCE = 0.996
FOOL_STEPS = 1000
# RBF units per preset (LeCun's MNIST table: 1000 RBF units, 3.6 % test error). With the
# least-squares readout the 1000-unit row costs about what 300 units with 10 SGD epochs did.
RBF_UNITS = {"smoke": 20, "quick": 1000, "full": 1000}
# End-to-end SGD epochs after the least-squares readout: 0, because on MNIST every rate tried
# (0.1 to 0.0005, momentum 0.9) raised the validation error of the solved readout (README).
RBF_EPOCHS = 0


# A problem with the command's arguments or inputs: one line, no traceback.
UserError = ExperimentError


# ---- command line -------------------------------------------------------------------------
def add_arguments(parser) -> None:
    """The options of ``layerwise robustness``."""
    from . import bengio2006

    parser.add_argument("--nets", metavar="DIR", default=None,
                        help="load the nets saved by `layerwise bengio2006 --out DIR` (every *.safetensors, *.npz) "
                             "instead of training them")
    parser.add_argument("--preset", choices=sorted(bengio2006.PRESETS), default="quick",
                        help="bengio2006 preset: data sizes and, without --nets, how the rows are trained "
                             "(default: quick)")
    parser.add_argument("--data", metavar="DIR", default=None, help="MNIST directory (default: $LAYERWISE_DATA, ...)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where to write results.json and the figures (default: results/robustness-PRESET)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", default=None, metavar="NAME,...",
                        help="train only these bengio2006 rows (without --nets)")
    parser.add_argument("--adv-eps", type=float, default=0.25, help="eps of adversarial training (default 0.25)")
    parser.add_argument("--adv-alpha", type=float, default=0.5, help="alpha of adversarial training (default 0.5)")
    parser.add_argument("--rbf-units", type=int, default=None, metavar="N",
                        help="RBF units of the RBF network row (default: by preset; 0 = no RBF row)")
    parser.add_argument("--rbf-epochs", type=int, default=RBF_EPOCHS, metavar="N",
                        help="end-to-end SGD epochs of the RBF network after its least-squares readout "
                             f"(default {RBF_EPOCHS})")
    parser.add_argument("--no-adversarial-training", action="store_true", help="skip the deep_adversarial row")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="CPU kernel threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the figures")


def run(args) -> int:
    """Runs ``layerwise robustness`` from parsed arguments; returns the exit status."""
    import sys

    from ..datasets import DatasetNotFoundError

    rows = [r.strip() for r in args.rows.split(",") if r.strip()] if args.rows else None
    out = args.out if args.out is not None else f"results/robustness-{args.preset}"
    try:
        experiment(args.preset, nets=args.nets, data=args.data, device=args.device, out=out, seed=args.seed,
                   rows=rows, adv_eps=args.adv_eps, adv_alpha=args.adv_alpha, rbf_units=args.rbf_units,
                   rbf_epochs=args.rbf_epochs,
                   adversarial_training=not args.no_adversarial_training, threads=args.threads,
                   progress=False if args.no_progress else None, plots=not args.no_plots)
    except (UserError, DatasetNotFoundError) as e:
        print(f"layerwise robustness: error: {e}", file=sys.stderr)
        return 2
    return 0


# ---- output -----------------------------------------------------------------------------------
def _save_figure(fig, path: Path) -> str:
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    return str(path)


# ---- nets -------------------------------------------------------------------------------------
def _net_files(directory) -> List[Path]:
    d = Path(directory)
    if not d.is_dir():
        raise UserError(f"--nets: {d} is not a directory")
    if (d / "nets").is_dir():  # the --out directory of a bengio2006 run: its nets are in nets/
        d = d / "nets"
    files = sorted(p for p in d.iterdir() if p.suffix in (".safetensors", ".npz") and p.is_file())
    if not files:
        raise UserError(f"--nets: no *.safetensors or *.npz files in {d}")
    return files


def _load_nets(files, device) -> Dict[str, object]:
    from .. import nn

    nets = {}
    for f in files:
        if f.stem in nets:
            continue  # the same net saved in both formats
        try:
            nets[f.stem] = nn.load(str(f), device=device)
        except (ValueError, KeyError, OSError) as e:
            raise UserError(f"--nets: cannot load {f}: {e}") from None
    return nets


def _train_rows(preset, data, rows, *, seed, device, progress, log) -> Dict[str, object]:
    from .. import nn
    from . import bengio2006 as b

    names = rows or list(b.ROWS)
    unknown = [r for r in names if r not in b.ROWS]
    if unknown:
        raise UserError(f"--rows: unknown row(s) {', '.join(unknown)}; choose from {', '.join(b.ROWS)}")
    nets = {}
    for name in [r for r in b.ROWS if r in names]:
        log(f"[robustness] training {name}: {'-'.join(map(str, b.architecture(preset, name)))}")
        _, nets[name], _ = b.train_row(preset, name, data, seed=seed, device=device, progress=progress)
    return nets


def _adversarial_row(preset, data, *, eps, alpha, seed, device, progress, log):
    from .. import adversarial, nn
    from . import bengio2006 as b

    hp = b.hyperparameters(preset, "deep_no_pretraining")
    sizes = b.architecture(preset, "deep_no_pretraining")
    log(f"[robustness] adversarial training (eps {eps}, alpha {alpha}): {'-'.join(map(str, sizes))}")
    net = nn.mlp(sizes, init=hp["init"], device=device, seed=seed)
    hist = adversarial.adversarial_fit(
        net, data["X_train"], data["y_train"], eps=eps, alpha=alpha, lr=hp["lr"], momentum=hp["momentum"],
        weight_decay=hp["weight_decay"], epochs=hp["max_epochs"], batch_size=hp["batch_size"],
        X_val=data["X_valid"], y_val=data["y_valid"], patience=hp["patience"], seed=seed, progress=progress)
    return net, {"architecture": sizes, "eps": eps, "alpha": alpha, "epochs": hist.epochs,
                 "best_epoch": hist.best_epoch, "lr": hp["lr"], "momentum": hp["momentum"],
                 "batch_size": hp["batch_size"]}


def _rbf_row(data, units, *, preset, epochs, seed, device, progress, log):
    from .. import rbf, train
    from . import bengio2006 as b

    hp = b.hyperparameters(preset, "shallow")
    log(f"[robustness] RBF network: {units} RBF units (k-means init) + linear softmax (least-squares readout"
        f"{f', then {epochs} SGD epochs' if epochs else ''})")
    net = rbf.rbf_network(data["X_train"].shape[1], units, 10, X_init=nn_host(data["X_train"]),
                          y_init=nn_host(data["y_train"]), seed=seed, device=device)
    info = {"units": units, "init": "MiniBatchKMeans centers, gamma = 1 / (2 * cluster spread)",
            "readout": "least squares on logit targets (rbf.init_readout_least_squares)",
            "valid_error_before_sgd": train.evaluate(net, data["X_valid"], data["y_valid"])["error"], "epochs": 0}
    if epochs:
        hist = train.fit(net, data["X_train"], data["y_train"], lr=hp["lr"], momentum=hp["momentum"],
                         epochs=epochs, batch_size=hp["batch_size"], X_val=data["X_valid"], y_val=data["y_valid"],
                         patience=epochs, seed=seed, progress=progress)
        info.update(epochs=hist.epochs, best_epoch=hist.best_epoch, lr=hp["lr"], momentum=hp["momentum"])
    return net, info


def nn_host(a):
    from .. import nn

    return nn.to_device(a, "cpu")


# ---- reporting ---------------------------------------------------------------------------------
def format_table(rows: Sequence[dict], eps: Sequence[float] = EPS) -> str:
    """FGSM test error (%) per net and eps, and the mean confidence on wrong answers at the largest eps."""
    head = f"{'net':<30}" + "".join(f" {'eps ' + format(e, 'g'):>9}" for e in eps) + f" {'conf@' + format(eps[-1], 'g'):>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        by_eps = {a["eps"]: a for a in r["fgsm"]}
        conf = by_eps[eps[-1]]["mean_confidence_wrong"]
        lines.append(f"{r['name']:<30}" + "".join(f" {by_eps[e]['error']:9.2f}" for e in eps)
                     + f" {(100 * conf if conf is not None else float('nan')):8.1f}%")
    return "\n".join(lines)


def _plot_error_curves(rows, path):
    from . import bengio2006_plots as plots

    plt = plots._plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in rows:
        ax.plot([a["eps"] for a in r["fgsm"]], [a["error"] for a in r["fgsm"]], marker="o", label=r["name"])
    ax.set_xlabel("FGSM eps (pixels in [0, 1])")
    ax.set_ylabel("test error (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Adversarial (FGSM) test error")
    try:
        return _save_figure(fig, path)
    finally:
        plt.close(fig)


def _plot_grid(images, captions, row_labels, path, title):
    from . import bengio2006_plots as plots

    plt = plots._plt()
    nr, nc = len(images), len(images[0])
    fig, axes = plt.subplots(nr, nc, figsize=(1.15 * nc, 1.35 * nr + 0.4), squeeze=False)
    for i in range(nr):
        for j in range(nc):
            ax = axes[i][j]
            ax.imshow(np.asarray(images[i][j]).reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(captions[i][j], fontsize=6.5)
        axes[i][0].set_ylabel(row_labels[i], fontsize=7)
    fig.suptitle(title, fontsize=9)
    try:
        return _save_figure(fig, path)
    finally:
        plt.close(fig)


# ---- the experiment ----------------------------------------------------------------------------
def experiment(preset="quick", *, nets=None, data=None, device="cpu", out=None, seed=0, rows=None, eps=EPS,
               adv_eps=0.25, adv_alpha=0.5, rbf_units=None, rbf_epochs=RBF_EPOCHS, adversarial_training=True,
               threads=None,
               progress=None, plots=True, log: Callable[[str], None] = print) -> dict:
    """Runs the robustness study; returns the results dict (also written to ``out``/results.json)."""
    from .. import ops

    if threads is None:
        return _experiment(preset, nets, data, device, out, seed, rows, eps, adv_eps, adv_alpha, rbf_units,
                           rbf_epochs, adversarial_training, progress, plots, log)
    before = ops.get_num_threads()
    ops.set_num_threads(threads)
    try:
        return _experiment(preset, nets, data, device, out, seed, rows, eps, adv_eps, adv_alpha, rbf_units,
                           rbf_epochs, adversarial_training, progress, plots, log)
    finally:
        ops.set_num_threads(before)


def _experiment(preset, nets_dir, data, device, out, seed, rows, eps, adv_eps, adv_alpha, rbf_units,
                rbf_epochs, adversarial_training, progress, plots, log) -> dict:
    from .. import adversarial, nn, train
    from . import bengio2006_plots as plotting
    from . import bengio2006 as b

    p = b.PRESETS.get(preset) if isinstance(preset, str) else preset
    if p is None:
        raise UserError(f"--preset: unknown preset {preset!r}; choose from {', '.join(b.PRESETS)}")
    if not (0.0 <= adv_eps <= 1.0) or not (0.0 <= adv_alpha <= 1.0):
        raise UserError("--adv-eps and --adv-alpha must lie in [0, 1]")
    units = RBF_UNITS.get(p.name, 300) if rbf_units is None else int(rbf_units)
    if units < 0:
        raise UserError(f"--rbf-units: expected a count >= 0, got {units}")
    if isinstance(rbf_epochs, bool) or not isinstance(rbf_epochs, (int, np.integer)) or rbf_epochs < 0:
        raise UserError(f"--rbf-epochs: expected a count >= 0, got {rbf_epochs}")
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    net_files = _net_files(nets_dir) if nets_dir is not None else None  # before the data: fail fast

    _, d = b.load_data(p, data, device=device, progress=bool(progress))
    log(f"[robustness] preset {p.name!r}: train {len(d['y_train'])}, valid {len(d['y_valid'])}, "
        f"test {len(d['y_test'])}; device {device}")
    info: Dict[str, dict] = {}
    if nets_dir is not None:
        nets = _load_nets(net_files, device)
        source = f"loaded from {nets_dir}"
    else:
        nets = _train_rows(p, d, rows, seed=seed, device=device, progress=progress, log=log)
        source = f"trained with preset {p.name!r}"
    if adversarial_training:
        nets["deep_adversarial"], info["deep_adversarial"] = _adversarial_row(
            p, d, eps=adv_eps, alpha=adv_alpha, seed=seed, device=device, progress=progress, log=log)
    if units > 0:
        if importlib.util.find_spec("sklearn") is None:
            log("[robustness] RBF network row skipped: k-means needs scikit-learn (pip install 'layerwise[rbf]')")
        else:
            nets["rbf_network"], info["rbf_network"] = _rbf_row(d, units, preset=p, epochs=int(rbf_epochs),
                                                                 seed=seed, device=device, progress=progress,
                                                                 log=log)

    X_test, y_test = d["X_test"], d["y_test"]
    rows_out: List[dict] = []
    for name, net in nets.items():
        t0 = time.perf_counter()
        fgsm_rows = adversarial.evaluate(net, X_test, y_test, list(eps))
        rows_out.append({"name": name, "test_error": fgsm_rows[0]["error"], "fgsm": fgsm_rows,
                         "eval_seconds": round(time.perf_counter() - t0, 2), **({"training": info[name]} if name in info else {})})
    log(format_table(rows_out, eps))

    # Fooling images for the first deep net: all ten classes from noise, and from
    # the first test digit of the next class.
    focus = next((n for n in ("deep_no_pretraining", "dbn", "shallow") if n in nets), next(iter(nets)))
    net = nets[focus]
    classes = np.arange(10)
    fool_noise, noise_info = adversarial.fool(net, classes, start="noise", count=10, steps=FOOL_STEPS, lr=0.01,
                                              confidence=FOOL_CONFIDENCE, seed=seed)
    y_host = np.asarray(nn.to_device(y_test, "cpu"))
    firsts = [int(np.flatnonzero(y_host == (t + 1) % 10)[0]) if np.any(y_host == (t + 1) % 10) else 0 for t in classes]
    start = nn_host(X_test)[firsts]
    fool_real, real_info = adversarial.fool(net, classes, start=start, steps=FOOL_STEPS, lr=0.005,
                                            confidence=FOOL_CONFIDENCE)

    def fool_summary(i):
        return {"reached": int(i["reached"].sum()), "of": int(i["reached"].size),
                "confidence": [float(v) for v in i["confidence"]], "steps": [int(v) for v in i["steps"]],
                "mean_linf": float(i["linf"].mean()), "mean_l2": float(i["l2"].mean())}

    results = {
        "experiment": "robustness", "preset": p.name, "nets_source": source, "device": device, "seed": seed,
        "eps": list(eps), "rows": rows_out, "paper": PAPER,
        "fooling": {"net": focus, "confidence": FOOL_CONFIDENCE, "from_noise": fool_summary(noise_info),
                    "from_other_digits": fool_summary(real_info)},
        "seconds": None,
    }
    log(f"[robustness] fooling {focus}: {results['fooling']['from_noise']['reached']}/10 from noise, "
        f"{results['fooling']['from_other_digits']['reached']}/10 from other digits reached "
        f"{100 * FOOL_CONFIDENCE:.1f} % confidence")

    if out_dir is not None and plots and plotting.available():
        figs = {"adversarial_error": _plot_error_curves(rows_out, out_dir / "adversarial_error.png")}
        # Adversarial digits: the first ten test digits at each eps, with the net's answers.
        X_host = nn_host(X_test)[:10]
        y10 = y_host[:10]
        images, captions, labels = [], [], []
        for e in (0.0, 0.1, 0.25):
            Xa = nn_host(adversarial.fgsm(net, X_test[:10], y_test[:10], e)) if e > 0 else X_host
            prob = train.predict_proba(net, Xa)
            images.append(list(Xa))
            captions.append([f"{int(k)} ({100 * prob[i, k]:.1f}%)" + ("" if k == y10[i] else " x")
                             for i, k in enumerate(prob.argmax(1))])
            labels.append(f"eps {e:g}")
        figs["adversarial_digits"] = _plot_grid(images, captions, labels, out_dir / "adversarial_digits.png",
                                                f"{focus}: FGSM digits, predicted label (confidence); x = wrong")
        pn = train.predict_proba(net, nn_host(fool_noise))
        pr = train.predict_proba(net, nn_host(fool_real))
        def fool_captions(prob, i):
            return [f"{t} ({100 * prob[t, t]:.2f}%)" + ("" if i["reached"][t] else " *") for t in classes]

        figs["fooling_images"] = _plot_grid(
            [list(nn_host(fool_noise)), list(nn_host(fool_real))],
            [fool_captions(pn, noise_info), fool_captions(pr, real_info)],
            ["from noise", "from a digit"], out_dir / "fooling_images.png",
            f"{focus}: target class (its probability), driven to {100 * FOOL_CONFIDENCE:.1f} %; "
            f"* = not reached in {FOOL_STEPS} steps")
        results["figures"] = {k: os.path.basename(v) for k, v in figs.items()}
    results["seconds"] = round(time.perf_counter() - t_start, 1)
    if out_dir is not None:
        write_json_atomic(out_dir / "results.json", b._to_builtin(results))
        log(f"[robustness] wrote {out_dir / 'results.json'}")
    return results


EXPERIMENT = register(Experiment(
    name="robustness",
    help="FGSM adversarial examples, fooling images, adversarial training and RBF units on the bengio2006 nets",
    configure=add_arguments,
    main=run,
    description=(__doc__ or "").split("\n\n")[0],
))
