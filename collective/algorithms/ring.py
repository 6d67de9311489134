"""Ring allreduce (bandwidth-optimal): reduce-scatter, then allgather, on MPI point-to-point.

The vector is cut into P segments of whole rows (uneven when P does not divide the row count:
the first ``rows % P`` segments get one row more; a segment may be empty). Reduce-scatter, step
s = 0..P-2: rank r sends segment (r-s-1) mod P to its right neighbour and receives segment
(r-s-2) mod P from its left one, which it combines into its own copy (``op(mine, incoming)``);
after P-1 steps rank r holds segment r fully reduced. Allgather, step s: send segment (r-s)
mod P, receive segment (r-s-1) mod P straight into place. Each rank sends 2(P-1)/P of the data.

Arithmetic (the same in every use: blocking calls and DistributedOptimizer's in-flight
buckets run this one ``Ring``): every element's final value is computed once, on the rank that
owns its segment, as ``x_k op (x_{k-1} op (... op x_{k+1}))`` with numpy's ufunc (float16
additions are computed in float32 and rounded to float16 each time), then divided by P with
``np.true_divide`` for Average (on the owned segment, in the last reduce-scatter step: 1/P of a
pass), then copied to the others, so the result is bitwise identical on every rank. Data travels
as bytes (no MPI datatype for float16 is needed, and MPI never does arithmetic).

Performance: the incoming segment is received in chunks (``CHUNK`` bytes, all receives posted
at once) and each chunk is reduced as soon as it has arrived, while the following chunks are
in flight. Measured on the 2-core box (P = 2, 16 MiB, chunks of 256 KiB, 1 MiB, 4 MiB, whole
segment): pipelining does not pay there (MPICH moves large messages with a single copy, and
every chunk is one more rendezvous, i.e. one more point where a rank waits for a descheduled
peer), so chunks are 16 MiB: only segments larger than that are pipelined. Scratch memory of the
blocking calls is one grow-only buffer reused by every call (no allocation per call).
"""

from __future__ import annotations

import os
from functools import partial

import numpy as np

from ..context import TAG_RING
from ..process import mpi

CHUNK = 16 << 20  # bytes per pipelined chunk of the reduce-scatter (see the module docstring)


def segments(rows: int, size: int, row: int = 1):
    """(counts, offsets) in elements of the P segments of ``rows`` rows of ``row`` elements."""
    base, extra = divmod(rows, size)
    counts = [(base + (i < extra)) * row for i in range(size)]
    offsets = [0] * size
    for i in range(1, size):
        offsets[i] = offsets[i - 1] + counts[i - 1]
    return counts, offsets


