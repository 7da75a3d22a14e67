"""Training runs the distributed tests compare: each ``run(name, comm)`` trains a small
net on seeded data and returns its parameters, identically with comm=None (one process)
or an MPI communicator (each rank takes its slice of every global batch).

The shapes are chosen to hit the edges: 101 training rows in global batches of 20 leave
a last batch of one row (the second rank's slice of it is empty), and 101 does not divide
by two ranks."""
from __future__ import annotations

import numpy as np

import layerwise as lw

N_TRAIN, N_VAL, N_IN, N_HIDDEN, N_CLASSES, BATCH = 101, 37, 12, 9, 4, 20


def data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((N_TRAIN + N_VAL, N_IN)).astype(np.float32)
    w = rng.normal(size=(N_IN, N_CLASSES))
    y = (X @ w).argmax(axis=1).astype(np.int64)
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]


def _params(net):
    return {name: np.array(p.data) for name, p in net.named_parameters()}


def fit_case(comm, *, optimizer=None, epochs=6, checkpoint=None, resume=False, fail_rank=None, fail_epoch=None,
             buckets=False, blocking=False, hang_rank=None):
    X, y, Xv, yv = data()
    wrapped = (buckets or blocking) and comm is not None
    if wrapped:  # per-layer allreduce overlapped with the backward below; or a blocking Allreduce
        from layerwise.distributed import Distributed

        comm = Distributed(comm, buckets=bool(buckets), blocking=bool(blocking))
    rank = 0 if comm is None else comm.rank if wrapped else comm.Get_rank()
    net = lw.nn.mlp([N_IN, N_HIDDEN, 7, N_CLASSES], activation="sigmoid",
                    seed=rank)  # rank 1 starts elsewhere: the broadcast of rank 0's weights must fix it

    def callback(epoch, hist):
        if fail_rank == rank and epoch == fail_epoch:
            raise RuntimeError(f"rank {rank} fails on purpose at epoch {epoch}")
        if hang_rank == rank and epoch == 0:  # stuck: the other ranks' next allreduce must time out
            import time

            time.sleep(600)

    kw = dict(lr=0.5, momentum=0.9) if optimizer is None else dict(optimizer=optimizer, lr=0.01)
    hist = lw.train.fit(net, X, y, epochs=epochs, batch_size=BATCH, X_val=Xv, y_val=yv, patience=3, seed=5,
                        progress=False, callback=callback, checkpoint=checkpoint, checkpoint_every=2,
                        resume=resume, comm=comm, **kw)
    return _params(net), hist.to_dict()


def _checkpointing(checkpoint, resume):
    return dict(checkpoint=checkpoint, checkpoint_every=2, resume=resume) if checkpoint else {}


def supervised_case(comm, checkpoint=None, resume=False):
    X, y, _, _ = data()
    net, info = lw.pretrain.greedy_supervised([N_IN, N_HIDDEN, 6, N_CLASSES], X, y, epochs_per_layer=3, lr=0.3,
                                              batch_size=BATCH, seed=3, progress=False, comm=comm,
                                              **_checkpointing(checkpoint, resume))
    return _params(net), [h.to_dict() for h in info["histories"]]


def autoencoder_case(comm, checkpoint=None, resume=False):
    X, _, _, _ = data()
    net, info = lw.pretrain.greedy_autoencoder([N_IN, N_HIDDEN, 6, N_CLASSES], X, epochs_per_layer=3, lr=0.3,
                                               batch_size=BATCH, noise=0.25, seed=4, progress=False, comm=comm,
                                               **_checkpointing(checkpoint, resume))
    return _params(net), [h.to_dict() for h in info["histories"]]


def rbm_case(comm, checkpoint=None, resume=False):
    X, _, _, _ = data()
    Xb = (X > 0.5).astype(np.float32)
    net, info = lw.pretrain.greedy_rbm([N_IN, N_HIDDEN, 6, N_CLASSES], Xb, epochs_per_layer=3, lr=0.1, k=2,
                                       batch_size=BATCH, seed=6, progress=False, comm=comm,
                                       **_checkpointing(checkpoint, resume))
    return _params(net), info["reconstruction_error"]


CASES = {
    "fit_sgd": lambda comm: fit_case(comm),
    "fit_adam": lambda comm: fit_case(comm, optimizer="adam"),
    "fit_buckets": lambda comm: fit_case(comm, buckets=True),
    "fit_blocking": lambda comm: fit_case(comm, blocking=True),
    "supervised": supervised_case,
    "autoencoder": autoencoder_case,
    "rbm": rbm_case,
}


PRETRAINING = {"supervised": supervised_case, "autoencoder": autoencoder_case, "rbm": rbm_case}


def run(name, comm=None, **kwargs):
    if name in CASES and not kwargs:
        return CASES[name](comm)
    if name in PRETRAINING:
        return PRETRAINING[name](comm, **kwargs)
    return fit_case(comm, **kwargs)
