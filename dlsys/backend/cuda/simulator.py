"""Fixes for numba-cuda's CUDA simulator (NUMBA_ENABLE_CUDASIM=1), applied by the CUDA package's
import when the simulator is on (the simulator is a test tool; a real GPU never loads this).

The simulator runs every CUDA thread of a block as a Python thread; these patches make it agree
with a GPU where the CUDA tests rely on it.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
from numba.core import types
from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
from numba.cuda.simulator.kernelapi import FakeCUDAShared
from numba.np import numpy_support

_allocate_shared = FakeCUDAShared.array
_shared_lock = threading.Lock()


def _shared_array(self, shape, dtype, alignment=None):
    """``cuda.shared.array``: ONE array per call site per launch, for every thread of the block.

    NOTE: numba-cuda 0.30's version looks the call site up in a dict and inserts a new array
    when it is missing, unlocked: a thread switch between the lookup and the insert gives two
    threads of one block different "shared" arrays, and a tree reduction then silently drops
    the other threads' partial sums (seen in CI: a 3-element sum returned its first element).
    The lookup-or-insert runs under a lock here; the call site is the caller's file and line,
    the key the simulator itself uses.
    """
    if shape == 0 or alignment is not None:  # dynamic shared memory / unsupported alignment
        return _allocate_shared(self, shape, dtype, alignment)
    if isinstance(dtype, types.Type):
        dtype = numpy_support.as_dtype(dtype)
    caller = sys._getframe(1)
    key = (caller.f_code.co_filename, caller.f_lineno)
    with _shared_lock:
        arr = self._allocations.get(key)
        if arr is None:
            arr = self._allocations[key] = np.empty(shape, dtype)
    return arr


def apply():
    """Patch the simulator (idempotent)."""
    # NOTE: only over the implementation this replacement mirrors (a per-launch dict of
    # arrays keyed by call site); a future simulator that works differently is left alone
    if isinstance(getattr(FakeCUDAShared(0), "_allocations", None), dict):
        FakeCUDAShared.array = _shared_array
    # NOTE: the simulator's host-side arrays report shapes as FakeShape, a tuple that rejects
    # negative indices (mimicking in-kernel shapes); a real DeviceNDArray's host-side ``shape``
    # is a plain tuple, and the front end indexes shapes with [-1]. Make the simulator agree
    # with the GPU on the host side (kernels index shapes with non-negative ints only).
    FakeCUDAArray.shape = property(lambda self: tuple(self._ary.shape))
