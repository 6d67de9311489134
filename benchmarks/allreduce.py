"""Allreduce benchmark in the style of nccl-tests' all_reduce_perf.

    ./mpirun.sh -n 2 python benchmarks/allreduce.py -b 4K -e 64M -f 2 [--json out.json]

For every size: the median time per call over iterations (an iteration is a batch of
back-to-back calls after a barrier; its time is the maximum over ranks), algbw = bytes / time
and busbw = algbw * 2(P-1)/P, for the ring, recursive doubling, shared-memory and auto
algorithms of ``collective`` (in place, ``allreduce_``, mismatch check included) and the MPI
library's own in-place ``Allreduce`` side by side (interleaved, so machine noise hits them
alike), and "shared_buckets": DistributedOptimizer's reduction of one bucket of that size in
the node's shared window (``overlap="shared"``, ``opt.synchronize()`` with the step check), plus
memcpy payload bandwidth (``np.copyto``, bytes copied per second) of one core (rank 0 alone
while the others wait) and of each core while every rank copies at once ("memcpy_all": what
the cores share of the memory bus), measured in the same run, and each column's busbw over
one core's memcpy. The fusion benchmark (``--fusion``, on by default) times a
DistributedOptimizer synchronize over 110 ResNet-like gradients (5 MiB; both engines) against
one flat ``allreduce_`` (and MPI's own) of the same bytes. The table goes to stdout on rank 0.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import interleaved  # noqa: E402

import collective as col  # noqa: E402
from collective.comm import context  # noqa: E402

UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("IB").removesuffix("B") or "0"
    unit = text[-1] if text[-1] in UNITS else ""
    return int(float(text[:-1] if unit else text) * UNITS[unit])


def fmt_size(n: int) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-b", "--minbytes", default="4K")
    ap.add_argument("-e", "--maxbytes", default="64M")
    ap.add_argument("-f", "--stepfactor", type=int, default=2)
    ap.add_argument("-w", "--warmup", type=int, default=3)
    ap.add_argument("-n", "--iters", type=int, default=20)
    ap.add_argument("-d", "--dtype", default="float32")
    ap.add_argument("-o", "--op", default="sum", choices=["sum", "max", "min", "average"])
    ap.add_argument("--algorithms",
                    default="ring,recursive_doubling,shared_memory,auto,mpi,shared_buckets",
                    help="columns; 'mpi' is the MPI library's own in-place Allreduce, "
                         "'shared_buckets' DistributedOptimizer's buckets in shared memory")
    ap.add_argument("--steps", default="16M",
                    help="size at which the steps of a private array's allreduce (ring, "
                         "shared memory) are timed apart (every rank at once; empty: skip)")
    ap.add_argument("--no-fusion", dest="fusion", action="store_false",
                    help="skip the fusion benchmark (110 small gradients vs one allreduce)")
    ap.add_argument("--max-seconds", type=float, default=3.0,
                    help="fewer iterations for a size whose iterations would take longer")
    ap.add_argument("--passes", type=int, default=1,
                    help="sweep the sizes this many times; medians over all passes' samples")
    ap.add_argument("--json", default=None, help="write the results to this path")
    args = ap.parse_args(argv)

    from mpi4py import MPI

    col.init()
    ctx = context()
    comm, P, rank = ctx.comm, ctx.size, ctx.rank
    dtype = np.dtype(args.dtype)
    op = col.reduce_ops.as_op(args.op)
    algos = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    lo, hi = parse_size(args.minbytes), parse_size(args.maxbytes)
    sizes = []
    s = lo
    while s <= hi:
        sizes.append(s)
        s *= args.stepfactor
        if args.stepfactor <= 1:
            break

    buf_all = np.zeros(hi // dtype.itemsize, dtype=dtype)
    copy_src = np.ones(hi, dtype=np.uint8)
    copy_dst = np.empty_like(copy_src)
    mpi_op = op.mpi_op()
    optimizers = {}  # size -> DistributedOptimizer of one bucket in the shared window

    def make(algo, buf):
        if algo == "shared_buckets":
            opt = optimizers.get(buf.nbytes)
            if opt is None:
                opt = optimizers[buf.nbytes] = shared_bucket(buf.size, dtype, op)
            return opt.synchronize
        if algo == "mpi":
            def fn():
                comm.Allreduce(MPI.IN_PLACE, buf, mpi_op)
        else:
            def fn():
                col.allreduce_(buf, op=op, algorithm=algo)
        return fn

    if rank == 0:
        print(f"# collective allreduce benchmark: P={P}, dtype={dtype}, op={op}, "
              f"host={platform.node()}, MPI={MPI.Get_library_version().splitlines()[0].strip()}")
        cols = "".join(f"{a[:18]:>28}" for a in algos)
        ratios = "".join(f"{RATIO_NAMES.get(a, a)[:8]:>9}" for a in algos)
        print(f"# {'':>10}{'':>11}{cols}{'auto/mpi':>10}{'memcpy':>8}{'mem_all':>8}"
              f"{ratios}  auto")
        sub = "".join(f"{'time(us)':>10}{'algbw':>9}{'busbw':>9}" for _ in algos)
        print(f"# {'size':>10}{'count':>11}{sub}{'busbw':>10}{'GB/s':>8}{'GB/s':>8}"
              f"{'/memcpy':>9}{'':>{9 * (len(algos) - 1)}}  chose")
    # --passes N sweeps all sizes N times and takes medians over every pass's samples: on a
    # shared machine a burst of load then hits each size in one pass only
    samples = {s: [] for s in sizes}
    copies = {s: [] for s in sizes}
    copies_all = {s: [] for s in sizes}
    meta = {}
    for _ in range(args.passes):
        for size in sizes:
            count = size // dtype.itemsize
            buf = buf_all[:count]
            fns = {a: make(a, buf) for a in algos}
            for _ in range(args.warmup):
                for a in algos:
                    fns[a]()
            # A sample is a batch of back-to-back calls (as nccl-tests times a loop), long
            # enough (>= ~2 ms) that barrier skew does not count; the algorithms interleave.
            comm.Barrier()
            t0 = time.perf_counter()
            fns[algos[0]]()
            est = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
            batch = max(1, min(200, int(2e-3 / max(est, 1e-9))))
            iters = max(3, min(args.iters, int(args.max_seconds / max(est * batch * len(algos),
                                                                       1e-9))))
            times = interleaved(comm, [fns[a] for a in algos], iters, batch)
            samples[size].append(times)
            meta[size] = (count, batch, meta.get(size, (0, 0, 0))[2] + iters)
            # one core's memcpy payload bandwidth, rank 0 alone
            cp = np.zeros(max(3, iters // 2))
            comm.Barrier()
            if rank == 0:
                src, dst = copy_src[:size], copy_dst[:size]
                np.copyto(dst, src)
                for i in range(len(cp)):
                    t0 = time.perf_counter()
                    np.copyto(dst, src)
                    cp[i] = time.perf_counter() - t0
            comm.Barrier()
            copies[size].extend(cp.tolist())
            # every rank's memcpy at once: each core's share of the memory bus
            src, dst = copy_src[:size], copy_dst[:size]
            for _ in range(max(3, iters // 2)):
                comm.Barrier()
                t0 = time.perf_counter()
                np.copyto(dst, src)
                copies_all[size].append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
    rows = []
    for size in sizes:
        count, batch, iters = meta[size]
        nbytes = count * dtype.itemsize
        med = np.median(np.concatenate(samples[size], axis=1), axis=1)
        memcpy_bw = nbytes / np.median(copies[size]) / 1e9 if rank == 0 else 0.0
        memcpy_all = nbytes / np.median(copies_all[size]) / 1e9
        row = {"bytes": nbytes, "count": count, "iters": iters, "batch": batch,
               "memcpy_GBps": memcpy_bw, "memcpy_all_GBps": memcpy_all}
        for j, a in enumerate(algos):
            algbw = nbytes / med[j] / 1e9
            row[a] = {"time_us": med[j] * 1e6, "algbw_GBps": algbw,
                      "busbw_GBps": algbw * 2 * (P - 1) / P if P > 1 else algbw}
            if rank == 0:
                row[a]["over_memcpy"] = row[a]["busbw_GBps"] / memcpy_bw
        row["auto_choice"] = ctx.choices.get(nbytes, "-")
        if "auto" in algos and "mpi" in algos:
            row["auto_over_mpi"] = row["auto"]["busbw_GBps"] / row["mpi"]["busbw_GBps"]
        rows.append(row)
        if rank == 0:
            cells = "".join(f"{row[a]['time_us']:>10.1f}{row[a]['algbw_GBps']:>9.2f}"
                            f"{row[a]['busbw_GBps']:>9.2f}" for a in algos)
            ratio = f"{row.get('auto_over_mpi', float('nan')):>10.2f}"
            over = "".join(f"{row[a]['over_memcpy']:>9.2f}" for a in algos)
            print(f"  {fmt_size(nbytes):>10}{count:>11}{cells}{ratio}{memcpy_bw:>8.2f}"
                  f"{memcpy_all:>8.2f}{over}  {row['auto_choice']}", flush=True)
    fusion_out = fusion(comm, op, args.iters) if args.fusion else None
    steps_out = private_steps(comm, parse_size(args.steps), dtype) if args.steps and P > 1 else None
    # the cost of the mismatch check alone: one handshake (shared memory on one node, else an
    # 8-byte recursive-doubling butterfly), next to an 8-byte MPI Allreduce for scale
    from collective.algorithms import handshake
    from collective.safety import describe, fingerprint

    fp = fingerprint(describe("allreduce", (1,), dtype, op, "auto"))
    word = np.zeros(1, np.int64)
    # and what the check and the Python dispatch add to MPI's own at 4 KiB (what auto pays
    # where it chooses MPI's own): the raw call, the check + the raw call, allreduce_("mpi")
    small = [np.ones(1024, dtype) for _ in range(3)]
    check = {"handshake": lambda: handshake(ctx, fp),
             "mpi_allreduce_8B": lambda: comm.Allreduce(MPI.IN_PLACE, word, MPI.MAX),
             "mpi_4K": lambda: comm.Allreduce(MPI.IN_PLACE, small[0], mpi_op),
             "check_mpi_4K": lambda: (handshake(ctx, fp),
                                      comm.Allreduce(MPI.IN_PLACE, small[1], mpi_op)),
             "api_mpi_4K": lambda: col.allreduce_(small[2], op=op, algorithm="mpi")}
    check_us = {k: v * 1e6 for k, v in medians(comm, check, 15, 100).items()}
    if rank == 0:
        print(f"# mismatch check alone (handshake, {'shared memory' if ctx.shm else 'butterfly'}):"
              f" {check_us['handshake']:.2f} us per call; an 8-byte MPI Allreduce: "
              f"{check_us['mpi_allreduce_8B']:.2f} us")
        print(f"# 4K through MPI's own: the call {check_us['mpi_4K']:.2f} us, with the check "
              f"{check_us['check_mpi_4K']:.2f} us, allreduce_(algorithm='mpi') "
              f"{check_us['api_mpi_4K']:.2f} us")
        if "auto" in algos and "mpi" in algos:
            worst = min(rows, key=lambda r: r["auto_over_mpi"])
            print(f"# auto vs MPI Allreduce: worst busbw ratio {worst['auto_over_mpi']:.2f} "
                  f"at {fmt_size(worst['bytes'])}")
        r16 = next((r for r in rows if r["bytes"] == 16 << 20), None)
        if r16 is not None and P > 1:
            # bytes each rank moves per payload byte, against memcpy's 2 (one read, one
            # write): the ring of a private array (MPICH's single-copy receive, the reduction
            # reading two and writing one, the allgather's receive) 7(P-1)/P. NOTE: not the
            # shared buckets' bound: they read P segments of N/P and write the same lines back,
            # an in-place pass, which moves less than a memcpy (that also fetches its
            # destination lines before writing them): benchmarks/shm_bound.py measures it
            share = r16["memcpy_all_GBps"] / r16["memcpy_GBps"]
            print(f"# 16M bounds with every core copying at once ({share:.2f}x one core's "
                  f"memcpy each): ring of a private array <= {4 / 7 * share:.2f}x one-core "
                  f"memcpy; shared buckets: the concurrent in-place pass (shm_bound.py)")
        for a in ("auto", "shared_buckets"):
            if r16 is not None and a in algos:
                print(f"# 16M: {a} busbw {r16[a]['busbw_GBps']:.2f} GB/s = "
                      f"{r16[a]['over_memcpy']:.2f}x one-core memcpy "
                      f"({r16['memcpy_GBps']:.2f} GB/s; each core's while all copy: "
                      f"{r16['memcpy_all_GBps']:.2f} GB/s)")
        if args.json:
            out = {"benchmark": "allreduce", "P": P, "passes": args.passes, "dtype": str(dtype),
                   "op": str(op),
                   "host": platform.node(), "mpi": MPI.Get_library_version().splitlines()[0],
                   "algorithms": algos, "tuning": ctx.tuning and ctx.tuning.to_json(), "rows": rows,
                   "check_us": check_us, "fusion": fusion_out,
                   "steps": steps_out}
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(out, indent=1))


RATIO_NAMES = {"recursive_doubling": "rd", "shared_memory": "shm", "shared_buckets": "shm_bkt"}


def shared_bucket(count, dtype, op):
    """A DistributedOptimizer whose one bucket of ``count`` elements lives in the shared
    window (private memory where it cannot be had: the column then shows the rings)."""
    import dlsys as ds

    p = ds.zeros(count, dtype=dtype, requires_grad=True)
    opt = col.DistributedOptimizer(ds.optim.SGD([p], lr=0.0), op=op, overlap="shared",
                                   bucket_cap_mb=max(25, count * dtype.itemsize / 2**20))
    p.grad = ds.zeros(count, dtype=dtype)
    return opt


def medians(comm, fns: dict, iters: int, batch: int) -> dict:
    """Median seconds per call of each of ``fns`` (name -> function), from
    ``timing.interleaved``'s samples."""
    times = interleaved(comm, list(fns.values()), iters, batch)
    return {k: float(np.median(row)) for k, row in zip(fns, times, strict=True)}


