"""Start-up and the communicator basics: ``col.init()``, rank and size, the ranks of this node.

``init()`` starts MPI, creates the one ``Context`` of this process and prepares
``algorithm="auto"`` (loads the cached tuning table, or measures it): at start-up, when every
rank is in the same call and nothing else runs, never later inside a training step.
``context()`` is the one accessor of that Context; every collective starts with it.
"""

from __future__ import annotations

from . import process, tuning
from .context import Context

_context: Context | None = None


def init():
    """Start MPI and collective (idempotent); return the world communicator.

    Works under ``mpiexec`` and as a plain single process (a world of size 1). Every rank
    calls it (any collective call does, the first time).
    """
    return context().world


def context() -> Context:
    """The Context of this process (created, and ``auto`` tuned, on the first call)."""
    global _context
    if _context is None:
        ctx = Context(process.start())
        tuning.prepare(ctx)
        _context = ctx
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
