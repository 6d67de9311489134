"""DistributedOptimizer's buckets in the node's shared memory, and their reduction in place.

When every rank of a job is on one node, the optimizer's bucket buffers (the ``wire`` each
bucket is reduced in: the gradients themselves, or their compressed copy) are allocated in one
MPI-3 shared window (``Win.Allocate_shared`` over the node's ranks), so backward writes the
gradients straight into memory that every rank can read. A bucket is then reduced with no
message and no copy in or out: rank r combines segment r (the ring's segments,
``algorithms.ring.segments``) of every rank's bucket and writes the result into segment r of
every rank's bucket. Each rank moves about N bytes in and N out for a bucket of N bytes at
P = 2 (one memcpy's worth), where a ring over MPI copies every byte through MPICH's cells.

Arithmetic: exactly the ring's (``algorithms/ring.py``): the element of segment k is
``x_k op (x_{k-1} op (... op x_{k+1}))`` in numpy's arithmetic of the dtype, then divided by P
with ``np.true_divide`` for Average. It is computed once, by rank k, and stored into every
rank's bucket, so the replicas are bitwise identical (guarantee 2) and equal to what the ring
gives. ``sum_into_all`` is the Numba kernel for float32/float64 Sum at P = 2, 3, 4 (one pass:
P reads and P writes per element); ``reduce_into_all`` is its numpy reference and the path of
every other dtype, op and P (float16: numpy adds in float32 and rounds
each time, as the ring does).

The window (``BucketWindow``): each rank's segment starts with one cache line of control words
per bucket, ``[ready, done, ...]``, then the buckets, each aligned to a cache line. For the
engine's g-th reduction of bucket b (``engines.SharedEngine``): a rank writes its gradients,
then (``Win.Sync``: a memory barrier) sets ``ready[b] = g``; once every rank's ``ready[b]`` is g
each reduces its segment (after a ``Win.Sync``) and sets ``done[b] = g``; once every rank's
``done[b]`` is g every bucket holds the result. A rank writes its bucket again only in the
next step, after it has seen every ``done[b]`` of this one, so nobody reads a bucket that is
being overwritten.
"""

from __future__ import annotations

import os

import numpy as np

from .algorithms.shared_memory import compiled, has_kernel
from .shared_window import polls_before_yield

_LINE = 64  # bytes: one cache line
READY, DONE = 0, 1  # control words of a bucket


def _align(n: int) -> int:
    return (n + _LINE - 1) // _LINE * _LINE


# -- the reduction: numpy reference and Numba kernel ----------------------------------------

def reduce_into_all(xs, k: int, lo: int, hi: int, ufunc, divisor: int = 0):
    """Reduce elements [lo, hi) of segment k over the arrays ``xs`` (one per rank) in the
    ring's order, divide by ``divisor`` (Average; 0: no), and store the result into every
    array. The numpy reference of ``sum_into_all``, and the path of other dtypes and ops."""
    P = len(xs)
    acc = xs[(k + 1) % P][lo:hi].copy()
    for j in range(2, P + 1):
        ufunc(xs[(k + j) % P][lo:hi], acc, out=acc)
    if divisor:
        np.true_divide(acc, divisor, out=acc)
    for x in xs:
        x[lo:hi] = acc


# NOTE: the kernels take the segment's slices and loop over range(size): over range(lo, hi)
# Numba cannot prove the index non-negative, keeps its wraparound branch in the loop, and
# LLVM does not vectorise it (5.8x slower at 128 KiB, and at 16 MiB slower than memory when
# memory is fast)
def _sum2(a, b, divisor):
    for i in range(a.size):
        s = b[i] + a[i]
        if divisor != 0:
            s = s / divisor
        a[i] = s
        b[i] = s


def _sum3(a, b, c, divisor):
    for i in range(a.size):
        s = c[i] + (b[i] + a[i])
        if divisor != 0:
            s = s / divisor
        a[i] = s
        b[i] = s
        c[i] = s


def _sum4(a, b, c, d, divisor):
    for i in range(a.size):
        s = d[i] + (c[i] + (b[i] + a[i]))
        if divisor != 0:
            s = s / divisor
        a[i] = s
        b[i] = s
        c[i] = s
        d[i] = s


