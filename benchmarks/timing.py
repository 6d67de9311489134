"""The timing loop of the MPI benchmarks (allreduce.py, horovod_api.py, multihost.py)."""

from __future__ import annotations

import time

import numpy as np


def interleaved(comm, fns, iters: int, batch, before=None) -> np.ndarray:
    """Seconds per call, shape (len(fns), iters): each sample is a batch of back-to-back calls
    after a barrier, its time the maximum over the ranks of ``comm``. The functions take turns
    within every iteration, in a new order each iteration, so a burst of load from other
    processes hits them alike and none always follows the same one.
    ``batch``: calls per sample, one number or one per function. ``before``: per function, a
    callable (or None) run before each of its samples, untimed, ahead of the barrier."""
    from mpi4py import MPI

    batches = list(batch) if isinstance(batch, (list, tuple)) else [batch] * len(fns)
    befores = list(before) if before is not None else [None] * len(fns)
    times = np.zeros((len(fns), iters))
    # NOTE: each iteration takes the functions in a new order (the same permutation on every
    # rank): a call pays for what the call before it left in the caches (4 MiB at P = 2: MPI's
    # own Allreduce 1.31-1.33 ms after itself or a barrier, 1.57-1.82 ms right after a
    # shared-memory allreduce), and in a fixed order one function always paid for the same one
    orders = np.random.default_rng(len(fns)).permuted(
        np.tile(np.arange(len(fns)), (iters, 1)), axis=1)
    for it in range(iters):
        for j in orders[it]:
            fn, n, prep = fns[j], batches[j], befores[j]
            if prep is not None:
                prep()
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            times[j, it] = (time.perf_counter() - t0) / n
    comm.Allreduce(MPI.IN_PLACE, times, MPI.MAX)
    return times
