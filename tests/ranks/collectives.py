"""Every collective on every rank: exact integers, bitwise-identical floats, untouched inputs,
buffers and tensors (tests/test_collective.py compares the reports)."""

from __future__ import annotations

import hashlib
import os

import numpy as np

import collective as col
from collective.algorithms import ring_allreduce
from collective.comm import context
from ranks.report import report

r, P = col.rank(), col.size()
fails = []
hashes = {}
PRIME = 1009
BIG = int(os.environ.get("BIG_N", "1000003"))


def inp(n, dtype, rank):
    i = np.arange(n, dtype=np.int64)
    v = (i * 7 + rank * 13) % 101 - 50
    if np.dtype(dtype).kind == "f":
        return (v / 8.0).astype(dtype) + np.asarray(rank * 0.1, dtype)  # inexact on purpose
    return v.astype(dtype)


def ref(n, dtype, op):
    xs = np.stack([inp(n, dtype, q).astype(np.float64 if np.dtype(dtype).kind == "f"
                                           else np.int64) for q in range(P)])
    if op is col.Max:
        return xs.max(axis=0) if n else xs[0]
    if op is col.Min:
        return xs.min(axis=0) if n else xs[0]
    s = xs.sum(axis=0)
    return s / P if op is col.Average else s


def rank_order(n, dtype, op):
    """((x0 op x1) op x2) ... in the dtype's arithmetic: the bits of "shared_memory" at every
    size (its one-round and its reduce-scatter schedules)."""
    xs = [inp(n, dtype, q) for q in range(P)]
    ufunc = {col.Max: np.maximum, col.Min: np.minimum}.get(op, np.add)
    acc = ufunc(xs[0], xs[1])
    for x in xs[2:]:
        ufunc(acc, x, out=acc)
    if op is col.Average:
        np.true_divide(acc, P, out=acc)
    return acc


SHM = P > 1 and context().shm is not None


def check(cond, what):
    if not cond:
        fails.append(what)


def h(a):
    return hashlib.md5(np.ascontiguousarray(a).tobytes()).hexdigest()


TOL = {"float16": 2e-2, "float32": 1e-5, "float64": 1e-12}
sizes = sorted({0, 1, max(P - 1, 0), P, P + 1, PRIME, BIG})
DTYPES = ("float16", "float32", "float64", "int32", "int64")
if P >= 5:  # oversubscribed worlds are slow per call: N = 1, P, ~10^6 and the 2- and 4-byte
    # dtypes (same code paths, other item sizes) are covered by P <= 4
    sizes = sorted({0, P - 1, P + 1, PRIME})
    DTYPES = ("float32", "float64", "int64")
ALGOS = ("ring", "recursive_doubling", "mpi", "shared_memory", "auto")
for dt in DTYPES:
    for n in sizes:
        if n == BIG and dt == "float16" and P > 2:
            continue  # numpy's float16 adds are slow; P = 1, 2 cover the big float16 case
        x = inp(n, dt, r)
        x0 = x.copy()
        ops = (col.Sum, col.Max, col.Min) + ((col.Average,) if dt[0] == "f" else ())
        for op in ops:
            want = ref(n, dt, op)  # once per (dtype, n, op), shared by the algorithms
            for algo in ALGOS:
                tag = f"{algo}/{dt}/n={n}/{op}"
                y = col.allreduce(x, op=op, algorithm=algo)
                check(np.array_equal(x, x0), f"{tag}: input modified")
                check(y.dtype == x.dtype and y.shape == x.shape, f"{tag}: dtype/shape")
                if dt[0] == "i":
                    check(np.array_equal(y, want), f"{tag}: not exact")
                else:
                    ok = np.allclose(y.astype(np.float64), want, rtol=TOL[dt], atol=TOL[dt] * 8)
                    check(ok, f"{tag}: wrong values")
                hashes[tag] = h(y)
                if algo == "shared_memory" and SHM:
                    check(np.array_equal(y.view(np.uint8), rank_order(n, dt, op).view(np.uint8)),
                          f"{tag}: not the rank-order bits")
                if n == P + 1:  # in place: same bits as out of place
                    z = x.copy()
                    out = col.allreduce_(z, op=op, algorithm=algo)
                    check(out is z and np.array_equal(z.view(np.uint8), y.view(np.uint8)),
                          f"{tag}: in-place differs")
        if dt[0] == "i" and n == PRIME:
            for algo in ALGOS:
                with_err = False
                try:
                    col.allreduce(x, op=col.Average, algorithm=algo)
                except TypeError as exc:
                    with_err = "int" in str(exc)
                check(with_err, f"{algo}/{dt}: integer Average must raise TypeError")

# the ring's pipelined path (many chunks per segment), called directly
for n in (P + 1, 1000):
    z = inp(n, "int64", r)
    ring_allreduce(context(), z, np.add, chunk=64)
    check(np.array_equal(z, ref(n, "int64", col.Sum)), f"ring pipelined n={n}")

# non-contiguous views: out of place copies, in place writes back
base = np.arange(40, dtype=np.float64).reshape(8, 5) + r
view = base[:, 1:4]
y = col.allreduce(view, op=col.Sum, algorithm="ring")
check(np.array_equal(y, sum(np.arange(40.0).reshape(8, 5)[:, 1:4] + q for q in range(P))),
      "non-contiguous out of place")
before = base.copy()
col.allreduce_(view, op=col.Max)
check(np.array_equal(base[:, 0], before[:, 0]) and np.array_equal(view, before[:, 1:4] - r + P - 1),
      "non-contiguous in place")
