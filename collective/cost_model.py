"""An alpha-beta cost model per level (within a node, across nodes) of our allreduce algorithms.

A message of b bytes between two ranks costs ``alpha + beta * b`` at its level: ``intra``
(two ranks of one node, MPI point-to-point) or ``inter`` (across nodes, where ``b`` counts the
bytes that go through ONE node's link: when k ranks of a node send across at once, their
bytes add up, as they share the link). Work on the data costs ``copy`` and ``reduce`` seconds
per byte (one memcpy pass, one ufunc pass a op b -> out), a round of a node's shared-memory
window ``round_s``. All of them are fitted from ``collective.tuning``'s measurements at start-up
(the levels' point-to-point exchanges, all ranks at once, so link sharing and CPU contention
are in the numbers), kept in the tuning table, and give:

- ``predict(algorithm, nbytes)``: seconds per allreduce by the algorithm's schedule
  (``algorithms/``): ring, recursive doubling, hierarchical, shared memory. The MPI library's
  own Allreduce is not modelled (its schedule is the library's choice), nor is ``auto``
  (``predict(tuning.best(...))``).
- ``exposed(buckets, ...)``: the communication a training step cannot hide behind backward,
  with DistributedOptimizer's buckets reduced one after another as they become ready.

It is a model: ``benchmarks/multihost.py`` and ``benchmarks/scaling.py`` print its predictions
beside measurements. Nothing in collective depends on it being right (``auto`` chooses from
the measured times).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .algorithms import SMALL_MAX

HEADER = 8  # bytes of the mismatch check's header


def fit_line(xs, ts) -> tuple[float, float]:
    """(alpha, beta) of ``t = alpha + beta * x`` through measurements at increasing ``xs``:
    beta the slope between the two largest, alpha what is left at the smallest (both >= 0).

    NOTE: not a least-squares fit over all sizes: a rate-limited link lets bursts through at
    full speed (tbf's bucket), which speeds up the exchanges smaller than the bucket, and a fit
    through them halved beta at 1 Gbit/s; the largest sizes are also the best measured."""
    xs, ts = np.asarray(xs, float), np.asarray(ts, float)
    beta = (ts[-1] - ts[-2]) / (xs[-1] - xs[-2])
    if beta <= 0:
        return float(np.median(ts)), 0.0
    return max(float(ts[0] - beta * xs[0]), 0.0), float(beta)


@dataclass
class CostModel:
    nodes: list  # the node index of every world rank
    shards: int  # ranks per node that own a hierarchical shard (the smallest node's size)
    piece: int  # bytes per step of the hierarchical pipeline (0: no shared-memory windows)
    intra: tuple | None  # (alpha s, beta s/byte) within a node; None: one rank per node
    inter: tuple | None  # (alpha s, beta s/byte through one node's link); None: one node
    round_s: float = 0.0
    copy: float = 0.0  # s/byte
    reduce: float = 0.0  # s/byte
    slot: int = 0  # bytes per shared-memory round of the one-node window (algorithm
    # "shared_memory"), 0 where there is none

    # -- building blocks ---------------------------------------------------------------------
    @property
    def P(self) -> int:
        return len(self.nodes)

    @property
    def node_sizes(self) -> list:
        return [self.nodes.count(i) for i in range(max(self.nodes) + 1)]

    def _step(self, pairs, nbytes: float, share: int = 1) -> float:
        """All ``pairs`` (sender, receiver) send ``nbytes`` at once, and ``share`` such sets
        of pairs (the hierarchical owners) run together: the slowest link's time."""
        out, into, intra = {}, {}, False
        for a, b in pairs:
            na, nb = self.nodes[a], self.nodes[b]
            if na == nb:
                intra = True
            else:
                out[na] = out.get(na, 0) + share
                into[nb] = into.get(nb, 0) + share
        t = 0.0
        if intra and self.intra is not None:
            t = self.intra[0] + self.intra[1] * nbytes
        crossing = max([*out.values(), *into.values(), 0])
        if crossing and self.inter is not None:
            t = max(t, self.inter[0] + self.inter[1] * crossing * nbytes)
        return t

    def _butterfly(self, ranks, nbytes: float, reduce_bytes: float, share: int = 1) -> float:
        """Recursive doubling over ``ranks`` (world ranks, in order), ``nbytes`` a message."""
        p2 = 1
        while p2 * 2 <= len(ranks):
            p2 *= 2
        extra = [(ranks[i], ranks[i - p2]) for i in range(p2, len(ranks))]
        t = 0.0
        if extra:
            t += self._step(extra, nbytes, share) + reduce_bytes * self.reduce
        mask = 1
        while mask < p2:
            pairs = [(ranks[i], ranks[i ^ mask]) for i in range(p2)]
            t += self._step(pairs, nbytes, share) + reduce_bytes * self.reduce
            mask <<= 1
        if extra:
            t += self._step([(b, a) for a, b in extra], nbytes, share)
        return t

    def _ring(self, ranks, seg: float, gather: bool = True, share: int = 1) -> float:
        """A Ring over ``ranks`` whose segments (what one step sends) are ``seg`` bytes."""
        q = len(ranks)
        if q == 1:
            return 0.0
        step = self._step([(ranks[i], ranks[(i + 1) % q]) for i in range(q)], seg, share)
        return (q - 1) * (step + seg * self.reduce) + ((q - 1) * step if gather else 0.0)

    def _handshake(self) -> float:
        return self._butterfly(list(range(self.P)), HEADER, 0.0)

    # -- the algorithms ----------------------------------------------------------------------
    def ring(self, n: float) -> float:
        return self._handshake() + self._ring(list(range(self.P)), n / self.P)

    def recursive_doubling(self, n: float) -> float:
        world = list(range(self.P))
        if n <= SMALL_MAX:
            return self._butterfly(world, HEADER + n, n)
        return self._handshake() + self._butterfly(world, n, n)

    def shared_memory(self, n: float) -> float | None:
        if not self.slot:
            return None
        rounds = max(1, math.ceil(n / self.slot))
        return rounds * self.round_s + n * (self.copy + (self.P - 1) * self.reduce)

    def hierarchical(self, n: float) -> float:
        sizes, m = self.node_sizes, self.shards
        C, L = len(sizes), max(sizes)
        leads = [self.nodes.index(i) for i in range(C)]  # one rank per node, node order
        if not self.piece:  # no windows: HierRing (rings of MPI messages within the node)
            if L == 1 and n <= SMALL_MAX:
                return self._butterfly(leads, HEADER + n, n)
            node = [r for r in range(self.P) if self.nodes[r] == self.nodes[0]]
            within = self._ring(node, n / m, gather=False) if L > 1 else 0.0
            return self._handshake() + 2 * within + self._ring(leads, n / m / C, share=m)
        pieces = max(1, math.ceil(n / self.piece))
        pb = min(n, self.piece)  # bytes per piece, sb per shard
        sb = pb / m
        rs = ag = 0.0
        if L > 1:
            rs = self.round_s + pb * self.copy + (L - 1) * sb * self.reduce
            ag = self.round_s + pb * self.copy
        if C == 1:
            return pieces * (rs + ag)
        if pieces == 1 and sb <= SMALL_MAX:
            return rs + self._butterfly(leads, HEADER + sb, sb, share=m) + ag
        header = self._butterfly(leads, HEADER, 0.0)
        cross = self._ring(leads, sb / C, share=m)
        if pieces == 1:
            return rs + header + cross + ag
        # piece k crosses the links while k + 1 is reduced and k - 1 gathered in the node
        return rs + header + pieces * max(cross, rs + ag) + ag

    def predict(self, algorithm: str, nbytes: float) -> float | None:
        """Seconds per allreduce of ``nbytes`` by ``algorithm``; None where not modelled."""
        if self.P == 1:
            return 0.0
        fn = {"ring": self.ring, "recursive_doubling": self.recursive_doubling,
              "shared_memory": self.shared_memory, "hierarchical": self.hierarchical}.get(
                  algorithm)
        return None if fn is None else fn(float(nbytes))

    # -- a training step ---------------------------------------------------------------------
    def exposed(self, buckets, ready_s, backward_s, algorithm) -> dict:
        """DistributedOptimizer's buckets (bytes each, in reduction order) become ready at
        ``ready_s`` (seconds after backward started) and are reduced one after another by
        ``algorithm`` (one name, or one per bucket); backward takes ``backward_s``. Returns the
        predicted reduction time ("comm_s") and the part left after backward ("exposed_s")."""
        algos = [algorithm] * len(buckets) if isinstance(algorithm, str) else list(algorithm)
        end, total = 0.0, 0.0
        for nbytes, ready, algo in zip(buckets, ready_s, algos, strict=True):
            t = self.predict(algo, nbytes) or 0.0
            end = max(end, ready) + t
            total += t
        return {"comm_s": total, "exposed_s": max(0.0, end - backward_s)}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> CostModel:
        data = dict(data)
        for k in ("intra", "inter"):
            if data.get(k) is not None:
                data[k] = tuple(data[k])
        return cls(**data)
