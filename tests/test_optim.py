"""layerwise.optim and ops.optimizer_step: SGD update formulas, schedules, factory; every
optimizer mode against a float64 NumPy reference over many steps (each ISA forced in a
fresh process, float32 and float64, 1x1 / odd / row-strided / multi-threaded shapes), the
fused layer update, the optimizer classes, state dicts, and fit(optimizer=name).

Reference tolerances (max |got - ref| / (1 + |ref|)): float64 1e-10 (same formulas, a few
ulp of rounding-order difference per step, FMA contraction in the vector bodies); float32
2e-4 (inputs rounded to float32 and ~1e-7 relative error per operation, accumulated over 50
steps and amplified where Adam/RMSprop divide by small square roots)."""
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


# ---- the descriptor-driven optimizers (ops.optimizer_step, optim.Adam etc.) -----------------
import math  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import layerwise  # noqa: E402
from layerwise import ops, train  # noqa: E402
from conftest import cpu_has  # noqa: E402

# (mode, hyperparameters): every optimizer, and each of its branches.
CONFIGS = [
    ("sgd", dict(lr=0.05)),
    ("sgd", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("sgd", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("adam", dict(lr=0.01)),
    ("adam", dict(lr=0.01, beta1=0.5, beta2=0.9, eps=1e-6, weight_decay=0.1)),
    ("adamw", dict(lr=0.01)),
    ("adamw", dict(lr=0.01, weight_decay=0.3)),
    ("rmsprop", dict()),
    ("rmsprop", dict(momentum=0.9, weight_decay=0.01)),
    ("rmsprop", dict(centered=True, alpha=0.9)),
    ("rmsprop", dict(centered=True, momentum=0.5)),
    ("adagrad", dict()),
    ("adagrad", dict(lr_decay=0.1, initial_accumulator_value=0.5, weight_decay=0.01)),
]


def full_hyper(mode, hyper):
    h = ops.optimizer_defaults(mode)
    h.update(hyper)
    return h


def reference_step(mode, h, t, p, g, st):
    """One step of ``mode`` in float64 NumPy (t: step number, from 1), written from
    torch.optim's documented algorithms. Updates p and the state list in place."""
    g = g.copy()
    if mode == "adamw":
        p *= 1 - h["lr"] * h["weight_decay"]
    else:
        g += h["weight_decay"] * p
    if mode == "sgd":
        if h["momentum"] != 0:
            st[0][...] = h["momentum"] * st[0] + g
            g = g + h["momentum"] * st[0] if h["nesterov"] else st[0].copy()
        p -= h["lr"] * g
    elif mode in ("adam", "adamw"):
        b1, b2 = h["beta1"], h["beta2"]
        st[0][...] = b1 * st[0] + (1 - b1) * g
        st[1][...] = b2 * st[1] + (1 - b2) * g * g
        m_hat = st[0] / (1 - b1 ** t)
        v_hat = st[1] / (1 - b2 ** t)
        p -= h["lr"] * m_hat / (np.sqrt(v_hat) + h["eps"])
    elif mode == "rmsprop":
        a = h["alpha"]
        st[0][...] = a * st[0] + (1 - a) * g * g
        if h["centered"]:
            ga = st[-1]
            ga[...] = a * ga + (1 - a) * g
            d = np.sqrt(st[0] - ga * ga) + h["eps"]
        else:
            d = np.sqrt(st[0]) + h["eps"]
        if h["momentum"] > 0:
            st[1][...] = h["momentum"] * st[1] + g / d
            p -= h["lr"] * st[1]
        else:
            p -= h["lr"] * g / d
    elif mode == "adagrad":
        st[0][...] += g * g
        clr = h["lr"] / (1 + (t - 1) * h["lr_decay"])
        p -= clr * g / (np.sqrt(st[0]) + h["eps"])
    else:
        raise AssertionError(mode)


def _init_state(mode, h, count, shape, dtype, ld=None):
    """count state arrays (optionally row-strided views of a wider buffer)."""
    fill = h["initial_accumulator_value"] if mode == "adagrad" else 0.0
    out = []
    for _ in range(count):
        if ld is None:
            a = np.full(shape, fill, dtype=dtype)
        else:
            a = np.full((shape[0], ld), fill, dtype=dtype)[:, :shape[1]]
        out.append(a)
    return out


def run_against_reference(mode, hyper, shape, dtype, steps, strided=False, seed=0):
    """``steps`` ops.optimizer_step calls against reference_step; returns a failure string or ''."""
    h = full_hyper(mode, hyper)
    count = ops.optimizer_state_count(mode, **hyper)
    rng = np.random.default_rng(seed)
    rows, cols = shape
    ld = cols + 3 if strided else None
    if strided:
        pbuf = rng.standard_normal((rows, ld)).astype(dtype)
        gbuf = np.zeros((rows, ld), dtype=dtype)
        p, g = pbuf[:, :cols], gbuf[:, :cols]
        gap = pbuf[:, cols:].copy()
    else:
        p = rng.standard_normal(shape).astype(dtype)
        g = np.zeros(shape, dtype=dtype)
    state = _init_state(mode, h, count, shape, dtype, ld)
    pr = p.astype(np.float64)
    sr = [s.astype(np.float64) for s in _init_state(mode, h, 3, shape, np.float64)]
    ref_state = sr[:count] if not (mode == "rmsprop" and h["centered"] and h["momentum"] <= 0) else [sr[0], sr[1]]
    for t in range(1, steps + 1):
        g[...] = rng.standard_normal(shape)
        ops.optimizer_step(p, g, state, mode=mode, step=t, **hyper)
        reference_step(mode, h, t, pr, g.astype(np.float64), ref_state)
    tol = 2e-4 if dtype == np.float32 else 1e-10
    err = np.max(np.abs(p - pr) / (1 + np.abs(pr)))
    if not err <= tol:
        return f"{mode} {hyper} {shape} {np.dtype(dtype).name} strided={strided}: param error {err:.3g} > {tol}"
    for k, (s, r) in enumerate(zip(state, ref_state)):
        e = np.max(np.abs(s - r) / (1 + np.abs(r)))
        if not e <= tol:
            return f"{mode} {hyper} {shape} {np.dtype(dtype).name}: state[{k}] error {e:.3g} > {tol}"
    if strided and not np.array_equal(pbuf[:, cols:], gap):
        return f"{mode} {hyper}: the gap between rows was written"
    return ""


# Shapes: 1x1, odd sizes, a row with a vector tail, and one large enough to split across threads.
REF_SHAPES = [((1, 1), 50, False), ((7, 13), 50, True), ((3, 37), 50, False), ((1, 1001), 50, False),
              ((5, 17), 50, True), ((300, 301), 3, False)]


def _child_reference(isa):
    """Runs every configuration at every shape and dtype (inside the per-ISA process)."""
    assert ops._core.active_isa() == isa, (ops._core.active_isa(), isa)
    fails = []
    for mode, hyper in CONFIGS:
        for shape, steps, strided in REF_SHAPES:
            for dtype in (np.float32, np.float64):
                msg = run_against_reference(mode, hyper, shape, dtype, steps, strided)
                if msg:
                    fails.append(msg)
    if fails:
        print("\n".join(fails))
        sys.exit(1)


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_optimizers_match_numpy_reference_per_isa(isa):
    if isa not in layerwise.backend_info()["isas_compiled"]:
        pytest.skip(f"{isa} not compiled in")
    if not cpu_has(isa):
        pytest.skip(f"CPU lacks {isa}")
    env = dict(os.environ, LAYERWISE_ISA=isa)
    here = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys; sys.path.insert(0, {here!r}); import test_optim as t; t._child_reference({isa!r})"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{isa}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"


def test_thread_counts_give_identical_optimizer_steps():
    rng = np.random.default_rng(5)
    p0 = rng.standard_normal((400, 333)).astype(np.float32)
    g = rng.standard_normal((400, 333)).astype(np.float32)
    outs = []
    for n in (1, 2):
        ops.set_num_threads(n)
        try:
            p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
            for t in (1, 2):
                ops.optimizer_step(p, g, [m, v], mode="adam", step=t, lr=0.1)
            outs.append((p, m, v))
        finally:
            ops.set_num_threads(0)
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_optimizer_defaults_and_state_counts():
    assert ops.OPTIMIZER_MODES == ("sgd", "adam", "adamw", "rmsprop", "adagrad")
    d = ops.optimizer_defaults("adam")
    assert (d["lr"], d["beta1"], d["beta2"], d["eps"], d["weight_decay"]) == (1e-3, 0.9, 0.999, 1e-8, 0.0)
    assert ops.optimizer_defaults("adamw")["weight_decay"] == 1e-2
    d = ops.optimizer_defaults("rmsprop")
    assert (d["lr"], d["alpha"], d["eps"], d["centered"]) == (1e-2, 0.99, 1e-8, False)
    d = ops.optimizer_defaults("adagrad")
    assert (d["lr"], d["eps"], d["lr_decay"], d["initial_accumulator_value"]) == (1e-2, 1e-10, 0.0, 0.0)
    assert ops.optimizer_state_count("sgd") == 0 and ops.optimizer_state_count("sgd", momentum=0.5) == 1
    assert ops.optimizer_state_count("adam") == 2 and ops.optimizer_state_count("adagrad") == 1
    assert ops.optimizer_state_count("rmsprop", momentum=0.5, centered=True) == 3


def test_optimizer_step_bad_arguments():
    p, g = np.ones((2, 3)), np.ones((2, 3))
    m, v = np.zeros((2, 3)), np.zeros((2, 3))
    with pytest.raises(ValueError, match="mode"):
        ops.optimizer_step(p, g, [], mode="lbfgs", step=1)
    with pytest.raises(TypeError, match="betas"):
        ops.optimizer_step(p, g, [m, v], mode="adam", step=1, betas=(0.9, 0.99))
    with pytest.raises(TypeError, match="lr"):
        ops.optimizer_step(p, g, [m, v], mode="adam", step=1, lr="0.1")
    with pytest.raises(TypeError, match="centered"):
        ops.optimizer_step(p, g, [m], mode="rmsprop", step=1, centered=0.5)
    with pytest.raises(ValueError, match="step"):
        ops.optimizer_step(p, g, [m, v], mode="adam", step=0)
    with pytest.raises(TypeError, match="step"):
        ops.optimizer_step(p, g, [m, v], mode="adam", step=1.0)
    with pytest.raises(ValueError, match="beta1"):
        ops.optimizer_step(p, g, [m, v], mode="adam", step=1, beta1=1.0)
    with pytest.raises(ValueError, match="lr"):
        ops.optimizer_step(p, g, [m, v], mode="adam", step=1, lr=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        ops.optimizer_step(p, g, [], mode="sgd", step=1, nesterov=True)
    with pytest.raises(ValueError, match="state: this optimizer needs 2 state arrays, got 1"):
        ops.optimizer_step(p, g, [m], mode="adam", step=1)
    with pytest.raises(ValueError, match=r"state\[1\]: expected shape"):
        ops.optimizer_step(p, g, [m, np.zeros((3, 2))], mode="adam", step=1)
    with pytest.raises(TypeError, match=r"state\[0\]: dtype float32 differs"):
        ops.optimizer_step(p, g, [m.astype(np.float32), v], mode="adam", step=1)
    with pytest.raises(ValueError, match=r"state\[0\]: array is read-only"):
        ro = np.zeros((2, 3))
        ro.flags.writeable = False
        ops.optimizer_step(p, g, [ro, v], mode="adam", step=1)
    with pytest.raises(TypeError, match="state"):
        ops.optimizer_step(p, g, m, mode="adam", step=1)
    np.testing.assert_array_equal(p, 1.0)
    np.testing.assert_array_equal(m, 0.0)


def test_linear_backward_update_equals_gradient_then_step():
    rng = np.random.default_rng(7)
    n, fin, fout = 6, 9, 5
    for mode, hyper in CONFIGS:
        for dtype in (np.float64, np.float32):
            dy = rng.standard_normal((n, fout)).astype(dtype)
            x = rng.standard_normal((n, fin)).astype(dtype)
            w0 = rng.standard_normal((fout, fin)).astype(dtype)
            b0 = rng.standard_normal(fout).astype(dtype)
            h = full_hyper(mode, hyper)
            count = ops.optimizer_state_count(mode, **hyper)
            w1, b1, w2, b2 = w0.copy(), b0.copy(), w0.copy(), b0.copy()
            ws1, bs1 = _init_state(mode, h, count, w0.shape, dtype), _init_state(mode, h, count, (1, fout), dtype)
            bs1 = [s.reshape(fout) for s in bs1]
            ws2, bs2 = [s.copy() for s in ws1], [s.copy() for s in bs1]
            for t in (1, 2, 3):
                dx1 = ops.linear_backward_update(dy, x, w1, b1, weight_state=ws1, bias_state=bs1, mode=mode, step=t,
                                                 dx=True, **hyper)
                dx2 = dy @ w2
                dw, db = dy.T @ x, dy.sum(0)
                ops.optimizer_step(w2, dw.astype(dtype), ws2, mode=mode, step=t, **hyper)
                ops.optimizer_step(b2, db.astype(dtype), bs2, mode=mode, step=t, **hyper)
            rtol = 1e-4 if dtype == np.float32 else 1e-10
            np.testing.assert_allclose(dx1, dx2, rtol=rtol, atol=rtol, err_msg=f"{mode} {hyper}")
            np.testing.assert_allclose(w1, w2, rtol=rtol, atol=rtol, err_msg=f"{mode} {hyper}")
            np.testing.assert_allclose(b1, b2, rtol=rtol, atol=rtol, err_msg=f"{mode} {hyper}")
            for a, b in zip(ws1 + bs1, ws2 + bs2):
                np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol, err_msg=f"{mode} {hyper} state")
    with pytest.raises(ValueError, match="weight_state: this optimizer needs 2"):
        ops.linear_backward_update(dy, x, w1, b1, weight_state=[], bias_state=[], mode="adam", step=1)


# ---- the optimizer classes ------------------------------------------------------------
CLASS_CASES = [
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True), "sgd"),
    (optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.01), "adam"),
    (optim.AdamW, dict(lr=0.01), "adamw"),
    (optim.RMSprop, dict(lr=0.01, momentum=0.5, centered=True), "rmsprop"),
    (optim.Adagrad, dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1), "adagrad"),
]


