"""DistributedOptimizer with CUDA parameters on every rank: buckets on the device, staged
through host memory (the simulator runs the kernels on the host; a real GPU the same code)."""

from __future__ import annotations

import numpy as np

import collective as col
import dlsys as ds
import dlsys.nn.functional as F
from dlsys import nn
from ranks.report import report
from ranks.training import BATCHES, N_IN, N_OUT, R, X, Y, digest, rel_err


def run(device, **kw):
    ds.manual_seed(1)
    model = nn.Sequential(nn.Linear(N_IN, 8), nn.Tanh(), nn.Linear(8, N_OUT)).to(device)
    opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                                   named_parameters=model.named_parameters(),
                                   bucket_cap_mb=1e-4, **kw)
    for t in range(3):
        opt.zero_grad()
        x = ds.tensor(X[BATCHES[R][t]], dtype=np.float32, device=device)
        F.cross_entropy(model(x), ds.tensor(Y[BATCHES[R][t]], device=device)).backward()
        opt.step()
    return [np.array(p.numpy()) for p in model.parameters()], opt._overlap


out = {}
cpu, _ = run("cpu")
for name, kw in (("none", {}), ("fp16", {"compression": col.Compression.fp16}),
                 ("nonblocking", {"overlap": "nonblocking"})):
    got, engine = run("cuda", **kw)
    out[name + "_err"] = rel_err(got, cpu)
    out[name + "_agree"] = len(set(col.allgather_object(digest(got)))) == 1
    if name == "none":
        out["engine"] = engine
report(**out)
