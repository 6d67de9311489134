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
shared-memory slot, the ready round (``ShmPlan``). Calls with a scale factor, a name or a
process set take the validating path (``process_set``: the call runs on the set's Context).

``prescale_factor``/``postscale_factor`` multiply the input before and the result after the
reduction (``collective.scaling``: Horovod's arithmetic). A Tensor that requires grad records
an autograd op (``collective.autograd``). While a rank has joined (``col.join``) the others'
allreduces go on: the joined rank takes part with the neutral element of the op (``shadow``).
"""

from __future__ import annotations

import time

import numpy as np

from . import scaling
from .algorithms import FIXED, SCATTER_MIN, run
from .comm import context
from .compression import Compression
from .context import MISMATCH
from .process_sets import context_of
from .reduce_ops import Average, Max, Min, Product, Sum, as_op, check_dtype, with_average
from .safety import agree, describe, disagreement, fingerprint
from .tensors import needs_grad, stage
from .tuning import choose

ALGORITHMS = ("auto", *FIXED)


def check_algorithm(algorithm) -> str:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown allreduce algorithm {algorithm!r}; choose one of "
                         + ", ".join(ALGORITHMS))
    return algorithm


def allreduce(x, op=Average, algorithm="auto", prescale_factor=1.0, postscale_factor=1.0,
              process_set=None, *, name=None, average=None, compression=None):
    """A new array (or Tensor, on x's device) with ``op`` of ``x`` over all ranks.

    ``x`` is never modified. ``op``: col.Sum, col.Average, col.Max, col.Min, col.Product.
    ``algorithm``: "auto" (cost model, see ``collective.tuning``), "ring",
    "recursive_doubling", "mpi" (the MPI library's own Allreduce), "shared_memory" (ranks on
    one node; elsewhere it means recursive doubling) or "hierarchical" (within each node,
    across nodes, within each node again; see ``collective.algorithms.hierarchical``). The
    result is
    ``postscale_factor * op(prescale_factor * x)``. ``process_set``: the ranks taking part
    (a col.ProcessSet; None: all). ``name``: checked to agree, as Horovod's.
    Every rank must pass the same shape, dtype, op, algorithm, factors and name, else every
    rank raises ValueError naming the ranks and what differed. A Tensor that requires grad
    gives a result whose backward is the same allreduce of the gradient (as Horovod's).
    Horovod's ``average=`` (True: Average, False: Sum) and ``compression=`` (e.g.
    ``col.Compression.fp16``: reduced in the wire dtype, returned in x's) are accepted too.
    """
    if average is not None:
        op = with_average(op, average)
    if compression is not None and compression is not Compression.none:
        wire, state = compression.compress(x)
        return compression.decompress(allreduce(wire, op, algorithm, prescale_factor,
                                                postscale_factor, process_set, name=name), state)
    if type(x) is not np.ndarray and needs_grad(x):
        return _differentiable(x, op, algorithm, prescale_factor, postscale_factor, process_set,
                               name)
    return _allreduce(x, op, algorithm, False, prescale_factor, postscale_factor, process_set,
                      name)


def allreduce_(x, op=Average, algorithm="auto", prescale_factor=1.0, postscale_factor=1.0,
               process_set=None, *, name=None, average=None):
    """In-place ``allreduce``: ``x`` holds the result afterwards; returns ``x``."""
    if average is not None:
        op = with_average(op, average)
    return _allreduce(x, op, algorithm, True, prescale_factor, postscale_factor, process_set,
                      name)


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
        # NOTE(observability): watched by the stall watchdog, recorded on the timeline
        tl = ctx.timeline
        while True:
            xs = self.views[(shm.seq + 1) & 1]  # NOTE: shm.next_slot, inlined (~5% of a call)
            xs[shm.rank][...] = x
            token = ctx.monitor.enter("allreduce")
            try:
                t0 = time.perf_counter() if tl is not None else 0.0
                agreed = shm.round(self.fp, self.nbytes)
                if tl is not None:
                    tl.span(2, "allreduce shared_memory", t0, time.perf_counter(),
                            {"bytes": self.nbytes})
            finally:
                ctx.monitor.exit(token)
            if agreed:
                break
            # returns (and the round is repeated) when ranks that joined take part
            disagreement(ctx.comm, self.desc, None, ranks=ctx.ranks, shadowable=True)
        out = x if inplace else np.empty_like(x)
        ufunc = self.ufunc
        ufunc(xs[0], xs[1], out=out)
        for v in xs[2:]:
            ufunc(out, v, out=out)
        if self.divide:
            np.true_divide(out, self.divide, out=out)
        return out


def _remember(ctx, key, call, x):
    """After a successful numpy call: keep its Call, and a ShmPlan when it fits in a slot and
    goes by the one-round schedule (below ``SCATTER_MIN``)."""
    if len(ctx.calls) > 4096:
        ctx.calls.clear()
    ctx.calls[key] = call
    nb = x.nbytes
    if (call.algorithm == "shared_memory" and ctx.shm is not None
            and 0 < nb <= ctx.shm.capacity and nb < SCATTER_MIN):
        if len(ctx.plans) > 1024:
            ctx.plans.clear()
        ctx.plans[key] = ShmPlan(ctx, call, x.shape, nb, x.dtype)


def _dispatch(ctx, call, buf, src=None):
    while run(ctx, call.fp, buf, call.op, call.algorithm, src) == MISMATCH:
        # returns (and the call is repeated) when ranks that joined take part
        disagreement(ctx.comm, call.desc, None, ranks=ctx.ranks, shadowable=True)


def _allreduce(x, op, algorithm, inplace, pre=1.0, post=1.0, process_set=None, name=None):
    ctx = (context() if process_set is None
           else context_of(process_set, "allreduce_" if inplace else "allreduce"))
    ex = ctx.executor
    if ex is not None and ex.must_route():  # asynchronous calls in flight: wait for the turn
        return ex.blocking("allreduce", _allreduce, x, op, algorithm, inplace, pre, post,
                           process_set, name)
    key = None
    if type(x) is np.ndarray and pre == 1.0 and post == 1.0 and name is None:
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
        pre = scaling.check_factor(pre, "prescale_factor")
        post = scaling.check_factor(post, "postscale_factor")
        staged = stage(x, inplace=inplace, what="allreduce_" if inplace else "allreduce",
                       pool=ctx.pool)
        arr = staged.array
        check_dtype(rop, arr.dtype)
        desc = describe("allreduce", arr.shape, arr.dtype, rop, algorithm, name=name,
                        options=scaling.options(pre, post))
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
        flat = arr.reshape(-1)
        if pre != 1.0:
            scaling.scale(flat, pre)
        _dispatch(ctx, call, flat)
        if post != 1.0:
            scaling.scale(flat, post)
        staged.commit()
    else:
        out = np.empty(arr.shape, arr.dtype)
        flat = out.reshape(-1)
        if pre != 1.0:  # the scaled copy is the buffer reduced in place
            scaling.scale(arr.reshape(-1), pre, out=flat)
            _dispatch(ctx, call, flat)
        else:
            _dispatch(ctx, call, flat, arr.reshape(-1))
        if post != 1.0:
            scaling.scale(flat, post)
    if key is not None:
        _remember(ctx, key, call, x)
    return x if inplace else staged.wrap(out)


def neutral(op, shape, dtype) -> np.ndarray:
    """An array whose reduction with any other by ``op`` leaves the other unchanged: what a
    rank that has joined contributes (zeros for Sum and Average, as in Horovod)."""
    dtype = np.dtype(dtype)
    if op is Max or op is Min:
        info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
        lowest = -np.inf if dtype.kind == "f" else info.min
        highest = np.inf if dtype.kind == "f" else info.max
        return np.full(shape, lowest if op is Max else highest, dtype)
    return np.full(shape, 1 if op is Product else 0, dtype)


def shadow(ctx, desc):
    """Take part, with the neutral element, in the allreduce described by ``desc`` that the
    ranks still active run while this rank has joined (``collective.join``). The
    description is theirs (it was gathered), so the handshake agrees."""
    _, shape, dtype, op, algorithm = desc[:5]
    buf = neutral(op, shape, dtype).reshape(-1)
    resolved = choose(ctx, buf.nbytes) if algorithm == "auto" else algorithm
    _dispatch(ctx, Call(fingerprint(desc), desc, op, resolved), buf)


def _differentiable(x, op, algorithm, pre, post, process_set, name):
    """allreduce of a Tensor that requires grad, recorded for autograd (Horovod's
    HorovodAllreduce). Every rank's loss may depend on the result, the gradients add up:
    Sum and Average: backward is the same allreduce (op, factors) of the gradient, as in
    Horovod. Max and Min: the summed gradient goes to the ranks that hold the extreme value
    (shared equally between ties, as torch.amax); Product: the summed gradient times the
    product of the other ranks' values (NOTE: Horovod reduces the gradient with Max/Min/Product
    itself, which is not their derivative)."""
    from .autograd import constant_like, record

    rop = as_op(op)

    def forward(a, node):
        if rop is Sum or rop is Average:
            return _allreduce(a, rop, algorithm, False, pre, post, process_set, name)
        xs = scaling.scale(np.array(a, copy=True), pre) if pre != 1.0 else np.array(a, copy=True)
        z = _allreduce(xs, rop, algorithm, False, 1.0, 1.0, process_set, name)
        node.saved = (xs, z)
        return scaling.scale(np.array(z, copy=True), post) if post != 1.0 else z

    def backward(g, node):
        if rop is Sum or rop is Average:
            return allreduce(g, rop, algorithm, pre, post, process_set, name=name)
        xs, z = node.saved
        if rop is Product:  # the product of the others, without dividing by a zero
            zero = xs == 0
            nz = np.where(zero, np.ones_like(xs), xs)
            zeros = _allreduce(zero.astype(np.int64), Sum, "auto", False, 1.0, 1.0, process_set)
            pnz = _allreduce(nz, Product, algorithm, False, 1.0, 1.0, process_set)
            with np.errstate(divide="ignore", invalid="ignore"):
                others = np.where(zeros == 0, pnz / nz, np.where(zero & (zeros == 1), pnz, 0))
            local = others
        else:
            hit = xs == z
            ties = _allreduce(hit.astype(np.int64), Sum, "auto", False, 1.0, 1.0, process_set)
            local = hit / np.maximum(ties, 1)
        gsum = allreduce(g, Sum, algorithm, process_set=process_set, name=name)
        return gsum * constant_like(g, local * (pre * post))

    return record("allreduce", x, forward, backward)
