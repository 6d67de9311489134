"""Mismatch safety (guarantees 4, 5, 6): ranks passing different sizes, dtypes, ops, algorithms,
roots or collectives get a ValueError on EVERY rank naming the ranks and what differed, within
30 s, never a hang or a "message truncated" abort; the communicator stays usable afterwards."""

from __future__ import annotations

import pytest
from mpi_harness import run_mpi, run_ranks

pytestmark = pytest.mark.mpi

ENV = {"COLLECTIVE_TUNING": "off"}



@pytest.mark.parametrize("nprocs,shm", [(2, "1"), (3, "1"), (5, "1"), (2, "0"), (3, "0"),
                                         (5, "0")])
def test_mismatch_raises_on_every_rank(nprocs, shm):
    """shm="0": the MPI-message handshake used across nodes."""
    # each error must come within 30 s (checked per scenario); the whole batch may take longer
    res = run_ranks("mismatch", nprocs, timeout=120, env={**ENV, "COLLECTIVE_SHM": shm})
    assert res.returncode == 0, res.output[-4000:]
    reports = res.by_rank("results")
    assert sorted(reports) == list(range(nprocs)), res.output[-3000:]
    bad = {(rank, k): v for rank, rr in reports.items() for k, v in rr.items() if v != "ok"}
    assert not bad, bad


def test_uncaught_mismatch_ends_job_with_error():
    code = ("import numpy as np, collective as col\n"
            "col.allreduce(np.ones(5 + col.rank()), algorithm='ring')\n")
    res = run_mpi(code, 3, timeout=30, env=ENV)
    assert res.returncode != 0
    assert "ValueError" in res.output and "shape" in res.output, res.output[-3000:]
    assert res.elapsed < 30