# buffer-protocol objects
ba = bytearray(np.full(6, r + 1, np.int32).tobytes())
out = col.allreduce(memoryview(ba).cast("i"), op=col.Sum)
check(isinstance(out, np.ndarray) and out.tolist() == [P * (P + 1) // 2] * 6, "buffer protocol")
col.allreduce_(memoryview(ba).cast("i"), op=col.Sum)
check(np.frombuffer(ba, np.int32).tolist() == [P * (P + 1) // 2] * 6, "buffer protocol in place")
# read-only in place: ValueError on every rank; bad dtype: TypeError naming it
ro = np.ones(3)
ro.flags.writeable = False
try:
    col.allreduce_(ro)
    check(False, "read-only in place must raise")
except ValueError as exc:
    check("read-only" in str(exc), f"read-only message: {exc}")
try:
    col.allreduce(np.ones(3, np.complex64))
    check(False, "complex must raise")
except TypeError as exc:
    check("complex64" in str(exc), f"bad dtype message: {exc}")


# dlsys tensors on small worlds (the import of dlsys is slow); CUDA ones: test_cuda_collective
if P <= 3:
    import dlsys as ds

    t = ds.tensor(np.full((3, 2), r + 1.0), dtype=ds.float64)
    s = col.allreduce(t, op=col.Average)
    check(isinstance(s, ds.Tensor) and np.all(s.numpy() == (P + 1) / 2)
          and np.all(t.numpy() == r + 1), "dlsys tensor allreduce")
    check(col.allreduce_(t, op=col.Sum) is t and np.all(t.numpy() == P * (P + 1) / 2),
          "dlsys tensor allreduce_")
    g = col.allgather(ds.tensor(np.full((1, 2), r, np.int64)))
    check(isinstance(g, ds.Tensor) and g.shape == (P, 2), "dlsys tensor allgather")
    # a non-contiguous CPU Tensor (a view): in place writes back into it, nothing else moves
    base = ds.tensor(np.arange(12.0).reshape(3, 4) + r)
    col.allreduce_(base[:, 1:3], op=col.Sum)
    want = np.arange(12.0).reshape(3, 4) * P + P * (P - 1) / 2
    check(np.array_equal(base.numpy()[:, 1:3], want[:, 1:3])
          and np.array_equal(base.numpy()[:, 0], np.arange(0.0, 12, 4) + r),
          "dlsys tensor view in place")
    # a Tensor that requires grad (a parameter): read and broadcast in place like any other
    w = ds.tensor(np.full(3, float(r)), requires_grad=True)
    col.broadcast_(w, root=P - 1)
    check(np.all(w.numpy() == P - 1), "dlsys parameter broadcast_")
    b = col.broadcast(ds.from_numpy(np.full(2, r, np.int32)), root=0)
    check(isinstance(b, ds.Tensor) and b.dtype == np.int32 and np.all(b.numpy() == 0),
          "dlsys tensor broadcast")

# broadcast / broadcast_
for root in sorted({0, P - 1, P // 2}):
    for dt in ("float16", "float64", "int32", "bool", "uint8"):
        x = (np.arange(11) * (r + 1)).astype(dt)
        x0 = x.copy()
        y = col.broadcast(x, root=root)
        want = (np.arange(11) * (root + 1)).astype(dt)
        check(np.array_equal(y, want) and np.array_equal(x, x0), f"broadcast root={root} {dt}")
        col.broadcast_(x, root=root)
        check(np.array_equal(x, want), f"broadcast_ root={root} {dt}")
    e = col.broadcast(np.zeros((0, 3)), root=root)
    check(e.shape == (0, 3), "empty broadcast")

# allgather: uneven first dims, 0-d, empty
for dt in ("float32", "int64", "float16"):
    x = np.full((r % 3, 2), r, dtype=dt)
    y = col.allgather(x)
    want = np.concatenate([np.full((q % 3, 2), q, dtype=dt) for q in range(P)])
    check(np.array_equal(y, want) and y.dtype == np.dtype(dt), f"allgather {dt}")
    hashes[f"allgather/{dt}"] = h(y)
y = col.allgather(np.float64(r))
check(np.array_equal(y, np.arange(P, dtype=np.float64)), "allgather 0-d")

# reduce_scatter: this rank's segment, split like the ring's
for rows in sorted({0, 1, P - 1 if P > 1 else 0, P + 1, 37}):
    for op in (col.Sum, col.Average, col.Max):
        x = inp(rows * 3, "float64", r).reshape(rows, 3)
        x0 = x.copy()
        y = col.reduce_scatter(x, op=op)
        full = ref(rows * 3, "float64", op).reshape(rows, 3)
        base_, extra = divmod(rows, P)
        lo = r * base_ + min(r, extra)
        hi = lo + base_ + (r < extra)
        check(y.shape == (hi - lo, 3) and np.allclose(y, full[lo:hi], rtol=1e-12)
              and np.array_equal(x, x0), f"reduce_scatter rows={rows} {op}")
    xi = inp(rows * 3, "int64", r).reshape(rows, 3)
    parts = col.allgather(col.reduce_scatter(xi, op=col.Sum))
    check(np.array_equal(parts, col.allreduce(xi, op=col.Sum)), f"reduce_scatter int rows={rows}")

# objects, barrier
check(col.broadcast_object({"r": r, "l": [1, 2]}, root=P - 1) == {"r": P - 1, "l": [1, 2]},
      "broadcast_object")
check(col.allgather_object(("x", r)) == [("x", q) for q in range(P)], "allgather_object")
col.barrier()
check(col.local_size() >= 1 and 0 <= col.local_rank() < col.local_size(), "local rank")

report(fails=fails[:20], nfails=len(fails), hashes=hashes, size=P)
