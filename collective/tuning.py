"""algorithm="auto": choose the allreduce algorithm from measured costs.

The rule. Each candidate k (shared memory on one node, hierarchical across nodes, recursive
doubling, ring, the MPI library's own Allreduce) is timed once, through the full call path
(handshake included), on float32 Sum at sizes s_1 < ... < s_m (4 KiB, 32 KiB, 256 KiB, 1 MiB,
4 MiB, 16 MiB; up to 2 MiB when P > 4). The candidates take turns; each keeps the median of 7
samples, the maximum over ranks, capped by its time at any larger size (fewer bytes never take
longer: this removes the noise spikes of a shared machine). Then, at every size, the two
cheapest candidates (when within 2x of each other) are timed again head to head in 9 paired
samples, alternating which goes first, and the table is overruled where the median of the
paired ratios disagrees with it (``paired_winner``): on an oversubscribed machine one lucky or
unlucky sample decided the choice otherwise (P = 3 chose our shared memory at 4 KiB, 0.76x
MPI's own). Between two measured sizes a
candidate's time is the alpha-beta line through them, T_k(n) = alpha_k + beta_k * n: alpha is
the per-call latency and Python overhead, beta the per-byte transfer and reduction cost. Below
s_1 every candidate costs T_k(s_1). Above s_m the last line is extrapolated for our own
algorithms (linear by construction: fixed schedule, no allocation per call), while the MPI
library's own Allreduce is not chosen there (MPICH allocates a temporary buffer per call and
collapses at >= 32 MiB on this machine, which no line predicts). ``auto`` picks the argmin of
the predicted times (MPI's own only when faster than ours by ``MPI_MARGIN``), cached per byte
size. Typical outcome on one node: shared memory (one round carries data and mismatch check
together for small messages; its reduce-scatter from 512 KiB) up to 16-64 MiB, where the ring
(2(P-1)/P of the data per rank and 1/P of the reduction work) measures the same within noise;
across nodes: hierarchical (each byte crosses a node's link once per direction), recursive
doubling or the MPI library's own wherever they measured faster.

The same measurement fits the cost model (``collective.cost_model``): point-to-point exchanges
within a node and across nodes (every rank at once), a window round, memcpy and ufunc rates.

Every rank makes the same choice: the times are maxima over ranks, and a cached table is read by
rank 0 and broadcast. Measured once per (P, hosts, ranks per node, MPI library, thread level,
link) and cached as JSON under ``~/.cache/collective`` (or ``$COLLECTIVE_CACHE_DIR``). The link:
across nodes a quick probe at start-up (every node's owners exchange ``PROBE_BYTES`` across
their link, 0.1-0.2 s at 1 Gbit/s) measures the bytes per second through a node's link, and a
cached table is used only when it was measured at a link within ``LINK_MATCH`` of that (so a
rate-limited and an unlimited cluster with the same host names keep a table each; a new link
speed is measured anew), and only when it was not measured on a machine busier than now by
``LOAD_MARGIN`` per core (load average). ``COLLECTIVE_RETUNE=1`` measures again;
``COLLECTIVE_TUNING=off`` uses built-in defaults without measuring (across nodes: hierarchical
at every size). ``prepare`` runs at start-up (``col.init()``, when every rank is in the same
call and nothing else runs), so no measurement ever happens inside a training step, under the
load of backward and of other reductions in flight; the measurement takes about a second on the
2-core machine (ten across 1 Gbit/s links, where a 16 MiB allreduce takes 150-350 ms).
"""

from __future__ import annotations

import json
import math
import os
import socket
import time

import numpy as np

from .algorithms import FIXED, SMALL_MAX, run
from .context import TuningTable
from .cost_model import CostModel, fit_line
from .reduce_ops import Sum
from .safety import describe, fingerprint

