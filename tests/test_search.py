"""layerwise.search on Optuna: space, objective, storages, errors, the CLI, and two workers on PostgreSQL."""
import gzip
import json
import os
import struct
import subprocess
import sys
import uuid

import numpy as np
import pytest

optuna = pytest.importorskip("optuna", reason="Optuna is in the optional 'search' extra")

from layerwise import cli, datasets, nn, optim, train  # noqa: E402
from layerwise import search  # noqa: E402
from layerwise.datasets import MNIST_FILES  # noqa: E402

TINY_SPACE = {"layers": [1, 2], "units": [4, 16], "batch_sizes": [16, 32], "pretrain_epochs": [1, 1],
              "epochs": 3, "patience": None, "lr": [0.05, 0.5]}
SPLIT = (160, 80)


def _idx(arr):
    arr = np.asarray(arr, dtype=np.uint8)
    return bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()


def _images(n, rng):
    """Three classes of 6x6 images, each lighting a different band of rows, plus noise."""
    y = rng.integers(0, 3, n)
    x = rng.integers(0, 200, (n, 6, 6))
    for c in range(3):
        x[y == c, 2 * c:2 * c + 2, :] += 25  # weak signal in strong noise: errors are not zero
    return x.clip(0, 255), y


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_idx")
    rng = np.random.default_rng(0)
    tx, ty = _images(sum(SPLIT), rng)
    vx, vy = _images(60, rng)
    for name, arr in zip(MNIST_FILES, (tx, ty, vx, vy)):
        (d / (name + ".gz")).write_bytes(gzip.compress(_idx(arr)))
    return d


@pytest.fixture(scope="module")
def data(tiny_dir):
    return datasets.load_idx_dataset(tiny_dir, split=SPLIT)


def tiny_space(**changes):
    return search.Space(**{**TINY_SPACE, **changes})


def test_space_rejects_invalid_fields_naming_them():
    for bad, name in [({"layers": (0, 3)}, "layers"), ({"layers": (1, 6)}, "layers"), ({"units": (8, 4)}, "units"),
                      ({"optimizers": ["bogus"]}, "optimizers"), ({"activations": []}, "activations"),
                      ({"pretrainings": ["pca"]}, "pretrainings"), ({"batch_sizes": [0]}, "batch_sizes"),
                      ({"epochs": 0}, "epochs"), ({"dropout": (0.0, 1.0)}, "dropout")]:
        with pytest.raises(search.SearchError, match=name):
            search.Space(**bad)


def test_space_offers_only_optimizers_make_optimizer_accepts():
    assert set(search.Space().offered_optimizers()) == set(optim.OPTIMIZERS)
    trial = optuna.trial.FixedTrial({"n_layers": 2, "units_0": 64, "units_1": 32, "pretraining": "rbm",
                                     "pretrain_epochs": 2, "pretrain_lr": 0.05, "optimizer": "nesterov",
                                     "lr": 0.1, "momentum": 0.9, "batch_size": 32, "weight_decay": 1e-5,
                                     "dropout": 0.1})
    config = search.Space()(trial)
    assert config["hidden"] == [64, 32] and config["activation"] == "sigmoid"  # RBM units are sigmoid
    assert config["momentum"] == 0.9 and "noise" not in config
    search.check_config(config)


def test_space_file_json_narrows_and_python_defines_a_function(tmp_path):
    j = tmp_path / "space.json"
    j.write_text(json.dumps(TINY_SPACE))
    assert search.load_space(j).layers == (1, 2)
    j.write_text(json.dumps({"layer": [1, 2]}))
    with pytest.raises(search.SearchError, match="unknown field"):
        search.load_space(j)
    py = tmp_path / "myspace.py"
    py.write_text("def space(trial):\n    return {'hidden': [trial.suggest_int('u', 2, 4)], 'activation': 'tanh',\n"
                  "            'pretraining': 'none', 'optimizer': 'sgd', 'lr': 0.1, 'batch_size': 16, 'epochs': 2}\n")
    fn = search.load_space(py)
    assert fn(optuna.trial.FixedTrial({"u": 3}))["hidden"] == [3]
    with pytest.raises(search.SearchError, match="no such file"):
        search.load_space(tmp_path / "missing.json")


