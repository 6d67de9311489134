"""The shared-memory window of the ranks on one node: rounds of publish-and-wait.

Every rank owns a segment of an MPI-3 shared window (``Win.Allocate_shared``): a control word
(a round sequence number) and two slots (header + payload of up to ``capacity`` bytes). A round
k: each rank writes its header (fingerprint, payload size) and payload into slot k % 2, then
publishes k in its control word, then waits until every other rank has published k. Then every
rank can read every rank's header and payload directly. Two slots are enough: a rank can only
start round k + 2 (overwriting slot k % 2) after every rank has published k + 1, i.e. after
every rank has finished reading round k.

Waiting spins on the control words and yields the CPU (``os.sched_yield``) after a few polls
(``polls_before_yield``: none when the node has more ranks than cores), so oversubscribed
ranks let the rank they wait for run. Memory ordering:
``Win.Sync`` (a memory barrier) between writing data and publishing, and between seeing a peer's
control word and reading its data. The protocols on top (the handshake, the "shared_memory"
allreduce) are in ``algorithms/shared_memory.py``.
"""

from __future__ import annotations

import os

import numpy as np

_CTRL = 64  # control block: one cache line
_HDR = 64  # slot header: fingerprint, payload bytes, padding to a cache line


def polls_before_yield(ranks: int) -> int:
    """How many times a rank waiting in a window polls before it starts yielding the CPU
    between polls: 64 when each of the node's ``ranks`` can have a core of this process's CPU
    set, else 0.

    NOTE: with more ranks than cores the rank waited for is often the one not running, and
    every poll before the yield delays it: yielding at once measured 17 -> 8 us per round and
    54 -> 38 us per 4 KiB allreduce at P = 3 on 2 cores (MPI's own: 36 us), 58 -> 47 us at
    P = 4 (MPI's own: 54 us); at P = 2 on 2 cores either is ~2 us per round."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 64 if ranks <= cores else 0


class SharedWindow:
    def __init__(self, comm, slot_bytes: int):
        from mpi4py import MPI

        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        # at most ~16 MiB of shared memory in all (container /dev/shm is often 64 MiB)
        cap = min(slot_bytes, max(64 << 10, (8 << 20) // self.size))
        self.capacity = cap = cap // 64 * 64
        self.slot_bytes = _HDR + cap
        seg = _CTRL + 2 * self.slot_bytes
        self.win = MPI.Win.Allocate_shared(seg, 1, comm=comm)
        self.win.Lock_all(MPI.MODE_NOCHECK)
        self.ctrl, self.hdr, self.pay = [], [], []
        # NOTE: the control words and headers as int64 memoryviews, not numpy arrays: a scalar
        # load or store costs 40 ns instead of 70-140 (a round makes about ten of them)
        for j in range(self.size):
            mem, _ = self.win.Shared_query(j)
            m = memoryview(mem)
            a = np.frombuffer(mem, dtype=np.uint8, count=seg)
            self.ctrl.append(m[:8].cast("q"))
            self.hdr.append([m[_CTRL + s * self.slot_bytes:][:16].cast("q") for s in (0, 1)])
            self.pay.append([a[_CTRL + s * self.slot_bytes + _HDR:][:cap] for s in (0, 1)])
        self.ctrl[self.rank][0] = 0
        self.win.Sync()
        comm.Barrier()
        self.seq = 0
        self.others = [j for j in range(self.size) if j != self.rank]
        self.patience = polls_before_yield(self.size)
        self._views: dict = {}

    @property
    def next_slot(self) -> int:
        """The slot the next round writes."""
        return (self.seq + 1) & 1

    def views(self, slot, nb, dtype):
        """Every rank's payload in ``slot`` as an array of ``nb`` bytes of ``dtype``."""
        key = (slot, nb, dtype)
        v = self._views.get(key)
        if v is None:
            if len(self._views) > 512:
                self._views.clear()
            v = self._views[key] = [p[slot][:nb].view(dtype) for p in self.pay]
        return v

    def round(self, fp: int, nb: int, progress=None) -> bool:
        """One round: publish ``fp`` and this rank's payload size ``nb`` (already written to
        ``views(next_slot, ...)``), wait for every rank. True when every rank published the
        same ``fp`` (the same answer on every rank). ``progress``: called while waiting (the
        hierarchical allreduce advances its messages across nodes there)."""
        self.seq = k = self.seq + 1
        slot = k & 1
        me = self.rank
        hdr = self.hdr[me][slot]
        hdr[0] = fp
        hdr[1] = nb
        win = self.win
        win.Sync()
        ctrl = self.ctrl
        ctrl[me][0] = k
        for j in self.others:
            c = ctrl[j]
            if c[0] < k:
                spins = 0
                while c[0] < k:
                    spins += 1
                    if progress is not None:
                        progress()
                        if spins & 15:  # a burst of progress between two yields
                            continue
                    if spins > self.patience:
                        os.sched_yield()
        win.Sync()
        for j in self.others:
            if self.hdr[j][slot][0] != fp:
                return False
        return True

    # -- a round in two halves (DistributedOptimizer's shared buckets check a step with one,
    # started in a gradient hook and finished later): at most one is open at a time, and no
    # other round may start on this rank before it is finished --------------------------------
    def post(self, fp: int):
        """Start a round without payload: publish ``fp`` and return at once."""
        self.seq = k = self.seq + 1
        hdr = self.hdr[self.rank][k & 1]
        hdr[0] = fp
        hdr[1] = 0
        self.win.Sync()
        self.ctrl[self.rank][0] = k

    def arrived(self) -> bool:
        """Whether every rank has published the round started by ``post``."""
        k = self.seq
        for j in self.others:
            if self.ctrl[j][0] < k:
                return False
        self.win.Sync()
        return True

    def agreed(self, fp: int) -> bool:
        """After ``arrived``: whether every rank published ``fp`` in that round."""
        slot = self.seq & 1
        return all(self.hdr[j][slot][0] == fp for j in self.others)


