"""The other collectives: broadcast, allgather, reduce_scatter, barrier, object collectives.

All of them start with the same handshake as allreduce (``collective.safety``), so ranks that
call different collectives, or pass different shapes, dtypes, ops or roots, get a ValueError on
every rank instead of a hang.
"""

from __future__ import annotations

import numpy as np

from .algorithms import ring_reduce_scatter, segments
from .comm import context
from .reduce_ops import Sum, as_op, check_dtype
from .safety import agree, describe
from .tensors import MOVE_DTYPES, stage


def _check_root(ctx, root):
    if not isinstance(root, (int, np.integer)) or not 0 <= root < ctx.size:
        raise ValueError(f"root must be a rank in [0, {ctx.size}), got {root!r}")
    return int(root)


def _bytes(a):
    return a.reshape(-1).view(np.uint8)


def barrier():
    """Wait until every rank has reached this call."""
    ctx = context()
    agree(ctx, describe("barrier"))


def _agreed_broadcast(x, root, inplace):
    """Check and stage a broadcast's input, then agree on the call with every rank (raising on
    every rank when they differ); returns (ctx, root, staged)."""
    ctx = context()
    error = staged = None
    try:
        root = _check_root(ctx, root)
        staged = stage(x, inplace=inplace, what="broadcast_" if inplace else "broadcast",
                       dtypes=MOVE_DTYPES, pool=ctx.pool)
        desc = describe("broadcast", staged.array.shape, staged.array.dtype, root=root)
    except (TypeError, ValueError) as exc:
        error, desc = exc, describe("broadcast")
        if ctx.size == 1:
            raise
    agree(ctx, desc, error)
    return ctx, root, staged


def broadcast_(x, root=0):
    """Overwrite ``x`` on every rank with root's ``x`` (same shape and dtype everywhere);
    returns ``x``."""
    ctx, root, staged = _agreed_broadcast(x, root, inplace=True)
    if ctx.size > 1 and staged.array.size:
        ctx.comm.Bcast(_bytes(staged.array), root=root)
    staged.commit()
    return x


def broadcast(x, root=0):
    """A new array (or Tensor) holding root's ``x``; ``x`` itself is not modified. Every rank
    passes an ``x`` of the same shape and dtype (as in PyTorch)."""
    ctx, root, staged = _agreed_broadcast(x, root, inplace=False)
    arr = staged.array
    out = np.array(arr, copy=True) if ctx.rank == root else np.empty_like(arr)
    if ctx.size > 1 and out.size:
        ctx.comm.Bcast(_bytes(out), root=root)
    return staged.wrap(out)


def allgather(x):
    """Concatenate every rank's ``x`` along axis 0, in rank order (a new array or Tensor).

    First dimensions may differ between ranks; the other dimensions and the dtype must match.
    A 0-d input counts as one row (the result then has shape (P,)).
    """
    ctx = context()
    error = staged = None
    try:
        staged = stage(x, inplace=False, what="allgather", dtypes=MOVE_DTYPES, pool=ctx.pool)
        arr = staged.array if staged.array.ndim else staged.array.reshape(1)
        # the first dimension may differ: describe it as -1
        desc = describe("allgather", (-1,) + arr.shape[1:], arr.dtype)
    except (TypeError, ValueError) as exc:
        error, desc = exc, describe("allgather")
        if ctx.size == 1:
            raise
    agree(ctx, desc, error)
    if ctx.size == 1:
        return staged.wrap(np.array(arr, copy=True))
    rows = np.array(ctx.comm.allgather(int(arr.shape[0])), dtype=np.int64)
    rowbytes = arr.dtype.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64))
    out = np.empty((int(rows.sum()),) + arr.shape[1:], dtype=arr.dtype)
    counts = rows * rowbytes
    displs = np.concatenate(([0], np.cumsum(counts)[:-1]))
    from mpi4py import MPI

    ctx.comm.Allgatherv([_bytes(arr), MPI.BYTE],
                        [_bytes(out), counts.tolist(), displs.tolist(), MPI.BYTE])
    return staged.wrap(out)


def reduce_scatter(x, op=Sum):
    """Reduce ``x`` over all ranks and return this rank's segment of the result (new array or
    Tensor).

    The result is cut along axis 0 like the ring's segments: with R = x.shape[0] rows, rank r
    gets rows [off_r, off_r + R_r) where R_r = R // P + (r < R % P) (the first R % P ranks get
    one row more; a segment may be empty), so the output has shape (R_r, *x.shape[1:]) and the
    concatenation of all ranks' outputs in rank order is ``allreduce(x, op)``. Every rank
    passes the same shape, dtype and op.
    """
    ctx = context()
    error = staged = None
    try:
        op = as_op(op)
        staged = stage(x, inplace=False, what="reduce_scatter", pool=ctx.pool)
        arr = staged.array
        if arr.ndim == 0:
            raise ValueError("reduce_scatter needs an input with at least one dimension, "
                             "got a 0-d array")
        check_dtype(op, arr.dtype)
        desc = describe("reduce_scatter", arr.shape, arr.dtype, op)
    except (TypeError, ValueError) as exc:
        error, desc = exc, describe("reduce_scatter")
        if ctx.size == 1:
            raise
    agree(ctx, desc, error)
    P, r = ctx.size, ctx.rank
    row = int(np.prod(arr.shape[1:], dtype=np.int64))
    if P == 1:
        return staged.wrap(np.array(arr, copy=True))
    work = ctx.pool.get("reduce_scatter", arr.nbytes, arr.dtype)
    np.copyto(work, arr.reshape(-1))
    counts, offsets = ring_reduce_scatter(ctx, work, op.ufunc, row, P if op.average else 0)
    seg = work[offsets[r]:offsets[r] + counts[r]]
    out = np.array(seg, copy=True).reshape((counts[r] // row if row else
                                            segments(arr.shape[0], P)[0][r],) + arr.shape[1:])
    return staged.wrap(out)


def broadcast_object(obj, root=0):
    """Root's picklable ``obj`` on every rank."""
    ctx = context()
    error = None
    try:
        root = _check_root(ctx, root)
    except ValueError as exc:
        error = exc
        if ctx.size == 1:
            raise
    agree(ctx, describe("broadcast_object", root=root), error)
    if ctx.size == 1:
        return obj
    return ctx.comm.bcast(obj, root=root)


def allgather_object(obj):
    """The list of every rank's picklable ``obj``, in rank order."""
    ctx = context()
    agree(ctx, describe("allgather_object"))
    if ctx.size == 1:
        return [obj]
    return ctx.comm.allgather(obj)