CANDIDATES = FIXED
#: the algorithms whose arithmetic is our own (numpy's, in a documented order): all but "mpi"
OWN = tuple(a for a in CANDIDATES if a != "mpi")
#: the algorithms DistributedOptimizer's non-blocking engine can keep in flight
IN_FLIGHT = ("ring", "hierarchical")
VERSION = 6  # 4: the paired confirmation of the two cheapest candidates per size; 5: load
# of the machine kept with the table; 6: "shared_memory" gained its reduce-scatter schedule
CONFIRM_REPS = 9  # paired samples of the confirmation
CONFIRM_SPREAD = 2.0  # candidates further apart than this factor are not confirmed
CONFIRM_MARGIN = 1.02  # how much slower the loser of a paired comparison is made in the table
#: MPI's own Allreduce must be predicted this much faster than our best to be chosen
#: NOTE: the start-up measurement of oversubscribed ranks ties within noise (P = 3, 4 KiB: MPI's
#: own 104 us, shared memory 106 us), and a tie won by MPI's own costs most: it pays the
#: mismatch check as a separate round (P = 3, 4 KiB: 83 us through allreduce_, where the
#: shared-memory allreduce, whose one round carries the check, took 60 us)
MPI_MARGIN = 1.1
LINK_MATCH = 2.0  # a cached table serves links within this factor of the one it measured
# NOTE: a table measured while other jobs loaded the machine went stale when it was quiet
# again: cached at a load of ~4 per core, it chose shared memory at 1 MiB and recursive
# doubling at 16 MiB at P = 2, 0.81-0.85x MPI's own, where a table measured quiet gives
# >= 0.99x. A cached table is measured again when it was measured at a load per core this
# much higher than the machine's now (a busier machine keeps a quiet table: the better one).
LOAD_MARGIN = 0.75
PROBE_BYTES = 1 << 20  # per owner and direction, the start-up link probe
LEVEL_SIZES = (4096, 64 << 10, 512 << 10, 2 << 20)  # the cost model's exchanges


def across_nodes(ctx) -> bool:
    return ctx.topo is not None and ctx.topo.num_nodes > 1


def candidates(ctx) -> list:
    """The algorithms ``auto`` measures here: shared memory where the world shares a window,
    hierarchical across nodes."""
    return [a for a in CANDIDATES
            if (a != "shared_memory" or ctx.shm is not None)
            and (a != "hierarchical" or across_nodes(ctx))]


def _sizes(P):
    top = 16 << 20 if P <= 4 else 2 << 20
    sizes, s = [], 4096
    while s <= top:
        sizes.append(s)
        s *= 8 if s < (256 << 10) else 4
    return sizes


def _defaults(ctx):
    """No measurement: on one node the shared-memory allreduce while the data fits in a few
    slots, ring above (shapes of the curves measured on the 2-core box); across nodes
    hierarchical at every size (measured on 2 x 2 virtual hosts, shaped and not)."""
    sizes = [4096, SMALL_MAX, 4 * SMALL_MAX, 1 << 24]
    times = {"shared_memory": [5e-6, 2e-5, 1.5e-4, 1.0],
             "recursive_doubling": [1e-5, 4e-5, 1e-3, 1.0],
             "ring": [1e-4, 1.1e-4, 1.2e-4, 1e-2],
             "mpi": [1.0, 1.0, 1.0, 1.0]}
    if across_nodes(ctx):
        times["hierarchical"] = [4e-6, 1.5e-5, 1e-4, 5e-3]
    return TuningTable(sizes, times, key="defaults")


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
    """The candidate with the cheapest predicted time for ``n`` bytes; MPI's own only where it
    is predicted faster than ours by ``MPI_MARGIN``."""
    return min(candidates,
               key=lambda a: predict(table, a, n) * (MPI_MARGIN if a == "mpi" else 1.0))


def choose_own(ctx, nbytes: int) -> str:
    """Like ``choose``, among our own algorithms only (DistributedOptimizer's blocking engines:
    replicas must agree bitwise by our arithmetic, not by the MPI library's)."""
    return "ring" if ctx.tuning is None else best(ctx.tuning, nbytes, OWN)


def choose_in_flight(ctx, nbytes: int) -> str:
    """What DistributedOptimizer's non-blocking engine runs for a bucket of ``nbytes``: the
    ring on one node, across nodes the faster of ring and hierarchical."""
    if not across_nodes(ctx):
        return "ring"
    return "hierarchical" if ctx.tuning is None else best(ctx.tuning, nbytes, IN_FLIGHT)


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
        ctx.tuning = _defaults(ctx) if not ctx.config.tuning else load_or_measure(ctx)
        ctx.choices.clear()


def _cache_path(ctx):
    from mpi4py import MPI

    hosts = ctx.comm.allgather(socket.gethostname())
    layout = "x".join(map(str, ctx.topo.node_sizes))  # ranks per node
    key = "|".join([str(ctx.size), ",".join(sorted(set(hosts))), layout,
                    MPI.Get_library_version(), str(MPI.Query_thread()), str(VERSION)])
    digest = fingerprint((key,))
    return ctx.config.cache_dir / f"allreduce-tuning-P{ctx.size}-{digest:016x}.json", key


def same_link(a: float, b: float) -> bool:
    """Whether link speeds ``a`` and ``b`` (bytes/s; 0: one node) are the same class."""
    if a <= 0 or b <= 0:
        return a <= 0 and b <= 0
    return max(a, b) / min(a, b) <= LINK_MATCH


def _read_entries(path, key) -> list:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return list(data.get("entries", [])) if data.get("key") == key else []


