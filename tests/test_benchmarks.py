"""The benchmark machinery: the machine probes of _core, the shared harness, and
bench_kernels.py / bench_train.py end to end with --quick (tiny sizes) as
subprocesses. No timing is asserted: only that the numbers exist, are positive
and finite, and that the JSON has the documented shape."""
import json
import math
import os
import subprocess
import sys

import pytest

import layerwise
from layerwise import _core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCH)
import _harness as H  # noqa: E402


def positive_finite(v):
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


# ---- probes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2])
def test_fma_peak_is_positive_finite(threads):
    assert positive_finite(_core.measure_fma_peak(threads, 0.005, 1))


@pytest.mark.parametrize("threads", [1, 3])
def test_copy_bandwidth_is_positive_finite(threads):
    # 1 MiB + an odd tail: slices are page-aligned, the last one ends mid-page.
    assert positive_finite(_core.measure_copy_bandwidth(threads, (1 << 20) + 12345, 2))


@pytest.mark.parametrize("args, name", [((0, 0.01, 1), "nthreads"), ((1, 0.0, 1), "min_seconds"),
                                        ((1, float("nan"), 1), "min_seconds"), ((1, 0.01, 0), "repeats"),
                                        ((5000, 0.01, 1), "nthreads")])
def test_fma_peak_rejects_bad_arguments(args, name):
    with pytest.raises(ValueError, match=name):
        _core.measure_fma_peak(*args)


@pytest.mark.parametrize("args, name", [((0, 1 << 20, 1), "nthreads"), ((1, 100, 1), "bytes"),
                                        ((1, 1 << 40, 1), "bytes"), ((1, 1 << 20, 0), "repeats")])
def test_copy_bandwidth_rejects_bad_arguments(args, name):
    with pytest.raises(ValueError, match=name):
        _core.measure_copy_bandwidth(*args)


def test_fma_peak_under_each_forced_isa():
    """The probe follows LAYERWISE_ISA like the kernels (checked in a fresh process)."""
    for isa in ["generic"] + [i for i in ("avx2", "avx512") if i in layerwise.backend_info()["isas_compiled"]]:
        code = ("import layerwise, layerwise._core as c; "
                "print(layerwise.backend_info()['isa'], c.measure_fma_peak(1, 0.005, 1))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env=dict(os.environ, LAYERWISE_ISA=isa)).stdout.split()
        assert positive_finite(float(out[1]))
        if isa == "generic":
            assert out[0] == "generic"


# ---- harness -----------------------------------------------------------------------------------
def test_spread_and_ratio():
    s = H.spread([3.0, 1.0, None, 2.0, 10.0])
    assert s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 10.0 and s["n"] == 4
    assert s["q1"] <= s["median"] <= s["q3"]
    assert H.spread([None]) is None
    assert H.ratio(4.0, 2.0) == 2.0
    assert H.ratio(1.0, 0.0) is None and H.ratio(None, 1.0) is None and H.ratio(float("inf"), 1.0) is None


def test_worker_env_pins_every_pool():
    env = H.worker_env(3, {"LAYERWISE_ISA": "generic"})
    assert all(env[v] == "3" for v in H.THREAD_VARIABLES)
    assert env["LAYERWISE_ISA"] == "generic"


def test_cache_sizes_are_bytes():
    caches = H.cache_sizes()
    assert all(isinstance(v, int) and v > 0 for v in caches.values())
    assert H.copy_buffer_bytes(caches) >= 64 << 20


def test_worker_keeps_stray_prints_out_of_the_result(tmp_path):
    script = tmp_path / "noisy.py"
    script.write_text("def work(p):\n    print('library chatter')\n    return {'twice': 2 * p['x']}\n")
    assert H.run_worker(str(script), "work", {"x": 21}, dict(os.environ), 60) == {"twice": 42}


def test_failing_worker_raises_with_its_error(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("def work(p):\n    raise KeyError('missing case')\n")
    with pytest.raises(RuntimeError, match="missing case"):
        H.run_worker(str(script), "work", {}, dict(os.environ), 60)


# ---- the benchmarks end to end -----------------------------------------------------------------
def run_bench(tmp_path, script, *extra):
    """--no-torch: torch's start-up and its spinning OpenMP on a busy 2-core machine would
    make this a minutes-long test; the torch contender has its own worker-level tests below."""
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, os.path.join(BENCH, script), "--quick", "--repeats", "2",
                           "--no-torch", "--json", str(out), *extra], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text()), proc.stdout


