"""The CPU GEMM's cache blocking: derived from the caches the CPU reports (the BLIS
analytical model, csrc/cpu/cpuinfo.cpp), reported by _core.cpu_info(), forced by
LAYERWISE_GEMM_BLOCKS="mc,kc,nc" (validated strictly), and correct for every
blocking it may choose."""
import os
import subprocess
import sys

import numpy as np
import pytest

import layerwise as lw
from layerwise import _core
from conftest import cpu_has

KIB, MIB = 1 << 10, 1 << 20
# (name, l1d bytes, l1d ways, l2 bytes, l2 ways, l3 bytes, l3 bytes per core)
CACHES = [
    ("zen3", 32 * KIB, 8, 512 * KIB, 8, 32 * MIB, 4 * MIB),
    ("emerald_rapids", 48 * KIB, 12, 2 * MIB, 16, 160 * MIB, 5 * MIB),
    ("tiny_no_l3", 16 * KIB, 4, 256 * KIB, 8, 0, 0),
]
TILES = {("avx512", 4): (12, 32), ("avx512", 8): (12, 16), ("avx2", 4): (6, 16), ("avx2", 8): (6, 8)}
DTYPES = {4: _core.FLOAT32, 8: _core.FLOAT64}


def derive(cfg, isa, size):
    _, l1, l1w, l2, l2w, l3, l3pc = cfg
    return _core.derive_gemm_blocking(l1, l1w, l2, l2w, l3, l3pc, isa, DTYPES[size])


def assert_sane(b, l1, l1_ways, l2, b_budget, size, tile):
    mr, nr = tile
    assert (b["mr"], b["nr"]) == tile
    assert b["kc"] >= 32 and b["kc"] % 8 == 0
    assert b["mc"] >= mr and b["mc"] % mr == 0
    assert b["nc"] >= nr and b["nc"] % nr == 0
    # The A sliver and the B micro-panel fit in all but one way of L1 ...
    assert (mr + nr) * b["kc"] * size <= l1 * (l1_ways - 1) / l1_ways
    # ... but use more than half of it (the model fills the cache, not a corner of it).
    assert (mr + nr) * b["kc"] * size > l1 / 2
    # The MC x KC block of A takes about half of L2, the KC x NC block of B half of its budget.
    assert l2 / 4 < b["mc"] * b["kc"] * size <= l2 / 2
    assert b_budget / 4 < b["nc"] * b["kc"] * size <= b_budget / 2


@pytest.mark.parametrize("cfg", CACHES, ids=[c[0] for c in CACHES])
@pytest.mark.parametrize("isa,size", sorted(TILES))
def test_derived_blocking_is_sane(cfg, isa, size):
    _, l1, l1w, l2, l2w, l3, l3pc = cfg
    b = derive(cfg, isa, size)
    assert_sane(b, l1, l1w, l2, l3pc if l3pc else l2, size, TILES[isa, size])


def test_derived_blocking_known_values():
    # Worked by hand from the model: float32 on AVX-512 (12 x 32 tile) with a
    # 48 KiB 12-way L1 and 2 MiB L2: kc = 48K * 11/12 / (44 * 4) = 256,
    # mc = 1 MiB / (256 * 4) = 1024 -> 1020 (a multiple of 12).
    b = derive(CACHES[1], "avx512", 4)
    assert (b["kc"], b["mc"]) == (256, 1020)
    # Zen 3, float64 on AVX2 (6 x 8): kc = 32K * 7/8 / (14 * 8) = 256, mc = 256K / 2048 = 128 -> 126.
    b = derive(CACHES[0], "avx2", 8)
    assert (b["kc"], b["mc"]) == (256, 126)
    # A larger L1 never gives a smaller kc.
    small = derive(CACHES[2], "avx2", 4)
    assert small["kc"] < derive(CACHES[0], "avx2", 4)["kc"]


@pytest.mark.parametrize("bad", [
    dict(isa="sse2"), dict(isa=""), dict(dtype=99), dict(l1d_bytes=-1), dict(l2_ways=-3),
    dict(l3_bytes=1 << 50),
])
def test_derive_rejects_bad_arguments(bad):
    args = dict(l1d_bytes=32 * KIB, l1d_ways=8, l2_bytes=512 * KIB, l2_ways=8, l3_bytes=0,
                l3_bytes_per_core=0, isa="avx2", dtype=_core.FLOAT32)
    args.update(bad)
    with pytest.raises(ValueError, match="isa|dtype|caches"):
        _core.derive_gemm_blocking(**args)


def test_cpu_info_reports_this_cpu():
    info = _core.cpu_info()
    for key in ("model", "isa", "cache_source", "l1d_bytes", "l2_bytes", "l3_bytes", "logical_cpus",
                "gemm_float32", "gemm_float64", "gemm_source"):
        assert key in info
    assert info["isa"] == _core.active_isa()
    assert info["cache_source"] in ("sysfs", "cpuid", "default")
    assert info["l1d_bytes"] > 0 and info["logical_cpus"] >= 1
    if info["isa"] == "generic":
        assert info["gemm_float32"]["kc"] == 0 and info["gemm_source"] == "none"
        return
    if info["gemm_source"] != "analytical":
        pytest.skip(f"the blocking here is {info['gemm_source']} (LAYERWISE_GEMM_BLOCKS or a tuning file)")
    l1, l2 = info["l1d_bytes"], info["l2_bytes"] or 256 * KIB
    ways = info["l1d_ways"] if info["l1d_ways"] >= 2 else 8
    budget = info["l3_bytes_per_core"] or l2
    for size, key in ((4, "gemm_float32"), (8, "gemm_float64")):
        b = info[key]
        if b["kc"] in (32, 2048) or b["mc"] == b["mr"]:
            continue  # clamped at a bound: the size checks below do not apply
        tile = TILES[info["isa"], size]
        assert (b["mr"], b["nr"]) == tile
        assert (tile[0] + tile[1]) * b["kc"] * size <= l1 * (ways - 1) / ways
        assert b["mc"] * b["kc"] * size <= l2 / 2
        assert b["nc"] % tile[1] == 0 and b["nc"] * b["kc"] * size <= max(budget / 2, b["kc"] * size * tile[1])


