"""col.save_checkpoint / col.load_checkpoint (DESIGN.md guarantee 7): a run stopped mid-epoch
and resumed is bitwise identical to the uninterrupted run; bad files and another world size
give clear errors."""

from __future__ import annotations

import pytest
from mpi_harness import run_mpi, run_ranks

LOAD_AT_ONE_RANK = """
import warnings, zipfile
import numpy as np
import collective as col, dlsys as ds
from dlsys import nn
from dlsys.data import DataLoader, DistributedSampler, RandomSampler, TensorDataset
col.init()
model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
data = TensorDataset(np.zeros((96, 6), np.float32), np.zeros(96, np.int64))
out = {}
def attempt(name, path, **kw):
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            col.load_checkpoint(path, model=model, **kw)
        out[name] = ["ok"] + [str(x.message) for x in w]
    except Exception as exc:
        out[name] = [type(exc).__name__, str(exc)]
def loader(kind=DistributedSampler):
    sampler = kind(data, 1, 0, seed=3) if kind is DistributedSampler else kind(data)
    return DataLoader(data, batch_size=4, sampler=sampler)
attempt("mid_epoch", CKPT, sampler=loader())
attempt("between_epochs", CKPT + ".epoch0", sampler=loader())
attempt("other_sampler", CKPT + ".epoch0", sampler=loader(RandomSampler))
raw = open(CKPT, "rb").read()
open(CKPT + ".cut", "wb").write(raw[: len(raw) // 2])
attempt("truncated", CKPT + ".cut")
np.savez(CKPT + ".npz", a=np.zeros(3))
attempt("foreign", CKPT + ".npz")
ds.save({"weights": np.zeros(3)}, CKPT + ".other")
attempt("not_a_checkpoint", CKPT + ".other")
attempt("missing", CKPT + ".nothing")
report(results=out)
"""


@pytest.mark.mpi
def test_mid_epoch_resume_is_bitwise_identical_and_bad_files_are_refused(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    env = {"CKPT": ckpt, "STOP": "17"}  # 12 steps per epoch: 5 steps into epoch 1
    full = run_ranks("resume", 2, timeout=90, tmp_path=tmp_path, check=True,
                     env={**env, "MODE": "full"})
    resumed = run_ranks("resume", 2, timeout=90, tmp_path=tmp_path, check=True,
                        env={**env, "MODE": "resume"})
    a, b = full.by_rank(), resumed.by_rank()
    for r in (0, 1):
        assert a[r]["steps"] == b[r]["steps"] == 24, (a, b)
        assert b[r]["loaded"] == {"step": 17, "epoch": 1, "note": "mid-epoch"}, b[r]
        assert b[r]["step_count"] == 17, b[r]
        assert a[r]["lr"] == b[r]["lr"], (a, b)
        assert a[r]["digest"] == b[r]["digest"], (r, a, b)  # bitwise the uninterrupted run
    assert a[0]["digest"] == a[1]["digest"]  # and the replicas agree

    res = run_mpi(f"CKPT = {ckpt!r}\n" + LOAD_AT_ONE_RANK, 1, timeout=60, tmp_path=tmp_path,
                  check=True)
    out = res.by_rank("results")[0]
    kind, msg = out["mid_epoch"]
    assert kind == "ValueError" and "saved by 2 ranks in the middle of an epoch" in msg, msg
    assert "resume on 2 ranks" in msg, msg
    assert out["between_epochs"][0] == "ok", out
    assert any("written by 2 ranks" in w for w in out["between_epochs"][1:]), out
    for case in ("truncated", "foreign"):
        kind, msg = out[case]
        assert kind == "ValueError" and ckpt in msg and "not a file written by ds.save" in msg \
            or "zip archive without" in msg, (case, out[case])
    # at another world size a loader of another kind keeps its own state (at the same size:
    # a TypeError)
    assert out["other_sampler"][0] == "ok", out
    assert any("the sampler state is not restored (it is a DataLoader(DistributedSampler)'s"
               in w for w in out["other_sampler"][1:]), out
    kind, msg = out["not_a_checkpoint"]
    assert kind == "ValueError" and "is not a collective checkpoint" in msg, msg
    assert out["missing"][0] == "FileNotFoundError", out