def test_search_in_memory_reports_every_epoch_and_writes_outputs(data, tmp_path):
    result = search.run(data, trials=5, space=tiny_space(), out=tmp_path, log=None, sampler_seed=0)
    study_values = result.best_value
    assert result.trials == 5 and result.complete + result.pruned + result.failed == 5 and result.failed == 0
    assert 0.0 <= result.test_error <= 100.0
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["best_value"] == study_values and best["best_params"] == result.best_params
    for name in ("best_net.npz", "history.png", "pareto.png", "pruning.png"):
        assert (tmp_path / name).stat().st_size > 0
    net = nn.load(tmp_path / "best_net.npz")
    # The saved net is the best trial's: its validation error is the objective value, and
    # its test error is what the search reported.
    assert train.error_rate(net, data.X_valid, data.y_valid) == pytest.approx(result.best_value, abs=1e-9)
    assert train.error_rate(net, data.X_test, data.y_test) == pytest.approx(result.test_error, abs=1e-9)
    assert search.n_parameters(net) == result.n_params


def test_objective_reports_each_epoch_and_pruned_trials_stop_early(data):
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=-1.0))  # prunes at the first report
    study.optimize(search.make_objective(data, tiny_space()), n_trials=2)
    assert all(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    assert all(list(t.intermediate_values) == [0] and t.user_attrs["epochs_trained"] == 1 for t in study.trials)
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.optimize(search.make_objective(data, tiny_space()), n_trials=2)
    for t in study.trials:
        assert list(t.intermediate_values) == [0, 1, 2]
        assert t.value == pytest.approx(min(t.intermediate_values.values()))


def test_hyperband_search_counts_trials_and_epochs(data):
    result = search.run(data, trials=6, space=tiny_space(epochs=4), pruner="hyperband", plots=False, log=None,
                        sampler_seed=3)
    trials = result.study.trials
    assert result.trials == len(trials) == 6
    assert result.pruned == sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)
    assert result.epochs_total == sum(len(t.intermediate_values) for t in trials)
    assert result.best_value == min(t.value for t in trials if t.value is not None)


def test_random_sampler_draws_the_same_configs_whatever_the_pruner(data):
    # The pruning A/B of benchmarks/bench_search.py relies on this: same seed, same trials.
    runs = [search.run(data, trials=5, space=tiny_space(), pruner=p, sampler="random", sampler_seed=7,
                       plots=False, log=None) for p in ("none", "median")]
    params = [[t.params for t in r.study.trials] for r in runs]
    assert params[0] == params[1]
    assert runs[0].pruned == 0 and runs[0].epochs_total == 5 * 3
    assert runs[1].epochs_total <= runs[0].epochs_total
    with pytest.raises(search.SearchError, match="sampler"):
        search.open_study(tiny_space(), sampler="grid")


def test_best_trial_is_reproducible_from_its_parameters(data):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    space = tiny_space(pretrainings=["none", "autoencoder"])
    study.optimize(search.make_objective(data, space), n_trials=3)
    net, value = search.reproduce(study.best_trial, data, space)
    assert value == study.best_value


