"""The other collectives: broadcast, allgather, reduce_scatter, barrier, object collectives.

All of them start with the same handshake as allreduce (``collective.safety``), so ranks that
call different collectives, or pass different shapes, dtypes, ops or roots, get a ValueError on
every rank instead of a hang. Each takes ``process_set=`` (run among the set's ranks, on its
communicator; ``root`` is a world rank, as in Horovod) and ``name=`` (Horovod's; checked to
agree). Broadcast, allgather and reduce_scatter of a Tensor that requires grad record an
autograd op whose backward is Horovod's (see ``collective.differentiable``).
"""

from __future__ import annotations

import numpy as np

from . import scaling
from .algorithms import ring_reduce_scatter, segments
from .allreduce import allreduce
from .comm import context
from .process_sets import context_of
from .reduce_ops import Average, Sum, as_op, check_dtype
from .safety import agree, describe
from .tensors import MOVE_DTYPES, needs_grad, stage


def _context(process_set, what):
    return context() if process_set is None else context_of(process_set, what)


def _check_root(ctx, root):
    """The rank of ``ctx``'s communicator of the world rank ``root``."""
    size = ctx.size if ctx.ranks is None else context().size
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= root < size:
        raise ValueError(f"root must be a rank in [0, {size}), got {root!r}")
    root = int(root)
    if ctx.ranks is None:
        return root
    if root not in ctx.ranks:
        raise ValueError(f"root {root} is not in the process set (ranks "
                         f"{', '.join(map(str, ctx.ranks))})")
    return ctx.ranks.index(root)


def _root(root, root_rank):
    """``root``, or Horovod's spelling ``root_rank=`` when given."""
    if root_rank is None:
        return root
    if root not in (0, root_rank):
        raise TypeError(f"give root= or root_rank=, not both ({root!r} and {root_rank!r})")
    return root_rank


def _bytes(a):
    return a.reshape(-1).view(np.uint8)


def barrier(process_set=None):
    """Wait until every rank (of ``process_set``) has reached this call."""
    ctx = _context(process_set, "barrier")
    ex = ctx.executor
    if ex is not None and ex.must_route():
        return ex.blocking("barrier", barrier, process_set)
    agree(ctx, describe("barrier"))


def _agreed_broadcast(ctx, x, root, inplace, name):
    """Check and stage a broadcast's input, then agree on the call with every rank (raising on
    every rank when they differ); returns (root's rank in ctx's communicator, staged)."""
    error = staged = None
    local_root = root
    try:
        local_root = _check_root(ctx, root)
        staged = stage(x, inplace=inplace, what="broadcast_" if inplace else "broadcast",
                       dtypes=MOVE_DTYPES, pool=ctx.pool)
        desc = describe("broadcast", staged.array.shape, staged.array.dtype, root=root,
                        name=name)
    except (TypeError, ValueError) as exc:
        error, desc = exc, describe("broadcast")
        if ctx.size == 1:
            raise
    agree(ctx, desc, error)
    return local_root, staged


def broadcast_(x, root=0, process_set=None, *, name=None, root_rank=None):
    """Overwrite ``x`` on every rank with root's ``x`` (same shape and dtype everywhere);
    returns ``x``. ``root_rank=``: Horovod's spelling of ``root``."""
    root = _root(root, root_rank)
    ctx = _context(process_set, "broadcast_")
    ex = ctx.executor
    if ex is not None and ex.must_route():
        return ex.blocking("broadcast", broadcast_, x, root, process_set, name=name)
    local_root, staged = _agreed_broadcast(ctx, x, root, True, name)
    if ctx.size > 1 and staged.array.size:
        ctx.comm.Bcast(_bytes(staged.array), root=local_root)
    staged.commit()
    return x


def broadcast(x, root=0, process_set=None, *, name=None, root_rank=None):
    """A new array (or Tensor) holding root's ``x``; ``x`` itself is not modified. Every rank
    passes an ``x`` of the same shape and dtype (as in PyTorch)."""
    root = _root(root, root_rank)
    if type(x) is not np.ndarray and needs_grad(x):
        return _differentiable_broadcast(x, root, process_set, name)
    ctx = _context(process_set, "broadcast")
    ex = ctx.executor
    if ex is not None and ex.must_route():
        return ex.blocking("broadcast", broadcast, x, root, process_set, name=name)
    local_root, staged = _agreed_broadcast(ctx, x, root, False, name)
    arr = staged.array
    out = np.array(arr, copy=True) if ctx.rank == local_root else np.empty_like(arr)
    if ctx.size > 1 and out.size:
        ctx.comm.Bcast(_bytes(out), root=local_root)
    return staged.wrap(out)


