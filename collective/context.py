"""The one Context: everything collective shares in this process (Horovod's global state).

It owns the communicators (the world, this node's, and private duplicates: one for the
collectives, one for DistributedOptimizer's non-blocking reductions, one for the exit guard,
one for the stall watchdog and the timeline, so their messages can never match a user's
messages or each other's), the shared-memory window of a single-node job, the topology
(``Topology``: nodes, their windows and the node and cross communicators of algorithm
"hierarchical"), the host scratch memory, the tuning table and the caches of the algorithms.
It is created by ``col.init()`` (``collective.comm``), a collective call on every rank
(``Dup`` is collective), and never imports the algorithms that use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import config as _config
from .process import ExitGuard, name_the_rank_in_tracebacks
from .shared_window import SharedWindow, StepRounds
from .stall import Monitor, Watchdog, write_ranks_file

# message tags (one per protocol, so a protocol can never consume another's message)
TAG_HANDSHAKE = 11
TAG_RING = 12
TAG_RD = 13
TAG_BUCKETS = 14  # DistributedOptimizer's rings in flight, on reducer_comm
TAG_CROSS = (15, 16)  # the hierarchical allreduce's two rings in flight across nodes

#: what a handshake returns when the ranks' fingerprints differ (fingerprints are >= 0)
MISMATCH = -1


@dataclass
class TuningTable:
    """``auto``'s cost table (collective.tuning measures it): seconds per allreduce call,
    ``times[algorithm][i]`` at ``sizes[i]`` bytes; ``link_Bps``: the bytes per second through
    a node's link measured with it (0 on one node); ``model``: the fitted cost model's
    parameters (``collective.cost_model.CostModel.to_json``), where measured; ``load``: the
    busiest host's load average per core when it was measured."""
    sizes: list
    times: dict
    key: str = ""
    link_Bps: float = 0.0
    model: dict | None = None
    load: float = 0.0

    def to_json(self) -> dict:
        return {"sizes": self.sizes, "times": self.times, "key": self.key,
                "link_Bps": self.link_Bps, "model": self.model, "load": self.load}

    @classmethod
    def from_json(cls, data: dict) -> TuningTable:
        return cls(list(data["sizes"]), dict(data["times"]), data.get("key", ""),
                   float(data.get("link_Bps", 0.0)), data.get("model"),
                   float(data.get("load", 0.0)))


class HostPool:
    """Grow-only host buffers reused across calls (one per purpose), so that no call allocates
    its working memory: a fresh large allocation per call is what makes MPICH's own Allreduce
    collapse at >= 32 MiB (glibc hands out a fresh mmap each time, which is page-faulted anew)."""

    def __init__(self):
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, purpose: str, nbytes: int, dtype=np.uint8) -> np.ndarray:
        buf = self._bufs.get(purpose)
        if buf is None or buf.nbytes < nbytes:
            # grow geometrically so a sweep of sizes reallocates O(log) times
            size = max(nbytes, 4096, 0 if buf is None else min(2 * buf.nbytes, 1 << 31))
            buf = np.empty(size, dtype=np.uint8)
            self._bufs[purpose] = buf
        return buf[:nbytes].view(np.dtype(dtype))


class Context:
    """This process's collective state; see the module docstring. One per process, plus one
    per process set this rank belongs to (``collective.process_sets``: ``world`` is then the
    set's communicator, ``parent`` the world's Context and ``ranks`` the members' world ranks).
    """

    def __init__(self, world, parent: Context | None = None, ranks: list | None = None):
        from mpi4py import MPI

        cfg = self.config = _config.get()
        self.world = world
        self.rank = world.Get_rank()
        self.size = world.Get_size()
        self.ranks = ranks  # world rank of each rank of ``world``; None: ``world`` is the world
        self.local = world.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = self.local.Get_rank()
        self.local_size = self.local.Get_size()
        self.comm = world.Dup()  # the collectives' messages
        self.reducer_comm = world.Dup()  # DistributedOptimizer's in-flight reductions
        self.exit_guard = None
        if self.size > 1 and parent is None:
            self.exit_guard = ExitGuard(world, cfg.exit_timeout_s, cfg.abort_grace_s)
            name_the_rank_in_tracebacks(self.rank, self.size)
        # one node: handshakes (and small allreduces) through a shared-memory window
        # NOTE: never freed explicitly: MPI_Win_free is collective, and an atexit free would
        # block a rank that is exiting on an exception (before mpi4py's MPI_Abort) while the
        # others wait inside a collective; MPI_Finalize releases the window.
        self.shm: SharedWindow | None = None
        if self.size > 1 and cfg.shm and self.local_size == self.size:
            self.shm = SharedWindow(self.comm, cfg.shm_slot_bytes)
        # the step-check rounds of DistributedOptimizer's shared engines (engines.SharedEngine):
        # one small window over the reducer's communicator, made with the first such engine
        self.step_rounds: StepRounds | None = None
        # the non-blocking engines' one queue of rings in flight, the thread engines' one
        # communication thread (engines.NonBlockingEngine, engines.ReducerThread)
        self.ring_queue = None
        self.reducer_thread = None
        # NOTE(observability): the stall watchdog's Monitor and thread (collective/stall.py),
        # the timeline being recorded (collective/trace.py), and their private communicator
        # NOTE: a process set's Context shares the world's Monitor (one watchdog per process,
        # which watches the world); its calls are not recorded on the timeline
        self.monitor = Monitor() if parent is None else parent.monitor
        self.timeline = None
        self.obs_comm = world.Dup() if self.size > 1 and parent is None else None
        self.watchdog = None
        self.optimizers = 0  # DistributedOptimizers created so far (their step check's number)
        if self.obs_comm is not None and cfg.stall_warn_s > 0:
            self.watchdog = Watchdog(self.obs_comm, self.monitor, cfg.stall_warn_s,
                                     cfg.stall_abort_s, cfg.abort_grace_s,
                                     MPI.Query_thread() == MPI.THREAD_MULTIPLE)
        if self.size > 1 and parent is None and cfg.ranks_file:
            write_ranks_file(world, cfg.ranks_file)
        self.topo = Topology.of(self, cfg) if self.size > 1 else None
        self.pool = HostPool()
        # algorithm="auto": the measured costs (set by tuning.prepare at init) and its answers
        self.tuning: TuningTable | None = None
        self.choices: dict[int, str] = {}  # bytes -> algorithm
        # allreduce's fast paths for calls seen before (see allreduce.py)
        self.calls: dict = {}  # (shape, dtype, op, algorithm) -> Call
        self.plans: dict = {}  # (shape, dtype, op, algorithm) -> ShmPlan
        # the algorithms' precomputed schedules and views
        self.rd_schedule: list | None = None
        self.rd_views: dict = {}  # (payload bytes, dtype) -> views of the fused messages
        self.ring_layouts: dict = {}  # (elements, row) -> (counts, offsets)
        # id(parameter) -> (weak Reducer, weak parameter): who reduces that gradient (one
        # registry per process: a process set's Context shares the world's)
        self.owners: dict = {} if parent is None else parent.owners
        # asynchronous collectives (collective.handles): the Executor of this communicator,
        # created by the first asynchronous call
        self.executor = None
        # the process sets registered so far (world Context only): id -> ProcessSet
        self.process_sets: dict = {}