def private_steps(comm, nbytes, dtype, reps=15):
    """The steps of the allreduce of a private array of ``nbytes`` timed apart, every rank at
    once (medians, max over ranks), for the ring and for the shared-memory reduce-scatter:
    a memcpy of the array; the ring's exchange of one segment with the neighbours (MPI
    Isend/Irecv: what each ring step moves) and its reduction of one segment (numpy's add of
    two segments into one); the shared-memory schedule's work on private memory (no other core
    reads it): the copy of the P - 1 segments the others own, the owner's reduction of its
    segment from P inputs into two outputs, the copy of P - 1 segments back; and both whole
    allreduces."""
    from mpi4py import MPI

    from collective.algorithms.shared_memory import reducer

    P, r = comm.Get_size(), comm.Get_rank()
    n = nbytes // dtype.itemsize
    seg = n // P
    a, b = np.ones(n, dtype), np.ones(n, dtype)
    send, recv = a[:seg], b[:seg]
    left, right = (r - 1) % P, (r + 1) % P
    others = np.ones((P - 1, seg), dtype)
    owner_reduce = reducer(dtype, np.add, P)

    def exchange():
        MPI.Request.Waitall([comm.Irecv(recv, left, 7), comm.Isend(send, right, 7)])

    ring_buf, shm_buf = np.ones(n, dtype), np.ones(n, dtype)
    fns = {"memcpy": lambda: np.copyto(b, a), "exchange_segment": exchange,
           "add_segment": lambda: np.add(a[:seg], b[:seg], out=a[:seg]),
           "ring": lambda: col.allreduce_(ring_buf, op=col.Sum, algorithm="ring"),
           "copy_others": lambda: np.copyto(b[seg:], a[seg:]),
           "owner_reduce": lambda: owner_reduce([a[:seg], *others], a[:seg], b[:seg], 0),
           "copy_back": lambda: np.copyto(a[seg:], b[seg:]),
           "shared_memory": lambda: col.allreduce_(shm_buf, op=col.Sum,
                                                   algorithm="shared_memory")}
    t = medians(comm, fns, reps, 1)
    # the ring: 2(P-1) exchanges of a segment and P-1 reductions of one
    model = 2 * (P - 1) * t["exchange_segment"] + (P - 1) * t["add_segment"]
    shm_model = t["copy_others"] + t["owner_reduce"] + t["copy_back"]
    if r == 0:
        ms = {k: v * 1e3 for k, v in t.items()}
        print(f"# ring steps at {fmt_size(nbytes)} (every rank at once): memcpy "
              f"{ms['memcpy']:.2f} ms, segment exchange {ms['exchange_segment']:.2f} "
              f"ms, segment add {ms['add_segment']:.2f} ms; 2(P-1) exchanges + (P-1) adds "
              f"= {model * 1e3:.2f} ms; the ring {ms['ring']:.2f} ms")
        print(f"# shared-memory steps at {fmt_size(nbytes)} on private memory (every rank at "
              f"once): copy of the others' segments {ms['copy_others']:.2f} ms, owner's "
              f"reduction {ms['owner_reduce']:.2f} ms, copy back {ms['copy_back']:.2f} ms; sum "
              f"{shm_model * 1e3:.2f} ms; the allreduce {ms['shared_memory']:.2f} ms (through "
              f"the window, in pieces)")
    return {"bytes": nbytes, "seconds": t, "steps_model_s": model,
            "shm_steps_model_s": shm_model}


