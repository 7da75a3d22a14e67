"""ONNX export: the model passes onnx.checker and onnxruntime reproduces predict_proba."""
import numpy as np
import pytest

import layerwise as lw
from layerwise import nn
from layerwise.pretrain import RBM

onnx = pytest.importorskip("onnx", reason="ONNX export needs the 'onnx' extra (onnx, onnxruntime)")
ort = pytest.importorskip("onnxruntime", reason="ONNX export tests need the 'onnx' extra (onnxruntime)")
import layerwise.onnx as lwonnx  # noqa: E402

assert lw.onnx is lwonnx  # reachable as lw.onnx.export

RNG = np.random.default_rng(11)
TOL = {"float32": dict(rtol=1e-5, atol=2e-6), "float64": dict(rtol=1e-12, atol=1e-13)}


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"] and [o.name for o in sess.get_outputs()] == ["output"]
    return sess.run(["output"], {"input": x})[0]


def _export_and_check(net, path, softmax):
    lwonnx.export(net, path, softmax=softmax)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 7 and [(o.domain, o.version) for o in model.opset_import] == [("", 13)]
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 7])
def test_mlp_matches_predict_proba(tmp_path, dtype, batch):
    net = nn.mlp([9, 8, 6, 4], activation="sigmoid", dtype=dtype, seed=3, dropout=0.3)
    X, y = RNG.uniform(0, 1, size=(40, 9)), RNG.integers(0, 4, size=40)
    lw.train.fit(net, X, y, epochs=1, batch_size=8, progress=False)  # trained, not just initialised
    model = _export_and_check(net, tmp_path / "m.onnx", softmax=True)
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Sigmoid", "Gemm", "Sigmoid", "Gemm", "Softmax"]
    assert all(a.i == 1 for n in model.graph.node if n.op_type == "Gemm" for a in n.attribute if a.name == "transB")
    x = RNG.uniform(0, 1, size=(batch, 9)).astype(dtype)
    got = _run(tmp_path / "m.onnx", x)
    assert got.dtype == np.dtype(dtype) and got.shape == (batch, 4)
    np.testing.assert_allclose(got, lw.train.predict_proba(net, x), **TOL[dtype])


def test_every_activation_and_no_bias(tmp_path):
    net = nn.Sequential(nn.Linear(5, 6, activation="tanh", rng=0), nn.Linear(6, 6, activation="relu", rng=1),
                        nn.Linear(6, 5, bias=False, rng=2), nn.Threshold(), nn.Linear(5, 4, rng=3), nn.Sigmoid(),
                        nn.Sequential(nn.Linear(4, 3, activation="threshold", rng=4), nn.Identity()))
    model = _export_and_check(net, tmp_path / "a.onnx", softmax=False)
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["Gemm", "Tanh", "Gemm", "Relu", "Gemm", "Greater", "Cast", "Gemm", "Sigmoid", "Gemm",
                   "Greater", "Cast"]
    x = RNG.normal(size=(50, 5)).astype(np.float32)
    got = _run(tmp_path / "a.onnx", x)
    want = lw.train.predict_proba(net, x, softmax=False)
    np.testing.assert_allclose(got, want, **TOL["float32"])
    assert set(np.unique(got)) <= {0.0, 1.0}


def test_linear_output_without_softmax_gives_logits(tmp_path):
    net = nn.mlp([4, 3, 2], seed=1)
    _export_and_check(net, tmp_path / "l.onnx", softmax=False)
    x = RNG.normal(size=(6, 4)).astype(np.float32)
    np.testing.assert_allclose(_run(tmp_path / "l.onnx", x), net.forward(x), **TOL["float32"])


def test_unsupported_modules_are_named(tmp_path):
    net = nn.Sequential(nn.Linear(4, 6, rng=0), RBM(6, 3))
    with pytest.raises(ValueError, match="layer 1 is a RBM"):
        lwonnx.export(net, tmp_path / "x.onnx")
    with pytest.raises(TypeError, match="net"):
        lwonnx.export("net", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_export_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    old = nn.mlp([3, 2], seed=0)
    lwonnx.export(old, path)
    before = path.read_bytes()

    def fail(model, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", fail)
    with pytest.raises(OSError, match="No space"):
        lwonnx.export(nn.mlp([3, 2], seed=1), path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