# ---- the GEMM under forced blockings (one process per setting: the variable is read once) ----

CHILD = r"""
import json, sys
import numpy as np
from layerwise import _core, ops
want_isa, want = sys.argv[1], json.loads(sys.argv[2])
assert _core.active_isa() == want_isa, _core.active_isa()
info = _core.cpu_info()
assert info["gemm_source"] == "env", info
for key, size in (("gemm_float32", 4), ("gemm_float64", 8)):
    b = info[key]
    mr, nr = b["mr"], b["nr"]
    assert b["kc"] == want[1], (b, want)
    assert b["mc"] == -(-want[0] // mr) * mr and b["nc"] == -(-want[2] // nr) * nr, (b, want)
rng = np.random.default_rng(5)
for dt, tol in ((np.float32, 2e-5), (np.float64, 1e-12)):
    # Shapes past the small-batch paths (packed GEMM), none a multiple of a tile,
    # K deep enough for several K blocks at the smallest kc.
    for n, k, m in ((50, 300, 37), (131, 97, 70), (64, 1000, 129)):
        x = rng.standard_normal((n, k)).astype(dt)
        w = rng.standard_normal((m, k)).astype(dt)
        b = rng.standard_normal(m).astype(dt)
        X, W, B = (a.astype(np.float64) for a in (x, w, b))
        ref = 1 / (1 + np.exp(-(X @ W.T + B)))
        y = ops.linear_forward(x, w, b, activation="sigmoid")
        np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)
        dy = rng.standard_normal((n, m)).astype(dt)
        DY = dy.astype(np.float64)
        scale = np.sqrt(k)
        np.testing.assert_allclose(ops.linear_backward_data(dy, w), DY @ W, rtol=tol, atol=tol * scale)
        dw0 = rng.standard_normal((m, k)).astype(dt)
        db0 = rng.standard_normal(m).astype(dt)
        dw, db = ops.linear_backward_weights(dy, x, dweight=dw0.copy(), dbias=db0.copy(), accumulate=True)
        np.testing.assert_allclose(dw, dw0 + DY.T @ X, rtol=tol, atol=tol * np.sqrt(n) * 4)
        np.testing.assert_allclose(db, db0 + DY.sum(0), rtol=tol, atol=tol * np.sqrt(n) * 4)
print("ok")
"""

ISAS = [isa for isa in ("avx2", "avx512") if cpu_has(isa) and isa in _core.compiled_isas().split(",")]


def forced_blockings():
    out = []
    for cfg in CACHES:
        b = derive(cfg, "avx2", 4)
        out.append((cfg[0], (b["mc"], b["kc"], b["nc"])))
    out.append(("smallest", (1, 8, 1)))  # mr rows, 8-deep K blocks, one micro-panel wide
    out.append(("large", (4000, 4096, 9000)))
    return out


@pytest.mark.skipif(not ISAS, reason="no vectorized ISA on this CPU")
@pytest.mark.parametrize("name,blocks", forced_blockings(), ids=[n for n, _ in forced_blockings()])
def test_gemm_correct_under_forced_blocking(name, blocks):
    for isa in ISAS:
        env = dict(os.environ, LAYERWISE_ISA=isa, LAYERWISE_GEMM_BLOCKS=",".join(map(str, blocks)))
        r = subprocess.run([sys.executable, "-c", CHILD, isa, "[%d,%d,%d]" % blocks], env=env,
                           capture_output=True, text=True, timeout=240)
        assert r.returncode == 0 and "ok" in r.stdout, f"{isa} {blocks}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


@pytest.mark.parametrize("value,why", [
    ("96,256", "three positive decimal integers"),
    ("96,256,1024,4", "three positive decimal integers"),
    (" 96,256,1024", "three positive decimal integers"),
    ("96,256,10x", "three positive decimal integers"),
    ("-96,256,1024", "three positive decimal integers"),
    ("0,256,1024", "mc must be in"),
    ("96,4,1024", "kc must be in"),
    ("96,256,0", "nc must be in"),
    ("96,256,1234567", "more than 6 digits"),
])
def test_bad_gemm_blocks_env_is_rejected(value, why):
    code = r"""
import sys
from layerwise import _core, ops
import numpy as np
for call in (_core.cpu_info, lambda: ops.linear_forward(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))):
    try:
        call()
    except Exception as e:
        print(type(e).__name__, str(e))
    else:
        print("accepted")
"""
    env = dict(os.environ, LAYERWISE_GEMM_BLOCKS=value)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and len(lines) == 2, r.stdout + r.stderr
    for line in lines:
        assert line.startswith("ValueError") and "LAYERWISE_GEMM_BLOCKS" in line and why in line, line
