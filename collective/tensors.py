"""All of collective's handling of what users pass: numpy arrays, dlsys Tensors, buffers.

The one adapter between collective and dlsys (as Horovod keeps its framework adapter in one
place). It uses dlsys's public API only: ``t.numpy()`` on a CPU Tensor IS its storage (no
copy, writable); ``ds.from_numpy(a)`` is a CPU Tensor sharing ``a``'s memory;
``t.copy_(src)`` copies across devices; slicing and ``.view`` under ``ds.no_grad()`` give views;
``t.is_set_to(u)`` says whether two Tensors are the same memory. A Tensor is recognised with
``isinstance(x, dlsys.Tensor)`` when dlsys has been imported (an object cannot be a dlsys
Tensor otherwise; importing dlsys only to check would cost seconds).

Accepted inputs of the collectives:
- numpy arrays;
- dlsys Tensors: a CPU Tensor's storage is used directly; a CUDA Tensor is staged through a
  reusable host buffer (copied in before the call, and back after an in-place call);
- any object exporting the buffer protocol (``memoryview(obj)`` works: bytearray,
  array.array, numpy scalars, ...).

Layout rules (documented copies, never silent changes of values):
- out-of-place calls never modify their input; a non-contiguous input is copied to a
  contiguous array first (the result is new anyway);
- an in-place call on a non-contiguous array works on a contiguous copy and writes the result
  back into the view; an in-place call on read-only memory raises ``ValueError``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import numpy as np

#: dtypes that can be reduced (Sum/Average/Max/Min)
REDUCE_DTYPES = tuple(np.dtype(t) for t in ("float16", "float32", "float64", "int32", "int64"))
#: dtypes that can be moved (broadcast/allgather): the reducible ones plus small ints and bool
MOVE_DTYPES = REDUCE_DTYPES + tuple(np.dtype(t) for t in ("int8", "uint8", "int16", "uint16",
                                                          "uint32", "uint64", "bool"))
_ALLOWED = {REDUCE_DTYPES: frozenset(REDUCE_DTYPES), MOVE_DTYPES: frozenset(MOVE_DTYPES)}


def _dlsys():
    return sys.modules.get("dlsys")


def is_tensor(x) -> bool:
    """Whether ``x`` is a dlsys Tensor."""
    ds = _dlsys()
    return ds is not None and isinstance(x, ds.Tensor)


def needs_grad(x) -> bool:
    """Whether ``x`` is a dlsys Tensor whose collective must be recorded for autograd."""
    ds = _dlsys()
    return (ds is not None and isinstance(x, ds.Tensor) and x.requires_grad
            and ds.is_grad_enabled())


def on_cpu(t) -> bool:
    return t.device.name == "cpu"


def type_name(x) -> str:
    t = type(x)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__name__}"


def check_dtype(dtype, allowed, what):
    fast = _ALLOWED.get(allowed)
    if dtype not in (fast if fast is not None else allowed):
        names = ", ".join(str(d) for d in allowed)
        raise TypeError(f"{what}: unsupported dtype {dtype}; supported: {names}")


# -- host <-> tensor copies -------------------------------------------------------------------

def read_into(host: np.ndarray, t):
    """Copy Tensor ``t`` (any device) into the host array ``host`` (same shape)."""
    _dlsys().from_numpy(host).copy_(t)


def write_from(t, host: np.ndarray):
    """Copy the host array ``host`` into Tensor ``t`` in place (its storage is kept)."""
    with _dlsys().no_grad():
        t.copy_(host)


def to_numpy(value) -> np.ndarray:
    """``value`` (numpy array or Tensor) as a host numpy array: the array itself, a CPU
    Tensor's storage, or a host copy of a CUDA Tensor."""
    return value if isinstance(value, np.ndarray) else value.numpy()


def host_tensor(array: np.ndarray):
    """A CPU Tensor sharing ``array``'s memory."""
    return _dlsys().from_numpy(array)


def assign(value, src: np.ndarray):
    """``value[...] = src`` in place, for a numpy array or a Tensor on any device."""
    if isinstance(value, np.ndarray):
        np.copyto(value, src)
    else:
        write_from(value, src)


