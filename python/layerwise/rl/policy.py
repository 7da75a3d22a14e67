"""The policy network: 6400 difference-image inputs, 200 hidden ReLU units, one sigmoid
output P(UP), as in the anchor. Both layers are layerwise ``nn.Linear`` with the activation
fused and no bias (the anchor has none; the difference image is zero where nothing moves, so
a zero input gives P(UP) = 1/2 and the policy's bias comes only from what it sees).

Initial weights are the anchor's: W1 ~ N(0, 1/6400), W2 ~ N(0, 1/200) (variance 1/fan_in),
drawn from a numpy Generator seeded with ``seed``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import nn

__all__ = ["HIDDEN", "make_policy", "policy_forward", "check_policy"]

HIDDEN = 200


def make_policy(inputs=80 * 80, hidden=HIDDEN, *, seed=0, dtype="float32"):
    """Sequential(Linear(inputs, hidden, relu), Linear(hidden, 1, sigmoid)), no biases."""
    net = nn.Sequential(
        nn.Linear(inputs, hidden, bias=False, activation="relu", init=None, dtype=dtype),
        nn.Linear(hidden, 1, bias=False, activation="sigmoid", init=None, dtype=dtype),
    )
    rng = np.random.default_rng(seed)
    for layer in net:
        w = layer.weight.data
        w[...] = rng.standard_normal(w.shape) / math.sqrt(layer.in_features)
    return net


def check_policy(net):
    """ValueError unless ``net`` is a two-layer policy as ``make_policy`` builds it (e.g. a loaded file)."""
    layers = nn.linear_layers(net)
    ok = (len(layers) == 2 and len(net.layers()) == 2 and layers[0].activation == "relu"
          and layers[1].activation == "sigmoid" and layers[1].out_features == 1
          and all(layer.bias is None for layer in layers))
    if not ok:
        raise ValueError(f"policy: expected Linear(n, h, relu) -> Linear(h, 1, sigmoid) without biases, got {net!r}")
    return layers


def policy_forward(net, x):
    """(hidden activations, P(UP)) for a batch of inputs x (n, inputs): (n, hidden) and (n,).
    The hidden activations are what the batched backward needs later."""
    first, second = net[0], net[1]
    h = first.forward(x)
    p = second.forward(h)
    return h, p[:, 0]