# -- topology: nodes, their windows, the node and cross communicators -----------------------

@dataclass
class Topology:
    """Where this rank sits among the nodes, and what algorithm "hierarchical" runs on.

    A node is a set of ranks that can share memory (``Split_type(COMM_TYPE_SHARED)``); nodes
    are numbered by their lowest world rank (``node_index`` is ``col.cross_rank()``,
    ``len(node_sizes)`` ``col.cross_size()``). ``shards``: the ranks per node that own a shard
    of a hierarchical allreduce, the smallest node's size (local ranks below it; with uneven
    nodes the others only contribute and receive). ``cross_comm``: the ranks with this rank's
    local rank, in node order (for local ranks below ``shards`` its rank is the node index).
    ``window``: the node's shared-memory window (None on a one-rank node, or with
    COLLECTIVE_SHM=0). ``piece``: bytes of one step of the hierarchical pipeline (the smallest
    window capacity, the same on every rank; with one rank per node, a slot's size), 0 where
    some node of several ranks has no window (then the node's steps are MPI messages).
    ``reducer_node``/``reducer_cross``: the same groups for DistributedOptimizer's reductions
    in flight.
    """
    node_index: int
    node_sizes: tuple
    shards: int
    node_comm: object
    cross_comm: object
    reducer_node: object
    reducer_cross: object
    window: SharedWindow | None
    piece: int
    cache: dict  # the hierarchical algorithm's schedules and layouts, made once

    @property
    def num_nodes(self) -> int:
        return len(self.node_sizes)

    @classmethod
    def of(cls, ctx, cfg) -> Topology:
        """Collective over the world: every rank learns every node's size."""
        world, rank, local = ctx.world, ctx.rank, ctx.local
        # NOTE: the split keys by world rank, so local rank 0 is the node's lowest world rank
        leaders = world.allgather(local.bcast(rank, root=0))
        nodes = sorted(set(leaders))
        node = nodes.index(leaders[rank])
        sizes = tuple(leaders.count(lead) for lead in nodes)
        lr = ctx.local_rank
        node_comm = ctx.comm.Split(node, rank)
        cross = ctx.comm.Split(lr, node)
        reducer_node = ctx.reducer_comm.Split(node, rank)
        reducer_cross = ctx.reducer_comm.Split(lr, node)
        window = None
        if cfg.shm and ctx.local_size > 1:
            window = ctx.shm if ctx.shm is not None else SharedWindow(node_comm,
                                                                      cfg.shm_slot_bytes)
        # the pipeline's step must be the same everywhere: the smallest window; and no
        # pipeline at all where a node of several ranks has no window
        # NOTE: with one rank per node there is no window, but pieces still pay: the cross
        # rings of 2 MiB pieces, two in flight, kept a 1 Gbit/s link busier than one ring
        # of the whole vector (2 x 1 hosts, 16 MiB: 8 MiB messages)
        need = ctx.local_size > 1
        cap = window.capacity if window is not None else (0 if need else 1 << 62)
        piece = world.allreduce(cap, op=_mpi_min())
        if piece >= 1 << 62:
            piece = cfg.shm_slot_bytes // 64 * 64
        return cls(node, sizes, min(sizes), node_comm, cross, reducer_node, reducer_cross,
                   window, piece, {})


def _mpi_min():
    from mpi4py import MPI

    return MPI.MIN
