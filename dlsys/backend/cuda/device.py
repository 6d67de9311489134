"""The CUDA device: every kernel-interface method as Numba CUDA kernels (package numba-cuda).

Arrays are numba device arrays (``DeviceNDArray``; ``FakeCUDAArray`` under the simulator,
NUMBA_ENABLE_CUDASIM=1). The kernels live in ``kernels``/``kernels_nn``/``matmul``; this module
does memory, elementwise ops, reductions and matmul (the nn launches are the ``nn`` mixin,
views and indexing the ``views`` mixin, optimizer updates ``optim``).

Layout policy (``views``): ``permute`` and ``broadcast_to`` return compact copies (a
strided-gather kernel); basic indexing returns a view sharing memory, strided when the
selection is (it writes through, like numpy's), which remembers its root allocation and offset
so that ``compact`` gathers it and ``copy_`` scatters into it. Kernels run on flat 1-D compact
arrays.

Memory comes from a caching allocator (``memory``), installed by ``dlsys.backend.cuda()`` when
it creates the first CUDA device (DLSYS_CUDA_CACHING_ALLOCATOR=0 turns it off).

float16 (``float16_via_float32``): computed in float32 and rounded once at the end (arithmetic
and atomics on half need recent GPUs and are partial in Numba); sums accumulate in float32.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from numba import cuda

from ... import config
from ..device import (
    BINARY_OPS,
    FLOAT16,
    UNARY_OPS,
    Device,
    binary_result_dtype,
    float16_via_float32,
    scalar_result_dtype,
)
from . import kernels as K
from .launch import SIMULATOR, launch_1d, launch_rows
from .matmul import launch_matmul
from .nn import CUDANNKernels
from .views import CUDAViews, elem_strides, is_device_array, prod, root_of


def select_device_for_local_rank(local_rank: int | None = None) -> int:
    """Bind this process to one GPU chosen by its local rank; returns the GPU's index.

    Call it before any CUDA work (before the first CUDA context exists), e.g. right after
    ``col.init()``: ``select_device_for_local_rank(col.local_rank())``. Without an argument the
    local rank is read from the launcher's environment (Open MPI, MPICH/Hydra, PMI, MVAPICH,
    Slurm; see ``dlsys.config``), 0 when none is set.

    NOTE: while the CUDA driver is not initialised yet, this narrows CUDA_VISIBLE_DEVICES to the
    chosen GPU (``local_rank % n_gpus``, among the already visible ones if that variable is
    set), like Horovod's recipe: ``ds.cuda()`` (index 0) is then that GPU in every thread of the
    process (Numba's contexts are per thread; a helper thread would otherwise start on GPU 0).
    If the driver is already running it falls back to ``cuda.select_device`` (calling thread
    only). Under the simulator it only returns the index (0). The caching allocator is
    installed first (it must precede the first context).
    """
    if local_rank is None:
        local_rank = config.launcher_local_rank() or 0
    local_rank = int(local_rank)
    if SIMULATOR:
        return 0
    install_caching_allocator()
    from numba.cuda.cudadrv.driver import driver as _driver

    visible = config.cuda_visible_devices()
    if not getattr(_driver, "is_initialized", True):
        if visible is not None:
            ids = [v for v in visible.split(",") if v.strip()]
        else:
            try:  # NOTE: counts GPUs without initialising CUDA
                ids = [str(i) for i in range(len(os.listdir("/proc/driver/nvidia/gpus")))]
            except OSError:
                ids = []
        if ids:
            index = local_rank % len(ids)
            config.set_cuda_visible_devices(ids[index].strip())
            return index
    index = local_rank % max(1, len(cuda.gpus))
    cuda.select_device(index)
    return index


def install_caching_allocator() -> bool:
    """Make Numba allocate device memory through dlsys's caching allocator (``memory``), unless
    DLSYS_CUDA_CACHING_ALLOCATOR=0 or the simulator is on. Idempotent; it applies to CUDA
    contexts created after it, so ``dlsys.backend.cuda()`` calls it before the first one.
    True when the caching allocator is (now) Numba's memory manager."""
    if SIMULATOR or not config.cuda_caching_allocator():
        return False
    from . import memory  # NOTE: needs the real driver's classes (the simulator lacks them)

    return memory.install()


def _int_variant(op, dtype):
    """The kernel name of ``op`` for results of ``dtype`` (see kernels.INT_VARIANTS)."""
    return op + "_int" if op in K.INT_VARIANTS and np.dtype(dtype).kind in "iu" else op


def _in_context(gpu, method):
    @functools.wraps(method)
    def run(*args, **kwargs):
        with gpu:
            return method(*args, **kwargs)
    return run


class CUDADevice(CUDAViews, CUDANNKernels, Device):
    """One GPU. Made by ``ds.cuda(index)`` (``dlsys.backend.registry``), one per index."""

    name = "cuda"

    def __init__(self, index: int = 0):
        self.index = int(index)
        if self.index != 0 and not SIMULATOR:
            # NOTE: Numba runs on the calling thread's current context (GPU 0 unless selected);
            # a second GPU in one process gets every method wrapped to run in its context. The
            # usual setup is one GPU per process (select_device_for_local_rank) and index 0.
            if self.index >= len(cuda.gpus):
                raise ValueError(f"cuda:{self.index} requested but only {len(cuda.gpus)} GPU(s) "
                                 "are visible")
            gpu = cuda.gpus[self.index]
            for name in dir(type(self)):
                attr = getattr(type(self), name)
                if not name.startswith("_") and callable(attr) and name != "is_available":
                    setattr(self, name, _in_context(gpu, getattr(self, name)))

    def __repr__(self):
        return f"device(type='cuda', index={self.index})"

    def __str__(self):
        return f"cuda:{self.index}"

    def is_available(self) -> bool:
        return bool(cuda.is_available())

    def synchronize(self):
        """Wait for every queued kernel (for timing)."""
        cuda.synchronize()

    def memory_stats(self) -> dict:
        """Bytes in arrays (``allocated``) and free in the caching allocator (``cached``);
        empty when the caching allocator is off or under the simulator."""
        pool = self._pool()
        return {} if pool is None else {"allocated": pool.used_bytes,
                                        "cached": pool.cached_bytes}

    def empty_cache(self):
        """Give the caching allocator's free blocks back to the driver."""
        pool = self._pool()
        if pool is not None:
            pool.empty()

    # -- helpers -------------------------------------------------------------------------------
    def _pool(self):
        """The caching allocator's block pool of this thread's context (None when off)."""
        if SIMULATOR:
            return None
        return getattr(cuda.current_context().memory_manager, "pool", None)

    def flat(self, x):
        """A flat 1-D view of a compact array (a compact copy first when x is strided)."""
        return self.compact(x).reshape(-1)

    def inplace_flat(self, x, what):
        """A flat 1-D view of x, which an in-place kernel writes (x must be C-contiguous)."""
        if not x.is_c_contiguous():
            raise ValueError(f"{what}: the in-place target must be C-contiguous, got shape "
                             f"{x.shape} strides {x.strides}")
        return x.reshape(-1)

    def _no_target(self):
        t = getattr(self, "_no_target_arr", None)
        if t is None:
            t = self._no_target_arr = cuda.to_device(np.zeros(1, np.int64))
        return t

    # -- memory --------------------------------------------------------------------------------
    def empty(self, shape, dtype):
        shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(
            int(d) for d in shape)
        return cuda.device_array(shape, dtype=np.dtype(dtype))

    def full(self, shape, value, dtype):
        out = self.empty(shape, dtype)
        dt = np.dtype(dtype)
        launch_1d(K.fill_kernel, out.size, out.reshape(-1), dt.type(value), out.size)
        return out

    def from_numpy(self, a):
        a = np.asarray(a)
        return cuda.to_device(a if a.flags.c_contiguous else np.ascontiguousarray(a))

    def to_numpy(self, x, out=None):
        if not is_device_array(x):
            x = np.asarray(x)
            if out is None:
                return x.copy()
            np.copyto(out, x, casting="unsafe")
            return out
        x = self.compact(x)
        if out is None:
            return x.copy_to_host()
        if tuple(out.shape) != tuple(x.shape):
            raise ValueError(f"to_numpy: out has shape {out.shape}, array has {x.shape}")
        if out.dtype == x.dtype and out.flags.c_contiguous and out.flags.writeable:
            x.copy_to_host(out)
        else:
            np.copyto(out, x.copy_to_host(), casting="unsafe")
        return out

    def copy_(self, dst, src):
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(f"copy_: shapes differ, dst {dst.shape} vs src {src.shape}")
        if dst.size == 0:
            return dst
        if is_device_array(src):
            if src.dtype != dst.dtype:
                src = self.astype(src, dst.dtype)
            src = self.compact(src)
        else:
            src = np.ascontiguousarray(np.asarray(src), dtype=dst.dtype)
        if dst.is_c_contiguous():
            dst.copy_to_device(src)  # host->device, or device->device for a device array
            return dst
        # NOTE: a strided view: scatter into its root allocation (numba's own strided
        # assignment mis-handles negative steps)
        if not is_device_array(src):
            src = cuda.to_device(src)
        root, off = root_of(dst)
        launch_1d(K.scatter_strided_kernel, dst.size, root, src.reshape(-1),
                  tuple(int(d) for d in dst.shape), elem_strides(dst), off, dst.size)
        return dst

    def add_(self, dst, src):
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(f"add_: shapes differ, dst {dst.shape} vs src {src.shape}")
        return self.binary_("add", dst, src if src.dtype == dst.dtype
                            else self.astype(src, dst.dtype))

    def binary_(self, op, dst, src):
        if not dst.is_c_contiguous() or dst.dtype == FLOAT16:
            # NOTE: one kernel per op computes float16 in float32 (see ``binary``)
            return self.copy_(dst, self.binary(op, self.compact(dst), src))
        d = dst.reshape(-1)
        # NOTE: elementwise in place is race-free: each thread reads and writes its own index
        launch_1d(K.binary_kernel(op), d.size, d, self.flat(src), d, d.size)
        return dst

    def fill_(self, dst, value):
        if not dst.is_c_contiguous():
            return self.copy_(dst, self.full(tuple(dst.shape), value, dst.dtype))
        launch_1d(K.fill_kernel, dst.size, dst.reshape(-1), dst.dtype.type(value), dst.size)
        return dst

    def astype(self, x, dtype):
        dtype = np.dtype(dtype)
        x = self.compact(x)
        out = self.empty(x.shape, dtype)
        kern = K.cast_bool_kernel if dtype == np.bool_ and x.dtype != np.bool_ else K.cast_kernel
        launch_1d(kern, x.size, x.reshape(-1), out.reshape(-1), x.size)
        return out

    # -- elementwise ---------------------------------------------------------------------------
    @float16_via_float32(1)
    def unary(self, op, x):
        if op not in K.UNARY_FUNCS:
            raise ValueError(f"unknown unary op {op!r}; known: {UNARY_OPS}")
        keeps = op in K.UNARY_KEEPS_DTYPE or x.dtype.kind == "f"
        out = self.empty(x.shape, x.dtype if keeps else np.float64)
        launch_1d(K.unary_kernel(op), x.size, self.flat(x), out.reshape(-1), x.size)
        return out

    @float16_via_float32(3, 1, 2)
    def unary_backward(self, op, x, y, grad):
        """grad * op'(x), one fused kernel (relu, tanh, sigmoid, exp, gelu)."""
        if op not in K.BACKWARD_FUNCS:
            raise ValueError(f"unary_backward: unsupported op {op!r}")
        a = x if K.BACKWARD_INPUT[op] == "x" else y
        out = self.empty(grad.shape, grad.dtype)
        launch_1d(K.binary_kernel(op, "backward"), grad.size, self.flat(a), self.flat(grad),
                  out.reshape(-1), grad.size)
        return out

    @float16_via_float32(1, 2)
    def binary(self, op, a, b):
        if op not in K.BINARY_FUNCS:
            raise ValueError(f"unknown binary op {op!r}; known: {BINARY_OPS}")
        if tuple(a.shape) != tuple(b.shape):
            raise ValueError(f"binary {op}: shapes differ, {a.shape} vs {b.shape}")
        rdt = binary_result_dtype(op, a.dtype, b.dtype)
        out = self.empty(a.shape, rdt)
        launch_1d(K.binary_kernel(_int_variant(op, a.dtype)), a.size, self.flat(a),
                  self.flat(b), out.reshape(-1), a.size)
        return out

    @float16_via_float32(1)
    def scalar(self, op, a, s, reverse=False):
        if op not in K.BINARY_FUNCS:
            raise ValueError(f"unknown scalar op {op!r}; known: {BINARY_OPS}")
        rdt = scalar_result_dtype(op, a.dtype, type(s), bool(reverse))
        # NOTE: pass the scalar typed (float32 stays float32 arithmetic on the GPU)
        if a.dtype.kind == "f" or (isinstance(s, (int, np.integer)) and a.dtype.kind in "iu"):
            sv = a.dtype.type(s)
        else:
            sv = np.float64(s) if isinstance(s, (float, np.floating)) else np.int64(s)
        out = self.empty(a.shape, rdt)
        launch_1d(K.scalar_kernel(_int_variant(op, rdt), bool(reverse)), a.size, self.flat(a),
                  sv, out.reshape(-1), a.size)
        return out

    def where(self, cond, a, b):
        shape = tuple(np.broadcast_shapes(tuple(cond.shape), tuple(a.shape), tuple(b.shape)))
        cond, a, b = (self.broadcast_to(t, shape) for t in (cond, a, b))
        if a.dtype != b.dtype:
            raise TypeError(f"where: dtypes differ, {a.dtype} and {b.dtype}")
        out = self.empty(shape, a.dtype)
        launch_1d(K.where_kernel, out.size, self.flat(cond), self.flat(a), self.flat(b),
                  out.reshape(-1), out.size)
        return out

    # -- reductions ----------------------------------------------------------------------------
    def _to_rows(self, x, axes):
        """x permuted so ``axes`` come last, as a compact (rows, cols) array; and kept shape."""
        keep = [d for d in range(x.ndim) if d not in axes]
        xp = self.permute(x, tuple(keep) + tuple(axes))
        rows = prod(x.shape[d] for d in keep)
        cols = prod(x.shape[d] for d in axes)
        return self.compact(xp).reshape(rows, cols), tuple(x.shape[d] for d in keep)

    @float16_via_float32(0)
    def sum(self, x, axes, keepdims=False):
        if axes is None:
            axes = tuple(range(x.ndim))
        elif isinstance(axes, (int, np.integer)):
            axes = (int(axes),)
        axes = tuple(sorted(int(a) % max(x.ndim, 1) for a in axes)) if x.ndim else ()
        rdt = np.sum(np.zeros(1, x.dtype)).dtype  # NOTE: numpy's: int32/bool sum -> int64
        if rdt != x.dtype:
            x = self.astype(x, rdt)
        x2, kept = self._to_rows(x, axes)
        rows, cols = x2.shape
        out = self.empty((rows,), rdt)
        if cols == 0:
            launch_1d(K.fill_kernel, rows, out, rdt.type(0), rows)
        else:
            launch_rows(K.row_sum_kernel(rdt.str), rows, cols, x2.reshape(-1), out, rows,
                        cols, rdt.type(0))
        if keepdims:
            return out.reshape(tuple(1 if d in axes else x.shape[d] for d in range(x.ndim)))
        return out.reshape(kept)

    @float16_via_float32(0)
    def max(self, x, axis, keepdims=False):
        return self._arg_extreme(x, axis, keepdims, False)

    @float16_via_float32(0)
    def min(self, x, axis, keepdims=False):
        return self._arg_extreme(x, axis, keepdims, True)

    def _arg_extreme(self, x, axis, keepdims, is_min):
        if axis is None:
            if x.size == 0:
                raise ValueError("max/min: zero-size array")
            v, i = self._arg_extreme(self.flat(x), 0, False, is_min)
            if keepdims:
                shp = (1,) * x.ndim
                return v.reshape(shp), i.reshape(shp)
            return v, i
        axis = int(axis) % x.ndim
        if x.shape[axis] == 0:
            raise ValueError(f"max/min: zero-size axis {axis} in shape {x.shape}")
        x2, kept = self._to_rows(x, (axis,))
        rows, cols = x2.shape
        val = self.empty((rows,), x.dtype)
        idx = self.empty((rows,), np.int64)
        launch_rows(K.row_argmax_kernel(x.dtype.str, is_min), rows, cols, x2.reshape(-1), val,
                    idx, rows, cols)
        shp = (tuple(1 if d == axis else x.shape[d] for d in range(x.ndim)) if keepdims
               else kept)
        return val.reshape(shp), idx.reshape(shp)

    def _lines(self, x, axis):
        """(compact x, n along axis, inner size, number of lines) of an (outer, n, inner)
        view of x."""
        x = self.compact(x)
        shape = tuple(x.shape)
        return x, shape[axis], prod(shape[axis + 1:]), prod(shape) // max(shape[axis], 1)

    @float16_via_float32(0)
    def cumsum(self, x, axis):
        rdt = np.cumsum(np.zeros(1, x.dtype)).dtype  # NOTE: numpy's: int32/bool -> int64
        if rdt != x.dtype:
            x = self.astype(x, rdt)
        x, n, inner, lines = self._lines(x, axis)
        out = self.empty(tuple(x.shape), rdt)
        if x.size:
            launch_1d(K.cumsum_kernel, lines, x.reshape(-1), out.reshape(-1), n, inner, lines,
                      rdt.type(0))
        return out

    @float16_via_float32(0)
    def argsort(self, x, axis, descending=False):
        x, n, inner, _ = self._lines(x, axis)
        out = self.empty(tuple(x.shape), np.int64)
        if x.size:
            launch_1d(K.argsort_rank_kernel, x.size, x.reshape(-1), out.reshape(-1), n, inner,
                      x.size, bool(descending))
        return out

    # -- linear algebra ------------------------------------------------------------------------
    @float16_via_float32(0, 1)
    def matmul(self, a, b):
        squeeze_a = a.ndim == 1
        squeeze_b = b.ndim == 1
        if squeeze_a:
            a = self.reshape(a, (1, a.shape[0]))
        if squeeze_b:
            b = self.reshape(b, (b.shape[0], 1))
        ash, bsh = tuple(a.shape), tuple(b.shape)  # NOTE: simulator shapes reject [-1]
        if ash[-1] != bsh[-2] or ash[:-2] != bsh[:-2]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match "
                             "(batch shapes must be equal; the front end broadcasts them)")
        batch_shape = ash[:-2]
        batch = prod(batch_shape)
        m, kdim = ash[-2:]
        n = bsh[-1]
        out = self.empty(batch_shape + (m, n), a.dtype)
        if kdim == 0:
            launch_1d(K.fill_kernel, out.size, out.reshape(-1), a.dtype.type(0), out.size)
        else:
            launch_matmul(self.flat(a), self.flat(b), out.reshape(-1), batch, m, n, kdim,
                          a.dtype.type(0))
        if squeeze_a:
            out = out.reshape(batch_shape + (n,) if not squeeze_b else batch_shape)
        elif squeeze_b:
            out = out.reshape(batch_shape + (m,))
        return out