def pick(entries, link: float):
    """The cached table (JSON) measured at the link speed closest to ``link`` within
    ``LINK_MATCH``, or None."""
    matches = [e for e in entries if same_link(e.get("link_Bps", 0.0), link)]
    if not matches:
        return None
    return min(matches, key=lambda e: abs(math.log(max(e.get("link_Bps", 0.0), 1.0)
                                                   / max(link, 1.0))))


def machine_load(ctx) -> float:
    """The busiest host's 1-minute load average per core (every rank calls it)."""
    from mpi4py import MPI

    try:
        mine = os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        mine = 0.0
    return float(ctx.comm.allreduce(mine, op=MPI.MAX))


def stale(entry: dict, load: float) -> bool:
    """Whether a cached table (JSON) was measured on a busier machine than the one at ``load``
    (per core) by LOAD_MARGIN or more."""
    return float(entry.get("load", 0.0)) - load >= LOAD_MARGIN


def load_or_measure(ctx) -> TuningTable:
    """The cached table of this setup and link (see the module docstring), else a fresh one."""
    path, key = _cache_path(ctx)
    link = probe_link(ctx) if across_nodes(ctx) else 0.0
    load = machine_load(ctx)
    entries, found = [], None
    if ctx.rank == 0:
        entries = _read_entries(path, key)
        found = None if ctx.config.retune else pick(entries, link)
        if found is not None and stale(found, load):
            found = None
    found = ctx.comm.bcast(found, root=0)
    if found is not None:
        return TuningTable.from_json(found)
    table = measure(ctx)
    table.key, table.link_Bps, table.load = key, link, load
    if ctx.rank == 0:
        keep = [e for e in entries if not same_link(e.get("link_Bps", 0.0), link)]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"key": key, "size": ctx.size,
                                       "entries": keep + [table.to_json()]}, indent=1))
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
    algos = candidates(ctx)
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
    best_t = monotone(best_t)
    for i, (buf, calls, batch) in enumerate(plans):
        confirm(ctx, best_t, i, buf, calls, batch)
    return TuningTable(sizes, {a: best_t[j].tolist() for j, a in enumerate(algos)},
                       model=measure_levels(ctx).to_json())


def monotone(times):
    """A reduction of fewer bytes never takes longer: a noise spike at a small size is capped
    by the time measured at a larger one (running minimum from the largest size down; rows:
    candidates, columns: sizes)."""
    return np.minimum.accumulate(times[:, ::-1], axis=1)[:, ::-1]


def paired_winner(ta, tb) -> int:
    """0 when candidate a is faster than b by the median of the ratios of their paired
    samples (``ta[k]`` and ``tb[k]`` timed back to back), else 1. A burst of load from other
    processes slows both samples of a pair alike, so one noisy pair moves one ratio, and the
    median ignores it (unlike two medians taken apart, which one lucky sample can decide)."""
    ratios = np.asarray(ta, dtype=float) / np.maximum(np.asarray(tb, dtype=float), 1e-12)
    return 0 if float(np.median(ratios)) <= 1.0 else 1


def overrule(times, i, winner, loser, margin=CONFIRM_MARGIN):
    """Make the table's times at size i agree with a paired comparison that ``winner`` won
    (rows of ``times``): the loser costs at least ``margin`` times the winner there."""
    times[loser, i] = max(times[loser, i], times[winner, i] * margin)


def confirm(ctx, times, i, buf, calls, batch, reps=CONFIRM_REPS):
    """The two cheapest candidates of the table at size i, timed again head to head
    (alternating which goes first, every rank together, max over ranks per sample); the
    table is overruled where the paired comparison disagrees with it (``paired_winner``).
    Candidates more than ``CONFIRM_SPREAD`` apart are not compared: noise does not do that."""
    from mpi4py import MPI

    order = np.argsort(times[:, i], kind="stable")
    if len(order) < 2 or times[order[1], i] > CONFIRM_SPREAD * times[order[0], i]:
        return
    a, b = int(order[0]), int(order[1])
    pair = np.zeros((2, reps))
    for k in range(reps):
        for j in ((a, b) if k % 2 == 0 else (b, a)):
            fp, algo = calls[j]
            ctx.comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(batch):
                run(ctx, fp, buf, Sum, algo)
            pair[0 if j == a else 1, k] = (time.perf_counter() - t0) / batch
    ctx.comm.Allreduce(MPI.IN_PLACE, pair, MPI.MAX)
    if paired_winner(pair[0], pair[1]) == 1:
        overrule(times, i, b, a)


# -- the levels: what the cost model is fitted to --------------------------------------------

