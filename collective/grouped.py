"""Grouped collectives (Horovod's): one fused operation over a list of tensors.

    ys = col.grouped_allreduce([w, b, v])        # mixed shapes; one handshake for the list

One handshake checks the whole list (every shape and dtype, the op, factors, name), then the
data moves in as few messages as the results allow: bitwise identical to calling the
collective on each tensor separately. How:

- grouped_allreduce: each tensor gets the algorithm its separate call would get (``auto``
  decides by its size), and the tensors of one (dtype, algorithm) are fused. The shared-memory
  and recursive-doubling allreduces combine every element in an order that does not depend
  on where it lies (rank order; the butterfly's), so their tensors are simply concatenated.
  The ring's order depends on the segment an element falls in, so its tensors are packed
  segment-major (segment k of the fused buffer is segment k of every tensor, as their separate
  rings cut them) and one ring runs with that layout: every element is combined on the same
  rank in the same order as in its own ring. The MPI library's own Allreduce (whose order is
  its own business) runs once per tensor, after the one handshake.
- grouped_reduce_scatter: one ring reduce-scatter per dtype over the segment-major packing.
- grouped_allgather: one exchange of the row counts and one Allgatherv of all the bytes.

The first fused reduction carries the handshake of the whole list (its fingerprint), so a
list of small tensors costs one shared-memory round. Tensors that require grad are reduced
by separate (differentiable) calls: a dlsys op has one output.
"""

from __future__ import annotations

import numpy as np

from . import scaling
from .algorithms import Ring, handshake, run, segments
from .allreduce import allreduce, check_algorithm, neutral
from .collectives import allgather, reduce_scatter
from .comm import context
from .context import MISMATCH, TAG_RING, HostPool
from .process_sets import context_of
from .reduce_ops import Average, Sum, as_op, check_dtype, with_average
from .safety import agree, describe, disagreement, fingerprint
from .tensors import MOVE_DTYPES, REDUCE_DTYPES, Staged, needs_grad, stage
from .tuning import choose

_FUSED = ("shared_memory", "recursive_doubling")  # position-independent arithmetic


def _context(process_set, what):
    return context() if process_set is None else context_of(process_set, what)


def _items(tensors, what):
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{what}: expected a list of arrays or Tensors, got "
                        f"{type(tensors).__name__}")
    return list(tensors)


def _stage_all(items, inplace, what, dtypes):
    allowed = frozenset(dtypes)
    pool = None
    out = []
    for i, t in enumerate(items):
        if type(t) is np.ndarray and t.dtype in allowed:
            flags = t.flags
            if flags.c_contiguous and (flags.writeable or not inplace):
                out.append(Staged(t))  # a plain array: used as it is (stage's rules)
                continue
        if pool is None:  # NOTE: one staging buffer per CUDA tensor (not one shared)
            pool = HostPool()
        out.append(stage(t, inplace=inplace, what=what, pool=pool, dtypes=dtypes,
                         pool_key=str(i)))
    return out


def _desc(what, arrays, op=None, algorithm=None, name=None, options=None, first_free=False):
    shapes = tuple(((-1,) + a.shape[1:]) if first_free else a.shape for a in arrays)
    return describe(what, shapes, tuple(a.dtype for a in arrays), op, algorithm, name=name,
                    options=options)


# -- grouped_allreduce --------------------------------------------------------------------------

def grouped_allreduce(tensors, op=Average, algorithm="auto", prescale_factor=1.0,
                      postscale_factor=1.0, process_set=None, *, name=None, average=None):
    """``[allreduce(t, ...) for t in tensors]`` as one fused operation (see the module
    docstring): new arrays or Tensors, the inputs untouched. ``average=``: Horovod's."""
    op = with_average(op, average)
    items = tensors if not isinstance(tensors, (list, tuple)) else list(tensors)
    if isinstance(items, list) and any(type(t) is not np.ndarray and needs_grad(t)
                                       for t in items):
        return [allreduce(t, op, algorithm, prescale_factor, postscale_factor, process_set,
                          name=name) for t in items]
    return _grouped_allreduce(tensors, op, algorithm, False, prescale_factor, postscale_factor,
                              process_set, name)


def grouped_allreduce_(tensors, op=Average, algorithm="auto", prescale_factor=1.0,
                       postscale_factor=1.0, process_set=None, *, name=None, average=None):
    """In-place ``grouped_allreduce``: every tensor holds its result; returns the list."""
    op = with_average(op, average)
    return _grouped_allreduce(tensors, op, algorithm, True, prescale_factor, postscale_factor,
                              process_set, name)


