"""layerwise.pretrain -- greedy layer-wise pretraining of deep sigmoid nets.

Training a deep sigmoid net end to end from a random start is slow because the
gradient reaching the lower layers is tiny (see layerwise.diagnostics). Greedy
layer-wise training sidesteps that: train one hidden layer at a time, each a
*shallow* problem with healthy gradients, on the codes of the (frozen) layers
below; then stack the layers and fine-tune the whole net with ``train.fit``.

Three ways to train a layer:

* ``greedy_supervised``  -- (idea #2) layer i plus a temporary softmax output layer,
  trained on the labels;
* ``greedy_autoencoder`` -- (idea #3) layer i as the encoder of an autoencoder
  z = h(Wx + b), x' = h(W'z + b') that reconstructs its input (optionally with tied
  weights W' = W^T, and masking noise: a denoising autoencoder);
* ``greedy_rbm``         -- layer i as a Bernoulli-Bernoulli RBM trained with
  contrastive divergence (CD-k, or persistent CD); the stack is a deep belief net
  whose recognition weights initialize the sigmoid net.

``sizes = [inputs, hidden_1, ..., hidden_L, outputs]`` in every function: the L
hidden layers are pretrained, and the output layer is added on top. Each returns
``(net, info)``: a ``nn.Sequential`` ready for ``train.fit`` (softmax
cross-entropy on logits), and a dict of per-layer training records.

All hyperparameters are plain arguments (learning rate, momentum, batch size,
epochs per layer, loss). Same seed, same device: same result.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from . import nn, ops, train
from .nn import Linear, Module, Parameter, Sequential, array_module, to_device

__all__ = ["greedy_supervised", "greedy_autoencoder", "greedy_rbm", "AutoEncoder", "RBM"]


def _check_sizes(sizes, X):
    sizes = list(sizes)
    if len(sizes) < 3:
        raise ValueError(f"sizes: need [inputs, hidden..., outputs] with at least one hidden layer, got {sizes}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
            raise ValueError(f"sizes: every size must be a positive integer, got {sizes}")
    if getattr(X, "ndim", None) != 2:
        raise ValueError(f"X: expected a 2-D array (samples, features), got shape {getattr(X, 'shape', None)}")
    if X.shape[1] != sizes[0]:
        raise ValueError(f"sizes: sizes[0] = {sizes[0]} does not match X with {X.shape[1]} features")
    return [int(s) for s in sizes]


def _as_data(X, dtype, device):
    dtype = nn._check_dtype(dtype)
    X = to_device(X, nn._check_device(device))
    return array_module(X).ascontiguousarray(X, dtype=dtype)


def _seed(seed):
    from .checks import integer

    return integer("seed", seed, low=0)


def _distributed(comm):
    """layerwise.distributed.Distributed of ``comm`` (None stays None)."""
    if comm is None:
        return None
    from . import distributed

    return distributed.wrap(comm)


def _sub_seed(rng):
    """A seed for a counter-based sampler, drawn from the run's Generator (deterministic)."""
    return int(rng.integers(0, 2**62))


# ---- checkpoints of a greedy run ---------------------------------------------------------------
class _GreedyCheckpoint:
    """Checkpoint bookkeeping shared by the greedy_* functions.

    The file (layerwise.checkpoint) has an "outer" section: the strategy, the sizes, the
    layer in progress (1-based; len(sizes) - 1 when finished), the Generator state at the
    start of that layer, the finished layers' parameters and per-layer records. The layer
    in progress adds its own section: "fit" (written by train.fit) or "rbm". Resuming
    rebuilds the finished layers from the file, replays the Generator from the layer's
    start (so the layer's modules are constructed exactly as before) and lets the inner
    loop continue from its section."""

    def __init__(self, kind, sizes, path, every, resume, dist=None):
        from . import checkpoint as ckpt

        self.kind, self.sizes, self.path = kind, list(sizes), path
        self.every = ckpt.parse_every(every)
        if resume and path is None:
            raise ValueError("resume: needs checkpoint=PATH to resume from")
        self.arrays, self.meta, self.inner = {}, None, {}
        self.writes = dist is None or dist.is_root  # distributed: the ranks are identical, rank 0 writes
        saved = ckpt.read(path) if resume and self.writes and ckpt.exists(path) else None
        if dist is not None and resume:  # rank 0's file, on every rank
            saved = dist.broadcast_object(saved)
        if saved is not None:
            arrays, meta = saved
            outer = meta.get("outer")
            if outer is None or outer.get("kind") != kind or outer.get("sizes") != self.sizes:
                raise ValueError(f"checkpoint: {path} is not a checkpoint of greedy_{kind} with sizes {self.sizes}")
            self.arrays, self.meta = arrays, outer
            self.inner = {k: v for k, v in meta.items() if k not in ("outer", "format")}

    @property
    def first_layer(self):
        return self.meta["layer"] if self.meta is not None else 1

    @property
    def finished(self):
        return self.meta is not None and self.meta["finished"]

    def resuming(self, layer, section):
        """Whether layer ``layer`` continues from a saved inner section ("fit" or "rbm")."""
        return self.meta is not None and layer == self.meta["layer"] and self.inner.get(section) is not None

    def saved_params(self, module, name):
        from . import checkpoint as ckpt

        ckpt.load_params(module.parameters(), ckpt.subset(self.arrays, f"outer/{name}/"), what=name)
        return module

    def outer(self, layer, rng, done, records, extra=None, finished=False):
        """(arrays, meta) of the outer section: ``done`` are the finished layers' modules,
        ``extra`` more named modules (e.g. the final head)."""
        from . import checkpoint as ckpt

        arrays = {}
        named = [(f"done/{j}", m) for j, m in enumerate(done)] + list((extra or {}).items())
        for name, m in named:
            arrays.update(ckpt.prefixed(ckpt.param_arrays(m.parameters()), f"outer/{name}/"))
        meta = {"kind": self.kind, "sizes": self.sizes, "layer": layer, "rng": ckpt.rng_state(rng),
                "finished": finished, **records}
        return arrays, meta

    def write(self, outer, inner_arrays=None, inner_meta=None):
        from . import checkpoint as ckpt

        if self.path is None or not self.writes:
            return
        arrays = dict(outer[0])
        arrays.update(inner_arrays or {})
        ckpt.write(self.path, arrays, {"outer": outer[1], **(inner_meta or {})})