def allgather(x, process_set=None, *, name=None):
    """Concatenate every rank's ``x`` along axis 0, in rank order (a new array or Tensor).

    First dimensions may differ between ranks; the other dimensions and the dtype must match.
    A 0-d input counts as one row (the result then has shape (P,)).
    """
    if type(x) is not np.ndarray and needs_grad(x):
        return _differentiable_allgather(x, process_set, name)
    ctx = _context(process_set, "allgather")
    ex = ctx.executor
    if ex is not None and ex.must_route():
        return ex.blocking("allgather", allgather, x, process_set, name=name)
    staged, out, _ = gather_rows(ctx, x, name)
    return staged.wrap(out)


def gather_rows(ctx, x, name=None):
    """allgather's work: (staged input, result, rows of each rank)."""
    error = staged = None
    try:
        staged = stage(x, inplace=False, what="allgather", dtypes=MOVE_DTYPES, pool=ctx.pool)
        arr = staged.array if staged.array.ndim else staged.array.reshape(1)
        # the first dimension may differ: describe it as -1
        desc = describe("allgather", (-1,) + arr.shape[1:], arr.dtype, name=name)
    except (TypeError, ValueError) as exc:
        error, desc = exc, describe("allgather")
        if ctx.size == 1:
            raise
    agree(ctx, desc, error)
    if ctx.size == 1:
        return staged, np.array(arr, copy=True), [int(arr.shape[0])]
    rows = np.array(ctx.comm.allgather(int(arr.shape[0])), dtype=np.int64)
    rowbytes = arr.dtype.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64))
    out = np.empty((int(rows.sum()),) + arr.shape[1:], dtype=arr.dtype)
    counts = rows * rowbytes
    displs = np.concatenate(([0], np.cumsum(counts)[:-1]))
    from mpi4py import MPI

    ctx.comm.Allgatherv([_bytes(arr), MPI.BYTE],
                        [_bytes(out), counts.tolist(), displs.tolist(), MPI.BYTE])
    return staged, out, rows.tolist()


def reduce_scatter(x, op=Sum, prescale_factor=1.0, postscale_factor=1.0, process_set=None, *,
                   name=None):
    """Reduce ``x`` over all ranks and return this rank's segment of the result (new array or
    Tensor).

    The result is cut along axis 0 like the ring's segments: with R = x.shape[0] rows, rank r
    gets rows [off_r, off_r + R_r) where R_r = R // P + (r < R % P) (the first R % P ranks get
    one row more; a segment may be empty), so the output has shape (R_r, *x.shape[1:]) and the
    concatenation of all ranks' outputs in rank order is ``allreduce(x, op)``. Every rank
    passes the same shape, dtype, op and factors (``postscale * op(prescale * x)``, as in
    allreduce).
    """
    if type(x) is not np.ndarray and needs_grad(x):
        return _differentiable_reduce_scatter(x, op, prescale_factor, postscale_factor,
                                              process_set, name)
    ctx = _context(process_set, "reduce_scatter")
    ex = ctx.executor
    if ex is not None and ex.must_route():
        return ex.blocking("reduce_scatter", reduce_scatter, x, op, prescale_factor,
                           postscale_factor, process_set, name=name)
    error = staged = None
    try:
        op = as_op(op)
        pre = scaling.check_factor(prescale_factor, "prescale_factor")
        post = scaling.check_factor(postscale_factor, "postscale_factor")
        staged = stage(x, inplace=False, what="reduce_scatter", pool=ctx.pool)
        arr = staged.array
        if arr.ndim == 0:
            raise ValueError("reduce_scatter needs an input with at least one dimension, "
                             "got a 0-d array")
        check_dtype(op, arr.dtype)
        desc = describe("reduce_scatter", arr.shape, arr.dtype, op, name=name,
                        options=scaling.options(pre, post))
    except (TypeError, ValueError) as exc:
        error, desc = exc, describe("reduce_scatter")
        if ctx.size == 1:
            raise
    agree(ctx, desc, error)
    P, r = ctx.size, ctx.rank
    row = int(np.prod(arr.shape[1:], dtype=np.int64))
    if P == 1:
        out = np.array(arr, copy=True)
        if pre != 1.0:
            scaling.scale(out, pre)
    else:
        work = ctx.pool.get("reduce_scatter", arr.nbytes, arr.dtype)
        if pre != 1.0:
            scaling.scale(arr.reshape(-1), pre, out=work)
        else:
            np.copyto(work, arr.reshape(-1))
        counts, offsets = ring_reduce_scatter(ctx, work, op.ufunc, row, P if op.average else 0)
        seg = work[offsets[r]:offsets[r] + counts[r]]
        out = np.array(seg, copy=True).reshape((counts[r] // row if row else
                                                segments(arr.shape[0], P)[0][r],) + arr.shape[1:])
    if post != 1.0:
        scaling.scale(out, post)
    return staged.wrap(out)


