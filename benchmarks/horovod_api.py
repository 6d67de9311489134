"""The cost of Horovod's API calls: an async handle, and a grouped call vs separate calls.

    ./mpirun.sh -n 2 python benchmarks/horovod_api.py [--tensors 100] [--elements 256]
                                                      [--json out.json]

A list of T small float32 tensors (mixed sizes around --elements) is averaged over the ranks,
each way side by side (interleaved, so machine noise hits them alike): T separate blocking
``allreduce`` calls; T ``allreduce_async`` handles in flight then synchronised; one
``grouped_allreduce``; one ``grouped_allreduce_async`` handle; and one blocking ``allreduce``
of the same bytes in one flat array (the floor). A sample is the median over iterations (each
a batch after a barrier, its time the maximum over ranks). Also one small call alone:
blocking vs async + synchronize (the cost of a handle: a hand-over to the communication
thread and back).
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


def join_step_cost(comm, iters):
    """Median time of a training step (small MLP, batch 32) outside and inside
    ``with col.join(opt)``, interleaved; every rank has the same batches, nobody joins early."""
    from mpi4py import MPI

    import dlsys as ds
    import dlsys.nn.functional as F
    from dlsys import nn

    ds.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.01),
                                   named_parameters=model.named_parameters())
    x = ds.randn(32, 64)
    y = ds.tensor(np.arange(32) % 10)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    batch = 10
    times = np.zeros((2, iters))
    for it in range(iters + 2):
        for j in range(2):
            comm.Barrier()
            t0 = time.perf_counter()
            if j:
                with col.join(opt):
                    for _ in range(batch):
                        step()
            else:
                for _ in range(batch):
                    step()
            if it >= 2:  # warm-up
                times[j, it - 2] = (time.perf_counter() - t0) / batch
    comm.Allreduce(MPI.IN_PLACE, times, MPI.MAX)
    # NOTE: a join block also ends with its exit (one handshake and the final broadcast of the
    # parameters and optimizer state), spread over the batch of steps here
    return dict(zip(("step", "step_in_join"), (np.median(times, axis=1) * 1e6).tolist(),
                    strict=True))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tensors", type=int, default=100)
    ap.add_argument("--elements", type=int, default=256, help="mean elements per tensor")
    ap.add_argument("-n", "--iters", type=int, default=30)
    ap.add_argument("-w", "--warmup", type=int, default=5)
    ap.add_argument("--no-join", action="store_true", help="skip the join step measurement")
    ap.add_argument("--json", default=None, help="write the results to this path")
    args = ap.parse_args(argv)

    from mpi4py import MPI

    world = col.init()
    comm, P, rank = MPI.COMM_WORLD, col.size(), col.rank()
    rng = np.random.default_rng(0)
    sizes = rng.integers(args.elements // 2, args.elements * 3 // 2 + 1, args.tensors)
    tensors = [rng.standard_normal(int(n)).astype(np.float32) for n in sizes]
    flat = np.concatenate(tensors)
    one = tensors[0]

    def separate():
        return [col.allreduce(t) for t in tensors]

    def handles():
        hs = [col.allreduce_async(t) for t in tensors]
        return [col.synchronize(h) for h in hs]

    def grouped():
        return col.grouped_allreduce(tensors)

    def grouped_async():
        return col.synchronize(col.grouped_allreduce_async(tensors))

    def flat_one():
        return col.allreduce(flat)

    def single():
        return col.allreduce(one)

    def single_async():
        return col.synchronize(col.allreduce_async(one))

    cases = {"separate": separate, "async_handles": handles, "grouped": grouped,
             "grouped_async": grouped_async, "flat_allreduce": flat_one,
             "one_call": single, "one_call_async": single_async}
    # the same values, whichever way (bitwise: grouped == separate == async)
    ref = separate()
    for name in ("async_handles", "grouped", "grouped_async"):
        got = cases[name]()
        assert all(a.tobytes() == b.tobytes() for a, b in zip(ref, got, strict=True)), name
    for _ in range(args.warmup):
        for fn in cases.values():
            fn()
    times = interleaved(comm, list(cases.values()), args.iters,
                        [20 if j >= 4 else 3 for j in range(len(cases))])
    med = dict(zip(cases, (np.median(times, axis=1) * 1e6).tolist(), strict=True))
    T = args.tensors
    if not args.no_join:
        med.update(join_step_cost(comm, args.iters))
    summary = {
        "grouped_over_separate": med["grouped"] / med["separate"],
        "grouped_over_flat": med["grouped"] / med["flat_allreduce"],
        "async_handles_over_separate": med["async_handles"] / med["separate"],
        "handle_cost_us": med["one_call_async"] - med["one_call"],
        "per_handle_in_flight_us": (med["async_handles"] - med["separate"]) / T,
    }
    if rank == 0:
        print(f"# Horovod API costs: P={P}, {T} float32 tensors of {int(sizes.min())}.."
              f"{int(sizes.max())} elements ({flat.nbytes / 1024:.0f} KiB in all), "
              f"host={platform.node()}, shm={'on' if world is not None else '?'}")
        print(f"# {'call':<34}{'time(us)':>12}{'per tensor(us)':>16}")
        for name, us in med.items():
            per = us / T if not name.startswith(("one_call", "flat")) else us
            print(f"  {name:<34}{us:>12.1f}{per:>16.2f}")
        print(f"# grouped / separate: {summary['grouped_over_separate']:.3f}; grouped / one flat "
              f"allreduce of the same bytes: {summary['grouped_over_flat']:.2f}")
        print(f"# async handles / separate blocking calls: "
              f"{summary['async_handles_over_separate']:.2f} "
              f"({summary['per_handle_in_flight_us']:+.1f} us per handle)")
        print(f"# one small call: async + synchronize costs {summary['handle_cost_us']:+.1f} us "
              f"over the blocking call ({med['one_call']:.1f} us)")
        if "step_in_join" in med:
            print(f"# a DistributedOptimizer step inside `with col.join(opt)` (nobody joined yet): "
                  f"{med['step_in_join']:.1f} us vs {med['step']:.1f} us outside "
                  f"({med['step_in_join'] - med['step']:+.1f} us: the step's handshake)")
        if args.json:
            out = {"benchmark": "horovod_api", "P": P, "tensors": T,
                   "elements": sizes.tolist(), "host": platform.node(),
                   "mpi": MPI.Get_library_version().splitlines()[0], "median_us": med,
                   "summary": summary}
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