def _level(ctx, level):
    """(communicator, left, right) of this rank's ring neighbours on ``level`` ("intra": the
    node's ranks; "inter": the owners' cross communicator, one rank per node), or None when
    this rank sends nothing on it."""
    topo = ctx.topo
    if level == "intra":
        if ctx.local_size == 1:
            return None
        L, i, comm = ctx.local_size, ctx.local_rank, topo.node_comm
    else:
        if topo.num_nodes == 1 or ctx.local_rank >= topo.shards:
            return None
        L, i, comm = topo.num_nodes, topo.node_index, topo.cross_comm
    return comm, (i - 1) % L, (i + 1) % L


def exchange_time(ctx, level, nbytes, reps=5, batch=None, stat=np.median) -> float:
    """Seconds per exchange of ``nbytes`` with the ring neighbours on ``level``, every rank
    of the level at once (a ring step), ``stat`` of ``reps`` samples, max over ranks."""
    from mpi4py import MPI

    where = _level(ctx, level)
    sbuf = ctx.pool.get("level_send", nbytes)
    rbuf = ctx.pool.get("level_recv", nbytes)

    poll = ctx.config.wait == "poll"

    def once():
        # NOTE: waiting as our algorithms wait (tests, a yield of the CPU between bursts of
        # them), not in MPICH's spinning Sendrecv: the model is of our algorithms
        if where is None:
            return
        comm, left, right = where
        reqs = [comm.Irecv(rbuf, left, 21), comm.Isend(sbuf, right, 21)]
        if not poll:
            MPI.Request.Waitall(reqs)
            return
        while True:
            for _ in range(16):
                if MPI.Request.Testall(reqs):
                    return
            os.sched_yield()

    once()  # warm-up (and a rate-limited link's burst allowance spent)
    if batch is None:
        ctx.world.Barrier()
        t0 = time.perf_counter()
        once()
        est = ctx.world.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        batch = int(max(1, min(100, 2e-3 / max(est, 1e-7))))
    samples = []
    for _ in range(reps):
        ctx.world.Barrier()
        t0 = time.perf_counter()
        for _ in range(batch):
            once()
        samples.append((time.perf_counter() - t0) / batch)
    return ctx.world.allreduce(float(stat(samples)), op=MPI.MAX)


def probe_link(ctx) -> float:
    """Bytes per second through one node's link while its owners all send across (and
    receive) ``PROBE_BYTES`` at once: the link class of the tuning cache. The fastest of a few
    exchanges: load from other processes only ever slows one down."""
    # NOTE: two exchanges per sample, so that a rate-limited link's burst allowance (tbf's
    # bucket refills while the ranks meet at a barrier) is a small part of what is timed
    t = exchange_time(ctx, "inter", PROBE_BYTES, reps=4, batch=2, stat=np.min)
    return ctx.topo.shards * PROBE_BYTES / t


def _round_time(ctx, rounds=200) -> float:
    from mpi4py import MPI

    win = ctx.topo.window
    t = 0.0
    ctx.world.Barrier()
    if win is not None:
        for _ in range(10):
            win.round(0, 0)
        t0 = time.perf_counter()
        for _ in range(rounds):
            win.round(0, 0)
        t = (time.perf_counter() - t0) / rounds
    return ctx.world.allreduce(t, op=MPI.MAX)


def _memory_rates(ctx, nbytes=1 << 20, reps=7) -> tuple[float, float]:
    """Seconds per byte of one memcpy pass and of one float32 ufunc pass (a + b -> out),
    every rank at once."""
    from mpi4py import MPI

    a = np.ones(nbytes // 4, np.float32)
    b, out = a.copy(), np.empty_like(a)
    rates = []
    for fn in (lambda: np.copyto(out, a), lambda: np.add(a, b, out=out)):
        fn()
        ctx.world.Barrier()
        samples = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(5):
                fn()
            samples.append((time.perf_counter() - t0) / 5 / nbytes)
        rates.append(ctx.world.allreduce(float(np.median(samples)), op=MPI.MAX))
    return rates[0], rates[1]


def measure_levels(ctx) -> CostModel:
    """Fit the cost model's parameters (see collective.cost_model), every rank together."""
    topo = ctx.topo
    intra = inter = None
    if max(topo.node_sizes) > 1:
        intra = fit_line(LEVEL_SIZES, [exchange_time(ctx, "intra", s) for s in LEVEL_SIZES])
    if topo.num_nodes > 1:
        times = [exchange_time(ctx, "inter", s) for s in LEVEL_SIZES]
        inter = fit_line([topo.shards * s for s in LEVEL_SIZES], times)
    copy, reduce = _memory_rates(ctx)
    return CostModel(nodes=ctx.world.allgather(topo.node_index), shards=topo.shards,
                     piece=topo.piece, intra=intra, inter=inter, round_s=_round_time(ctx),
                     copy=copy, reduce=reduce,
                     slot=ctx.shm.capacity if ctx.shm is not None else 0)