class StepRounds:
    """The step-check rounds of every shared-bucket engine of a Context (engines.SharedEngine)
    on one small node window, one round in flight at a time: ``post(work)`` starts the round
    of a bucket-0 reduction (``work.agreed``: its fingerprint), ``finish(work, wait)`` ends it
    and sets ``work.outcome`` (whether every rank posted the same fingerprint).

    NOTE: two optimizers' buckets fill in one backward when each has its own parameters (one
    loss, an optimizer per parameter group): each posts its round when its bucket 0 is handed
    over, in the same order on every rank, before the first round has ended. The window keeps
    two rounds (by parity), and a rank may only start round k + 1 once every rank has read
    round k, so ``post`` first ends the round in flight (every rank posts it in the same
    backward) and keeps its outcome on its work. Shared by the optimizers (not one window
    each) so that ranks stepping different optimizers meet in one round and see the mismatch.
    """

    def __init__(self, comm):
        self.window = SharedWindow(comm, 64)
        self._open = None  # the work whose round is in flight

    def post(self, work):
        if self._open is not None:
            self.finish(self._open, wait=True)
        work.outcome = None
        self.window.post(work.agreed)
        self._open = work

    def finish(self, work, wait: bool) -> bool:
        """Whether ``work``'s round has ended (``wait``: wait for it); then ``work.outcome``."""
        if work.outcome is not None:
            return True  # ended by a later post
        if self._open is not work:
            raise RuntimeError("StepRounds.finish: this round was never posted")
        shm, spins = self.window, 0
        while not shm.arrived():
            if not wait:
                return False
            spins += 1
            if spins > shm.patience:
                os.sched_yield()
        work.outcome = shm.agreed(work.agreed)
        self._open = None
        return True
