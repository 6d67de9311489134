"""Hierarchical allreduce (algorithm "hierarchical"): within the node, across nodes, within the
node again, as NCCL's and Horovod's hierarchical allreduce.

With C nodes, and ``m`` = the smallest node's rank count (``Topology.shards``), the vector is
cut into pieces of ``Topology.piece`` bytes (one slot of the node's shared-memory window) and
each piece into m shards (``ring.segments``). For every piece:

1. reduce-scatter within the node, through its window: every rank publishes its piece; local
   rank c < m combines shard c of the node's L pieces in local rank order
   (``((x0 op x1) op x2) ...``). Local ranks >= m (uneven nodes only) own no shard.
2. across nodes: local rank c allreduces shard c with the local ranks c of the other nodes,
   on its cross communicator; the m owners of a node do so concurrently (each node's link
   carries the whole vector once in each direction, not L times). A single piece whose shard
   fits ``SMALL_MAX`` bytes goes by recursive doubling fused with the mismatch check (one
   exchange per doubling); larger ones by a ``Ring`` (reduce-scatter + allgather, each
   element's final value computed on one rank), progressed while the node's ranks wait in the
   window, so that piece k crosses the links while piece k + 1 is reduced within the node.
3. allgather within the node: each owner publishes its reduced shard, every rank copies all.

Average divides once, by the world size, where an element gets its final value (the cross
step's owner; the shard's owner on one node). Every element is therefore computed once, in an
order fixed by the topology, and copied everywhere: exact for integers, bitwise identical on
every rank for floats, for every size (an empty shard moves nothing).

The mismatch check: the first reduce-scatter round carries the call's fingerprint (the node's
ranks agree, or all of them learn that they do not), the cross step's first messages carry
the node's verdict (a header-only butterfly before a ring), and the ranks that own no shard
learn the verdict in the next round. Every node therefore runs the same steps whatever the
arguments were, and a mismatch cannot hang.

Degenerate topologies: on one node (C = 1) it is a shared-memory reduce-scatter + allgather
(each rank reduces 1/L of the data, where "shared_memory" has every rank reduce all of it);
with one rank per node it is the cross step alone (recursive doubling, or rings of pieces over
the nodes);
on one rank, a copy. Where a node of several ranks has no window (``COLLECTIVE_SHM=0``) the
node's steps are a ring of MPI messages (``HierRing``, which is also what DistributedOptimizer's
non-blocking engine runs per bucket: the same three steps as a state machine of ``Ring``s).
"""

from __future__ import annotations

import os

import numpy as np

from ..context import MISMATCH, TAG_CROSS, TAG_RING
from .recursive_doubling import SMALL_MAX, handshake, rd_allreduce, schedule
from .ring import Ring, segments

#: tests of a ring across nodes between two yields of the CPU while waiting for it
#: NOTE: over TCP MPICH's UCX moves one ~64 KB fragment per MPI_Test; one test per yield let
#: other processes' time slices throttle the transfer (see also engines.NonBlockingEngine)
BURST = 16


def _layout(topo, n: int, parts: int):
    """``segments(n, parts)``, cached on the topology."""
    key = (n, parts)
    lay = topo.cache.get(key)
    if lay is None:
        if len(topo.cache) > 1024:
            topo.cache.clear()
        lay = topo.cache[key] = segments(n, parts)
    return lay


def _cross_group(topo):
    """(cross communicator, this node's recursive-doubling schedule on it)."""
    group = topo.cache.get("cross")
    if group is None:
        group = topo.cache["cross"] = (topo.cross_comm,
                                       schedule(topo.node_index, topo.num_nodes))
    return group


def node_layout(topo, local_size: int, n: int):
    """The node's shards of ``n`` elements as a ring layout over its ``local_size`` ranks:
    ``topo.shards`` shards, then empty segments for the local ranks that own none."""
    counts, offsets = _layout(topo, n, topo.shards)
    extra = local_size - topo.shards
    return list(counts) + [0] * extra, list(offsets) + [n] * extra


