"""layerwise.diagnostics -- look inside a net: per-layer gradient norms and unit statistics.

Deep sigmoid nets trained from a random start learn slowly in their lower layers
because the backpropagated gradient shrinks by up to sigmoid'(z) <= 1/4 per layer
(the vanishing-gradient problem); ``gradient_norms`` shows it directly, and
``layer_stats`` shows saturated units (outputs pinned near 0 or 1), which make it worse.
"""
from __future__ import annotations


from . import nn
from .data import prepare_data
from .nn import array_module

__all__ = ["gradient_norms", "layer_stats"]


def gradient_norms(net, X, y, loss="softmax_cross_entropy") -> list:
    """Frobenius norms of dJ/dW for every Linear layer of ``net`` (input side first),
    from one forward/backward pass over the batch (X, y) in evaluation mode.

    Overwrites the parameters' ``.grad`` (as any backward pass does)."""
    X, y, _ = prepare_data(net, X, y, loss=loss)
    out = net.forward(X, train=False)
    _, dout = nn.get_loss(loss)(out, y)
    net.backward(dout, input_grad=False)
    return [float(array_module(l.weight.grad).linalg.norm(l.weight.grad)) for l in nn.linear_layers(net)]


def _saturation(y, mode):
    """Fraction of units in the flat part of their nonlinearity (where the gradient dies)."""
    xp = array_module(y)
    if mode == "sigmoid":
        sat = (y < 0.02) | (y > 0.98)
    elif mode == "tanh":
        sat = xp.abs(y) > 0.96
    elif mode == "relu":
        sat = y <= 0  # "dead" units
    elif mode == "threshold":
        sat = xp.ones(y.shape, dtype=bool)
    else:
        return 0.0
    return float(xp.count_nonzero(sat)) / max(y.size, 1)


def layer_stats(net, X) -> list:
    """Per Linear layer of ``net``: a dict with weight mean/std, activation (layer output)
    mean/std, and saturation -- the fraction of outputs in the flat region of the
    activation (sigmoid: < 0.02 or > 0.98; tanh: |y| > 0.96; relu: <= 0; identity: 0)."""
    X, _, _ = prepare_data(net, X)
    stats = []
    x = X
    for m in net.layers():
        x = m.forward(x, train=False)
        if isinstance(m, nn.Linear):
            w = m.weight.data
            stats.append({
                "layer": len(stats),
                "shape": tuple(int(s) for s in w.shape),
                "activation": m.activation,
                "weight_mean": float(w.mean()),
                "weight_std": float(w.std()),
                "activation_mean": float(x.mean()) if x.size else 0.0,
                "activation_std": float(x.std()) if x.size else 0.0,
                "saturation": _saturation(x, m.activation),
            })
    return stats

