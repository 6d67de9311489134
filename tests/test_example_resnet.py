"""examples/train_resnet.py under ./mpirun.sh -n 2 on a slice of Fashion-MNIST: ResNet-20 with
SyncBatchNorm learns, the replicas (running statistics included) stay identical, and a run
stopped inside an epoch and resumed from its checkpoint is bitwise the uninterrupted one. (The
recipe's accuracy target is measured by hand: see the README.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
from mpi_harness import ROOT, run_mpi

import dlsys as ds

SCRIPT = ROOT / "examples" / "train_resnet.py"
TINY = ["--limit", "64", "--batch-size", "8", "--epochs", "2", "--warmup-epochs", "0.5",
        "--lr", "0.05", "--no-progress"]

pytestmark = pytest.mark.skipif(not ds.data.is_available("fashion-mnist"),
                                reason="python -m dlsys.data fetch fashion-mnist")


def run(tmp_path, name, *extra):
    out = tmp_path / f"{name}.json"
    res = run_mpi(script=SCRIPT, nprocs=2, timeout=120, tmp_path=tmp_path, check=True,
                  args=[*TINY, "--json", str(out), *extra])
    return res, json.loads(out.read_text())["history"]


def state(path):
    return {k: np.asarray(v) for k, v in ds.load(path)["model"].items()}


@pytest.mark.mpi
def test_train_resnet_two_ranks_sync_bn_learns_agrees_and_resumes_exactly(tmp_path):
    full, hist = run(tmp_path, "full", "--checkpoint", str(tmp_path / "full.ds"))
    assert "SyncBatchNorm" in full.stdout and "[rank 1/2]" not in full.output
    assert [r["step"] for r in hist] == [4, 8]  # 64 images / 2 ranks / batch 8 per epoch
    assert hist[1]["train_loss"] < hist[0]["train_loss"] < np.log(10) + 0.5, hist
    assert all(r["replicas_digest"] for r in hist)  # running statistics identical too
    ck = tmp_path / "part.ds"
    run(tmp_path, "part", "--max-steps", "3", "--checkpoint", str(ck))
    res, rest = run(tmp_path, "rest", "--resume", str(ck), "--checkpoint", str(ck))
    assert "resumed from" in res.stdout and [r["step"] for r in rest] == [4, 8]
    for a, b in zip(hist, rest, strict=True):
        assert (a["test_loss"], a["test_accuracy"], a["replicas_digest"]) == \
            (b["test_loss"], b["test_accuracy"], b["replicas_digest"])
    wa, wb = state(tmp_path / "full.ds"), state(ck)
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


@pytest.mark.mpi
def test_train_resnet_plain_batchnorm_evaluates_rank_zeros_statistics(tmp_path):
    """--no-sync-bn: local statistics differ across ranks during training; at each epoch's
    end rank 0's are broadcast (as DDP's broadcast_buffers), so the replicas agree again."""
    res, hist = run(tmp_path, "plain", "--no-sync-bn", "--epochs", "1", "--checkpoint", "")
    assert "BatchNorm" in res.stdout and "SyncBatchNorm" not in res.stdout
    assert hist[0]["replicas_digest"]
