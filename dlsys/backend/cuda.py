"""The CUDA device: every kernel-interface method as Numba CUDA kernels (package numba-cuda).

Arrays are numba device arrays (``DeviceNDArray``; ``FakeCUDAArray`` under the simulator,
NUMBA_ENABLE_CUDASIM=1). The kernels live in ``cuda_kernels``/``cuda_kernels_nn``; this module
does shapes, dtypes and launches (the nn and optimizer launches are the ``cuda_nn`` mixin).
Imported lazily by ``dlsys.backend.cuda()``: only the ``cuda*`` modules import ``numba.cuda``.

Layout policy (views and indexing live in the ``cuda_views`` mixin): ``permute`` and
``broadcast_to`` return compact copies (a strided-gather kernel); basic indexing returns a view
sharing memory, strided when the selection is (it writes through, like numpy's), which
remembers its root allocation and offset so that ``compact`` gathers it and ``copy_`` scatters
into it. Kernels run on flat 1-D compact arrays.

Memory comes from a caching allocator (``cuda_memory``; DLSYS_CUDA_CACHING_ALLOCATOR=0 turns
it off): freed blocks are reused instead of a cuMemAlloc/cuMemFree pair per array.

float16: computed in float32 and rounded once at the end (arithmetic and atomics on half
need recent GPUs and are partial in Numba); sums accumulate float16 in float32, as on the CPU.
"""

from __future__ import annotations

import functools
import os
import sys
import types

import numpy as np
from numba import cuda

from . import cuda_kernels as K
from . import cuda_kernels_nn as KN
from .cuda_nn import CUDANNKernels, _prod, is_device_array
from .cuda_views import CUDAViews, _elem_strides, _root
from .device import BINARY_OPS, UNARY_OPS, Device

if not K.SIMULATOR and os.environ.get("DLSYS_CUDA_CACHING_ALLOCATOR", "1") != "0":
    from . import cuda_memory

    cuda_memory.install()  # NOTE: before the first CUDA context; later contexts only otherwise

_COMPARE = ("eq", "ne", "lt", "le", "gt", "ge")
_NP_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide,
    "pow": np.power, "maximum": np.maximum, "minimum": np.minimum,
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
    "gt": np.greater, "ge": np.greater_equal,
}
_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)
LOCAL_RANK_ENVS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK",
                   "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")


def select_device_for_local_rank(local_rank: int | None = None) -> int:
    """Bind this process to one GPU chosen by its local rank; returns the GPU's index.

    Call it before any CUDA work (before the first CUDA context exists), e.g. right after
    ``col.init()``: ``select_device_for_local_rank(col.local_rank())``. Without an argument the
    local rank is read from the launcher's environment (Open MPI, MPICH/Hydra, PMI, MVAPICH,
    Slurm), 0 when none is set.

    NOTE: while the CUDA driver is not initialised yet, this narrows CUDA_VISIBLE_DEVICES to the
    chosen GPU (``local_rank % n_gpus``, among the already visible ones if that variable is
    set), like Horovod's recipe: ``ds.cuda()`` (index 0) is then that GPU in every thread of the
    process (Numba's contexts are per thread; a helper thread would otherwise start on GPU 0).
    If the driver is already running it falls back to ``cuda.select_device`` (calling thread
    only). Under the simulator it only returns the index (0).
    """
    if local_rank is None:
        local_rank = 0
        for name in LOCAL_RANK_ENVS:
            v = os.environ.get(name)
            if v is not None and v.strip().isdigit():
                local_rank = int(v)
                break
    local_rank = int(local_rank)
    if K.SIMULATOR:
        return 0
    from numba.cuda.cudadrv.driver import driver as _driver

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
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
            os.environ["CUDA_VISIBLE_DEVICES"] = ids[index].strip()
            return index
    index = local_rank % max(1, len(cuda.gpus))
    cuda.select_device(index)
    return index


