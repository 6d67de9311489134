"""The training set-up the distributed rank programs share (imported on every rank): a small
MLP, data split by DistributedSampler, and the single-process reference run."""

from __future__ import annotations

import hashlib

import numpy as np

import collective as col
import dlsys as ds
import dlsys.nn.functional as F
from dlsys import nn
from dlsys.data import DistributedSampler, TensorDataset

col.init()
P, R = col.size(), col.rank()
N_IN, N_OUT, B, STEPS = 6, 3, 4, 10
_rng = np.random.default_rng(0)
X = _rng.standard_normal((P * B * 2 * STEPS, N_IN))
Y = _rng.integers(0, N_OUT, len(X))
DATA = TensorDataset(X, Y)


def model_for(dtype, seed):
    ds.manual_seed(seed)
    m = nn.Sequential(nn.Linear(N_IN, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(),
                      nn.Linear(8, N_OUT))
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


def digest(arrays):
    return hashlib.sha1(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()


def replicas_agree(model) -> bool:
    """Whether every rank holds bitwise the same parameters (a collective call)."""
    return len(set(col.allgather_object(digest(params_of(model))))) == 1


def make_opt(name, model):
    if name == "sgd":
        return ds.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return ds.optim.Adam(model.parameters(), lr=0.01)


def loss_of(model, idx, dtype=np.float64):
    return F.cross_entropy(model(ds.tensor(X[idx], dtype=dtype)), ds.tensor(Y[idx]))


def train(opt_name, dtype, distributed, k=1, check_replicas=False, **kw):
    """STEPS steps; each step k backward passes of B samples per rank (distributed), or one
    pass over the union of all ranks' samples (the single-process reference)."""
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
                loss = loss_of(model, passes[j][R], dtype)
                (loss * (1.0 / k) if k > 1 else loss).backward()
        else:
            loss_of(model, np.concatenate([i for p in passes for i in p]), dtype).backward()
        opt.step()
        if check_replicas:
            agree = agree and replicas_agree(model)
    return params_of(model), agree, opt, model


def rel_err(a, b):
    return max(float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-30))
               for x, y in zip(a, b, strict=True))
