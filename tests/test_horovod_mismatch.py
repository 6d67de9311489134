"""Mismatch safety of Horovod's API (issue 14): grouped calls with different lists, alltoall
with inconsistent splits, factors and names, asynchronous calls submitted in different orders
or dropped, process sets registered differently or called by a non-member: a ValueError (or
the rank's own error) on EVERY rank naming the ranks, within 30 s, and the communicator stays
usable (tests/ranks/horovod_mismatch.py)."""

from __future__ import annotations

import pytest
from mpi_harness import run_ranks

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("nprocs,shm", [(2, "1"), (3, "1"), (3, "0")])
def test_horovod_mismatch_raises_on_every_rank(nprocs, shm):
    """shm="0": the MPI-message handshake used across nodes."""
    res = run_ranks("horovod_mismatch", nprocs, timeout=120,
                    env={"COLLECTIVE_TUNING": "off", "COLLECTIVE_SHM": shm})
    assert res.returncode == 0, res.output[-4000:]
    reports = res.by_rank("results")
    assert sorted(reports) == list(range(nprocs)), res.output[-3000:]
    bad = {(rank, k): v for rank, rr in reports.items() for k, v in rr.items() if v != "ok"}
    assert not bad, bad
    assert len(reports[0]) >= 25, sorted(reports[0])