def _ops_hyper(cls, kw):
    kw = dict(kw)
    if "betas" in kw:
        kw["beta1"], kw["beta2"] = kw.pop("betas")
    if cls is optim.AdamW and "weight_decay" not in kw:
        kw["weight_decay"] = 1e-2
    return kw


@pytest.mark.parametrize("cls,kw,mode", CLASS_CASES)
def test_optimizer_classes_follow_the_reference(cls, kw, mode):
    rng = np.random.default_rng(1)
    a = nn.Parameter(rng.standard_normal((4, 3)), "a")
    b = nn.Parameter(rng.standard_normal(3), "b")
    opt = cls([a, b], **kw)
    h = full_hyper(mode, _ops_hyper(cls, kw))
    count = ops.optimizer_state_count(mode, **_ops_hyper(cls, kw))
    refs = [(a.data.copy(), [np.full(a.data.shape, h["initial_accumulator_value"] if mode == "adagrad" else 0.0)
                             for _ in range(3)]),
            (b.data.copy(), [np.full(b.data.shape, h["initial_accumulator_value"] if mode == "adagrad" else 0.0)
                             for _ in range(3)])]
    for t in range(1, 31):
        for p in (a, b):
            p.grad[...] = rng.standard_normal(p.data.shape)
        opt.step()
        for p, (pr, st) in zip((a, b), refs):
            use = st[:count] if not (mode == "rmsprop" and h["centered"] and h["momentum"] <= 0) else st[:2]
            reference_step(mode, h, t, pr, p.grad, use)
    assert opt.steps == 30
    for p, (pr, _) in zip((a, b), refs):
        np.testing.assert_allclose(p.data, pr, rtol=1e-10, atol=1e-12)
    assert len(opt.state_dict()["state"][0]) == count


