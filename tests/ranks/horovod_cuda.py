"""Horovod's API with CUDA tensors (staged through host memory; tests/test_horovod_cuda.py):
asynchronous calls (staged at submission, back on the device at synchronize), grouped calls,
alltoall and a differentiable allreduce."""

from __future__ import annotations

import numpy as np

import collective as col
from ranks.report import report

col.init()
from dlsys.backend.cuda import select_device_for_local_rank  # noqa: E402

select_device_for_local_rank(col.local_rank())  # before any CUDA work
import dlsys as ds  # noqa: E402

r, P = col.rank(), col.size()
out = {}
x = ds.tensor(np.arange(4.0) + r, dtype=ds.float32, device="cuda")
h_in = col.allreduce_async_(x, op=col.Sum)
h_out = col.allreduce_async(ds.tensor(np.ones(3) * r, dtype=ds.float32, device="cuda"),
                            op=col.Sum)
y = col.synchronize(h_out)
out["inplace_is_x"] = col.synchronize(h_in) is x
out["x"] = x.numpy().tolist()
out["y"], out["ydev"] = y.numpy().tolist(), str(y.device)
g = col.grouped_allreduce([ds.tensor(np.full(2, r + 1.0), dtype=ds.float32, device="cuda"),
                           ds.tensor(np.full((2, 2), 2.0), dtype=ds.float32, device="cuda")])
out["grouped"] = [t.numpy().tolist() for t in g]
out["grouped_dev"] = [str(t.device) for t in g]
a, received = col.alltoall(ds.tensor(np.full(P, float(r)), dtype=ds.float32, device="cuda"),
                           splits=[1] * P)
out["alltoall"], out["alltoall_dev"] = a.numpy().tolist(), str(a.device)
out["received"], out["received_dev"] = received.numpy().tolist(), str(received.device)
t = ds.tensor(np.full(3, r + 1.0), dtype=ds.float32, device="cuda", requires_grad=True)
col.allreduce(t, op=col.Sum).sum().backward()
out["grad"], out["grad_dev"] = t.grad.numpy().tolist(), str(t.grad.device)
report(**out)
