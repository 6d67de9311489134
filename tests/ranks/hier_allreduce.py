"""Guarantee 5 for algorithm="hierarchical" across hosts, and ``auto``, which chooses it there:
exact for integers, bitwise identical on every rank for floats, input untouched, in place the
same bits, on the sizes that are awkward for it (empty, fewer elements than shards, one piece
fused into the mismatch check, one piece with a ring, several pieces with a short last one);
mismatches raised on every rank whichever rank is the odd one out (an owner of a shard or not).

Reports the failures, a hash of every result, the topology (cross_rank, cross_size, ...), what
``auto`` chose, and ``crossed``: the bytes every host's link must at least have carried.
"""

from __future__ import annotations

import hashlib

import numpy as np
from multihost_common import placement, report

import collective as col
from collective.algorithms import SMALL_MAX
from collective.comm import context

col.init()
ctx = context()
r, P = col.rank(), col.size()

class _OneRank:  # a world of one rank has no topology
    piece, shards = 0, 1


topo = ctx.topo or _OneRank
PIECE = topo.piece or (2 << 20)  # the pipeline's piece (none without windows: any big size)
fails: list = []
hashes: dict = {}
crossed = 0
DTYPES = ("float16", "float32", "float64", "int32", "int64")
TOL = {"float16": 2e-2, "float32": 1e-5, "float64": 1e-12}


def check(cond, what):
    if not cond:
        fails.append(what)


def inp(n, dtype, rank):
    v = (np.arange(n, dtype=np.int64) * 7 + rank * 13) % 101 - 50
    if np.dtype(dtype).kind == "f":
        return (v / 8.0).astype(dtype) + np.asarray(rank * 0.1, dtype)  # inexact on purpose
    return v.astype(dtype)


def ref(n, dtype, op):
    wide = np.float64 if np.dtype(dtype).kind == "f" else np.int64
    xs = np.stack([inp(n, dtype, q).astype(wide) for q in range(P)])
    if op is col.Max:
        return xs.max(axis=0)
    if op is col.Min:
        return xs.min(axis=0)
    return xs.sum(axis=0) / P if op is col.Average else xs.sum(axis=0)


def sizes(dtype):
    isz = np.dtype(dtype).itemsize
    small = sorted({0, 1, topo.shards + 1, P + 1, 1009})
    one_ring = min(PIECE, 3 * SMALL_MAX * topo.shards) // isz - 3  # one piece, shards > fused
    pieces = 2 * PIECE // isz + 5  # three pieces, the last one short
    return small, [one_ring, pieces]


def allreduce_checks():
    global crossed
    for dt in DTYPES:
        floats = dt[0] == "f"
        small, big = sizes(dt)
        for n in small + big:
            x = inp(n, dt, r)
            x0 = x.copy()
            ops = (col.Sum, col.Max, col.Min) + ((col.Average,) if floats else ())
            if n in big:
                ops = (col.Sum,) + ((col.Average,) if floats else ())
            for op in ops:
                want = ref(n, dt, op)
                for algo in ("hierarchical", "auto"):
                    tag = f"{algo}/{dt}/n={n}/{op}"
                    y = col.allreduce(x, op=op, algorithm=algo)
                    crossed += x.nbytes
                    check(np.array_equal(x, x0), f"{tag}: input modified")
                    check(y.dtype == x.dtype and y.shape == x.shape, f"{tag}: dtype/shape")
                    if floats:
                        ok = np.allclose(y.astype(np.float64), want, rtol=TOL[dt],
                                         atol=TOL[dt] * 8)
                        check(ok, f"{tag}: wrong values")
                    else:
                        check(np.array_equal(y, want), f"{tag}: not exact")
                    hashes[tag] = hashlib.md5(y.tobytes()).hexdigest()
                    if algo == "hierarchical" and n in (P + 1, big[-1]):
                        z = x.copy()
                        out = col.allreduce_(z, op=op, algorithm=algo)
                        crossed += z.nbytes
                        check(out is z and np.array_equal(z.view(np.uint8), y.view(np.uint8)),
                              f"{tag}: in place differs")


def mismatches():
    """Each rank in turn passes one more element; every rank must raise, naming it."""
    global crossed
    results = {}
    small, big = sizes("float32")
    for odd in range(P if P > 1 else 0):  # (one rank cannot disagree with itself)
        for n in (10, *big):
            try:
                col.allreduce(np.ones(n + (r == odd), np.float32), algorithm="hierarchical")
                results[f"{odd}/{n}"] = "no error"
            except ValueError as exc:
                words = ["shape", f"rank {odd}", f"({n + 1},)", f"({n},)"]
                missing = [w for w in words if w not in str(exc)]
                results[f"{odd}/{n}"] = "ok" if not missing else f"missing {missing}: {exc}"
            y = col.allreduce(np.full(1 << 16, r, np.int64), op=col.Sum,
                              algorithm="hierarchical")  # still in step afterwards
            crossed += y.nbytes
            if not np.all(y == P * (P - 1) // 2):
                results[f"{odd}/{n}"] += " / broken afterwards"
    return results


allreduce_checks()
mismatch = mismatches()
report(fails=fails[:20], nfails=len(fails), hashes=hashes, crossed=crossed, mismatch=mismatch,
       cross_rank=col.cross_rank(), cross_size=col.cross_size(), shards=topo.shards,
       piece=topo.piece, auto={str(n): a for n, a in ctx.choices.items()}, **placement())