@pytest.mark.parametrize("cls,kw,mode", CLASS_CASES)
def test_state_dict_round_trip_resumes_exactly(cls, kw, mode):
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal((3, 2)) for _ in range(10)]
    p1 = nn.Parameter(np.linspace(-1, 1, 6).reshape(3, 2), "p")
    o1 = cls([p1], **kw)
    for g in grads[:5]:
        p1.grad[...] = g
        o1.step()
    sd = o1.state_dict()
    assert sd["type"] == cls.__name__ and sd["step"] == 5 and isinstance(sd["hyper"], dict)
    assert all(isinstance(a, np.ndarray) for a in sd["state"][0].values())
    # The state dict is a copy: later steps do not change it.
    before = {k: a.copy() for k, a in sd["state"][0].items()}
    p2 = nn.Parameter(p1.data.copy(), "p")
    o2 = cls([p2], **kw)
    o2.load_state_dict(sd)
    for g in grads[5:]:
        for p, o in ((p1, o1), (p2, o2)):
            p.grad[...] = g
            o.step()
    np.testing.assert_array_equal(p1.data, p2.data)
    for k in before:
        np.testing.assert_array_equal(sd["state"][0][k], before[k])
    assert o2.steps == 10


def test_load_state_dict_validates():
    p = nn.Parameter(np.zeros((2, 2)), "p")
    opt = optim.Adam([p], lr=0.1)
    p.grad[...] = 1.0
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="type is 'Adam', but this optimizer is SGD"):
        optim.SGD([p], 0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="state has 2 entries, but this optimizer has 1 parameters"):
        opt.load_state_dict(dict(sd, state=sd["state"] * 2))
    bad = dict(sd, state=[{"exp_avg": np.zeros((3, 2)), "exp_avg_sq": np.zeros((2, 2))}])
    with pytest.raises(ValueError, match=r"state\[0\]\['exp_avg'\] has shape \(3, 2\)"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="buffers"):
        opt.load_state_dict(dict(sd, state=[{"exp_avg": np.zeros((2, 2))}]))
    with pytest.raises(ValueError, match="hyper has keys"):
        opt.load_state_dict(dict(sd, hyper={"lr": 0.1}))
    with pytest.raises(ValueError, match="betas"):
        opt.load_state_dict(dict(sd, hyper=dict(sd["hyper"], betas=[0.9, 1.5])))
    with pytest.raises(ValueError, match="step"):
        opt.load_state_dict(dict(sd, step=-1))
    with pytest.raises(ValueError, match="missing keys"):
        opt.load_state_dict({"type": "Adam"})
    assert opt.betas == (0.9, 0.999) and opt.steps == 1  # nothing changed by the failures
    fresh = optim.Adam([p], lr=0.5)
    fresh.load_state_dict(sd)
    assert fresh.base_lr == 0.1 and fresh.steps == 1
    np.testing.assert_array_equal(fresh.state[0]["exp_avg"], opt.state[0]["exp_avg"])
    # SGD keeps its velocity list; a state dict from before the first step has no buffers.
    s = optim.SGD([p], 0.1, momentum=0.9)
    assert s.state_dict()["state"] == [{}]
    s.load_state_dict(s.state_dict())
    assert s.velocity == [None]


