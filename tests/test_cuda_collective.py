"""collective with CUDA tensors on 2 MPI ranks (staged through host buffers): allreduce_ in
place, allreduce out of place, broadcast_; every rank binds its GPU from its local rank first.

Runs on GPUs or under the Numba CUDA simulator (the ranks inherit NUMBA_ENABLE_CUDASIM=1);
skipped with the reason when neither is available.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from mpi_harness import run_ranks

import dlsys as ds

pytestmark = pytest.mark.mpi

if not ds.cuda_is_available():
    pytest.skip("numba-cuda is not installed, or no CUDA GPU and its simulator is off (run with "
                "NUMBA_ENABLE_CUDASIM=1 set before Python starts)", allow_module_level=True)



def test_allreduce_cuda_tensors_two_ranks():
    env = {"NUMBA_ENABLE_CUDASIM": os.environ["NUMBA_ENABLE_CUDASIM"]} \
        if os.environ.get("NUMBA_ENABLE_CUDASIM") else None
    res = run_ranks("cuda_collectives", 2, timeout=120, env=env, check=True)
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
