"""The lean CUDA launcher (dlsys.backend.cuda.launch) packs kernel parameters exactly as Numba
does, and checks that it does: at the first launch of each signature its packing is compared
with numba-cuda's own ``_Kernel._prepare_args``, and a difference (a numba-cuda release with
another layout) turns lean launches off with a warning instead of handing kernels wrong data.

Runs without a GPU, in subprocesses with the simulator off (the simulator replaces numba.cuda's
dispatcher): arrays are DeviceNDArrays over a made-up device pointer, never dereferenced; the
"compiled kernel" is a stand-in carrying what the launcher reads from one (argument types and
Numba's real ``_prepare_args``). Whole launches run in every CUDA test on a real GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed")

ROOT = Path(__file__).resolve().parents[1]

COMMON = r"""
import ctypes
import types as pytypes
import warnings

import numpy as np
from numba.cuda import types
from numba.cuda.cudadrv import devicearray, driver
from numba.cuda.dispatcher import _Kernel

from dlsys.backend.cuda import launch as L


class Numba:  # just what _Kernel._prepare_args reads
    extensions = []
    _prepare_args = _Kernel._prepare_args


def device_array(shape, dtype, address=0x10000):
    dtype = np.dtype(dtype)
    strides = tuple(int(s) for s in np.empty(shape, dtype).strides)
    ptr = driver.MemoryPointer(None, ctypes.c_void_p(address), int(np.prod(shape)) * dtype.itemsize)
    return devicearray.DeviceNDArray(shape=shape, strides=strides, dtype=dtype, gpu_data=ptr)


ARRAY_TYPE = types.Array(types.float32, 2, "C")


class Compiled:
    # the attributes of numba-cuda's _Kernel that Launcher._prepare reads
    argument_types = (ARRAY_TYPE, types.int64, types.float32, types.UniTuple(types.int64, 2))
    debug = cooperative = False
    extensions = []
    entry_name = "probe_kernel"
    _codelibrary = pytypes.SimpleNamespace(
        get_cufunc=lambda: pytypes.SimpleNamespace(kernel="the cu kernel"))

    def _prepare_args(self, *a):
        return _Kernel._prepare_args(self, *a)


class Kernel:
    # a dispatcher whose one overload is Compiled; kernel[grid, block](*args) is recorded
    def __init__(self):
        self.overloads = {Compiled.argument_types: Compiled()}
        self.numba_launches = 0

    def typeof_pyval(self, v):  # the Numba type of each of ARGS
        return next(t for t, x in zip(Compiled.argument_types, ARGS) if x is v)

    def __getitem__(self, config):
        def launch(*args):
            self.numba_launches += 1
        return launch


ARGS = (device_array((3, 4), np.float32), 7, np.float32(1.5), (3, 4))
"""

SCALARS = COMMON + r"""
def as_values(params):
    return L.param_values(params)


cases = [(types.int64, 7), (types.int32, -3), (types.uint64, 2**40), (types.float64, 0.1),
         (types.float32, 1.5), (types.float16, np.float16(0.25)), (types.boolean, True),
         (types.UniTuple(types.int64, 3), (4, 5, 6)),
         (types.Tuple((types.int64, types.float32)), (1, np.float32(2.5))),
         (types.Array(types.float32, 2, "C"), device_array((3, 4), np.float32)),
         (types.Array(types.int64, 1, "C"), device_array((5,), np.int64, 0x20000))]
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

VERIFIED = COMMON + r"""
launcher = L.Launcher()
launcher._lean = True
with warnings.catch_warnings():
    warnings.simplefilter("error")  # no warning when the layouts agree
    entry = launcher._prepare(Kernel(), ARGS)
assert entry is not False and entry[0] == "the cu kernel", entry
assert launcher._lean is True
print("OK")
"""

# a numba-cuda whose array layout gained a field: what the launcher compares against changes
CHANGED = COMMON + r"""
original = _Kernel._prepare_args


def prepare_args_with_a_new_field(self, ty, val, stream, retr, kernelargs):
    original(self, ty, val, stream, retr, kernelargs)
    if isinstance(ty, types.Array):
        kernelargs.append(0)


_Kernel._prepare_args = prepare_args_with_a_new_field
launcher = L.Launcher()
launcher._lean = True
kernel = Kernel()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert launcher._prepare(kernel, ARGS) is False
assert launcher._lean is False
assert len(caught) == 1 and issubclass(caught[0].category, RuntimeWarning)
msg = str(caught[0].message)
assert "probe_kernel" in msg and "Numba's own path" in msg, msg
launcher(kernel, 1, 32, ARGS)  # every later launch goes through Numba
assert kernel.numba_launches == 1
print("OK")
"""

# a numba-cuda without _prepare_args at all: nothing to compare with, so no lean launches
MISSING = COMMON + r"""
del _Kernel._prepare_args
launcher = L.Launcher()
launcher._lean = True
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert launcher._prepare(Kernel(), ARGS) is False
assert launcher._lean is False and len(caught) == 1
print("OK")
"""


def run_without_simulator(code):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr


def test_lean_launcher_packs_scalars_tuples_and_arrays_like_numba():
    run_without_simulator(SCALARS)


def test_lean_launcher_keeps_lean_launches_when_numba_packs_the_same():
    run_without_simulator(VERIFIED)


def test_lean_launcher_falls_back_to_numba_when_the_layout_changes():
    run_without_simulator(CHANGED)


def test_lean_launcher_falls_back_to_numba_when_it_cannot_compare():
    run_without_simulator(MISSING)
