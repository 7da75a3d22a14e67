"""layerwise.distributed -- data-parallel training on MPI (mpi4py), the one module that talks MPI.

    mpirun -n 4 python train.py          # in train.py:
    from mpi4py import MPI
    hist = layerwise.train.fit(net, X, y, batch_size=256, comm=MPI.COMM_WORLD)

The recipe of Horovod and PyTorch DDP: every rank holds the whole data set and the
same net; rank 0's initial parameters are broadcast; ``batch_size`` is the *global*
batch, drawn from the same seeded permutation on every rank, and each rank computes
the gradient of its contiguous slice of every global batch; the gradients (one flat
buffer the parameters' ``.grad`` arrays are views of) are summed with an allreduce,
each rank's mean gradient weighted by its share of the global batch, so every rank
applies the global-batch mean gradient and the ranks stay bitwise identical. Epoch
metrics and validation are sums allreduced the same way, so early stopping agrees.
Only rank 0 writes files.

Failure never hangs the job: ``Distributed.guard`` turns an exception on any rank into
``comm.Abort`` (after a message on stderr), and every collective is nonblocking
(Iallreduce / Ibcast) polled with Test against a deadline (``timeout`` seconds, default
``LAYERWISE_MPI_TIMEOUT`` or 300), so a dead or stuck peer aborts the job with a message.

CuPy arrays are reduced with NCCL (``cupy.cuda.nccl``; the NCCL unique id travels over
MPI). That path is written but has not run on a GPU yet (see docs/distributed.md).
"""
from __future__ import annotations

import contextlib
import os
import pickle
import sys
import time
import traceback

import numpy as np

__all__ = ["Distributed", "DistributedTimeout", "wrap", "mpi_available", "world", "shard_bounds"]

_DEFAULT_TIMEOUT = 300.0


class DistributedTimeout(RuntimeError):
    """A collective did not complete before its deadline (a peer died or is stuck)."""


def mpi_available() -> bool:
    """Whether mpi4py imports (the ``mpi`` extra, and an MPI library it can load)."""
    try:
        from mpi4py import MPI  # noqa: F401
    except ImportError:
        return False
    return True


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("layerwise.distributed needs mpi4py and an MPI library: pip install 'layerwise[mpi]' "
                          "and apt-get install openmpi-bin libopenmpi-dev") from e
    return MPI


def world(**kwargs) -> "Distributed":
    """``Distributed`` over MPI.COMM_WORLD."""
    return Distributed(_mpi().COMM_WORLD, **kwargs)


def wrap(comm) -> "Distributed":
    """A ``Distributed`` from an mpi4py communicator (or a ``Distributed``, returned as is)."""
    if isinstance(comm, Distributed):
        return comm
    return Distributed(comm)