def _histories(records):
    return [train.History(**h) for h in records]


def _history_records(histories):
    return [train._plain(h.to_dict()) for h in histories]


# ---- idea #2: greedy supervised -------------------------------------------------------------
def greedy_supervised(sizes, X, y, *, epochs_per_layer=5, lr=0.1, momentum=0.9, batch_size=32,
                      weight_decay=0.0, activation="sigmoid", init="uniform", seed=0, dtype="float32",
                      device="cpu", progress=None, checkpoint=None, checkpoint_every="epoch", resume=False,
                      comm=None):
    """Greedy supervised layer-wise training (idea #2).

    For hidden layer i = 1..L: a new Linear(sizes[i-1], sizes[i], activation) with a
    temporary output layer Linear(sizes[i], sizes[-1]) (logits) is trained with
    softmax cross-entropy on (codes of layer i-1, y) for ``epochs_per_layer`` epochs
    (SGD with ``lr``, ``momentum``, ``weight_decay``, minibatches of ``batch_size``);
    then layer i is frozen and its codes feed layer i+1.

    checkpoint, checkpoint_every, resume: as in ``train.fit``; the file also records the
    layer in progress and the finished layers, so a resumed run continues inside the
    layer where it stopped and ends bitwise equal to an uninterrupted one.

    comm: data-parallel over MPI ranks, as in ``train.fit`` (``batch_size`` is the global
    batch; every rank passes the same arguments and ends with the same net; rank 0 writes).

    Returns (net, info): net = all hidden layers + the *last* temporary output layer
    (already trained on the top codes, so fine-tuning starts from a working
    classifier); info = {"histories": [train.History per layer]}."""
    sizes = _check_sizes(sizes, X)
    seed = _seed(seed)
    dist = _distributed(comm)
    ck = _GreedyCheckpoint("supervised", sizes, checkpoint, checkpoint_every, resume, dist)
    rng = np.random.default_rng(seed)
    codes = _as_data(X, dtype, device)
    hidden, histories, head = [], [], None

    def linear(i, o, act, r):
        return Linear(i, o, activation=act, init=init, dtype=dtype, device=device, rng=r)

    if ck.meta is not None:  # rebuild the finished layers; replay the Generator from the layer's start
        from . import checkpoint as ckpt

        histories = _histories(ck.meta["histories"])
        for j in range(ck.first_layer - 1):
            hidden.append(ck.saved_params(linear(sizes[j], sizes[j + 1], activation, 0), f"done/{j}"))
            codes = hidden[-1].forward(codes, train=False)
        ckpt.set_rng_state(rng, ck.meta["rng"])
        if ck.finished:
            head = ck.saved_params(linear(sizes[-2], sizes[-1], "identity", 0), "head")
            return Sequential(*hidden, head), {"histories": histories}
    for i in range(ck.first_layer, len(sizes) - 1):
        outer = ck.outer(i, rng, hidden, {"histories": _history_records(histories)})
        resuming = ck.resuming(i, "fit")
        if not resuming:
            ck.write(outer)  # the layer starts: no stale inner section from the previous one
        layer = linear(sizes[i - 1], sizes[i], activation, rng)
        head = linear(sizes[i], sizes[-1], "identity", rng)
        hist = train.fit(Sequential(layer, head), codes, y, loss="softmax_cross_entropy", lr=lr,
                         momentum=momentum, weight_decay=weight_decay, epochs=epochs_per_layer,
                         batch_size=batch_size, seed=_sub_seed(rng), progress=progress,
                         checkpoint=checkpoint, checkpoint_every=ck.every, resume=resuming, comm=dist,
                         _outer=outer)
        histories.append(hist)
        hidden.append(layer)
        codes = layer.forward(codes, train=False)  # the frozen layer's codes: the next layer's data
    ck.write(ck.outer(len(sizes) - 1, rng, hidden, {"histories": _history_records(histories)},
                      extra={"head": head}, finished=True))
    return Sequential(*hidden, head), {"histories": histories}


