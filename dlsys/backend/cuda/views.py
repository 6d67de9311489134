"""Views and indexing of the CUDA device (a mixin of ``CUDADevice``): reshape, permute,
broadcast_to, basic indexing as views that write through, advanced indexing as gathers,
index_add as atomic scatter-adds, stack and concatenate.

A strided view remembers its root allocation (a flat C-contiguous array) and the element offset
of its first element in it (``root_of``): ``compact`` gathers it and ``CUDADevice.copy_``
scatters into it with our own kernels (numba's strided setitem mis-handles negative steps).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ..device import float16_via_float32
from . import kernels as K
from .launch import SIMULATOR, launch_1d


def is_device_array(x) -> bool:
    """True for numba device arrays (and the simulator's fake ones); numpy is not."""
    return hasattr(x, "copy_to_host") and not isinstance(x, np.ndarray)


def prod(shape):
    p = 1
    for d in shape:
        p *= int(d)
    return p


def _c_strides(shape):
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


def _norm_shape(shape, size):
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = [int(d) for d in shape]
    if shape.count(-1) > 1:
        raise ValueError(f"reshape: at most one -1 allowed, got {tuple(shape)}")
    if -1 in shape:
        known = prod(d for d in shape if d != -1)
        if known == 0 or size % known:
            raise ValueError(f"reshape: cannot reshape array of size {size} into {tuple(shape)}")
        shape[shape.index(-1)] = size // known
    if prod(shape) != size:
        raise ValueError(f"reshape: cannot reshape array of size {size} into {tuple(shape)}")
    return tuple(shape)


def _is_basic(index):
    return all(i is None or i is Ellipsis or isinstance(i, (slice, int, np.integer))
               and not isinstance(i, (bool, np.bool_)) for i in index)


def _basic_view(shape, index, strides=None):
    """(shape, strides in elements, offset) of x[index] for an x of ``shape`` and ``strides``
    (in elements; default C-contiguous).

    NOTE: numpy does the index arithmetic on a zero-byte-per-step fake array (itemsize 1, as
    strided over one byte): only pointers move, no memory is read, and every numpy rule
    (negative steps, None, Ellipsis, bounds errors) comes for free.
    """
    base = np.lib.stride_tricks.as_strided(np.zeros(1, np.int8), shape=shape,
                                           strides=strides or _c_strides(shape))
    if not any(i is Ellipsis for i in index):
        index = index + (Ellipsis,)  # NOTE: keeps an all-int index a 0-d array, not a scalar
    v = base[index]
    offset = v.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    return v.shape, v.strides, offset


def elem_strides(x):
    it = x.dtype.itemsize
    return tuple(int(s) // it for s in x.strides)


def root_of(x):
    """(the flat C-contiguous array that owns x's memory, the element offset of x's first
    element in it). Strided arrays are views made by ``CUDADevice._view``, which records it."""
    root = getattr(x, "_dlsys_root", None)
    if root is not None:
        return root
    if not x.is_c_contiguous():
        raise ValueError(f"cuda: a strided device array (shape {tuple(x.shape)}, strides "
                         f"{tuple(x.strides)}) that dlsys did not create as a view")
    return x.reshape(-1), 0


class CUDAViews:
    """Mixin: needs ``empty``, ``astype`` and ``copy_`` of the device."""

    def compact(self, x):
        if x.is_c_contiguous():
            return x
        root, off = root_of(x)
        return self._gather(root, tuple(x.shape), elem_strides(x), off, x.dtype)

    def _gather(self, src_flat, shape, strides, offset, dtype):
        out = self.empty(tuple(shape), dtype)
        n = out.size
        if n:
            if len(shape) == 0:  # NOTE: kernels take non-empty tuples; a 0-d view is (1,)
                shape, strides = (1,), (0,)
            launch_1d(K.gather_strided_kernel, n, src_flat, out.reshape(-1),
                      tuple(int(s) for s in shape), tuple(int(s) for s in strides),
                      int(offset), n)
        return out

    # -- views ---------------------------------------------------------------------------------
    def reshape(self, x, shape):
        shape = _norm_shape(shape, x.size)
        return self.compact(x).reshape(shape) if shape != tuple(x.shape) else x

    def permute(self, x, axes):
        axes = tuple(int(a) for a in axes)
        if sorted(axes) != list(range(x.ndim)):
            raise ValueError(f"permute: axes {axes} do not match an array of {x.ndim} dims")
        if axes == tuple(range(x.ndim)):
            return x
        x = self.compact(x)
        st = _c_strides(x.shape)
        return self._gather(x.reshape(-1), tuple(x.shape[a] for a in axes),
                            tuple(st[a] for a in axes), 0, x.dtype)

    def broadcast_to(self, x, shape):
        shape = tuple(int(d) for d in shape)
        if shape == tuple(x.shape):
            return x
        if len(shape) < x.ndim:
            raise ValueError(f"broadcast_to: cannot broadcast {x.shape} to {shape}")
        x = self.compact(x)
        src_shape = (1,) * (len(shape) - x.ndim) + tuple(x.shape)
        st = _c_strides(src_shape)
        strides = []
        for s, d, t in zip(src_shape, shape, st, strict=True):
            if s != d and s != 1:
                raise ValueError(f"broadcast_to: cannot broadcast {x.shape} to {shape}")
            strides.append(0 if s != d else t)  # NOTE: stride 0 repeats the one element
        return self._gather(x.reshape(-1), shape, strides, 0, x.dtype)

    def _host_index(self, index):
        """The index with device arrays brought to the host (small index arrays only)."""
        return tuple(i.copy_to_host() if is_device_array(i) else i for i in index)

    def _int_rows_index(self, x, index):
        """The integer array when ``index`` is one int array selecting along axis 0, else None."""
        if len(index) != 1 or x.ndim == 0:
            return None
        i = index[0]
        if is_device_array(i) or isinstance(i, np.ndarray):
            if np.dtype(i.dtype).kind in "iu":
                return i
        elif isinstance(i, list) and i and all(isinstance(v, (int, np.integer))
                                                and not isinstance(v, bool) for v in i):
            return np.asarray(i, dtype=np.int64)
        return None

    def _device_int64(self, idx, rows=None):
        """A compact int64 device array of ``idx``; host arrays are bounds-checked first."""
        if is_device_array(idx):
            return self.compact(idx if idx.dtype == np.int64 else self.astype(idx, np.int64))
        idx = np.asarray(idx, dtype=np.int64)
        if rows is not None and idx.size and (idx.min() < -rows or idx.max() >= rows):
            raise IndexError(f"index out of range [{idx.min()}, {idx.max()}] for axis 0 "
                             f"of size {rows}")
        return cuda.to_device(np.ascontiguousarray(idx))

    def _view(self, x, index):
        """x[index] (basic indexing) as a device array sharing x's memory."""
        it = x.dtype.itemsize
        shape, st, off = _basic_view(tuple(x.shape), index, elem_strides(x))
        if prod(shape) == 0:
            return self.empty(shape, x.dtype)
        root, root_off = root_of(x)
        off += root_off
        if SIMULATOR:
            ix = index if any(i is Ellipsis for i in index) else index + (Ellipsis,)
            view = x[ix]  # NOTE: a numpy view inside the fake array
        else:
            # NOTE: numba's own __getitem__ lacks None/Ellipsis, turns x[i, j] into a host
            # scalar and mis-computes extents for negative steps, so the view is built directly:
            # its data pointer is its element 0, inside the root allocation.
            start = off * it
            if any(s < 0 for s in st):
                data = root.gpu_data.view(start)
            else:
                span = (1 + sum((d - 1) * s for d, s in zip(shape, st, strict=True))) * it
                data = root.gpu_data.view(start, start + span)
            view = type(x)(shape=shape, strides=tuple(s * it for s in st), dtype=x.dtype,
                           gpu_data=data)
        view._dlsys_root = (root, off)
        return view

    def getitem(self, x, index):
        """Basic indexing returns a view sharing memory (numpy/PyTorch semantics; writes
        through); integer-array and mask indexing return compact copies."""
        index = index if isinstance(index, tuple) else (index,)
        if _is_basic(index):
            return self._view(x, index)
        x = self.compact(x)
        rows_idx = self._int_rows_index(x, index)
        if rows_idx is not None:
            rows = x.shape[0]
            inner = prod(x.shape[1:])
            idx = self._device_int64(rows_idx, rows)
            out = self.empty(tuple(rows_idx.shape) + tuple(x.shape[1:]), x.dtype)
            launch_1d(K.take_rows_kernel, out.size, x.reshape(-1), idx.reshape(-1),
                      out.reshape(-1), rows, inner, out.size)
            return out
        # NOTE: general advanced indexing (several int arrays, masks, mixes with slices):
        # numpy computes the flat source positions on the host, a take kernel gathers them.
        flat = np.arange(x.size, dtype=np.int64).reshape(x.shape)[self._host_index(index)]
        flat = np.ascontiguousarray(flat)
        out = self.empty(flat.shape, x.dtype)
        launch_1d(K.take_kernel, out.size, x.reshape(-1), cuda.to_device(flat.reshape(-1)),
                  out.reshape(-1), out.size)
        return out

    def setitem(self, dst, index, value):
        """dst[index] = value: basic indexing writes through a view; advanced indexing scatters
        to positions numpy computes on the host (with repeated positions, one of the values
        lands, unspecified which, as on PyTorch's GPUs)."""
        index = index if isinstance(index, tuple) else (index,)
        if _is_basic(index):
            view = self._view(dst, index)
            self.copy_(view, self._value_as(value, tuple(view.shape), dst.dtype))
            return
        flat = np.arange(dst.size, dtype=np.int64).reshape(dst.shape)[self._host_index(index)]
        if flat.size == 0:
            return
        vals = self._value_as(value, flat.shape, dst.dtype)
        if not is_device_array(vals):
            vals = cuda.to_device(np.ascontiguousarray(vals))
        target = dst if dst.is_c_contiguous() else self.compact(dst)
        launch_1d(K.put_kernel, flat.size, target.reshape(-1),
                  cuda.to_device(np.ascontiguousarray(flat).reshape(-1)), self.flat(vals),
                  flat.size)
        if target is not dst:
            self.copy_(dst, target)

    def _value_as(self, value, shape, dtype):
        """value (scalar, host array or device array) with ``shape`` and ``dtype``."""
        if is_device_array(value):
            if value.dtype != dtype:
                value = self.astype(value, dtype)
            return self.broadcast_to(value, shape)
        return np.broadcast_to(np.asarray(value, dtype=dtype), shape)

    @float16_via_float32(0, 2, inplace=(0,))  # NOTE: no portable half atomics
    def index_add(self, out, index, values):
        index = index if isinstance(index, tuple) else (index,)
        if not out.is_c_contiguous():
            tmp = self.compact(out)
            self.index_add(tmp, index, values)
            self.copy_(out, tmp)
            return out
        o = out.reshape(-1)
        if values.dtype != out.dtype:
            values = self.astype(values, out.dtype)
        if _is_basic(index):
            shape, strides, offset = _basic_view(tuple(out.shape), index)
            vals = self.flat(self.broadcast_to(values, shape))
            n = prod(shape)
            if n:
                if not shape:
                    shape, strides = (1,), (0,)
                launch_1d(K.scatter_add_strided_kernel, n, o, vals, tuple(shape),
                          tuple(int(s) for s in strides), int(offset), n)
            return out
        rows_idx = self._int_rows_index(out, index)
        if rows_idx is not None:
            rows = out.shape[0]
            inner = prod(out.shape[1:])
            idx = self._device_int64(rows_idx, rows)
            vals = self.flat(self.broadcast_to(values, tuple(rows_idx.shape)
                                                + tuple(out.shape[1:])))
            launch_1d(K.index_add_rows_kernel, vals.size, o, idx.reshape(-1), vals, rows,
                      inner, vals.size)
            return out
        flat = np.arange(out.size, dtype=np.int64).reshape(out.shape)[self._host_index(index)]
        flat = np.ascontiguousarray(flat)
        vals = self.flat(self.broadcast_to(values, flat.shape))
        launch_1d(K.index_add_flat_kernel, flat.size, o, cuda.to_device(flat.reshape(-1)),
                  vals, flat.size)
        return out

    def stack(self, arrays, axis):
        arrays = list(arrays)
        if not arrays:
            raise ValueError("stack: need at least one array")
        shape = tuple(arrays[0].shape)
        axis = int(axis) + (len(shape) + 1 if axis < 0 else 0)
        for a in arrays:
            if tuple(a.shape) != shape:
                raise ValueError(f"stack: all arrays need the same shape, got {shape} and "
                                 f"{tuple(a.shape)}")
        new = shape[:axis] + (1,) + shape[axis:]
        return self.concatenate([self.compact(a).reshape(new) for a in arrays], axis)

    def concatenate(self, arrays, axis):
        arrays = [self.compact(a) for a in arrays]
        if not arrays:
            raise ValueError("concatenate: need at least one array")
        ref = tuple(arrays[0].shape)
        axis = int(axis) + (len(ref) if axis < 0 else 0)
        dtype = arrays[0].dtype
        for a in arrays:
            s = tuple(a.shape)
            if len(s) != len(ref) or s[:axis] + s[axis + 1:] != ref[:axis] + ref[axis + 1:]:
                raise ValueError(f"concatenate: shapes {ref} and {s} differ off axis {axis}")
            if a.dtype != dtype:
                raise TypeError(f"concatenate: dtypes differ, {dtype} and {a.dtype}")
        total = sum(a.shape[axis] for a in arrays)
        out_shape = ref[:axis] + (total,) + ref[axis + 1:]
        out = self.empty(out_shape, dtype)
        inner = prod(ref[axis + 1:])
        dst_cols = total * inner
        off = 0
        o = out.reshape(-1)
        for a in arrays:
            cols = a.shape[axis] * inner
            launch_1d(K.copy_block_kernel, a.size, a.reshape(-1), o, cols, dst_cols, off,
                      a.size)
            off += cols
        return out