def shard_bounds(rows: int, rank: int, size: int):
    """[lo, hi): rank ``rank``'s contiguous slice of ``rows`` rows split over ``size`` ranks.

    The first ``rows % size`` ranks get one row more; a rank past the end of a short batch
    gets an empty slice (it contributes zero gradient)."""
    base, extra = divmod(rows, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class Distributed:
    """An MPI communicator with the collectives data-parallel training needs.

    comm: an mpi4py communicator (``MPI.COMM_WORLD``). timeout: seconds any collective
    may wait for the other ranks before the job is aborted (None: ``LAYERWISE_MPI_TIMEOUT``
    or 300). buckets: allreduce gradients per layer while the lower layers' backward still
    runs (``backward_allreduce``), instead of one flat buffer after the whole backward.
    blocking: reduce the flat gradient buffer with a blocking Allreduce (Open MPI's tuned
    algorithms; its nonblocking collectives take another, often slower, implementation),
    guarded by a watchdog thread that aborts the job past the deadline; needs the
    MPI_THREAD_MULTIPLE level mpi4py asks for (else the nonblocking path is used)."""

    def __init__(self, comm, *, timeout=None, buckets=False, blocking=False):
        MPI = _mpi()
        if not isinstance(comm, MPI.Comm):
            raise TypeError(f"comm: expected an mpi4py communicator such as MPI.COMM_WORLD, got {type(comm).__name__}")
        name = "timeout"
        if timeout is None:
            name, timeout = "LAYERWISE_MPI_TIMEOUT", os.environ.get("LAYERWISE_MPI_TIMEOUT", _DEFAULT_TIMEOUT)
            try:
                timeout = float(timeout)
            except ValueError:
                pass  # reported below, by name
        if isinstance(timeout, bool) or not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"{name}: expected a positive number of seconds, got {timeout!r}")
        self.MPI, self.comm, self.timeout, self.buckets = MPI, comm, float(timeout), bool(buckets)
        self.blocking = bool(blocking) and MPI.Query_thread() == MPI.THREAD_MULTIPLE
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._deadline = None  # (monotonic deadline, what) of the blocking call in progress
        self._watchdog = None
        self._nccl = None
        self.seconds_allreduce = 0.0  # wall time spent in gradient allreduces (benchmarks read it)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def __repr__(self):
        return f"Distributed(rank={self.rank}, size={self.size}, buckets={self.buckets}, blocking={self.blocking})"

    # -- failure handling --
    def abort(self, message: str, code: int = 1):
        """Prints ``message`` on stderr and aborts every rank of the job."""
        sys.stderr.write(f"layerwise.distributed: rank {self.rank} of {self.size}: {message}\n")
        sys.stderr.flush()
        self.comm.Abort(code)

    @contextlib.contextmanager
    def guard(self, consistent=()):
        """Aborts the whole job when the body raises on this rank, so no peer waits forever
        in a collective. Exceptions of the types in ``consistent`` propagate normally: they
        are raised on every rank at the same point (decided from allreduced values)."""
        try:
            yield self
        except consistent:
            raise
        except BaseException as e:  # KeyboardInterrupt and SystemExit too: the peers would hang
            if isinstance(e, SystemExit) and not e.code:
                raise
            self.abort_with(e)
            raise

    def abort_with(self, exc: BaseException):
        """Aborts the job for ``exc`` raised on this rank: its message and traceback on stderr,
        then ``comm.Abort`` (does not return under MPI)."""
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.abort(f"{type(exc).__name__}: {exc}; aborting the job\n{tb}")

    def _watch(self):
        """The watchdog thread of blocking collectives: aborts the job when one overruns."""
        while True:
            time.sleep(min(0.5, self.timeout / 10))
            pending = self._deadline
            if pending is not None and time.monotonic() > pending[0]:
                self.abort(f"{pending[1]} did not complete within {self.timeout:g} s (a peer died or is stuck); "
                           f"set LAYERWISE_MPI_TIMEOUT to wait longer")

    def _blocking_allreduce(self, buf, what):
        if self._watchdog is None:
            import threading

            self._watchdog = threading.Thread(target=self._watch, name="layerwise-mpi-watchdog", daemon=True)
            self._watchdog.start()
        self._deadline = (time.monotonic() + self.timeout, what)
        try:
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)  # mpi4py releases the GIL here
        finally:
            self._deadline = None

    def _wait(self, requests, what):
        """Polls ``requests`` until all completed; aborts the job past the deadline."""
        MPI = self.MPI
        start = time.monotonic()
        while not MPI.Request.Testall(requests):
            # Open MPI moves a large message only while some call is inside MPI (no progress
            # thread), so the first 20 ms poll flat out; a longer wait means a peer is busy
            # (checkpoint, evaluation), and polling then yields, finally sleeps, to free the core.
            waited = time.monotonic() - start
            if waited > self.timeout:
                self.abort(f"{what} did not complete within {self.timeout:g} s (a peer died or is stuck); "
                           f"set LAYERWISE_MPI_TIMEOUT to wait longer")
                raise DistributedTimeout(what)  # only reached if Abort returns (it should not)
            if waited > 1.0:
                time.sleep(1e-3)
            elif waited > 0.02:
                time.sleep(0)

    # -- collectives --
    def allreduce_sum(self, values) -> np.ndarray:
        """Elementwise sum over ranks of a float64 vector (counts, loss sums): a new array,
        identical on every rank."""
        buf = np.array(values, dtype=np.float64).reshape(-1)
        self._wait([self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)], "allreduce of metrics")
        return buf

    def broadcast_object(self, obj, root=0):
        """``obj`` of rank ``root`` (pickled), on every rank."""
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL) if self.rank == root else b""
        length = np.array([len(data)], dtype=np.int64)
        self._wait([self.comm.Ibcast(length, root=root)], "broadcast (size)")
        buf = np.frombuffer(data, dtype=np.uint8).copy() if self.rank == root else np.empty(int(length[0]), np.uint8)
        self._wait([self.comm.Ibcast(buf, root=root)], "broadcast (data)")
        return obj if self.rank == root else pickle.loads(buf.tobytes())

    def broadcast_parameters(self, params, root=0):
        """Overwrites every parameter's data with rank ``root``'s (in place)."""
        from .nn import array_module, to_device

        for p in params:
            xp = array_module(p.data)
            host = np.ascontiguousarray(to_device(p.data, "cpu"))
            self._wait([self.comm.Ibcast(host, root=root)], "broadcast of the initial parameters")
            if self.rank != root:
                p.data[...] = host if xp is np else xp.asarray(host)

    def check_identical(self, params) -> bool:
        """Whether every rank holds bitwise the same parameters (a checksum of their bytes
        compared across ranks); the same answer on every rank."""
        import hashlib

        from .nn import to_device

        h = hashlib.sha256()
        for p in params:
            h.update(np.ascontiguousarray(to_device(p.data, "cpu")).tobytes())
        mine = np.frombuffer(h.digest()[:8], dtype=np.int64).copy()
        lo, hi = mine.copy(), mine.copy()
        self._wait([self.comm.Iallreduce(self.MPI.IN_PLACE, lo, op=self.MPI.MIN),
                    self.comm.Iallreduce(self.MPI.IN_PLACE, hi, op=self.MPI.MAX)], "parameter checksum")
        return bool(lo[0] == hi[0])

    # -- gradients --
    def flat_gradients(self, params):
        """One flat buffer for the gradients of ``params``: every parameter's ``.grad``
        becomes a view of it (backward writes into it in place, the allreduce reads it:
        no copies). Returns the buffer (NumPy or CuPy, the parameters' dtype)."""
        from .nn import array_module

        params = _unique(params)
        if not params:
            raise ValueError("params: the net has no parameters to train")
        dtypes = {p.data.dtype for p in params}
        if len(dtypes) != 1:
            raise ValueError(f"params: all parameters need one dtype for a flat gradient buffer, got {dtypes}")
        xp = array_module(params[0].data)
        flat = xp.zeros(sum(int(p.data.size) for p in params), dtype=params[0].data.dtype)
        at = 0
        for p in params:
            size = int(p.data.size)
            p.grad = flat[at:at + size].reshape(p.data.shape)
            at += size
        return flat

    def allreduce_gradients(self, flat, local_rows, global_rows, *, sums=None):
        """In place: ``flat`` (this rank's mean gradient over ``local_rows`` rows) becomes the
        mean gradient over the global batch of ``global_rows`` rows, on every rank.

        Each rank weights its gradient by local_rows / global_rows before the sum, so ranks
        with uneven (or empty) slices still give the global mean. ``sums``: an optional
        small float64 host array (loss sum, error count) summed over ranks in the same
        round trip (its allreduce is in flight together with the gradients')."""
        t0 = time.perf_counter()
        if global_rows <= 0:
            raise ValueError(f"global_rows: expected a positive number of rows, got {global_rows!r}")
        if local_rows != global_rows:
            flat *= flat.dtype.type(local_rows / global_rows)
        requests = []
        if sums is not None:
            requests.append(self.comm.Iallreduce(self.MPI.IN_PLACE, sums, op=self.MPI.SUM))
        if _is_cupy(flat):
            self._nccl_allreduce(flat)
        elif self.size > 1 and self.blocking:  # (the sums' Iallreduce progresses meanwhile)
            self._blocking_allreduce(flat, "gradient allreduce")
        elif self.size > 1:
            requests.append(self.comm.Iallreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM))
        if requests:
            self._wait(requests, "gradient allreduce")
        self.seconds_allreduce += time.perf_counter() - t0

    def backward_allreduce(self, net, dout, flat, local_rows, global_rows, *, sums=None):
        """``net.backward(dout)`` layer by layer, top first, starting each layer's gradient
        allreduce (a bucket: that layer's contiguous part of ``flat``) as soon as its
        backward is done, while the layers below compute theirs (PyTorch DDP's overlap).
        The result equals ``backward`` + ``allreduce_gradients``. Falls back to that when
        the net's layers do not own disjoint parameter ranges of ``flat`` or on CuPy."""
        layers = net.layers() if hasattr(net, "layers") else [net]
        spans = _layer_spans(layers, flat) if not _is_cupy(flat) and self.size > 1 else None
        if spans is None:
            net.backward(dout, input_grad=False)
            return self.allreduce_gradients(flat, local_rows, global_rows, sums=sums)
        t_comm = 0.0
        scale = flat.dtype.type(local_rows / global_rows)
        requests = []
        if sums is not None:
            requests.append(self.comm.Iallreduce(self.MPI.IN_PLACE, sums, op=self.MPI.SUM))
        dy = dout
        for i in range(len(layers) - 1, -1, -1):
            dy = layers[i].backward(dy, input_grad=i > 0)
            span = spans[i]
            if span is not None:
                t0 = time.perf_counter()
                bucket = flat[span[0]:span[1]]
                if local_rows != global_rows:
                    bucket *= scale
                requests.append(self.comm.Iallreduce(self.MPI.IN_PLACE, bucket, op=self.MPI.SUM))
                self.MPI.Request.Testall(requests)  # lets MPI progress the buckets already in flight
                t_comm += time.perf_counter() - t0
        t0 = time.perf_counter()
        self._wait(requests, "gradient allreduce (buckets)")
        self.seconds_allreduce += t_comm + time.perf_counter() - t0

    # -- GPU: NCCL --
    def _nccl_allreduce(self, flat):
        """Sum of a CuPy buffer over ranks with NCCL (one communicator per Distributed; the
        unique id is broadcast over MPI). Untested on a GPU so far (docs/distributed.md)."""
        import cupy
        from cupy.cuda import nccl

        if self._nccl is None:
            uid = nccl.get_unique_id() if self.is_root else None
            uid = self.broadcast_object(uid)
            self._nccl = nccl.NcclCommunicator(self.size, uid, self.rank)
        kinds = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}
        stream = cupy.cuda.get_current_stream()
        self._nccl.allReduce(flat.data.ptr, flat.data.ptr, flat.size, kinds[np.dtype(flat.dtype)], nccl.NCCL_SUM,
                             stream.ptr)
        stream.synchronize()

    # -- files --
    def on_root(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on rank 0 only (file writing); None elsewhere."""
        if self.is_root:
            return fn(*args, **kwargs)
        return None


def _is_cupy(a) -> bool:
    return type(a).__module__.startswith("cupy")


def _unique(params):
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def _layer_spans(layers, flat):
    """Per layer, the [start, stop) range of ``flat`` its parameters' gradients occupy (None
    for a layer without parameters), or None when some layer's gradients are not one
    contiguous range of ``flat`` or two layers share one."""
    base = flat.__array_interface__["data"][0]
    item = flat.dtype.itemsize
    spans, taken = [], []
    for layer in layers:
        ps = layer.parameters()
        if not ps:
            spans.append(None)
            continue
        ranges = []
        for p in ps:
            g = p.grad
            if not isinstance(g, np.ndarray) or g.base is None or not np.shares_memory(g, flat):
                return None
            start = (g.__array_interface__["data"][0] - base) // item
            ranges.append((start, start + g.size))
        ranges.sort()
        for (a, b), (c, _) in zip(ranges, ranges[1:]):
            if b != c:
                return None
        span = (ranges[0][0], ranges[-1][1])
        if any(not (span[1] <= a or b <= span[0]) for a, b in taken):
            return None
        taken.append(span)
        spans.append(span)
    return spans


def shard_modules(net, start, total):
    """Tells the counter-based samplers in ``net`` (denoising-autoencoder masks, RBM
    sampling) that the next batch is rows [start, start + local) of a global batch of
    ``total`` rows, so they draw exactly the numbers a single process would draw for
    those rows and advance their counters by the global batch."""
    for m in net.walk() if hasattr(net, "walk") else [net]:
        if hasattr(m, "shard_rows"):
            m.shard_rows(start, total)
