"""The bengio2006 experiment as a library (load_data, pretrain, finetune, evaluate_row,
train_row), the record preset's dropout + max-norm fine-tuning, and the registry."""
import dataclasses

import numpy as np
import pytest

from layerwise import nn
from layerwise.experiments import EXPERIMENTS, Experiment, ExperimentError, bengio2006 as b, register
from _lw_helpers import _one_thread, prototypes  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def data():
    X, y = prototypes(n=400, d=16)
    return {"X_train": X[:240], "y_train": y[:240], "X_valid": X[240:320], "y_valid": y[240:320],
            "X_test": X[320:], "y_test": y[320:]}


def _tiny(name):
    """A preset shrunk to seconds on the synthetic data, keeping its recipe."""
    p = b.PRESETS[name]
    ft = {**p.finetune, "max_epochs": 3, "patience": 3, "batch_size": 20}
    pre = {k: {**v, "epochs_per_layer": 1, "batch_size": 20} for k, v in p.pretrain.items()}
    return dataclasses.replace(p, hidden=(12, 12, 20), shallow_hidden=12, finetune=ft, pretrain=pre,
                               overrides={}, grad_examples=50)


def test_steps_of_a_row(data):
    p = _tiny("quick")
    hp, sizes = b.hyperparameters(p, "dbn"), b.architecture(p, "dbn", n_in=16, n_out=4)
    net, info = b.pretrain("rbm", sizes, data, hp, seed=0)
    assert len(info["rbms"]) == 3
    net, hist = b.finetune(net, data, hp, seed=0)
    assert hist.epochs == 3
    row = b.evaluate_row("dbn", net, data, sizes=sizes, hp=hp, history=hist, pretraining_info=info,
                         timing={"seconds": 1.5})
    assert row["name"] == "dbn" and row["architecture"] == sizes and row["seconds"] == 1.5
    assert row["paper"]["test_error"] == 1.2 and 0 <= row["test_error"] <= 100
    assert len(row["pretraining_info"]["reconstruction_error"]) == 3
    with pytest.raises(ValueError, match="kind: unknown pretraining"):
        b.pretrain("pca", sizes, data, hp)


def test_record_preset_fine_tunes_with_dropout_and_max_norm(data, tmp_path):
    # The preset itself uses no max-norm (the pretrained weights' norms exceed any small ball);
    # fit's max_norm is still exercised through the row, on the preset's recipe otherwise.
    hp = b.hyperparameters(b.PRESETS["record"], "dbn")
    assert hp["dropout_input"] == 0.2 and hp["dropout_hidden"] == 0.25 and hp.get("max_norm") is None
    assert hp["pretraining"] == "rbm" and b.PRESETS["record"].hidden == (500, 500, 2000)
    p = _tiny("record")
    p = dataclasses.replace(p, finetune={**p.finetune, "max_norm": 3.5})
    row, net, grads = b.train_row(p, "dbn", data, seed=0, checkpoints=tmp_path)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Dropout", "Linear", "Dropout", "Linear", "Dropout", "Linear", "Dropout", "Linear"]
    for layer in nn.linear_layers(net):
        assert np.linalg.norm(layer.weight.data.astype(np.float64), axis=1).max() <= 3.5 * (1 + 1e-6)
    assert len(grads) == 4 and row["epochs"] == 3
    # Both checkpoints hold finished runs: the row comes back identical without training.
    again, net2, _ = b.train_row(p, "dbn", data, seed=0, checkpoints=tmp_path, resume=True)
    for q, r in zip(net.parameters(), net2.parameters()):
        np.testing.assert_array_equal(q.data, r.data)
    strip = {"seconds", "pretrain_seconds", "cpu_seconds"}
    assert {k: v for k, v in again.items() if k not in strip and k != "history"} == \
           {k: v for k, v in row.items() if k not in strip and k != "history"}


def test_every_preset_is_complete():
    assert set(b.PRESETS) == {"smoke", "quick", "full", "record"}
    quick = b.PRESETS["quick"]
    assert (quick.n_train, quick.n_valid, quick.n_test) == (50000, 10000, None)
    assert quick.hidden == (500, 500, 500)
    for p in b.PRESETS.values():
        for row in b.ROWS:
            hp = b.hyperparameters(p, row)
            assert hp["max_epochs"] >= 1 and hp["patience"] >= 1 and 0 <= hp["momentum"] < 1


def test_load_data_errors_are_experiment_errors(tmp_path):
    with pytest.raises(ExperimentError, match="--data .*: no such directory"):
        b.load_data("smoke", tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ExperimentError, match="--preset huge: unknown preset"):
        b.load_data("huge", tmp_path)
    with pytest.raises(ExperimentError, match="--rows: unknown row"):
        b.run("smoke", rows=["nope"], out=None)


def test_registry_holds_bengio2006_and_rejects_duplicates():
    exp = EXPERIMENTS["bengio2006"]
    assert exp.main is b.main and exp.configure is b.configure_parser
    with pytest.raises(ValueError, match="already registered"):
        register(Experiment("bengio2006", "again", b.configure_parser, b.main))
