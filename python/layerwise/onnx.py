"""layerwise.onnx -- export a trained net as an ONNX model for inference elsewhere.

    layerwise.onnx.export(net, "net.onnx", softmax=True)

Each Linear becomes a Gemm (transB=1: the weight keeps its (out, in) layout) followed
by its activation (Sigmoid, Tanh, Relu; threshold as Greater(x, 0) then Cast, which
gives 1[x > 0] like the kernels); Activation layers map the same way and Dropout,
the identity at inference, is left out. ``softmax=True`` appends a row Softmax, so
the model outputs what ``train.predict_proba`` gives for a net with logits.

The model uses opset 13 and IR version 7 (readable by any onnxruntime of the last
years), has one input "input" (batch, in_features) and one output "output", both
with a symbolic batch dimension, and the net's dtype (float32 or float64). It is
built with the ``onnx`` package's helpers (extra ``layerwise[onnx]``) and saved
atomically.
"""
from __future__ import annotations

import numpy as np

from . import nn
from .atomic import write_atomic_path

__all__ = ["export", "OPSET", "IR_VERSION"]

OPSET = 13
IR_VERSION = 7
_ACTIVATION_OPS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("layerwise.onnx needs the 'onnx' package: pip install 'layerwise[onnx]' "
                          "(or pip install onnx onnxruntime)") from None
    return onnx


class _Graph:
    """Nodes and initializers collected while walking the net; names are unique per tensor."""

    def __init__(self, onnx, elem_type, names):
        self.onnx, self.elem_type, self.names = onnx, elem_type, names
        self.nodes, self.initializers, self.count = [], [], 0

    def fresh(self, stem):
        self.count += 1
        return f"{stem}_{self.count}"

    def node(self, op, inputs, stem, **attrs):
        out = self.fresh(stem)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def weight(self, param):
        name = self.names[id(param)]
        data = np.ascontiguousarray(nn.to_device(param.data, "cpu"))
        self.initializers.append(self.onnx.numpy_helper.from_array(data, name))
        return name

    def constant(self, value, stem, dtype):
        name = self.fresh(stem)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.array(value, dtype=dtype), name))
        return name

    def activation(self, x, mode, stem, dtype):
        if mode == "identity":
            return x
        if mode == "threshold":
            positive = self.node("Greater", [x, self.constant(0, f"{stem}_zero", dtype)], f"{stem}_positive")
            return self.node("Cast", [positive], f"{stem}_threshold", to=self.elem_type)
        return self.node(_ACTIVATION_OPS[mode], [x], f"{stem}_{mode}")


def build_model(net, *, softmax=False):
    """The ONNX ModelProto for ``net`` (see the module doc); ``export`` saves it."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"net: expected a layerwise.nn.Module, got {type(net).__name__}")
    onnx = _onnx()
    dtype = np.dtype(net.dtype) if net.dtype is not None else np.dtype(np.float32)
    if dtype.name not in ("float32", "float64"):
        raise ValueError(f"net: dtype {dtype} cannot be exported; expected float32 or float64")
    elem_type = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    names = {id(p): name for name, p in net.named_parameters()}
    if len(set(names.values())) != len(names):
        raise ValueError("net: parameter names are not unique")
    g = _Graph(onnx, elem_type, names)
    x = "input"
    for i, layer in enumerate(net.layers()):
        stem = f"layer{i}"
        if isinstance(layer, nn.Linear):
            inputs = [x, g.weight(layer.weight)] + ([g.weight(layer.bias)] if layer.bias is not None else [])
            x = g.node("Gemm", inputs, f"{stem}_gemm", transB=1)
            x = g.activation(x, layer.activation, stem, dtype)
        elif isinstance(layer, nn.Activation):
            x = g.activation(x, layer.mode, stem, dtype)
        elif isinstance(layer, nn.Dropout):
            continue  # the identity at inference
        else:
            raise ValueError(f"net: layer {i} is a {type(layer).__name__}, which ONNX export does not support "
                             f"(supported: Linear, Activation, Dropout, nested in Sequential)")
    if softmax:
        x = g.node("Softmax", [x], "softmax", axis=1)
    if x == "input":  # no computing layer: the graph still needs a node from input to output
        x = g.node("Identity", [x], "identity")
    g.nodes[-1].output[0] = "output"
    n_in = getattr(net, "in_features", None) or "features"
    n_out = getattr(net, "out_features", None) or n_in
    graph = onnx.helper.make_graph(
        g.nodes, "layerwise_net",
        [onnx.helper.make_tensor_value_info("input", elem_type, ["batch", n_in])],
        [onnx.helper.make_tensor_value_info("output", elem_type, ["batch", n_out])],
        initializer=g.initializers)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   ir_version=IR_VERSION, producer_name="layerwise")
    onnx.checker.check_model(model, full_check=True)
    return model


def export(net, path, *, softmax=False):
    """Writes ``net`` as an ONNX model to ``path`` (atomically); returns ``path``.

    Raises ValueError naming the first layer ONNX export does not support (anything but
    Linear, Activation and Dropout inside Sequentials), ImportError without ``onnx``."""
    model = build_model(net, softmax=softmax)
    onnx = _onnx()
    return write_atomic_path(path, lambda tmp: onnx.save_model(model, tmp))