class Fusion:
    """One fused reduction of a grouped_allreduce: its tensors (indices), algorithm, handshake
    fingerprint and layout, computed once per call description."""

    __slots__ = ("kind", "algorithm", "idx", "fp", "sizes", "offsets", "total", "parts", "lay")

    def __init__(self, kind, algorithm, idx, fp, arrays, P):
        self.kind, self.algorithm, self.idx, self.fp = kind, algorithm, idx, fp
        self.sizes = [arrays[i].size for i in idx]
        self.offsets = [0]
        for n in self.sizes[:-1]:
            self.offsets.append(self.offsets[-1] + n)
        self.total = sum(self.sizes)
        self.parts = self.lay = None
        if kind == "ring":
            self.parts, self.lay = _layout([arrays[i] for i in idx], _elements, P)


def _plan(ctx, desc, arrays, algorithm):
    """The Fusions of a call (cached per description): each tensor gets the algorithm its own
    call would get, and tensors of one (dtype, algorithm) are fused, in first-appearance
    order; the first fusion's handshake checks the whole description."""
    key = ("grouped_allreduce", desc)
    plan = ctx.calls.get(key)
    if plan is not None:
        return plan
    groups: dict = {}
    order = []
    for i, a in enumerate(arrays):
        algo = choose(ctx, a.nbytes) if algorithm == "auto" else algorithm
        kind = "concat" if algo in _FUSED else "ring" if algo == "ring" else "single"
        gkey = (a.dtype, algo) if kind != "single" else i
        if gkey not in groups:
            groups[gkey] = len(order)
            order.append((kind, algo, []))
        order[groups[gkey]][2].append(i)
    plan = [Fusion(kind, algo, idx, fingerprint(desc if j == 0 else (desc, j)), arrays,
                   ctx.size) for j, (kind, algo, idx) in enumerate(order)]
    if len(ctx.calls) > 4096:
        ctx.calls.clear()
    ctx.calls[key] = plan
    return plan


def _grouped_allreduce(tensors, op, algorithm, inplace, pre, post, process_set, name):
    what = "grouped_allreduce_" if inplace else "grouped_allreduce"
    ctx = _context(process_set, what)
    ex = ctx.executor
    if ex is not None and ex.must_route():
        return ex.blocking("grouped_allreduce", _grouped_allreduce, tensors, op, algorithm,
                           inplace, pre, post, process_set, name)
    try:
        items = _items(tensors, what)
        rop = as_op(op)
        check_algorithm(algorithm)
        pre = scaling.check_factor(pre, "prescale_factor")
        post = scaling.check_factor(post, "postscale_factor")
        staged = _stage_all(items, inplace, what, REDUCE_DTYPES)
        arrays = [s.array for s in staged]
        for a in arrays:
            check_dtype(rop, a.dtype)
        desc = _desc("grouped_allreduce", arrays, rop, algorithm, name,
                     scaling.options(pre, post))
    except (TypeError, ValueError) as exc:
        if ctx.size == 1:
            raise
        agree(ctx, describe("grouped_allreduce"), exc)
    outs = _reduce(ctx, desc, arrays, rop, algorithm, inplace, pre, post)
    if inplace:
        for s in staged:
            s.commit()
        return tensors
    return [s.wrap(o) for s, o in zip(staged, outs, strict=True)]


def _reduce(ctx, desc, arrays, op, algorithm, inplace, pre=1.0, post=1.0):
    """The fused reductions of ``arrays``; the results (the arrays themselves when in place)."""
    if not arrays:
        agree(ctx, desc, shadowable=True)
        return []
    if ctx.size == 1:
        outs = arrays if inplace else [np.array(a, copy=True) for a in arrays]
        for o in outs:
            for f in (pre, post):
                if f != 1.0:
                    scaling.scale(o, f)
        return outs
    outs = list(arrays) if inplace else [None] * len(arrays)
    for fusion in _plan(ctx, desc, arrays, algorithm):
        group = [arrays[i] for i in fusion.idx]
        if fusion.kind == "ring":
            results = _ring_group(ctx, fusion, desc, group, op, pre, post, inplace)
        else:
            results = _concat_group(ctx, fusion, desc, group, op, pre, post, inplace)
        for i, r in zip(fusion.idx, results, strict=True):
            outs[i] = r
    return outs


def _run(ctx, fp, desc, buf, op, algo):
    while run(ctx, fp, buf, op, algo) == MISMATCH:
        disagreement(ctx.comm, desc, None, ranks=ctx.ranks, shadowable=True)


def _concat_group(ctx, fusion, desc, group, op, pre, post, inplace):
    n, dtype = fusion.total, group[0].dtype
    buf = ctx.pool.get("grouped", n * dtype.itemsize, dtype) if inplace else np.empty(n, dtype)
    if len(group) == 1:
        np.copyto(buf, group[0].reshape(-1))
    else:
        np.concatenate([a.reshape(-1) for a in group], out=buf)
    if pre != 1.0:
        scaling.scale(buf, pre)
    _run(ctx, fusion.fp, desc, buf, op, fusion.algorithm)
    if post != 1.0:
        scaling.scale(buf, post)
    views = [buf[o:o + k].reshape(a.shape)
             for a, o, k in zip(group, fusion.offsets, fusion.sizes, strict=True)]
    if not inplace:
        return views
    for a, v in zip(group, views, strict=True):
        np.copyto(a, v)
    return group


