"""Model files: nn.save / nn.load on the safetensors format v1 and the old .npz files.

Round trips for every loadable module, the exact layout other languages rely on, atomic
saves, and crafted files that must fail with a ValueError naming the file and the
problem, before anything large is allocated."""
import json
import os
import struct
import tracemalloc

import numpy as np
import pytest

import layerwise as lw
from layerwise import nn
from layerwise.pretrain import RBM, AutoEncoder

safetensors = pytest.importorskip("safetensors", reason="model files need safetensors, a dependency of layerwise")
import safetensors.numpy  # noqa: E402
from safetensors import safe_open  # noqa: E402

RNG = np.random.default_rng(3)


def _x(n, d, dtype="float32"):
    return RNG.uniform(0, 1, size=(n, d)).astype(dtype)


def _assert_same_net(a, b, x):
    assert a.config() == b.config()
    names_a, names_b = [n for n, _ in a.named_parameters()], [n for n, _ in b.named_parameters()]
    assert names_a == names_b
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert p.data.dtype == q.data.dtype
        np.testing.assert_array_equal(p.data, q.data)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))


# ---- round trips and layout ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mlp_round_trip_and_layout(tmp_path, dtype):
    net = nn.mlp([7, 6, 5, 3], dtype=dtype, seed=2, dropout=0.25)
    path = tmp_path / "net.safetensors"
    nn.save(net, path)
    _assert_same_net(net, nn.load(path), _x(9, 7, dtype))
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
        assert meta["format"] == "layerwise" and meta["format_version"] == "1" and meta["dtype"] == dtype
        assert json.loads(meta["architecture"]) == net.config()
        assert sorted(f.keys()) == sorted(["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"])
        assert f.get_slice("2.weight").get_shape() == [5, 6]
        assert f.get_slice("0.bias").get_dtype() == ("F32" if dtype == "float32" else "F64")
        np.testing.assert_array_equal(f.get_tensor("4.weight"), net[4].weight.data)


def test_header_bytes_follow_the_safetensors_layout(tmp_path):
    net = nn.Linear(3, 2, activation="tanh", rng=1)
    path = tmp_path / "lin.st"
    nn.save(net, path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert set(header) == {"__metadata__", "weight", "bias"}  # a bare Linear: no index prefix
    lo, hi = header["weight"]["data_offsets"]
    w = np.frombuffer(raw[8 + n + lo:8 + n + hi], dtype="<f4").reshape(header["weight"]["shape"])
    np.testing.assert_array_equal(w, net.weight.data)


def test_nested_sequential_names_and_round_trip(tmp_path):
    inner = nn.Sequential(nn.Linear(4, 3, rng=0), nn.Sigmoid(), nn.Linear(3, 3, bias=False, rng=1))
    net = nn.Sequential(nn.Linear(5, 4, activation="relu", rng=2), inner, nn.Linear(3, 2, rng=3))
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias", "1.0.weight", "1.0.bias",
                                                      "1.2.weight", "2.weight", "2.bias"]
    nn.save(net, tmp_path / "n")
    _assert_same_net(net, nn.load(tmp_path / "n"), _x(4, 5))


@pytest.mark.parametrize("tied", [False, True])
def test_autoencoder_round_trip(tmp_path, tied):
    ae = AutoEncoder(6, 4, activation="tanh", output_activation="sigmoid", tied=tied, noise=0.2, seed=9, rng=4)
    x = _x(16, 6)
    lw.train.fit(ae, x, x, loss="quadratic", epochs=1, batch_size=8, progress=False)
    nn.save(ae, tmp_path / "ae")
    loaded = nn.load(tmp_path / "ae")
    assert isinstance(loaded, AutoEncoder) and loaded.tied == tied and loaded.noise == 0.2 and loaded.seed == 9
    _assert_same_net(ae, loaded, x)


def test_rbm_and_stack_with_rbm_round_trip(tmp_path):
    rbm = RBM(6, 3, seed=5, rng=1)
    rbm.cd_step(_x(8, 6), lr=0.1)
    net = nn.Sequential(nn.Linear(4, 6, activation="sigmoid", rng=0), rbm)
    nn.save(net, tmp_path / "r")
    loaded = nn.load(tmp_path / "r")
    assert isinstance(loaded[1], RBM) and loaded[1].seed == 5
    assert [n for n, _ in loaded.named_parameters()][-3:] == ["1.weight", "1.hidden_bias", "1.visible_bias"]
    _assert_same_net(net, loaded, _x(5, 4))