def layout(ctx, n: int, row: int = 1):
    """The segments of ``n`` elements in rows of ``row`` (cached per (n, row))."""
    key = (n, row)
    lay = ctx.ring_layouts.get(key)
    if lay is None:
        if len(ctx.ring_layouts) > 512:
            ctx.ring_layouts.clear()
        lay = ctx.ring_layouts[key] = segments(n // row if row else 0, ctx.size, row)
    return lay


class Ring:
    """One ring reduce-scatter (and allgather, with ``gather``) of the 1-D C-contiguous array
    ``buf``, in place, as a state machine of non-blocking steps on ``comm``.

    ``test()`` advances it as far as it can without waiting (posting the next step's Isend/
    Irecv when the current one completed, reducing each chunk that arrived) and says whether it
    is done; ``wait()`` finishes it. ``scratch``: room for the largest segment. Every rank must
    run the same rings in the same order on ``comm`` with the same ``tag``. ``gather=False``:
    the reduce-scatter only; ``scatter=False``: the allgather only (rank r already holds
    segment r). ``lay`` may hold empty segments (the ranks that own them move nothing to them).
    """

    __slots__ = ("comm", "rank", "size", "buf", "raw", "scratch", "sraw", "isz", "ufunc",
                 "divide_by", "counts", "offsets", "tag", "chunk", "left", "right",
                 "reduce_steps", "nsteps", "step", "recvs", "sends", "done", "bounds", "target",
                 "check")

    def __init__(self, comm, rank, size, buf, ufunc, divide_by, lay, scratch, tag,
                 chunk=CHUNK, gather=True, scatter=True, check=None):
        # NOTE(observability): ``check`` (collective.checks.StepCheck): the first message of
        # each reduce-scatter step carries the step fingerprint as its MPI tag (received with
        # ANY_TAG: one ring at a time, and messages from one source never overtake), merged
        # when the step completes
        self.check = check
        self.comm, self.rank, self.size, self.tag = comm, rank, size, tag
        self.buf, self.scratch, self.ufunc, self.divide_by = buf, scratch, ufunc, divide_by
        # every dtype travels as bytes: views made once, sliced per message
        self.raw, self.sraw, self.isz = buf.view(np.uint8), scratch.view(np.uint8), buf.itemsize
        self.counts, self.offsets = lay
        self.chunk = max(1, chunk // buf.itemsize)  # elements
        self.left, self.right = (rank - 1) % size, (rank + 1) % size
        self.reduce_steps = size - 1
        self.nsteps = (size - 1) * (2 if gather else 1)
        self.step = 0 if scatter else self.reduce_steps
        self.done = 0
        self.recvs = self.sends = ()
        if size == 1 and divide_by:
            np.true_divide(buf, divide_by, out=buf)
        if self.step < self.nsteps:
            self._post()

    def _post(self):
        s, P, r, isz = self.step, self.size, self.rank, self.isz
        irecv, isend, tag = self.comm.Irecv, self.comm.Isend, self.tag
        counts, offsets, raw = self.counts, self.offsets, self.raw
        if s < self.reduce_steps:
            si, ri = (r - s - 1) % P, (r - s - 2) % P
            so, sc, rc, step = offsets[si], counts[si], counts[ri], self.chunk
            self.target = offsets[ri]
            self.bounds = [(a, min(a + step, rc)) for a in range(0, rc, step)]
            rbufs = [self.sraw[a * isz:b * isz] for a, b in self.bounds]
            sbufs = [raw[(so + a) * isz:(so + min(a + step, sc)) * isz]
                     for a in range(0, sc, step)]
            if self.check is None:
                self.recvs = [irecv(b, self.left, tag) for b in rbufs]
                self.sends = [isend(b, self.right, tag) for b in sbufs]
            else:  # the fingerprint goes even with an empty segment
                if not rbufs:
                    self.bounds, rbufs = [(0, 0)], [self.sraw[:0]]
                sbufs = sbufs or [raw[:0]]
                self.recvs = [irecv(rbufs[0], self.left, mpi().ANY_TAG)]
                self.recvs += [irecv(b, self.left, tag) for b in rbufs[1:]]
                self.sends = [isend(sbufs[0], self.right, self.check.tag)]
                self.sends += [isend(b, self.right, tag) for b in sbufs[1:]]
        else:
            t = s - self.reduce_steps
            si, ri = (r - t) % P, (r - t - 1) % P
            self.bounds = None  # received straight into place: nothing to reduce
            lo, hi = offsets[ri] * isz, (offsets[ri] + counts[ri]) * isz
            self.recvs = [irecv(raw[lo:hi], self.left, tag)]
            lo, hi = offsets[si] * isz, (offsets[si] + counts[si]) * isz
            self.sends = [isend(raw[lo:hi], self.right, tag)]
        self.done = 0

    def _arrived(self, k):
        a, b = self.bounds[k]
        lo, hi = self.target + a, self.target + b
        tgt = self.buf[lo:hi]
        self.ufunc(tgt, self.scratch[a:b], out=tgt)
        if self.divide_by and self.step == self.reduce_steps - 1:
            np.true_divide(tgt, self.divide_by, out=tgt)

    def _ready(self, k, wait=False) -> bool:
        """Whether receive k of this checked step has arrived (``wait``: wait for it). The
        first one of a reduce-scatter step hands its tag to the check (a request tested again
        after it completed reports tag -1, which the check ignores)."""
        req = self.recvs[k]
        if k or self.step >= self.reduce_steps:
            if wait:
                req.Wait()
                return True
            return req.Test()
        status = self.check.status
        if wait:
            req.Wait(status)
        elif not req.Test(status):
            return False
        self.check.received(status.Get_tag())
        return True

    def test(self) -> bool:
        """Advance without waiting; True when the ring is finished."""
        testall = mpi().Request.Testall
        while self.step < self.nsteps:
            recvs, done = self.recvs, self.done
            while done < len(recvs) and (recvs[done].Test() if self.check is None
                                         else self._ready(done)):
                if self.bounds is not None:
                    self._arrived(done)
                done += 1
            self.done = done
            if done < len(recvs) or not testall(self.sends):
                return False
            if self.check is not None and self.step < self.reduce_steps:
                self.check.merge()
            self.step += 1
            if self.step < self.nsteps:
                self._post()
        return True

    def wait(self, block: bool = False):
        """Finish the ring. ``block``: MPI_Wait on what is pending (MPICH busy-polls); else
        test and yield the CPU between tests (``os.sched_yield``), so a rank waiting for data
        lets the peer that has to produce it run when ranks share cores."""
        Request = mpi().Request
        while not self.test():
            pending = self.recvs[self.done] if self.done < len(self.recvs) else None
            if block and pending is not None:
                if self.check is None:
                    pending.Wait()
                else:
                    self._ready(self.done, wait=True)
            elif block:
                Request.Waitall(self.sends)
            elif pending is not None:
                ready = pending.Test if self.check is None else partial(self._ready, self.done)
                while not ready():
                    os.sched_yield()
            else:
                sends = self.sends
                while not Request.Testall(sends):
                    os.sched_yield()


def ring_reduce_scatter(ctx, buf, ufunc, row: int = 1, divide_by: int = 0, chunk: int = 0):
    """Reduce-scatter in place on the 1-D array ``buf``: afterwards this rank's segment of
    ``buf`` holds the reduced (and divided, for Average) values. Returns (counts, offsets)."""
    lay = layout(ctx, buf.size, row)
    scratch = ctx.pool.get("ring_scratch", max(lay[0]) * buf.itemsize, buf.dtype)
    Ring(ctx.comm, ctx.rank, ctx.size, buf, ufunc, divide_by, lay, scratch, TAG_RING,
         chunk or CHUNK, gather=False).wait(ctx.config.wait == "block")
    return lay


def ring_allreduce(ctx, buf, ufunc, divide_by: int = 0, chunk: int = 0):
    """Allreduce in place on the C-contiguous 1-D array ``buf``."""
    lay = layout(ctx, buf.size)
    scratch = ctx.pool.get("ring_scratch", max(lay[0]) * buf.itemsize, buf.dtype)
    Ring(ctx.comm, ctx.rank, ctx.size, buf, ufunc, divide_by, lay, scratch, TAG_RING,
         chunk or CHUNK).wait(ctx.config.wait == "block")
