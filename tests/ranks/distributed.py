"""DistributedOptimizer's guarantees on every rank (tests/test_distributed.py asserts on them):
equivalence with one process, agreement, determinism, engines, views, the API's rules."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np

import collective as col
import dlsys as ds
from dlsys import nn
from ranks.report import report
from ranks.training import (
    BATCHES,
    N_IN,
    N_OUT,
    P,
    R,
    X,
    Y,
    digest,
    loss_of,
    model_for,
    params_of,
    rel_err,
    replicas_agree,
    train,
)

out = {}


def equivalence():
    for opt_name in ("sgd", "adam"):
        for dtype in ("float64", "float32"):
            ref = train(opt_name, dtype, False)[0]
            got, agree, _, _ = train(opt_name, dtype, True, check_replicas=True)
            out[f"{opt_name}_{dtype}_err"] = rel_err(got, ref)
            out[f"{opt_name}_{dtype}_agree"] = agree
    first = train("adam", "float32", True)[0]
    second = train("adam", "float32", True)[0]
    out["deterministic"] = digest(first) == digest(second)
    # k = 2 backward passes per step == one pass over twice the samples
    ref = train("sgd", "float64", False, k=2)[0]
    got, agree, _, _ = train("sgd", "float64", True, k=2, check_replicas=True)
    out["accum_err"], out["accum_agree"] = rel_err(got, ref), agree


def compression_caps_engines():
    # fp16 compression is close to fp32, and replicas still agree bitwise
    plain = train("sgd", "float32", True)[0]
    got, agree, _, _ = train("sgd", "float32", True, compression=col.Compression.fp16,
                             check_replicas=True)
    out["fp16_err"], out["fp16_agree"] = rel_err(got, plain), agree
    # tiny and huge bucket caps: one bucket per parameter / one bucket; same result
    ref = train("sgd", "float64", False)[0]
    for name, cap in (("tiny", 1e-7), ("huge", 1e5)):
        got, agree, opt, model = train("sgd", "float64", True, bucket_cap_mb=cap,
                                       check_replicas=True)
        out[f"{name}_err"], out[f"{name}_agree"] = rel_err(got, ref), agree
        out[f"{name}_buckets"] = len(opt.buckets)
    out["n_params"] = len(list(model.parameters()))
    # every overlap engine gives the same result (auto = non-blocking rings on the CPU)
    for mech in ("thread", "inline", "nonblocking"):
        got, agree, _, _ = train("sgd", "float64", True, overlap=mech, bucket_cap_mb=1e-4,
                                 check_replicas=True)
        fp16, agree16, _, _ = train("sgd", "float32", True, overlap=mech, bucket_cap_mb=1e-4,
                                    compression=col.Compression.fp16, check_replicas=True)
        out[f"{mech}_err"], out[f"{mech}_agree"] = rel_err(got, ref), agree and agree16
        out[f"{mech}_fp16_err"] = rel_err(fp16, plain)


def views_and_rules():
    # grads are views into the buckets; the wrapper IS the optimizer
    model = model_for("float32", 1)
    inner = ds.optim.SGD(model.parameters(), lr=0.1)
    opt = col.DistributedOptimizer(inner, named_parameters=model.named_parameters(),
                                   bucket_cap_mb=1e-4)

    def views_ok():
        flats = {id(p): b.flat.numpy() for b in opt.buckets for p in b.params}
        return all(p.grad is not None and np.shares_memory(p.grad.numpy(), flats[id(p)])
                   for p in model.parameters())

    def backward(t):
        loss_of(model, BATCHES[R][t], np.float32).backward()

    out["views_at_start"] = views_ok()
    for t in range(3):
        opt.zero_grad()
        backward(t)
        opt.step()
    out["views_after_steps"] = views_ok()
    model.zero_grad()  # the module's zero_grad sets .grad to None: the hooks re-attach the views
    backward(3)
    opt.step()
    out["views_after_module_zero_grad"] = views_ok()
    out["isinstance"] = isinstance(opt, ds.optim.SGD)
    out["same_state"] = opt.param_groups is inner.param_groups and opt.state is inner.state
    # zero_grad between backward and step is an error
    opt.zero_grad()
    backward(4)
    try:
        opt.zero_grad()
        out["zero_grad_error"] = ""
    except RuntimeError as exc:
        out["zero_grad_error"] = str(exc)
    # synchronize + clipping + skip_synchronize
    opt.synchronize()
    ds.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
    with opt.skip_synchronize():
        opt.step()
    out["clip_agree"] = replicas_agree(model)


def op_sum():
    # op=Sum gives P times the average
    model = model_for("float64", 1)
    opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.0), op=col.Sum,
                                   bucket_cap_mb=1e-4)
    loss_of(model, BATCHES[R][0]).backward()
    opt.synchronize()
    summed = [np.array(p.grad.numpy()) for p in model.parameters()]
    model = model_for("float64", 1)  # a fresh copy: a backward on `model` would start reductions
    loss_of(model, np.concatenate([BATCHES[r][0] for r in range(P)])).backward()
    out["sum_err"] = rel_err(summed, [P * np.array(p.grad.numpy()) for p in model.parameters()])


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(N_IN, N_OUT)
        self.extra = nn.Linear(N_IN, N_OUT)

    def forward(self, x, use_extra):
        y = self.body(x)
        return y + self.extra(x) if use_extra else y


def unused_and_takeover():
    # a parameter without a gradient on some ranks is reduced as zeros (no hang, replicas agree)
    ds.manual_seed(3)
    model = TwoHeads().to(np.float64)
    before = np.array(model.extra.weight.numpy())
    opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.5),
                                   named_parameters=model.named_parameters())
    for t in range(2):
        opt.zero_grad()
        x = ds.tensor(X[BATCHES[R][t]], dtype=np.float64)
        ds.nn.functional.cross_entropy(model(x, use_extra=(R == 0)),
                                       ds.tensor(Y[BATCHES[R][t]])).backward()
        opt.step()
    out["unused_agree"] = replicas_agree(model)
    out["unused_moved"] = not np.array_equal(before, model.extra.weight.numpy())
    # a second DistributedOptimizer on the same parameters takes them over (with a warning)
    model = model_for("float64", 2)
    first = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                                     named_parameters=model.named_parameters())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                                          named_parameters=model.named_parameters())
    for t in range(2):
        second.zero_grad()
        loss_of(model, BATCHES[R][t]).backward()
        second.step()
    out["takeover_warned"] = any("second DistributedOptimizer" in str(w.message) for w in caught)
    out["takeover_warning_here"] = all(w.filename == __file__ for w in caught)
    out["takeover_ok"] = not first._reducer.dirty and replicas_agree(model)


def optimizer_state():
    # broadcast_optimizer_state: rank 0 has momentum and 'step' state, the others none yet
    model = model_for("float32", 7)
    opt = ds.optim.Adam(model.parameters(), lr=0.01)
    if R == 0:
        for t in range(2):
            opt.zero_grad()
            loss_of(model, BATCHES[0][t], np.float32).backward()
            opt.step()
    col.broadcast_parameters(model.named_parameters(), root=0)
    col.broadcast_optimizer_state(opt, root=0)

    def flat_state(o):
        leaves = []

        def walk(v):
            if isinstance(v, dict):
                for key in sorted(v, key=str):
                    leaves.append(str(key))
                    walk(v[key])
            elif isinstance(v, list | tuple):
                for w in v:
                    walk(w)
            else:
                leaves.append(repr(np.asarray(v).tolist()))
        walk(o.state_dict())
        return hashlib.sha1("|".join(leaves).encode()).hexdigest()
    out["opt_state_agree"] = len(set(col.allgather_object(flat_state(opt)))) == 1
    out["opt_state_nonempty"] = len(opt.state_dict()["state"]) > 0
    out["params_agree"] = len(set(col.allgather_object(digest(params_of(model))))) == 1


for part in (equivalence, compression_caps_engines, views_and_rules, op_sum,
             unused_and_takeover, optimizer_state):
    part()
report(**out)
