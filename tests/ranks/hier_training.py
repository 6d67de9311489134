"""Guarantees 1 and 2 across hosts with DistributedOptimizer over the hierarchical allreduce
(``auto`` across nodes; every engine: the non-blocking one runs ``HierRing`` per bucket, the
thread and inline ones the blocking hierarchical allreduce): the parameters of one process
with P times the batch, bitwise-identical replicas after every step.

Reports the errors, the agreement, the algorithm each engine used for each bucket, and
``crossed`` (the gradient bytes reduced: every host's link carried at least that many).
"""

from __future__ import annotations

import numpy as np
from multihost_common import digest, placement, report

import collective as col
import dlsys as ds
import dlsys.nn.functional as F
from collective import tuning
from collective.comm import context
from dlsys import nn
from dlsys.data import DistributedSampler, TensorDataset

col.init()
P, R = col.size(), col.rank()
N_IN, HIDDEN, N_OUT, B, STEPS = 6, 48, 3, 4, 10
rng = np.random.default_rng(0)
X = rng.standard_normal((P * B * STEPS, N_IN))
Y = rng.integers(0, N_OUT, len(X))
DATA = TensorDataset(X, Y)


def batches():
    out = []
    for r in range(P):
        s = DistributedSampler(DATA, num_replicas=P, rank=r, shuffle=True, seed=5)
        s.set_epoch(0)
        idx = np.asarray(list(iter(s)))
        out.append([idx[t * B:(t + 1) * B] for t in range(STEPS)])
    return out


BATCHES = batches()


def model_for(dtype, seed):
    ds.manual_seed(seed)
    return nn.Sequential(nn.Linear(N_IN, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, HIDDEN),
                         nn.Tanh(), nn.Linear(HIDDEN, N_OUT)).to(np.dtype(dtype))


def params_of(model):
    return [np.array(p.numpy()) for p in model.parameters()]


def train(opt_name, dtype, distributed, **kw):
    dtype = np.dtype(dtype)
    model = model_for(dtype, seed=1 + (R if distributed else 0))
    opt = (ds.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if opt_name == "sgd"
           else ds.optim.Adam(model.parameters(), lr=0.01))
    if distributed:
        col.broadcast_parameters(model.state_dict(), root=0)
        opt = col.DistributedOptimizer(opt, named_parameters=model.named_parameters(), **kw)
    agree = True
    for t in range(STEPS):
        opt.zero_grad()
        idx = BATCHES[R][t] if distributed else np.concatenate([b[t] for b in BATCHES])
        F.cross_entropy(model(ds.tensor(X[idx], dtype=dtype)), ds.tensor(Y[idx])).backward()
        opt.step()
        if distributed:
            agree = agree and len(set(col.allgather_object(digest(params_of(model))))) == 1
    return params_of(model), agree, opt


def rel_err(a, b):
    return max(float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-30))
               for x, y in zip(a, b, strict=True))


ctx = context()
out, crossed = {}, 0
for opt_name, dtype in (("sgd", "float64"), ("adam", "float32")):
    ref = train(opt_name, dtype, False)[0]
    for engine in ("nonblocking", "thread", "inline"):
        # small buckets: several reductions per step, started during backward
        got, agree, opt = train(opt_name, dtype, True, overlap=engine, bucket_cap_mb=0.004)
        key = f"{opt_name}_{dtype}_{engine}"
        out[f"{key}_err"], out[f"{key}_agree"] = rel_err(got, ref), agree
        choose = tuning.choose_in_flight if engine == "nonblocking" else tuning.choose_own
        out[f"{key}_algorithms"] = sorted({choose(ctx, b.nbytes) for b in opt.buckets})
        out[f"{key}_buckets"] = len(opt.buckets)
        crossed += STEPS * sum(b.nbytes for b in opt.buckets)
report(crossed=crossed, cross_rank=col.cross_rank(), cross_size=col.cross_size(), **out,
       **placement())