def reducescatter(x, op=Average, process_set=None, prescale_factor=1.0, postscale_factor=1.0, *,
                  name=None):
    """Horovod's spelling and defaults: ``reduce_scatter`` with op=Average by default (as
    ``hvd.reducescatter``; ``reduce_scatter`` keeps PyTorch's default, Sum)."""
    return reduce_scatter(x, op, prescale_factor, postscale_factor, process_set, name=name)


def broadcast_object(obj, root=0, process_set=None, *, name=None, root_rank=None):
    """Root's picklable ``obj`` on every rank."""
    root = _root(root, root_rank)
    ctx = _context(process_set, "broadcast_object")
    ex = ctx.executor
    if ex is not None and ex.must_route():
        return ex.blocking("broadcast_object", broadcast_object, obj, root, process_set,
                           name=name)
    error = None
    local_root = root
    try:
        local_root = _check_root(ctx, root)
    except ValueError as exc:
        error = exc
        if ctx.size == 1:
            raise
    agree(ctx, describe("broadcast_object", root=root, name=name), error)
    if ctx.size == 1:
        return obj
    return ctx.comm.bcast(obj, root=local_root)


def allgather_object(obj, process_set=None, *, name=None):
    """The list of every rank's picklable ``obj``, in rank order."""
    ctx = _context(process_set, "allgather_object")
    ex = ctx.executor
    if ex is not None and ex.must_route():
        return ex.blocking("allgather_object", allgather_object, obj, process_set, name=name)
    agree(ctx, describe("allgather_object", name=name))
    if ctx.size == 1:
        return [obj]
    return ctx.comm.allgather(obj)


# -- autograd: the backward rules of Horovod's torch ops ----------------------------------------

def _differentiable_broadcast(x, root, process_set, name):
    """HorovodBroadcast: the gradient averaged over the ranks goes to root, zeros elsewhere."""
    from .autograd import record

    def forward(a, node):
        return broadcast(a, root, process_set, name=name)

    def backward(g, node):
        reduced = allreduce(g, Average, process_set=process_set)
        return reduced if context().rank == root else reduced * 0.0

    return record("broadcast", x, forward, backward)


def _differentiable_allgather(x, process_set, name):
    """HorovodAllgather: this rank's rows of the gradient averaged over the ranks (Horovod
    averages, since 0.19: ``allreduce(grad, average=True)``)."""
    from .autograd import record

    def forward(a, node):
        ctx = _context(process_set, "allgather")
        _, out, rows = gather_rows(ctx, a, name)
        start = int(sum(rows[:ctx.rank]))
        node.saved = (start, rows[ctx.rank], a.ndim == 0)
        return out

    def backward(g, node):
        start, n, scalar = node.saved
        reduced = allreduce(g, Average, process_set=process_set)
        return reduced[start] if scalar else reduced[start:start + n]

    return record("allgather", x, forward, backward)


def _differentiable_reduce_scatter(x, op, pre, post, process_set, name):
    """HorovodReducescatter: the allgather of the gradient, times P for Sum and times the
    factors (Horovod's rule; for Average no division)."""
    from .autograd import record

    rop = as_op(op)
    if rop is not Sum and rop is not Average:
        raise TypeError(f"reduce_scatter with op={rop!r} of a Tensor that requires grad: only "
                        "col.Sum and col.Average are differentiable (as in Horovod)")

    def forward(a, node):
        return reduce_scatter(a, rop, pre, post, process_set, name=name)

    def backward(g, node):
        factor = pre * post * (_context(process_set, "reduce_scatter").size if rop is Sum else 1)
        return allgather(g * factor if factor != 1.0 else g, process_set)

    return record("reduce_scatter", x, forward, backward)
