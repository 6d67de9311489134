"""Recursive doubling allreduce (latency-optimal), fused with the mismatch handshake.

Schedule for P ranks, P2 = the largest power of two <= P (the standard non-power-of-two
treatment): ranks r >= P2 ("extra") first fold their data into rank r - P2, the P2 ranks run
the butterfly (step k exchanges with r XOR 2^k), and then each extra rank receives the final
result from r - P2. floor(log2 P) exchanges (+2 messages when P is not a power of two) of the
whole vector.

Bitwise identical results on every rank: each pair of ranks combines the two operands in the
same order, the lower rank's partial result first (``op(low, high)``), so both members of a
pair compute the same bits, and by induction every rank ends with the same value; extra ranks
get a copy.

Across nodes (no shared-memory arena), every message starts with an 8-byte header carrying the
running fingerprint agreement (see ``collective.safety``). Payloads up to SMALL_MAX bytes
travel in the same message as the header (the mismatch check then costs nothing); larger
payloads run a header-only butterfly first and then the data butterfly with exact sizes.
Receives of the fused protocol always go into a buffer of capacity 8 + SMALL_MAX, so
mismatched ranks can never truncate a message. On one node the handshake is the shared-memory
round instead, followed by the data butterfly.
"""

from __future__ import annotations

import os

import numpy as np

from ..context import MISMATCH, TAG_HANDSHAKE, TAG_RD
from .shared_memory import shm_handshake

SMALL_MAX = 64 * 1024  # bytes of payload fused into the handshake messages
_HDR = 8

FOLD_SEND, FOLD_RECV, XCHG, UNFOLD_SEND, UNFOLD_RECV = range(5)


def schedule(rank: int, size: int):
    """[(kind, peer, i_am_lower)] for this rank: precomputed once per (rank, size)."""
    p2 = 1
    while p2 * 2 <= size:
        p2 *= 2
    steps = []
    if rank >= p2:
        return [(FOLD_SEND, rank - p2, False), (UNFOLD_RECV, rank - p2, False)]
    if rank + p2 < size:
        steps.append((FOLD_RECV, rank + p2, True))
    mask = 1
    while mask < p2:
        peer = rank ^ mask
        steps.append((XCHG, peer, rank < peer))
        mask <<= 1
    if rank + p2 < size:
        steps.append((UNFOLD_SEND, rank + p2, True))
    return steps


def _schedule(ctx):
    s = ctx.rd_schedule
    if s is None:
        s = ctx.rd_schedule = schedule(ctx.rank, ctx.size)
    return s


def handshake(ctx, fp: int) -> int:
    """Header-only agreement: the common fingerprint, or MISMATCH (same on every rank).
    Through shared memory on one node, else the butterfly below."""
    if ctx.shm is not None:
        return shm_handshake(ctx.shm, fp)
    return rd_allreduce(ctx, fp, None, None)


def _views(ctx, nb, dtype):
    """(message, send header, accumulator, incoming payload) views for a fused payload of
    ``nb`` bytes: built once per (nb, dtype), as numpy view creation costs microseconds."""
    key = (nb, dtype)
    v = ctx.rd_views.get(key)
    if v is None:
        sbuf = ctx.pool.get("rd_send", _HDR + SMALL_MAX)
        rbuf = ctx.pool.get("rd_recv", _HDR + SMALL_MAX)
        acc = sbuf[_HDR:_HDR + nb].view(dtype) if dtype is not None else None
        rin = rbuf[_HDR:_HDR + nb].view(dtype) if dtype is not None else None
        v = (sbuf[:_HDR + nb], sbuf[:_HDR].view(np.int64), acc, rbuf, rbuf[:_HDR].view(np.int64),
             rin)
        if len(ctx.rd_views) > 1024:
            ctx.rd_views.clear()
        ctx.rd_views[key] = v
    return v


