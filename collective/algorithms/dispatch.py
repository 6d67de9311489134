"""Run one allreduce with a named algorithm: the handshake, then the algorithm, in place."""

from __future__ import annotations

import time

from ..context import MISMATCH
from .hierarchical import hier_allreduce
from .mpi_native import mpi_allreduce
from .recursive_doubling import handshake, rd_allreduce
from .ring import ring_allreduce
from .shared_memory import shm_allreduce

#: the algorithms ``run`` knows ("auto" is resolved by collective.tuning before)
FIXED = ("ring", "recursive_doubling", "mpi", "shared_memory", "hierarchical")


def run(ctx, fp: int, buf, op, algorithm: str, src=None) -> int:
    """Agree on ``fp`` with every rank and reduce the 1-D contiguous ``buf`` in place with
    ``op`` (a ReduceOp) by ``algorithm`` (one of FIXED; "shared_memory" means recursive
    doubling where the ranks share no window). With ``src`` (out of place): reduce ``src`` into
    ``buf``, ``src`` untouched. Returns ``fp``, or MISMATCH when the ranks' calls differ (then
    ``buf`` holds no result and every rank must raise)."""
    P = ctx.size
    if P == 1:
        if src is not None:
            buf[...] = src
        return fp
    # NOTE(observability): watched by the stall watchdog, recorded on the timeline
    token, tl = ctx.monitor.enter("allreduce"), ctx.timeline
    try:
        return _run(ctx, fp, buf, op, algorithm, src, tl)
    finally:
        ctx.monitor.exit(token)


def _run(ctx, fp, buf, op, algorithm, src, tl):
    P = ctx.size
    t0 = time.perf_counter() if tl is not None else 0.0
    divide = P if op.average else 0
    if algorithm == "hierarchical":  # reads src itself, piece by piece
        return hier_allreduce(ctx, fp, buf, op.ufunc, divide, src)
    if algorithm == "shared_memory" and ctx.shm is not None:
        # reads src straight into the shared slots: no copy of the input
        agreed = shm_allreduce(ctx.shm, fp, buf, op.ufunc, divide, src)
    else:
        if src is not None:
            buf[...] = src
        if algorithm == "recursive_doubling" or algorithm == "shared_memory":
            agreed = rd_allreduce(ctx, fp, buf, op.ufunc, divide)
        else:
            if handshake(ctx, fp) == MISMATCH:
                return MISMATCH
            if tl is not None:
                t1 = time.perf_counter()
                tl.span(2, "allreduce handshake", t0, t1)
                t0 = t1
            if algorithm == "ring":
                ring_allreduce(ctx, buf, op.ufunc, divide)
            else:
                mpi_allreduce(ctx, buf, op, divide)
            agreed = fp
    if tl is not None:
        tl.span(2, f"allreduce {algorithm}", t0, time.perf_counter(), {"bytes": buf.nbytes})
    return agreed
