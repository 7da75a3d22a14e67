"""optim.SGD.backward_step (the fused backward + update sweep that fit uses)
must leave a network exactly where net.backward(...); opt.step() leaves it:
momentum, Nesterov and weight decay, dropout layers, activation layers, and a
frozen layer that the optimizer does not own."""
import numpy as np
import pytest

import layerwise as lw
from layerwise import nn, optim


def make_net(seed, dropout):
    net = nn.mlp([12, 9, 7, 4], activation="sigmoid", seed=seed, dtype="float64", dropout=dropout)
    net.append(nn.Tanh())  # an activation layer with no parameters
    return net


@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 1e-3), (0.9, True, 0.0)])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_backward_step_equals_backward_then_step(momentum, nesterov, wd, dropout):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 12))
    y = rng.integers(0, 4, 10)
    a, b = make_net(1, dropout), make_net(1, dropout)
    opt_a = optim.SGD(a.parameters(), 0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    opt_b = optim.SGD(b.parameters(), 0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    loss = nn.get_loss("softmax_cross_entropy")
    for _ in range(5):
        _, da = loss(a.forward(X, train=True), y)
        opt_a.backward_step(a, da)
        _, db = loss(b.forward(X, train=True), y)
        b.backward(db, input_grad=False)
        opt_b.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(pa.data, pb.data, rtol=1e-12, atol=1e-14)


def test_frozen_layer_is_not_updated_by_fused_sweep():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((8, 12))
    y = rng.integers(0, 4, 8)
    net = make_net(2, 0.0)
    first = nn.linear_layers(net)[0]
    frozen = first.weight.data.copy()
    trainable = [p for p in net.parameters() if p is not first.weight and p is not first.bias]
    opt = optim.SGD(trainable, 0.5, momentum=0.9)
    loss = nn.get_loss("softmax_cross_entropy")
    before = [p.data.copy() for p in trainable]
    _, d = loss(net.forward(X, train=True), y)
    opt.backward_step(net, d)
    np.testing.assert_array_equal(first.weight.data, frozen)
    assert all(not np.array_equal(p.data, q) for p, q in zip(trainable, before))


def test_fit_uses_fused_sweep_and_matches_unfused_training():
    """fit with optim.SGD (fused) vs fit with a non-SGD optimizer object doing the same math."""

    class PlainSGD:  # not an optim.SGD: fit takes the unfused path with it
        def __init__(self, params, lr, momentum):
            self.inner = optim.SGD(params, lr, momentum=momentum)
            self.lr = lr

        def set_epoch(self, epoch):
            return self.inner.set_epoch(epoch)

        def step(self):
            self.inner.step()

    rng = np.random.default_rng(3)
    X = rng.standard_normal((64, 12)).astype(np.float32)
    y = rng.integers(0, 4, 64)
    a = nn.mlp([12, 16, 4], seed=4)
    b = nn.mlp([12, 16, 4], seed=4)
    ha = lw.train.fit(a, X, y, lr=0.2, momentum=0.9, epochs=3, batch_size=10, seed=5, progress=False)
    hb = lw.train.fit(b, X, y, optimizer=PlainSGD(b.parameters(), 0.2, 0.9), epochs=3, batch_size=10, seed=5,
                      progress=False)
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(pa.data, pb.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ha.train_loss, hb.train_loss, rtol=1e-5)
