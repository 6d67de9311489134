"""Shared-memory handshake and allreduce for ranks on one node (algorithm "shared_memory").

Both are protocols over the Context's ``SharedWindow`` (``collective/shared_window.py``: rounds
in which every rank publishes a header and a payload and then reads everyone's).

As a handshake (no payload) a round costs one store and P-1 loads of other ranks' control words,
about a microsecond, instead of log2(P) MPI messages. As an allreduce every rank reduces all P
payloads itself, in rank order (``((x0 op x1) op x2) ...``), so every rank computes the same
bits; payloads larger than a slot go in rounds of ``capacity`` bytes. Each rank reads P times
and reduces (P-1) times the data, so it suits small messages (the cost model decides).
``COLLECTIVE_SHM=0`` disables this path (ranks then handshake with the recursive-doubling
butterfly over MPI messages, as across nodes).
"""

from __future__ import annotations

import numpy as np

from ..context import MISMATCH


def shm_handshake(win, fp: int) -> int:
    """One round without payload: ``fp`` when every rank published it, else MISMATCH."""
    return fp if win.round(fp, 0) else MISMATCH


def shm_allreduce(win, fp: int, data, ufunc, divide_by: int = 0, src=None) -> int:
    """Allreduce ``data`` (1-D contiguous) in place in rounds of ``win.capacity`` bytes; every
    rank combines the P payloads in rank order, so all compute the same bits. With ``src``
    (same size): the input is read from ``src`` and only the result written to ``data``.
    Returns ``fp``, or MISMATCH when the ranks' fingerprints differ (found in the first round,
    before ``data`` is written)."""
    n, nb, dtype = data.size, data.nbytes, data.dtype
    cap = win.capacity
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
        xs = win.views(win.next_slot, pb, dtype)
        if pb:
            xs[win.rank][...] = inp
        if not win.round(fp, pb):
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
