"""Run under mpirun: trains the named cases of cases.py with comm=MPI.COMM_WORLD and saves
every rank's parameters and history to OUT/<case>.rank<r>.npz (read by test_distributed.py).

    mpirun -n 2 python tests/mpi/run_cases.py OUT fit_sgd rbm ...
    mpirun -n 2 python tests/mpi/run_cases.py OUT --fit checkpoint=PATH fail_rank=1 fail_epoch=2
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


def main(argv):
    out, rest = argv[0], argv[1:]
    comm = MPI.COMM_WORLD
    if rest and rest[0] == "--fit":  # one fit run with keyword arguments: key=value (ints, None, strings)
        kwargs = {}
        for item in rest[1:]:
            key, value = item.split("=", 1)
            kwargs[key] = None if value == "None" else int(value) if value.isdigit() else value
        params, record = cases.fit_case(comm, **kwargs)
        save(out, "fit", params, record)
        return
    for name in rest:
        params, record = cases.run(name, comm)
        save(out, name, params, record)


if __name__ == "__main__":
    main(sys.argv[1:])