def state_to_host(obj):
    """A copy of a (nested) state dict with every Tensor as a numpy array, so it pickles."""
    if isinstance(obj, Mapping):
        return {k: state_to_host(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(state_to_host(v) for v in obj)
    if is_tensor(obj):
        return np.array(obj.numpy())
    return obj


def cast(x, dtype, out=None):
    """``x`` (numpy array or Tensor) cast to ``dtype``, written into ``out`` when given."""
    if isinstance(x, np.ndarray) and (out is None or isinstance(out, np.ndarray)):
        if out is None:
            return x.astype(dtype)
        np.copyto(out, x, casting="unsafe")
        return out
    if out is None:
        return x.to(dtype)
    with _dlsys().no_grad():
        out.copy_(x)  # Tensor.copy_ casts to out's dtype
    return out


# -- gradient buckets: flat buffers and views into them --------------------------------------

def flat_zeros(numel: int, dtype, device):
    """A zeroed 1-D Tensor of ``numel`` elements on ``device``."""
    return _dlsys().zeros(numel, dtype=dtype, device=device)


def views(flat, offsets, numels, shapes) -> list:
    """Tensors sharing ``flat``'s memory: elements [off, off + n) in ``shape``."""
    with _dlsys().no_grad():
        return [flat[off:off + n].view(shape)
                for off, n, shape in zip(offsets, numels, shapes, strict=True)]


def same_memory(a, b) -> bool:
    """Whether Tensors ``a`` and ``b`` are the same memory (the identity check first: it is
    the common case and costs nothing)."""
    return a is b or (a is not None and a.is_set_to(b))


def describe_param(name, p) -> tuple:
    """What must agree across ranks about a parameter: name, shape, dtype, device type."""
    return (name, tuple(int(s) for s in p.shape), np.dtype(p.dtype).str, p.device.name)


# -- staging the collectives' inputs --------------------------------------------------------

class Staged:
    """A C-contiguous numpy array holding the values of a user object.

    ``array``: the data (may be the user's memory itself). ``commit()`` writes an in-place
    result back where needed (CUDA staging, non-contiguous views). ``wrap(result)`` turns a
    new host result into the kind of object the user passed (Tensor on its device, or ndarray).
    """

    __slots__ = ("array", "_source", "_writeback")

    def __init__(self, array, source=None, writeback=None):
        self.array = array
        self._source = source  # the Tensor passed, if one was
        self._writeback = writeback

    def commit(self):
        if self._writeback is not None:
            self._writeback(self.array)

    def wrap(self, result: np.ndarray):
        t = self._source
        if t is None:
            return result
        out = _dlsys().from_numpy(result)
        return out if on_cpu(t) else out.to(t.device)


def stage(x, *, inplace: bool, what: str, pool, dtypes=REDUCE_DTYPES,
          pool_key: str = "stage") -> Staged:
    """``x`` as a Staged contiguous numpy array (see the module docstring for the rules);
    ``pool`` (a HostPool) holds the staging buffers of CUDA Tensors."""
    source = None
    if isinstance(x, np.ndarray):
        arr = x
    elif is_tensor(x):
        source = x
        if on_cpu(x):
            arr = x.numpy()
        else:  # device memory (CUDA): stage through a reusable host buffer
            dtype = np.dtype(x.dtype)
            check_dtype(dtype, dtypes, what)
            shape = tuple(x.shape)
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            host = pool.get(pool_key, nbytes, dtype).reshape(shape)
            read_into(host, x)
            if inplace:
                return Staged(host, x, lambda a, _t=x: write_from(_t, a))
            return Staged(host, x)  # host buffer is scratch: the caller copies it
    else:
        try:
            mv = memoryview(x)
        except TypeError:
            raise TypeError(f"{what}: expected a numpy array, a dlsys Tensor or a buffer-protocol "
                            f"object, got {type_name(x)}") from None
        arr = np.asarray(mv)
    check_dtype(arr.dtype, dtypes, what)
    if inplace:
        if not arr.flags.writeable:
            raise ValueError(f"{what}: the input ({type_name(x)}, shape {arr.shape}, dtype "
                             f"{arr.dtype}) is read-only; an in-place collective needs writable "
                             "memory (use the out-of-place form)")
        if not arr.flags.c_contiguous:
            def writeback(a, _dst=arr):
                np.copyto(_dst, a)
            return Staged(np.ascontiguousarray(arr), source, writeback)
        return Staged(arr, source)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return Staged(arr, source)
