"""The asynchronous collectives (Horovod's ``*_async``): each returns a handle at once.

    h = col.allreduce_async(x, op=col.Sum)
    y = col.synchronize(h)                  # == col.allreduce(x, op=col.Sum), bitwise

Every one takes the arguments of its blocking call and runs that very call on the
communicator's thread (``collective.handles``), in submission order. The input is staged here,
on the caller's thread (a CUDA Tensor is copied to host memory now; a CPU Tensor or a numpy
array is used as it is, so it must not be modified before ``synchronize``), and the result is
turned back into the caller's kind of object by ``synchronize``. An invalid input (dtype,
read-only buffer, ...) is reported by ``synchronize`` on every rank, like a mismatch: the
other ranks must learn of it in the call's handshake. These calls are not differentiable (as
in Horovod).
"""

from __future__ import annotations

from .allreduce import allreduce, allreduce_
from .alltoall import alltoall
from .collectives import allgather, broadcast, broadcast_, reduce_scatter
from .comm import context
from .context import HostPool
from .grouped import (
    grouped_allgather,
    grouped_allreduce,
    grouped_allreduce_,
    grouped_reduce_scatter,
)
from .handles import executor_of
from .process_sets import context_of
from .reduce_ops import Average, Sum, with_average
from .safety import agree, describe
from .tensors import MOVE_DTYPES, REDUCE_DTYPES, host_tensor, is_tensor, stage


def _submit(what, collective, x, process_set, name, inplace, dtypes, job, many=False):
    """Stage ``x`` (a list when ``many``) and queue ``job(staged arrays)``."""
    ctx = context() if process_set is None else context_of(process_set, what)
    ex = executor_of(ctx)
    try:
        if many:
            if not isinstance(x, (list, tuple)):
                raise TypeError(f"{what}: expected a list of arrays or Tensors, got "
                                f"{type(x).__name__}")
            pool = HostPool()
            staged = [stage(t, inplace=inplace, what=what, pool=pool, dtypes=dtypes,
                            pool_key=str(i)) for i, t in enumerate(x)]
            arrays = [s.array for s in staged]
        else:
            staged = stage(x, inplace=inplace, what=what, pool=HostPool(), dtypes=dtypes)
            arrays = staged.array
    except (TypeError, ValueError) as exc:
        if ctx.size == 1:
            raise
        # the others learn of it in the call's handshake, on the thread, in order
        return ex.submit(what, agree, (ctx, describe(collective), exc), name=name, depth=3)
    if many:
        if inplace:
            def finish(_):
                for s in staged:
                    s.commit()
                return x
        else:
            def finish(results):
                return [s.wrap(r) for s, r in zip(staged, results, strict=True)]
    elif inplace:
        def finish(_):
            staged.commit()
            return x
    else:
        finish = staged.wrap
    return ex.submit(what, job, (arrays,), finish, name, depth=3)


def allreduce_async(x, op=Average, algorithm="auto", prescale_factor=1.0, postscale_factor=1.0,
                    process_set=None, *, name=None, average=None):
    """``allreduce`` started in the background; ``col.synchronize(h)`` returns its result."""
    op = with_average(op, average)
    return _submit("allreduce_async", "allreduce", x, process_set, name, False, REDUCE_DTYPES,
                   lambda a: allreduce(a, op, algorithm, prescale_factor, postscale_factor,
                                       process_set, name=name))


def allreduce_async_(x, op=Average, algorithm="auto", prescale_factor=1.0, postscale_factor=1.0,
                     process_set=None, *, name=None, average=None):
    """In-place ``allreduce_`` in the background; ``synchronize`` returns ``x``."""
    op = with_average(op, average)
    return _submit("allreduce_async_", "allreduce", x, process_set, name, True, REDUCE_DTYPES,
                   lambda a: allreduce_(a, op, algorithm, prescale_factor, postscale_factor,
                                        process_set, name=name))


def allgather_async(x, process_set=None, *, name=None):
    return _submit("allgather_async", "allgather", x, process_set, name, False, MOVE_DTYPES,
                   lambda a: allgather(a, process_set, name=name))


def broadcast_async(x, root=0, process_set=None, *, name=None, root_rank=None):
    root = root if root_rank is None else root_rank
    return _submit("broadcast_async", "broadcast", x, process_set, name, False, MOVE_DTYPES,
                   lambda a: broadcast(a, root, process_set, name=name))


