"""Mismatched calls on every rank: each scenario must raise on EVERY rank, naming the ranks and
what differed, within 30 s, and leave the communicator usable
(tests/test_collective_mismatch.py asserts on the reports)."""

from __future__ import annotations

import numpy as np

import collective as col
from ranks.report import report
from ranks.scenarios import Scenarios

r, P = col.rank(), col.size()
last = P - 1
scenario = Scenarios()
results = scenario.results


for algo in ("ring", "recursive_doubling", "mpi", "shared_memory", "auto"):
    for n in (10, 100_000):  # fused into the handshake / separate handshake + data phase
        scenario(f"count/{algo}/{n}",
                 lambda n=n, algo=algo: col.allreduce(np.ones(n + (r == last), np.float64),
                                                     algorithm=algo),
                 ["shape", f"rank {last}", f"({n + 1},)"])
    scenario(f"dtype/{algo}",
             lambda algo=algo: col.allreduce(np.ones(50, np.float32 if r == 0 else np.float64),
                                             algorithm=algo),
             ["dtype", "float32", "float64", "rank 0"])
    scenario(f"op/{algo}",
             lambda algo=algo: col.allreduce(np.ones(50), op=col.Sum if r == 0 else col.Max,
                                             algorithm=algo), ["op", "col.Sum", "col.Max"])
scenario("small-vs-large", lambda: col.allreduce(np.ones(10 if r == 0 else 300_000)),
         ["shape", "(10,)", "(300000,)"])
# shared memory: its reduce-scatter (several pieces) on rank 0 against one round on the others
scenario("shm-schedules", lambda: col.allreduce(np.ones(200_000 if r == 0 else 1000),
                                                algorithm="shared_memory"),
         ["shape", "(200000,)", "(1000,)"])
scenario("algorithm", lambda: col.allreduce(np.ones(99), algorithm="ring" if r == 0 else "mpi"),
         ["algorithm", "ring", "mpi", "rank 0"])
scenario("in-place-vs-out", lambda: (col.allreduce_ if r == 0 else col.allreduce)(
    np.ones(4, np.int32 if r == 0 else np.int64), op=col.Sum), ["dtype", "int32", "int64"])
scenario("collective", lambda: col.allreduce(np.ones(4)) if r == 0 else col.broadcast(np.ones(4)),
         ["collective", "allreduce", "broadcast"])
scenario("broadcast-root", lambda: col.broadcast_(np.ones(4), root=0 if r == 0 else last),
         ["root"])
scenario("broadcast-shape", lambda: col.broadcast(np.ones(4 + (r == last))), ["shape"])
scenario("allgather-trailing", lambda: col.allgather(np.ones((2, 3 + (r == last)))),
         ["shape", f"rank {last}"])
scenario("reduce_scatter-op", lambda: col.reduce_scatter(np.ones(8), op=col.Sum if r else col.Min),
         ["op"])
scenario("barrier-vs-object", lambda: col.barrier() if r == 0 else col.allgather_object(r),
         ["barrier", "allgather_object"])
# rank 0 repeats a call it has a cached fast plan for, the others change the op or the shape
for _ in range(2):
    col.allreduce(np.ones(7), op=col.Sum)
scenario("cached-plan-op", lambda: col.allreduce(np.ones(7), op=col.Sum if r == 0 else col.Max),
         ["op", "rank 0"])
scenario("cached-plan-shape", lambda: col.allreduce(np.ones(7 if r == 0 else 8), op=col.Sum),
         ["shape", "(7,)", "(8,)"])
# a local error on one rank: that rank raises its own TypeError, the others a ValueError naming it
bad = np.ones(3, np.complex128 if r == last else np.float64)
if r == last:
    scenario("local-error", lambda: col.allreduce(bad), ["complex128"], TypeError)
else:
    scenario("local-error", lambda: col.allreduce(bad), [f"rank {last}", "complex128"])
report(results=results)
