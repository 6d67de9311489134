"""The launcher (mpirun.sh), the MPI test harness and the communicator basics."""

import os
import shutil
import stat
import subprocess
import sys
import time

import pytest
from mpi_harness import LAUNCHER, ROOT, run_mpi

pytestmark = pytest.mark.mpi

RANK_INFO = """
import os
import collective as col
col.init(); col.init()  # idempotent
report(size=col.size(), local_rank=col.local_rank(), local_size=col.local_size(),
       threads={k: os.environ[k] for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                            "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
       unbuffered=os.environ.get("PYTHONUNBUFFERED"))
"""


@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_launcher_runs_every_rank(nprocs, tmp_path):
    res = run_mpi(RANK_INFO, nprocs, tmp_path=tmp_path, timeout=60, check=True)
    assert sorted(res.by_rank()) == list(range(nprocs))
    expected_threads = str(max(1, (os.cpu_count() or 1) // nprocs))
    for rank, r in res.by_rank().items():
        assert r["size"] == nprocs
        assert r["local_size"] == nprocs and r["local_rank"] == rank  # one node
        assert r["unbuffered"] == "1"
        if "OMP_NUM_THREADS" not in os.environ:
            assert set(r["threads"].values()) == {expected_threads}


def test_user_thread_setting_is_kept(tmp_path):
    res = run_mpi(RANK_INFO, 2, tmp_path=tmp_path, env={"OMP_NUM_THREADS": "7"}, check=True)
    assert {r["threads"]["OMP_NUM_THREADS"] for r in res.reports} == {"7"}


def test_exception_on_one_rank_aborts_the_job(tmp_path):
    code = """
    import time
    import collective as col
    if col.rank() == 1:
        raise RuntimeError("boom from rank one")
    time.sleep(60)  # the other ranks would wait forever without the abort
    """
    start = time.monotonic()
    res = run_mpi(code, 3, tmp_path=tmp_path, timeout=40)
    assert time.monotonic() - start < 10, res.output
    assert res.returncode != 0
    assert "RuntimeError: boom from rank one" in res.output
    assert "[rank 1/3] uncaught RuntimeError on rank 1" in res.output


def test_exit_status_of_a_rank_is_the_jobs(tmp_path):
    code = """
    import sys, time
    from mpi4py import MPI
    if MPI.COMM_WORLD.rank == 1:
        sys.exit(3)
    time.sleep(60)
    """
    res = run_mpi(code, 2, tmp_path=tmp_path, timeout=40)
    assert res.returncode == 3, res.output
    assert res.elapsed < 20


def test_timeout_kills_a_hung_job(tmp_path):
    code = "import time; time.sleep(120)"
    script = tmp_path / "hang.py"
    script.write_text(code)
    start = time.monotonic()
    proc = subprocess.run([str(LAUNCHER), "-n", "2", "--timeout", "3", sys.executable, str(script)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode != 0
    assert time.monotonic() - start < 30


def test_two_host_hostfile_through_stand_in_ssh(tmp_path):
    """The multi-host path: hydra starts a proxy per host through 'ssh', here a local stand-in."""
    log = tmp_path / "ssh.log"
    fake_ssh = tmp_path / "ssh"
    fake_ssh.write_text(f"""#!/usr/bin/env bash
while [[ "$1" == -* ]]; do case "$1" in -o|-p|-l|-i) shift 2;; *) shift;; esac; done
echo "$1" >> {log}
shift
exec bash -c "$*"
""")
    fake_ssh.chmod(fake_ssh.stat().st_mode | stat.S_IEXEC)
    hosts = tmp_path / "hosts"
    hosts.write_text("node-a:1\nnode-b:1\n")
    code = "import collective as col; report(size=col.size())"
    res = run_mpi(code, 2, tmp_path=tmp_path, timeout=60, check=True,
                  launcher_args=["--hostfile", str(hosts),
                                 "--mpiexec-arg", "-launcher", "--mpiexec-arg", "ssh",
                                 "--mpiexec-arg", "-launcher-exec", "--mpiexec-arg", str(fake_ssh)])
    assert res.by_rank("size") == {0: 2, 1: 2}
    assert sorted(log.read_text().split()) == ["node-a", "node-b"]


def test_help_and_usage_errors():
    out = subprocess.run([str(LAUNCHER), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "Usage" in out.stdout
    out = subprocess.run([str(LAUNCHER), "python", "x.py"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2
    out = subprocess.run([str(LAUNCHER), "-n", "two", "python", "x.py"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and "positive integer" in out.stderr


def test_missing_mpiexec_prints_the_install_command(tmp_path):
    base_python = getattr(sys, "_base_executable", sys.executable)
    if os.path.exists(os.path.join(os.path.dirname(base_python), "mpiexec")):
        pytest.skip("the base interpreter has an mpiexec of its own")
    launcher = tmp_path / "mpirun.sh"  # a copy with no .venv beside it
    shutil.copy(LAUNCHER, launcher)
    env = {k: v for k, v in os.environ.items() if k != "MPIEXEC"}
    env["PATH"] = "/usr/bin:/bin"
    if shutil.which("mpiexec", path=env["PATH"]):
        pytest.skip("a system mpiexec is on PATH")
    out = subprocess.run([str(launcher), "-n", "2", base_python, "-c", "pass"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 127
    assert "pip install mpi4py mpich" in out.stderr


def test_single_process_without_mpiexec():
    code = ("import collective as col; col.init(); "
            "print(col.rank(), col.size(), col.local_rank(), col.local_size())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "1", "0", "1"]


def test_unloadable_mpi_library_gives_a_clear_error(tmp_path):
    fake = tmp_path / "mpi4py"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "MPI.py").write_text("raise RuntimeError('cannot load MPI library libmpi.so.12')\n")
    code = "import collective as col; col.init()"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode != 0
    assert "pip install mpi4py mpich" in out.stderr
    assert "libmpi.so.12" in out.stderr


def test_output_reaches_the_terminal_while_the_job_runs(tmp_path):
    """A rank's line is on mpirun.sh's stdout (a pipe here, a file under nohup) before the job
    ends: the launcher's line filter must not hold it back (mawk reads pipes in blocks)."""
    script = tmp_path / "slow.py"
    script.write_text("import time\nprint('first line', flush=True)\ntime.sleep(20)\n")
    proc = subprocess.Popen([str(LAUNCHER), "-n", "2", sys.executable, str(script)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    try:
        start = time.monotonic()
        line = proc.stdout.readline()
        assert line.strip() == "first line"
        assert time.monotonic() - start < 15, "the line came only when the job ended"
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=30)
