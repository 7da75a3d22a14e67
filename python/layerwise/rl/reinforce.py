"""REINFORCE for Pong: discounted returns, advantages, and the batched policy-gradient backward.

Every point is a separate credit-assignment problem: the return of step t is
``R_t = r_t + gamma R_{t+1}``, restarted (``R_{t+1}`` taken as 0) after every step with a
nonzero reward, since in Pong a point ends a rally. The returns of a batch of games are
standardized together (mean 0, standard deviation 1) and used as advantages A_t.

The loss minimized is ``L = -sum_t A_t log pi(a_t | x_t)``, summed (not averaged) over every
step of the batch, as in the anchor. With p_t = P(UP | x_t) = sigmoid(z_t) and y_t = 1 for UP,
0 for DOWN, ``dL/dz_t = A_t (p_t - y_t)``; the hidden layer's gradient then follows by
ordinary backpropagation through layerwise ops, for the whole batch at once.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from .policy import check_policy

__all__ = ["GAMMA", "discounted_returns", "standardize", "policy_gradient"]

GAMMA = 0.99
_CHUNK = 4096  # rows of the (int8) input matrix converted to floats at a time in the backward


def discounted_returns(rewards, gamma=GAMMA):
    """R_t = r_t + gamma R_{t+1}, with R_{t+1} = 0 after every nonzero reward (float64 array)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError(f"rewards: expected a 1-D sequence, got shape {rewards.shape}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma: must be in [0, 1], got {gamma}")
    out = np.empty_like(rewards)
    running = 0.0
    for t in range(rewards.size - 1, -1, -1):  # one pass over the steps of a game
        if rewards[t] != 0.0:
            running = 0.0
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def standardize(values):
    """(values - mean) / std; only centred when all values are equal (std 0)."""
    values = np.asarray(values, dtype=np.float64)
    centred = values - values.mean() if values.size else values.copy()
    std = centred.std() if values.size else 0.0
    return centred / std if std > 0 else centred


def policy_gradient(net, inputs, hidden, up, advantages):
    """Writes dL/dW of ``L = -sum_t A_t log pi(a_t | x_t)`` into the policy's ``weight.grad``.

    inputs (n, 6400): the inputs of each step (any real dtype; int8 difference images are
    converted in chunks); hidden (n, 200): the hidden activations recorded at each step;
    up (n,): whether UP was taken; advantages (n,). The net's current weights must be the
    ones that produced ``hidden`` (the trainer only updates between batches)."""
    first, second = check_policy(net)
    dtype = first.weight.data.dtype
    n = len(up)
    if not (inputs.shape == (n, first.in_features) and hidden.shape == (n, first.out_features)
            and np.shape(advantages) == (n,)):
        raise ValueError(f"policy_gradient: inconsistent shapes inputs {inputs.shape}, hidden {hidden.shape}, "
                         f"up {np.shape(up)}, advantages {np.shape(advantages)}")
    hidden = np.ascontiguousarray(hidden, dtype=dtype)
    p = ops.linear_forward(hidden, second.weight.data, activation="sigmoid")[:, 0]
    dz2 = ((p - np.asarray(up, dtype=dtype)) * np.asarray(advantages, dtype=dtype)).astype(dtype)[:, None]
    ops.linear_backward_weights(dz2, hidden, dweight=second.weight.grad, bias=False)
    dh = ops.linear_backward_data(dz2, second.weight.data)
    dz1 = ops.activation_backward(hidden, dh, "relu", out=dh)
    if n == 0:
        first.weight.grad.fill(0)
        return
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        x = np.ascontiguousarray(inputs[start:stop], dtype=dtype)
        ops.linear_backward_weights(dz1[start:stop], x, dweight=first.weight.grad, accumulate=start > 0,
                                    bias=False)
