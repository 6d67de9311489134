"""algorithm="auto": choose the allreduce algorithm from measured costs.

The rule. Each candidate k (shared memory on one node, recursive doubling, ring, the MPI
library's own Allreduce) is timed once, through the full call path (handshake included), on
float32 Sum at sizes s_1 < ... < s_m (4 KiB, 32 KiB, 256 KiB, 1 MiB, 4 MiB, 16 MiB; up to 2 MiB
when P > 4). The candidates take turns; each keeps the median of 7 samples, the maximum over
ranks, capped by its time at any larger size (fewer bytes never take longer: this removes the
noise spikes of a shared machine). Between two measured sizes a candidate's time is the
alpha-beta line through them, T_k(n) = alpha_k + beta_k * n: alpha is the per-call latency and
Python overhead, beta the per-byte transfer and reduction cost. Below s_1 every candidate costs
T_k(s_1). Above s_m the last line is extrapolated for our own algorithms (linear by
construction: fixed schedule, no allocation per call), while the MPI library's own Allreduce is
not chosen there (MPICH allocates a temporary buffer per call and collapses at >= 32 MiB on this
machine, which no line predicts). ``auto`` picks the argmin of the predicted times, cached per
byte size. Typical outcome: shared memory (or recursive doubling across nodes) for small
messages, where one round carries data and mismatch check together; the ring for large ones
(2(P-1)/P of the data per rank and 1/P of the reduction work); the MPI library's own wherever it
measured faster.

Every rank makes the same choice: the times are maxima over ranks, and a cached table is read by
rank 0 and broadcast. Measured once per (P, hosts, MPI library, thread level) and cached as JSON
under ``~/.cache/collective`` (or ``$COLLECTIVE_CACHE_DIR``). ``COLLECTIVE_RETUNE=1`` measures
again; ``COLLECTIVE_TUNING=off`` uses built-in defaults without measuring. ``prepare`` runs at
start-up (``col.init()``, when every rank is in the same call and nothing else runs), so no
measurement ever happens inside a training step, under the load of backward and of other
reductions in flight; the measurement takes about a second on the 2-core machine.
"""

from __future__ import annotations

import json
import os
import socket
import time

import numpy as np

from .algorithms import FIXED, SMALL_MAX, run
from .context import TuningTable
from .reduce_ops import Sum
from .safety import describe, fingerprint

CANDIDATES = FIXED
#: the algorithms whose arithmetic is our own (numpy's, in a documented order): all but "mpi"
OWN = tuple(a for a in CANDIDATES if a != "mpi")
VERSION = 2


def _sizes(P):
    top = 16 << 20 if P <= 4 else 2 << 20
    sizes, s = [], 4096
    while s <= top:
        sizes.append(s)
        s *= 8 if s < (256 << 10) else 4
    return sizes


def _defaults(P):
    """No measurement: the shared-memory allreduce (recursive doubling across nodes) while
    the data fits in a few slots, ring above (shapes of the curves measured on the 2-core box)."""
    sizes = [4096, SMALL_MAX, 4 * SMALL_MAX, 1 << 24]
    return TuningTable(sizes, {
        "shared_memory": [5e-6, 2e-5, 1.5e-4, 1.0],
        "recursive_doubling": [1e-5, 4e-5, 1e-3, 1.0],
        "ring": [1e-4, 1.1e-4, 1.2e-4, 1e-2],
        "mpi": [1.0, 1.0, 1.0, 1.0]}, key="defaults")


def predict(table: TuningTable, algo, n):
    sizes, times = table.sizes, table.times.get(algo)
    if times is None:
        return float("inf")
    if n <= sizes[0]:
        return times[0]
    for i in range(1, len(sizes)):
        if n <= sizes[i]:
            f = (n - sizes[i - 1]) / (sizes[i] - sizes[i - 1])
            return times[i - 1] + f * (times[i] - times[i - 1])
    if algo == "mpi":
        return float("inf")
    slope = (times[-1] - times[-2]) / (sizes[-1] - sizes[-2])
    return times[-1] + max(slope, 0.0) * (n - sizes[-1])


def best(table, n, candidates=CANDIDATES):
    """The candidate with the cheapest predicted time for ``n`` bytes."""
    return min(candidates, key=lambda a: predict(table, a, n))


