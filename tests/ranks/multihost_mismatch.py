"""Guarantees 4 and 6 across hosts: ranks on different hosts that pass different shapes, dtypes
or models get a ValueError on EVERY rank naming the ranks and what differed, within 30 s, and
the communicator still works afterwards. The odd one out is the last rank, on the last host.
"""

from __future__ import annotations

import numpy as np
from multihost_common import placement, report
from scenarios import Scenarios

import collective as col
import dlsys as ds
from dlsys import nn

col.init()
r, P = col.rank(), col.size()
last = P - 1
scenario = Scenarios(elements=1 << 18)
results = scenario.results


for algo in ("ring", "recursive_doubling", "mpi", "shared_memory", "auto"):
    for n in (10, 600_000):  # fused into the handshake / larger than a shared-memory slot
        scenario(f"shape/{algo}/{n}",
                 lambda n=n, algo=algo: col.allreduce(np.ones(n + (r == last), np.float32),
                                                      algorithm=algo),
                 ["shape", f"rank {last}", f"({n + 1},)", f"({n},)"])
    scenario(f"dtype/{algo}",
             lambda algo=algo: col.allreduce(np.ones(50, np.float32 if r == 0 else np.float64),
                                             algorithm=algo),
             ["dtype", "float32", "float64", "rank 0"])
scenario("broadcast-shape", lambda: col.broadcast(np.ones(4 + (r == last))), ["shape"])
scenario("allgather-trailing", lambda: col.allgather(np.ones((2, 3 + (r == last)))),
         ["shape", f"rank {last}"])
scenario("reduce_scatter-shape", lambda: col.reduce_scatter(np.ones(8 + (r == last))), ["shape"])

hidden = 9 if r == last else 8  # the last rank builds a different model
ds.manual_seed(0)
model = nn.Sequential(nn.Linear(6, hidden), nn.Tanh(), nn.Linear(hidden, 3))
scenario("optimizer", lambda: col.DistributedOptimizer(
    ds.optim.SGD(model.parameters(), lr=0.1), named_parameters=model.named_parameters()),
    [f"rank {last}", "(8, 6)", "(9, 6)"])
scenario("broadcast_parameters", lambda: col.broadcast_parameters(model.state_dict(), root=0),
         [f"rank {last}"])
report(results=results, crossed=scenario.crossed, **placement())
