"""Grid sweep of one row of the bengio2006 experiment, on Optuna, selected on validation.

Runs the experiment's own code paths (layerwise.experiments.bengio2006: the same
data split, pretraining and fine-tuning functions, seeds and defaults as
``layerwise bengio2006``) over a grid of settings. The grid is an Optuna study with
a GridSampler, opened through ``layerwise.search.make_storage``: in memory by
default, ``--storage sqlite:///sweep.db`` (or journal:FILE, postgresql://...) to
resume a stopped sweep or to let several processes share it, each taking the grid
points nobody has run yet. Each pretraining setting is trained once and cached as
a net file, so a grid over fine-tuning settings costs one fine-tuning run per point.

    python benchmarks/sweep_bengio2006.py --row dbn --finetune batch_size=50,20 lr=0.1,0.5
    python benchmarks/sweep_bengio2006.py --row deep_autoencoder_pretraining \\
        --pretrain epochs_per_layer=15,40 --finetune batch_size=10 lr=0.1 --jsonl sweep.jsonl

Every point prints the validation error (the selection criterion: the best
epoch's, as early stopping restores it), the mean of the last 10 epochs'
validation errors (a less noisy view of the same run), and the test error, and
stores them as the trial's user attributes. The test error is recorded for the
final report only; pick settings by validation. A grid value is parsed as JSON
where it can be (numbers, true/false), else kept as a string. Keys are the
preset's fine-tuning keys (lr, momentum, batch_size, lr_decay, max_epochs,
weight_decay, ...) or its pretraining keys for the row.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import time

import numpy as np


def _value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _grid(items):
    """["lr=0.1,0.5", "batch_size=20"] -> [{"lr": 0.1, "batch_size": 20}, {"lr": 0.5, "batch_size": 20}]."""
    keys, values = [], []
    for item in items or []:
        key, sep, vals = item.partition("=")
        if not sep or not key or not vals:
            raise SystemExit(f"sweep: expected KEY=V1,V2,... got {item!r}")
        keys.append(key)
        values.append([_value(v) for v in vals.split(",")])
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _point(trial, pretrain_grid, finetune_grid):
    """The grid point the sampler gave ``trial``: (pretraining settings, fine-tuning settings).
    Parameter names are prefixed with their group, so the two grids may share a key."""
    def pick(group, grid):
        keys = list(grid[0]) if grid else []
        return {k: trial.suggest_categorical(f"{group}.{k}", sorted({json.dumps(g[k]) for g in grid}))
                for k in keys}

    pre = {k: json.loads(v) for k, v in pick("pretrain", pretrain_grid).items()}
    ft = {k: json.loads(v) for k, v in pick("finetune", finetune_grid).items()}
    return pre, ft


def _study(pretrain_grid, finetune_grid, *, storage, name, seed):
    import optuna
    from layerwise import search

    space = {}
    for group, grid in (("pretrain", pretrain_grid), ("finetune", finetune_grid)):
        for k in (grid[0] if grid else {}):
            space[f"{group}.{k}"] = sorted({json.dumps(g[k]) for g in grid})
    if not space:  # a single run of the preset's own settings
        space = {"finetune.preset": [json.dumps("preset")]}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        store = search.make_storage(storage)
    except search.SearchError as e:
        raise SystemExit(f"sweep: {e}") from None
    return optuna.create_study(storage=store, study_name=name, direction="minimize", load_if_exists=True,
                               sampler=optuna.samplers.GridSampler(space, seed=seed))


def main(argv=None):
    from layerwise import nn, ops
    from layerwise.experiments import bengio2006 as exp

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--row", required=True, choices=exp.ROWS)
    ap.add_argument("--preset", default="full", choices=sorted(exp.PRESETS))
    ap.add_argument("--pretrain", nargs="*", metavar="KEY=V,...", help="grid over the row's pretraining settings")
    ap.add_argument("--finetune", nargs="*", metavar="KEY=V,...", help="grid over the fine-tuning settings")
    ap.add_argument("--hidden", default=None, help="hidden sizes of the deep nets, e.g. 500,500,1000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="MNIST directory (default: the usual lookup)")
    ap.add_argument("--cache", default=os.path.join("results", "sweep-cache"), help="pretrained nets are kept here")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--storage", default=None,
                    help="Optuna storage URL (sqlite:///FILE, journal:FILE, postgresql://...): resume the sweep, "
                         "or share it between processes; default in memory")
    ap.add_argument("--study", default=None, help="study name in --storage (default: sweep-ROW-PRESET)")
    ap.add_argument("--jsonl", default=None, help="append one JSON record per point to this file")
    args = ap.parse_args(argv)

    if args.threads is not None:
        ops.set_num_threads(args.threads)
    preset = exp.PRESETS[args.preset]
    if args.hidden:
        from dataclasses import replace

        preset = replace(preset, hidden=tuple(int(h) for h in args.hidden.split(",")))
    base = exp.hyperparameters(preset, args.row)
    sizes = exp.architecture(preset, args.row)
    kind = base.get("pretraining")
    if args.pretrain and kind is None:
        raise SystemExit(f"sweep: row {args.row} has no pretraining to sweep")
    pretrain_grid = _grid(args.pretrain) if args.pretrain else []
    finetune_grid = _grid(args.finetune) if args.finetune else []
    study = _study(pretrain_grid, finetune_grid, storage=args.storage,
                   name=args.study or f"sweep-{args.row}-{args.preset}", seed=args.seed)
    try:
        _, data = exp.load_data(preset, args.data)
    except exp.ExperimentError as e:
        raise SystemExit(f"sweep: {e}") from None
    os.makedirs(args.cache, exist_ok=True)

    def pretrained(pre):
        """The row's starting net for these pretraining settings: from the cache, or trained and cached."""
        hp_pre = dict(base)
        if kind is not None:
            hp_pre["pretrain"] = {**base["pretrain"], **pre}
        spec = {"kind": kind, "sizes": sizes, "seed": args.seed, "pretrain": hp_pre.get("pretrain"),
                "init": base["init"], "n_train": preset.n_train}
        path = os.path.join(args.cache, hashlib.md5(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16] + ".npz")
        seconds, cached = 0.0, os.path.exists(path)
        if not cached:
            t0 = time.perf_counter()
            if kind is None:
                net = nn.mlp(sizes, init=base["init"], seed=args.seed)
            else:
                net, _ = exp.pretrain(kind, sizes, data, hp_pre, seed=args.seed)
            seconds = time.perf_counter() - t0
            nn.save(net, path)
        return path, hp_pre, seconds, cached

    def objective(trial):
        pre, ft = _point(trial, pretrain_grid, finetune_grid)
        path, hp_pre, pre_seconds, pre_cached = pretrained(pre)
        hp = {**hp_pre, **ft}
        t0 = time.perf_counter()
        net, hist = exp.finetune(nn.load(path), data, hp, seed=args.seed)
        seconds = time.perf_counter() - t0
        errs = exp.evaluate_row(args.row, net, data, sizes=sizes, hp=hp, history=hist)
        errs = {k: errs[f"{k}_error"] for k in ("train", "valid", "test")}
        v = hist.valid_error
        rec = {"row": args.row, "sizes": sizes, "seed": args.seed, "pretrain": pre, "finetune": ft,
               "valid_error": errs["valid"], "valid_last10": float(np.mean(v[-10:])) if v else None,
               "best_epoch": hist.best_epoch, "train_error": errs["train"], "test_error": errs["test"],
               "pretrain_cached": pre_cached, "pretrain_seconds": round(pre_seconds, 3), "finetune_seconds": round(seconds, 1)}
        for k, value in rec.items():
            trial.set_user_attr(k, value)
        print(f"{json.dumps(pre)} {json.dumps(ft)}: valid {rec['valid_error']:.2f} "
              f"(last 10 epochs {rec['valid_last10']:.2f}, best epoch {rec['best_epoch']}) "
              f"test {rec['test_error']:.2f} train {rec['train_error']:.3f} [{seconds:.0f}s]", flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(json.dumps(rec) + "\n")
        return rec["valid_error"]

    # Only the points no finished trial covers (a resumed or shared study); the GridSampler
    # also stops the study once every point has a trial, here or in another process.
    import optuna

    points = max(len(pretrain_grid), 1) * max(len(finetune_grid), 1)
    done = {tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False,
                                                                       states=(optuna.trial.TrialState.COMPLETE,))}
    if points - len(done) > 0:
        study.optimize(objective, n_trials=points - len(done))
    best = study.best_trial.user_attrs
    print(f"selected on validation: pretrain {json.dumps(best['pretrain'])} finetune {json.dumps(best['finetune'])}"
          f" -> valid {best['valid_error']:.2f}, test {best['test_error']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
