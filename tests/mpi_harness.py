"""Run Python code on k MPI ranks from a test, with a timeout, and collect what each rank reports.

A rank program (``tests/ranks/NAME.py``, run by ``run_ranks("NAME", k)``) or a short snippet
calls ``report(key=value, ...)`` (``tests/ranks/report.py``; injected into snippets) to send
JSON-able results back; the result's ``reports`` lists them ordered by rank. Every run goes
through ./mpirun.sh, so the launcher is exercised by every MPI test, and ``MPIEXEC_TIMEOUT``
plus a subprocess timeout guarantee that a hung job fails the test with its output instead of
hanging the suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ranks.report import MARK

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
RANKS = TESTS / "ranks"
LAUNCHER = ROOT / "mpirun.sh"

PRELUDE = f'''\
import sys as _sys
_sys.path[:0] = [{str(ROOT)!r}, {str(TESTS)!r}]
from ranks.report import report
'''


@dataclass
class MPIResult:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    reports: list = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def by_rank(self, key=None):
        """{rank: report} (or {rank: report[key]}); fails if a rank reported twice."""
        out = {}
        for r in self.reports:
            assert r["rank"] not in out, f"rank {r['rank']} reported twice"
            out[r["rank"]] = r if key is None else r[key]
        return out


def _parse_reports(text: str) -> list:
    """Every JSON object that follows a MARK, wherever it stands in the (interleaved) output."""
    decoder, reports, pos = json.JSONDecoder(), [], text.find(MARK)
    while pos >= 0:
        obj, end = decoder.raw_decode(text, pos + len(MARK))
        reports.append(obj)
        pos = text.find(MARK, end)
    return reports


def run_mpi(code: str | None = None, nprocs: int = 2, *, script: str | Path | None = None,
            args=(), timeout: float = 60, env: dict | None = None, tmp_path: Path | None = None,
            launcher_args=(), check: bool = False, wrap=()) -> MPIResult:
    """Run ``code`` (a dedented snippet with ``report`` injected) or ``script`` on ``nprocs`` ranks.

    A job that outlives ``timeout`` seconds fails the calling test with the captured output.
    ``check=True`` also fails the test on a non-zero exit status. ``wrap``: a command that runs
    the launcher command given after it (e.g. ``tools/virtual-cluster.sh ... --``).
    """
    import tempfile
    import time

    if (code is None) == (script is None):
        raise ValueError("give exactly one of code= or script=")
    if code is not None:
        folder = Path(tmp_path or tempfile.mkdtemp(prefix="mpi_snippet_"))
        script = folder / f"snippet_{os.getpid()}_{time.monotonic_ns()}.py"
        script.write_text(PRELUDE + textwrap.dedent(code))
    full_env = dict(os.environ)
    full_env.pop("MPIEXEC_TIMEOUT", None)
    full_env.update({"MPIEXEC_TIMEOUT": str(int(timeout)), "TQDM_DISABLE": "1",
                     "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(TESTS),
                                                                 full_env.get("PYTHONPATH")]))})
    full_env.update(env or {})
    cmd = [*map(str, wrap), str(LAUNCHER), "-n", str(nprocs), *launcher_args, sys.executable,
           str(script), *args]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env, cwd=ROOT, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout + 15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"MPI job on {nprocs} ranks hung for {timeout + 15:.0f} s: {' '.join(cmd)}\n"
                    f"--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")
    elapsed = time.monotonic() - start
    reports = _parse_reports(stdout)
    reports.sort(key=lambda r: r.get("rank", -1))
    result = MPIResult(proc.returncode, stdout, stderr, elapsed, reports)
    if check and proc.returncode != 0:
        pytest.fail(f"MPI job on {nprocs} ranks exited {proc.returncode}\n"
                    f"--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")
    return result


def run_ranks(program: str, nprocs: int = 2, **kw) -> MPIResult:
    """Run the rank program ``tests/ranks/<program>.py`` on ``nprocs`` ranks (see run_mpi)."""
    return run_mpi(script=RANKS / f"{program}.py", nprocs=nprocs, **kw)