class _Pipeline:
    """One hierarchical allreduce over the node windows (see the module docstring)."""

    def __init__(self, ctx, buf, ufunc, divide_by, src):
        topo = self.topo = ctx.topo
        self.ctx, self.win, self.buf, self.ufunc = ctx, topo.window, buf, ufunc
        self.inp = buf if src is None else src
        self.divide = divide_by
        self.lr = ctx.local_rank
        self.owner = self.lr < topo.shards
        self.step = max(1, topo.piece // buf.itemsize)  # elements per piece
        self.pieces = max(1, -(-buf.size // self.step))
        self.rings: list = []  # the cross steps in flight (an owner's; at most two)
        self.block = ctx.config.wait == "block"

    def span(self, k):
        lo = k * self.step
        return lo, min(self.buf.size, lo + self.step)

    def mine(self, k):
        """This owner's shard of piece k, in ``buf``."""
        lo, hi = self.span(k)
        counts, offsets = _layout(self.topo, hi - lo, self.topo.shards)
        a = lo + offsets[self.lr]
        return self.buf[a:a + counts[self.lr]]

    def progress(self):
        """What a window round calls while it waits: the rings in flight advance."""
        rings = self.rings
        if not rings:
            return None
        if len(rings) == 1:
            return rings[0].test
        return lambda: [ring.test() for ring in rings]

    def reduce_scatter(self, k, fp) -> bool:
        """Step 1 for piece k; False when the node's ranks published different ``fp``."""
        lo, hi = self.span(k)
        win = self.win
        if win is None:  # a node of one rank: its shard is the whole piece
            if self.inp is not self.buf:
                self.buf[lo:hi] = self.inp[lo:hi]
            return True
        inp = self.inp[lo:hi]
        xs = win.views(win.next_slot, inp.nbytes, inp.dtype)
        if inp.size:
            xs[win.rank][...] = inp
        if not win.round(fp, inp.nbytes, self.progress()):
            return False
        if self.owner:
            counts, offsets = _layout(self.topo, hi - lo, self.topo.shards)
            a, b = offsets[self.lr], offsets[self.lr] + counts[self.lr]
            if b > a:
                out, ufunc = self.buf[lo + a:lo + b], self.ufunc
                ufunc(xs[0][a:b], xs[1][a:b], out=out)
                for x in xs[2:]:
                    ufunc(out, x[a:b], out=out)
                if self.divide and self.topo.num_nodes == 1:
                    np.true_divide(out, self.divide, out=out)
        return True

    def post(self, k):
        """Step 2 for piece k: this owner's shard on a ring across the nodes.

        NOTE: two rings may be in flight (pieces k and k + 1), so that the link never waits
        for a ring's turnaround; they use a scratch buffer and a tag each (MPI matches the
        messages of one source and tag in order, and the two rings' steps interleave
        differently on different ranks)."""
        topo, shard = self.topo, self.mine(k)
        lay = _layout(topo, shard.size, topo.num_nodes)
        scratch = self.ctx.pool.get(f"hier_scratch{k & 1}", max(lay[0]) * shard.itemsize,
                                    shard.dtype)
        self.rings.append(Ring(topo.cross_comm, topo.node_index, topo.num_nodes, shard,
                               self.ufunc, self.divide, lay, scratch, TAG_CROSS[k & 1]))

    def finish_ring(self):
        """Wait for the oldest ring in flight, advancing the other one meanwhile; a burst of
        tests between two yields of the CPU (see ``BURST``)."""
        ring = self.rings.pop(0)
        if self.block:
            ring.wait(True)
            return
        other = self.rings[0] if self.rings else None
        while True:
            for _ in range(BURST):
                if ring.test():
                    return
                if other is not None:
                    other.test()
            os.sched_yield()

    def allgather(self, k, verdict) -> bool:
        """Step 3 for piece k, its round carrying ``verdict`` (fp or MISMATCH): False, and no
        data copied, unless every rank of the node published the same fp."""
        win = self.win
        if win is None:
            return verdict != MISMATCH
        lo, hi = self.span(k)
        counts, offsets = _layout(self.topo, hi - lo, self.topo.shards)
        buf, lr = self.buf, self.lr
        xs = win.views(win.next_slot, counts[0] * buf.itemsize, buf.dtype)
        mine = counts[lr] if self.owner and verdict != MISMATCH else 0
        if mine:
            a = lo + offsets[lr]
            xs[lr][:mine] = buf[a:a + mine]
        ok = win.round(verdict, mine * buf.itemsize, self.progress()) and verdict != MISMATCH
        if ok:
            for c, cnt in enumerate(counts):
                if c != lr and cnt:
                    a = lo + offsets[c]
                    buf[a:a + cnt] = xs[c][:cnt]
        return ok

    def agree(self, verdict) -> bool:
        """A round without data, so that the ranks that own no shard learn the verdict."""
        return self.win.round(verdict, 0) and verdict != MISMATCH

    def run(self, fp) -> int:
        topo, C = self.topo, self.topo.num_nodes
        cross = C > 1 and self.owner
        if not self.reduce_scatter(0, fp):
            if cross:  # the other nodes must learn it too
                rd_allreduce(self.ctx, MISMATCH, None, None, group=_cross_group(topo))
            return MISMATCH
        fused, verdict = False, fp
        if cross:
            first = self.mine(0)
            fused = self.pieces == 1 and first.nbytes <= SMALL_MAX
            verdict = rd_allreduce(self.ctx, fp, first if fused else None, self.ufunc,
                                   self.divide if fused else 0, group=_cross_group(topo))
        if self.pieces == 1:
            if cross and not fused and verdict != MISMATCH:
                self.post(0)
                self.finish_ring()
            return fp if self.allgather(0, verdict) else MISMATCH
        if self.win is not None and self.win.size > topo.shards:
            if not self.agree(verdict):
                return MISMATCH
        elif verdict == MISMATCH:
            return MISMATCH
        # piece k crosses while k + 1 is reduced in the node; k + 1 is posted before waiting
        # for k, then k is gathered in the node while k + 1 crosses
        if cross:
            self.post(0)
        for k in range(self.pieces):
            if k + 1 < self.pieces:
                self.reduce_scatter(k + 1, fp)
                if cross:
                    self.post(k + 1)
            if cross:
                self.finish_ring()
            self.allgather(k, fp)
        return fp


def hier_allreduce(ctx, fp: int, buf, ufunc, divide_by: int = 0, src=None) -> int:
    """Allreduce ``buf`` (1-D contiguous) in place, or ``src`` into ``buf``; returns ``fp``, or
    MISMATCH when the ranks' calls differ (then ``buf`` holds no result)."""
    topo = ctx.topo
    if topo.piece:
        return _Pipeline(ctx, buf, ufunc, divide_by, src).run(fp)
    if src is not None:
        buf[...] = src
    if max(topo.node_sizes) == 1 and buf.nbytes <= SMALL_MAX:
        return rd_allreduce(ctx, fp, buf, ufunc, divide_by, group=_cross_group(topo))
    if handshake(ctx, fp) == MISMATCH:
        return MISMATCH
    scratch = ctx.pool.get("hier_scratch", HierRing.scratch_bytes(topo, buf.size, buf.itemsize))
    HierRing(topo, topo.node_comm, topo.cross_comm, ctx.local_rank, ctx.local_size, buf, ufunc,
             divide_by, scratch.view(buf.dtype), TAG_RING).wait(ctx.config.wait == "block")
    return fp


class HierRing:
    """The hierarchical allreduce as a state machine over MPI messages: a ``Ring``
    reduce-scatter on ``node_comm`` into the node's shards (``node_layout``), a ``Ring``
    allreduce of this rank's shard on ``cross_comm`` (owners, several nodes), a ``Ring``
    allgather on ``node_comm``. ``test()``/``wait()`` as ``Ring``'s; each step is posted when
    the one before has finished. ``scratch``: ``scratch_bytes`` of ``buf``'s dtype."""

    __slots__ = ("_steps", "_ring")

    def __init__(self, topo, node_comm, cross_comm, local_rank, local_size, buf, ufunc,
                 divide_by, scratch, tag):
        self._steps = self._plan(topo, node_comm, cross_comm, local_rank, local_size, buf,
                                 ufunc, divide_by, scratch, tag)
        self._ring = next(self._steps)

    @staticmethod
    def scratch_bytes(topo, n: int, itemsize: int) -> int:
        """Room for the largest segment any of the three steps receives."""
        return _layout(topo, n, topo.shards)[0][0] * itemsize

    @staticmethod
    def _plan(topo, node_comm, cross_comm, lr, L, buf, ufunc, divide_by, scratch, tag):
        C = topo.num_nodes
        lay = node_layout(topo, L, buf.size)
        yield Ring(node_comm, lr, L, buf, ufunc, divide_by if C == 1 else 0, lay, scratch,
                   tag, gather=False)
        if C > 1 and lr < topo.shards:
            a, n = lay[1][lr], lay[0][lr]
            yield Ring(cross_comm, topo.node_index, C, buf[a:a + n], ufunc, divide_by,
                       _layout(topo, n, C), scratch, tag)
        yield Ring(node_comm, lr, L, buf, ufunc, 0, lay, scratch, tag, scatter=False)

    def test(self) -> bool:
        while self._ring is not None:
            if not self._ring.test():
                return False
            self._ring = next(self._steps, None)
        return True

    def wait(self, block: bool = False):
        while self._ring is not None:
            self._ring.wait(block)
            self._ring = next(self._steps, None)