@functools.lru_cache(maxsize=1024)
def _binary_dtype(op, da, db):
    """numpy's result dtype (int / int -> float64, comparisons -> bool); cached per call site
    because the kernel launches are what should cost, not dtype inference."""
    with np.errstate(all="ignore"):
        return _NP_BINARY[op](np.ones(1, da), np.ones(1, db)).dtype


@functools.lru_cache(maxsize=1024)
def _scalar_dtype(op, da, stype, reverse):
    """numpy's result dtype of op(array, Python scalar); float arrays keep their dtype."""
    if op not in _COMPARE and da.kind == "f":
        return da
    with np.errstate(all="ignore"):
        z, s = np.ones(1, da), stype(1)
        return (_NP_BINARY[op](s, z) if reverse else _NP_BINARY[op](z, s)).dtype


def _in_context(gpu, method):
    @functools.wraps(method)
    def run(*args, **kwargs):
        with gpu:
            return method(*args, **kwargs)
    return run


class CUDADevice(CUDAViews, CUDANNKernels, Device):
    name = "cuda"

    def __init__(self, index: int = 0):
        self.index = int(index)
        if self.index != 0 and not K.SIMULATOR:
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
        if K.SIMULATOR:
            return None
        return getattr(cuda.current_context().memory_manager, "pool", None)

    def _flat(self, x):
        """A flat 1-D view of a compact array (a compact copy first when x is strided)."""
        return self.compact(x).reshape(-1)

    def _inplace_flat(self, x, what):
        if not x.is_c_contiguous():
            raise ValueError(f"{what}: the in-place target must be C-contiguous, got shape "
                             f"{x.shape} strides {x.strides}")
        return x.reshape(-1)

    def _no_target(self):
        t = getattr(self, "_no_target_arr", None)
        if t is None:
            t = self._no_target_arr = cuda.to_device(np.zeros(1, np.int64))
        return t

    def _up(self, x):
        """float16 -> float32 (computation dtype); anything else unchanged."""
        return self.astype(x, _F32) if x.dtype == _F16 else x

    # -- memory --------------------------------------------------------------------------------
    def empty(self, shape, dtype):
        shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(
            int(d) for d in shape)
        return cuda.device_array(shape, dtype=np.dtype(dtype))

    def full(self, shape, value, dtype):
        out = self.empty(shape, dtype)
        dt = np.dtype(dtype)
        K.launch_1d(K.fill_kernel, out.size, out.reshape(-1), dt.type(value), out.size)
        return out

    def from_numpy(self, a):
        return cuda.to_device(np.ascontiguousarray(a))

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
        root, off = _root(dst)
        K.launch_1d(K.scatter_strided_kernel, dst.size, root, src.reshape(-1),
                    tuple(int(d) for d in dst.shape), _elem_strides(dst), off, dst.size)
        return dst

    def add_(self, dst, src):
        """dst += src in place (same shape; src cast to dst's dtype). Optional device method
        the front end uses for gradient accumulation, so ``.grad`` views stay views."""
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(f"add_: shapes differ, dst {dst.shape} vs src {src.shape}")
        if not dst.is_c_contiguous():
            return self.copy_(dst, self.binary("add", self.compact(dst),
                                               self.astype(src, dst.dtype)))
        if dst.dtype == _F16:
            return self.copy_(dst, self.binary("add", dst, self.astype(src, _F16)))
        s = self._flat(src if src.dtype == dst.dtype else self.astype(src, dst.dtype))
        d = dst.reshape(-1)
        # NOTE: elementwise in place is race-free: each thread reads and writes its own index
        K.launch_1d(K.binary_kernel("add"), d.size, d, s, d, d.size)
        return dst

    def astype(self, x, dtype):
        dtype = np.dtype(dtype)
        x = self.compact(x)
        out = self.empty(x.shape, dtype)
        kern = K.cast_bool_kernel if dtype == np.bool_ and x.dtype != np.bool_ else K.cast_kernel
        K.launch_1d(kern, x.size, x.reshape(-1), out.reshape(-1), x.size)
        return out

    # -- elementwise ---------------------------------------------------------------------------
    def unary(self, op, x):
        if op not in K.UNARY_FUNCS:
            raise ValueError(f"unknown unary op {op!r}; known: {UNARY_OPS}")
        if x.dtype == _F16:
            return self.astype(self.unary(op, self.astype(x, _F32)), _F16)
        keeps = op in ("neg", "abs", "sign", "relu") or x.dtype.kind == "f"
        out = self.empty(x.shape, x.dtype if keeps else np.float64)
        K.launch_1d(K.unary_kernel(op), x.size, self._flat(x), out.reshape(-1), x.size)
        return out

    def unary_backward(self, op, x, y, grad):
        """grad * op'(x), one fused kernel (relu, tanh, sigmoid, exp, gelu)."""
        if op not in K.BACKWARD_FUNCS:
            raise ValueError(f"unary_backward: unsupported op {op!r}")
        a = x if K.BACKWARD_INPUT[op] == "x" else y
        if grad.dtype == _F16:
            r = self.unary_backward(op, self._up(x), self._up(y), self.astype(grad, _F32))
            return self.astype(r, _F16)
        out = self.empty(grad.shape, grad.dtype)
        K.launch_1d(K.binary_kernel(op, "backward"), grad.size, self._flat(a), self._flat(grad),
                    out.reshape(-1), grad.size)
        return out

    def binary(self, op, a, b):
        f = _NP_BINARY.get(op)
        if f is None:
            raise ValueError(f"unknown binary op {op!r}; known: {BINARY_OPS}")
        if tuple(a.shape) != tuple(b.shape):
            raise ValueError(f"binary {op}: shapes differ, {a.shape} vs {b.shape}")
        if a.dtype == _F16 and b.dtype == _F16:
            r = self.binary(op, self.astype(a, _F32), self.astype(b, _F32))
            return r if op in _COMPARE else self.astype(r, _F16)
        rdt = _binary_dtype(op, a.dtype, b.dtype)
        out = self.empty(a.shape, rdt)
        K.launch_1d(K.binary_kernel(op), a.size, self._flat(a), self._flat(b), out.reshape(-1),
                    a.size)
        return out

    def scalar(self, op, a, s, reverse=False):
        f = _NP_BINARY.get(op)
        if f is None:
            raise ValueError(f"unknown scalar op {op!r}; known: {BINARY_OPS}")
        if a.dtype == _F16:
            r = self.scalar(op, self.astype(a, _F32), s, reverse)
            return r if op in _COMPARE else self.astype(r, _F16)
        rdt = _scalar_dtype(op, a.dtype, type(s), bool(reverse))
        # NOTE: pass the scalar typed (float32 stays float32 arithmetic on the GPU)
        if a.dtype.kind == "f" or (isinstance(s, (int, np.integer)) and a.dtype.kind in "iu"):
            sv = a.dtype.type(s)
        else:
            sv = np.float64(s) if isinstance(s, (float, np.floating)) else np.int64(s)
        out = self.empty(a.shape, rdt)
        K.launch_1d(K.scalar_kernel(op, bool(reverse)), a.size, self._flat(a), sv,
                    out.reshape(-1), a.size)
        return out

    def where(self, cond, a, b):
        shape = tuple(np.broadcast_shapes(tuple(cond.shape), tuple(a.shape), tuple(b.shape)))
        cond, a, b = (self.broadcast_to(t, shape) for t in (cond, a, b))
        if a.dtype != b.dtype:
            raise TypeError(f"where: dtypes differ, {a.dtype} and {b.dtype}")
        out = self.empty(shape, a.dtype)
        K.launch_1d(K.where_kernel, out.size, self._flat(cond), self._flat(a), self._flat(b),
                    out.reshape(-1), out.size)
        return out

    # -- reductions ----------------------------------------------------------------------------
    def _to_rows(self, x, axes):
        """x permuted so ``axes`` come last, as a compact (rows, cols) array; and kept shape."""
        keep = [d for d in range(x.ndim) if d not in axes]
        xp = self.permute(x, tuple(keep) + tuple(axes))
        rows = _prod(x.shape[d] for d in keep)
        cols = _prod(x.shape[d] for d in axes)
        return self.compact(xp).reshape(rows, cols), tuple(x.shape[d] for d in keep)

    def sum(self, x, axes, keepdims=False):
        if axes is None:
            axes = tuple(range(x.ndim))
        elif isinstance(axes, (int, np.integer)):
            axes = (int(axes),)
        axes = tuple(sorted(int(a) % max(x.ndim, 1) for a in axes)) if x.ndim else ()
        if x.dtype == _F16:
            r = self.sum(self.astype(x, _F32), axes, keepdims)
            return self.astype(r, _F16)
        rdt = np.sum(np.zeros(1, x.dtype)).dtype  # NOTE: numpy's: int32/bool sum -> int64
        if rdt != x.dtype:
            x = self.astype(x, rdt)
        x2, kept = self._to_rows(x, axes)
        rows, cols = x2.shape
        out = self.empty((rows,), rdt)
        if cols == 0:
            K.launch_1d(K.fill_kernel, rows, out, rdt.type(0), rows)
        else:
            K.launch_rows(K.row_sum_kernel(rdt.str), rows, cols, x2.reshape(-1), out, rows,
                          cols, rdt.type(0))
        if keepdims:
            return out.reshape(tuple(1 if d in axes else x.shape[d] for d in range(x.ndim)))
        return out.reshape(kept)

    def max(self, x, axis, keepdims=False):
        if x.dtype == _F16:
            v, i = self.max(self.astype(x, _F32), axis, keepdims)
            return self.astype(v, _F16), i
        if axis is None:
            if x.size == 0:
                raise ValueError("max: zero-size array")
            v, i = self.max(self._flat(x), 0)
            if keepdims:
                shp = (1,) * x.ndim
                return v.reshape(shp), i.reshape(shp)
            return v, i
        axis = int(axis) % x.ndim
        if x.shape[axis] == 0:
            raise ValueError(f"max: zero-size axis {axis} in shape {x.shape}")
        x2, kept = self._to_rows(x, (axis,))
        rows, cols = x2.shape
        val = self.empty((rows,), x.dtype)
        idx = self.empty((rows,), np.int64)
        K.launch_rows(K.row_argmax_kernel(x.dtype.str), rows, cols, x2.reshape(-1), val, idx,
                      rows, cols)
        shp = (tuple(1 if d == axis else x.shape[d] for d in range(x.ndim)) if keepdims
               else kept)
        return val.reshape(shp), idx.reshape(shp)

    # -- linear algebra ------------------------------------------------------------------------
    def matmul(self, a, b):
        if a.dtype != b.dtype:
            raise TypeError(f"matmul: dtypes differ, {a.dtype} and {b.dtype}")
        if a.dtype == _F16:
            return self.astype(self.matmul(self.astype(a, _F32), self.astype(b, _F32)), _F16)
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
        batch = _prod(batch_shape)
        m, kdim = ash[-2:]
        n = bsh[-1]
        out = self.empty(batch_shape + (m, n), a.dtype)
        if kdim == 0:
            K.launch_1d(K.fill_kernel, out.size, out.reshape(-1), a.dtype.type(0), out.size)
        else:
            KN.launch_matmul(self._flat(a), self._flat(b), out.reshape(-1), batch, m, n, kdim,
                            a.dtype.type(0))
        if squeeze_a:
            out = out.reshape(batch_shape + (n,) if not squeeze_b else batch_shape)
        elif squeeze_b:
            out = out.reshape(batch_shape + (m,))
        return out


class _CallableModule(types.ModuleType):
    """NOTE: ``dlsys.backend.cuda`` is both this module and the package's ``cuda(index)``
    function; importing the module first (``from dlsys.backend.cuda import ...``) rebinds the
    package attribute to the module, so the module stays callable like the function."""

    def __call__(self, index: int = 0):
        return sys.modules[__package__]._cuda_factory(index)


sys.modules[__name__].__class__ = _CallableModule