def fusion(comm, op, reps):
    """DistributedOptimizer synchronize over 110 ResNet-like gradients (5 MiB) against one
    flat allreduce_ of the same bytes: medians of interleaved samples, max over ranks."""
    from mpi4py import MPI
    from scaling import resnet_like_shapes

    import dlsys as ds

    shapes = resnet_like_shapes()
    nbytes = int(sum(np.prod(s) for s in shapes)) * 4
    fns = {}
    for overlap in ("shared", "nonblocking"):
        params = [ds.zeros(*s, requires_grad=True) for s in shapes]
        opt = col.DistributedOptimizer(ds.optim.SGD(params, lr=0.0), op=op, overlap=overlap)
        fns[f"sync_{overlap}"] = opt.synchronize
    flat = np.zeros(nbytes // 4, np.float32)
    fns["flat_allreduce_"] = lambda: col.allreduce_(flat, op=op)
    fns["flat_mpi"] = lambda: comm.Allreduce(MPI.IN_PLACE, flat, op.mpi_op())
    for fn in fns.values():
        fn()
    t = medians(comm, fns, max(reps, 15), 5)
    out = {"tensors": len(shapes), "bytes": nbytes, "seconds": t,
           "ratio_shared": t["sync_shared"] / t["flat_allreduce_"],
           "ratio_nonblocking": t["sync_nonblocking"] / t["flat_allreduce_"]}
    if comm.Get_rank() == 0:
        cells = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in t.items())
        print(f"# fusion: {len(shapes)} gradients, {nbytes / 2**20:.2f} MiB: {cells}; "
              f"synchronize / one flat allreduce_: shared {out['ratio_shared']:.2f}x, "
              f"nonblocking {out['ratio_nonblocking']:.2f}x")
    return out


if __name__ == "__main__":
    main()
