"""Guarantee 4 at exit: a rank that leaves early never leaves the others hanging."""

import os
import subprocess
import sys
import time

import pytest
from mpi_harness import ROOT, run_ranks

pytestmark = pytest.mark.mpi

def test_rank_that_exits_cleanly_mid_job_aborts_the_job(tmp_path):
    res = run_ranks("exit_modes", 3, args=["early"], tmp_path=tmp_path, timeout=40,
                  env={"COLLECTIVE_EXIT_TIMEOUT": "3"})
    assert res.returncode != 0, res.output
    assert res.elapsed < 30
    assert "[rank 1/3] collective: this rank reached the end of the program" in res.output
    assert res.reports == []


def test_ranks_that_end_at_different_times_exit_zero(tmp_path):
    res = run_ranks("exit_modes", 3, args=["stagger"], tmp_path=tmp_path, timeout=40,
                  env={"COLLECTIVE_EXIT_TIMEOUT": "10"}, check=True)
    assert sorted(res.by_rank()) == [0, 1, 2]


def test_exception_aborts_even_without_python_m_mpi4py(tmp_path):
    """Under plain mpiexec + python (no mpi4py runner), collective's exit hook still aborts."""
    script = tmp_path / "plain.py"
    script.write_text("import time, collective as col\ncol.init()\n"
                      "if col.rank() == 1:\n    raise ValueError('bad on rank 1')\n"
                      "time.sleep(60)\n")
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        pytest.skip("no mpiexec beside this interpreter")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPIEXEC_TIMEOUT="40")
    start = time.monotonic()
    out = subprocess.run([mpiexec, "-n", "2", sys.executable, str(script)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert time.monotonic() - start < 20
    assert "ValueError: bad on rank 1" in out.stdout + out.stderr
