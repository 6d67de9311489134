"""Settings (dlsys.config) and what importing dlsys does to the process: nothing, until a device
is first used."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dlsys import config

ROOT = Path(__file__).resolve().parents[1]
DLSYS = ROOT / "dlsys"


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), **env)
    for k, v in env.items():
        if v is None:
            full.pop(k)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


# NOTE: ctypes raises the audit event "ctypes.dlsym" when a C function is looked up by name, so
# a hook installed before `import dlsys` sees every call site that reaches glibc's mallopt.
MALLOPT_PROBE = r"""
import sys
looked_up = []
sys.addaudithook(lambda e, a: looked_up.append(a[1]) if e == "ctypes.dlsym" else None)
import dlsys as ds
from dlsys.backend import cpu_memory
print("after import:", "mallopt" in looked_up, cpu_memory.applied())
x = ds.ones(3) * 2
print("after first tensor op:", "mallopt" in looked_up, cpu_memory.applied())
"""


def _glibc():
    import platform

    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def test_import_dlsys_leaves_malloc_alone():
    proc = run_python(MALLOPT_PROBE, DLSYS_NO_MALLOPT=None)
    assert proc.returncode == 0, proc.stderr
    assert "after import: False False" in proc.stdout, proc.stdout


@pytest.mark.skipif(not _glibc(), reason="the mallopt tuning is glibc's")
def test_first_tensor_op_applies_the_malloc_tuning():
    proc = run_python(MALLOPT_PROBE, DLSYS_NO_MALLOPT=None)
    assert proc.returncode == 0, proc.stderr
    assert "after first tensor op: True True" in proc.stdout, proc.stdout


def test_dlsys_no_mallopt_keeps_it_off_after_first_use():
    proc = run_python(MALLOPT_PROBE, DLSYS_NO_MALLOPT="1")
    assert proc.returncode == 0, proc.stderr
    assert "after first tensor op: False False" in proc.stdout, proc.stdout


def test_import_dlsys_loads_no_cuda():
    proc = run_python("import sys\nimport dlsys\n"
                      "print(sorted(m for m in ('numba.cuda', 'dlsys.backend.cuda') "
                      "if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_first_cuda_device_installs_the_allocator_once():
    pytest.importorskip("numba_cuda", reason="numba-cuda is not installed")
    code = r"""
import dlsys.backend.cuda as C
calls = []
original = C.install_caching_allocator
C.install_caching_allocator = lambda: calls.append(1) or original()
import dlsys as ds
if not ds.cuda_is_available():
    print("NO CUDA")
else:
    ds.cuda(); ds.cuda(); ds.zeros(2, device="cuda")
    print("installs:", len(calls))
"""
    proc = run_python(code, NUMBA_ENABLE_CUDASIM=os.environ.get("NUMBA_ENABLE_CUDASIM", "1"))
    assert proc.returncode == 0, proc.stderr
    if "NO CUDA" in proc.stdout:
        pytest.skip("no GPU and no simulator")
    assert "installs: 1" in proc.stdout, proc.stdout


# -- one place reads the environment ------------------------------------------------------------
def _sources():
    return [p for p in DLSYS.rglob("*.py") if "__pycache__" not in p.parts]


def test_only_config_reads_the_environment():
    readers = [str(p.relative_to(ROOT)) for p in _sources()
               if p.name != "config.py" and re.search(r"os\.environ|getenv\(", p.read_text())]
    assert readers == []


def test_config_table_lists_every_variable_it_reads():
    src = (DLSYS / "config.py").read_text()
    read = set(re.findall(r'os\.environ(?:\.get)?\(\s*"([A-Z0-9_]+)"', src))
    read |= set(config.LOCAL_RANK_VARIABLES)
    table = config.__doc__
    missing = sorted(v for v in read if not re.search(rf"^{v}\b|^\S*,?\s*{v}\b", table, re.M))
    assert read and missing == []


@pytest.fixture
def fresh_config():
    config.reload()
    yield config
    config.reload()


def test_values_are_read_once_until_reload(monkeypatch, fresh_config):
    monkeypatch.setenv("DLSYS_CUDA_LEAN_LAUNCH", "0")
    assert fresh_config.cuda_lean_launch() is False
    monkeypatch.setenv("DLSYS_CUDA_LEAN_LAUNCH", "1")
    assert fresh_config.cuda_lean_launch() is False  # kept
    fresh_config.reload()
    assert fresh_config.cuda_lean_launch() is True


def test_launcher_local_rank_takes_the_first_variable_set(monkeypatch, fresh_config):
    for name in config.LOCAL_RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert fresh_config.launcher_local_rank() is None
    monkeypatch.setenv("PMI_LOCAL_RANK", "3")
    monkeypatch.setenv("SLURM_LOCALID", "5")
    fresh_config.reload()
    assert fresh_config.launcher_local_rank() == 3


def test_data_dir_default_and_override(monkeypatch, tmp_path, fresh_config):
    monkeypatch.delenv("DLSYS_DATA", raising=False)
    assert fresh_config.data_dir() == Path.home() / ".cache" / "dlsys"
    monkeypatch.setenv("DLSYS_DATA", str(tmp_path))
    fresh_config.reload()
    assert fresh_config.data_dir() == tmp_path
