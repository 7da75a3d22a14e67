"""layerwise.optim: SGD update formulas, schedules, factory."""
import numpy as np
import pytest

from layerwise import nn, optim
from _lw_helpers import _one_thread  # noqa: F401  (fixture)


def param(values):
    p = nn.Parameter(np.array(values, dtype=np.float64), "p")
    return p


def test_plain_sgd():
    p = param([1.0, -2.0])
    opt = optim.SGD([p], 0.1)
    p.grad[...] = [0.5, 1.0]
    opt.step()
    np.testing.assert_allclose(p.data, [1.0 - 0.05, -2.0 - 0.1], rtol=1e-15)


def test_momentum_and_weight_decay_by_hand():
    p = param([[1.0, 2.0]])
    opt = optim.SGD([p], 0.1, momentum=0.9, weight_decay=0.01)
    w, v = np.array([[1.0, 2.0]]), np.zeros((1, 2))
    for g in ([0.5, -1.0], [0.25, 0.5], [1.0, 1.0]):
        p.grad[...] = g
        opt.step()
        gg = np.array([g]) + 0.01 * w
        v = 0.9 * v + gg
        w = w - 0.1 * v
        np.testing.assert_allclose(p.data, w, rtol=1e-14)
    np.testing.assert_allclose(opt.velocity[0], v, rtol=1e-14)


def test_nesterov_by_hand():
    p = param([3.0])
    opt = optim.SGD([p], 0.5, momentum=0.5, nesterov=True)
    w, v = 3.0, 0.0
    for g in (1.0, -2.0, 0.5):
        p.grad[...] = g
        opt.step()
        v = 0.5 * v + g
        w -= 0.5 * (g + 0.5 * v)
        assert p.data[0] == pytest.approx(w, rel=1e-15)


def test_zero_grad_and_bad_arguments():
    p = param([1.0])
    p.grad[...] = 3.0
    opt = optim.SGD([p], 0.1)
    opt.zero_grad()
    assert p.grad[0] == 0
    with pytest.raises(ValueError, match="lr"):
        optim.SGD([p], 0.0)
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD([p], 0.1, momentum=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([p], 0.1, nesterov=True)
    with pytest.raises(TypeError, match="params"):
        optim.SGD([np.zeros(3)], 0.1)


def test_schedules():
    assert optim.Constant()(0.5, 7) == 0.5
    s = optim.StepLR(step_size=3, gamma=0.1)
    assert [s(1.0, t) for t in range(7)] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1, 0.01])
    e = optim.ExponentialLR(0.5)
    assert [e(2.0, t) for t in range(4)] == pytest.approx([2.0, 1.0, 0.5, 0.25])
    i = optim.InverseTimeLR(decay=0.5)
    assert [i(1.0, t) for t in range(3)] == pytest.approx([1.0, 1 / 1.5, 0.5])
    with pytest.raises(ValueError, match="step_size"):
        optim.StepLR(0)
    with pytest.raises(ValueError, match="decay"):
        optim.InverseTimeLR(-1)
    assert isinstance(optim.make_schedule("exponential", gamma=0.9), optim.ExponentialLR)
    with pytest.raises(ValueError, match="constant"):
        optim.make_schedule("cosine")


def test_optimizer_applies_schedule_per_epoch():
    p = param([0.0])
    opt = optim.SGD([p], 1.0, schedule=optim.StepLR(1, 0.5))
    assert opt.set_epoch(0) == 1.0 and opt.set_epoch(2) == 0.25
    p.grad[...] = 1.0
    opt.step()
    assert p.data[0] == -0.25


def test_make_optimizer():
    p = param([1.0])
    assert optim.make_optimizer("sgd", [p], lr=0.2).momentum == 0
    m = optim.make_optimizer("momentum", [p], lr=0.2)
    assert m.momentum == 0.9 and not m.nesterov
    n = optim.make_optimizer("nesterov", [p], lr=0.2, momentum=0.5)
    assert n.nesterov and n.momentum == 0.5
    with pytest.raises(ValueError, match="sgd, momentum, nesterov"):
        optim.make_optimizer("lbfgs", [p], lr=0.1)