def test_modules_without_parameters_round_trip(tmp_path):
    net = nn.Sequential(nn.Tanh(), nn.Dropout(0.5, seed=3))
    nn.save(net, tmp_path / "p")
    loaded = nn.load(tmp_path / "p")
    assert loaded.config() == net.config() and loaded.parameters() == []


def test_save_rejects_what_it_cannot_write(tmp_path):
    with pytest.raises(TypeError, match="net"):
        nn.save("not a net", tmp_path / "x")
    net = nn.mlp([3, 2, 2])
    net[1].weight.data = net[1].weight.data.astype(np.float64)
    with pytest.raises(ValueError, match="mix dtypes"):
        nn.save(net, tmp_path / "x")
    assert not (tmp_path / "x").exists()


# ---- atomic save ---------------------------------------------------------------------------------
def _saved_pair(tmp_path):
    old, new = nn.mlp([5, 4, 2], seed=1), nn.mlp([5, 4, 2], seed=2)
    path = tmp_path / "model"
    nn.save(old, path)
    return old, new, path


def _assert_intact(old, path):
    _assert_same_net(old, nn.load(path), _x(3, 5))
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temporary file left behind


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    old, new, path = _saved_pair(tmp_path)

    def write_half_then_fail(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"__meta")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save_file", write_half_then_fail)
    with pytest.raises(OSError, match="No space"):
        nn.save(new, path)
    _assert_intact(old, path)


def test_failed_fsync_and_interrupt_keep_the_old_file(tmp_path, monkeypatch):
    old, new, path = _saved_pair(tmp_path)

    def fail(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="Input/output"):
        nn.save(new, path)
    _assert_intact(old, path)

    def interrupt(src, dst):
        raise KeyboardInterrupt

    monkeypatch.undo()
    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        nn.save(new, path)
    monkeypatch.undo()
    _assert_intact(old, path)


def test_unwritable_directory_keeps_the_old_file(tmp_path, monkeypatch):
    old, new, path = _saved_pair(tmp_path)
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError):
        nn.save(new, path)
    monkeypatch.undo()
    _assert_intact(old, path)


def _make_read_only(directory):
    """Makes ``directory`` refuse new files; returns the undo, or skips where that is impossible.

    chmod does not stop root, so as root the directory is made immutable (chattr +i) instead."""
    import shutil
    import subprocess

    if not hasattr(os, "geteuid"):
        pytest.skip("no POSIX permissions here")
    if os.geteuid() != 0:
        os.chmod(directory, 0o500)
        return lambda: os.chmod(directory, 0o700)
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(directory)], capture_output=True).returncode != 0:
        pytest.skip("running as root and the file system has no immutable flag (chattr +i)")
    return lambda: subprocess.run([chattr, "-i", str(directory)], check=True)


def test_read_only_directory_keeps_the_old_file(tmp_path):
    old, new, path = _saved_pair(tmp_path)
    undo = _make_read_only(tmp_path)
    try:
        with pytest.raises(PermissionError):
            nn.save(new, path)
        _assert_intact(old, path)
    finally:
        undo()


def test_saved_file_gets_normal_permissions(tmp_path):
    nn.save(nn.Linear(2, 2, rng=0), tmp_path / "m")
    umask = os.umask(0o022)
    os.umask(umask)
    assert (os.stat(tmp_path / "m").st_mode & 0o777) == (0o666 & ~umask)


# ---- crafted safetensors files ---------------------------------------------------------------------
LINEAR = {"type": "Linear", "in_features": 3, "out_features": 2, "bias": True, "activation": "sigmoid"}


def _meta(arch=LINEAR, dtype="float32", **over):
    m = {"format": "layerwise", "format_version": "1", "dtype": dtype,
         "architecture": arch if isinstance(arch, str) else json.dumps(arch)}
    m.update(over)
    return m


def _write(path, tensors, metadata):
    path.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))
    return path


def _raw(path, header, data=b""):
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)
    return path


def _linear_tensors(dtype=np.float32, **over):
    t = {"weight": np.ones((2, 3), dtype), "bias": np.zeros(2, dtype)}
    t.update(over)
    return {k: v for k, v in t.items() if v is not None}


def _rejects(path, match):
    with pytest.raises(ValueError, match=match) as info:
        nn.load(path)
    assert str(path) in str(info.value)


def test_valid_crafted_file_loads(tmp_path):
    net = nn.load(_write(tmp_path / "ok", _linear_tensors(), _meta()))
    assert isinstance(net, nn.Linear) and net.activation == "sigmoid"
    np.testing.assert_array_equal(net.weight.data, np.ones((2, 3), np.float32))


