"""The per-step layout check: ranks that diverge in control flow raise StepMismatchError in
that same step, on every rank, naming the first differing field. Each case runs on fresh
models and optimizers and reports (step of the error, error type, message) or "ok"."""

from __future__ import annotations

import numpy as np

import collective as col
import dlsys as ds
import dlsys.nn.functional as F
from dlsys import nn
from ranks.report import report

col.init()
P, R = col.size(), col.rank()
X = ds.tensor(np.random.default_rng(R).standard_normal((4, 6)).astype(np.float32))
Y = ds.tensor(np.arange(4) % 3)


def make(seed, **kw):
    ds.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                                   named_parameters=model.named_parameters(), **kw)
    return model, opt


def backward(model):
    F.cross_entropy(model(X), Y).backward()


def passes(overlap, bucket_cap_mb=25):
    """k = 2; at step 3 the last rank runs one backward pass only."""
    model, opt = make(0, backward_passes_per_step=2, overlap=overlap, bucket_cap_mb=bucket_cap_mb)
    for step in range(6):
        try:  # NOTE: the error comes from backward (a hook) or from step(), by the engine
            opt.zero_grad()
            for _ in range(1 if (step == 3 and R == P - 1) else 2):
                backward(model)
            opt.step()
        except col.StepMismatchError as exc:
            return [step, type(exc).__name__, str(exc)]
    return "ok"


def skipped_optimizer():
    """Two identical models and optimizers; at step 2 rank 1 skips the first one."""
    (ma, oa), (mb, ob) = make(0), make(1)
    for step in range(5):
        try:
            for model, opt in ((ma, oa), (mb, ob)):
                if step == 2 and R == 1 and opt is oa:
                    continue
                opt.zero_grad()
                backward(model)
                opt.step()
        except col.StepMismatchError as exc:
            return [step, type(exc).__name__, str(exc)]
    return "ok"


def restored_alone():
    """Rank 1's optimizer thinks it is at another step (as after restoring alone)."""
    model, opt = make(0)
    for step in range(5):
        if step == 2 and R == 1:
            opt.step_count = 100
        try:
            opt.zero_grad()
            backward(model)
            opt.step()
        except col.StepMismatchError as exc:
            return [step, type(exc).__name__, str(exc)]
    return "ok"


def in_step():
    """No divergence, tiny buckets (one per parameter: empty ring segments when P > numel),
    unused parameters on one rank only: no error, and the replicas agree."""
    ds.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))
    extra = nn.Linear(3, 3)
    params = list(model.parameters()) + list(extra.parameters())
    named = list(model.named_parameters()) + [("extra." + n, p) for n, p in
                                              extra.named_parameters()]
    opt = col.DistributedOptimizer(ds.optim.SGD(params, lr=0.1), named_parameters=named,
                                   bucket_cap_mb=1e-6)
    for _ in range(4):
        opt.zero_grad()
        loss = model(X).sum()
        if R == 0:
            loss = loss + extra(ds.tensor(np.ones((1, 3), np.float32))).sum()
        loss.backward()
        opt.step()
    col.check_replicas(named)
    return "ok"


def _bump(model, name, by):
    p = dict(model.named_parameters())[name]
    with ds.no_grad():
        p.numpy().reshape(-1)[0] += by


def drift():
    model, _ = make(0)
    col.check_replicas(model)  # identical: no error
    out = {}
    for case, by, atol in (("exact", 1e-7, 0), ("within_atol", 1e-7, 1e-5),
                           ("beyond_atol", 1.0, 1e-3)):
        model, _ = make(0)
        if R == 1:
            _bump(model, "0.weight", by)
        try:
            col.check_replicas(model, atol=atol)
            out[case] = "ok"
        except col.ReplicaDriftError as exc:
            out[case] = [0, type(exc).__name__, str(exc)]
    return out


def replicas_every():
    model, opt = make(0, check_replicas_every=2)
    for step in range(6):
        if step == 2 and R == 1:
            _bump(model, "2.bias", 1e-3)
        try:
            opt.zero_grad()
            backward(model)
            opt.step()
        except col.ReplicaDriftError as exc:
            return [step, type(exc).__name__, str(exc)]
    return "ok"


def nonfinite(skip):
    """At step 2 the last rank's gradient of '2.bias' is +inf: so is the reduced one."""
    model, opt = make(0, check_finite=not skip, skip_nonfinite=skip)
    before = None
    for step in range(5):
        handle = None
        if step == 2 and R == P - 1:
            handle = model[2].bias.register_hook(lambda g: g + np.inf)
        try:
            opt.zero_grad()
            backward(model)
            if step == 2:
                before = [p.numpy().copy() for p in model.parameters()]
            opt.step()
        except col.NonFiniteGradientError as exc:
            return [step, type(exc).__name__, str(exc)]
        finally:
            if handle is not None:
                handle.remove()
        if step == 2:
            unchanged = all(np.array_equal(b, p.numpy()) for b, p in
                            zip(before, model.parameters(), strict=True))
    col.check_replicas(model)
    return {"unchanged_at_2": unchanged,
            "skipped": opt.communication_stats()["skipped_steps"]}


results = {"ok": in_step(), "passes": passes("auto"), "passes_tiny": passes("auto", 1e-6),
           "passes_inline": passes("inline"), "passes_thread": passes("thread"),
           "skipped_optimizer": skipped_optimizer(), "restored_alone": restored_alone(),
           "drift": drift(), "replicas_every": replicas_every(),
           "nonfinite": nonfinite(skip=False), "skip_nonfinite": nonfinite(skip=True)}
report(results=results)
