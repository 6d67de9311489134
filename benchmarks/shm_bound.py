"""What bounds the shared-memory bucket reduction on one node: its kernel against memcpy.

    ./mpirun.sh -n 2 python benchmarks/shm_bound.py [--mib 16] [--reps 25]

Every rank at once (a barrier, then each times its own part; the time is the maximum over
ranks; medians of ``--reps`` interleaved samples): memcpy of N bytes (``np.copyto``) by rank 0
alone while the others wait, the same memcpy on every rank at once, an in-place pass over N
bytes (``np.negative(a, out=a)``: every line read and written back) on rank 0 alone and on
every rank at once, and the reduction DistributedOptimizer's shared engine runs on a bucket of
N bytes (``collective.shared_buckets.sum_into_all``: rank r reads segment r of every rank's
bucket and writes the sum into every one), on buckets in the node's MPI-3 shared window, each
rewritten by its owner before the sample (as backward does).

Per rank the reduction reads N bytes and writes the same N bytes back, so its bound is the
concurrent in-place pass. A memcpy moves more: its destination lines are read before they are
written (the store's read for ownership), N in, N fetched, N out, which is why the reduction
can run faster than one core's memcpy (the goal is stated against memcpy).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import interleaved  # noqa: E402

from collective.shared_buckets import sum_into_all  # noqa: E402


def main(argv=None):
    from mpi4py import MPI

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=16, help="bucket size in MiB")
    ap.add_argument("--reps", type=int, default=25)
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
    if comm.size != MPI.COMM_WORLD.size or not 2 <= comm.size <= 4:
        sys.exit("shm_bound.py: run 2 to 4 ranks on one node")
    rank, P = comm.rank, comm.size
    n = (args.mib << 20) // 4
    win = MPI.Win.Allocate_shared(n * 4, 4, comm=comm)
    win.Lock_all(MPI.MODE_NOCHECK)
    buckets = tuple(np.ndarray((n,), np.float32, buffer=win.Shared_query(j)[0])
                    for j in range(P))
    lo, hi = rank * n // P, (rank + 1) * n // P
    src, dst = np.ones(n, np.float32), np.empty(n, np.float32)

    def rewrite():  # the owner writes its bucket (as backward does), then a memory barrier
        buckets[rank][:] = 1.0
        win.Sync()

    cases = {"memcpy, rank 0 alone": lambda: rank == 0 and np.copyto(dst, src),
             "memcpy, every rank at once": lambda: np.copyto(dst, src),
             "in-place pass, rank 0 alone": lambda: rank == 0 and np.negative(dst, out=dst),
             "in-place pass, every rank at once": lambda: np.negative(dst, out=dst),
             "bucket reduction (shared window)": lambda: sum_into_all(buckets, rank, lo, hi)}
    for f in cases.values():
        f()
    rewrite()
    times = interleaved(comm, list(cases.values()), args.reps, 1,
                        before=[None, None, None, None, rewrite])
    if rank == 0:
        med = {k: float(np.median(t)) for k, t in zip(cases, times, strict=True)}
        one = med["memcpy, rank 0 alone"]
        print(f"# P = {P}, {args.mib} MiB, medians of {args.reps}; rate = one core's memcpy "
              f"time / the time (the shared-bucket goal is stated against it)")
        for k, v in med.items():
            print(f"{k:>35}: {v * 1e3:7.2f} ms  {one / v:5.2f}x one core's memcpy")
        both, red = med["memcpy, every rank at once"], med["bucket reduction (shared window)"]
        rmw = med["in-place pass, every rank at once"]
        print(f"# the reduction runs at {both / red:.2f}x the concurrent memcpy (which runs at "
              f"{one / both:.2f}x one core's alone) and at {rmw / red:.2f}x the concurrent "
              f"in-place pass, its bound")


if __name__ == "__main__":
    main()
