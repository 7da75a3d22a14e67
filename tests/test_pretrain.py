"""layerwise.pretrain: greedy supervised, autoencoder and RBM/DBN pretraining, then fine-tuning."""
import itertools

import numpy as np
import pytest

from layerwise import pretrain, train
from layerwise.pretrain import RBM, AutoEncoder
from _lw_helpers import _one_thread, check_gradients, numeric_grad, prototypes, rel_err  # noqa: F401

SIZES = [16, 24, 24, 4]


@pytest.fixture(scope="module")
def data():
    X, y = prototypes(n=600)
    return X[:480], y[:480], X[480:], y[480:]


def finetune(net, data, epochs=5):
    X, y, Xt, yt = data
    train.fit(net, X, y, lr=0.5, momentum=0.9, epochs=epochs, progress=False)
    return train.error_rate(net, Xt, yt)


def assert_deep_net(net):
    assert [type(m).__name__ for m in net] == ["Linear"] * 3
    assert [(l.in_features, l.out_features) for l in net] == [(16, 24), (24, 24), (24, 4)]
    assert [l.activation for l in net] == ["sigmoid", "sigmoid", "identity"]


# ---- each strategy trains a deep net that works ---------------------------------------------
def test_greedy_supervised(data):
    X, y, Xt, yt = data
    net, info = pretrain.greedy_supervised(SIZES, X, y, epochs_per_layer=3, lr=0.5, momentum=0.9)
    assert_deep_net(net) and len(info["histories"]) == 2
    assert train.error_rate(net, Xt, yt) < 10.0  # the last temporary head is kept: works already
    assert finetune(net, data) < 10.0


@pytest.mark.parametrize("tied,noise,loss", [(False, 0.0, "quadratic"), (True, 0.0, "quadratic"),
                                             (False, 0.3, "binary_cross_entropy"), (True, 0.2, "mse")])
def test_greedy_autoencoder(data, tied, noise, loss):
    X, y, _, _ = data
    net, info = pretrain.greedy_autoencoder(SIZES, X, epochs_per_layer=5, lr=0.5, momentum=0.9, loss=loss,
                                            tied=tied, noise=noise)
    assert_deep_net(net)
    for errs in info["reconstruction_error"]:  # reconstruction error falls during pretraining
        assert errs[-1] < 0.8 * errs[0]
    assert info["autoencoders"][0].tied == tied and info["autoencoders"][0].encoder is net[0]
    assert finetune(net, data) < 10.0


def test_greedy_rbm(data):
    X, y, _, _ = data
    net, info = pretrain.greedy_rbm(SIZES, X, epochs_per_layer=10, lr=0.3, momentum=0.5, k=1)
    assert_deep_net(net)
    for rbm, layer in zip(info["rbms"], net):
        np.testing.assert_array_equal(layer.weight.data, rbm.weight.data)
        np.testing.assert_array_equal(layer.bias.data, rbm.hidden_bias.data)
    errs = info["reconstruction_error"][0]
    assert errs[-1] < 0.8 * errs[0]
    assert finetune(net, data) < 10.0


