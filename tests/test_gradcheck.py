"""Finite-difference gradient check, in float64, of a small 3-layer sigmoid
network assembled from the primitives, for each of the three losses: every
weight, bias and the input gradient must match central differences to a
relative error <= 1e-7 (||analytic - numeric|| / (||analytic|| + ||numeric||))."""
import numpy as np
import pytest

from layerwise import ops

SIZES = [5, 6, 7, 4]  # in -> hidden -> hidden -> out
N = 3


def make(rng):
    params = []
    for i, o in zip(SIZES[:-1], SIZES[1:]):
        params.append(rng.standard_normal((o, i)) * 0.8)
        params.append(rng.standard_normal(o) * 0.3)
    return params


def forward(params, x, out_act):
    acts = [x]
    for layer in range(3):
        w, b = params[2 * layer], params[2 * layer + 1]
        act = "sigmoid" if layer < 2 else out_act
        acts.append(ops.linear_forward(acts[-1], w, b, activation=act))
    return acts


def loss_and_grads(params, x, target, loss):
    out_act = {"quadratic": "identity", "bce": "sigmoid", "softmax": "identity"}[loss]
    acts = forward(params, x, out_act)
    if loss == "quadratic":
        value, d = ops.mse_loss(acts[-1], target)
    elif loss == "bce":
        value, d = ops.binary_cross_entropy(acts[-1], target)
    else:
        value, d = ops.softmax_cross_entropy(acts[-1], target)
    grads = [None] * len(params)
    for layer in reversed(range(3)):
        act = "sigmoid" if layer < 2 else out_act
        dz = ops.activation_backward(acts[layer + 1], d, act)
        grads[2 * layer], grads[2 * layer + 1] = ops.linear_backward_weights(dz, acts[layer])
        d = ops.linear_backward_data(dz, params[2 * layer])
    return value, grads, d  # d = dLoss/dx


def rel_err(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300)


@pytest.mark.parametrize("loss", ["quadratic", "bce", "softmax"])
def test_network_gradients_match_finite_differences(loss):
    rng = np.random.default_rng(7)
    params = make(rng)
    x = rng.standard_normal((N, SIZES[0]))
    if loss == "quadratic":
        target = rng.standard_normal((N, SIZES[-1]))
    elif loss == "bce":
        target = rng.uniform(0, 1, (N, SIZES[-1]))
    else:
        target = rng.integers(0, SIZES[-1], N)
    _, grads, dx = loss_and_grads(params, x, target, loss)

    h = 1e-6

    def numeric(arr):
        g = np.zeros_like(arr)
        it = np.nditer(arr, flags=["multi_index"])
        for _ in it:
            idx = it.multi_index
            old = arr[idx]
            arr[idx] = old + h
            fp = loss_and_grads(params, x, target, loss)[0]
            arr[idx] = old - h
            fm = loss_and_grads(params, x, target, loss)[0]
            arr[idx] = old
            g[idx] = (fp - fm) / (2 * h)
        return g

    for k, p in enumerate(params):
        err = rel_err(grads[k], numeric(p))
        assert err <= 1e-7, f"param {k} ({'W' if k % 2 == 0 else 'b'}{k // 2 + 1}): rel err {err:.2e}"
    err = rel_err(dx, numeric(x))
    assert err <= 1e-7, f"input gradient: rel err {err:.2e}"
