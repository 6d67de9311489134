"""Uneven inputs: ``col.join`` (Horovod's ``hvd.join``, PyTorch's ``Join``).

    with col.join(opt):                 # every rank enters together
        for x, y in loader:             # ranks may have different numbers of batches
            opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    # leaves when every rank is out of batches; replicas agree again

    last = col.join()                   # Horovod's: block until all ranks joined

A rank that has joined keeps answering the others: in every handshake it publishes ``JOIN``
(``collective.safety``) instead of a call's description. The active ranks' handshake then
fails, every rank enters the one allgather of descriptions, and when the joined ranks are the
only difference and the call is one a joined rank can take part in, the joined ranks run it
too, with neutral inputs, and the active ranks repeat their handshake, which now agrees:

- ``allreduce`` / ``grouped_allreduce``: the joined ranks contribute the op's neutral element
  (zeros for Sum and Average: as in Horovod, an Average still divides by the full size);
- a DistributedOptimizer step under ``with col.join(opt)``: each step of the active ranks
  starts with a handshake on the step (the optimizer's ``join_step``: one shared-memory round
  on one node, about a microsecond, when nobody has joined); the joined ranks answer it and
  reduce every bucket with zero gradients in the same order, and the active ranks average
  their gradients over the ranks that contributed (the count comes out of the same
  handshake), so training equals one process training on the union of the batches;
- anything else (allgather, broadcast, barrier ...) raises RuntimeError on the active ranks
  naming the joined ranks, as Horovod does; the joined ranks keep waiting.

When every rank has joined, every handshake agrees on ``JOIN``; the ranks then learn which one
joined last: the one that answered the fewest calls of the others while joined (ties: the
highest rank), the same on every rank. ``with col.join(opt)`` then copies the parameters and the
optimizer state of that rank to the others (the joined ranks did not step), so the replicas
agree again. Costs nothing while nobody is inside a join but the step handshake; no hang with
different numbers of batches.

NOTE: while a rank is in a bare ``col.join()``, the others must not run a DistributedOptimizer
step (its non-blocking bucket rings carry no handshake a joined rank could answer): use
``with col.join(opt)`` for training loops.
"""

from __future__ import annotations

import numbers

from .algorithms import handshake
from .allreduce import shadow as shadow_allreduce
from .comm import context
from .context import MISMATCH
from .grouped import shadow as shadow_grouped_allreduce
from .process_sets import context_of
from .safety import JOIN, STEP, describe, exchange, fingerprint

_SHADOWS = {"allreduce": shadow_allreduce, "grouped_allreduce": shadow_grouped_allreduce}


def serve(ctx, step=None, step_desc=None) -> int:
    """This rank has joined: answer the others' calls until every rank has joined; returns
    the world rank of the rank that joined last. ``step()``: takes part in a
    DistributedOptimizer step described by ``step_desc`` (the optimizer's ``join_shadow``)."""
    if ctx.size == 1:
        return ctx.rank if ctx.ranks is None else ctx.ranks[0]
    desc = describe(JOIN, options=None if step_desc is None else (step_desc,))
    fp = fingerprint(desc)
    served = 0
    while handshake(ctx, fp) == MISMATCH:
        infos = exchange(ctx.comm, desc)
        served += 1
        active = [(d, e) for d, e, _ in infos if not (d and d[0] == JOIN)]
        if not active:  # every rank has joined (some with another optimizer, or none)
            break
        calls = {d for d, _ in active}
        if len(calls) != 1 or any(e is not None for _, e in active):
            continue  # the active ranks disagree among themselves: they raise, we wait
        call = next(iter(calls))
        if call[0] == STEP:
            # the others take us for a part of their step only if we listed it (safety)
            if call == step_desc and all(d[0] != JOIN or d == desc for d, _, _ in infos):
                step()
        elif call[0] in _SHADOWS:
            _SHADOWS[call[0]](ctx, call)
        # else: the active ranks raise RuntimeError (see safety.disagreement); we wait
    counts = ctx.comm.allgather(served)
    last = max(range(ctx.size), key=lambda r: (-counts[r], r))
    return last if ctx.ranks is None else ctx.ranks[last]


def join(optimizer=None, process_set=None):
    """Without ``optimizer`` (Horovod's ``hvd.join()``; an int, Horovod's device argument,
    counts as none): this rank is out of work; answer the others' allreduces until every rank
    has called ``join()``, and return the world rank of the last to join. With a
    DistributedOptimizer: the context manager ``optimizer.join()`` (see the module
    docstring); after the block its ``last_rank`` holds that rank."""
    if isinstance(optimizer, numbers.Integral):
        optimizer = None  # Horovod's hvd.join(device): collective works in host memory
    if optimizer is not None:
        if process_set is not None:
            raise TypeError("join(optimizer): the optimizer's own process set is used; do "
                            "not pass process_set=")
        return optimizer.join()
    ctx = context() if process_set is None else context_of(process_set, "join")
    return _serve_in_turn(ctx)


def _serve_in_turn(ctx, step=None, step_desc=None) -> int:
    ex = ctx.executor
    if ex is not None and ex.must_route():  # the asynchronous calls in flight go first
        return ex.blocking("join", serve, ctx, step, step_desc)
    return serve(ctx, step, step_desc)


class Joined:
    """What ``with optimizer.join() as j`` gives: ``j.last_rank`` after the block."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.last_rank = None

    def __enter__(self):
        self.optimizer.join_begin()
        return self

    def __exit__(self, etype, exc, tb):
        if etype is not None:  # an error in the loop: no shadowing, it propagates
            self.optimizer.join_end(None)
            return False
        opt = self.optimizer
        self.last_rank = _serve_in_turn(opt.join_context, opt.join_shadow, opt.join_step)
        self.optimizer.join_end(self.last_rank)
        return False
