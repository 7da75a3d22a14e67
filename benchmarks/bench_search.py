"""bench_search.py -- issue 17's measured targets for layerwise.search and layerwise.topology.

Four parts, each run as its own `python -m layerwise ...` process (or, for topology, one
worker process), so no part's threads or caches leak into another's timing:

  headline  a time-boxed search (default 30 minutes) of the default space on the 50k / 10k
            MNIST split: TPE, median pruner; trials run / pruned, best validation and test
            error, epochs, and Optuna's figures (history, per-epoch curves, importances, Pareto);
  pruning   the same N trials twice (random sampler, same seed, so the same configs in the
            same order; default 12 trials of at most 10 epochs on a 20k / 10k split, because
            the run without pruning costs every epoch) without and with the median pruner: total epochs, best validation
            error and wall time of each (target: >= 40 % fewer epochs at a comparable best);
  workers   a fixed set of trials (one fixed config repeated; a seeded draw of mixed configs
            from the default space, queued) by one worker on all threads, one worker on one
            thread, and two workers on one thread each sharing a journal-file study
            (target: two workers in <= 0.6x the time of one);
  topology  the full bengio2006 preset's deep net (row deep_no_pretraining by default),
            trained, then pruned with topology.prune_units at tolerance 0.1 points
            (target: >= 30 % of the hidden units removed).

    python benchmarks/bench_search.py all --out benchmarks/search          # ~75 min on 2 cores
    python benchmarks/bench_search.py workers pruning --quick --out /tmp/s  # seconds: proves it runs

Results are merged into --json (default benchmarks/results_search.json), one key per part,
with the machine record; figures and best.json files go under --out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

PARTS = ("headline", "pruning", "workers", "topology")

# Every trial of the workers part trains this one net, so both set-ups do the same work.
FIXED_SPACE = {"layers": [2, 2], "units": [500, 500], "activations": ["sigmoid"], "pretrainings": ["none"],
               "optimizers": ["momentum"], "lr": [0.1, 0.1], "momentum": [0.9, 0.9], "batch_sizes": [64],
               "weight_decay": [0.0, 0.0], "dropout": [0.0, 0.0], "epochs": 3, "patience": None}
QUICK_SPACE = {"layers": [1, 2], "units": [8, 32], "batch_sizes": [32, 64], "pretrain_epochs": [1, 1],
               "epochs": 3, "patience": None}


def log(message):
    print(message, file=sys.stderr, flush=True)


def _search(args, extra, threads, log_path, split=None):
    """Runs one `layerwise search` process; returns (its JSON result, wall seconds)."""
    cmd = [sys.executable, "-m", "layerwise", "search", "--split", split or args.split, "--threads", str(threads),
           *extra]
    if args.data:
        cmd += ["--data", args.data]
    env = H.worker_env(threads)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log_path}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def _write_space(path, space):
    with open(path, "w") as f:
        json.dump(space, f)
    return path


def _brief(result, wall):
    keys = ("trials", "complete", "pruned", "failed", "epochs_total", "best_value", "test_error", "n_params",
            "best_params", "best_trial")
    return dict({k: result[k] for k in keys}, wall_seconds=round(wall, 1))


def part_headline(args, out):
    d = os.path.join(out, "headline")
    os.makedirs(d, exist_ok=True)
    extra = ["--timeout", str(args.minutes * 60), "--seed", "0", "--out", d]
    if args.quick:
        extra += ["--space", _write_space(os.path.join(out, "quick_space.json"), QUICK_SPACE)]
    result, wall = _search(args, extra, args.threads, os.path.join(d, "log.txt"))
    return dict(_brief(result, wall), budget_seconds=args.minutes * 60, sampler="tpe", pruner="median",
                figures=[os.path.relpath(f, out) for f in result.get("figures", [])])


def part_pruning(args, out):
    space = _write_space(os.path.join(out, "pruning_space.json"),
                         QUICK_SPACE if args.quick else {"epochs": args.pruning_epochs})
    runs = {}
    for pruner in ("none", "median"):
        d = os.path.join(out, f"pruning-{pruner}")
        os.makedirs(d, exist_ok=True)
        extra = ["--trials", str(args.trials), "--sampler", "random", "--seed", "0", "--pruner", pruner,
                 "--out", d, "--no-plots", "--space", space]
        result, wall = _search(args, extra, args.threads, os.path.join(d, "log.txt"), split=args.pruning_split)
        runs[pruner] = _brief(result, wall)
        log(f"pruning {pruner}: {runs[pruner]['epochs_total']} epochs, best {runs[pruner]['best_value']:.2f} %, "
              f"{wall:.0f} s")
    saved = 1.0 - runs["median"]["epochs_total"] / max(runs["none"]["epochs_total"], 1)
    return {"trials": args.trials, "split": args.pruning_split, "epochs": args.pruning_epochs, "runs": runs,
            "epochs_saved_fraction": round(saved, 4),
            "best_difference_points": round(runs["median"]["best_value"] - runs["none"]["best_value"], 4),
            "time_ratio": round(runs["median"]["wall_seconds"] / runs["none"]["wall_seconds"], 4)}


def _enqueue(storage, study, space_file, configs):
    """Creates the study as the CLI would and queues fixed trial parameters: every
    set-up then runs exactly these trials, whichever worker takes which."""
    from layerwise import search

    space = search.load_space(space_file)
    s = search.open_study(space, storage=storage, study=study)
    for params in configs:
        s.enqueue_trial(params)


def _trained_params(storage, study):
    """The parameters of every finished trial of a study, sorted (to compare set-ups)."""
    import optuna

    from layerwise import search

    s = optuna.load_study(study_name=study, storage=search.make_storage(storage))
    return sorted(json.dumps(t.params, sort_keys=True) for t in s.trials if t.state.is_finished())


def _mixed_configs(space_file, n, seed=0):
    """n parameter sets drawn from the space by a seeded random sampler."""
    import optuna

    from layerwise import search

    space = search.load_space(space_file)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        t = s.ask()
        space(t)
        out.append(dict(t.params))
        s.tell(t, 0.0)
    return out


def _run_workers(args, space_file, storage, study, trials, workers, threads, log_prefix):
    """`workers` concurrent search processes on one study; returns the wall seconds."""
    per = trials // workers
    t0 = time.perf_counter()
    procs = []
    for w in range(workers):
        cmd = [sys.executable, "-m", "layerwise", "search", "--split", args.worker_split, "--threads", str(threads),
               "--trials", str(per), "--storage", storage, "--study", study, "--space", space_file,
               "--out", f"{log_prefix}-out{w}", "--no-plots"]
        if args.data:
            cmd += ["--data", args.data]
        log_file = open(f"{log_prefix}-{w}.log", "w")
        procs.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file, text=True,
                                       env=H.worker_env(threads)), log_file))
    for p, log_file in procs:
        p.communicate()
        log_file.close()
        if p.returncode != 0:
            raise RuntimeError(f"a worker failed (exit {p.returncode}); see {log_file.name}")
    return time.perf_counter() - t0


def part_workers(args, out):
    """Two workloads (one fixed config; a seeded draw of mixed configs from the default space,
    queued so every set-up trains the same trials) x three set-ups (one worker on all threads,
    one worker on one thread, two workers on one thread each)."""
    import tempfile

    fixed = dict(FIXED_SPACE, epochs=1) if args.quick else FIXED_SPACE
    mixed = dict(QUICK_SPACE if args.quick else {}, epochs=1 if args.quick else 2, patience=None)
    workloads = {"fixed": _write_space(os.path.join(out, "workers_fixed_space.json"), fixed),
                 "mixed": _write_space(os.path.join(out, "workers_mixed_space.json"), mixed)}
    setups = {"one_worker_all_threads": (1, args.threads), "one_worker_one_thread": (1, 1),
              "two_workers_one_thread": (2, 1)}
    n = args.worker_trials
    result = {"trials": n, "threads": args.threads, "split": args.worker_split}
    with tempfile.TemporaryDirectory() as tmp:
        for wname, space_file in workloads.items():
            configs = _mixed_configs(space_file, n) if wname == "mixed" else None
            times = {}
            for sname, (workers, threads) in setups.items():
                storage = f"journal:{os.path.join(tmp, wname + sname)}.log"
                if configs is not None:
                    _enqueue(storage, "bench", space_file, configs)
                times[sname] = round(_run_workers(args, space_file, storage, "bench", n, workers, threads,
                                                  os.path.join(tmp, f"{wname}-{sname}")), 1)
                if configs is not None and _trained_params(storage, "bench") != sorted(
                        json.dumps(c, sort_keys=True) for c in configs):
                    raise RuntimeError(f"workers {wname} {sname}: the trials run are not the queued ones")
                log(f"workers {wname} {sname}: {times[sname]} s")
            result[wname] = dict(times, configs=configs,
                                 ratio_vs_all_threads=round(times["two_workers_one_thread"]
                                                            / times["one_worker_all_threads"], 4),
                                 ratio_vs_one_thread=round(times["two_workers_one_thread"]
                                                           / times["one_worker_one_thread"], 4))
    return result


def topology_worker(payload):
    """Prunes one net (a bengio2006 row trained here, or a saved net such as a search
    winner) on the full preset's 50k / 10k / 10k split; runs in its own process."""
    H.set_worker_threads(payload["threads"])
    from layerwise import nn, topology, train
    from layerwise.experiments import bengio2006 as B

    _, data = B.load_data(payload["preset"], payload["data"])
    t0 = time.perf_counter()
    if payload.get("net"):
        net = nn.load(payload["net"])
        source = {"net": payload["net"]}
    else:
        row, net, _ = B.train_row(payload["preset"], payload["row"], data, seed=0)
        source = {"preset": payload["preset"], "row": payload["row"]}
    train_seconds = time.perf_counter() - t0
    test_before = float(train.error_rate(net, data["X_test"], data["y_test"]))
    os.makedirs(payload["out"], exist_ok=True)
    with open(os.path.join(payload["out"], "log.txt"), "w") as log_file:
        t0 = time.perf_counter()
        result = topology.prune_units(net, data["X_valid"], data["y_valid"], X_train=data["X_train"],
                                      y_train=data["y_train"], fraction=payload["fraction"], tolerance=0.1,
                                      stop_margin=payload["stop_margin"], max_rounds=payload["max_rounds"],
                                      finetune_epochs=payload["finetune_epochs"], lr=payload["lr"],
                                      log=lambda m: print(m, file=log_file, flush=True))
        prune_seconds = time.perf_counter() - t0
    result.save(payload["out"])
    return {**source, "train_seconds": round(train_seconds, 1), "prune_seconds": round(prune_seconds, 1),
            "fraction": payload["fraction"], "finetune_epochs": payload["finetune_epochs"], "lr": payload["lr"],
            "hidden_before": topology.hidden_sizes(net), "hidden_after": topology.hidden_sizes(result.net),
            "units_removed_fraction": round(result.units_removed_fraction, 4),
            "valid_error_before": result.baseline_error,
            "valid_error_after": float(train.error_rate(result.net, data["X_valid"], data["y_valid"])),
            "test_error_before": test_before,
            "test_error_after": float(train.error_rate(result.net, data["X_test"], data["y_test"])),
            "params_before": result.curve[0]["n_params"],
            "params_after": int(sum(p.data.size for p in result.net.parameters())),
            "rounds": len(result.curve) - 1, "curve": result.curve}


