"""A timeline of a few DistributedOptimizer steps: with ``col.start_timeline(PATH)`` and
``col.stop_timeline()`` (``MODE=api``) or with ``COLLECTIVE_TIMELINE`` set (``MODE=env``: the
file is written at exit)."""

from __future__ import annotations

import os

import numpy as np

import collective as col
import dlsys as ds
import dlsys.nn.functional as F
from dlsys import nn
from ranks.report import report

col.init()
R = col.rank()
ds.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                      nn.Linear(256, 10))
opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.01),
                               named_parameters=model.named_parameters(), bucket_cap_mb=0.1)
rng = np.random.default_rng(R)
api = os.environ["MODE"] == "api"
if api:
    col.start_timeline(os.environ["PATH_OUT"])
for _ in range(6):
    x = ds.tensor(rng.standard_normal((32, 64)).astype(np.float32))
    opt.zero_grad()
    F.cross_entropy(model(x), ds.tensor(rng.integers(0, 10, 32))).backward()
    opt.step()
    col.allreduce(np.ones(4))
    col.barrier()
written = col.stop_timeline() if api else None
report(written=written, buckets=[b.nbytes for b in opt.buckets])
