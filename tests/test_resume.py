"""``layerwise bengio2006 --resume``: a smoke run killed with SIGKILL at three random points,
resumed each time, ends with the results.json (and nets) of an uninterrupted run."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from layerwise import nn
from conftest import mnist_dir

pytestmark = pytest.mark.skipif(mnist_dir() is None,
                                reason="real MNIST not available: set LAYERWISE_DATA to its directory")

_TIMING = {"seconds", "pretrain_seconds", "cpu_seconds", "total_seconds", "total_cpu_seconds"}


def _command(out, resume=False):
    cmd = [sys.executable, "-u", "-m", "layerwise", "bengio2006", "--preset", "smoke", "--out", str(out),
           "--no-progress", "--no-plots", "--threads", "1", "--checkpoint-every", "2"]
    return cmd + (["--resume"] if resume else [])


def _env():
    return {**os.environ, "LAYERWISE_DATA": str(mnist_dir())}


def _without_timing(obj):
    if isinstance(obj, dict):
        return {k: _without_timing(v) for k, v in obj.items() if k not in _TIMING}
    if isinstance(obj, list):
        return [_without_timing(v) for v in obj]
    return obj


def _kill_during(out, resume, marker, delay):
    """Starts a run, waits for ``marker`` in its output, then ``delay`` seconds, then SIGKILL."""
    p = subprocess.Popen(_command(out, resume), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=_env())
    seen = []
    for line in p.stdout:
        seen.append(line)
        if marker in line:
            break
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    killed = p.wait(timeout=60) == -signal.SIGKILL
    p.stdout.close()
    return "".join(seen), killed


def test_sigkill_three_times_then_resume_equals_uninterrupted(tmp_path):
    ref = tmp_path / "ref"
    r = subprocess.run(_command(ref), capture_output=True, text=True, env=_env(), timeout=600)
    assert r.returncode == 0, r.stderr
    expected = json.loads((ref / "results.json").read_text())

    out = tmp_path / "killed"
    rng = random.Random(2006)  # three random kill points, reproducible
    # In the first row (started with --resume on an empty --out: nothing to resume, so it starts
    # from the beginning); in the supervised row's pretraining or fine-tuning; in the DBN row.
    plan = [("shallow: 784", False), ("deep_supervised_pretraining: 784", True), ("dbn: 784", True)]
    kills = 0
    for marker, resuming in plan:
        # Checkpoints every 2 batches keep a smoke row busy for a while, so the kill lands in it.
        printed, killed = _kill_during(out, True, marker, rng.uniform(0.0, 0.3))
        assert ("resuming" in printed) == resuming
        if killed:
            kills += 1
            assert json.loads((out / "results.json").read_text())["complete"] is False
    assert kills >= 2  # a very fast machine may finish the last row before its kill
    r = subprocess.run(_command(out, resume=True), capture_output=True, text=True, env=_env(), timeout=600)
    assert r.returncode == 0, r.stderr
    got = json.loads((out / "results.json").read_text())
    assert got["complete"] is True
    assert _without_timing(got) == _without_timing(expected)
    for row in expected["rows"]:
        a, b = nn.load(str(ref / "nets" / f"{row['name']}.safetensors")), nn.load(str(out / "nets" / f"{row['name']}.safetensors"))
        for p, q in zip(a.parameters(), b.parameters()):
            np.testing.assert_array_equal(p.data, q.data)