def part_topology(args, out):
    """The full preset's row, and the headline search's winner when its best_net.npz exists."""
    base = {"preset": "smoke" if args.quick else "full", "data": args.data, "threads": args.threads,
            "fraction": args.prune_fraction, "finetune_epochs": 1 if args.quick else args.prune_epochs,
            "lr": args.prune_lr, "stop_margin": 1.0 if args.quick else 0.3,
            "max_rounds": 2 if args.quick else args.prune_rounds}
    jobs = {"row": dict(base, row=args.row, out=os.path.join(out, "topology"))}
    winner = args.search_net or os.path.join(out, "headline", "best_net.npz")
    if os.path.exists(winner):
        jobs["search_winner"] = dict(base, net=os.path.abspath(winner), out=os.path.join(out, "topology-search"))
    result = {}
    for name, payload in jobs.items():
        result[name] = H.run_worker(__file__, "topology_worker", payload, H.worker_env(args.threads),
                                    timeout=4 * 3600)
        log(f"topology {name}: {result[name]['hidden_before']} -> {result[name]['hidden_after']}, "
            f"valid {result[name]['valid_error_before']:.2f} -> {result[name]['valid_error_after']:.2f} %")
    result["figure"] = _plot_pruning_curves(result, os.path.join(out, "topology.png"))
    return result


