"""Turn what the user passes into contiguous numpy buffers, and back.

Accepted inputs:
- numpy arrays;
- dlsys Tensors (duck-typed: ``t._data`` and ``t.device``; dlsys is never imported here). A CPU
  tensor's numpy array is ``t._data`` itself (no copy). A CUDA tensor is staged through a
  reusable host buffer: ``t.device.to_numpy(t._data, out=host)`` before and
  ``t.device.copy_(t._data, host)`` after an in-place call;
- any object exporting the buffer protocol (``memoryview(obj)`` works: bytearray, array.array,
  numpy scalars, ...).

Layout rules (documented copies, never silent changes of values):
- out-of-place calls never modify their input; a non-contiguous input is copied to a
  contiguous array first (the result is new anyway);
- an in-place call on a non-contiguous numpy array works on a contiguous copy and writes the
  result back into the view; an in-place call on read-only memory raises ``ValueError``.
"""

from __future__ import annotations

import numpy as np

#: dtypes that can be reduced (Sum/Average/Max/Min)
REDUCE_DTYPES = tuple(np.dtype(t) for t in ("float16", "float32", "float64", "int32", "int64"))
#: dtypes that can be moved (broadcast/allgather): the reducible ones plus small ints and bool
MOVE_DTYPES = REDUCE_DTYPES + tuple(np.dtype(t) for t in ("int8", "uint8", "int16", "uint16",
                                                          "uint32", "uint64", "bool"))
_ALLOWED = {REDUCE_DTYPES: frozenset(REDUCE_DTYPES), MOVE_DTYPES: frozenset(MOVE_DTYPES)}


class HostPool:
    """Grow-only host buffers reused across calls (one per purpose), so that no call allocates
    its working memory: a fresh large allocation per call is what makes MPICH's own Allreduce
    collapse at >= 32 MiB (glibc hands out a fresh mmap each time, which is page-faulted anew)."""

    def __init__(self):
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, purpose: str, nbytes: int, dtype=np.uint8) -> np.ndarray:
        buf = self._bufs.get(purpose)
        if buf is None or buf.nbytes < nbytes:
            # grow geometrically so a sweep of sizes reallocates O(log) times
            size = max(nbytes, 4096, 0 if buf is None else min(2 * buf.nbytes, 1 << 31))
            buf = np.empty(size, dtype=np.uint8)
            self._bufs[purpose] = buf
        dtype = np.dtype(dtype)
        return buf[:nbytes].view(dtype)

    def clear(self):
        self._bufs.clear()


POOL = HostPool()


def _is_tensor(x) -> bool:
    return hasattr(x, "_data") and hasattr(x, "device") and not isinstance(x, np.ndarray)


def type_name(x) -> str:
    t = type(x)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__name__}"


class Staged:
    """A C-contiguous numpy array holding the values of a user object.

    ``array``: the data (may be the user's memory itself). ``commit()`` writes an in-place
    result back where needed (CUDA staging, non-contiguous views). ``wrap(result)`` turns a
    new host result into the kind of object the user passed (Tensor on its device, or ndarray).
    """

    __slots__ = ("array", "_source", "_kind", "_writeback")

    def __init__(self, array, source, kind, writeback=None):
        self.array = array
        self._source = source
        self._kind = kind
        self._writeback = writeback

    def commit(self):
        if self._writeback is not None:
            self._writeback(self.array)

    def wrap(self, result: np.ndarray):
        if self._kind == "tensor":
            t = self._source
            device = t.device
            data = result if isinstance(t._data, np.ndarray) else device.from_numpy(result)
            return type(t).from_array(data, device=device)
        return result


def stage(x, *, inplace: bool, what: str, dtypes=REDUCE_DTYPES, pool_key: str = "stage"):
    """``x`` as a Staged contiguous numpy array (see the module docstring for the rules)."""
    if isinstance(x, np.ndarray):
        arr, kind = x, "numpy"
    elif _is_tensor(x):
        kind = "tensor"
        data = x._data
        if isinstance(data, np.ndarray):
            arr = data
        else:  # a device array (CUDA): stage through a reusable host buffer
            dtype = np.dtype(x.dtype)
            _check_dtype(dtype, dtypes, what)
            shape = tuple(x.shape)
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            host = POOL.get(pool_key, nbytes, dtype).reshape(shape)
            x.device.to_numpy(data, out=host)
            if inplace:
                def writeback(a, _t=x):
                    _t.device.copy_(_t._data, a)
                return Staged(host, x, kind, writeback)
            return Staged(host, x, kind)  # host buffer is scratch: the caller copies it
    else:
        try:
            mv = memoryview(x)
        except TypeError:
            raise TypeError(f"{what}: expected a numpy array, a dlsys Tensor or a buffer-protocol "
                            f"object, got {type_name(x)}") from None
        arr, kind = np.asarray(mv), "buffer"
    _check_dtype(arr.dtype, dtypes, what)
    if inplace:
        if not arr.flags.writeable:
            raise ValueError(f"{what}: the input ({type_name(x)}, shape {arr.shape}, dtype "
                             f"{arr.dtype}) is read-only; an in-place collective needs writable "
                             "memory (use the out-of-place form)")
        if not arr.flags.c_contiguous:
            tmp = np.ascontiguousarray(arr)

            def writeback(a, _dst=arr):
                np.copyto(_dst, a)
            return Staged(tmp, x, kind, writeback)
        return Staged(arr, x, kind)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return Staged(arr, x, kind)


def _check_dtype(dtype, allowed, what):
    fast = _ALLOWED.get(allowed)
    if dtype not in (fast if fast is not None else allowed):
        names = ", ".join(str(d) for d in allowed)
        raise TypeError(f"{what}: unsupported dtype {dtype}; supported: {names}")
