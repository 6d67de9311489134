"""collective with CUDA tensors on 2 MPI ranks (staged through host buffers): allreduce_ in
place, allreduce out of place, broadcast_; every rank binds its GPU from its local rank first.

Runs on GPUs or under the Numba CUDA simulator (the ranks inherit NUMBA_ENABLE_CUDASIM=1);
skipped with the reason when neither is available.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from mpi_harness import run_mpi

import dlsys as ds

pytestmark = pytest.mark.mpi

if not ds.cuda_is_available():
    pytest.skip("numba-cuda is not installed, or no CUDA GPU and its simulator is off (run with "
                "NUMBA_ENABLE_CUDASIM=1 set before Python starts)", allow_module_level=True)

CODE = """
import numpy as np
import collective as col
col.init()
from dlsys.backend.cuda import select_device_for_local_rank
gpu = select_device_for_local_rank(col.local_rank())  # before any CUDA work
import dlsys as ds
r = col.rank()
x = ds.tensor(np.arange(5, dtype=np.float32) + r, device="cuda")
data_before = x._data
y = col.allreduce_(x, op=col.Sum)
z = col.allreduce(ds.tensor(np.full(3, r + 1.0), device="cuda"), op=col.Average)
b = ds.tensor(np.full(2, float(r)), device="cuda")
col.broadcast_(b, root=1)

from dlsys import nn, optim
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
report(same=(y is x and x._data is data_before), x=x.numpy().tolist(), z=z.numpy().tolist(),
       zdev=str(z.device), b=b.numpy().tolist(), gpu=gpu,
       params=[p.numpy().tolist() for p in model.parameters()])
"""


def test_allreduce_cuda_tensors_two_ranks():
    env = {"NUMBA_ENABLE_CUDASIM": os.environ["NUMBA_ENABLE_CUDASIM"]} \
        if os.environ.get("NUMBA_ENABLE_CUDASIM") else None
    res = run_mpi(CODE, 2, timeout=120, env=env, check=True)
    got = res.by_rank()
    assert sorted(got) == [0, 1], res.output
    want_x = (2 * np.arange(5) + 1).tolist()
    for r in (0, 1):
        assert got[r]["same"], "allreduce_ must work in place on the CUDA tensor"
        assert got[r]["x"] == want_x
        np.testing.assert_allclose(got[r]["z"], [1.5] * 3)
        assert got[r]["zdev"].startswith("cuda")
        assert got[r]["b"] == [1.0, 1.0]
    # DistributedOptimizer on CUDA parameters == one process with the whole batch (CPU)
    from dlsys import nn, optim

    ds.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3)).astype(np.float32), np.array([0, 1, 1, 0])
    for _ in range(2):
        opt.zero_grad()
        nn.CrossEntropyLoss()(model(ds.tensor(x)), ds.tensor(y)).backward()
        opt.step()
    for i, p in enumerate(model.parameters()):
        assert got[0]["params"][i] == got[1]["params"][i]  # replicas agree bitwise
        np.testing.assert_allclose(got[0]["params"][i], p.numpy(), rtol=1e-5, atol=1e-6)