# ---- idea #3: autoencoders ------------------------------------------------------------------
class AutoEncoder(Module):
    """One-hidden-layer autoencoder: z = act(W x + b), x' = out_act(W' z + b').

    tied=True shares the weights, W' = W^T: W then gets the sum of the gradients of
    its two uses. noise > 0 makes it a denoising autoencoder: in training each input
    is zeroed with probability ``noise`` (masking noise, sampled with ops.bernoulli
    under ``seed``) while the target stays the clean input.

    As a Module its input and output are both x (in_features = out_features =
    n_visible), so ``train.fit(ae, X, X, loss=...)`` trains it."""

    def __init__(self, n_visible, n_hidden, *, activation="sigmoid", output_activation="sigmoid", tied=False,
                 noise=0.0, seed=0, init="uniform", dtype="float32", device="cpu", rng=None):
        if not (0.0 <= noise < 1.0):
            raise ValueError(f"noise: masking fraction must be in [0, 1), got {noise!r}")
        rng = nn._rng(rng)
        self.encoder = Linear(n_visible, n_hidden, activation=activation, init=init, dtype=dtype, device=device,
                              rng=rng)
        self.tied, self.noise, self.seed, self.offset = bool(tied), float(noise), int(seed), 0
        self.output_activation = nn._check_activation(output_activation, "output_activation")
        if tied:
            self.decoder = None
            xp = array_module(self.encoder.weight.data)
            self.decoder_bias = Parameter(xp.zeros(n_visible, dtype=self.encoder.weight.data.dtype), "decoder_bias")
        else:
            self.decoder = Linear(n_hidden, n_visible, activation=output_activation, init=init, dtype=dtype,
                                  device=device, rng=rng)
        self.in_features = self.out_features = int(n_visible)
        self.n_hidden = int(n_hidden)
        self._buf = nn._Buffers()
        self._mask = self._xr = None
        self._train = False
        self._rows = None  # (start, total) of the next batch in a global batch (distributed training)

    def shard_rows(self, start, total):
        """The next training batch is rows [start, ...) of a global batch of ``total`` rows:
        its masking noise is the global batch's for those rows (layerwise.distributed)."""
        self._rows = (int(start), int(total))

    def named_children(self):
        return [("encoder", self.encoder)] + ([] if self.tied else [("decoder", self.decoder)])

    def local_parameters(self):
        return [self.decoder_bias] if self.tied else []

    def encode(self, x):
        """The hidden code z of x (evaluation mode, fresh array)."""
        return self.encoder.forward(x, train=False)

    def forward(self, x, *, train=False):
        n, xp = x.shape[0], array_module(x)
        self._train, self._mask = train, None
        start, total = self._rows if self._rows is not None else (0, n)
        self._rows = None
        if train and self.noise > 0:
            mask = self._buf.get(("mask", n), x, x.shape)
            # Row r of the global batch uses counters offset + r * width: a rank's slice draws
            # what one process would, and the counter moves past the whole global batch.
            ops.bernoulli(1.0 - self.noise, seed=self.seed, offset=self.offset + start * x.shape[1], out=mask)
            self.offset += total * x.shape[1]
            noisy = self._buf.get(("noisy", n), x, x.shape)
            xp.multiply(x, mask, out=noisy)
            self._mask, x = mask, noisy
        z = self.encoder.forward(x, train=train)
        if not self.tied:
            return self.decoder.forward(z, train=train)
        # x' = out_act(z @ W + b'): z @ W is linear_backward_data's product (dy @ weight),
        # so the transpose W^T is never materialized.
        out = self._buf.get(("xr", n), z, (n, self.in_features)) if train else None
        a = ops.linear_backward_data(z, self.encoder.weight.data, out=out)
        a += self.decoder_bias.data
        self._xr = ops.activation_forward(a, self.output_activation, out=a)
        return self._xr

    def backward(self, dy, *, input_grad=True):
        n, train = dy.shape[0], self._train
        if not self.tied:
            dz = self.decoder.backward(dy)
        else:
            if self.output_activation == "identity":
                da = dy
            else:
                out = self._buf.get(("da", n), dy, dy.shape) if train else None
                da = ops.activation_backward(self._xr, dy, self.output_activation, out=out)
            xp = array_module(da)
            xp.sum(da, axis=0, out=self.decoder_bias.grad)
            # dJ/dz = da @ W^T = linear_forward(da, W) (x @ weight.T).
            out = self._buf.get(("dz", n), da, (n, self.n_hidden)) if train else None
            dz = ops.linear_forward(da, self.encoder.weight.data, out=out)
        dx = self.encoder.backward(dz, input_grad=input_grad)  # overwrites W.grad with the encoder's part
        if self.tied:
            # ... then add the decoder's part: dJ/dW' = da^T z, i.e. dJ/dW = z^T da, which is
            # linear_backward_weights(dy=z, x=da) -- accumulated into W.grad.
            ops.linear_backward_weights(self.encoder._y, da, dweight=self.encoder.weight.grad, accumulate=True,
                                        bias=False)
        if dx is not None and self._mask is not None:
            dx *= self._mask  # masked inputs did not influence the output
        return dx

    def _clear_state(self):  # Module.to moves the children and clears their state too
        self._buf.clear()
        self._mask = self._xr = None

    def config(self):
        return {"type": "AutoEncoder", "n_visible": self.in_features, "n_hidden": self.n_hidden,
                "activation": self.encoder.activation, "output_activation": self.output_activation,
                "tied": self.tied, "noise": self.noise, "seed": self.seed}