def check_machine(machine, variants):
    assert machine["cpu_model"] and machine["threads"] >= 1
    assert set(machine["probes"]) == set(variants)
    for p in machine["probes"].values():
        for key in ("fma_gflops_1_thread", "fma_gflops_all_threads", "copy_gbps_1_thread",
                    "copy_gbps_all_threads"):
            assert positive_finite(p[key]), key
        assert p["kernel_isa"] == p["isa"]


def test_bench_kernels_quick(tmp_path):
    data, text = run_bench(tmp_path, "bench_kernels.py", "--isa", "generic")
    check_machine(data["machine"], ["layerwise[generic]"] if layerwise.backend_info()["isa"] != "generic"
                  else ["layerwise"])
    variant = next(iter(data["machine"]["probes"]))
    assert data["machine"]["probes"][variant]["isa"] == "generic"
    contenders = data["settings"]["contenders"]
    assert contenders[:2] == [variant, "numpy"]
    rows = data["rows"]
    kinds = {r["kind"] for r in rows}
    assert kinds == {"gemm", "elementwise", "optimizer"}
    assert {r["op"] for r in rows} >= {"fwd_identity", "fwd_sigmoid", "bwd_data", "bwd_weights",
                                      "act_fwd_sigmoid", "act_bwd_sigmoid", "softmax", "sgd_momentum"}
    for r in rows:
        assert not r["errors"], r["errors"]
        for name in contenders:
            assert name in r["seconds"], (r["id"], name)
            s = r["seconds"][name]
            assert s["n"] == 2 and 0 < s["min"] <= s["median"] <= s["max"]
            assert positive_finite(r["rate"][name]["median"])
        for other in contenders[1:]:
            assert positive_finite(r["ratios"][f"{variant}/{other}"])
    targets = data["targets"]
    assert {t["target"] for t in targets} >= {">= numpy", ">= 1.5x numpy", ">= 85% FMA peak",
                                              ">= 80% copy bandwidth"}
    for t in targets:
        assert isinstance(t["pass"], bool) and positive_finite(t["value"]) and t["need"] > 0
    assert "targets met" in text and "| row |" in text


def test_bench_train_quick(tmp_path):
    data, text = run_bench(tmp_path, "bench_train.py", "--batches", "10", "32")
    check_machine(data["machine"], ["layerwise"])
    assert data["parameters"] > 0 and data["flops_per_sample"] > 0 and data["bytes_per_step"] > 0
    contenders = data["settings"]["contenders"]
    assert [r["batch"] for r in data["rows"]] == [10, 32]
    for r in data["rows"]:
        for name in contenders:
            sps = r["samples_per_second"][name]
            assert 0 < sps["min"] <= sps["median"] <= sps["max"]
        for other in contenders[1:]:
            assert positive_finite(r["ratios"][f"layerwise/{other}"])
        lim = r["limits"]["layerwise"]
        for key in ("bytes_limit_samples_per_second", "flops_limit_samples_per_second",
                    "fraction_of_bytes_limit", "fraction_of_flops_limit"):
            assert positive_finite(lim[key]), key
    assert "| batch |" in text


def test_torch_workers_time_every_case(tmp_path):
    """The torch contenders' calls (F.linear, aten sigmoid_backward, torch.optim foreach, the
    torch.nn training loop) on one case of each op, in a process of their own like in a real
    run, on one thread. Both workers share the process: importing torch is most of the cost."""
    pytest.importorskip("torch")
    import bench_kernels as BK
    import bench_train as BT

    picked = {}
    for c in BK.make_cases(quick=True, with_optimizers=True):
        picked.setdefault(c["op"], c)
    script = tmp_path / "both.py"
    script.write_text(f"import sys\nsys.path.insert(0, {BENCH!r})\nimport bench_kernels, bench_train\n"
                      "def work(p):\n"
                      "    return [bench_kernels.kernel_worker(p['k']), bench_train.train_worker(p['t'])]\n")
    payload = {"k": {"contender": "torch", "threads": 1, "cases": list(picked.values()), "min_time": 1e-4,
                     "samples": 1},
               "t": {"contender": "torch", "threads": 1, "sizes": BT.QUICK_SIZES, "samples": 40,
                     "batches": [10, 32]}}
    kernels, train = H.run_worker(str(script), "work", payload, H.worker_env(1), 240)
    assert not kernels["errors"], kernels["errors"]
    assert set(kernels["seconds"]) == {c["id"] for c in picked.values()}
    assert all(positive_finite(v) for v in kernels["seconds"].values())
    assert set(train["seconds"]) == {"10", "32"} and all(positive_finite(v) for v in train["seconds"].values())


