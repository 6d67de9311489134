"""Guarantee 5 across hosts: every allreduce algorithm exact for integers and bitwise identical
on every rank for floats, on awkward sizes; the other collectives. Public API only.

Reports its failures, a hash of every result (the test compares them across ranks), where it
ran, and ``crossed``: the bytes each host must at least have sent and received over its link
(every allreduce of N bytes needs N bytes of the other hosts' data in, and its own out).
"""

from __future__ import annotations

import hashlib

import numpy as np
from multihost_common import placement, report

import collective as col

col.init()
r, P = col.rank(), col.size()
fails: list = []
hashes: dict = {}
crossed = 0
ALGOS = ("ring", "recursive_doubling", "mpi", "shared_memory", "auto")
DTYPES = ("float16", "float32", "float64", "int32", "int64")
TOL = {"float16": 2e-2, "float32": 1e-5, "float64": 1e-12}
SLOT = 2 << 20  # one shared-memory slot (collective's default): the big size is larger


def check(cond, what):
    if not cond:
        fails.append(what)


def h(a):
    return hashlib.md5(np.ascontiguousarray(a).tobytes()).hexdigest()


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


def big_size(dtype):
    """More than one slot, and not divisible by P."""
    n = SLOT // np.dtype(dtype).itemsize + 1
    return n + 1 if n % P == 0 else n


def allreduce_checks():
    global crossed
    for dt in DTYPES:
        small = sorted({0, 1, max(P - 1, 0), P + 1, 1009})
        floats = dt[0] == "f"
        for n in small + [big_size(dt)]:
            x = inp(n, dt, r)
            x0 = x.copy()
            if n in small:
                ops = (col.Sum, col.Max, col.Min) + ((col.Average,) if floats else ())
            else:  # the big size: the summing paths (Max/Min take the same ones)
                ops = (col.Sum,) + ((col.Average,) if floats else ())
            for op in ops:
                want = ref(n, dt, op)
                for algo in ALGOS:
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
                    hashes[tag] = h(y)
                    if n == P + 1:  # in place: the same bits as out of place
                        z = x.copy()
                        out = col.allreduce_(z, op=op, algorithm=algo)
                        crossed += z.nbytes
                        check(out is z and np.array_equal(z.view(np.uint8), y.view(np.uint8)),
                              f"{tag}: in place differs")


def other_collectives():
    for root in sorted({0, P - 1, P // 2}):  # roots on every host
        for dt in ("float16", "float64", "int32", "bool"):
            x = (np.arange(3 * SLOT // 8 + 5) * (r + 1)).astype(dt)
            x0 = x.copy()
            want = (np.arange(x.size) * (root + 1)).astype(dt)
            y = col.broadcast(x, root=root)
            check(np.array_equal(y, want) and np.array_equal(x, x0), f"broadcast {root} {dt}")
            col.broadcast_(x, root=root)
            check(np.array_equal(x, want), f"broadcast_ {root} {dt}")
        check(col.broadcast(np.zeros((0, 3)), root=root).shape == (0, 3), "empty broadcast")
    for dt in ("float32", "int64", "float16"):
        x = np.full((r % 3, 2), r, dtype=dt)  # uneven first dims, some empty
        y = col.allgather(x)
        want = np.concatenate([np.full((q % 3, 2), q, dtype=dt) for q in range(P)])
        check(np.array_equal(y, want) and y.dtype == np.dtype(dt), f"allgather {dt}")
        hashes[f"allgather/{dt}"] = h(y)
    check(np.array_equal(col.allgather(np.float64(r)), np.arange(P, dtype=np.float64)),
          "allgather 0-d")
    for rows in sorted({0, 1, P - 1, P + 1, 37}):
        for op in (col.Sum, col.Average, col.Max):
            x = inp(rows * 3, "float64", r).reshape(rows, 3)
            x0 = x.copy()
            y = col.reduce_scatter(x, op=op)
            full = ref(rows * 3, "float64", op).reshape(rows, 3)
            base, extra = divmod(rows, P)
            lo = r * base + min(r, extra)
            hi = lo + base + (r < extra)
            check(y.shape == (hi - lo, 3) and np.allclose(y, full[lo:hi], rtol=1e-12)
                  and np.array_equal(x, x0), f"reduce_scatter rows={rows} {op}")
            hashes[f"reduce_scatter/{rows}/{op}"] = h(col.allgather(y))
        xi = inp(rows * 3, "int64", r).reshape(rows, 3)
        parts = col.allgather(col.reduce_scatter(xi, op=col.Sum))
        check(np.array_equal(parts, col.allreduce(xi, op=col.Sum)), f"reduce_scatter int {rows}")
    check(col.broadcast_object({"r": r}, root=P - 1) == {"r": P - 1}, "broadcast_object")
    check(col.allgather_object(("x", r)) == [("x", q) for q in range(P)], "allgather_object")
    col.barrier()


allreduce_checks()
other_collectives()
report(fails=fails[:20], nfails=len(fails), hashes=hashes, crossed=crossed, **placement())
