"""The state every collective shares: a private communicator, this rank's place, message tags.

Collectives run on a duplicate of the world communicator, so their point-to-point messages can
never match a user's messages on ``MPI.COMM_WORLD``. Created on first use (a collective call on
every rank, as ``Dup`` is collective).
"""

from __future__ import annotations

from . import comm as _comm

# message tags (one per protocol, so a protocol can never consume another's message)
TAG_HANDSHAKE = 11
TAG_RING = 12
TAG_RD = 13

_ctx = None


class Context:
    __slots__ = ("comm", "rank", "size", "cache")

    def __init__(self, world):
        self.comm = world.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.cache: dict = {}  # schedules, tuning, ...


def get() -> Context:
    global _ctx
    if _ctx is None:
        _ctx = Context(_comm.init())
    return _ctx