@pytest.mark.parametrize("contender", ["numpy", "layerwise"])
def test_optimizer_rows(contender):
    """Adam/AdamW/RMSprop/Adagrad rows: NumPy always; layerwise once ops.optimizer_step exists."""
    if contender == "layerwise" and not hasattr(layerwise.ops, "optimizer_step"):
        pytest.skip("layerwise.ops has no optimizer_step in this build")
    import bench_kernels as BK

    cases = [c for c in BK.make_cases(quick=True, with_optimizers=True) if c["kind"] == "optimizer"]
    assert {c["op"] for c in cases} == set(BK.OPTIMIZERS)
    payload = {"contender": contender, "threads": 1, "cases": cases, "min_time": 1e-4, "samples": 1}
    out = H.run_worker(os.path.join(BENCH, "bench_kernels.py"), "kernel_worker", payload, H.worker_env(1), 120)
    assert not out["errors"], out["errors"]
    assert set(out["seconds"]) == {c["id"] for c in cases}
    assert all(positive_finite(v) for v in out["seconds"].values())


@pytest.mark.parametrize("script", ["bench_kernels.py", "bench_train.py"])
def test_bench_rejects_bad_options(script):
    proc = subprocess.run([sys.executable, os.path.join(BENCH, script), "--threads", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--threads" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_inference_quick_writes_its_json(tmp_path):
    """bench_inference --quick end to end (onnxruntime and torch left out: their start-up is
    the cost) with the C++ contender absent: every Python contender agrees and is timed."""
    out = tmp_path / "inference.json"
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "bench_inference.py"), "--quick", "--batches", "1", "3",
                           "--contenders", "layerwise-python", "numpy", "--json", str(out)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "inference" and not doc["wrong"]
    assert set(doc["results"]) >= {"layerwise-python", "numpy"}


def test_bench_search_quick_measures_every_part(tmp_path):
    """bench_search --quick end to end on a 600 / 300 cut of MNIST: every part records what
    issue 17's targets are judged on."""
    pytest.importorskip("optuna", reason="Optuna is in the optional 'search' extra")
    if not os.environ.get("LAYERWISE_DATA"):
        pytest.skip("LAYERWISE_DATA is unset (the MNIST IDX directory)")
    out = tmp_path / "search.json"
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "bench_search.py"), "all", "--quick",
                           "--out", str(tmp_path / "out"), "--json", str(out)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    runs = doc["pruning"]["runs"]
    assert runs["none"]["pruned"] == 0 and runs["none"]["trials"] == runs["median"]["trials"] == 4
    assert runs["median"]["epochs_total"] <= runs["none"]["epochs_total"] == 4 * 3
    assert doc["pruning"]["epochs_saved_fraction"] == pytest.approx(
        1 - runs["median"]["epochs_total"] / runs["none"]["epochs_total"], abs=1e-4)
    for workload in ("fixed", "mixed"):
        times = doc["workers"][workload]
        assert all(positive_finite(times[k]) for k in ("one_worker_all_threads", "one_worker_one_thread",
                                                        "two_workers_one_thread"))
    assert len(doc["workers"]["mixed"]["configs"]) == 2
    head = doc["headline"]
    assert head["trials"] >= 1 and head["complete"] >= 1 and 0 <= head["best_value"] <= 100
    assert (tmp_path / "out" / "headline" / "best.json").exists()
    nets = {k: v for k, v in doc["topology"].items() if k not in ("measured_utc", "quick", "figure")}
    assert doc["topology"]["figure"].endswith("topology.png") and os.path.exists(doc["topology"]["figure"])
    assert set(nets) == {"row", "search_winner"}  # the headline's winner is pruned too
    for topo in nets.values():
        assert 0 <= topo["units_removed_fraction"] < 1 and sum(topo["hidden_after"]) <= sum(topo["hidden_before"])
        assert topo["curve"][0]["units"] == sum(topo["hidden_before"]) and len(topo["curve"]) == topo["rounds"] + 1
    assert doc["machine"]["cpu_model"] and positive_finite(doc["machine"]["probes"]["layerwise"]["fma_gflops_1_thread"])