def rd_allreduce(ctx, fp: int, data, ufunc, divide_by: int = 0, group=None) -> int:
    """Agree on ``fp`` and, when ``data`` is given, reduce it in place with ``ufunc``.

    ``data``: C-contiguous 1-D numpy array (modified in place only when the fingerprints agree).
    ``divide_by``: divide the result by it (Average). ``group``: (communicator, this rank's
    ``schedule`` on it) to run among a subset of the ranks (the cross-node step of the
    hierarchical allreduce); default the world. Returns the agreed fingerprint or MISMATCH.
    """
    nb = 0 if data is None else data.nbytes
    if group is not None:
        comm, steps = group
    elif ctx.shm is not None:  # one node: shared-memory handshake, then the data butterfly
        agg = shm_handshake(ctx.shm, fp)
        if agg != MISMATCH and nb:
            _rd_data(ctx, data, ufunc, ctx.comm, _schedule(ctx))
            if divide_by:
                np.true_divide(data, divide_by, out=data)
        return agg
    else:
        comm, steps = ctx.comm, _schedule(ctx)
    poll = ctx.config.wait == "poll"
    fused = nb <= SMALL_MAX
    pay = nb if fused else 0
    smsg, shdr, acc, rbuf, rhdr, rin = _views(ctx, pay, data.dtype if pay else None)
    agg = fp
    shdr[0] = agg
    if pay:
        acc[...] = data
    last = len(steps) - 1
    for i, (kind, peer, low) in enumerate(steps):
        if kind == XCHG:
            _sendrecv(comm, smsg, rbuf, peer, TAG_HANDSHAKE, poll)
        elif kind == FOLD_RECV:
            _recv(comm, rbuf, peer, TAG_HANDSHAKE, poll)
        elif kind == UNFOLD_RECV:  # the final result
            _recv(comm, rbuf, peer, TAG_HANDSHAKE, poll)
            agg = int(rhdr[0])
            if pay and agg != MISMATCH:
                np.copyto(data, rin)
            break
        else:  # FOLD_SEND, UNFOLD_SEND
            comm.Send(smsg, peer, TAG_HANDSHAKE)
            if kind == FOLD_SEND:
                continue
            if pay and agg != MISMATCH:
                np.copyto(data, acc)
            break
        if int(rhdr[0]) != agg:
            agg = MISMATCH
        shdr[0] = agg
        if pay and agg != MISMATCH:
            # the final combination writes straight into the caller's array
            out = data if i == last else acc
            if low:
                ufunc(acc, rin, out=out)
            else:
                ufunc(rin, acc, out=out)
    if agg == MISMATCH or nb == 0:
        return agg
    if not fused:
        _rd_data(ctx, data, ufunc, comm, steps, poll)
    if divide_by:
        np.true_divide(data, divide_by, out=data)
    return agg


def _rd_data(ctx, data, ufunc, comm, steps, poll=False):
    """The data butterfly for large payloads, sizes already agreed; in place on ``data``."""
    tmp = ctx.pool.get("rd_data", data.nbytes, data.dtype)
    for kind, peer, low in steps:
        if kind == FOLD_SEND or kind == UNFOLD_SEND:
            if poll:
                _wait([comm.Isend(data, peer, TAG_RD)], True)
            else:
                comm.Send(data, peer, TAG_RD)
        elif kind == UNFOLD_RECV:
            _recv(comm, data, peer, TAG_RD, poll)
        else:
            if kind == XCHG:
                _sendrecv(comm, data, tmp, peer, TAG_RD, poll)
            else:
                _recv(comm, tmp, peer, TAG_RD, poll)
            if low:
                ufunc(data, tmp, out=data)
            else:
                ufunc(tmp, data, out=data)


# -- waiting across nodes --------------------------------------------------------------------
# NOTE: across nodes (COLLECTIVE_WAIT=poll, the default) a rank waits for a message by testing
# it and yielding the CPU in between, as the ring does: MPICH's blocking calls busy-poll, and
# with more ranks than cores (2 x 2 virtual hosts on 2 cores) a rank spinning in MPI_Recv keeps
# the peer it waits for, or the other rank of its node, off the core for a whole time slice.

def _wait(reqs, poll):
    from mpi4py import MPI

    if not poll:
        MPI.Request.Waitall(reqs)
        return
    while not MPI.Request.Testall(reqs):
        os.sched_yield()


def _sendrecv(comm, sbuf, rbuf, peer, tag, poll):
    if poll:
        _wait([comm.Irecv(rbuf, peer, tag), comm.Isend(sbuf, peer, tag)], True)
    else:
        comm.Sendrecv(sbuf, peer, tag, rbuf, peer, tag)


def _recv(comm, rbuf, peer, tag, poll):
    if poll:
        _wait([comm.Irecv(rbuf, peer, tag)], True)
    else:
        comm.Recv(rbuf, peer, tag)