def test_classes_check_hyperparameters():
    p = nn.Parameter(np.zeros(2), "p")
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="betas"):
        optim.AdamW([p], betas=0.9)
    with pytest.raises(ValueError, match="eps"):
        optim.RMSprop([p], eps=-1)
    with pytest.raises(TypeError, match="centered"):
        optim.RMSprop([p], centered="yes")
    with pytest.raises(ValueError, match="lr_decay"):
        optim.Adagrad([p], lr_decay=-0.1)
    with pytest.raises(ValueError, match="lr"):
        optim.Adam([p], lr=0)
    with pytest.raises(TypeError, match="params"):
        optim.Adam([np.zeros(2)])


def test_make_optimizer_new_names_and_schedules():
    p = nn.Parameter(np.ones(3), "p")
    assert isinstance(optim.make_optimizer("adam", [p]), optim.Adam)
    w = optim.make_optimizer("adamw", [p], lr=0.01)
    assert isinstance(w, optim.AdamW) and w.weight_decay == 1e-2 and w.base_lr == 0.01
    r = optim.make_optimizer("rmsprop", [p], momentum=0.9, centered=True)
    assert r.momentum == 0.9 and r.centered and r.base_lr == 1e-2
    assert optim.make_optimizer("adagrad", [p], lr_decay=0.5).lr_decay == 0.5
    with pytest.raises(TypeError, match="momentum: not a hyperparameter of optimizer 'adam'"):
        optim.make_optimizer("adam", [p], momentum=0.9)
    a = optim.Adam([p], lr=0.1, schedule=optim.StepLR(2, 0.5))
    assert [a.set_epoch(e) for e in range(4)] == [0.1, 0.1, 0.05, 0.05]
    # The scheduled rate is the one the step uses: lr 0 ... is not allowed, so compare two rates.
    p.grad[...] = 1.0
    a.set_epoch(2)
    a.step()  # first Adam step moves each weight by lr (m_hat / sqrt(v_hat) = 1)
    np.testing.assert_allclose(p.data, 1.0 - 0.05, rtol=1e-6)


