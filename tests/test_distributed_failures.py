"""DistributedOptimizer under failure: DESIGN.md guarantee 4 (no hang, nothing hidden)."""

from __future__ import annotations

import pytest
from distributed_common import COMMON
from mpi_harness import run_mpi

MISMATCH = COMMON + r'''
import time
t0 = time.monotonic()
hidden = 8 if R == 0 else 9  # rank 1 has a different model
ds.manual_seed(0)
model = nn.Sequential(nn.Linear(N_IN, hidden), nn.Tanh(), nn.Linear(hidden, N_OUT))
errors = {}
try:
    col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                             named_parameters=model.named_parameters())
except ValueError as exc:
    errors["optimizer"] = str(exc)
try:
    col.broadcast_parameters(model.state_dict(), root=0)
except ValueError as exc:
    errors["broadcast"] = str(exc)
try:
    col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                             named_parameters=[("w", p) for p in model.parameters()])
except ValueError as exc:
    errors["duplicate"] = str(exc)
report(errors=errors, seconds=time.monotonic() - t0)
'''


FAILURE = COMMON + r'''
import os
import sys
EXIT = os.environ.get("EXIT_INSTEAD") == "1"
model = model_for("float32", 1)
opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                               named_parameters=model.named_parameters())
for t in range(10):
    opt.zero_grad()
    if t == 3 and R == 1:
        if EXIT:
            print("rank 1 calls sys.exit(3) at step 3", flush=True)
            sys.exit(3)
        raise RuntimeError("injected failure on rank 1 at step 3")
    F.cross_entropy(model(ds.tensor(X[BATCHES[R][t]], dtype=np.float32)),
                    ds.tensor(Y[BATCHES[R][t]])).backward()
    opt.step()
'''


@pytest.mark.mpi
def test_mismatched_models_raise_on_every_rank(tmp_path):
    res = run_mpi(MISMATCH, 2, timeout=60, tmp_path=tmp_path)
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
    res = run_mpi(FAILURE, 2, timeout=25, tmp_path=tmp_path, env={"COLLECTIVE_SHM": shm})
    assert res.returncode != 0, res.output
    assert "injected failure on rank 1 at step 3" in res.output, res.output
    assert "Traceback" in res.output, res.output
    assert res.elapsed < 30, res.elapsed


@pytest.mark.mpi
def test_rank_that_exits_ends_the_job(tmp_path):
    res = run_mpi(FAILURE, 2, timeout=25, tmp_path=tmp_path, env={"EXIT_INSTEAD": "1"})
    assert res.returncode == 3, res.output
    assert "rank 1 calls sys.exit(3)" in res.output, res.output
    assert res.elapsed < 30, res.elapsed
