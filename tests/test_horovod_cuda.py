"""Horovod's API (issue 14) with CUDA tensors on 2 ranks: asynchronous, grouped, alltoall and
differentiable calls return their results on the device (tests/ranks/horovod_cuda.py). Runs on
GPUs or under the Numba CUDA simulator; skipped with the reason when neither is available."""

from __future__ import annotations

import os

import pytest
from mpi_harness import run_ranks

import dlsys as ds

pytestmark = pytest.mark.mpi

if not ds.cuda_is_available():
    pytest.skip("numba-cuda is not installed, or no CUDA GPU and its simulator is off (run with "
                "NUMBA_ENABLE_CUDASIM=1 set before Python starts)", allow_module_level=True)


def test_horovod_api_with_cuda_tensors():
    env = {"NUMBA_ENABLE_CUDASIM": os.environ["NUMBA_ENABLE_CUDASIM"]} \
        if os.environ.get("NUMBA_ENABLE_CUDASIM") else None
    res = run_ranks("horovod_cuda", 2, timeout=180, env=env, check=True)
    got = res.by_rank()
    assert sorted(got) == [0, 1], res.output
    for rep in got.values():
        assert rep["inplace_is_x"] and rep["x"] == [1.0, 3.0, 5.0, 7.0]
        assert rep["y"] == [1.0] * 3 and rep["ydev"].startswith("cuda")
        assert rep["grouped"] == [[1.5, 1.5], [[2.0, 2.0], [2.0, 2.0]]]
        assert all(d.startswith("cuda") for d in rep["grouped_dev"])
        assert rep["alltoall"] == [0.0, 1.0] and rep["alltoall_dev"].startswith("cuda")
        assert rep["received"] == [1, 1] and "cpu" in rep["received_dev"]
        assert rep["grad"] == [2.0] * 3 and rep["grad_dev"].startswith("cuda")