def broadcast_async_(x, root=0, process_set=None, *, name=None, root_rank=None):
    root = root if root_rank is None else root_rank
    return _submit("broadcast_async_", "broadcast", x, process_set, name, True, MOVE_DTYPES,
                   lambda a: broadcast_(a, root, process_set, name=name))


def reduce_scatter_async(x, op=Sum, prescale_factor=1.0, postscale_factor=1.0, process_set=None,
                         *, name=None):
    return _submit("reduce_scatter_async", "reduce_scatter", x, process_set, name, False,
                   REDUCE_DTYPES, lambda a: reduce_scatter(a, op, prescale_factor,
                                                           postscale_factor, process_set,
                                                           name=name))


def reducescatter_async(x, op=Average, process_set=None, prescale_factor=1.0,
                        postscale_factor=1.0, *, name=None):
    """Horovod's spelling and default (op=Average) of ``reduce_scatter_async``."""
    return reduce_scatter_async(x, op, prescale_factor, postscale_factor, process_set, name=name)


def alltoall_async(x, splits=None, process_set=None, *, name=None):
    """``alltoall`` in the background: ``synchronize`` returns the output, or (output,
    received_splits) when splits were given."""
    ctx = context() if process_set is None else context_of(process_set, "alltoall_async")
    ex = executor_of(ctx)
    try:
        staged = stage(x, inplace=False, what="alltoall_async", pool=HostPool(),
                       dtypes=MOVE_DTYPES)
    except (TypeError, ValueError) as exc:
        if ctx.size == 1:
            raise
        return ex.submit("alltoall_async", agree, (ctx, describe("alltoall"), exc), name=name)
    tensor = is_tensor(x)

    def finish(result):
        if splits is None:
            return staged.wrap(result)
        out, received = result
        return staged.wrap(out), (host_tensor(received) if tensor else received)

    return ex.submit("alltoall_async", lambda a: alltoall(a, splits, process_set, name=name),
                     (staged.array,), finish, name)


def grouped_allreduce_async(tensors, op=Average, algorithm="auto", prescale_factor=1.0,
                            postscale_factor=1.0, process_set=None, *, name=None, average=None):
    op = with_average(op, average)
    return _submit("grouped_allreduce_async", "grouped_allreduce", tensors, process_set, name,
                   False, REDUCE_DTYPES,
                   lambda arrays: grouped_allreduce(arrays, op, algorithm, prescale_factor,
                                                    postscale_factor, process_set, name=name),
                   many=True)


def grouped_allreduce_async_(tensors, op=Average, algorithm="auto", prescale_factor=1.0,
                             postscale_factor=1.0, process_set=None, *, name=None, average=None):
    op = with_average(op, average)
    return _submit("grouped_allreduce_async_", "grouped_allreduce", tensors, process_set, name,
                   True, REDUCE_DTYPES,
                   lambda arrays: grouped_allreduce_(arrays, op, algorithm, prescale_factor,
                                                     postscale_factor, process_set, name=name),
                   many=True)


def grouped_allgather_async(tensors, process_set=None, *, name=None):
    return _submit("grouped_allgather_async", "grouped_allgather", tensors, process_set, name,
                   False, MOVE_DTYPES,
                   lambda arrays: grouped_allgather(arrays, process_set, name=name), many=True)


def grouped_reduce_scatter_async(tensors, op=Sum, prescale_factor=1.0, postscale_factor=1.0,
                                 process_set=None, *, name=None):
    return _submit("grouped_reduce_scatter_async", "grouped_reduce_scatter", tensors,
                   process_set, name, False, REDUCE_DTYPES,
                   lambda arrays: grouped_reduce_scatter(arrays, op, prescale_factor,
                                                         postscale_factor, process_set,
                                                         name=name), many=True)


def grouped_reducescatter_async(tensors, op=Average, process_set=None, prescale_factor=1.0,
                                postscale_factor=1.0, *, name=None):
    """Horovod's spelling and default (op=Average) of ``grouped_reduce_scatter_async``."""
    return grouped_reduce_scatter_async(tensors, op, prescale_factor, postscale_factor,
                                        process_set, name=name)