def _plot_pruning_curves(results, path):
    """Validation error against hidden units kept, one line per pruned net, with each
    net's tolerance band; returns the path, or None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels = {"row": "bengio2006 full, deep no pretraining", "search_winner": "30-min search winner"}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, r in results.items():
        units = [c["units"] for c in r["curve"]]
        errors = [c["valid_error"] for c in r["curve"]]
        line, = ax.plot(units, errors, "o-", label=f"{labels.get(name, name)} ({r['hidden_before']})")
        ax.axhline(r["valid_error_before"] + 0.1, color=line.get_color(), ls=":", lw=1)
        kept = sum(r["hidden_after"])
        ax.plot([kept], [r["valid_error_after"]], "*", ms=14, color=line.get_color())
    ax.invert_xaxis()
    ax.set_xlabel("hidden units kept (pruning rounds go right)")
    ax.set_ylabel("validation error (%)")
    ax.set_title("topology.prune_units: error vs units kept\n(dotted: original + 0.1 points; star: result)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("parts", nargs="+", choices=PARTS + ("all",))
    p.add_argument("--data", default=os.environ.get("LAYERWISE_DATA"), help="MNIST IDX directory")
    p.add_argument("--split", default="50000,10000")
    p.add_argument("--minutes", type=float, default=30.0, help="headline search budget")
    p.add_argument("--trials", type=int, default=12, help="trials of each pruning run")
    p.add_argument("--pruning-split", default="20000,10000", help="split of the pruning runs")
    p.add_argument("--pruning-epochs", type=int, default=10, help="epoch budget per trial of the pruning runs")
    p.add_argument("--worker-split", default="20000,10000", help="split of the workers part")
    p.add_argument("--worker-trials", type=int, default=8, help="trials of the workers part (even)")
    p.add_argument("--row", default="deep_no_pretraining", help="bengio2006 row the topology part prunes")
    p.add_argument("--search-net", default=None,
                   help="saved net the topology part also prunes (default: OUT/headline/best_net.npz if present)")
    p.add_argument("--prune-fraction", type=float, default=0.05, help="share of the hidden units removed per round")
    p.add_argument("--prune-epochs", type=int, default=2, help="fine-tuning epochs after each pruning round")
    p.add_argument("--prune-lr", type=float, default=0.01,
                   help="fine-tuning rate (momentum 0.9): near the trained nets' final rates, so a round's "
                        "fine-tuning repairs the net without shaking it out of its minimum")
    p.add_argument("--prune-rounds", type=int, default=14, help="most pruning rounds")
    p.add_argument("--threads", type=int, default=H.DEFAULT_THREADS)
    p.add_argument("--quick", action="store_true", help="tiny split and space: proves the script runs")
    p.add_argument("--out", default="results/bench_search", help="folder for figures, best.json files, logs")
    p.add_argument("--json", default=os.path.join(H.HERE, "results_search.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.split, args.minutes, args.trials, args.worker_trials = "600,300", 0.05, 4, 2
        args.pruning_split = args.worker_split = args.split
    parts = PARTS if "all" in args.parts else tuple(dict.fromkeys(args.parts))
    os.makedirs(args.out, exist_ok=True)
    record = {}
    if os.path.exists(args.json):
        with open(args.json) as f:
            record = json.load(f)
    record["machine"] = H.machine_record(args.threads, {"layerwise": {}}, with_torch=False, quick=args.quick)
    for part in parts:
        log(f"== {part}")
        t0 = time.perf_counter()
        record[part] = dict(globals()[f"part_{part}"](args, args.out), measured_utc=time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), quick=args.quick)
        log(f"   {part}: {time.perf_counter() - t0:.0f} s: "
              + json.dumps({k: v for k, v in record[part].items() if k not in ("curve", "runs", "space")}))
        H.write_json(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