@pytest.mark.parametrize("bad,match", [
    ({"weight": None}, r"missing tensor.*weight"),
    ({"extra": np.zeros(1, np.float32)}, r"unexpected tensor.*extra"),
    ({"weight": np.ones((3, 2), np.float32)}, r"weight.*shape \[3, 2\].*\[2, 3\]"),
    ({"bias": np.zeros(2, np.float16)}, r"bias.*dtype F16"),
    ({"bias": np.zeros(2, np.int64)}, r"bias.*dtype I64"),
    ({"bias": np.zeros(2, bool)}, r"bias.*dtype BOOL"),
    ({"bias": np.zeros(2, np.float64)}, r"bias.*dtype F64.*F32"),
])
def test_tensor_problems_are_named(tmp_path, bad, match):
    _rejects(_write(tmp_path / "bad", _linear_tensors(**bad), _meta()), match)


@pytest.mark.parametrize("meta,match", [
    (dict(format="other"), "not a layerwise model file"),
    (dict(format_version="2"), "format_version '2'"),
    (dict(dtype="float16"), "dtype 'float16'"),
    (dict(architecture="{not json"), "not valid JSON"),
    (dict(architecture="[" * 100_000 + "]" * 100_000), "nested too deeply|nested more than"),
])
def test_metadata_problems_are_named(tmp_path, meta, match):
    _rejects(_write(tmp_path / "bad", _linear_tensors(), _meta(**meta)), match)


@pytest.mark.parametrize("arch,match", [
    ({"type": "Conv2d", "channels": 3}, "unknown module type 'Conv2d'"),
    ([1, 2], "not a JSON object"),
    (dict(LINEAR, in_features=0), r"in_features is 0, expected an integer in \[1"),
    (dict(LINEAR, in_features=-3), r"in_features is -3"),
    (dict(LINEAR, in_features=10 ** 12), r"in_features is 1000000000000"),
    (dict(LINEAR, in_features=3.0), r"in_features is 3.0"),
    (dict(LINEAR, bias=1), "bias is 1, expected true or false"),
    (dict(LINEAR, activation="gelu"), "activation is \"gelu\""),
    (dict(LINEAR, extra=1), r"unknown \['extra'\]"),
    ({"type": "Linear", "in_features": 3}, r"missing \['activation', 'bias', 'out_features'\]"),
    ({"type": "Sequential", "modules": 5}, "no list of modules"),
    ({"type": "Sequential", "modules": [{"type": "Dropout", "p": 1.5, "seed": 0}]}, r"p is 1.5"),
])
def test_architecture_problems_are_named(tmp_path, arch, match):
    _rejects(_write(tmp_path / "bad", _linear_tensors(), _meta(arch)), match)


def test_deep_and_wide_architectures_are_bounded(tmp_path):
    deep = {"type": "Sequential", "modules": []}
    for _ in range(100):
        deep = {"type": "Sequential", "modules": [deep]}
    _rejects(_write(tmp_path / "deep", {}, _meta(deep)), "nested more than")
    wide = {"type": "Sequential", "modules": [{"type": "Activation", "mode": "tanh"}] * 100_001}
    _rejects(_write(tmp_path / "wide", {}, _meta(wide)), "more than 100000 modules")


def test_unchainable_architecture_is_a_value_error(tmp_path):
    arch = {"type": "Sequential", "modules": [LINEAR, dict(LINEAR, in_features=5)]}
    t = {"0.weight": np.ones((2, 3), np.float32), "0.bias": np.zeros(2, np.float32),
         "1.weight": np.ones((2, 5), np.float32), "1.bias": np.zeros(2, np.float32)}
    _rejects(_write(tmp_path / "chain", t, _meta(arch)), "does not chain")


