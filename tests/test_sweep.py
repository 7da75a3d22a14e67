"""benchmarks/sweep_bengio2006.py: grid parsing everywhere; a two-point sweep of the
smoke preset when real MNIST is available (cache reuse, determinism, JSONL records)."""
import importlib.util
import json
from pathlib import Path

import pytest

from conftest import mnist_dir

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_bengio2006.py"
_spec = importlib.util.spec_from_file_location("sweep_bengio2006", _SCRIPT)
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)

needs_mnist = pytest.mark.skipif(mnist_dir() is None,
                                 reason="real MNIST not available: set LAYERWISE_DATA to its directory")


def test_grid_is_the_cartesian_product():
    assert sweep._grid(None) == [{}]
    assert sweep._grid(["lr=0.1,0.5", "batch_size=20"]) == [{"lr": 0.1, "batch_size": 20},
                                                           {"lr": 0.5, "batch_size": 20}]
    assert sweep._grid(["a=1,2", "b=true,x"]) == [{"a": 1, "b": True}, {"a": 1, "b": "x"},
                                                 {"a": 2, "b": True}, {"a": 2, "b": "x"}]


@pytest.mark.parametrize("item", ["lr", "lr=", "=0.1"])
def test_grid_rejects_malformed_items(item):
    with pytest.raises(SystemExit, match="KEY=V1,V2"):
        sweep._grid([item])


def test_pretraining_grid_needs_a_pretrained_row(capsys):
    with pytest.raises(SystemExit, match="no pretraining"):
        sweep.main(["--row", "shallow", "--preset", "smoke", "--pretrain", "epochs_per_layer=1",
                    "--data", "/nonexistent"])


@needs_mnist
def test_smoke_sweep_caches_pretraining_and_is_deterministic(tmp_path, capsys):
    pytest.importorskip("safetensors", reason="the sweep caches nets with nn.save (safetensors, a dependency of layerwise)")
    argv = ["--row", "dbn", "--preset", "smoke", "--data", str(mnist_dir()), "--threads", "1",
            "--cache", str(tmp_path / "cache"), "--jsonl", str(tmp_path / "s.jsonl"),
            "--finetune", "lr=0.1,0.3"]
    assert sweep.main(argv) == 0
    assert "selected on validation" in capsys.readouterr().out
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert sweep.main(argv) == 0  # second time: the cached pretrained net
    recs = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    # each run visits both grid points once (the GridSampler's order, the same for the same seed)
    assert sorted(r["finetune"]["lr"] for r in recs[:2]) == [0.1, 0.3]
    assert [r["finetune"] for r in recs[:2]] == [r["finetune"] for r in recs[2:]]
    # the first visit trains the pretrained net, every later one loads it from the cache
    assert [r["pretrain_cached"] for r in recs] == [False, True, True, True]
    assert recs[0]["pretrain_seconds"] > 0 and recs[2]["pretrain_seconds"] == 0
    for r in recs:
        assert r["row"] == "dbn" and r["sizes"] == [784, 64, 64, 64, 10]
        assert 0 <= r["valid_error"] < 60 and 0 <= r["test_error"] < 60  # chance is 90%
    # same seed, same cached net: the fine-tuning runs repeat exactly
    assert [r["valid_error"] for r in recs[:2]] == [r["valid_error"] for r in recs[2:]]
    assert [r["test_error"] for r in recs[:2]] == [r["test_error"] for r in recs[2:]]


@needs_mnist
def test_sweep_resumes_from_its_storage(tmp_path, capsys):
    pytest.importorskip("optuna", reason="the sweep runs on Optuna (pip install 'layerwise[search]')")
    jsonl = tmp_path / "s.jsonl"
    argv = ["--row", "shallow", "--preset", "smoke", "--data", str(mnist_dir()), "--threads", "1",
            "--cache", str(tmp_path / "cache"), "--jsonl", str(jsonl), "--finetune", "lr=0.1,0.3",
            "--storage", f"sqlite:///{tmp_path / 'sweep.db'}"]
    assert sweep.main(argv) == 0
    first = capsys.readouterr().out
    assert sweep.main(argv) == 0  # every grid point has a trial in the database: nothing runs again
    second = capsys.readouterr().out
    assert len(jsonl.read_text().splitlines()) == 2
    assert first.splitlines()[-1] == second.splitlines()[-1]  # the same selection, read from the study
    assert "selected on validation" in second


def test_unknown_storage_is_one_line_error():
    pytest.importorskip("optuna", reason="the sweep runs on Optuna (pip install 'layerwise[search]')")
    with pytest.raises(SystemExit, match="sweep: storage"):
        sweep.main(["--row", "shallow", "--preset", "smoke", "--finetune", "lr=0.1", "--storage", "ftp://x",
                    "--data", "/nonexistent"])