def _layout(group, rows_of, P):
    """The segment-major packing of ``group``: per tensor (counts, offsets) of its own ring,
    and the fused ring's (counts, offsets)."""
    parts = [segments(rows, P, row) for rows, row in map(rows_of, group)]
    counts = [sum(c[k] for c, _ in parts) for k in range(P)]
    offsets = [0] * P
    for k in range(1, P):
        offsets[k] = offsets[k - 1] + counts[k - 1]
    return parts, (counts, offsets)


def _elements(a):
    """(rows, row) of a tensor as allreduce's ring cuts it: elements."""
    return a.size, 1


def _rows(a):
    """(rows, row) of a tensor as reduce_scatter cuts it: along axis 0."""
    return a.shape[0], int(np.prod(a.shape[1:], dtype=np.int64))


def _pack(ctx, group, parts, total, dtype):
    buf = ctx.pool.get("grouped", total * dtype.itemsize, dtype)
    np.concatenate([a.reshape(-1)[o[k]:o[k] + c[k]] for k in range(ctx.size)
                    for a, (c, o) in zip(group, parts, strict=True)], out=buf)
    return buf


def _ring(ctx, fp, desc, buf, op, lay, gather):
    """One ring (allreduce with ``gather``, else reduce-scatter) with the layout ``lay``, as
    algorithms.run would run it after its handshake."""
    while handshake(ctx, fp) == MISMATCH:  # joined ranks take part in allreduces only
        disagreement(ctx.comm, desc, None, ranks=ctx.ranks, shadowable=gather)
    scratch = ctx.pool.get("ring_scratch", max(lay[0]) * buf.itemsize, buf.dtype)
    Ring(ctx.comm, ctx.rank, ctx.size, buf, op.ufunc, ctx.size if op.average else 0, lay,
         scratch, TAG_RING, gather=gather).wait(ctx.config.wait == "block")


def _ring_group(ctx, fusion, desc, group, op, pre, post, inplace):
    parts, lay = fusion.parts, fusion.lay
    dtype = group[0].dtype
    buf = _pack(ctx, group, parts, fusion.total, dtype)
    if pre != 1.0:
        scaling.scale(buf, pre)
    _ring(ctx, fusion.fp, desc, buf, op, lay, gather=True)
    if post != 1.0:
        scaling.scale(buf, post)
    outs = group if inplace else [np.empty(a.shape, dtype) for a in group]
    pos = 0
    for k in range(ctx.size):
        for out, (c, o) in zip(outs, parts, strict=True):
            out.reshape(-1)[o[k]:o[k] + c[k]] = buf[pos:pos + c[k]]
            pos += c[k]
    return outs


def shadow(ctx, desc):
    """A joined rank's part in the grouped_allreduce ``desc`` of the others: neutral inputs."""
    _, shapes, dtypes, op, algorithm = desc[:5]
    arrays = [neutral(op, s, d) for s, d in zip(shapes, dtypes, strict=True)]
    _reduce(ctx, desc, arrays, op, algorithm, True)


# -- grouped_allgather --------------------------------------------------------------------------

