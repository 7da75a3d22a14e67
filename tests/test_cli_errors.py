"""Every user error of ``layerwise bengio2006`` is one line on stderr and exit status 2,
never a traceback; nothing is created where it should not be."""
import json
import os
import subprocess
import sys

import pytest

from conftest import mnist_dir


def _run(*argv, timeout=120):
    env = {**os.environ, "LAYERWISE_DATA": "/nonexistent-layerwise-test"}  # no fallback to a real copy
    return subprocess.run([sys.executable, "-m", "layerwise", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _assert_one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and "error" in lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_user_errors_are_one_line(tmp_path):
    out = tmp_path / "out"
    base = ["bengio2006", "--no-progress", "--no-plots"]

    # A mistyped --data directory is an error, and is not created.
    missing = tmp_path / "no-such-dir"
    _assert_one_line_error(_run(*base, "--data", missing, "--out", out), "--data", "no such directory")
    assert not missing.exists()

    # Files that are not IDX: named as MNIST's, but garbage.
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (bad / name).write_bytes(b"\x00\x00\x08")
    _assert_one_line_error(_run(*base, "--data", bad, "--out", out), "cannot load MNIST", "IDX")
    assert not (out / "results.json").exists()

    # --out below a regular file cannot be created.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _assert_one_line_error(_run(*base, "--data", bad, "--out", blocker / "sub"), "--out", "not a writable")

    # Option errors from argparse: one line too.
    for argv, word in [(["--preset", "huge"], "--preset"), (["--seed", "-1"], "--seed"),
                       (["--rows", "shallow,deep"], "--rows"), (["--checkpoint-every", "0"], "--checkpoint-every"),
                       (["--threads", "0"], "--threads"), (["--device", "tpu"], "--device")]:
        _assert_one_line_error(_run(*base, *argv), word)
    _assert_one_line_error(_run("no-such-command"), "invalid choice")

    # --resume onto another run's results.json.
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps({"run_key": {"other": 1}, "preset": "full", "seed": 3,
                                                  "rows": []}))
    _assert_one_line_error(_run(*base, "--preset", "smoke", "--data", bad, "--out", out, "--resume"),
                           "--resume", "another run")
    (out / "results.json").write_text("{ not json")
    _assert_one_line_error(_run(*base, "--preset", "smoke", "--data", bad, "--out", out, "--resume"),
                           "--resume", "cannot read")


@pytest.mark.skipif(mnist_dir() is None, reason="real MNIST not available: set LAYERWISE_DATA to its directory")
def test_stale_results_are_replaced_before_training(tmp_path):
    """A new run (no --resume) removes a previous run's results.json and nets at once; the file
    that replaces it says "complete": false until the run ends."""
    out = tmp_path / "out"
    (out / "nets").mkdir(parents=True)
    (out / "nets" / "dbn.safetensors").write_text("old")
    (out / "results.json").write_text(json.dumps({"preset": "full", "complete": True, "rows": [{"name": "x"}]}))
    env = {**os.environ, "LAYERWISE_DATA": str(mnist_dir())}
    p = subprocess.Popen([sys.executable, "-u", "-m", "layerwise", "bengio2006", "--preset", "smoke", "--out",
                          str(out), "--rows", "shallow", "--no-progress", "--no-plots", "--threads", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in p.stdout:
        if "shallow: 784" in line:  # training has started
            res = json.loads((out / "results.json").read_text())
            assert res["complete"] is False and res["preset"] == "smoke" and res["rows"] == []
            assert not (out / "nets" / "dbn.safetensors").exists()
            break
    p.stdout.read()
    assert p.wait(timeout=300) == 0, p.stderr.read()
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] is True and [r["name"] for r in res["rows"]] == ["shallow"]
    assert (out / "nets" / "shallow.safetensors").is_file() and not (out / "checkpoints").exists()


@pytest.mark.skipif(mnist_dir() is None, reason="real MNIST not available: set LAYERWISE_DATA to its directory")
def test_ctrl_c_is_one_line_and_keeps_the_run_resumable(tmp_path):
    import signal

    out = tmp_path / "out"
    env = {**os.environ, "LAYERWISE_DATA": str(mnist_dir())}
    cmd = [sys.executable, "-u", "-m", "layerwise", "bengio2006", "--preset", "smoke", "--out", str(out), "--rows",
           "shallow,dbn", "--no-progress", "--no-plots", "--threads", "1"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in p.stdout:
        if "dbn: 784" in line:  # the shallow row is finished, the DBN row (seconds long) starts
            break
    p.send_signal(signal.SIGINT)
    p.stdout.read()
    err = p.stderr.read()
    assert p.wait(timeout=120) == 130, err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err and "Traceback" not in err
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] is False and [r["name"] for r in res["rows"]] in (["shallow"], ["shallow", "dbn"])
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] is True and [r["name"] for r in res["rows"]] == ["shallow", "dbn"]
