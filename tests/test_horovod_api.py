"""Horovod's API (issue 14) against manual equivalents at P = 1, 2, 3: one MPI job per P runs
tests/ranks/horovod_api.py (Product, pre/postscale, async, grouped, alltoall, process sets,
shutdown); the results must also be bitwise identical on every rank."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mpi_harness import ROOT, run_mpi, run_ranks

pytestmark = pytest.mark.mpi

ENV = {"COLLECTIVE_TUNING": "off"}  # auto with built-in costs: both fused and ring groups


@pytest.mark.parametrize("nprocs", [1, 2, 3])
def test_horovod_api_matches_manual_equivalents(nprocs):
    res = run_ranks("horovod_api", nprocs, timeout=240, env=ENV)
    assert res.returncode == 0, res.output[-4000:]
    reports = res.by_rank()
    assert sorted(reports) == list(range(nprocs)), res.output[-3000:]
    for rank, rep in reports.items():
        assert rep["nfails"] == 0, f"rank {rank}: {rep['fails']}"
    first = reports[0]["hashes"]
    for rank, rep in reports.items():
        diff = [k for k in first if rep["hashes"].get(k) != first[k]]
        assert not diff, f"rank {rank} differs bitwise from rank 0 on {diff[:10]}"


def test_single_process_without_mpiexec():
    code = (
        "import numpy as np, collective as col\n"
        "assert not col.is_initialized()\n"
        "x = np.arange(1, 5)\n"
        "assert np.array_equal(col.allreduce(x, op=col.Product), x)\n"
        "h = col.allreduce_async(x, op=col.Sum)\n"
        "assert np.array_equal(col.synchronize(h), x) and col.poll(h)\n"
        "assert np.array_equal(col.alltoall(x), x)\n"
        "assert col.join() == 0 and col.is_initialized()\n"
        "col.shutdown(); assert not col.is_initialized()\n"
        "print('OK')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), **ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr


def test_handle_never_synchronized_ends_the_job_at_exit():
    """Not a hang: the rank names the handle and the job ends non-zero."""
    code = ("import numpy as np, collective as col\n"
            "keep = col.allreduce_async(np.ones(4))\n"
            "col.barrier()\n")
    res = run_mpi(code, 2, timeout=60, env=ENV)
    assert res.returncode != 0, res.output[-3000:]
    assert "never synchronised" in res.output and "allreduce_async" in res.output, \
        res.output[-3000:]
    assert res.elapsed < 30


def test_collective_on_a_set_the_rank_is_not_in_ends_the_job():
    """Uncaught: the rank outside the set raises at once, naming itself and the set's ranks,
    and the whole job ends with that error (the members cannot learn of the call)."""
    code = ("import numpy as np, collective as col\n"
            "ps = col.ProcessSet([0, 1])\n"
            "col.allreduce(np.ones(3), process_set=ps)\n"
            "col.barrier()\n")
    res = run_mpi(code, 3, timeout=60, env=ENV)
    assert res.returncode != 0
    assert "rank 2 is not in process set" in res.output and "ranks 0, 1" in res.output, \
        res.output[-3000:]
    assert res.elapsed < 30
