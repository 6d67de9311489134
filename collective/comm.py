"""Start-up and the communicator basics: ``col.init()``, rank and size, the ranks of this node.

``init()`` starts MPI, creates the one ``Context`` of this process and prepares
``algorithm="auto"`` (loads the cached tuning table, or measures it): at start-up, when every
rank is in the same call and nothing else runs, never later inside a training step.
``context()`` is the one accessor of that Context; every collective starts with it.
"""

from __future__ import annotations

from . import process, trace, tuning
from .context import Context

_context: Context | None = None


def init(comm=None, process_sets=None):
    """Start MPI and collective (idempotent); return the world communicator.

    Works under ``mpiexec`` and as a plain single process (a world of size 1). Every rank
    calls it (any collective call does, the first time). ``comm`` and ``process_sets`` are
    Horovod's arguments: collective runs on MPI.COMM_WORLD (``comm`` may only be that), and a
    ``col.ProcessSet`` registers itself when created (``process_sets`` is accepted as it is).
    """
    ctx = context()
    if comm is not None and comm != process.mpi().COMM_WORLD:
        raise ValueError("collective runs on MPI.COMM_WORLD; for a subset of the ranks create "
                         "a col.ProcessSet(ranks) and pass process_set= to the collectives")
    del process_sets  # registered by ProcessSet() itself
    return ctx.world


def is_initialized() -> bool:
    """Whether ``init()`` (or a first collective call) has run and ``shutdown()`` not since."""
    return _context is not None


def shutdown():
    """Stop collective: the communication threads of the asynchronous collectives end after
    the calls in flight, the process sets are unregistered, and ``is_initialized()`` is False.
    MPI itself stays initialized (it cannot be started twice); the next collective call (or
    ``init()``) starts collective again, with new communicators."""
    global _context
    ctx, _context = _context, None
    if ctx is None:
        return
    if ctx.executor is not None:
        ctx.executor.close()
    for ps in list(ctx.process_sets.values()):
        ps.invalidate()
    ctx.process_sets.clear()


def mpi_threads_supported() -> bool:
    """Whether MPI runs with MPI_THREAD_MULTIPLE (collective asks for it at start-up)."""
    context()
    MPI = process.mpi()
    return MPI.Query_thread() == MPI.THREAD_MULTIPLE


def context() -> Context:
    """The Context of this process (created, and ``auto`` tuned, on the first call)."""
    global _context
    if _context is None:
        ctx = Context(process.start())
        tuning.prepare(ctx)
        _context = ctx
        if ctx.config.timeline:  # NOTE(observability): COLLECTIVE_TIMELINE=path
            trace.autostart(ctx)
    return _context


def rank() -> int:
    """This process's rank in the world, 0 <= rank < size."""
    return context().rank


def size() -> int:
    """The number of ranks in the world."""
    return context().size


def local_rank() -> int:
    """This process's rank among the ranks on the same node."""
    return context().local_rank


def local_size() -> int:
    """The number of ranks on this node."""
    return context().local_size


def cross_rank() -> int:
    """The index of this rank's node: nodes (the ranks that share memory, as for
    ``local_rank``) are numbered 0 .. cross_size() - 1 by their lowest world rank."""
    topo = context().topo
    return 0 if topo is None else topo.node_index


def cross_size() -> int:
    """The number of nodes the world spans."""
    topo = context().topo
    return 1 if topo is None else topo.num_nodes
