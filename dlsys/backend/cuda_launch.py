"""Lean kernel launches for the CUDA device (a real GPU; never under the simulator).

NOTE: Numba's launch path types every argument (``typeof``) and marshals it through generic code
on every call: about 0.2 ms of host time per launch, measured on an H100 host, which is more
than most of our kernels take on the GPU. The first launch of a kernel with a given argument
signature goes through Numba (compiling if needed); later ones reuse the compiled kernel and
pack the arguments themselves, exactly as ``numba.cuda.dispatcher._Kernel._prepare_args`` does
(arrays as meminfo, parent, size, itemsize, data pointer, shape, strides; scalars as ctypes of
the compiled type; tuples flattened). Anything else (non-C-contiguous arrays, other argument
kinds, several GPUs in one process, a Numba without these internals) takes Numba's path.
DLSYS_CUDA_LEAN_LAUNCH=0 turns it off.
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np
from numba.cuda import types

try:  # NOTE: numba-cuda's own launch primitives (cuda.core), as _Kernel.launch uses them
    from cuda.core import LaunchConfig, launch
    from numba.cuda._compat import CUDA_CORE_GE_1_0
    from numba.cuda.cudadrv.driver import _to_core_stream
except ImportError:  # pragma: no cover - older numba-cuda: Numba's path only
    launch = None

ENABLED = launch is not None and os.environ.get("DLSYS_CUDA_LEAN_LAUNCH", "1") != "0"


class Unsupported(Exception):
    """An argument this launcher does not pack: use Numba's path."""


def signature(args) -> tuple:
    """A cheap key that determines the Numba argument types of ``args``."""
    return tuple(_sig(a) for a in args)


def _sig(a):
    t = type(a)
    if t is int or t is float or t is bool:
        return t
    if t is tuple:
        return tuple(_sig(x) for x in a)
    if isinstance(a, np.generic):
        return a.dtype
    if hasattr(a, "gpu_data") and a.is_c_contiguous():
        return a.dtype, a.ndim
    raise Unsupported(t)


def packer(ty):
    """A function (value, out_list) appending the kernel parameters of one argument of Numba
    type ``ty``."""
    if isinstance(ty, types.Array):
        def pack_array(v, out):
            out += (0, 0, v.size, v.dtype.itemsize, v.device_ctypes_pointer.value)
            out += v.shape
            out += v.strides
        return pack_array
    if isinstance(ty, types.Integer):
        ctype = getattr(ctypes, f"c_{ty}")
        return lambda v, out: out.append(ctype(v))
    if ty == types.float64:
        return lambda v, out: out.append(ctypes.c_double(v))
    if ty == types.float32:
        return lambda v, out: out.append(ctypes.c_float(v))
    if ty == types.float16:
        return lambda v, out: out.append(ctypes.c_uint16(np.float16(v).view(np.uint16)))
    if ty == types.boolean:
        return lambda v, out: out.append(v)
    if isinstance(ty, types.BaseTuple):
        parts = [packer(t) for t in ty]

        def pack_tuple(v, out):
            for p, x in zip(parts, v, strict=True):
                p(x, out)
        return pack_tuple
    raise Unsupported(ty)


def pack(packers, args) -> list:
    out: list = []
    for p, a in zip(packers, args, strict=True):
        p(a, out)
    return out


def _dim3(d):
    d = tuple(d) if isinstance(d, (tuple, list)) else (d,)
    return tuple(int(x) for x in d) + (1,) * (3 - len(d))


class Launcher:
    """kernel[grid, block](*args), through the lean path once a signature is known."""

    def __init__(self):
        self._entries: dict = {}
        self._configs: dict = {}
        self._stream = None
        self._lean = None  # decided at the first launch (needs the driver)
        self._thread = threading.local()

    def __call__(self, kernel, grid, block, args):
        if not (self._lean if self._lean is not None else self._decide()):
            kernel[grid, block](*args)
            return
        try:
            key = (kernel, signature(args))
        except Unsupported:
            kernel[grid, block](*args)
            return
        entry = self._entries.get(key)
        if entry is None:
            kernel[grid, block](*args)  # compiles if needed
            self._entries[key] = self._prepare(kernel, args)
            return
        if entry is False:
            kernel[grid, block](*args)
            return
        cufunc, packers = entry
        if not getattr(self._thread, "has_context", False):
            # NOTE: Numba's path makes the GPU's context current in each new thread (e.g. the
            # DistributedOptimizer's communication thread); a bare launch would not
            from numba import cuda

            cuda.current_context()
            self._thread.has_context = True
        launch(self._stream, self._config(grid, block), cufunc, *pack(packers, args))

    def _decide(self):
        """Lean launches only when enabled and one GPU is visible (one context, one cufunc
        per kernel)."""
        from numba import cuda

        self._lean = ENABLED and len(cuda.gpus) == 1
        if self._lean:
            self._stream = _to_core_stream(0)
        return self._lean

    def _prepare(self, kernel, args):
        """(cu kernel, packers) of the overload that just ran, or False (use Numba's path)."""
        try:
            compiled = kernel.overloads[tuple(kernel.typeof_pyval(a) for a in args)]
            if compiled.debug or compiled.cooperative or compiled.extensions:
                return False
            return (compiled._codelibrary.get_cufunc().kernel,
                    [packer(t) for t in compiled.argument_types])
        except (Unsupported, AttributeError, KeyError):
            return False

    def _config(self, grid, block):
        key = (grid, block)
        cfg = self._configs.get(key)
        if cfg is None:
            extra = {"is_cooperative": False} if CUDA_CORE_GE_1_0 else {}
            cfg = self._configs[key] = LaunchConfig(grid=_dim3(grid), block=_dim3(block),
                                                    shmem_size=0, **extra)
        return cfg


LAUNCH = Launcher()