def test_greedy_rbm_persistent_and_deterministic(data):
    X = data[0]
    runs = [pretrain.greedy_rbm(SIZES, X, epochs_per_layer=2, lr=0.3, k=2, persistent=True, seed=5)[0]
            for _ in range(2)]
    for p, q in zip(runs[0].parameters(), runs[1].parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    other = pretrain.greedy_rbm(SIZES, X, epochs_per_layer=2, lr=0.3, k=2, persistent=True, seed=6)[0]
    assert not np.array_equal(other[0].weight.data, runs[0][0].weight.data)


def test_greedy_rbm_momentum_switch(data):
    """final_momentum replaces momentum from epoch momentum_switch on: switching at 0 is the
    constant final momentum, switching after the last epoch is the constant initial one."""
    X = data[0]

    def weights(**kw):
        net = pretrain.greedy_rbm(SIZES, X, epochs_per_layer=3, lr=0.1, seed=2, **kw)[0]
        return [p.data.copy() for p in net.parameters()]

    def same(a, b):
        return all(np.array_equal(p, q) for p, q in zip(a, b))

    const_hi, const_lo = weights(momentum=0.9), weights(momentum=0.5)
    assert same(weights(momentum=0.5, final_momentum=0.9, momentum_switch=0), const_hi)
    assert same(weights(momentum=0.5, final_momentum=0.9, momentum_switch=3), const_lo)
    mid = weights(momentum=0.5, final_momentum=0.9, momentum_switch=1)
    assert not same(mid, const_hi) and not same(mid, const_lo)
    with pytest.raises(ValueError, match="final_momentum"):
        pretrain.greedy_rbm(SIZES, X, final_momentum=1.0)
    with pytest.raises(ValueError, match="momentum_switch"):
        pretrain.greedy_rbm(SIZES, X, final_momentum=0.9, momentum_switch=-1)


def test_autoencoder_pretraining_is_deterministic(data):
    X = data[0]
    a = pretrain.greedy_autoencoder(SIZES, X, epochs_per_layer=2, noise=0.2, tied=True, seed=1)[0]
    b = pretrain.greedy_autoencoder(SIZES, X, epochs_per_layer=2, noise=0.2, tied=True, seed=1)[0]
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


# ---- autoencoder gradients (tied weights: both uses summed) -------------------------------------
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("loss", ["quadratic", "binary_cross_entropy"])
def test_autoencoder_gradients(tied, loss):
    rng = np.random.default_rng(0)
    ae = AutoEncoder(5, 3, tied=tied, dtype="float64", rng=1)
    if tied:
        ae.decoder_bias.data[...] = rng.normal(size=5) * 0.5
    X = rng.random((4, 5))
    check_gradients(ae, X, X.copy(), loss)


def test_denoising_mask_is_applied_in_training_only():
    ae = AutoEncoder(50, 10, noise=0.5, seed=3, rng=0)
    X = np.ones((40, 50), np.float32)
    ae.forward(X, train=True)
    frac = float((ae._mask == 0).mean())
    assert 0.4 < frac < 0.6
    ae.forward(X)
    assert ae._mask is None
    with pytest.raises(ValueError, match="noise"):
        AutoEncoder(5, 3, noise=1.0)


# ---- RBM ---------------------------------------------------------------------------------------
def test_cd1_lowers_reconstruction_error(data):
    X = data[0]
    rbm = RBM(16, 24, seed=1, rng=0)
    before = rbm.reconstruction_error(X)
    for epoch in range(5):
        for s in range(0, len(X), 20):
            rbm.cd_step(X[s:s + 20], lr=0.3, k=1, momentum=0.5)
    assert rbm.reconstruction_error(X) < 0.7 * before


def all_states(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def exact_gradient(rbm, V):
    """d mean log p(V) / d(W, b, c), by enumerating all visible states (model expectation)."""
    S = all_states(rbm.n_visible)
    f = rbm.free_energy(S)
    p = np.exp(-(f - f.min()))
    p /= p.sum()
    sig = lambda v: 1 / (1 + np.exp(-(v @ rbm.weight.data.T + rbm.hidden_bias.data)))  # noqa: E731
    hd, hm = sig(V), sig(S)
    dW = hd.T @ V / len(V) - (hm * p[:, None]).T @ S
    db = V.mean(0) - p @ S
    dc = hd.mean(0) - p @ hm
    return dW, db, dc


def tiny_rbm():
    rbm = RBM(4, 3, seed=7, dtype="float64", rng=0, init_std=1.0)
    rbm.visible_bias.data[...] = [0.5, -0.5, 0.2, 0.0]
    rbm.hidden_bias.data[...] = [-0.3, 0.4, 0.1]
    V = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 1]], dtype=np.float64)
    return rbm, V


def test_exact_gradient_and_free_energy_are_consistent():
    rbm, V = tiny_rbm()
    S = all_states(4)
    # p(v) from the free energy sums to one, and matches brute force over hidden states too
    H = all_states(3)
    E = -(S @ rbm.visible_bias.data)[:, None] - (H @ rbm.hidden_bias.data)[None, :] - S @ rbm.weight.data.T @ H.T
    logp_brute = np.log(np.exp(-E).sum(1)) - np.log(np.exp(-E).sum())
    logp = np.array([rbm.log_likelihood(S[i:i + 1]) for i in range(16)])
    np.testing.assert_allclose(logp, logp_brute, rtol=1e-10)
    assert np.exp(logp).sum() == pytest.approx(1.0)
    # the enumerated gradient is the derivative of the exact log-likelihood
    dW, db, dc = exact_gradient(rbm, V)
    f = lambda: rbm.log_likelihood(V)  # noqa: E731
    assert rel_err(dW, numeric_grad(f, rbm.weight.data)) < 1e-7
    assert rel_err(db, numeric_grad(f, rbm.visible_bias.data)) < 1e-7
    assert rel_err(dc, numeric_grad(f, rbm.hidden_bias.data)) < 1e-7


