"""Horovod's API against manual equivalents, on every rank (tests/test_horovod_api.py compares
the reports): Product exact for integers on every algorithm, pre/postscale == manual scaling,
async == blocking bitwise (several handles in flight, synchronised in any order), grouped ==
separate calls bitwise, alltoall == the rows each rank sent, process sets (disjoint sets
interleaved) == the same computation among the members, is_initialized/shutdown."""

from __future__ import annotations

import hashlib

import numpy as np

import collective as col
from ranks.report import report

r, P = col.rank(), col.size()
fails = []
hashes = {}
ALGOS = ("ring", "recursive_doubling", "mpi", "shared_memory", "auto")


def check(cond, what):
    if not cond:
        fails.append(what)


def h(a):
    return hashlib.md5(np.ascontiguousarray(a).tobytes()).hexdigest()


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def inp(n, dtype, rank, seed=0):
    """Inexact floats on purpose (the order of additions shows in the bits)."""
    rng = np.random.default_rng(1000 * seed + rank)
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(n) * 3).astype(dtype)
    return rng.integers(-50, 50, n).astype(dtype)


# -- Product: exact for integers on every algorithm, and the same bits on every rank ---------
for dt in ("int32", "int64", "float32", "float64", "float16"):
    for n in (1, P + 1, 1000, 70_000):
        rng = np.random.default_rng(n + r)
        x = rng.integers(-3, 4, n).astype(dt)  # small ints: exact products in any order
        want = np.prod(np.stack([np.random.default_rng(n + q).integers(-3, 4, n).astype(dt)
                                 for q in range(P)]), axis=0, dtype=dt)
        for algo in ALGOS:
            y = col.allreduce(x, op=col.Product, algorithm=algo)
            check(same_bits(y, want), f"Product {algo} {dt} n={n}")
            hashes[f"prod/{algo}/{dt}/{n}"] = h(y)
xi = np.full(4, 3 + r, np.int64) * (1 << 20)  # wraps around 2**64 for P = 3: C's arithmetic
check(same_bits(col.allreduce(xi, op=col.Product, algorithm="ring"),
                np.prod(np.stack([np.full(4, 3 + q, np.int64) * (1 << 20) for q in range(P)]),
                        axis=0)), "Product int64 wraps as numpy")


# -- prescale / postscale == manual scaling (Horovod's arithmetic) ---------------------------
def manual_scale(a, f):
    if a.dtype.kind in "iu":
        return (a.astype(np.float64) * f).astype(a.dtype)  # truncation toward zero
    if a.dtype == np.float16:
        return (a.astype(np.float32) * np.float32(f)).astype(np.float16)
    return a * a.dtype.type(f)


for dt in ("int32", "int64", "float16", "float32", "float64"):
    x = inp(1001, dt, r)
    for pre, post in ((0.37, 1.0), (1.0, 2.71), (-1.5, 0.25)):
        for algo in ("ring", "shared_memory", "auto"):
            want = manual_scale(col.allreduce(manual_scale(x, pre), op=col.Sum, algorithm=algo),
                                post)
            y = col.allreduce(x, op=col.Sum, algorithm=algo, prescale_factor=pre,
                              postscale_factor=post)
            check(same_bits(y, want), f"scale allreduce {algo} {dt} {pre} {post}")
            z = x.copy()
            col.allreduce_(z, op=col.Sum, algorithm=algo, prescale_factor=pre,
                           postscale_factor=post)
            check(same_bits(z, want), f"scale allreduce_ {algo} {dt} {pre} {post}")
        rows = x[:999].reshape(333, 3)
        want = manual_scale(col.reduce_scatter(manual_scale(rows, pre), op=col.Sum), post)
        got = col.reduce_scatter(rows, op=col.Sum, prescale_factor=pre, postscale_factor=post)
        check(same_bits(got, want), f"scale reduce_scatter {dt} {pre} {post}")
        ys = col.grouped_allreduce([x, x[:7]], op=col.Sum, prescale_factor=pre,
                                   postscale_factor=post)
        check(same_bits(ys[0], y) and same_bits(ys[1], col.allreduce(
            x[:7], op=col.Sum, prescale_factor=pre, postscale_factor=post)),
            f"scale grouped {dt} {pre} {post}")
# Average with a postscale: the average, then the factor
x = inp(50, "float64", r)
check(same_bits(col.allreduce(x, postscale_factor=3.0), col.allreduce(x) * 3.0),
      "Average postscale")

