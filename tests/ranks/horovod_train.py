"""Horovod's training-side API on every rank (tests/test_horovod_train.py asserts on the
reports): differentiable collectives (gradcheck across ranks), join (uneven batches == one
process on the union of the data; Horovod's bare join), gradient_predivide_factor and
DistributedOptimizer on a process set."""

from __future__ import annotations

import numpy as np

import collective as col
import dlsys as ds
from ranks.report import report
from ranks.training import (
    BATCHES,
    B,
    P,
    R,
    digest,
    loss_of,
    make_opt,
    model_for,
    params_of,
    rel_err,
    replicas_agree,
)

out = {}
fails = []


def check(cond, what):
    if not cond:
        fails.append(what)


def f64(a, requires_grad=False):
    return ds.tensor(a, dtype=ds.float64, requires_grad=requires_grad)


# -- gradcheck across ranks ------------------------------------------------------------------
def cross_gradcheck(fn, x, scale=1.0, eps=1e-6):
    """The largest |analytic - scale * numeric| / (1 + |numeric|) of L = sum over ranks of
    <fn(x_r), W_r>, perturbing one element of one rank at a time (every rank evaluates)."""
    t = f64(x, requires_grad=True)
    y = fn(t)
    w = np.random.default_rng(7 + R).standard_normal(tuple(y.shape))
    (y * f64(w)).sum().backward()
    analytic = t.grad.numpy().copy()
    sizes = col.allgather_object(x.size)
    worst = 0.0
    for s in range(P):
        for i in range(sizes[s]):
            values = []
            for sign in (1.0, -1.0):
                xp = x.copy()
                if R == s:
                    xp.flat[i] += sign * eps
                with ds.no_grad():
                    local = float((fn(f64(xp)).numpy() * w).sum())
                values.append(col.allreduce(np.array([local]), op=col.Sum)[0])
            numeric = (values[0] - values[1]) / (2 * eps)
            if R == s:
                worst = max(worst, abs(analytic.flat[i] - scale * numeric) / (1 + abs(numeric)))
    return float(col.allreduce(np.array([worst]), op=col.Max)[0])


rng = np.random.default_rng(R)
x3 = rng.standard_normal(3)
sp = [(R + q) % 2 + 1 for q in range(P)]
grad_cases = {
    # Horovod's rules; scale: the factor between them and d(sum of the ranks' losses)
    "allreduce_sum": (lambda t: col.allreduce(t, op=col.Sum), x3, 1.0),
    "allreduce_avg": (lambda t: col.allreduce(t), x3, 1.0),
    "allreduce_scaled": (lambda t: col.allreduce(t, op=col.Sum, prescale_factor=0.5,
                                                 postscale_factor=3.0), x3, 1.0),
    "allreduce_max": (lambda t: col.allreduce(t, op=col.Max), x3, 1.0),
    "allreduce_min": (lambda t: col.allreduce(t, op=col.Min), x3, 1.0),
    "allreduce_product": (lambda t: col.allreduce(t, op=col.Product), x3, 1.0),
    "allgather": (lambda t: col.allgather(t), rng.standard_normal((R + 1, 2)), 1.0 / P),
    "broadcast": (lambda t: col.broadcast(t, root=P - 1), x3, 1.0 / P),
    "reduce_scatter_sum": (lambda t: col.reduce_scatter(t, op=col.Sum),
                           rng.standard_normal((2 * P + 1, 2)), float(P)),
    "reducescatter_avg": (lambda t: col.reducescatter(t), rng.standard_normal((2 * P + 1,)),
                          float(P)),
    "alltoall": (lambda t: col.alltoall(t, splits=sp)[0], rng.standard_normal((sum(sp), 2)),
                 1.0),
    "grouped": (lambda t: col.grouped_allreduce([t, t * 2.0], op=col.Sum)[1], x3, 1.0),
}
for name, (fn, x, scale) in grad_cases.items():
    out[f"grad_{name}"] = cross_gradcheck(fn, x, scale)

# Horovod's own gradient tests: every rank passes the same upstream gradient
sizes = [3, 2, 7, 4, 6][:P]
t = f64(np.full((sizes[R], 4), float(R)), requires_grad=True)
g = np.concatenate([np.full((n, 4), float(q)) for q, n in enumerate(sizes)])
col.allgather(t).backward(f64(g))
check(np.array_equal(t.grad.numpy(), np.full((sizes[R], 4), float(R))), "allgather grad")
t = f64(np.full(5, float(R)), requires_grad=True)
col.broadcast(t, root=P - 1).backward(ds.ones(5, dtype=ds.float64))
check(np.array_equal(t.grad.numpy(), np.full(5, float(R == P - 1))), "broadcast grad")
t = f64(np.ones((4 * P, 3)), requires_grad=True)
col.reduce_scatter(t, op=col.Sum).backward(ds.ones(4, 3, dtype=ds.float64))
check(np.array_equal(t.grad.numpy(), np.full((4 * P, 3), float(P))), "reducescatter grad")
t = f64(np.ones((2 * P, 2)), requires_grad=True)
y, received = col.alltoall(t, splits=[2] * P)
y.backward(ds.ones(2 * P, 2, dtype=ds.float64))
check(np.array_equal(t.grad.numpy(), np.ones((2 * P, 2))) and received.numpy().tolist()
      == [2] * P and received.dtype == np.int32, "alltoall grad")


