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
    # NOTE: compiling is single-threaded: one shard of the cases per core, at once
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    n = max(1, min(4, len(os.sched_getaffinity(0))))
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "cuda_ptx_check.py"),
                               "--shard", f"{k}/{n}"], env=env, cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for k in range(n)]
    try:
        outs = [p.communicate(timeout=900)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    if any("NO_NVVM" in out for out in outs):
        pytest.skip("NVVM (the CUDA compiler library) is not installed: "
                    + next(out for out in outs if "NO_NVVM" in out).strip()[:200])
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "OK" in out, out[-5000:]
    done = [out.split("OK")[-1].split() for out in outs]  # "OK <mine> of <all>"
    assert sum(int(d[0]) for d in done) == int(done[0][2]), outs
