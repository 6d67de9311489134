"""Horovod's training-side API (issue 14) at P = 1, 2, 3, one MPI job per P
(tests/ranks/horovod_train.py): differentiable collectives pass a gradcheck across ranks
(with Horovod's rules: allgather and broadcast average the gradient, reducescatter scales it
by P), `with col.join(opt)` over uneven batches equals one process on the union of the data,
Horovod's bare join, gradient_predivide_factor and DistributedOptimizer on a process set."""

from __future__ import annotations

import pytest
from mpi_harness import run_ranks

pytestmark = pytest.mark.mpi

NB = [3, 5, 4]  # batches per rank in the rank program: rank 1 joins last when P > 1


@pytest.mark.parametrize("nprocs", [1, 2, 3])
def test_horovod_training_api(nprocs):
    res = run_ranks("horovod_train", nprocs, timeout=240, env={"COLLECTIVE_TUNING": "off"})
    assert res.returncode == 0, res.output[-4000:]
    reports = res.by_rank()
    assert sorted(reports) == list(range(nprocs)), res.output[-3000:]
    last = max(range(nprocs), key=lambda r: (NB[r], r))
    for rank, rep in reports.items():
        assert rep["nfails"] == 0, f"rank {rank}: {rep['fails']}"
        out = rep["out"]
        for key, value in out.items():
            if key.startswith("grad_"):
                assert value < 1e-6, (rank, key, value)
            elif key.endswith("_agree") or key.endswith("_logged"):
                assert value is True, (rank, key)
            elif key.endswith("_last"):
                assert value == last, (rank, key, value)
            elif key == "predivide_fp16_err":
                assert value < 1e-2, (rank, key, value)
            elif key.endswith("_err"):
                assert value < 1e-10, (rank, key, value)
        assert sum(k.startswith("join_") for k in out) == 16, sorted(out)
