"""allreduce / allreduce_: validate, choose, dispatch.

A call: stage the input into a contiguous numpy buffer (``tensors``), describe and fingerprint
the call (``safety``), resolve ``algorithm="auto"`` from the tuning table (``tuning``, measured
at start-up), then ``algorithms.run``: the handshake (through shared memory on one node, where
the small-message "shared_memory" allreduce carries its data in the same round; across nodes a
butterfly of MPI messages, which recursive doubling fuses with its data) and the algorithm, in
place on the buffer. Out-of-place calls work on a fresh copy, so their input is never modified.
Single process (P = 1): a copy (Sum/Max/Min/Average of one rank are the identity), no MPI.

Repeated calls with the same arguments skip validation (small messages are dominated by Python
overhead): the Context remembers each valid numpy call (``Call``) and, for calls that fit in one
shared-memory slot, the ready round (``ShmPlan``).
"""

from __future__ import annotations

import numpy as np

from .algorithms import FIXED, run
from .comm import context
from .context import MISMATCH
from .reduce_ops import Average, as_op, check_dtype
from .safety import agree, describe, disagreement, fingerprint
from .tensors import stage
from .tuning import choose

ALGORITHMS = ("auto", *FIXED)


def check_algorithm(algorithm) -> str:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown allreduce algorithm {algorithm!r}; choose one of "
                         + ", ".join(ALGORITHMS))
    return algorithm


def allreduce(x, op=Average, algorithm="auto"):
    """A new array (or Tensor, on x's device) with ``op`` of ``x`` over all ranks.

    ``x`` is never modified. ``op``: col.Sum, col.Average, col.Max, col.Min. ``algorithm``:
    "auto" (cost model, see ``collective.tuning``), "ring", "recursive_doubling", "mpi" (the
    MPI library's own Allreduce), "shared_memory" (ranks on one node; elsewhere it means
    recursive doubling) or "hierarchical" (within each node, across nodes, within each node
    again; see ``collective.algorithms.hierarchical``).
    Every rank must pass the same shape, dtype, op and algorithm, else every rank raises
    ValueError naming the ranks and what differed.
    """
    return _allreduce(x, op, algorithm, inplace=False)


def allreduce_(x, op=Average, algorithm="auto"):
    """In-place ``allreduce``: ``x`` holds the result afterwards; returns ``x``."""
    return _allreduce(x, op, algorithm, inplace=True)


class Call:
    """A validated call: its fingerprint, description, op and resolved algorithm."""

    __slots__ = ("fp", "desc", "op", "algorithm")

    def __init__(self, fp, desc, op, algorithm):
        self.fp, self.desc, self.op, self.algorithm = fp, desc, op, algorithm


class ShmPlan:
    """A shared-memory round with everything precomputed: the slot views of both slots."""

    __slots__ = ("fp", "desc", "ufunc", "views", "nbytes", "divide")

    def __init__(self, ctx, call, shape, nbytes, dtype):
        self.fp, self.desc, self.ufunc = call.fp, call.desc, call.op.ufunc
        self.views = tuple([v.reshape(shape) for v in ctx.shm.views(slot, nbytes, dtype)]
                           for slot in (0, 1))
        self.nbytes = nbytes
        self.divide = ctx.size if call.op.average else 0

    def run(self, ctx, x, inplace):
        """One round (see algorithms.shared_memory.shm_allreduce), for one slot's worth."""
        shm = ctx.shm
        xs = self.views[(shm.seq + 1) & 1]  # NOTE: shm.next_slot, inlined (~5% of a 4 KiB call)
        xs[shm.rank][...] = x
        if not shm.round(self.fp, self.nbytes):
            disagreement(ctx.comm, self.desc, None)
        out = x if inplace else np.empty_like(x)
        ufunc = self.ufunc
        ufunc(xs[0], xs[1], out=out)
        for v in xs[2:]:
            ufunc(out, v, out=out)
        if self.divide:
            np.true_divide(out, self.divide, out=out)
        return out


def _remember(ctx, key, call, x):
    """After a successful numpy call: keep its Call, and a ShmPlan when it fits in a slot."""
    if len(ctx.calls) > 4096:
        ctx.calls.clear()
    ctx.calls[key] = call
    nb = x.nbytes
    if (call.algorithm == "shared_memory" and ctx.shm is not None
            and 0 < nb <= ctx.shm.capacity):
        if len(ctx.plans) > 1024:
            ctx.plans.clear()
        ctx.plans[key] = ShmPlan(ctx, call, x.shape, nb, x.dtype)


def _dispatch(ctx, call, buf, src=None):
    if run(ctx, call.fp, buf, call.op, call.algorithm, src) == MISMATCH:
        disagreement(ctx.comm, call.desc, None)


def _allreduce(x, op, algorithm, inplace):
    ctx = context()
    key = None
    if type(x) is np.ndarray:
        flags = x.flags
        if flags.c_contiguous and (flags.writeable or not inplace):
            key = (x.shape, x.dtype, op, algorithm)
            plan = ctx.plans.get(key)
            if plan is not None:
                return plan.run(ctx, x, inplace)
            call = ctx.calls.get(key)
            if call is not None:
                if inplace:
                    _dispatch(ctx, call, x.reshape(-1))
                    return x
                out = np.empty_like(x)
                _dispatch(ctx, call, out.reshape(-1), x.reshape(-1))
                return out
    # validate
    try:
        rop = as_op(op)
        check_algorithm(algorithm)
        staged = stage(x, inplace=inplace, what="allreduce_" if inplace else "allreduce",
                       pool=ctx.pool)
        arr = staged.array
        check_dtype(rop, arr.dtype)
        desc = describe("allreduce", arr.shape, arr.dtype, rop, algorithm)
    except (TypeError, ValueError) as exc:
        if ctx.size == 1:
            raise
        agree(ctx, describe("allreduce"), exc)  # the others learn of it, then it is raised
    # choose
    resolved = algorithm
    if algorithm == "auto" and ctx.size > 1:
        resolved = choose(ctx, arr.nbytes)
    call = Call(fingerprint(desc), desc, rop, resolved)
    # dispatch
    if inplace:
        _dispatch(ctx, call, arr.reshape(-1))
        staged.commit()
    else:
        out = np.empty(arr.shape, arr.dtype)
        _dispatch(ctx, call, out.reshape(-1), arr.reshape(-1))
    if key is not None:
        _remember(ctx, key, call, x)
    return x if inplace else staged.wrap(out)