def choose_own(ctx, nbytes: int) -> str:
    """Like ``choose``, among our own algorithms only (DistributedOptimizer's blocking engines:
    replicas must agree bitwise by our arithmetic, not by the MPI library's)."""
    return "ring" if ctx.tuning is None else best(ctx.tuning, nbytes, OWN)


def choose(ctx, nbytes: int) -> str:
    """The algorithm ``auto`` runs for an allreduce of ``nbytes`` (the same on every rank)."""
    algo = ctx.choices.get(nbytes)
    if algo is None:
        if len(ctx.choices) > 4096:
            ctx.choices.clear()
        algo = ctx.choices[nbytes] = best(ctx.tuning, nbytes)
    return algo


def prepare(ctx):
    """Give ``ctx`` its tuning table (at start-up, on every rank together): the built-in one
    with COLLECTIVE_TUNING=off, else the cached one, else a fresh measurement."""
    if ctx.size > 1:
        ctx.tuning = _defaults(ctx.size) if not ctx.config.tuning else load_or_measure(ctx)
        ctx.choices.clear()


def _cache_path(ctx):
    from mpi4py import MPI

    hosts = ctx.comm.allgather(socket.gethostname())
    key = "|".join([str(ctx.size), ",".join(sorted(set(hosts))), MPI.Get_library_version(),
                    str(MPI.Query_thread()), str(VERSION)])
    digest = fingerprint((key,))
    return ctx.config.cache_dir / f"allreduce-tuning-P{ctx.size}-{digest:016x}.json", key


def load_or_measure(ctx) -> TuningTable:
    path, key = _cache_path(ctx)
    table = None
    if ctx.rank == 0 and not ctx.config.retune:
        try:
            data = json.loads(path.read_text())
            if data.get("key") == key:
                table = data
        except (OSError, ValueError):
            table = None
    table = ctx.comm.bcast(table, root=0)
    if table is not None:
        return TuningTable.from_json(table)
    table = measure(ctx)
    table.key = key
    if ctx.rank == 0:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(dict(table.to_json(), size=ctx.size), indent=1))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home: measure again next time
    return table


def measure(ctx, sizes=None, reps=7):
    """Time every candidate at each size: the candidates take turns (so a burst of machine
    noise hits them alike), each sample a batch of back-to-back calls of >= ~2 ms; a
    candidate's time is its median sample (not the best one: an algorithm with more
    synchronisation points is exposed to more scheduling delays on a shared machine, and a
    single lucky sample must not make it the choice), the maximum over ranks."""
    from mpi4py import MPI

    sizes = sizes or _sizes(ctx.size)
    algos = [a for a in CANDIDATES if a != "shared_memory" or ctx.shm is not None]
    buf_all = np.zeros(max(sizes) // 4, dtype=np.float32)
    plans = []
    for s in sizes:
        buf = buf_all[:s // 4]
        calls = []
        for algo in algos:
            desc = describe("allreduce", buf.shape, buf.dtype, Sum, algo)
            fp = fingerprint(desc)
            calls.append((fp, algo))
            run(ctx, fp, buf, Sum, algo)  # warm-up (scratch buffers, pages)
        ctx.comm.Barrier()
        t0 = time.perf_counter()
        run(ctx, calls[0][0], buf, Sum, algos[0])
        est = np.array([time.perf_counter() - t0])
        ctx.comm.Allreduce(MPI.IN_PLACE, est, MPI.MAX)
        plans.append((buf, calls, int(max(1, min(200, 2e-3 / max(est[0], 1e-7))))))
    # repetitions outermost: each size's samples are spread over the whole measurement, so a
    # burst of load on a shared machine spoils one sample per size, not all of one size
    samples = np.zeros((len(algos), len(sizes), reps))
    for k in range(reps):
        for i, (buf, calls, batch) in enumerate(plans):
            for j, (fp, algo) in enumerate(calls):
                ctx.comm.Barrier()
                t0 = time.perf_counter()
                for _ in range(batch):
                    run(ctx, fp, buf, Sum, algo)
                samples[j, i, k] = (time.perf_counter() - t0) / batch
    best_t = np.median(samples, axis=2)
    ctx.comm.Allreduce(MPI.IN_PLACE, best_t, MPI.MAX)
    # a reduction of fewer bytes never takes longer: a noise spike at a small size is capped by
    # the time measured at a larger one (running minimum from the largest size down)
    best_t = np.minimum.accumulate(best_t[:, ::-1], axis=1)[:, ::-1]
    return TuningTable(sizes, {a: best_t[j].tolist() for j, a in enumerate(algos)})