def test_truncated_and_garbage_files(tmp_path):
    good = _write(tmp_path / "good", _linear_tensors(), _meta()).read_bytes()
    for cut in (0, 5, 8, 20, len(good) // 2, len(good) - 1):
        p = tmp_path / f"cut{cut}"
        p.write_bytes(good[:cut])
        _rejects(p, "too short|exceeds the file size|not a valid safetensors")
    p = tmp_path / "garbage"
    p.write_bytes(bytes(RNG.integers(0, 256, size=1000, dtype=np.uint8)))
    _rejects(p, "exceeds the file size|not a valid safetensors|not a valid .npz")
    p = tmp_path / "header"
    p.write_bytes(struct.pack("<Q", 40) + b"x" * 40)
    _rejects(p, "not a valid safetensors")


def test_crafted_huge_layer_is_rejected_with_bounded_memory(tmp_path):
    big = dict(LINEAR, in_features=100_000, out_features=100_000)
    header = {"__metadata__": _meta(big),
              "weight": {"dtype": "F32", "shape": [100_000, 100_000], "data_offsets": [0, 40_000_000_000]},
              "bias": {"dtype": "F32", "shape": [100_000], "data_offsets": [40_000_000_000, 40_000_400_000]}}
    claims = _raw(tmp_path / "claims", header, b"\0" * 512)
    small = {"__metadata__": _meta(big),
             "weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
             "bias": {"dtype": "F32", "shape": [2], "data_offsets": [24, 32]}}
    lies = _raw(tmp_path / "lies", small, b"\0" * 32)
    assert os.path.getsize(claims) < 1024 and os.path.getsize(lies) < 1024
    for path, match in ((claims, "not a valid safetensors"), (lies, r"shape \[2, 3\].*\[100000, 100000\]")):
        tracemalloc.start()
        try:
            _rejects(path, match)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 * 2 ** 20, f"{path.name}: peak {peak} bytes"


def test_io_errors_are_oserrors(tmp_path):
    with pytest.raises(FileNotFoundError):
        nn.load(tmp_path / "absent")
    with pytest.raises(IsADirectoryError):
        nn.load(tmp_path)


def test_missing_safetensors_is_a_clear_import_error(tmp_path, monkeypatch):
    import sys

    path = _write(tmp_path / "ok", _linear_tensors(), _meta())
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    for call in (lambda: nn.save(nn.Linear(2, 2), tmp_path / "x"), lambda: nn.load(path)):
        with pytest.raises(ImportError, match=r"pip install safetensors"):
            call()


# ---- the old .npz files ------------------------------------------------------------------------------
def _write_npz(path, architecture, params, dtype="float32", fmt="layerwise-net-1"):
    """An .npz exactly as nn.save wrote them before format v1."""
    meta = {"format": fmt, "architecture": architecture, "dtype": dtype, "names": []}
    with open(path, "wb") as f:
        np.savez(f, __meta__=np.array(json.dumps(meta)), **{f"param_{i}": a for i, a in enumerate(params)})
    return path


def test_old_npz_files_still_load(tmp_path):
    net = nn.mlp([5, 4, 3], seed=4, dropout=0.2)
    path = _write_npz(tmp_path / "old.npz", net.config(), [p.data for p in net.parameters()])
    _assert_same_net(net, nn.load(path), _x(6, 5))


@pytest.mark.parametrize("change,match", [
    (lambda ps: ps[:-1], "holds 3 parameters, the architecture needs 4"),
    (lambda ps: ps + [np.zeros(3, np.float32)], "holds 5 parameters, the architecture needs 4"),
    (lambda ps: [ps[0].T.copy()] + ps[1:], r"parameter 0 \(0.weight\) has shape \[5, 4\]"),
    (lambda ps: ps[:1] + [ps[1].astype(np.float16)] + ps[2:], r"parameter 1 \(0.bias\) has dtype float16"),
    (lambda ps: ps[:3] + [np.zeros(3, np.int64)], "dtype int64"),
    (lambda ps: ps[:3] + [np.zeros(3, bool)], "dtype bool"),
    (lambda ps: ps[:3] + [np.zeros(3, ">f4")], "dtype >f4"),
])
def test_old_npz_files_are_checked_strictly(tmp_path, change, match):
    net = nn.mlp([5, 4, 3], seed=4)
    path = _write_npz(tmp_path / "old.npz", net.config(), change([p.data for p in net.parameters()]))
    _rejects(path, match)


def test_old_npz_metadata_and_zip_bombs(tmp_path):
    net = nn.mlp([5, 3])
    params = [p.data for p in net.parameters()]
    _rejects(_write_npz(tmp_path / "f.npz", net.config(), params, fmt="other"), "not a layerwise model file")
    _rejects(_write_npz(tmp_path / "u.npz", {"type": "Mystery"}, params), "unknown module type 'Mystery'")
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    _rejects(plain, "no __meta__")
    bomb = tmp_path / "bomb.npz"
    meta = {"format": "layerwise-net-1", "architecture": net.config(), "dtype": "float32"}
    np.savez_compressed(bomb, __meta__=np.array(json.dumps(meta)), param_0=np.zeros((3, 200_000), np.float32),
                        param_1=np.zeros(3, np.float32))
    _rejects(bomb, "claims .* bytes, more than the file's")