# -- async == blocking, bitwise; several in flight, synchronised in any order ----------------
calls = []  # (name, async function, blocking function, positional, keyword arguments)
for i, dt in enumerate(("float32", "float64", "int64", "float16")):
    x = inp(3000 + 17 * i, dt, r, seed=i)
    op = col.Sum if dt[0] == "i" else col.Average
    lst = [x, x[:5].reshape(5, 1), inp(300_000, dt, r, seed=7)]
    sp = [q + 1 for q in range(P)]
    rows = x[:2999].reshape(-1, 1)
    calls += [
        (f"allreduce {dt}", col.allreduce_async, col.allreduce, (x,), {"op": op}),
        (f"allreduce big {dt}", col.allreduce_async, col.allreduce, (np.tile(x, 40),),
         {"op": op}),
        (f"allreduce_ {dt}", col.allreduce_async_, col.allreduce_, (x,),
         {"op": op, "prescale_factor": 2.0}),
        (f"allgather {dt}", col.allgather_async, col.allgather, (x[:r + 2],), {}),
        (f"broadcast {dt}", col.broadcast_async, col.broadcast, (x,), {"root": P - 1}),
        (f"broadcast_ {dt}", col.broadcast_async_, col.broadcast_, (x,), {"root_rank": 0}),
        (f"reduce_scatter {dt}", col.reduce_scatter_async, col.reduce_scatter, (rows,), {}),
        (f"reducescatter {dt}", col.reducescatter_async, col.reducescatter, (rows,),
         {"op": col.Sum}),
        (f"alltoall {dt}", col.alltoall_async, col.alltoall, (x[:3 * P],), {}),
        (f"alltoall splits {dt}", col.alltoall_async, col.alltoall, (x[:sum(sp)],),
         {"splits": sp}),
        (f"grouped {dt}", col.grouped_allreduce_async, col.grouped_allreduce, (lst,),
         {"op": op}),
        (f"grouped_ {dt}", col.grouped_allreduce_async_, col.grouped_allreduce_, (lst,),
         {"op": op}),
        (f"grouped_allgather {dt}", col.grouped_allgather_async, col.grouped_allgather,
         (lst[:2],), {}),
        (f"grouped_reducescatter {dt}", col.grouped_reducescatter_async,
         col.grouped_reducescatter, ([rows, x[:4 * P].reshape(P, 4)],), {"op": op}),
    ]


def fresh(args):
    """In-place calls get their own copies (of lists too)."""
    return tuple([a.copy() for a in v] if isinstance(v, list) else v.copy() for v in args)


inplace_args = [fresh(a) for _, _, _, a, _ in calls]
handles = [fa(*a, **kw) for (_, fa, _, _, kw), a in zip(calls, inplace_args, strict=True)]
polled = [col.poll(hd) for hd in handles]
check(not all(polled), f"poll() was True for every handle right after submission ({polled})")
wants = [fb(*fresh(a), **kw) for _, _, fb, a, kw in calls]  # blocking: after the async ones
order = list(range(len(calls)))
np.random.default_rng(1).shuffle(order)  # the same order on every rank: any order works
for k in order:
    name, want, hd = calls[k][0], wants[k], handles[k]
    got = col.synchronize(hd)
    if isinstance(want, list | tuple):
        ok = len(got) == len(want) and all(same_bits(a, b) for a, b in zip(got, want,
                                                                           strict=True))
    else:
        ok = same_bits(got, want)
    check(ok, f"async {name}")
    if name.startswith(("allreduce_", "broadcast_", "grouped_ ")):
        check(got is inplace_args[k][0], f"async in place returns its input: {name}")
    check(col.poll(hd), f"poll after synchronize {name}")
