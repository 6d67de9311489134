"""Mismatched calls of Horovod's API: each scenario must raise on EVERY rank, naming the ranks
and what differed, within 30 s, and leave the communicator usable
(tests/test_horovod_mismatch.py asserts on the reports)."""

from __future__ import annotations

import gc

import numpy as np

import collective as col
from ranks.report import report
from ranks.scenarios import Scenarios

r, P = col.rank(), col.size()
last = P - 1
scenario = Scenarios()
results = scenario.results


def lst(extra=False, shape=(4, 3), dtype=np.float32):
    out = [np.ones(5, np.float32), np.ones(shape, dtype), np.ones(300_000, np.float32)]
    return out + [np.ones(2, np.float32)] if extra else out


# grouped calls with a different list on one rank
for fn in (col.grouped_allreduce, col.grouped_allreduce_, col.grouped_allgather,
           col.grouped_reduce_scatter):
    name = fn.__name__
    scenario(f"{name}/length", lambda fn=fn: fn(lst(extra=r == last)),
             ["shape", f"rank {last}", name.rstrip("_")])
    scenario(f"{name}/shape", lambda fn=fn: fn(lst(shape=(4, 3 + (r == last)))),
             ["shape", f"rank {last}", "4)"])
    scenario(f"{name}/dtype", lambda fn=fn: fn(lst(dtype=np.float64 if r == 0 else np.float32)),
             ["dtype", "rank 0", "float64"])
scenario("grouped/op", lambda: col.grouped_allreduce(lst(), op=col.Sum if r else col.Max),
         ["op", "col.Sum", "col.Max", "rank 0"])
scenario("grouped/async", lambda: col.synchronize(col.grouped_allreduce_async(
    lst(extra=r == last))), ["shape", f"rank {last}"])

# alltoall: splits on some ranks only, inconsistent splits, other dimensions
scenario("alltoall/splits-given", lambda: col.alltoall(
    np.ones(2 * P), splits=[2] * P if r == 0 else None), ["options", "splits=given", "rank 0"])
bad = [1] * P if r != last else [P + 1] + [1] * (P - 1)  # last: sums past its rows
if r == last:
    scenario("alltoall/bad-splits", lambda: col.alltoall(np.ones(P), splits=bad),
             ["splits", "sum to the first dimension"])
else:
    scenario("alltoall/bad-splits", lambda: col.alltoall(np.ones(P), splits=bad),
             [f"rank {last}", "failed", "splits"])
scenario("alltoall/trailing", lambda: col.alltoall(np.ones((P, 2 + (r == last)))),
         ["shape", f"rank {last}", "(*, 3)"])
scenario("alltoall/dtype", lambda: col.alltoall(np.ones(P, np.int32 if r else np.float32)),
         ["dtype", "int32", "float32"])

# scale factors and names are part of the call
scenario("prescale", lambda: col.allreduce(np.ones(4), prescale_factor=2.0 if r == 0 else 1.0),
         ["options", "prescale_factor=2.0", "rank 0"])
scenario("postscale/reduce_scatter", lambda: col.reduce_scatter(
    np.ones(4), postscale_factor=0.5 if r == last else 1.0), ["options", f"rank {last}"])
scenario("name", lambda: col.allreduce(np.ones(4), name=f"n{r == 0}"),
         ["name", "nTrue", "nFalse", "rank 0"])


# asynchronous calls submitted in different orders: every handle raises on every rank
def different_orders():
    a, b = np.ones(3), np.ones((2, 2))
    if r == 0:
        handles = [col.allreduce_async(a), col.allgather_async(b)]
    else:
        handles = [col.allgather_async(b), col.allreduce_async(a)]
    errors = []
    for h in reversed(handles):
        try:
            col.synchronize(h)
        except ValueError as exc:
            errors.append(str(exc))
    if len(errors) != 2:
        return
    raise ValueError(" || ".join(errors))


scenario("async/order", different_orders, ["collective differs", "allreduce()", "allgather()",
                                           "rank 0"])
scenario("async/shape", lambda: col.synchronize(col.allreduce_async(np.ones(3 + (r == last)))),
         ["shape", f"rank {last}"])
scenario("async/local-error", lambda: col.synchronize(col.allreduce_async(
    np.ones(3, np.complex64 if r == last else np.float32))),
    ["complex64"] if r == last else [f"rank {last}", "complex64"],
    TypeError if r == last else ValueError)


def dropped():
    """The last rank drops a handle: its next blocking call raises, and every rank with it."""
    h = col.allreduce_async(np.ones(3))
    if r == last:
        del h
        gc.collect()
    else:
        col.synchronize(h)
    col.barrier()


scenario("async/dropped", dropped, ["garbage collected without", "allreduce_async"]
         if r == last else [f"rank {last}", "failed", "garbage collected"],
         RuntimeError if r == last else ValueError)

# process sets: registered with different ranks; a collective on a set this rank is not in
scenario("ProcessSet/ranks", lambda: col.ProcessSet([0] if r == 0 else list(range(P))),
         ["ProcessSet", "rank 0"])
if P > 1:
    head = col.ProcessSet([0])
    if r == 0:
        scenario("ProcessSet/not-a-member", lambda: col.barrier(process_set=head), ["no error"],
                 RuntimeError)
        results["ProcessSet/not-a-member"] = ("ok" if results["ProcessSet/not-a-member"]
                                              == "no error" else
                                              results["ProcessSet/not-a-member"])
    else:
        scenario("ProcessSet/not-a-member", lambda: col.barrier(process_set=head),
                 [f"rank {r} is not in process set", "(ranks 0)"])
report(results=results)
