"""Every bucket of DistributedOptimizer's engines with reductions in flight follows the
documented arithmetic, to the bit: ``overlap="nonblocking"`` (rings) and ``"shared"`` (the
buckets in the node's shared window, the default on one node). The ring's sum (segment k owned
by rank k, summed in numpy's arithmetic of the dtype as x_k + (x_{k-1} + (... + x_{k+1}))),
then ``np.true_divide`` by P for Average.

Each rank's gradient of parameter i is a known array c_i (the loss is sum_i (p_i * c_i).sum()),
so every rank can compute the expected bits of every bucket itself. Reported per (dtype, op,
engine, bucket): whether the result is the documented one, and a digest to compare across
ranks; per engine whether its buckets were in the shared window.
"""

from __future__ import annotations

import hashlib
import itertools

import numpy as np

import collective as col
import dlsys as ds
from collective.algorithms import segments
from ranks.report import report

P, R = col.size(), col.rank()
SHAPES = [(3,), (5, 7), (1,), (64, 33), (2,), (129,), (4, 4)]  # uneven sizes, one < P elements


def contribution(rank, i, dtype):
    """Rank ``rank``'s gradient of parameter i: inexact values on purpose."""
    rng = np.random.default_rng(1000 * rank + i)
    return (rng.standard_normal(SHAPES[i]) * 3).astype(dtype)


def documented(xs, average):
    """The documented result of reducing the flat arrays ``xs`` (one per rank)."""
    n, dtype = xs[0].size, xs[0].dtype
    out = np.empty(n, dtype)
    counts, offsets = segments(n, P)
    for k in range(P):
        lo, hi = offsets[k], offsets[k] + counts[k]
        acc = xs[(k + 1) % P][lo:hi].copy()
        for j in range(2, P + 1):
            acc = np.add(xs[(k + j) % P][lo:hi], acc)
        out[lo:hi] = np.true_divide(acc, P) if average and P > 1 else acc
    return out


results, digests, shared = {}, {}, {}
for (dtype, op, overlap) in itertools.product((np.float16, np.float32, np.float64),
                                          (col.Sum, col.Average), ("nonblocking", "shared")):
    params = [ds.tensor(np.zeros(s), dtype=dtype, requires_grad=True) for s in SHAPES]
    opt = col.DistributedOptimizer(ds.optim.SGD(params, lr=0.0), op=op,
                                   bucket_cap_mb=600 / 2**20,  # several buckets
                                   overlap=overlap)
    shared[overlap] = all(b.shared for b in opt.buckets)
    loss = None
    for i, p in enumerate(params):
        term = (p * ds.tensor(contribution(R, i, dtype), dtype=dtype)).sum()
        loss = term if loss is None else loss + term
    loss.backward()  # buckets start from the hooks, in flight during the rest of backward
    opt.synchronize()
    tag = f"{np.dtype(dtype).name}/{op}/{overlap}"
    results[tag + "/buckets"] = len(opt.buckets)
    index = {id(p): i for i, p in enumerate(params)}
    for b, bucket in enumerate(opt.buckets):
        ids = [index[id(p)] for p in bucket.params]
        xs = [np.concatenate([contribution(q, i, dtype).ravel() for i in ids])
              for q in range(P)]
        got = np.concatenate([p.grad.numpy().ravel() for p in bucket.params])
        want = documented(xs, op is col.Average)
        results[f"{tag}/{b}"] = bool(np.array_equal(got.view(np.uint8), want.view(np.uint8)))
        digests[f"{tag}/{b}"] = hashlib.sha1(got.tobytes()).hexdigest()
report(results=results, digests=digests, shared=shared)