def _blobs(n, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((3, 5)) * 3
    y = rng.integers(0, 3, n)
    X = (centers[y] + rng.standard_normal((n, 5))).astype(np.float32)
    return X, y


@pytest.mark.parametrize("name,lr", [("adam", 0.01), ("adamw", 0.01), ("rmsprop", 0.01), ("adagrad", 0.1)])
def test_fit_by_name_converges(name, lr):
    X, y = _blobs(300)
    net = nn.mlp([5, 16, 3], seed=0)
    before = train.error_rate(net, X, y)
    h = train.fit(net, X, y, optimizer=name, lr=lr, epochs=8, batch_size=16, progress=False)
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]
    assert train.error_rate(net, X, y) < min(10.0, before)
    # Without lr, the rate is the optimizer's own default.
    h = train.fit(nn.mlp([5, 16, 3], seed=0), X[:32], y[:32], optimizer=name, epochs=1, progress=False)
    assert h.lr[0] == pytest.approx(optim.OPTIMIZERS[name]([nn.Parameter(np.zeros(1), "z")]).base_lr)


def test_fit_with_an_optimizer_instance_and_weight_decay_by_name():
    X, y = _blobs(200, seed=1)
    net = nn.mlp([5, 8, 3], seed=1)
    opt = optim.Adam(net.parameters(), lr=0.01)
    h = train.fit(net, X, y, optimizer=opt, epochs=3, progress=False)
    assert opt.steps == 3 * math.ceil(200 / 32) and h.epochs == 3
    net2 = nn.mlp([5, 8, 3], seed=1)
    h2 = train.fit(net2, X, y, optimizer="adamw", lr=0.01, weight_decay=0.1, epochs=1, progress=False)
    assert h2.lr == [0.01]
