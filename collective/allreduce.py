"""allreduce / allreduce_: the entry points, validation, the handshake, dispatch.

A call: stage the input into a contiguous numpy buffer (``buffers``), describe and fingerprint
the call, run the handshake (fused with the data for recursive doubling, see ``safety``), then
the chosen algorithm in place on the buffer. Out-of-place calls work on a fresh copy, so their
input is never modified. Single process (P = 1): a copy (Sum/Max/Min/Average of one rank are
the identity), no MPI traffic.
"""

from __future__ import annotations

import numpy as np

from . import context
from .algorithms import handshake, mpi_allreduce, rd_allreduce, ring_allreduce
from .buffers import stage
from .reduce_ops import Average, as_op, check_dtype
from .safety import MISMATCH, describe, disagreement, error_fingerprint, fingerprint

ALGORITHMS = ("auto", "ring", "recursive_doubling", "mpi")


def check_algorithm(algorithm) -> str:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown allreduce algorithm {algorithm!r}; choose one of "
                         + ", ".join(ALGORITHMS))
    return algorithm


def allreduce(x, op=Average, algorithm="auto"):
    """A new array (or Tensor, on x's device) with ``op`` of ``x`` over all ranks.

    ``x`` is never modified. ``op``: col.Sum, col.Average, col.Max, col.Min. ``algorithm``:
    "auto" (cost model, see ``collective.tuning``), "ring", "recursive_doubling" or "mpi".
    Every rank must pass the same shape, dtype, op and algorithm, else every rank raises
    ValueError naming the ranks and what differed.
    """
    return _allreduce(x, op, algorithm, inplace=False)


def allreduce_(x, op=Average, algorithm="auto"):
    """In-place ``allreduce``: ``x`` holds the result afterwards; returns ``x``."""
    return _allreduce(x, op, algorithm, inplace=True)


def _allreduce(x, op, algorithm, inplace):
    ctx = context.get()
    error = None
    try:
        op = as_op(op)
        algorithm = check_algorithm(algorithm)
        staged = stage(x, inplace=inplace, what="allreduce_" if inplace else "allreduce")
        arr = staged.array
        check_dtype(op, arr.dtype)
        desc = describe("allreduce", arr.shape, arr.dtype, op, algorithm)
        fp = fingerprint(desc)
    except (TypeError, ValueError) as exc:
        if ctx.size == 1:
            raise
        error, desc, fp = exc, describe("allreduce"), error_fingerprint()
    if error is None:
        work = arr if inplace else np.array(arr, copy=True, order="C")
        buf = work.reshape(-1)
        run(ctx, fp, buf, op, algorithm, desc)
        if inplace:
            staged.commit()
            return x
        return staged.wrap(work)
    agg = handshake(ctx, fp)
    if agg == MISMATCH:
        disagreement(ctx.comm, desc, error)
    raise error


def run(ctx, fp, buf, op, algorithm, desc):
    """Handshake + reduce the 1-D contiguous ``buf`` in place (all ranks, same arguments)."""
    P = ctx.size
    if P == 1:
        return
    divide = P if op.average else 0
    if algorithm == "auto":
        from .tuning import choose

        algorithm = choose(ctx, buf.nbytes, fp)
        if algorithm is None:  # the handshake failed before tuning could run
            disagreement(ctx.comm, desc, None)
    if algorithm == "recursive_doubling":
        agg = rd_allreduce(ctx, fp, buf, op.ufunc, divide)
        if agg == MISMATCH:
            disagreement(ctx.comm, desc, None)
        return
    if handshake(ctx, fp) == MISMATCH:
        disagreement(ctx.comm, desc, None)
    if algorithm == "ring":
        ring_allreduce(ctx, buf, op.ufunc, divide)
    else:
        mpi_allreduce(ctx, buf, op, divide)
