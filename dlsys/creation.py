"""Tensor construction: ``tensor`` (copies), factories (zeros, ones, full, empty, randn, rand,
arange) and the ``*_like`` variants. dtype rules: see ``dlsys.dtypes``; random draws come from
the global generator (``dlsys.random``)."""

from __future__ import annotations

import numbers

import numpy as np

from . import backend as _backend
from . import dtypes as _dt
from . import random as _random
from .autograd import wrap
from .tensor import Tensor

__all__ = ["tensor", "from_numpy", "zeros", "ones", "full", "empty", "randn", "rand", "arange",
           "zeros_like", "ones_like", "full_like", "randn_like", "rand_like"]


def _infer_dtype(arr: np.ndarray, dtype):
    if dtype is not None:
        return _dt.as_dtype(dtype)
    k = arr.dtype.kind
    if k == "f":
        return _dt.float32 if arr.dtype == np.float64 else _dt.as_dtype(arr.dtype)
    if k in "iu":
        return _dt.int64
    if k == "b":
        return _dt.bool_
    raise TypeError(f"cannot make a tensor from data of dtype {arr.dtype}")


def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A new Tensor holding a copy of ``data`` (see dlsys.dtypes for the dtype rules)."""
    dev = _backend.as_device(device)
    if isinstance(data, Tensor):
        src = data.device.to_numpy(data._data)
        dt = _dt.as_dtype(dtype) if dtype is not None else src.dtype
        arr = np.array(src, dtype=dt, copy=True)
    else:
        if isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in data):
            data = [np.asarray(x) for x in data]
        src = np.asarray(data)
        arr = np.array(src, dtype=_infer_dtype(src, dtype), copy=True, order="C")
    t = wrap(dev.from_numpy(arr), dev)
    if requires_grad:
        t.requires_grad = True
    return t


def from_numpy(a: np.ndarray) -> Tensor:
    """A CPU Tensor SHARING ``a``'s memory and dtype (as ``torch.from_numpy``): writes to
    either are seen by the other. ``a`` must be a numpy array of a supported dtype."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(a).__name__}")
    _dt.as_dtype(a.dtype)  # TypeError for dtypes dlsys has no kernels for
    return wrap(a, _backend.cpu())


def from_state(host, device, requires_grad, grad=None) -> Tensor:
    """The Tensor ``Tensor.__reduce_ex__`` saved (pickle, copy.deepcopy): host data, a device
    name, requires_grad and the saved state of its ``.grad``."""
    dev = _backend.as_device(device)
    t = wrap(dev.from_numpy(host), dev)
    t._requires_grad = requires_grad
    if grad is not None:
        t._grad = from_state(*grad)
    return t


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for s in shape:
        if not isinstance(s, numbers.Integral) or s < 0:
            raise ValueError(f"invalid shape {shape}: sizes must be non-negative ints")
    return tuple(int(s) for s in shape)


def _factory(shape, fill, dtype, device, requires_grad):
    dev = _backend.as_device(device)
    dt = _dt.default_float if dtype is None else _dt.as_dtype(dtype)
    t = wrap(fill(dev, shape, dt), dev)
    if requires_grad:
        t.requires_grad = True
    return t


def full(shape, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    shape = _shape_arg((shape,) if isinstance(shape, numbers.Integral) else tuple(shape))
    return _factory(shape, lambda d, s, t: d.full(s, fill_value, t), dtype, device, requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full(_shape_arg(shape), 0, dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full(_shape_arg(shape), 1, dtype, device, requires_grad)


def empty(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _factory(_shape_arg(shape), lambda d, s, t: d.empty(s, t), dtype, device,
                    requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal draws from the global generator (``ds.manual_seed``)."""
    return _factory(_shape_arg(shape), lambda d, s, t: d.randn(s, t, _random.generator()),
                    dtype, device, requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform [0, 1) draws from the global generator."""
    return _factory(_shape_arg(shape), lambda d, s, t: d.rand(s, t, _random.generator()),
                    dtype, device, requires_grad)


def arange(start, stop=None, step=1, dtype=None, device=None) -> Tensor:
    if stop is None:
        start, stop = 0, start
    arr = np.arange(start, stop, step)
    return tensor(arr, dtype=dtype, device=device)


def _like(fn, t, dtype, device, **kw):
    return fn(*t.shape, dtype=t.dtype if dtype is None else dtype,
              device=t.device if device is None else device, **kw)


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    return _like(zeros, t, dtype, device, requires_grad=requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    return _like(ones, t, dtype, device, requires_grad=requires_grad)


def randn_like(t, dtype=None, device=None, requires_grad=False):
    return _like(randn, t, dtype, device, requires_grad=requires_grad)


def rand_like(t, dtype=None, device=None, requires_grad=False):
    return _like(rand, t, dtype, device, requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    return full(t.shape, fill_value, dtype=t.dtype if dtype is None else dtype,
                device=t.device if device is None else device, requires_grad=requires_grad)