def greedy_autoencoder(sizes, X, *, epochs_per_layer=5, lr=0.1, momentum=0.9, batch_size=32, loss="quadratic",
                       tied=False, noise=0.0, weight_decay=0.0, activation="sigmoid", init="uniform", seed=0,
                       dtype="float32", device="cpu", progress=None, checkpoint=None, checkpoint_every="epoch",
                       resume=False, comm=None):
    """Greedy layer-wise autoencoder pretraining (idea #3), unsupervised.

    For hidden layer i: an AutoEncoder(sizes[i-1], sizes[i]) with sigmoid (``activation``)
    encoder and sigmoid decoder is trained to reconstruct the codes of layer i-1 (the
    data for i = 1) for ``epochs_per_layer`` epochs of SGD (``lr``, ``momentum``,
    ``weight_decay``, ``batch_size``) on ``loss`` ("quadratic" or
    "binary_cross_entropy"; inputs should lie in [0, 1], as sigmoid codes do).
    ``tied``: decoder weights W^T; ``noise``: masking-noise fraction (denoising AE).
    The encoder becomes hidden layer i; the decoder is dropped.

    checkpoint, checkpoint_every, resume, comm: as in ``greedy_supervised`` (distributed, the
    masking noise of each row is the one a single process draws for it).

    Returns (net, info): net = the encoders + a fresh output layer
    Linear(sizes[-2], sizes[-1]) (logits); info = {"histories": [History per layer]
    (train_loss = reconstruction loss per epoch), "reconstruction_error": [[loss per
    epoch] per layer], "autoencoders": [AutoEncoder per layer]}."""
    sizes = _check_sizes(sizes, X)
    seed = _seed(seed)
    lname = nn.loss_name(loss)
    if lname not in ("quadratic", "binary_cross_entropy"):
        raise ValueError(f"loss: an autoencoder needs 'quadratic' or 'binary_cross_entropy', got {loss!r}")
    dist = _distributed(comm)
    ck = _GreedyCheckpoint("autoencoder", sizes, checkpoint, checkpoint_every, resume, dist)
    rng = np.random.default_rng(seed)
    codes = _as_data(X, dtype, device)
    histories, aes = [], []

    def autoencoder(j, ae_seed, r):
        return AutoEncoder(sizes[j], sizes[j + 1], activation=activation, output_activation="sigmoid", tied=tied,
                           noise=noise, seed=ae_seed, init=init, dtype=dtype, device=device, rng=r)

    def records():
        return {"histories": _history_records(histories), "seeds": [ae.seed for ae in aes]}

    if ck.meta is not None:
        from . import checkpoint as ckpt

        histories = _histories(ck.meta["histories"])
        for j in range(ck.first_layer - 1):
            aes.append(ck.saved_params(autoencoder(j, ck.meta["seeds"][j], 0), f"done/{j}"))
            codes = aes[-1].encode(codes)
        ckpt.set_rng_state(rng, ck.meta["rng"])
    head = None
    if ck.finished:
        head = ck.saved_params(Linear(sizes[-2], sizes[-1], init=init, dtype=dtype, device=device, rng=0), "head")
    for i in range(ck.first_layer, len(sizes) - 1):
        outer = ck.outer(i, rng, aes, records())
        resuming = ck.resuming(i, "fit")
        if not resuming:
            ck.write(outer)
        ae = autoencoder(i - 1, _sub_seed(rng), rng)
        hist = train.fit(ae, codes, codes, loss=lname, lr=lr, momentum=momentum, weight_decay=weight_decay,
                         epochs=epochs_per_layer, batch_size=batch_size, seed=_sub_seed(rng), progress=progress,
                         checkpoint=checkpoint, checkpoint_every=ck.every, resume=resuming, comm=dist,
                         _outer=outer)
        histories.append(hist)
        aes.append(ae)
        codes = ae.encode(codes)
    if head is None:
        head = Linear(sizes[-2], sizes[-1], init=init, dtype=dtype, device=device, rng=rng)
        ck.write(ck.outer(len(sizes) - 1, rng, aes, records(), extra={"head": head}, finished=True))
    info = {"histories": histories, "reconstruction_error": [h.train_loss for h in histories], "autoencoders": aes}
    return Sequential(*[ae.encoder for ae in aes], head), info


