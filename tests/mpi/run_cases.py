"""Run under mpirun: trains the named cases of cases.py with comm=MPI.COMM_WORLD and saves
every rank's parameters and history to OUT/<case>.rank<r>.npz (read by test_distributed.py).

    mpirun -n 2 python tests/mpi/run_cases.py OUT fit_sgd rbm ...
    mpirun -n 2 python tests/mpi/run_cases.py OUT --fit checkpoint=PATH fail_rank=1 fail_epoch=2
    mpirun -n 2 python tests/mpi/run_cases.py OUT --pretrain rbm checkpoint=PATH [crash_after=5] [resume=1]

crash_after=K makes rank 0 raise after its K-th checkpoint write (a crash mid-run).
"""
import json
import os
import sys

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases  # noqa: E402


def save(out, name, params, record):
    rank = MPI.COMM_WORLD.Get_rank()
    np.savez(os.path.join(out, f"{name}.rank{rank}.npz"), __record__=np.array(json.dumps(record)), **params)


def keywords(items):
    """key=value arguments: ints, None, strings."""
    kwargs = {}
    for item in items:
        key, value = item.split("=", 1)
        kwargs[key] = None if value == "None" else int(value) if value.isdigit() else value
    return kwargs


def crash_after(writes):
    """Rank 0 raises after its ``writes``-th checkpoint write (the file of that write is kept)."""
    import layerwise.checkpoint as ckpt

    real, count = ckpt.write, [0]

    def write(*args, **kwargs):
        result = real(*args, **kwargs)
        count[0] += 1
        if count[0] == writes:
            raise RuntimeError(f"crash after checkpoint write {writes}")
        return result

    ckpt.write = write


def main(argv):
    out, rest = argv[0], argv[1:]
    comm = MPI.COMM_WORLD
    if rest and rest[0] == "--fit":  # one fit run with keyword arguments
        params, record = cases.fit_case(comm, **keywords(rest[1:]))
        save(out, "fit", params, record)
        return
    if rest and rest[0] == "--pretrain":  # one pretraining run: --pretrain NAME key=value ...
        name, kwargs = rest[1], keywords(rest[2:])
        if "crash_after" in kwargs:
            crash_after(kwargs.pop("crash_after"))
        kwargs["resume"] = bool(kwargs.get("resume", 0))
        params, record = cases.run(name, comm, **kwargs)
        save(out, name, params, record)
        return
    for name in rest:
        params, record = cases.run(name, comm)
        save(out, name, params, record)


if __name__ == "__main__":
    main(sys.argv[1:])
