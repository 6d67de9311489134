"""Every CUDA kernel compiles to PTX for the argument types the device passes (no GPU needed,
only NVVM, e.g. from the numba-cuda[cu12] extra); skipped when NVVM is not installed.

The simulator runs kernels as Python and cannot catch GPU-only typing errors; this can. It runs
tests/cuda_ptx_check.py in a subprocess with the simulator off.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_kernel_compiles_to_ptx():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "cuda_ptx_check.py")], env=env,
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    out = proc.stdout + proc.stderr
    if "NO_NVVM" in proc.stdout:
        pytest.skip("NVVM (the CUDA compiler library) is not installed: "
                    + proc.stdout.strip()[:200])
    assert proc.returncode == 0 and "OK" in proc.stdout, out[-5000:]