# ---- RBMs and deep belief nets -----------------------------------------------------------------
class RBM(Module):
    """Bernoulli-Bernoulli restricted Boltzmann machine.

    Energy E(v, h) = -b.v - c.h - h.W v with W (n_hidden, n_visible), so
    p(h=1|v) = sigmoid(W v + c) and p(v=1|h) = sigmoid(W^T h + b); free energy
    F(v) = -b.v - sum_j softplus(c_j + W_j.v), p(v) = exp(-F(v)) / Z.

    Sampling uses ops.bernoulli under ``seed`` with a counter offset that advances by
    every sample's size (reproducible on any device). Initialization follows Hinton's
    practical guide: W ~ N(0, 0.01^2), biases 0. As a Module, ``forward`` gives the
    hidden probabilities (the recognition pass); it has no ``backward``."""

    def __init__(self, n_visible, n_hidden, *, seed=0, dtype="float32", device="cpu", rng=None, init_std=0.01):
        for name, v in (("n_visible", n_visible), ("n_hidden", n_hidden)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        dtype = nn._check_dtype(dtype)
        rng = nn._rng(rng)
        w = rng.normal(0.0, init_std, size=(n_hidden, n_visible)).astype(dtype)
        self.weight = Parameter(to_device(w, device), "weight")
        xp = array_module(self.weight.data)
        self.hidden_bias = Parameter(xp.zeros(n_hidden, dtype=dtype), "hidden_bias")
        self.visible_bias = Parameter(xp.zeros(n_visible, dtype=dtype), "visible_bias")
        self.n_visible, self.n_hidden = int(n_visible), int(n_hidden)
        self.in_features, self.out_features = self.n_visible, self.n_hidden
        self.seed, self.offset = int(seed), 0
        self._buf = nn._Buffers()
        self._chain = None  # persistent CD: the fantasy particles' visible states
        self._velocity = [None, None, None]
        self._rows = None  # (start, total) of the next batch in a global batch (distributed training)

    def shard_rows(self, start, total):
        """The next ``cd_gradient`` batch is rows [start, ...) of a global batch of ``total``
        rows: its samples are the global batch's for those rows (layerwise.distributed)."""
        self._rows = (int(start), int(total))

    def local_parameters(self):
        return [self.weight, self.hidden_bias, self.visible_bias]

    # -- conditionals and sampling --
    def hidden_probs(self, v, *, out=None):
        """p(h = 1 | v) = sigmoid(v @ W^T + c), (n, n_hidden)."""
        return ops.linear_forward(v, self.weight.data, self.hidden_bias.data, activation="sigmoid", out=out)

    def visible_probs(self, h, *, out=None):
        """p(v = 1 | h) = sigmoid(h @ W + b), (n, n_visible)."""
        a = ops.linear_backward_data(h, self.weight.data, out=out)  # h @ W without forming W^T
        a += self.visible_bias.data
        return ops.activation_forward(a, "sigmoid", out=a)

    def sample(self, p, *, out=None):
        """Bernoulli samples of the probabilities p (advances the counter)."""
        if self._rows is None:
            out = ops.bernoulli(p, seed=self.seed, offset=self.offset, out=out)
            self.offset += p.size
            return out
        start, total = self._rows  # row r of the global batch uses counters offset + r * width
        width = p.shape[1]
        out = ops.bernoulli(p, seed=self.seed, offset=self.offset + start * width, out=out)
        self.offset += total * width
        return out

    def forward(self, x, *, train=False):
        return self.hidden_probs(x)

    def backward(self, dy, *, input_grad=True):
        raise NotImplementedError("RBM: trained with cd_step, not backpropagation")

    # -- objectives --
    def free_energy(self, v):
        """F(v) for each row of v (array of shape (n,), on v's device)."""
        xp = array_module(v)
        pre = ops.linear_forward(v, self.weight.data, self.hidden_bias.data)
        return -(v @ self.visible_bias.data) - xp.logaddexp(0.0, pre).sum(axis=1)

    def reconstruction_error(self, v) -> float:
        """Mean over rows of ||v - p(v | p(h | v))||^2: the deterministic (mean-field)
        one-step reconstruction. A rough progress measure, not the likelihood."""
        if v.shape[0] == 0:
            return 0.0
        r = self.visible_probs(self.hidden_probs(v))
        r -= v
        return float((r * r).sum()) / v.shape[0]

    def log_likelihood(self, v) -> float:
        """Exact mean log p(v) by enumerating all 2^n_visible states (n_visible <= 20 only)."""
        if self.n_visible > 20:
            raise ValueError("log_likelihood: exact enumeration needs n_visible <= 20")
        xp = array_module(v)
        states = xp.asarray(np.array(list(itertools.product([0, 1], repeat=self.n_visible)),
                                     dtype=self.weight.data.dtype))
        f_all = self.free_energy(states)
        m = float((-f_all).max())
        log_z = m + math.log(float(xp.exp(-f_all - m).sum()))
        return float((-self.free_energy(v)).mean()) - log_z

    # -- contrastive divergence --
    def cd_gradient(self, v0, *, k=1, persistent=False, sample_visible=True) -> float:
        """Writes the CD-k (or PCD-k) estimate of -d(mean log p(v0))/d(theta) into the
        parameters' ``.grad`` (a descent direction, for an SGD step); returns the batch's
        reconstruction error ||v0 - p(v | h1)||^2 (row mean) from the first Gibbs step.

        Positive phase: p(h|v0). Negative phase: a Gibbs chain h -> v -> h, k times,
        started from the data (CD) or from the persistent fantasy particles (PCD);
        hidden states are sampled, visible states are sampled (``sample_visible=False``:
        the visible *probabilities* are used instead, the mean-field reconstruction of
        Hinton's practical guide, section 3.2, which removes that sampling noise), and
        the statistics use the last visible state with its hidden *probabilities*."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k: expected a positive integer, got {k!r}")
        n, xp, B = v0.shape[0], array_module(v0), self._buf
        if n == 0:
            for p in self.parameters():
                p.grad.fill(0)
            if self._rows is not None:  # an empty slice of a global batch: skip the batch's draws
                draws = self.n_hidden + k * (self.n_visible if sample_visible else 0) + (k - 1) * self.n_hidden
                self.offset += self._rows[1] * draws
                self._rows = None
            return 0.0
        ph0 = self.hidden_probs(v0, out=B.get(("ph0", n), v0, (n, self.n_hidden)))
        h = B.get(("h", n), v0, (n, self.n_hidden))
        pv = B.get(("pv", n), v0, (n, self.n_visible))
        v = B.get(("v", n), v0, (n, self.n_visible)) if sample_visible else None  # mean field: v is pv
        ph = B.get(("ph", n), v0, (n, self.n_hidden))
        if persistent:
            if self._chain is None or self._chain.shape[0] < n or self._chain.dtype != v0.dtype:
                self._chain = v0.copy()  # start the fantasy particles at the data
            chain = self._chain[:n]
            self.sample(self.hidden_probs(chain, out=ph), out=h)
        else:
            self.sample(ph0, out=h)
        recon = None
        for step in range(k):
            self.visible_probs(h, out=pv)
            if step == 0 and not persistent:
                d = pv - v0
                recon = float((d * d).sum()) / n
            v = self.sample(pv, out=v) if sample_visible else pv
            self.hidden_probs(v, out=ph)
            if step < k - 1:
                self.sample(ph, out=h)
        if persistent:
            chain[...] = v
            recon = self.reconstruction_error(v0)
        # grad W = (<h v>_model - <h v>_data) / n: negative statistics first, then add the
        # positive ones with a minus sign folded into ph0's copy (ops has no alpha argument).
        W, c, b = self.weight, self.hidden_bias, self.visible_bias
        ops.linear_backward_weights(ph, v, dweight=W.grad, dbias=c.grad)
        neg_ph0 = B.get(("neg_ph0", n), v0, (n, self.n_hidden))
        xp.negative(ph0, out=neg_ph0)
        ops.linear_backward_weights(neg_ph0, v0, dweight=W.grad, dbias=c.grad, accumulate=True)
        xp.subtract(v.sum(axis=0), v0.sum(axis=0), out=b.grad)
        for p in (W, c, b):
            p.grad *= 1.0 / n
        self._rows = None
        return recon

    def cd_step(self, v0, *, lr, k=1, momentum=0.0, weight_decay=0.0, persistent=False,
                sample_visible=True) -> float:
        """One CD-k (PCD-k) SGD update on the batch v0 (rows in [0, 1]); returns the
        batch's reconstruction error (see ``cd_gradient``). ``weight_decay`` (L2) applies
        to the weights only, as is customary, not to the biases."""
        recon = self.cd_gradient(v0, k=k, persistent=persistent, sample_visible=sample_visible)
        self.apply_gradient(lr=lr, momentum=momentum, weight_decay=weight_decay)
        return recon

    def apply_gradient(self, *, lr, momentum=0.0, weight_decay=0.0):
        """The SGD update of ``cd_step`` from the parameters' current ``.grad``."""
        for i, p in enumerate(self.parameters()):
            vel = None
            if momentum:
                vel = self._velocity[i]
                if vel is None:
                    vel = self._velocity[i] = array_module(p.data).zeros_like(p.data)
            ops.sgd_update(p.data, p.grad, lr=lr, momentum=momentum, velocity=vel,
                           weight_decay=weight_decay if i == 0 else 0.0)

    def to(self, device):
        super().to(device)
        self._buf.clear()
        self._chain = None
        self._velocity = [None, None, None]
        return self

    def config(self):
        return {"type": "RBM", "n_visible": self.n_visible, "n_hidden": self.n_hidden, "seed": self.seed}


def greedy_rbm(sizes, X, *, epochs_per_layer=5, lr=0.05, momentum=0.5, final_momentum=None, momentum_switch=5,
               batch_size=32, k=1, persistent=False, sample_visible=True, weight_decay=2e-4, seed=0,
               dtype="float32", device="cpu", init="uniform", progress=None, checkpoint=None,
               checkpoint_every="epoch", resume=False, comm=None):
    """Greedy layer-wise RBM pretraining: a deep belief net whose weights start a sigmoid net.

    For hidden layer i: an RBM(sizes[i-1], sizes[i]) is trained with CD-k
    (``persistent=True``: PCD-k) on the codes of layer i-1 for ``epochs_per_layer``
    epochs of minibatch SGD (``lr``, ``momentum``, ``weight_decay`` on the weights,
    ``batch_size``, shuffled with the seeded Generator). ``final_momentum``: if given,
    the momentum used from epoch ``momentum_switch`` (0-based) of each layer on -- the
    0.5 -> 0.9 switch of Hinton's practical guide, which keeps the noisy first
    epochs stable and speeds up the rest. ``sample_visible``: see ``RBM.cd_gradient``
    (False: mean-field reconstructions in the negative phase). The data should lie in
    [0, 1] (binary, or probabilities used as such). The next layer's data are the
    hidden *probabilities* p(h|v) (deterministic, less noisy than samples).

    checkpoint, checkpoint_every, resume: as in ``greedy_supervised``; the RBM's momentum
    buffers, persistent chain, sampler counter and the epoch's shuffle are saved too.

    comm: data-parallel over MPI ranks, as in ``train.fit``: each rank takes its slice of
    every global batch (with the Gibbs samples one process would draw for those rows) and
    the CD gradients are allreduced. With ``persistent=True`` each rank keeps the chains
    of its own rows, so PCD follows one process only while every batch has the same size.

    Returns (net, info): net = Linear(sizes[i-1], sizes[i], sigmoid) layers with the
    RBMs' weights W and hidden biases c, + a fresh output layer Linear(sizes[-2],
    sizes[-1]) (logits, ``init``); info = {"rbms": [RBM per layer],
    "reconstruction_error": [[mean-field reconstruction error per epoch] per layer]}."""
    from . import checkpoint as ckpt
    from .checks import integer, number, unit_interval

    sizes = _check_sizes(sizes, X)
    seed = _seed(seed)
    batch_size = train._positive_int("batch_size", batch_size)
    epochs_per_layer = integer("epochs_per_layer", epochs_per_layer, low=0)
    lr = number("lr", lr, low=0.0, low_open=True)
    momentum = unit_interval("momentum", momentum)
    weight_decay = number("weight_decay", weight_decay, low=0.0)
    if final_momentum is not None and not (0.0 <= final_momentum < 1.0):
        raise ValueError(f"final_momentum: expected a value in [0, 1) or None, got {final_momentum!r}")
    if isinstance(momentum_switch, bool) or not isinstance(momentum_switch, (int, np.integer)) or momentum_switch < 0:
        raise ValueError(f"momentum_switch: expected a non-negative integer epoch, got {momentum_switch!r}")
    dist = _distributed(comm)
    ck = _GreedyCheckpoint("rbm", sizes, checkpoint, checkpoint_every, resume, dist)
    rng = np.random.default_rng(seed)
    codes = _as_data(X, dtype, device)
    xp = array_module(codes)
    rbms, recons = [], []

    def linear_of(rbm):
        layer = Linear(rbm.n_visible, rbm.n_hidden, activation="sigmoid", dtype=dtype, device=device, rng=0)
        layer.weight.data[...] = rbm.weight.data
        layer.bias.data[...] = rbm.hidden_bias.data
        return layer

    def records():
        return {"reconstruction_error": recons, "seeds": [r.seed for r in rbms]}

    if ck.meta is not None:
        recons = [list(e) for e in ck.meta["reconstruction_error"]]
        for j in range(ck.first_layer - 1):
            rbm = RBM(sizes[j], sizes[j + 1], seed=ck.meta["seeds"][j], dtype=dtype, device=device, rng=0)
            rbms.append(ck.saved_params(rbm, f"done/{j}"))
            codes = rbm.hidden_probs(codes)
        ckpt.set_rng_state(rng, ck.meta["rng"])
    layers = [linear_of(r) for r in rbms]
    head = None
    if ck.finished:
        head = ck.saved_params(Linear(sizes[-2], sizes[-1], init=init, dtype=dtype, device=device, rng=0), "head")
    bar = train._progress_bar(progress if ck.writes else False, (len(sizes) - 2) * epochs_per_layer,
                              desc="RBM pretraining")
    if bar is not None:
        bar.update(len(rbms) * epochs_per_layer)
    try:
        for i in range(ck.first_layer, len(sizes) - 1):
            outer = ck.outer(i, rng, rbms, records())
            resuming = ck.resuming(i, "rbm")
            if not resuming:
                ck.write(outer)
            rbm = RBM(sizes[i - 1], sizes[i], seed=_sub_seed(rng), dtype=dtype, device=device, rng=rng)
            n = codes.shape[0]
            shuffled = xp.empty_like(codes)
            errs, start_epoch, start_pos, perm, batches = [], 0, 0, None, 0
            if resuming:
                errs, start_epoch, start_pos, perm, batches = _load_rbm_state(rbm, rng, ck, n, batch_size)
            grads = None
            if dist is not None:  # distributed: rank 0's RBM, gradients in one flat buffer
                grads = dist.flat_gradients(rbm.parameters())
                dist.broadcast_parameters(rbm.parameters())
            for epoch in range(start_epoch, epochs_per_layer):
                mom = momentum if final_momentum is None or epoch < momentum_switch else final_momentum
                if epoch != start_epoch or perm is None:
                    perm, start_pos = rng.permutation(n), 0
                xp.take(codes, xp.asarray(perm) if xp is not np else perm, axis=0, out=shuffled)
                for s in range(start_pos, n, batch_size):
                    step = dict(k=k, persistent=persistent, sample_visible=sample_visible)
                    if dist is None:
                        rbm.cd_step(shuffled[s:s + batch_size], lr=lr, momentum=mom, weight_decay=weight_decay,
                                    **step)
                    else:  # this rank's slice, the allreduce of the CD gradient, the same update everywhere
                        _distributed_cd_gradient(dist, rbm, shuffled[s:s + batch_size], grads, **step)
                        rbm.apply_gradient(lr=lr, momentum=mom, weight_decay=weight_decay)
                    batches += 1
                    if ck.path is not None and ck.every != "epoch" and batches % ck.every == 0 \
                            and s + batch_size < n:
                        ck.write(outer, *_rbm_state(rbm, rng, errs, epoch, s + batch_size, perm, batches, n,
                                                    batch_size))
                errs.append(rbm.reconstruction_error(codes) if dist is None
                            else _distributed_reconstruction_error(dist, rbm, codes))
                if ck.path is not None and epoch + 1 < epochs_per_layer:
                    ck.write(outer, *_rbm_state(rbm, rng, errs, epoch + 1, 0, None, batches, n, batch_size))
                if bar is not None:
                    bar.set_postfix({"layer": i, "recon": f"{errs[-1]:.4g}"})
                    bar.update(1)
            rbms.append(rbm)
            recons.append([float(e) for e in errs])
            # The layer takes no random draws (weights copied from the RBM), but the Generator
            # advances as it always has, so that results stay those of earlier versions.
            Linear(sizes[i - 1], sizes[i], activation="sigmoid", dtype=dtype, device=device, rng=rng)
            layers.append(linear_of(rbm))
            codes = rbm.hidden_probs(codes)
    except BaseException as e:
        if dist is not None:  # distributed: one rank's failure aborts the job instead of hanging the others
            dist.abort_with(e)
        raise
    finally:
        if bar is not None:
            bar.close()
    if head is None:
        head = Linear(sizes[-2], sizes[-1], init=init, dtype=dtype, device=device, rng=rng)
        ck.write(ck.outer(len(sizes) - 1, rng, rbms, records(), extra={"head": head}, finished=True))
    return Sequential(*layers, head), {"rbms": rbms, "reconstruction_error": recons}


# ---- distributed RBM training (comm=): the parts that talk to the other ranks ---------------------
def _distributed_cd_gradient(dist, rbm, batch, grads, **step):
    """The CD gradient of the global ``batch`` on every rank: this rank's slice, then the allreduce."""
    from .distributed import shard_bounds

    rows = batch.shape[0]
    lo, hi = shard_bounds(rows, dist.rank, dist.size)
    rbm.shard_rows(lo, rows)
    rbm.cd_gradient(batch[lo:hi], **step)
    dist.allreduce_gradients(grads, hi - lo, rows)


def _distributed_reconstruction_error(dist, rbm, codes):
    """``rbm.reconstruction_error(codes)``, each rank computing its slice of the rows."""
    from .distributed import shard_bounds

    n = codes.shape[0]
    lo, hi = shard_bounds(n, dist.rank, dist.size)
    total = dist.allreduce_sum([rbm.reconstruction_error(codes[lo:hi]) * (hi - lo)])[0]
    return float(total) / n if n else 0.0


def _rbm_state(rbm, rng, errs, epoch, position, perm, batches, n, batch_size):
    """(arrays, meta) of the "rbm" section: one layer's training in progress."""
    from . import checkpoint as ckpt

    arrays = ckpt.prefixed(ckpt.param_arrays(rbm.parameters()), "rbm/param/")
    for i, v in enumerate(rbm._velocity):
        if v is not None:
            arrays[f"rbm/velocity/{i}"] = v
    if rbm._chain is not None:
        arrays["rbm/chain"] = rbm._chain
    if perm is not None:
        arrays["rbm/perm"] = perm
    meta = {"epoch": epoch, "position": position, "batches": batches, "n": n, "batch_size": batch_size,
            "errs": [float(e) for e in errs], "offset": int(rbm.offset), "rng": ckpt.rng_state(rng)}
    return arrays, {"rbm": meta}


def _load_rbm_state(rbm, rng, ck, n, batch_size):
    from . import checkpoint as ckpt

    meta, arrays = ck.inner["rbm"], ck.arrays
    if (meta["n"], meta["batch_size"]) != (n, batch_size):
        raise ValueError(f"checkpoint: {ck.path} was written for {meta['n']} samples in batches of "
                         f"{meta['batch_size']}, this run has {n} in batches of {batch_size}")
    ckpt.load_params(rbm.parameters(), ckpt.subset(arrays, "rbm/param/"), what="RBM")
    xp = array_module(rbm.weight.data)

    def dev(a):
        return xp.asarray(a) if xp is not np else a.copy()

    rbm._velocity = [dev(arrays[f"rbm/velocity/{i}"]) if f"rbm/velocity/{i}" in arrays else None
                     for i in range(len(rbm._velocity))]
    rbm._chain = dev(arrays["rbm/chain"]) if "rbm/chain" in arrays else None
    rbm.offset = int(meta["offset"])
    ckpt.set_rng_state(rng, meta["rng"])
    perm = arrays.get("rbm/perm")
    return list(meta["errs"]), meta["epoch"], meta["position"], perm, meta["batches"]


# ---- model files: make AutoEncoder and RBM loadable by nn.load ---------------------------------
def _autoencoder_shapes(cfg):
    v, h = cfg["n_visible"], cfg["n_hidden"]
    decoder = [("decoder_bias", (v,))] if cfg["tied"] else [("decoder.weight", (v, h)), ("decoder.bias", (v,))]
    return [("encoder.weight", (h, v)), ("encoder.bias", (h,))] + decoder


nn.register_module(
    "AutoEncoder",
    fields={"n_visible": "size", "n_hidden": "size", "activation": "activation", "output_activation": "activation",
            "tied": "bool", "noise": "probability", "seed": "seed"},
    build=lambda cfg, dtype: AutoEncoder(cfg["n_visible"], cfg["n_hidden"], activation=cfg["activation"],
                                         output_activation=cfg["output_activation"], tied=cfg["tied"],
                                         noise=cfg["noise"], seed=cfg["seed"], init=None, dtype=dtype),
    parameter_shapes=_autoencoder_shapes)
nn.register_module(
    "RBM", fields={"n_visible": "size", "n_hidden": "size", "seed": "seed"},
    build=lambda cfg, dtype: RBM(cfg["n_visible"], cfg["n_hidden"], seed=cfg["seed"], dtype=dtype, rng=0),
    parameter_shapes=lambda cfg: [("weight", (cfg["n_hidden"], cfg["n_visible"])),
                                  ("hidden_bias", (cfg["n_hidden"],)), ("visible_bias", (cfg["n_visible"],))])
