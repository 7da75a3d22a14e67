"""Shared helpers for the nn/optim/train/pretrain tests (synthetic data, finite differences)."""
import numpy as np
import pytest

import layerwise as lw


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny test matrices: one kernel thread avoids thread wake-up costs on busy machines.
    before = lw.ops.get_num_threads()
    lw.ops.set_num_threads(1)
    yield
    lw.ops.set_num_threads(before)


def prototypes(n=600, d=16, classes=4, flip=0.1, seed=0, dtype=np.float32):
    """Binary prototype task: each class is a random binary pattern, samples flip bits with
    probability ``flip``. Easy for a net, and binary data suits RBMs and autoencoders."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 2, size=(classes, d))
    y = rng.integers(0, classes, size=n)
    flips = rng.random((n, d)) < flip
    X = np.where(flips, 1 - protos[y], protos[y]).astype(dtype)
    return X, y


def numeric_grad(f, a, eps=1e-4):
    """Central differences of the scalar f() with respect to every entry of array a (in place).

    Five-point stencil: truncation error O(eps^4) and round-off ~1e-16/eps, so a
    relative error of 1e-7 is a meaningful bar in float64 (the 3-point stencil's
    O(eps^2) / round-off trade-off sits right at it)."""
    g = np.zeros_like(a)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        vals = []
        for k in (2, 1, -1, -2):
            flat[i] = old + k * eps
            vals.append(f())
        flat[i] = old
        gflat[i] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * eps)
    return g


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def check_gradients(net, X, target, loss, tol=1e-7):
    """Backprop gradients (every parameter and the input) vs central differences."""
    loss_fn = lw.nn.get_loss(loss)
    out = net.forward(X)
    _, dout = loss_fn(out, target)
    dx = net.backward(dout).copy()
    grads = [p.grad.copy() for p in net.parameters()]

    def f():
        return loss_fn(net.forward(X), target)[0]

    for p, g in zip(net.parameters(), grads):
        assert rel_err(g, numeric_grad(f, p.data)) <= tol, p.name
    assert rel_err(dx, numeric_grad(f, X)) <= tol, "input"


class Stop(Exception):
    """Raised by the tests' interrupters to stop a run at a chosen point."""


class StopAfterWrites:
    """Raises Stop on the n-th checkpoint write (monkeypatched over checkpoint.write)."""

    def __init__(self, n):
        from layerwise import checkpoint as ckpt

        self.n, self.count, self.real = n, 0, ckpt.write

    def __call__(self, path, arrays, meta):
        self.real(path, arrays, meta)
        self.count += 1
        if self.count == self.n:
            raise Stop()