check(same_bits(col.synchronize(handles[0]), wants[0]), "synchronize twice")
# a blocking call while calls are in flight waits its turn; results stay right
hs = [col.allreduce_async(np.full(10, q + r, np.int64), op=col.Sum) for q in range(5)]
mid = col.allreduce(np.full(3, r, np.int64), op=col.Sum)
check(mid.tolist() == [P * (P - 1) // 2] * 3, "blocking between async calls")
for q, hd in enumerate(hs):
    check(col.synchronize(hd).tolist() == [P * q + P * (P - 1) // 2] * 10, f"async {q}")

# calls that handshake directly (ProcessSet, broadcast_parameters) wait for the calls in flight
hs = [col.allreduce_async(np.full(10, q + r, np.int64), op=col.Sum) for q in range(3)]
params = [np.full(4, float(r)), np.full(2, float(r))]
col.broadcast_parameters(params, root_rank=P - 1)
extra = col.ProcessSet(list(range(P)))
check(all(np.all(p == P - 1) for p in params), "broadcast_parameters with calls in flight")
for q, hd in enumerate(hs):
    check(col.synchronize(hd).tolist() == [P * q + P * (P - 1) // 2] * 10, f"in flight {q}")
col.remove_process_set(extra)

# -- grouped == separate calls, bitwise (mixed shapes, dtypes and algorithms) ----------------
rng = np.random.default_rng(99)  # the same shapes on every rank
shapes = [tuple(int(s) for s in rng.integers(0, 6, rng.integers(0, 4))) for _ in range(30)]
shapes += [(70_000,), (300_001,), (2, 65_537)]  # ring-sized under the default costs
dtypes = ["float32", "float64", "float16", "int32", "int64"]
lst = [inp(int(np.prod(s)), dtypes[i % 5], r, seed=i).reshape(s) for i, s in enumerate(shapes)]
for algo in ALGOS:
    for op in (col.Sum, col.Max, col.Min, col.Product):
        sep = [col.allreduce(a, op=op, algorithm=algo) for a in lst]
        grp = col.grouped_allreduce(lst, op=op, algorithm=algo)
        check(all(same_bits(a, b) for a, b in zip(sep, grp, strict=True)),
              f"grouped == separate {algo} {op}")
        inplace = [a.copy() for a in lst]
        out = col.grouped_allreduce_(inplace, op=op, algorithm=algo)
        check(out is inplace and all(same_bits(a, b) for a, b in zip(sep, inplace,
                                                                     strict=True)),
              f"grouped_ == separate {algo} {op}")
        hashes[f"grouped/{algo}/{op}"] = h(np.concatenate([g.reshape(-1).view(np.uint8)
                                                           for g in grp]))
floats = [a for a in lst if a.dtype.kind == "f"]
sep = [col.allreduce(a) for a in floats]
check(all(same_bits(a, b) for a, b in zip(sep, col.grouped_allreduce(floats), strict=True)),
      "grouped Average == separate")
gathered = [a if a.ndim else a.reshape(1) for a in lst]
gathered = [a[: (r + 1) % (a.shape[0] + 1)] for a in gathered]  # uneven first dimensions
check(all(same_bits(a, b) for a, b in zip([col.allgather(a) for a in gathered],
                                          col.grouped_allgather(gathered), strict=True)),
      "grouped_allgather == separate")
rs = [a for a in lst if a.ndim and a.dtype.kind == "f"]
for op in (col.Sum, col.Average):
    check(all(same_bits(a, b) for a, b in zip([col.reduce_scatter(a, op=op) for a in rs],
                                              col.grouped_reduce_scatter(rs, op=op),
                                              strict=True)),
          f"grouped_reduce_scatter == separate {op}")
check(all(same_bits(a, b) for a, b in zip([col.reducescatter(a) for a in rs],
                                          col.grouped_reducescatter(rs), strict=True)),
      "grouped_reducescatter (Average) == separate")
check(col.grouped_allreduce([]) == [] and col.grouped_allgather([]) == [], "empty lists")

# -- alltoall: the rows each rank sent -------------------------------------------------------
def sent(q, rows):
    return np.arange(rows * 2, dtype=np.float64).reshape(rows, 2) + 1000 * q


for dt in ("float64", "int32", "uint8", "bool"):
    x = sent(r, 2 * P).astype(dt)
    want = np.concatenate([sent(q, 2 * P).astype(dt)[2 * r:2 * r + 2] for q in range(P)])
    check(same_bits(col.alltoall(x), want), f"alltoall even {dt}")
splits = [(r + q) % 3 for q in range(P)]  # rank r sends (r + q) % 3 rows to rank q


def sent_to(q, dest):
    sp = [(q + d) % 3 for d in range(P)]
    start = sum(sp[:dest])
    return sent(q, sum(sp))[start:start + sp[dest]]


out, received = col.alltoall(sent(r, sum(splits)), splits=splits)
check(same_bits(out, np.concatenate([sent_to(q, r) for q in range(P)]))
      and received.dtype == np.int32
      and received.tolist() == [(q + r) % 3 for q in range(P)], "alltoall splits")
out, received = col.alltoall(sent(r, sum(splits)), splits=np.array(splits, np.int64))
check(received.tolist() == [(q + r) % 3 for q in range(P)], "alltoall numpy splits")

# -- process sets: the computation among the members; disjoint sets interleave ---------------
evens = col.ProcessSet([q for q in range(P) if q % 2 == 0])
odds = col.ProcessSet([q for q in range(P) if q % 2 == 1]) if P > 1 else None
mine = evens if r % 2 == 0 else odds
members = mine.ranks
check(mine.included() and mine.rank() == members.index(r) and mine.size() == len(members),
      "ProcessSet rank/size/included")
check(col.add_process_set(mine) is mine and col.global_process_set.ranks == list(range(P)),
      "add_process_set / global_process_set")
for k in range(3 + 2 * (r % 2)):  # the sets make different numbers of calls, interleaved
    x = np.full(5, r + k, np.int64)
    got = col.allreduce(x, op=col.Sum, process_set=mine)
    check(got.tolist() == [sum(q + k for q in members)] * 5, f"set allreduce {k}")
xf = inp(1001, "float64", r)
full = np.stack([inp(1001, "float64", q) for q in members])
check(np.allclose(col.allreduce(xf, process_set=mine), full.mean(axis=0), rtol=1e-12),
      "set Average")
check(same_bits(col.allgather(xf[:r + 1], process_set=mine),
                np.concatenate([inp(1001, "float64", q)[:q + 1] for q in members])),
      "set allgather")
root = members[-1]
check(same_bits(col.broadcast(xf, root=root, process_set=mine), inp(1001, "float64", root)),
      "set broadcast (root a world rank)")
check(col.broadcast_object(r, root_rank=root, process_set=mine) == root, "set broadcast_object")
check(col.allgather_object(r, process_set=mine) == members, "set allgather_object")
seg = col.reduce_scatter(np.ones((7, 2)) * r, op=col.Sum, process_set=mine)
n_mine = 7 // len(members) + (mine.rank() < 7 % len(members))
check(seg.shape == (n_mine, 2) and np.all(seg == sum(members)), "set reduce_scatter")
ha = col.allreduce_async(np.ones(3) * r, op=col.Sum, process_set=mine)
check(col.synchronize(ha).tolist() == [float(sum(members))] * 3, "set allreduce_async")
grp = col.grouped_allreduce([np.ones(2) * r, np.ones(3, np.int64)], op=col.Sum,
                            process_set=mine)
check(grp[0].tolist() == [float(sum(members))] * 2 and grp[1].tolist() == [len(members)] * 3,
      "set grouped_allreduce")
check(same_bits(col.alltoall(np.repeat(np.arange(len(members)) + 10 * r, 2),
                             process_set=mine),
                np.repeat([10 * q + mine.rank() for q in members], 2)), "set alltoall")
col.barrier(process_set=mine)
try:  # a collective on the other set: a ValueError here at once, naming the ranks
    other = odds if mine is evens else evens
    if other is not None:
        col.allreduce(np.ones(2), process_set=other)
        check(False, "collective on a set this rank is not in must raise")
except ValueError as exc:
    check(f"rank {r} is not in process set" in str(exc)
          and ", ".join(map(str, other.ranks)) in str(exc), f"non-member message: {exc}")
# removal is a call of the whole world, in the same order everywhere
check(col.remove_process_set(evens) and not col.remove_process_set(evens), "remove_process_set")
if odds is not None:
    col.remove_process_set(odds)
try:
    col.allreduce(np.ones(2), process_set=mine)
    check(False, "a removed set must raise")
except ValueError as exc:
    check("removed" in str(exc), f"removed set message: {exc}")
check(col.is_initialized() and col.mpi_threads_supported(), "is_initialized/threads")
col.barrier()
report(fails=fails[:30], nfails=len(fails), hashes=hashes, size=P)
col.shutdown()
check(not col.is_initialized(), "shutdown")
y = col.allreduce(np.ones(2), op=col.Sum)  # a collective after shutdown starts it again
if not (col.is_initialized() and y.tolist() == [float(P)] * 2):
    raise SystemExit("re-init after shutdown failed")
