"""collective with CUDA tensors on every rank: allreduce_ in place, allreduce out of place,
broadcast_, and DistributedOptimizer (tests/test_cuda_collective.py asserts on the reports)."""

from __future__ import annotations

import numpy as np

import collective as col
from ranks.report import report

col.init()
from dlsys.backend.cuda import select_device_for_local_rank  # noqa: E402

gpu = select_device_for_local_rank(col.local_rank())  # before any CUDA work
import dlsys as ds  # noqa: E402
from dlsys import nn, optim  # noqa: E402

r = col.rank()
x = ds.tensor(np.arange(5, dtype=np.float32) + r, device="cuda")
ptr_before = x.data_ptr()
y = col.allreduce_(x, op=col.Sum)
z = col.allreduce(ds.tensor(np.full(3, r + 1.0), device="cuda"), op=col.Average)
b = ds.tensor(np.full(2, float(r)), device="cuda")
col.broadcast_(b, root=1)

ds.manual_seed(0)
model = nn.Linear(3, 2).to("cuda")
col.broadcast_parameters(model.state_dict(), root=0)
opt = col.DistributedOptimizer(optim.SGD(model.parameters(), lr=0.5, momentum=0.9),
                               named_parameters=model.named_parameters())
rng = np.random.default_rng(0)
X, Y = rng.standard_normal((4, 3)).astype(np.float32), np.array([0, 1, 1, 0])
xs, ys = ds.tensor(X[2 * r:2 * r + 2], device="cuda"), ds.tensor(Y[2 * r:2 * r + 2], device="cuda")
for _ in range(2):
    opt.zero_grad()
    nn.CrossEntropyLoss()(model(xs), ys).backward()
    opt.step()
report(same=(y is x and x.data_ptr() == ptr_before), x=x.numpy().tolist(), z=z.numpy().tolist(),
       zdev=str(z.device), b=b.numpy().tolist(), gpu=gpu,
       params=[p.numpy().tolist() for p in model.parameters()])