def test_cd_k_agrees_with_exact_gradient_for_large_k():
    rbm, V = tiny_rbm()
    dW, db, dc = exact_gradient(rbm, V)
    data = np.repeat(V, 2000, axis=0)
    rbm.cd_gradient(data, k=50)
    est = [-rbm.weight.grad, -rbm.visible_bias.grad, -rbm.hidden_bias.grad]  # .grad is the descent direction
    for e, x in zip(est, (dW, db, dc)):
        big = np.abs(x) > 0.05
        assert np.all(np.sign(e[big]) == np.sign(x[big]))
        assert rel_err(e, x) < 0.05  # CD-1's bias alone is ~0.065 here; sampling noise ~0.02
    # PCD-k estimates the same gradient
    rbm.cd_gradient(data, k=50, persistent=True)
    assert rel_err(-rbm.weight.grad, dW) < 0.1


def test_cd1_mean_field_reconstruction_matches_numpy():
    """sample_visible=False: the negative phase uses p(v|h1) itself, so given the one
    hidden sample (reproducible from the RBM's seed and counter) CD-1 is a closed form."""
    from layerwise import ops
    rbm, V = tiny_rbm()
    W, b, c = rbm.weight.data.copy(), rbm.visible_bias.data.copy(), rbm.hidden_bias.data.copy()
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    ph0 = sig(V @ W.T + c)
    h1 = ops.bernoulli(ph0, seed=rbm.seed, offset=rbm.offset)
    pv1 = sig(h1 @ W + b)
    ph1 = sig(pv1 @ W.T + c)
    recon = rbm.cd_gradient(V, k=1, sample_visible=False)
    n = len(V)
    np.testing.assert_allclose(rbm.weight.grad, (ph1.T @ pv1 - ph0.T @ V) / n, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rbm.visible_bias.grad, (pv1 - V).sum(0) / n, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rbm.hidden_bias.grad, (ph1 - ph0).sum(0) / n, rtol=1e-12, atol=1e-14)
    assert recon == pytest.approx(((pv1 - V) ** 2).sum() / n, rel=1e-12)
    assert rbm.offset == h1.size  # only the hidden layer was sampled


def test_cd_k_mean_field_still_estimates_the_gradient():
    rbm, V = tiny_rbm()
    dW, _, _ = exact_gradient(rbm, V)
    rbm.cd_gradient(np.repeat(V, 2000, axis=0), k=50, sample_visible=False)
    big = np.abs(dW) > 0.05
    assert np.all(np.sign(-rbm.weight.grad[big]) == np.sign(dW[big]))


def test_greedy_rbm_mean_field(data):
    X = data[0]
    net, info = pretrain.greedy_rbm(SIZES, X, epochs_per_layer=10, lr=0.3, momentum=0.5,
                                    sample_visible=False, seed=3)
    errs = info["reconstruction_error"][0]
    assert errs[-1] < 0.8 * errs[0]
    sampled = pretrain.greedy_rbm(SIZES, X, epochs_per_layer=10, lr=0.3, momentum=0.5, seed=3)[0]
    assert not np.array_equal(net[0].weight.data, sampled[0].weight.data)
    assert finetune(net, data) < 10.0


def test_rbm_bad_arguments(data):
    rbm = RBM(4, 3)
    with pytest.raises(ValueError, match="k"):
        rbm.cd_gradient(np.zeros((2, 4), np.float32), k=0)
    with pytest.raises(ValueError, match="n_hidden"):
        RBM(4, 0)


# ---- argument checking ----------------------------------------------------------------------------
def test_bad_sizes_and_losses(data):
    X, y, _, _ = data
    with pytest.raises(ValueError, match="sizes\\[0\\] = 10 does not match X with 16 features"):
        pretrain.greedy_rbm([10, 8, 4], X)
    with pytest.raises(ValueError, match="sizes: need"):
        pretrain.greedy_autoencoder([16, 4], X)
    with pytest.raises(ValueError, match="sizes"):
        pretrain.greedy_supervised([16, -3, 4], X, y)
    with pytest.raises(ValueError, match="loss"):
        pretrain.greedy_autoencoder(SIZES, X, loss="softmax_cross_entropy")
    with pytest.raises(ValueError, match="y: label"):
        pretrain.greedy_supervised([16, 8, 3], X, y, epochs_per_layer=1)
    with pytest.raises(ValueError, match="activation"):
        pretrain.greedy_supervised([16, 8, 4], X, y, activation="softsign")
