"""Shared-memory handshake and allreduce for ranks on one node (algorithm "shared_memory").

Every rank owns a segment of an MPI-3 shared window (``Win.Allocate_shared``): a control word
(a call sequence number) and two slots (header + payload of up to ``CAPACITY`` bytes). A round
k: each rank writes its header (fingerprint, payload size) and payload into slot k % 2, then
publishes k in its control word, then waits until every other rank has published k. Then every
rank can read every rank's header and payload directly. Two slots are enough: a rank can only
start round k + 2 (overwriting slot k % 2) after every rank has published k + 1, i.e. after
every rank has finished reading round k.

As a handshake (no payload) this costs one store and P-1 loads of other ranks' control words,
about a microsecond, instead of log2(P) MPI messages. As an allreduce every rank reduces all P
payloads itself, in rank order (``((x0 op x1) op x2) ...``), so every rank computes the same
bits; payloads larger than a slot go in rounds of ``CAPACITY`` bytes. Each rank reads P times
and reduces (P-1) times the data, so it suits small messages (the cost model decides).

Waiting spins on the control words and yields the CPU (``os.sched_yield``) after a few polls, so
oversubscribed ranks (more ranks than cores) let the rank they wait for run. Memory ordering:
``Win.Sync`` (a memory barrier) between writing data and publishing, and between seeing a peer's
control word and reading its data. ``COLLECTIVE_SHM=0`` disables this path (ranks then
handshake with the recursive-doubling butterfly over MPI messages, as across nodes).
"""

from __future__ import annotations

import os

import numpy as np

from ..safety import MISMATCH

# payload bytes per slot: 2 MiB measured best of 256 KiB .. 4 MiB (fewer rounds, fewer waits)
CAPACITY = int(os.environ.get("COLLECTIVE_SHM_SLOT", 2 << 20))
_CTRL = 64  # control block: one cache line
_HDR = 64  # slot header: fingerprint, payload bytes, padding to a cache line


class SharedArena:
    def __init__(self, comm):
        from mpi4py import MPI

        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        # at most ~16 MiB of shared memory in all (container /dev/shm is often 64 MiB)
        cap = min(CAPACITY, max(64 << 10, (8 << 20) // self.size))
        self.capacity = cap = cap // 64 * 64
        self.slot_bytes = _HDR + cap
        seg = _CTRL + 2 * self.slot_bytes
        self.win = MPI.Win.Allocate_shared(seg, 1, comm=comm)
        self.win.Lock_all(MPI.MODE_NOCHECK)
        self.ctrl, self.hdr, self.pay = [], [], []
        for j in range(self.size):
            mem, _ = self.win.Shared_query(j)
            a = np.frombuffer(mem, dtype=np.uint8, count=seg)
            self.ctrl.append(a[:8].view(np.int64))
            self.hdr.append([a[_CTRL + s * self.slot_bytes:][:16].view(np.int64) for s in (0, 1)])
            self.pay.append([a[_CTRL + s * self.slot_bytes + _HDR:][:cap] for s in (0, 1)])
        self.ctrl[self.rank][0] = 0
        self.win.Sync()
        comm.Barrier()
        self.seq = 0
        self.others = [j for j in range(self.size) if j != self.rank]
        self._views: dict = {}

    def free(self):
        try:
            self.win.Unlock_all()
            self.win.Free()
        except Exception:  # noqa: BLE001 - at exit MPI may already be finalized
            pass

    def views(self, slot, nb, dtype):
        """Every rank's payload in ``slot`` as an array of ``nb`` bytes of ``dtype``."""
        key = (slot, nb, dtype)
        v = self._views.get(key)
        if v is None:
            if len(self._views) > 512:
                self._views.clear()
            v = self._views[key] = [p[slot][:nb].view(dtype) for p in self.pay]
        return v

    def exchange(self, fp: int, data=None) -> int:
        """One round: publish ``fp`` (and ``data``'s bytes, <= CAPACITY), wait for everyone.
        Returns the agreed fingerprint or MISMATCH (the same on every rank); afterwards
        ``self.last_slot`` holds every rank's payload until this rank's round after next."""
        slot = (self.seq + 1) & 1
        if data is not None and data.nbytes:
            self.views(slot, data.nbytes, data.dtype)[self.rank][...] = data
            return self._round(fp, data.nbytes)
        return self._round(fp, 0)

    def _round(self, fp, nb):
        self.seq = k = self.seq + 1
        slot = self.last_slot = k & 1
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
                    if spins > 64:
                        os.sched_yield()
        win.Sync()
        for j in self.others:
            if self.hdr[j][slot][0] != fp:
                return MISMATCH
        return fp

    def allreduce(self, fp: int, data, ufunc, divide_by: int = 0, src=None) -> int:
        """Allreduce ``data`` (1-D contiguous) in place in rounds of CAPACITY bytes; every rank
        combines the P payloads in rank order, so all compute the same bits. With ``src`` (same
        size): the input is read from ``src`` and only the result written to ``data``."""
        n, nb, dtype = data.size, data.nbytes, data.dtype
        cap = self.capacity
        step = max(1, cap // data.itemsize)
        start = 0
        while True:
            if nb > cap:
                piece = data[start:start + step]
                inp = piece if src is None else src[start:start + step]
            else:
                piece = data
                inp = data if src is None else src
            pb = piece.nbytes
            xs = self.views((self.seq + 1) & 1, pb, dtype)
            if pb:
                xs[self.rank][...] = inp
            if self._round(fp, pb) == MISMATCH:
                return MISMATCH
            if pb:
                ufunc(xs[0], xs[1], out=piece)
                for x in xs[2:]:
                    ufunc(piece, x, out=piece)
            start += step
            if start >= n:
                break
        if divide_by and nb:
            np.true_divide(data, divide_by, out=data)
        return fp