def sum_into_all(xs: tuple, k: int, lo: int, hi: int, divisor: int = 0):
    """``reduce_into_all(xs, k, lo, hi, np.add, divisor)`` for float32/float64 and P = 2, 3,
    4 in one pass over the inputs (``xs``: 1-D C-contiguous arrays of one dtype).

    NOTE: one kernel per P, the arrays as separate arguments in the ring's order (x_{k+1}
    first, x_k last): a loop over a tuple of arrays indexed at run time (one kernel for every
    P) was not vectorised by LLVM and ran at 0.55x memcpy on one core where these run at
    memcpy's speed (8 MiB segments of 16 MiB buckets, P = 2)."""
    P = len(xs)
    args = [xs[(k + j) % P][lo:hi] for j in range(1, P + 1)]
    compiled({2: _sum2, 3: _sum3, 4: _sum4}[P])(*args, xs[0].dtype.type(divisor))


def reducer_for(dtype, ufunc, P):
    """The function that reduces a segment of P arrays of ``dtype`` with ``ufunc``:
    ``fn(xs, k, lo, hi, divisor)``."""
    if has_kernel(dtype, ufunc, P):
        return sum_into_all
    return lambda xs, k, lo, hi, divisor: reduce_into_all(xs, k, lo, hi, ufunc, divisor)


# -- the window -----------------------------------------------------------------------------

class BucketWindow:
    """Every rank's buckets in one shared window (see the module docstring): ``arrays[b]``
    is the tuple of every rank's buffer of bucket b (``arrays[b][rank]`` this rank's)."""

    def __init__(self, comm, specs):
        from mpi4py import MPI

        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        nb = len(specs)
        offsets, off = [], _LINE * max(nb, 1)
        for numel, dtype in specs:
            offsets.append(off)
            off += _align(numel * np.dtype(dtype).itemsize)
        self.nbytes = off
        self.win = MPI.Win.Allocate_shared(off, 1, comm=comm)
        self.win.Lock_all(MPI.MODE_NOCHECK)
        ctrl, arrays = [], [[] for _ in specs]
        for j in range(self.size):
            mem, _ = self.win.Shared_query(j)
            seg = np.frombuffer(mem, dtype=np.uint8, count=off)
            ctrl.append(seg[:_LINE * max(nb, 1)].view(np.int64).reshape(max(nb, 1), 8))
            for b, ((numel, dtype), o) in enumerate(zip(specs, offsets, strict=True)):
                dt = np.dtype(dtype)
                arrays[b].append(seg[o:o + numel * dt.itemsize].view(dt))
            if j == self.rank:
                seg[...] = 0
        self.ctrl = ctrl
        self.mine = ctrl[self.rank]
        self.arrays = [tuple(a) for a in arrays]
        self.others = [ctrl[j] for j in range(self.size) if j != self.rank]
        self.patience = polls_before_yield(self.size)
        self.win.Sync()
        comm.Barrier()

    def array(self, b: int) -> np.ndarray:
        """This rank's buffer of bucket b."""
        return self.arrays[b][self.rank]

    def publish(self, b: int, word: int, g: int):
        """Set this rank's control ``word`` of bucket b to g, after everything written
        before (a memory barrier first)."""
        self.win.Sync()
        self.mine[b, word] = g

    def reached(self, b: int, word: int, g: int) -> bool:
        """Whether every other rank has set ``word`` of bucket b to g (then a memory barrier,
        so what they wrote before is seen)."""
        for c in self.others:
            if c[b, word] < g:
                return False
        self.win.Sync()
        return True

    def wait(self, b: int, word: int, g: int):
        """Spin until ``reached``; yield the CPU after a few polls (``polls_before_yield``:
        oversubscribed ranks let the rank they wait for run)."""
        spins = 0
        while not self.reached(b, word, g):
            spins += 1
            if spins > self.patience:
                os.sched_yield()


def shm_available() -> int:
    """Bytes free in the shared-memory file system (where MPICH maps shared windows)."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def open_window(ctx, specs):
    """A ``BucketWindow`` for buckets of ``specs`` ((numel, wire dtype) each) over the node's
    ranks, or None when it cannot be had: the job spans several nodes, COLLECTIVE_SHM=0, one
    rank, or the node's shared memory has not room for it (then the buckets stay in private
    memory and are reduced by messages). Collective over ``ctx``'s ranks."""
    if ctx.size == 1 or ctx.shm is None:
        return None
    from mpi4py import MPI

    need = ctx.size * sum(_align(n * np.dtype(d).itemsize) + _LINE for n, d in specs)
    # NOTE: at most half of what is free, so that the rest of the job (the node window, MPICH's
    # own cells, other jobs) keeps room; decided once and agreed by every rank
    ok = int(need <= shm_available() // 2)
    if not ctx.comm.allreduce(ok, op=MPI.MIN):
        return None
    try:
        win = BucketWindow(ctx.local, specs)
        ok = 1
    except MPI.Exception:
        win, ok = None, 0
    return win if ctx.comm.allreduce(ok, op=MPI.MIN) else None
