"""Kernel launches of the CUDA device: launch geometry (``launch_1d``, ``launch_rows``) and the
lean launcher that a real GPU uses after the first launch of each signature.

NOTE: geometry. Under the simulator (NUMBA_ENABLE_CUDASIM=1) every simulated thread is a Python
thread (~0.14 ms each), so we launch few threads and let grid-stride loops cover the data; on a
GPU we launch full blocks.

NOTE: lean launches (a real GPU; never under the simulator). Numba's launch path types every
argument (``typeof``) and marshals it through generic code on every call: about 0.2 ms of host
time per launch, measured on an H100 host, which is more than most of our kernels take on the
GPU. The first launch of a kernel with a given argument signature goes through Numba (compiling
if needed); later ones reuse the compiled kernel and pack the arguments themselves, as
``numba.cuda.dispatcher._Kernel._prepare_args`` does (arrays as meminfo, parent, size,
itemsize, data pointer, shape, strides; scalars as ctypes of the compiled type; tuples
flattened). That layout is Numba's internal one: at the first launch of each signature the
packed parameters are compared with what ``_prepare_args`` itself gives for the same arguments,
and any difference (a numba-cuda release that changed it) turns lean launches off for the
process with a warning, so kernels never get wrong data. Anything else (non-C-contiguous
arrays, other argument kinds, several GPUs in one process, a Numba without these internals)
takes Numba's path. DLSYS_CUDA_LEAN_LAUNCH=0 turns it off (``dlsys.config``).
"""

from __future__ import annotations

import ctypes
import sys
import threading
import warnings

import numba
import numpy as np
from numba import cuda
from numba.cuda import types

from ... import config

try:  # NOTE: numba-cuda's own launch primitives (cuda.core), as _Kernel.launch uses them
    from cuda.core import LaunchConfig, launch
    from numba.cuda._compat import CUDA_CORE_GE_1_0
    from numba.cuda.cudadrv.driver import _to_core_stream
except ImportError:  # pragma: no cover - older numba-cuda: Numba's path only
    launch = None

SIMULATOR = bool(getattr(getattr(cuda, "config", None), "ENABLE_CUDASIM", 0)
                 or getattr(numba.config, "ENABLE_CUDASIM", 0))
# NOTE: shared-memory arrays need a compile-time size: 256 slots, and blocks of row kernels are
# powers of two <= 256 so the tree reduction halves cleanly.
TPB = 256


def cdiv(a, b):
    return -(-a // b)


def pow2(n, cap):
    """The smallest power of two >= n, at most cap (and at least 1)."""
    p = 1
    while p < n and p < cap:
        p *= 2
    return p


def run(kernel, grid, block, args):
    """kernel[grid, block](*args): the lean launcher on a GPU, Numba's path in the simulator."""
    if not SIMULATOR:
        LAUNCH(kernel, grid, block, args)
        return
    # NOTE: the simulator's scheduler busy-polls its block threads while holding the GIL, so
    # every syncthreads costs up to one GIL switch interval (5 ms by default); a shorter
    # interval during simulated launches makes kernels with barriers ~2-3x faster. Restored
    # afterwards, so the rest of the process keeps its own setting.
    old = sys.getswitchinterval()
    sys.setswitchinterval(min(old, 1e-4))
    try:
        kernel[grid, block](*args)
    finally:
        sys.setswitchinterval(old)


def launch_1d(kernel, n, *args):
    """kernel[grid, block](*args) covering n items with a grid-stride loop (no launch for 0)."""
    if n <= 0:
        return
    if SIMULATOR:
        blocks, threads = 1, min(n, 8)
    else:
        threads = 256
        blocks = min(cdiv(n, threads), 65535)
    run(kernel, blocks, threads, args)


def launch_rows(kernel, nrows, ncols, *args):
    """One block per row (grid-stride over rows), a power-of-two block striding the columns."""
    if nrows <= 0:
        return
    if SIMULATOR:
        blocks, threads = min(nrows, 2), pow2(ncols, 4)
    else:
        blocks, threads = min(nrows, 65535), max(32, pow2(ncols, TPB))
    run(kernel, blocks, threads, args)


# -- the lean launcher --------------------------------------------------------------------------
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


def param_values(params) -> list:
    """Kernel parameters as comparable values: (ctype name, value) for ctypes scalars."""
    return [(type(p).__name__, p.value) if isinstance(p, ctypes._SimpleCData) else p
            for p in params]


def numba_params(compiled, args) -> list:
    """The kernel parameters Numba's own launch path packs for ``args``."""
    params: list = []
    for t, v in zip(compiled.argument_types, args, strict=True):
        compiled._prepare_args(t, v, 0, [], params)
    return params


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
            cuda.current_context()
            self._thread.has_context = True
        launch(self._stream, self._config(grid, block), cufunc, *pack(packers, args))

    def _decide(self):
        """Lean launches only when enabled and one GPU is visible (one context, one cufunc
        per kernel)."""
        self._lean = launch is not None and config.cuda_lean_launch() and len(cuda.gpus) == 1
        if self._lean:
            self._stream = _to_core_stream(0)
        return self._lean

    def _prepare(self, kernel, args):
        """(cu kernel, packers) of the overload that just ran, or False (use Numba's path)."""
        try:
            compiled = kernel.overloads[tuple(kernel.typeof_pyval(a) for a in args)]
            if compiled.debug or compiled.cooperative or compiled.extensions:
                return False
            packers = [packer(t) for t in compiled.argument_types]
            if not self.verify(compiled, packers, args):
                return False
            return compiled._codelibrary.get_cufunc().kernel, packers
        except (Unsupported, AttributeError, KeyError, TypeError):
            return False

    def verify(self, compiled, packers, args) -> bool:
        """Whether our packing of ``args`` equals Numba's own; on a difference, lean launches
        are turned off for the process with a warning naming the kernel."""
        ours = param_values(pack(packers, args))
        try:
            theirs = param_values(numba_params(compiled, args))
        except Exception as e:  # NOTE: Numba's internals moved: we cannot check, so we don't
            theirs = f"{type(e).__name__}: {e}"
        if ours == theirs:
            return True
        self._lean = False
        warnings.warn(
            f"dlsys: numba-cuda {_numba_cuda_version()} packs the parameters of kernel "
            f"{getattr(compiled, 'entry_name', compiled)!r} differently from dlsys's lean "
            f"launcher (dlsys {ours!r} vs Numba {theirs!r}); every kernel now launches "
            "through Numba's own path (slower, correct). Please report this dlsys/numba-cuda "
            "pair.", RuntimeWarning, stacklevel=2)
        return False

    def _config(self, grid, block):
        key = (grid, block)
        cfg = self._configs.get(key)
        if cfg is None:
            extra = {"is_cooperative": False} if CUDA_CORE_GE_1_0 else {}
            cfg = self._configs[key] = LaunchConfig(grid=_dim3(grid), block=_dim3(block),
                                                    shmem_size=0, **extra)
        return cfg


def _numba_cuda_version() -> str:
    try:
        from importlib.metadata import version

        return version("numba-cuda")
    except Exception:  # pragma: no cover
        return "?"


LAUNCH = Launcher()
