"""layerwise.adversarial: FGSM raises the loss and matches sign(dJ/dx) from finite
differences; evaluate's numbers are what they claim; fooling reaches the confidence;
adversarial training lowers the adversarial error on a small synthetic problem; the
adversarial step's gradients are those of the Goodfellow et al. objective; bad inputs."""
import numpy as np
import pytest

import layerwise as lw
from layerwise import adversarial as adv

from _lw_helpers import _one_thread, numeric_grad, rel_err  # noqa: F401  (autouse fixture)


def blobs(n=600, d=20, classes=3, spread=0.12, seed=0):
    """Classes around random centers in [0.2, 0.8]^d: separable, pixels in [0, 1]."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0.2, 0.8, size=(classes, d))
    y = rng.integers(0, classes, size=n)
    X = np.clip(centers[y] + spread * rng.standard_normal((n, d)), 0, 1).astype(np.float32)
    return X, y


@pytest.fixture(scope="module")
def trained():
    X, y = blobs()
    net = lw.nn.mlp([20, 32, 3], seed=0)
    lw.train.fit(net, X[:500], y[:500], lr=0.5, momentum=0.9, epochs=15, batch_size=32, progress=False)
    return net, X, y


def mean_loss(net, X, y):
    return lw.train.evaluate(net, X, y)["loss"]


def test_fgsm_increases_the_loss_and_stays_in_range(trained):
    net, X, y = trained
    Xt, yt = X[500:], y[500:]
    base = mean_loss(net, Xt, yt)
    prev = base
    for eps in (0.02, 0.05, 0.1):
        Xa = adv.fgsm(net, Xt, yt, eps, batch_size=37)
        assert Xa.shape == Xt.shape and Xa.dtype == np.float32
        assert Xa.min() >= 0 and Xa.max() <= 1
        assert np.abs(Xa - Xt).max() <= eps + 1e-6
        cur = mean_loss(net, Xa, yt)
        assert cur > prev
        prev = cur
    np.testing.assert_array_equal(adv.fgsm(net, Xt, yt, 0.0), Xt)


def test_fgsm_follows_the_numeric_input_gradient():
    rng = np.random.default_rng(3)
    net = lw.nn.mlp([6, 5, 3], dtype="float64", seed=1)
    X = rng.uniform(0.3, 0.7, size=(4, 6))
    y = np.array([0, 1, 2, 1])
    loss_fn = lw.nn.get_loss("softmax_cross_entropy")
    g = numeric_grad(lambda: loss_fn(net.forward(X), y)[0], X)
    Xa = adv.fgsm(net, X, y, 0.01)
    np.testing.assert_allclose(Xa, np.clip(X + 0.01 * np.sign(g), 0, 1), atol=1e-15)


def _full_backward_dx(net, X, y, loss="softmax_cross_entropy"):
    out = net.forward(X, train=False)
    _, dout = lw.nn.get_loss(loss)(out, y)
    return net.backward(dout, input_grad=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_input_gradient_only_backward_equals_the_full_backward(dtype):
    rng = np.random.default_rng(4)
    net = lw.nn.Sequential(lw.nn.Linear(12, 9, activation="sigmoid", dtype=dtype, rng=0), lw.nn.Dropout(0.3),
                           lw.nn.Linear(9, 7, activation="tanh", dtype=dtype, rng=1), lw.nn.Sigmoid(),
                           lw.nn.Linear(7, 4, dtype=dtype, rng=2))
    X = rng.uniform(0, 1, size=(23, 12)).astype(dtype)
    y = rng.integers(0, 4, size=23).astype(np.int32)
    full = _full_backward_dx(net, X, y).copy()
    grads = [p.grad.copy() for p in net.parameters()]
    for p in net.parameters():
        p.grad.fill(3.0)
    out = net.forward(X, train=False)
    only = net.backward(lw.nn.get_loss("softmax_cross_entropy")(out, y)[1], param_grad=False)
    np.testing.assert_array_equal(only, full)  # the same products in the same order
    assert all(np.all(p.grad == 3.0) for p in net.parameters())  # no parameter gradient written
    # fgsm and fool take that path: the same examples, .grad untouched
    eps = 0.05
    np.testing.assert_array_equal(adv.fgsm(net, X, y, eps, batch_size=10),
                                  np.clip(X + X.dtype.type(eps) * np.sign(full), 0, 1))
    assert all(np.all(p.grad == 3.0) for p in net.parameters())
    adv.fool(net, 1, count=3, steps=2, lr=0.01)
    assert all(np.all(p.grad == 3.0) for p in net.parameters())
    net.backward(lw.nn.get_loss("softmax_cross_entropy")(net.forward(X), y)[1])
    for p, g in zip(net.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)


def test_modules_without_the_param_grad_keyword_still_work_in_containers():
    class OldScale(lw.nn.Module):  # a user module written against the old protocol
        def forward(self, x, *, train=False):
            return 2.0 * x

        def backward(self, dy, *, input_grad=True):
            return 2.0 * dy if input_grad else None

    rng = np.random.default_rng(2)
    net = lw.nn.Sequential(lw.nn.Linear(5, 4, activation="sigmoid", dtype="float64", rng=0), OldScale(),
                           lw.nn.Linear(4, 3, dtype="float64", rng=1))
    X, y = rng.uniform(0, 1, size=(6, 5)), np.array([0, 1, 2, 0, 1, 2], dtype=np.int32)
    full = _full_backward_dx(net, X, y).copy()
    out = net.forward(X)
    np.testing.assert_array_equal(
        lw.nn.backward_of(net, lw.nn.get_loss("softmax_cross_entropy")(out, y)[1], param_grad=False), full)
    np.testing.assert_array_equal(adv.fgsm(net, X, y, 0.1), np.clip(X + 0.1 * np.sign(full), 0, 1))


def test_evaluate_reports_error_confidence_and_distortion(trained):
    net, X, y = trained
    Xt, yt = X[500:], y[500:]
    rows = adv.evaluate(net, Xt, yt, [0.0, 0.1, 0.25])
    assert [r["eps"] for r in rows] == [0.0, 0.1, 0.25]
    assert rows[0]["error"] == pytest.approx(lw.train.error_rate(net, Xt, yt))
    assert rows[0]["linf"] == 0 and rows[0]["l2"] == 0
    assert rows[0]["error"] < rows[1]["error"] <= rows[2]["error"]
    Xa = adv.fgsm(net, Xt, yt, 0.25)
    prob = lw.train.predict_proba(net, Xa)
    wrong = prob.argmax(1) != yt
    assert rows[2]["error"] == pytest.approx(100 * wrong.mean())
    assert rows[2]["mean_confidence_wrong"] == pytest.approx(prob.max(1)[wrong].mean(), rel=1e-5)
    assert rows[2]["linf"] == pytest.approx(np.abs(Xa - Xt).max(1).mean(), rel=1e-5)
    assert rows[2]["l2"] == pytest.approx(np.linalg.norm(Xa - Xt, axis=1).mean(), rel=1e-5)


@pytest.mark.parametrize("start", ["noise", "blank"])
def test_fool_reaches_the_confidence(trained, start):
    net = trained[0]
    target = np.array([1, 2, 0])
    images, info = adv.fool(net, target, start=start, count=3, steps=400, lr=0.01, confidence=0.996, seed=4)
    assert images.shape == (3, 20) and images.min() >= 0 and images.max() <= 1
    assert info["reached"].all()
    prob = lw.train.predict_proba(net, images)
    np.testing.assert_array_equal(prob.argmax(1), target)
    assert (prob[np.arange(3), target] >= 0.996).all()
    np.testing.assert_allclose(info["confidence"], prob[np.arange(3), target], rtol=1e-5)
    assert (info["steps"] <= 400).all()
    assert (info["linf"] <= info["steps"] * 0.01 + 1e-6).all()
    # the images that started below the confidence had to move
    x0 = np.random.default_rng(4).uniform(0, 1, (3, 20)) if start == "noise" else np.zeros((3, 20))
    p0 = lw.train.predict_proba(net, x0.astype(np.float32))[np.arange(3), target]
    moved = p0 < 0.996
    assert moved.any()
    assert (info["steps"][moved] >= 1).all() and (info["linf"][moved] > 0).all()
    assert (info["steps"][~moved] == 0).all()


def test_fool_from_real_images_of_other_classes(trained):
    net, X, y = trained
    start = X[500:506]
    target = (y[500:506] + 1) % 3
    images, info = adv.fool(net, target, start=start, steps=500, lr=0.005)
    assert info["reached"].all()
    np.testing.assert_array_equal(lw.train.predict(net, images), target)
    np.testing.assert_allclose(info["l2"], np.linalg.norm(images - start, axis=1), rtol=1e-5)
    np.testing.assert_array_equal(start, X[500:506])  # the start is not modified


def test_fool_stops_at_zero_steps_and_reports_not_reached(trained):
    net = trained[0]
    images, info = adv.fool(net, 1, start="blank", count=2, steps=0)
    assert (info["steps"] == 0).all() and not info["reached"].any()
    np.testing.assert_array_equal(images, 0)


def test_adversarial_step_gradient_is_the_goodfellow_objective():
    rng = np.random.default_rng(5)
    net = lw.nn.mlp([6, 5, 3], dtype="float64", seed=2)
    X = rng.uniform(0.2, 0.8, size=(8, 6))
    y = rng.integers(0, 3, size=8)
    loss_fn = lw.nn.get_loss("softmax_cross_entropy")
    eps, alpha = 0.05, 0.3
    X_adv = adv.fgsm(net, X, y, eps)  # the adversarial batch is held constant

    def objective():
        return alpha * loss_fn(net.forward(X), y)[0] + (1 - alpha) * loss_fn(net.forward(X_adv), y)[0]

    want_value = objective()
    value, out = adv.adversarial_loss_step(net, X, y, eps, alpha, loss_fn)
    assert value == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(out, net.forward(X), rtol=1e-12)
    grads = [p.grad.copy() for p in net.parameters()]
    for p, g in zip(net.parameters(), grads):
        assert rel_err(g, numeric_grad(objective, p.data)) < 1e-7, p.name


def test_adversarial_training_lowers_adversarial_error():
    X, y = blobs(n=900, d=20, classes=3, spread=0.12, seed=7)
    Xtr, ytr, Xte, yte = X[:700], y[:700], X[700:], y[700:]
    kw = dict(lr=0.5, momentum=0.9, epochs=15, batch_size=32, progress=False, seed=0)
    plain = lw.nn.mlp([20, 32, 3], seed=0)
    lw.train.fit(plain, Xtr, ytr, **kw)
    robust = lw.nn.mlp([20, 32, 3], seed=0)
    hist = adv.adversarial_fit(robust, Xtr, ytr, eps=0.1, alpha=0.5, X_val=Xte, y_val=yte, **kw)
    assert hist.epochs == 15 and len(hist.valid_error) == 15
    e_plain = adv.evaluate(plain, Xte, yte, [0.0, 0.1])
    e_robust = adv.evaluate(robust, Xte, yte, [0.0, 0.1])
    assert e_robust[0]["error"] < 5.0  # still a good classifier on clean data
    assert e_robust[1]["error"] < e_plain[1]["error"] - 10.0


def test_adversarial_objective_runs_under_plain_fit_with_an_adam_optimizer():
    X, y = blobs(n=200, seed=2)
    net = lw.nn.mlp([20, 16, 3], seed=0)
    before = [p.data.copy() for p in net.parameters()]
    module, loss = adv.adversarial_objective(net, eps=0.05, alpha=0.5)
    opt = lw.optim.SGD(net.parameters(), 0.1)
    lw.train.fit(module, X, y, loss=loss, optimizer=opt, epochs=1, progress=False)
    assert any(not np.array_equal(b, p.data) for b, p in zip(before, net.parameters()))


def test_bad_inputs(trained):
    net, X, y = trained
    with pytest.raises(ValueError, match="eps"):
        adv.fgsm(net, X, y, -0.1)
    with pytest.raises(ValueError, match="eps"):
        adv.fgsm(net, X, y, float("nan"))
    with pytest.raises(TypeError, match="net"):
        adv.fgsm("net", X, y, 0.1)
    with pytest.raises(ValueError, match="X"):
        adv.fgsm(net, X[:, :5], y, 0.1)
    with pytest.raises(ValueError, match="y"):
        adv.fgsm(net, X, y[:3], 0.1)
    with pytest.raises(ValueError, match="eps_list"):
        adv.evaluate(net, X, y, [0.1, -1])
    with pytest.raises(ValueError, match="target_class"):
        adv.fool(net, 3, count=1)
    with pytest.raises(ValueError, match="target_class"):
        adv.fool(net, [0, 1], count=3)
    with pytest.raises(ValueError, match="start"):
        adv.fool(net, 0, start="zeros")
    with pytest.raises(ValueError, match="start"):
        adv.fool(net, 0, start=X[:2] * 3)
    with pytest.raises(ValueError, match="confidence"):
        adv.fool(net, 0, confidence=1.0)
    with pytest.raises(ValueError, match="steps"):
        adv.fool(net, 0, steps=-1)
    with pytest.raises(ValueError, match="alpha"):
        adv.adversarial_objective(net, alpha=1.5)
    sig = lw.nn.mlp([20, 3], output_activation="sigmoid")
    with pytest.raises(ValueError, match="logits"):
        adv.fool(sig, 0)


# ---- the robustness command ------------------------------------------------------------------
def _mnist_or_skip():
    from conftest import mnist_dir

    d = mnist_dir()
    if d is None:
        pytest.skip("needs MNIST: set LAYERWISE_DATA to a directory with the four MNIST files")
    return d


def test_robustness_smoke_trains_and_writes_results(tmp_path):
    import argparse
    import json

    from layerwise.experiments import robustness

    data = _mnist_or_skip()
    parser = argparse.ArgumentParser()
    robustness.add_arguments(parser)
    out = tmp_path / "out"
    args = parser.parse_args(["--preset", "smoke", "--data", str(data), "--out", str(out), "--rows", "shallow",
                              "--rbf-units", "20", "--rbf-epochs", "1", "--no-progress"])
    assert robustness.run(args) == 0
    res = json.loads((out / "results.json").read_text())
    names = [r["name"] for r in res["rows"]]
    import importlib.util

    expected = ["shallow", "deep_adversarial"] + (["rbf_network"] if importlib.util.find_spec("sklearn") else [])
    assert names == expected
    if "rbf_network" in names:
        rbf_row = res["rows"][-1]["training"]
        assert rbf_row["units"] == 20 and rbf_row["epochs"] == 1 and "least squares" in rbf_row["readout"]
        assert 0 <= rbf_row["valid_error_before_sgd"] < 90  # the solved readout already classifies
    for r in res["rows"]:
        assert [a["eps"] for a in r["fgsm"]] == list(robustness.EPS)
        assert r["fgsm"][0]["linf"] == 0 and 0 < r["fgsm"][-1]["linf"] <= 0.25 + 1e-6
        assert r["fgsm"][-1]["error"] >= r["fgsm"][0]["error"]
    fool = res["fooling"]
    assert fool["net"] == "shallow" and fool["from_noise"]["of"] == 10
    reached = [c for c in fool["from_noise"]["confidence"] if c >= robustness.FOOL_CONFIDENCE]
    assert len(reached) == fool["from_noise"]["reached"]
    from layerwise.experiments import bengio2006_plots as plots
    if plots.available():
        for f in ("adversarial_error.png", "adversarial_digits.png", "fooling_images.png"):
            assert (out / f).stat().st_size > 1000
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_robustness_loads_saved_nets(tmp_path, capsys):
    from layerwise.experiments import robustness

    data = _mnist_or_skip()
    nets = tmp_path / "nets"
    nets.mkdir()
    lw.nn.save(lw.nn.mlp([784, 16, 10], seed=0), nets / "tiny.npz")
    res = robustness.experiment("smoke", nets=str(nets), data=str(data), out=None, adversarial_training=False,
                                rbf_units=0, plots=False, log=lambda s: None)
    assert [r["name"] for r in res["rows"]] == ["tiny"]
    assert res["nets_source"].startswith("loaded from")


def test_robustness_user_errors_are_one_line(tmp_path, capsys):
    import argparse

    from layerwise.experiments import robustness

    parser = argparse.ArgumentParser()
    robustness.add_arguments(parser)
    args = parser.parse_args(["--nets", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                              "--data", str(tmp_path)])
    assert robustness.run(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("layerwise robustness: error:") and "\n" not in err
    args = parser.parse_args(["--preset", "smoke", "--rbf-epochs", "-1", "--out", str(tmp_path / "o"),
                              "--data", str(tmp_path)])
    assert robustness.run(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("layerwise robustness: error: --rbf-epochs") and "\n" not in err
