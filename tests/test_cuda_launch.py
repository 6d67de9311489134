"""The lean CUDA launcher (dlsys.backend.cuda.launch) packs kernel parameters exactly as Numba
does. Scalars and tuples are compared with numba-cuda's own ``_Kernel._prepare_args`` here,
without a GPU, in a subprocess with the simulator off (the simulator replaces numba.cuda's
dispatcher); arrays and whole launches are exercised by every CUDA test on a real GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed")

ROOT = Path(__file__).resolve().parents[1]

CODE = r"""
import ctypes
import numpy as np
from numba.cuda import types
from numba.cuda.dispatcher import _Kernel
from dlsys.backend.cuda import launch as L


class Numba:  # just what _Kernel._prepare_args reads
    extensions = []
    _prepare_args = _Kernel._prepare_args


def as_values(params):
    return [(type(p).__name__, p.value) if isinstance(p, ctypes._SimpleCData) else p
            for p in params]


cases = [(types.int64, 7), (types.int32, -3), (types.uint64, 2**40), (types.float64, 0.1),
         (types.float32, 1.5), (types.float16, np.float16(0.25)), (types.boolean, True),
         (types.UniTuple(types.int64, 3), (4, 5, 6)),
         (types.Tuple((types.int64, types.float32)), (1, np.float32(2.5)))]
for ty, val in cases:
    want = []
    Numba()._prepare_args(ty, val, 0, [], want)
    got = L.pack([L.packer(ty)], (val,))
    assert as_values(got) == as_values(want), (ty, as_values(got), as_values(want))
assert L.signature((1, 2.0, True, np.float32(1), (3, 4))) == (
    int, float, bool, np.dtype(np.float32), (int, int))
try:
    L.packer(types.unicode_type)
    raise AssertionError("a unicode argument should be Unsupported")
except L.Unsupported:
    pass
print("OK")
"""


def test_lean_launcher_packs_scalars_and_tuples_like_numba():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr
