"""DataLoader workers inside MPI ranks (./mpirun.sh): the default start method keeps them clear
of the rank's MPI state; batches equal num_workers=0; MPI works afterwards; a worker's error
ends the whole job with its traceback."""

import pytest
from mpi_harness import run_mpi

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

SCRIPT = """
import multiprocessing as mp
import os
import numpy as np
from dlsys.data import DataLoader, Dataset, DistributedSampler, get_worker_info
from dlsys.data import transforms as T

class Aug(Dataset):
    def __init__(self, fail_at=-1):
        self.x = np.random.default_rng(0).random((40, 3, 8, 8), dtype=np.float32)
        self.t = T.Compose([T.RandomCrop(8, padding=2), T.RandomHorizontalFlip()])
        self.fail_at = fail_at

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if i == self.fail_at and get_worker_info() is not None:
            raise ValueError(f"sample {{i}} is unreadable")
        return self.t(self.x[i]), i

# NOTE: workers re-run this file's top level; MPI starts only under the main guard
if __name__ == "__main__":
    import collective as col
    col.init()
    data = Aug(fail_at={fail_at})
    def batches(workers):
        sampler = DistributedSampler(data, num_replicas=col.size(), rank=col.rank(), seed=1)
        loader = DataLoader(data, batch_size=4, sampler=sampler, seed=3, num_workers=workers)
        out = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            out += [np.concatenate([b[0].numpy().ravel(), b[1].numpy()]) for b in loader]
        return np.concatenate(out)
    ref = batches(0)
    got = batches(2)
    total = col.allreduce(np.array([float(got.sum())]), op=col.Sum)
    report(same=bool(np.array_equal(ref, got)), n=int(got.size), total=float(total[0]),
           children=len(mp.active_children()), pid=os.getpid())
"""


def test_workers_in_mpi_ranks_give_the_batches_of_num_workers_0(tmp_path):
    res = run_mpi(SCRIPT.format(fail_at=-1), 2, tmp_path=tmp_path, timeout=120, check=True)
    reps = res.by_rank()
    assert sorted(reps) == [0, 1]
    for r in reps.values():
        assert r["same"] and r["n"] > 0 and r["children"] == 0
    assert reps[0]["total"] == reps[1]["total"]


def test_a_worker_error_in_one_rank_ends_the_job_with_its_traceback(tmp_path):
    res = run_mpi(SCRIPT.format(fail_at=37), 2, tmp_path=tmp_path, timeout=120)
    assert res.returncode != 0
    assert "Caught ValueError in DataLoader worker process" in res.output
    assert "sample 37 is unreadable" in res.output
    assert res.elapsed < 100


TOP_LEVEL_INIT = """
import multiprocessing as mp
import numpy as np
import collective as col
col.init()  # at the top level: every worker re-runs this line
from dlsys.data import DataLoader, TensorDataset

if __name__ == "__main__":
    data = TensorDataset(np.arange(30.0))
    got = [b[0].numpy() for b in DataLoader(data, batch_size=4, num_workers=2)]
    total = col.allreduce(np.array([sum(float(g.sum()) for g in got)]), op=col.Sum)
    report(n=sum(len(g) for g in got), total=float(total[0]), children=len(mp.active_children()))
"""


def test_a_script_that_starts_mpi_at_its_top_level_still_gets_workers(tmp_path):
    # the workers' MPI would join the job with the rank's PMI descriptor (which is something
    # else in a worker); the forkserver drops those variables, so it starts as a singleton
    res = run_mpi(TOP_LEVEL_INIT, 2, tmp_path=tmp_path, timeout=120, check=True)
    reps = res.by_rank()
    assert [reps[r]["n"] for r in (0, 1)] == [30, 30]
    assert reps[0]["total"] == 2 * sum(range(30)) and reps[0]["children"] == 0
