"""The state every collective shares: a private communicator, this rank's place, message tags.

Collectives run on a duplicate of the world communicator, so their point-to-point messages can
never match a user's messages on ``MPI.COMM_WORLD``. Created on first use (a collective call on
every rank, as ``Dup`` is collective).
"""

from __future__ import annotations

import os

from . import comm as _comm

# message tags (one per protocol, so a protocol can never consume another's message)
TAG_HANDSHAKE = 11
TAG_RING = 12
TAG_RD = 13

_ctx = None


class Context:
    __slots__ = ("comm", "rank", "size", "cache", "shm")

    def __init__(self, world):
        self.comm = world.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.cache: dict = {}  # schedules, tuning, ...
        # one node: handshakes (and small allreduces) through a shared-memory window
        self.shm = None
        if self.size > 1 and os.environ.get("COLLECTIVE_SHM", "1") != "0":
            from mpi4py import MPI

            node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
            single_node = node.Get_size() == self.size
            node.Free()
            if single_node:
                from .algorithms.shared_memory import SharedArena

                # NOTE: never freed explicitly: MPI_Win_free is collective, and an atexit
                # free would block a rank that is exiting on an exception (before mpi4py's
                # MPI_Abort) while the others wait inside a collective; MPI_Finalize
                # releases the window.
                self.shm = SharedArena(self.comm)


def get() -> Context:
    global _ctx
    if _ctx is None:
        _ctx = Context(_comm.init())
    return _ctx
