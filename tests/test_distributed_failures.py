"""DistributedOptimizer under failure: DESIGN.md guarantee 4 (no hang, nothing hidden)."""

from __future__ import annotations

import pytest
from mpi_harness import run_ranks


@pytest.mark.mpi
def test_mismatched_models_raise_on_every_rank(tmp_path):
    res = run_ranks("mismatched_models", 2, timeout=60, tmp_path=tmp_path)
    assert res.returncode == 0, res.output
    for r, out in res.by_rank().items():
        errors = out["errors"]
        assert set(errors) == {"optimizer", "broadcast", "duplicate"}, (r, out, res.output)
        assert "rank 1" in errors["optimizer"] and "(8, 6)" in errors["optimizer"], errors
        assert "rank 1" in errors["broadcast"], errors
        assert "duplicate" in errors["duplicate"], errors
        assert out["seconds"] < 30, out


@pytest.mark.mpi
@pytest.mark.parametrize("shm", ["1", "0"])
def test_exception_on_one_rank_ends_the_job(shm, tmp_path):
    # with and without collective's shared-memory arena (its window must not be freed
    # collectively by a rank that exits on an exception)
    res = run_ranks("failure", 2, timeout=25, tmp_path=tmp_path, env={"COLLECTIVE_SHM": shm})
    assert res.returncode != 0, res.output
    assert "injected failure on rank 1 at step 3" in res.output, res.output
    assert "Traceback" in res.output, res.output
    assert res.elapsed < 30, res.elapsed


@pytest.mark.mpi
def test_rank_that_exits_ends_the_job(tmp_path):
    res = run_ranks("failure", 2, timeout=25, tmp_path=tmp_path, env={"EXIT_INSTEAD": "1"})
    assert res.returncode == 3, res.output
    assert "rank 1 calls sys.exit(3)" in res.output, res.output
    assert res.elapsed < 30, res.elapsed
