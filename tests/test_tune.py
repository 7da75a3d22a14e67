"""lw.tune() / `layerwise tune`: times candidate GEMM blockings, writes the winners
atomically to the user cache dir keyed by CPU model and ISA, and the run-time
choice (lwSetGemmBlocking, applied by tune.load() at import) uses them. Each case
runs in its own process, so the tuned blocking never leaks into other tests."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from layerwise import _core

pytestmark = pytest.mark.skipif(_core.active_isa() == "generic", reason="the generic ISA has no blocking to tune")


def run_py(code, tmp_path, **extra_env):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path), **extra_env)
    env.pop("LAYERWISE_GEMM_BLOCKS", None)
    env.update(extra_env)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)


def test_tune_writes_the_winners_and_load_applies_them(tmp_path):
    code = r"""
import json, os
import numpy as np
import layerwise as lw
from layerwise import _core, ops
rec = lw.tune(1.0)
path = lw.tune.cache_path()
assert path.startswith(os.environ["XDG_CACHE_HOME"]), path
assert os.path.basename(path).startswith("tune-") and path.endswith("-" + _core.active_isa() + ".json")
on_disk = json.load(open(path))
assert on_disk["format"] == "layerwise-tune-1" and on_disk["isa"] == _core.active_isa()
assert set(on_disk["float32"]) == {"batch", "square"}
for cls, e in on_disk["float32"].items():
    assert e["median_s"] > 0 and e["median_s"] <= min(c["median_s"] for c in e["candidates"])
    assert any((c["mc"], c["kc"], c["nc"]) == (e["mc"], e["kc"], e["nc"]) for c in e["candidates"])
assert [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")] == []
info = _core.cpu_info()
assert info["gemm_source"] == "tuned", info
b = info["gemm_float32"]
e = on_disk["float32"]["batch"]
assert (b["kc"], b["mc"] % b["mr"], b["nc"] % b["nr"]) == (e["kc"], 0, 0)
# results stay correct under the tuned blocking
rng = np.random.default_rng(1)
x = rng.standard_normal((128, 300)).astype(np.float32)
w = rng.standard_normal((200, 300)).astype(np.float32)
np.testing.assert_allclose(ops.linear_forward(x, w), x.astype(np.float64) @ w.T.astype(np.float64), rtol=1e-4, atol=1e-4)
lw.tune.reset()
assert _core.cpu_info()["gemm_source"] == "analytical"
print("ok")
"""
    r = run_py(code, tmp_path)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr
    # A fresh process applies the file at import.
    r = run_py("from layerwise import _core; print(_core.cpu_info()['gemm_source'])", tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "tuned", r.stdout + r.stderr
    # LAYERWISE_GEMM_BLOCKS overrides the file.
    r = run_py("from layerwise import _core; print(_core.cpu_info()['gemm_source'])", tmp_path,
               LAYERWISE_GEMM_BLOCKS="96,128,512")
    assert r.returncode == 0 and r.stdout.strip() == "env", r.stdout + r.stderr


@pytest.mark.parametrize("content", [
    "{not json",
    json.dumps({"format": "something-else"}),
    json.dumps({"format": "layerwise-tune-1", "isa": "avx9", "cpu_model": "x", "float32": {}}),
    None,  # right header, bad blocking values: filled in below
])
def test_bad_tuning_file_is_ignored_with_a_warning(tmp_path, content):
    code = r"""
import json, os, sys, warnings
from layerwise import _core
import layerwise.tune
t = sys.modules["layerwise.tune"]
path = t.cache_path()
os.makedirs(os.path.dirname(path), exist_ok=True)
content = sys.argv[1]
if content == "None":
    info = _core.cpu_info()
    content = json.dumps({"format": "layerwise-tune-1", "isa": info["isa"], "cpu_model": info["model"],
                          "float32": {"batch": {"mc": 0, "kc": 256, "nc": 512}}})
open(path, "w").write(content)
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    assert t.load() is False
assert any("ignoring the tuning file" in str(x.message) for x in w), [str(x.message) for x in w]
assert _core.cpu_info()["gemm_source"] == "analytical"
print("ok")
"""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    env.pop("LAYERWISE_GEMM_BLOCKS", None)
    r = subprocess.run([sys.executable, "-c", code, str(content)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr


def test_set_gemm_blocking_validates():
    with pytest.raises(ValueError, match="mc must be"):
        _core.set_gemm_blocking(_core.FLOAT32, 0, (0, 256, 512))
    with pytest.raises(ValueError, match="kc must be"):
        _core.set_gemm_blocking(_core.FLOAT32, 1, (96, 4, 512))
    with pytest.raises(ValueError, match="shape"):
        _core.set_gemm_blocking(_core.FLOAT32, 7, (96, 256, 512))
    with pytest.raises(ValueError, match="dtype"):
        _core.set_gemm_blocking(_core.INT32, 0, (96, 256, 512))
    assert _core.cpu_info()["gemm_source"] in ("analytical", "env", "tuned")


def test_tune_rejects_bad_seconds():
    import layerwise as lw

    for bad in (0, -1, float("nan"), "10", True, 1e9):
        with pytest.raises(ValueError, match="seconds"):
            lw.tune(bad)


def test_cli_tune(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    env.pop("LAYERWISE_GEMM_BLOCKS", None)
    r = subprocess.run([sys.executable, "-m", "layerwise", "tune", "--seconds", "0.5", "--no-write"], env=env,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["path"] is None and set(out["float32"]) == {"batch", "square"}
    assert not os.path.exists(os.path.join(tmp_path, "layerwise"))
    r = subprocess.run([sys.executable, "-m", "layerwise", "tune", "--seconds", "-3"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "seconds" in r.stderr