def grouped_allgather(tensors, process_set=None, *, name=None):
    """``[allgather(t) for t in tensors]`` in one exchange of row counts and one Allgatherv."""
    ctx = _context(process_set, "grouped_allgather")
    ex = ctx.executor
    if ex is not None and ex.must_route():
        return ex.blocking("grouped_allgather", grouped_allgather, tensors, process_set,
                           name=name)
    error = None
    try:
        items = _items(tensors, "grouped_allgather")
        if any(type(t) is not np.ndarray and needs_grad(t) for t in items):
            return [allgather(t, process_set, name=name) for t in items]
        staged = _stage_all(items, False, "grouped_allgather", MOVE_DTYPES)
        arrays = [s.array if s.array.ndim else s.array.reshape(1) for s in staged]
        desc = _desc("grouped_allgather", arrays, name=name, first_free=True)
    except (TypeError, ValueError) as exc:
        error, desc = exc, describe("grouped_allgather")
        if ctx.size == 1:
            raise
    agree(ctx, desc, error)
    if ctx.size == 1:
        return [s.wrap(np.array(a, copy=True)) for s, a in zip(staged, arrays, strict=True)]
    from mpi4py import MPI

    rows = np.array(ctx.comm.allgather([int(a.shape[0]) for a in arrays]),
                    np.int64).reshape(ctx.size, len(arrays))
    rowbytes = np.array([a.dtype.itemsize * int(np.prod(a.shape[1:], dtype=np.int64))
                         for a in arrays], np.int64)
    nbytes = rows * rowbytes  # [rank, tensor]
    counts = nbytes.sum(axis=1)
    displs = np.concatenate(([0], np.cumsum(counts)[:-1]))
    send = (np.concatenate([a.reshape(-1).view(np.uint8) for a in arrays]) if arrays
            else np.empty(0, np.uint8))
    recv = np.empty(int(counts.sum()), np.uint8)
    ctx.comm.Allgatherv([send, MPI.BYTE], [recv, counts.tolist(), displs.tolist(), MPI.BYTE])
    outs = [np.empty((int(rows[:, i].sum()),) + a.shape[1:], a.dtype)
            for i, a in enumerate(arrays)]
    filled = [0] * len(arrays)
    for r in range(ctx.size):
        pos = int(displs[r])
        for i, out in enumerate(outs):
            nb = int(nbytes[r, i])
            out.reshape(-1).view(np.uint8)[filled[i]:filled[i] + nb] = recv[pos:pos + nb]
            filled[i] += nb
            pos += nb
    return [s.wrap(o) for s, o in zip(staged, outs, strict=True)]


# -- grouped_reduce_scatter ---------------------------------------------------------------------

def grouped_reduce_scatter(tensors, op=Sum, prescale_factor=1.0, postscale_factor=1.0,
                           process_set=None, *, name=None):
    """``[reduce_scatter(t, ...) for t in tensors]``: one ring reduce-scatter per dtype over
    the segment-major packing (bitwise the separate calls' results)."""
    ctx = _context(process_set, "grouped_reduce_scatter")
    ex = ctx.executor
    if ex is not None and ex.must_route():
        return ex.blocking("grouped_reduce_scatter", grouped_reduce_scatter, tensors, op,
                           prescale_factor, postscale_factor, process_set, name=name)
    error = None
    try:
        items = _items(tensors, "grouped_reduce_scatter")
        if any(type(t) is not np.ndarray and needs_grad(t) for t in items):
            return [reduce_scatter(t, op, prescale_factor, postscale_factor, process_set,
                                   name=name) for t in items]
        rop = as_op(op)
        pre = scaling.check_factor(prescale_factor, "prescale_factor")
        post = scaling.check_factor(postscale_factor, "postscale_factor")
        staged = _stage_all(items, False, "grouped_reduce_scatter", REDUCE_DTYPES)
        arrays = [s.array for s in staged]
        for a in arrays:
            if a.ndim == 0:
                raise ValueError("grouped_reduce_scatter needs inputs with at least one "
                                 "dimension, got a 0-d array")
            check_dtype(rop, a.dtype)
        desc = _desc("grouped_reduce_scatter", arrays, rop, name=name,
                     options=scaling.options(pre, post))
    except (TypeError, ValueError) as exc:
        error, desc = exc, describe("grouped_reduce_scatter")
        if ctx.size == 1:
            raise
    agree(ctx, desc, error)
    P, r = ctx.size, ctx.rank
    outs: list = [None] * len(arrays)
    by_dtype: dict = {}
    for i, a in enumerate(arrays):
        by_dtype.setdefault(a.dtype, []).append(i)
    for j, idx in enumerate(by_dtype.values()):
        group = [arrays[i] for i in idx]
        parts, lay = _layout(group, _rows, P)
        if P == 1:
            results = [np.array(a, copy=True) for a in group]
            for res in results:
                if pre != 1.0:
                    scaling.scale(res, pre)
        else:
            buf = _pack(ctx, group, parts, sum(lay[0]), group[0].dtype)
            if pre != 1.0:
                scaling.scale(buf, pre)
            _ring(ctx, fingerprint((desc, j)), desc, buf, rop, lay, gather=False)
            results, pos = [], lay[1][r]
            for a, (c, _) in zip(group, parts, strict=True):
                seg_rows = segments(a.shape[0], P)[0][r]
                results.append(np.array(buf[pos:pos + c[r]], copy=True).reshape(
                    (seg_rows,) + a.shape[1:]))
                pos += c[r]
        for i, res in zip(idx, results, strict=True):
            if post != 1.0:
                scaling.scale(res, post)
            outs[i] = res
    return [s.wrap(o) for s, o in zip(staged, outs, strict=True)]


def grouped_reducescatter(tensors, op=Average, process_set=None, prescale_factor=1.0,
                          postscale_factor=1.0, *, name=None):
    """Horovod's spelling and default (op=Average) of ``grouped_reduce_scatter``."""
    return grouped_reduce_scatter(tensors, op, prescale_factor, postscale_factor, process_set,
                                  name=name)
