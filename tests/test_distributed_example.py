"""examples/train_mnist.py under ./mpirun.sh -n 2: trains, logs on rank 0, checkpoints, resumes.

Runs on the synthetic dataset with a few steps (the accuracy target on real MNIST is measured
by hand: see the report of benchmarks/scaling.py and the README)."""

from __future__ import annotations

import numpy as np
import pytest
from mpi_harness import ROOT, run_mpi

import dlsys as ds

SCRIPT = ROOT / "examples" / "train_mnist.py"


@pytest.mark.mpi
def test_train_mnist_two_ranks_checkpoint_and_resume(tmp_path):
    ckpt = tmp_path / "ckpt.npz"
    common = ["--dataset", "synthetic", "--batch-size", "32", "--max-steps", "12",
              "--checkpoint", str(ckpt), "--no-progress", "--schedule", "none"]
    first = run_mpi(script=SCRIPT, nprocs=2, timeout=120, tmp_path=tmp_path, check=True,
                    args=[*common, "--epochs", "1", "--json", str(tmp_path / "a.json")])
    assert "epoch 1/1" in first.stdout, first.output
    assert "[rank 1/2]" not in first.output  # rank 1 logs warnings only: there are none
    assert first.stdout.count("test acc") == 1, first.output  # rank 0 logs, once per epoch
    doc = ds.load(ckpt)  # written by col.save_checkpoint
    assert doc["extra"]["epoch"] == 1 and doc["world_size"] == 2 and doc["step"] > 0
    assert len(doc["ranks"]) == 2  # every rank's RNG state and loader position
    assert doc["optimizer"]["state"]  # momentum buffers
    weights = {k: np.asarray(v) for k, v in doc["model"].items()}
    assert weights
    assert not list(tmp_path.glob(".ckpt.npz.*"))  # the temporary file was renamed

    # resume on 2 ranks for a second epoch; a different world size is allowed with a warning
    second = run_mpi(script=SCRIPT, nprocs=2, timeout=120, tmp_path=tmp_path, check=True,
                     args=[*common, "--epochs", "2", "--resume", str(ckpt)])
    assert "resumed from" in second.stdout, second.output
    assert "epoch 2/2" in second.stdout and "epoch 1/2" not in second.stdout, second.output
    doc = ds.load(ckpt)
    assert doc["extra"]["epoch"] == 2
    assert any(not np.array_equal(weights[k], np.asarray(doc["model"][k])) for k in weights)

    third = run_mpi(script=SCRIPT, nprocs=1, timeout=120, tmp_path=tmp_path, check=True,
                    args=[*common, "--epochs", "3", "--resume", str(ckpt)])
    assert "written by 2 ranks" in third.output, third.output
    assert "epoch 3/3" in third.stdout, third.output
