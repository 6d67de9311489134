"""alltoall (Horovod's): every rank sends a slice of its rows to every rank.

    out = col.alltoall(x)                          # x's rows split evenly over the ranks
    out, received = col.alltoall(x, splits=[2, 1]) # 2 rows to rank 0, 1 row to rank 1

Rank r sends rows [sum(splits[:q]), sum(splits[:q+1])) of ``x`` to rank q; the output is the
rows received from ranks 0, 1, ... concatenated (``received[q]`` rows from rank q). As in
Horovod's PyTorch API the output alone is returned when ``splits`` is None (then the first
dimension must be divisible by the number of ranks), ``(output, received_splits)`` when splits
are given (int32; a CPU Tensor when ``x`` is a Tensor, as Horovod's). ``splits``: a list,
numpy array or Tensor of P non-negative integers summing to ``x.shape[0]`` (nothing is
silently dropped). First dimensions
may differ between ranks; the other dimensions and the dtype must agree, and every rank must
give splits or none (checked by the handshake, raising on every rank). Data travels as bytes
(MPI_Alltoallv), after one MPI_Alltoall of the row counts.
"""

from __future__ import annotations

import numbers

import numpy as np

from .comm import context
from .process_sets import context_of
from .safety import agree, describe
from .tensors import MOVE_DTYPES, host_tensor, is_tensor, needs_grad, stage, to_numpy


def _splits(splits, rows, P):
    """The rows to send to each rank, checked (a ValueError/TypeError naming them)."""
    if splits is None:
        if rows % P:
            raise ValueError(f"alltoall without splits divides the first dimension evenly: "
                             f"{rows} rows cannot be split over {P} ranks (pass splits=)")
        return np.full(P, rows // P, np.int64)
    if is_tensor(splits):
        splits = to_numpy(splits)
    if isinstance(splits, np.ndarray):
        if splits.dtype.kind not in "iu":
            raise ValueError(f"alltoall: splits must be integers, got dtype {splits.dtype}")
        values = splits.reshape(-1).tolist() if splits.ndim <= 1 else None
    else:
        values = list(splits)
        if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in values):
            raise ValueError(f"alltoall: splits must be integers, got {values}")
    if values is None or len(values) != P:
        raise ValueError(f"alltoall: splits must hold one entry per rank ({P}), got "
                         f"{np.shape(splits) if values is None else len(values)} entries")
    out = np.array(values, np.int64)
    if (out < 0).any() or int(out.sum()) != rows:
        raise ValueError(f"alltoall: splits {out.tolist()} must be non-negative and sum to the "
                         f"first dimension of the input ({rows})")
    return out


def alltoall(x, splits=None, process_set=None, *, name=None):
    """See the module docstring. A Tensor that requires grad records an autograd op whose
    backward is the alltoall of the gradient with the received splits (Horovod's)."""
    if type(x) is not np.ndarray and needs_grad(x):
        return _differentiable(x, splits, process_set, name)
    ctx = context() if process_set is None else context_of(process_set, "alltoall")
    ex = ctx.executor
    if ex is not None and ex.must_route():
        return ex.blocking("alltoall", alltoall, x, splits, process_set, name=name)
    staged, out, received = exchange(ctx, x, splits, name)
    if splits is None:
        return staged.wrap(out)
    received = received.astype(np.int32)
    return staged.wrap(out), (host_tensor(received) if is_tensor(x) else received)


def exchange(ctx, x, splits, name=None):
    """alltoall's work: (staged input, output array, rows received from each rank)."""
    error = staged = None
    try:
        staged = stage(x, inplace=False, what="alltoall", dtypes=MOVE_DTYPES, pool=ctx.pool)
        arr = staged.array
        if arr.ndim == 0:
            raise ValueError("alltoall needs an input with at least one dimension, got a 0-d "
                             "array")
        sends = _splits(splits, int(arr.shape[0]), ctx.size)
        desc = describe("alltoall", (-1,) + arr.shape[1:], arr.dtype, name=name,
                        options=(("splits", "even" if splits is None else "given"),))
    except (TypeError, ValueError) as exc:
        error, desc = exc, describe("alltoall")
        if ctx.size == 1:
            raise
    agree(ctx, desc, error)
    if ctx.size == 1:
        return staged, np.array(arr, copy=True), sends
    from mpi4py import MPI

    received = np.empty(ctx.size, np.int64)
    ctx.comm.Alltoall(sends, received)
    rowbytes = arr.dtype.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64))
    out = np.empty((int(received.sum()),) + arr.shape[1:], arr.dtype)
    scounts, rcounts = sends * rowbytes, received * rowbytes
    sdispls = np.concatenate(([0], np.cumsum(scounts)[:-1]))
    rdispls = np.concatenate(([0], np.cumsum(rcounts)[:-1]))
    ctx.comm.Alltoallv([arr.reshape(-1).view(np.uint8), (scounts.tolist(), sdispls.tolist()),
                        MPI.BYTE],
                       [out.reshape(-1).view(np.uint8), (rcounts.tolist(), rdispls.tolist()),
                        MPI.BYTE])
    return staged, out, received


def _differentiable(x, splits, process_set, name):
    from .autograd import record

    received = []

    def forward(a, node):
        ctx = context() if process_set is None else context_of(process_set, "alltoall")
        _, out, counts = exchange(ctx, a, splits, name)
        node.saved = counts
        received.append(counts)
        return out

    def backward(g, node):
        grad, _ = alltoall(g, splits=node.saved, process_set=process_set)
        return grad

    y = record("alltoall", x, forward, backward)
    return y if splits is None else (y, host_tensor(received[0].astype(np.int32)))
