"""Shared-memory handshake and allreduce for ranks on one node (algorithm "shared_memory").

Both are protocols over the Context's ``SharedWindow`` (``collective/shared_window.py``: rounds
in which every rank publishes a header and a payload and then reads everyone's).

As a handshake (no payload) a round costs one store and P-1 loads of other ranks' control words,
about a microsecond, instead of log2(P) MPI messages. As an allreduce the result is
``((x0 op x1) op x2) ...`` (rank order) on every rank, bitwise, at every size; two schedules
compute it:

- below ``SCATTER_MIN`` bytes, one round per ``capacity`` bytes: every rank publishes its
  payload and reduces all P payloads itself (P reads and P - 1 reductions of the data per
  rank, but a single round, which carries the mismatch check too);
- from ``SCATTER_MIN`` on, a reduce-scatter in pieces of ``PIECE`` bytes: for each piece every
  rank publishes the segments that other ranks own (``ring.segments``), rank r reduces segment
  r from its own input and the others' published copies and writes the result both into its
  output and into the window (one kernel: ``sum_to_two``, reference ``reduce_to_two``), then
  (a second round) every rank copies the segments it does not own out of their owners'
  results. Each rank reduces 1/P of the data, reads its input once and writes its output
  once; the window carries the others' segments in and the results out, each once (at P = 2
  about 1.6 memcpys' time in all, about the ring's over MPI messages, but with no message
  protocol: faster than the ring up to ~2 MiB at P = 2, and at every size when ranks share
  cores).

``COLLECTIVE_SHM=0`` disables this path (ranks then handshake with the recursive-doubling
butterfly over MPI messages, as across nodes).
"""

from __future__ import annotations

import numpy as np

from ..context import MISMATCH
from .ring import segments

#: payloads of at least this many bytes go by the reduce-scatter schedule
#: NOTE: measured on the 2-core machine (same run, interleaved): the one-round schedule is
#: faster below it (one round instead of two, ~15 us less Python per piece), the
#: reduce-scatter above (P = 2: equal at 512 KiB, 0.80x the one-round time at 1 MiB, 0.68x at
#: 2-4 MiB; P = 4 ahead from 256 KiB)
SCATTER_MIN = 512 << 10
#: bytes per piece of the reduce-scatter (at most the window's capacity)
#: NOTE: 1 MiB: 16 MiB at P = 2 took 7.0 ms with 512 KiB-1 MiB pieces, 7.3 with 2 MiB, 7.7 with
#: 256 KiB (more rounds and Python per byte) and 10.5 with 128 KiB
PIECE = 1 << 20


def shm_handshake(win, fp: int) -> int:
    """One round without payload: ``fp`` when every rank published it, else MISMATCH."""
    return fp if win.round(fp, 0) else MISMATCH


def shm_allreduce(win, fp: int, data, ufunc, divide_by: int = 0, src=None) -> int:
    """Allreduce ``data`` (1-D contiguous) in place; the result is ``((x0 op x1) op x2) ...``
    in rank order, divided by ``divide_by`` (Average; 0: no), on every rank. With ``src`` (same
    size): the input is read from ``src`` and only the result written to ``data``. Returns
    ``fp``, or MISMATCH when the ranks' fingerprints differ (found in the first round, before
    ``data`` is written)."""
    if data.nbytes >= SCATTER_MIN and win.size > 1:
        return _scatter_allreduce(win, fp, data, ufunc, divide_by, src)
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


_LAYOUTS: dict = {}


def _segments(m, P):
    """``ring.segments(m, P)``, cached (a call has at most two piece sizes)."""
    lay = _LAYOUTS.get((m, P))
    if lay is None:
        if len(_LAYOUTS) > 256:
            _LAYOUTS.clear()
        lay = _LAYOUTS[(m, P)] = segments(m, P)
    return lay