def test_sqlite_resumes_and_journal_shares_a_study(data, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search.run(data, trials=2, storage=url, study="resume", space=tiny_space(), plots=False, log=None)
    result = search.run(data, trials=2, storage=url, study="resume", space=tiny_space(), plots=False, log=None)
    assert result.trials == 4
    journal = f"journal:{tmp_path / 'study.log'}"
    search.run(data, trials=1, storage=journal, study="j", space=tiny_space(), plots=False, log=None)
    result = search.run(data, trials=1, storage=journal, study="j", space=tiny_space(), plots=False, log=None)
    assert result.trials == 2


def test_storage_and_study_errors_are_search_errors(data, tmp_path):
    with pytest.raises(search.SearchError, match="unknown storage URL"):
        search.make_storage("redis://localhost/0")
    with pytest.raises(search.SearchError, match="cannot open"):
        search.make_storage("postgresql://nobody@127.0.0.1:1/none")  # nothing listens on port 1
    url = f"sqlite:///{tmp_path / 's.db'}"
    search.run(data, trials=1, storage=url, study="fixed", space=tiny_space(), plots=False, log=None)
    with pytest.raises(search.SearchError, match="another search space"):
        search.run(data, trials=1, storage=url, study="fixed", space=tiny_space(epochs=2), plots=False, log=None)


def test_invalid_net_from_a_user_space_fails_one_trial_and_keeps_the_others(data, tmp_path):
    def space(trial):
        units = trial.suggest_int("units", 0, 0) if trial.number == 1 else 8
        return {"hidden": [units], "activation": "sigmoid", "pretraining": "none", "optimizer": "sgd", "lr": 0.1,
                "batch_size": 16, "epochs": 2}

    url = f"sqlite:///{tmp_path / 'bad.db'}"
    with pytest.raises(search.SearchError, match="hidden must be a list of positive integers"):
        search.run(data, trials=3, storage=url, study="bad", space=space, plots=False, log=None)
    study = optuna.load_study(study_name="bad", storage=url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]


def test_a_diverging_trial_is_failed_with_its_reason_and_the_search_goes_on(data, tmp_path):
    def space(trial):
        lr = trial.suggest_float("lr", 1e30, 1e30) if trial.number == 1 else 0.1  # float32 overflow: nan
        return {"hidden": [8], "activation": "relu", "pretraining": "none", "optimizer": "sgd", "lr": lr,
                "batch_size": 16, "epochs": 2}

    lines = []
    result = search.run(data, trials=3, space=space, plots=False, log=lines.append)
    states = [t.state for t in result.study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                      optuna.trial.TrialState.COMPLETE]
    assert (result.trials, result.complete, result.failed) == (3, 2, 1)
    assert "became nan" in result.study.trials[1].user_attrs["failure"]
    assert "trial 1: fail" in lines[1] and "lr 1e+30" in lines[1]
    assert result.best_trial in (0, 2) and np.isfinite(result.test_error)


def test_database_lost_mid_search_is_one_error_and_keeps_finished_trials(data, tmp_path):
    def space(trial):
        if trial.number == 1:
            # What Optuna raises when the server goes away; its own cleanup may then raise
            # an unrelated error, so the search looks for the cause along the chain.
            try:
                raise optuna.exceptions.StorageInternalError("connection refused: the server is gone")
            except optuna.exceptions.StorageInternalError:
                raise UnboundLocalError("optuna's cleanup failed too")
        return {"hidden": [6], "activation": "sigmoid", "pretraining": "none", "optimizer": "sgd", "lr": 0.1,
                "batch_size": 16, "epochs": 2}

    url = f"sqlite:///{tmp_path / 'lost.db'}"
    with pytest.raises(search.SearchError, match="database lost during the search.*the server is gone"):
        search.run(data, trials=3, storage=url, study="lost", space=space, plots=False, log=None)
    study = optuna.load_study(study_name="lost", storage=url)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE


def test_cli_search_runs_and_reports_user_errors_in_one_line(tiny_dir, tmp_path, capsys):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(TINY_SPACE))
    out = tmp_path / "out"
    rc = cli.main(["search", "--data", str(tiny_dir), "--split", "160,80", "--trials", "2", "--space", str(space),
                   "--out", str(out), "--no-plots"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["trials"] == 2 and (out / "best_net.npz").exists()
    for args, message in [(["--storage", "redis://x"], "unknown storage URL"),
                          (["--storage", "postgresql://u@127.0.0.1:1/db"], "cannot open"),
                          (["--space", str(tmp_path / "nope.json")], "no such file"),
                          (["--trials", "0"], "trials"),
                          (["--seed", "-1"], "seed")]:
        rc = cli.main(["search", "--data", str(tiny_dir), "--split", "160,80", "--trials", "1", *args,
                       "--out", str(out), "--no-plots"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.startswith("layerwise: error:") and message in err and "\n" not in err


PG_URL = os.environ.get("LAYERWISE_TEST_PG_URL")


@pytest.mark.skipif(not PG_URL, reason="LAYERWISE_TEST_PG_URL is unset (CI starts a PostgreSQL server and sets it)")
def test_two_workers_share_one_postgresql_study(tiny_dir, data, tmp_path):
    pytest.importorskip("psycopg", reason="psycopg is in the optional 'search' extra")
    study_name = f"pg-{uuid.uuid4().hex[:12]}"
    space = tmp_path / "space.json"
    space.write_text(json.dumps(TINY_SPACE))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "layerwise", "search", "--data", str(tiny_dir), "--split", "160,80",
           "--trials", "3", "--storage", PG_URL, "--study", study_name, "--space", str(space), "--no-plots",
           "--threads", "1"]
    workers = [subprocess.Popen(cmd + ["--out", str(tmp_path / f"w{i}")], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [w.communicate(timeout=120) for w in workers]
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 0, err
    study = optuna.load_study(study_name=study_name, storage=search.make_storage(PG_URL))
    assert len(study.trials) == 6  # exactly 3 per worker
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 6
    workers_seen = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers_seen) == 2  # both processes ran trials
    _, value = search.reproduce(study.best_trial, data, search.load_space(space))
    assert value == study.best_value
