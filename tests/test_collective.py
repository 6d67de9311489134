"""Collectives under mpiexec (P = 1..8, oversubscribed): exact integers, bitwise-identical
floats on every rank, untouched inputs, every collective, buffers and tensors.

Each P runs ONE MPI job that batches all checks (a job per case would spend the suite's time
starting Python processes); the job reports hashes and failures, the test compares them.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mpi_harness import ROOT, run_ranks

pytestmark = pytest.mark.mpi

ENV = {"COLLECTIVE_TUNING": "off"}  # auto with built-in defaults: no calibration in tests




@pytest.mark.parametrize("nprocs,shm", [(1, "1"), (2, "1"), (3, "1"), (4, "1"), (5, "1"),
                                         (6, "1"), (7, "1"), (8, "1"), (3, "0")])
def test_collectives_exact_and_identical(nprocs, shm):
    """shm="0": no shared-memory handshake, as across nodes (MPI-message butterfly)."""
    # ~10^6 elements on up to 3 ranks; P = 4 and SHM=0 use a smaller "big" size
    big = "1000003" if nprocs <= 3 and shm == "1" else "65537"
    res = run_ranks("collectives", nprocs, timeout=240,
                  env={**ENV, "BIG_N": big, "COLLECTIVE_SHM": shm})
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
        "assert (col.rank(), col.size(), col.local_rank(), col.local_size()) == (0, 1, 0, 1)\n"
        "x = np.arange(5.0)\n"
        "for a in ('auto', 'ring', 'recursive_doubling', 'mpi'):\n"
        "    assert np.array_equal(col.allreduce(x, op=col.Average, algorithm=a), x)\n"
        "    assert col.allreduce_(x, op=col.Sum, algorithm=a) is x\n"
        "assert np.array_equal(col.broadcast(x), x) and np.array_equal(col.allgather(x), x)\n"
        "assert np.array_equal(col.reduce_scatter(x), x)\n"
        "col.barrier(); assert col.broadcast_object(3) == 3 and col.allgather_object(1) == [1]\n"
        "try:\n"
        "    col.allreduce(np.ones(2, np.int32), op=col.Average)\n"
        "    raise SystemExit('no TypeError')\n"
        "except TypeError:\n"
        "    pass\n"
        "print('OK')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), **ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=env, cwd=ROOT)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr


def test_auto_tuning_measures_once_and_caches(tmp_path):
    env = {"COLLECTIVE_CACHE_DIR": str(tmp_path)}
    first = run_ranks("tuning_cache", 2, timeout=120, env=env)
    assert first.returncode == 0, first.output[-3000:]
    files = list(tmp_path.glob("allreduce-tuning-P2-*.json"))
    assert len(files) == 1, files
    choices = first.by_rank("choice")
    assert len(set(choices.values())) == 1  # every rank chose the same
    assert choices[0] in ("recursive_doubling", "ring", "mpi", "shared_memory")
    second = run_ranks("tuning_cache", 2, timeout=120, env=env)  # loads the cache: same table
    assert second.returncode == 0, second.output[-3000:]
    assert second.by_rank("table") == first.by_rank("table")


def test_auto_tuning_never_measures_inside_a_step(tmp_path):
    """The table is measured at start-up (an empty cache forces a measurement), never under
    the load of backward and of reductions in flight, from which it would be cached for every
    later run."""
    res = run_ranks("tuning_quiet", 2, timeout=120, env={"COLLECTIVE_CACHE_DIR": str(tmp_path)})
    assert res.returncode == 0, res.output[-3000:]
    for rank, measured in res.by_rank("measured").items():
        assert measured == ["init"], (rank, measured)
