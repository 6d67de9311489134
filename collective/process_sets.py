"""Process sets (Horovod's): collectives restricted to a subset of the ranks.

    evens = col.ProcessSet([0, 2])          # every rank of the world calls this, in the same order
    col.allreduce(x, process_set=evens)    # only ranks 0 and 2 call this
    evens.rank(), evens.size(), evens.included(), evens.ranks

Creating a set is a collective call of the whole world (as Horovod registers its sets on every
process): the ranks lists are checked to agree (``check_same_everywhere``), then the world's
communicator is split, and each member builds a Context on the set's communicator (its own
duplicates for collectives and DistributedOptimizer, its own shared-memory window on one node,
its own tuning table). So the handshake and the algorithms of a call on a set run on the set's
communicator only: calls on disjoint sets interleave freely, and a set's messages can never
match another set's or the world's.

Ranks are world ranks everywhere in the API, as in Horovod: ``root`` of a broadcast is the
world rank of a member; results (allgather, reduce_scatter segments, alltoall splits) are in
the order of the set's ranks (sorted). A rank that calls a collective on a set it does not
belong to gets a ValueError at once naming its rank and the set's ranks (it cannot wait for
the members: they run the call among themselves and finish it).
"""

from __future__ import annotations

import numbers

from . import tuning
from .comm import context
from .context import Context
from .safety import agree, check_same_everywhere, describe


def _check_ranks(ranks, size):
    try:
        items = list(ranks) if not isinstance(ranks, (str, bytes)) else None
    except TypeError:
        items = None
    if items is None:
        raise TypeError(f"ProcessSet: ranks must be a list of world ranks, got {ranks!r}")
    out = []
    for r in items:
        if isinstance(r, bool) or not isinstance(r, numbers.Integral):
            raise TypeError(f"ProcessSet: ranks must be integers, got {r!r} in {items}")
        if not 0 <= int(r) < size:
            raise ValueError(f"ProcessSet: rank {r} is not a rank of the world (size {size})")
        out.append(int(r))
    if not out:
        raise ValueError("ProcessSet: the set of ranks is empty")
    if len(set(out)) != len(out):
        raise ValueError(f"ProcessSet: ranks repeat in {out}")
    return sorted(out)


class ProcessSet:
    """A registered set of world ranks (see the module docstring). ``ProcessSet(ranks)`` is a
    collective call of every rank of the world, with the same ranks (in any order)."""

    def __init__(self, ranks):
        world = context()
        error = None
        try:
            ranks = _check_ranks(ranks, world.size)
        except (TypeError, ValueError) as exc:
            if world.size == 1:
                raise
            error = exc
        agree(world, describe("ProcessSet"), error)
        check_same_everywhere(world, ranks, "ProcessSet: the ranks")
        for other in world.process_sets.values():
            if other.ranks == ranks:  # the same everywhere: the registries agree
                raise ValueError(f"ProcessSet: a process set of ranks {ranks} exists already "
                                 f"(id {other.process_set_id})")
        from mpi4py import MPI

        member = world.rank in ranks
        # NOTE: Split (collective over the world) keeps the members in world-rank order, so
        # the set's rank i is ranks[i]
        comm = world.comm.Split(0 if member else MPI.UNDEFINED, key=world.rank)
        self.ranks = ranks
        self.process_set_id = 1 + max(world.process_sets, default=0)
        self._context = None
        if member:
            ctx = Context(comm, parent=world, ranks=ranks)
            tuning.prepare(ctx)
            self._context = ctx
        world.process_sets[self.process_set_id] = self

    def size(self) -> int:
        """The number of ranks in the set."""
        return len(self.ranks)

    def rank(self):
        """This rank's rank within the set (0 <= rank < size), or None if not a member."""
        ctx = self._context
        return None if ctx is None else ctx.rank

    def included(self) -> bool:
        """Whether this rank belongs to the set."""
        return self._context is not None

    def invalidate(self):
        """Forget the set (``remove_process_set``, ``col.shutdown``): later calls on it raise
        ValueError; its communication thread ends after the calls submitted."""
        ctx, self._context, self.process_set_id = self._context, None, None
        if ctx is not None and ctx.executor is not None:
            ctx.executor.close()

    def __repr__(self):
        return f"ProcessSet(process_set_id={self.process_set_id}, ranks={self.ranks})"


class _GlobalProcessSet(ProcessSet):
    """Horovod's ``global_process_set``: the world (what ``process_set=None`` means)."""

    def __init__(self):  # noqa: D107 - no registration: the world exists
        self.process_set_id = 0

    @property
    def ranks(self):
        return list(range(context().size))

    @property
    def _context(self):
        return context()

    def __repr__(self):
        return "col.global_process_set"


global_process_set = _GlobalProcessSet()


def context_of(process_set, what: str):
    """The Context a collective ``what`` on ``process_set`` runs on (the world's for None);
    a ValueError naming the ranks when this rank is not in the set."""
    if process_set is None or process_set is global_process_set:
        return context()
    if not isinstance(process_set, ProcessSet):
        raise TypeError(f"{what}: process_set must be a col.ProcessSet or None, got "
                        f"{type(process_set).__name__}")
    ctx = process_set._context
    if ctx is None:
        if process_set.process_set_id is None:
            raise ValueError(f"{what}: {process_set!r} was removed (col.remove_process_set)")
        raise ValueError(f"{what}: rank {context().rank} is not in process set "
                         f"{process_set.process_set_id} (ranks "
                         f"{', '.join(map(str, process_set.ranks))}); only its members may call "
                         "collectives on it")
    return ctx


def add_process_set(process_set) -> ProcessSet:
    """Horovod's spelling: a ProcessSet of ``process_set`` (a list of ranks), or the given
    ProcessSet itself (created, hence registered, already)."""
    if isinstance(process_set, ProcessSet):
        return process_set
    return ProcessSet(process_set)


def remove_process_set(process_set) -> bool:
    """Unregister ``process_set`` (a collective call of the world, as its creation); later
    calls on it raise ValueError. Returns False for the global set or a set removed before."""
    if not isinstance(process_set, ProcessSet):
        raise TypeError(f"remove_process_set: expected a col.ProcessSet, got "
                        f"{type(process_set).__name__}")
    world = context()
    ps_id = process_set.process_set_id
    ctx = process_set._context
    error = None
    if ctx is not None and ctx.executor is not None and ctx.executor.busy:
        error = RuntimeError(f"remove_process_set: {process_set!r} has asynchronous "
                             "collectives in flight; synchronize them first")
    agree(world, describe("remove_process_set", root=ps_id), error)  # every rank, or none
    if ps_id in (0, None) or world.process_sets.get(ps_id) is not process_set:
        return False
    del world.process_sets[ps_id]
    # NOTE: the communicators are not freed (MPI_Comm_free/Win_free are collective; a rank
    # that fails elsewhere must never be left waiting in one); MPI_Finalize releases them
    process_set.invalidate()
    return True
