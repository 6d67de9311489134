"""Guarantees 1 and 2 across hosts: DistributedOptimizer over P ranks with per-rank batch B
(DistributedSampler) trains to the parameters of one process with batch P*B over the same
samples, and every rank holds bitwise-identical parameters after every step.

The set-up mirrors tests/distributed_common.py (the one-node version): every rank computes the
single-process reference itself. A wider hidden layer, so that the gradients are not lost among
the launcher's own messages when the test counts the bytes on the links.
"""

from __future__ import annotations

import numpy as np
from multihost_common import digest, placement, report

import collective as col
import dlsys as ds
import dlsys.nn.functional as F
from dlsys import nn
from dlsys.data import DistributedSampler, TensorDataset

col.init()
P, R = col.size(), col.rank()
N_IN, HIDDEN, N_OUT, B, STEPS = 6, 48, 3, 4, 10
rng = np.random.default_rng(0)
X = rng.standard_normal((P * B * 2 * STEPS, N_IN))
Y = rng.integers(0, N_OUT, len(X))
DATA = TensorDataset(X, Y)


def model_for(dtype, seed):
    ds.manual_seed(seed)
    m = nn.Sequential(nn.Linear(N_IN, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, HIDDEN), nn.Tanh(),
                      nn.Linear(HIDDEN, N_OUT))
    return m.to(np.dtype(dtype))


def rank_batches(per_rank):
    """out[r][t]: the indices rank r trains on at pass t (DistributedSampler, as a script)."""
    out = []
    for r in range(P):
        s = DistributedSampler(DATA, num_replicas=P, rank=r, shuffle=True, seed=5)
        s.set_epoch(0)
        idx = np.asarray(list(iter(s)))
        out.append([idx[t * per_rank:(t + 1) * per_rank] for t in range(len(idx) // per_rank)])
    return out


BATCHES = rank_batches(B)


def params_of(model):
    return [np.array(p.numpy()) for p in model.parameters()]


def make_opt(name, model):
    if name == "sgd":
        return ds.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return ds.optim.Adam(model.parameters(), lr=0.01)


def train(opt_name, dtype, distributed, k=1, **kw):
    """STEPS steps of k backward passes of B samples per rank (distributed), or of one pass over
    the union of all ranks' samples (the reference). Returns (parameters, replicas agreed after
    every step, gradient bytes allreduced)."""
    dtype = np.dtype(dtype)
    model = model_for(dtype, seed=1 + (R if distributed else 0))  # broadcast must fix rank > 0
    opt = make_opt(opt_name, model)
    if distributed:
        col.broadcast_parameters(model.state_dict(), root=0)
        opt = col.DistributedOptimizer(opt, named_parameters=model.named_parameters(),
                                       backward_passes_per_step=k, **kw)
    agree = True
    for t in range(STEPS):
        opt.zero_grad()
        passes = [[BATCHES[r][t * k + j] for r in range(P)] for j in range(k)]
        if distributed:
            for j in range(k):
                x, y = X[passes[j][R]], Y[passes[j][R]]
                loss = F.cross_entropy(model(ds.tensor(x, dtype=dtype)), ds.tensor(y))
                (loss * (1.0 / k) if k > 1 else loss).backward()
        else:
            idx = np.concatenate([i for p in passes for i in p])
            loss = F.cross_entropy(model(ds.tensor(X[idx], dtype=dtype)), ds.tensor(Y[idx]))
            loss.backward()
        opt.step()
        if distributed:
            agree = agree and len(set(col.allgather_object(digest(params_of(model))))) == 1
    reduced = STEPS * sum(p.nbytes for p in params_of(model)) if distributed else 0
    return params_of(model), agree, reduced


def rel_err(a, b):
    return max(float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-30))
               for x, y in zip(a, b, strict=True))


out = {}
crossed = 0  # gradient bytes allreduced without compression: each host's link carried them
for opt_name in ("sgd", "adam"):
    for dtype in ("float64", "float32"):
        ref = train(opt_name, dtype, False)[0]
        got, agree, nbytes = train(opt_name, dtype, True)
        out[f"{opt_name}_{dtype}_err"], out[f"{opt_name}_{dtype}_agree"] = rel_err(got, ref), agree
        crossed += nbytes

first = train("adam", "float32", True)[0]  # guarantee 3 across hosts: the same run twice
second = train("adam", "float32", True)[0]
out["deterministic"] = digest(first) == digest(second)

ref = train("sgd", "float64", False, k=2)[0]  # 2 backward passes per step
got, out["accum_agree"], nbytes = train("sgd", "float64", True, k=2)
out["accum_err"], crossed = rel_err(got, ref), crossed + nbytes

plain = train("sgd", "float32", True)[0]
got, out["fp16_agree"], _ = train("sgd", "float32", True, compression=col.Compression.fp16)
out["fp16_err"] = rel_err(got, plain)

ref = train("sgd", "float64", False)[0]
for name, cap in (("tiny", 1e-7), ("huge", 1e5)):  # a bucket per parameter / one bucket
    got, out[f"{name}_agree"], nbytes = train("sgd", "float64", True, bucket_cap_mb=cap)
    out[f"{name}_err"], crossed = rel_err(got, ref), crossed + nbytes

report(crossed=crossed, **out, **placement())