def _scatter_allreduce(win, fp, data, ufunc, divide_by, src):
    """The reduce-scatter schedule (module docstring) of ``shm_allreduce``."""
    inp = data if src is None else src
    P, me, dtype, n = win.size, win.rank, data.dtype, data.size
    step = max(P, min(win.capacity, PIECE) // data.itemsize)
    reduce = reducer(dtype, ufunc, P)
    for start in range(0, n, step):
        m = min(n, start + step) - start
        counts, offsets = _segments(m, P)
        nb = m * data.itemsize
        staged = win.views(win.next_slot, nb, dtype)
        mine = staged[me]
        for j in win.others:
            a = offsets[j]
            mine[a:a + counts[j]] = inp[start + a:start + a + counts[j]]
        if not win.round(fp, nb):
            return MISMATCH
        results = win.views(win.next_slot, nb, dtype)
        a, b = offsets[me], offsets[me] + counts[me]
        parts = [inp[start + a:start + b] if j == me else staged[j][a:b] for j in range(P)]
        reduce(parts, data[start + a:start + b], results[me][a:b], divide_by)
        win.round(fp, nb)
        for j in win.others:
            a = offsets[j]
            data[start + a:start + a + counts[j]] = results[j][a:a + counts[j]]
    return fp


# -- the owner's reduction: numpy reference and Numba kernels ------------------------------

def reduce_to_two(xs, out, res, ufunc, divisor: int = 0):
    """``((xs[0] op xs[1]) op xs[2]) ...`` divided by ``divisor`` (0: not), stored into both
    ``out`` and ``res``. The numpy reference of ``sum_to_two``, and the path of other dtypes,
    ops and P. ``out`` may be one of ``xs``."""
    acc = ufunc(xs[0], xs[1])
    for x in xs[2:]:
        ufunc(acc, x, out=acc)
    if divisor:
        np.true_divide(acc, divisor, out=acc)
    out[...] = acc
    res[...] = acc


# NOTE: the sum goes into ``res`` (the window: never one of the inputs), then is copied to
# ``out``. Stored straight into ``out``, which in place IS the owner's input, LLVM's runtime
# alias check fails and the loop runs scalar (3.4x slower at 128 KiB).
def _sum2(a, b, out, res, divisor):
    for i in range(res.size):
        s = a[i] + b[i]
        if divisor != 0:
            s = s / divisor
        res[i] = s
    for i in range(res.size):
        out[i] = res[i]


def _sum3(a, b, c, out, res, divisor):
    for i in range(res.size):
        s = (a[i] + b[i]) + c[i]
        if divisor != 0:
            s = s / divisor
        res[i] = s
    for i in range(res.size):
        out[i] = res[i]


def _sum4(a, b, c, d, out, res, divisor):
    for i in range(res.size):
        s = ((a[i] + b[i]) + c[i]) + d[i]
        if divisor != 0:
            s = s / divisor
        res[i] = s
    for i in range(res.size):
        out[i] = res[i]


KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_COMPILED: dict = {}


def has_kernel(dtype, ufunc, P) -> bool:
    """Whether the Numba reduction kernels (here and in ``shared_buckets``) cover a reduction
    of P arrays of ``dtype`` with ``ufunc``: float32/float64 Sum at P = 2, 3, 4."""
    return ufunc is np.add and np.dtype(dtype) in KERNEL_DTYPES and 2 <= P <= 4


def compiled(fn):
    """``fn`` compiled by Numba (nogil; loaded from Numba's cache when it can be) on first use:
    importing collective does not import Numba."""
    kernel = _COMPILED.get(fn)
    if kernel is None:
        from numba import njit

        kernel = _COMPILED[fn] = njit(cache=True, nogil=True)(fn)
    return kernel


def sum_to_two(xs, out, res, divisor: int = 0):
    """``reduce_to_two(xs, out, res, np.add, divisor)`` for float32/float64 and P = 2, 3, 4 in
    one Numba kernel (``compiled``). 1-D contiguous arrays of one dtype and length."""
    kernel = compiled({2: _sum2, 3: _sum3, 4: _sum4}[len(xs)])
    kernel(*xs, out, res, out.dtype.type(divisor))


def reducer(dtype, ufunc, P):
    """The owner's reduction for P arrays of ``dtype`` with ``ufunc``:
    ``fn(xs, out, res, divisor)``."""
    if has_kernel(dtype, ufunc, P):
        return sum_to_two
    return lambda xs, out, res, divisor: reduce_to_two(xs, out, res, ufunc, divisor)