# -- join: uneven batches == one process on the union of the data ----------------------------
NB = [3, 5, 4, 2][:P]  # batches per rank; the last to join is the rank with the most


def train_uneven(opt_name, distributed, overlap="auto", log=None):
    model = model_for(np.float64, seed=1 + (R if distributed else 0))
    opt = make_opt(opt_name, model)
    if not distributed:
        for t in range(max(NB)):
            opt.zero_grad()
            idx = np.concatenate([BATCHES[q][t] for q in range(P) if t < NB[q]])
            loss_of(model, idx).backward()
            opt.step()
        return params_of(model), None
    col.broadcast_parameters(model.state_dict(), root=0)
    opt = col.DistributedOptimizer(opt, named_parameters=model.named_parameters(),
                                   overlap=overlap)
    with col.join(opt) as joined:
        for t in range(NB[R]):
            opt.zero_grad()
            loss = loss_of(model, BATCHES[R][t])
            loss.backward()
            opt.step()
            if log is not None:  # a functional allreduce in the loop: the joined ranks answer
                log.append(float(col.allreduce(np.array([loss.item()]), op=col.Sum)[0]))
    return params_of(model), joined.last_rank, replicas_agree(model)


for opt_name in ("sgd", "adam"):
    ref = train_uneven(opt_name, False)[0]
    for overlap in ("nonblocking", "thread"):
        log = []
        got, last, agree = train_uneven(opt_name, True, overlap, log)
        out[f"join_{opt_name}_{overlap}_err"] = rel_err(got, ref)
        out[f"join_{opt_name}_{overlap}_agree"] = agree
        out[f"join_{opt_name}_{overlap}_last"] = last
        out[f"join_{opt_name}_{overlap}_logged"] = len(log) == NB[R]

# Horovod's bare join: the joined rank answers allreduces with zeros (Average divides by P);
# anything else raises on the active ranks; join() returns the last rank, the same everywhere
if P > 1:
    for first in range(P):
        x = np.arange(6.0) + 1
        if R == first:
            ret = col.join()
        else:
            avg = col.allreduce(x, op=col.Average)
            check(np.allclose(avg, x * (P - 1) / P), f"bare join average {first}: {avg}")
            grp = col.grouped_allreduce([x, np.ones(2, np.int64)], op=col.Sum)
            check(np.array_equal(grp[0], x * (P - 1)) and grp[1].tolist() == [P - 1] * 2,
                  f"bare join grouped {first}")
            try:
                col.allgather(x)
                check(False, "allgather while a rank joined must raise")
            except RuntimeError as exc:
                check(f"rank {first} joined" in str(exc), f"joined message: {exc}")
            ret = col.join()
        check(ret != first, f"join() returned the first rank to join ({ret})")
        check(col.allgather_object(ret) == [ret] * P, "join() differs across ranks")

# -- gradient_predivide_factor: Horovod's split of the averaging -----------------------------
def train_even(distributed, **kw):
    model = model_for(np.float64, seed=1)
    opt = make_opt("sgd", model)
    if distributed:
        opt = col.DistributedOptimizer(opt, named_parameters=model.named_parameters(), **kw)
    for t in range(4):
        opt.zero_grad()
        idx = BATCHES[R][t] if distributed else np.concatenate([b[t] for b in BATCHES])
        loss_of(model, idx).backward()
        opt.step()
    return params_of(model), replicas_agree(model) if distributed else True


ref = train_even(False)[0]
for f in (2.0, float(P), 0.5):
    got, agree = train_even(True, gradient_predivide_factor=f)
    out[f"predivide_{f}_err"], out[f"predivide_{f}_agree"] = rel_err(got, ref), agree
got, agree = train_even(True, gradient_predivide_factor=2.0, compression=col.Compression.fp16)
out["predivide_fp16_err"], out["predivide_fp16_agree"] = rel_err(got, ref), agree
try:
    col.DistributedOptimizer(make_opt("sgd", model_for(np.float64, 1)), op=col.Sum,
                             gradient_predivide_factor=2.0)
    check(False, "predivide with op=Sum must raise")
except ValueError as exc:
    check("Average" in str(exc), f"predivide message: {exc}")

# -- DistributedOptimizer on a process set: reduced among the members only -------------------
evens = col.ProcessSet(list(range(0, P, 2)))
model = model_for(np.float64, seed=1)
opt = col.DistributedOptimizer(make_opt("sgd", model), named_parameters=model.named_parameters(),
                               process_set=evens)
opt.zero_grad()
loss_of(model, BATCHES[R][0]).backward()
opt.step()
ref_model = model_for(np.float64, seed=1)
ref_opt = make_opt("sgd", ref_model)
ref_opt.zero_grad()
members = evens.ranks if evens.included() else [R]
loss_of(ref_model, np.concatenate([BATCHES[q][0] for q in members])).backward()
ref_opt.step()
out["set_optimizer_err"] = rel_err(params_of(model), params_of(ref_model))
digests = col.allgather_object(digest(params_of(model)))
out["set_optimizer_agree"] = len({digests[q] for q in evens.ranks}) == 1
report(out=out, fails=fails, nfails=len(fails), B=B)
