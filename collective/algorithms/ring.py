"""Ring allreduce (bandwidth-optimal): reduce-scatter, then allgather, on MPI point-to-point.

The vector is cut into P segments of whole rows (uneven when P does not divide the row count:
the first ``rows % P`` segments get one row more; a segment may be empty). Reduce-scatter, step
s = 0..P-2: rank r sends segment (r-s-1) mod P to its right neighbour and receives segment
(r-s-2) mod P from its left one, which it combines into its own copy (``op(mine, incoming)``);
after P-1 steps rank r holds segment r fully reduced. Allgather, step s: send segment (r-s)
mod P, receive segment (r-s-1) mod P straight into place. Each rank sends 2(P-1)/P of the data.

Bitwise identical results: every element's final value is computed once, on the rank that owns
its segment, and then copied to the others.

Performance: the incoming segment is received in chunks (``CHUNK`` bytes, all receives posted
at once) and each chunk is reduced as soon as it has arrived, while the following chunks are
in flight. Measured on the 2-core box (P = 2, 16 MiB, chunks of 256 KiB, 1 MiB, 4 MiB, whole
segment): pipelining does not pay there (MPICH moves large messages with a single copy, and
every chunk is one more rendezvous, i.e. one more point where a rank waits for a descheduled
peer), so chunks are 16 MiB: only segments larger than that are pipelined. Scratch
memory is one grow-only buffer reused by every call (no allocation per call). Average divides
only the owned segment, in the last reduce-scatter step, so it costs 1/P of a pass.
"""

from __future__ import annotations

import os

import numpy as np

from ..buffers import POOL
from ..context import TAG_RING

# Waiting: "poll" tests the requests and yields the CPU between tests (os.sched_yield), so a
# rank waiting for data lets the peer that has to produce it run when ranks share cores
# (oversubscription, or other jobs on the machine); "block" uses MPI_Wait (MPICH busy-polls).
WAIT = os.environ.get("COLLECTIVE_WAIT", "poll")
CHUNK = 16 << 20  # bytes per pipelined chunk of the reduce-scatter (see the module docstring)


def segments(rows: int, size: int, row: int = 1):
    """(counts, offsets) in elements of the P segments of ``rows`` rows of ``row`` elements."""
    base, extra = divmod(rows, size)
    counts = [(base + (i < extra)) * row for i in range(size)]
    offsets = [0] * size
    for i in range(1, size):
        offsets[i] = offsets[i - 1] + counts[i - 1]
    return counts, offsets


def _layout(ctx, n, row):
    key = ("ring_layout", n, row)
    lay = ctx.cache.get(key)
    if lay is None:
        if len(ctx.cache) > 512:
            for k in [k for k in ctx.cache if isinstance(k, tuple) and k[0] == "ring_layout"]:
                del ctx.cache[k]
        lay = ctx.cache[key] = segments(n // row if row else 0, ctx.size, row)
    return lay


def _wait(req):
    if WAIT == "block":
        req.Wait()
        return
    test = req.Test
    while not test():
        os.sched_yield()


def _waitall(reqs):
    from mpi4py import MPI

    if WAIT == "block":
        MPI.Request.Waitall(reqs)
        return
    testall = MPI.Request.Testall
    while not testall(reqs):
        os.sched_yield()


def ring_reduce_scatter(ctx, buf, ufunc, row: int = 1, divide_by: int = 0, chunk: int = 0):
    """Reduce-scatter in place on the 1-D array ``buf``: afterwards this rank's segment of
    ``buf`` holds the reduced (and divided, for Average) values. Returns (counts, offsets)."""
    comm, P, r = ctx.comm, ctx.size, ctx.rank
    counts, offsets = _layout(ctx, buf.size, row)
    if P == 1:
        if divide_by:
            np.true_divide(buf, divide_by, out=buf)
        return counts, offsets
    left, right = (r - 1) % P, (r + 1) % P
    step = max(1, (chunk or CHUNK) // buf.itemsize)
    scratch = POOL.get("ring_scratch", max(counts) * buf.itemsize, buf.dtype)
    irecv, isend = comm.Irecv, comm.Isend
    last = P - 2
    for s in range(P - 1):
        si, ri = (r - s - 1) % P, (r - s - 2) % P
        so, sc = offsets[si], counts[si]
        ro, rc = offsets[ri], counts[ri]
        rreqs = [irecv(scratch[a:min(a + step, rc)], left, TAG_RING) for a in range(0, rc, step)]
        sreqs = [isend(buf[so + a:so + min(a + step, sc)], right, TAG_RING)
                 for a in range(0, sc, step)]
        for k, a in enumerate(range(0, rc, step)):
            b = min(a + step, rc)
            _wait(rreqs[k])
            tgt = buf[ro + a:ro + b]
            ufunc(tgt, scratch[a:b], out=tgt)
            if divide_by and s == last:
                np.true_divide(tgt, divide_by, out=tgt)
        _waitall(sreqs)
    return counts, offsets


def ring_allgather(ctx, buf, counts, offsets):
    """Ring allgather in place: segment i of ``buf`` (owned by rank i) goes to every rank."""
    comm, P, r = ctx.comm, ctx.size, ctx.rank
    left, right = (r - 1) % P, (r + 1) % P
    irecv, isend = comm.Irecv, comm.Isend
    for s in range(P - 1):
        si, ri = (r - s) % P, (r - s - 1) % P
        _waitall([irecv(buf[offsets[ri]:offsets[ri] + counts[ri]], left, TAG_RING),
                  isend(buf[offsets[si]:offsets[si] + counts[si]], right, TAG_RING)])


def ring_allreduce(ctx, buf, ufunc, divide_by: int = 0, chunk: int = 0):
    """Allreduce in place on the C-contiguous 1-D array ``buf``."""
    counts, offsets = ring_reduce_scatter(ctx, buf, ufunc, 1, divide_by, chunk)
    if ctx.size > 1:
        ring_allgather(ctx, buf, counts, offsets)
