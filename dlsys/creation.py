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
           "linspace", "eye", "randint", "randperm", "multinomial", "zeros_like", "ones_like",
           "empty_like",
           "full_like", "randn_like", "rand_like"]


def _has_numpy_float64(data) -> bool:
    """Does (nested list/tuple) ``data`` hold a numpy float64 value? (torch keeps those
    float64; Python floats take the default float32.)"""
    if isinstance(data, (np.ndarray, np.generic)):
        return data.dtype == np.float64
    if isinstance(data, (list, tuple)):
        return any(_has_numpy_float64(v) for v in data)
    return False


def _infer_dtype(arr: np.ndarray, dtype, data):
    """torch.tensor's dtype: ``dtype`` if given; a numpy array's (or scalar's) own dtype;
    else float32 for Python floats, int64 for Python ints, bool for bools."""
    if dtype is not None:
        return _dt.as_dtype(dtype)
    if isinstance(data, (np.ndarray, np.generic)):
        if data.dtype not in _dt.SUPPORTED_SET:
            raise TypeError(f"tensor: numpy data of dtype {data.dtype} is not supported (dlsys "
                            f"has {', '.join(str(d) for d in _dt.SUPPORTED)}); pass dtype= to "
                            "convert it")
        return np.dtype(data.dtype)
    # NOTE: numpy's dtype of Python data is torch's, but for Python floats (float64 in numpy,
    # the default float32 in torch, unless numpy float64 values are among them); numpy
    # values of other dtypes (np.int32, np.float16) give theirs, as in torch
    dt = arr.dtype
    if dt == np.float64:
        return _dt.float64 if _has_numpy_float64(data) else _dt.default_float
    if dt in _dt.SUPPORTED_SET:
        return np.dtype(dt)
    raise TypeError(f"cannot make a tensor from data of dtype {dt} (dlsys has "
                    f"{', '.join(str(d) for d in _dt.SUPPORTED)}); pass dtype= to convert it")


def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A new Tensor holding a copy of ``data``, with torch.tensor's dtype rule: a numpy array
    keeps its dtype, Python floats become float32, ints int64 (see ``_infer_dtype``)."""
    dev = _backend.as_device(device)
    if isinstance(data, Tensor):
        src = data.device.to_numpy(data._data)
        dt = _dt.as_dtype(dtype) if dtype is not None else src.dtype
        arr = np.array(src, dtype=dt, copy=True)
    else:
        if isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in data):
            data = [np.asarray(x) for x in data]
        src = np.asarray(data)
        arr = np.array(src, dtype=_infer_dtype(src, dtype, data), copy=True, order="C")
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


def _or(dtype, default):
    return default if dtype is None else dtype


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
    """``fill_value`` everywhere; without ``dtype``, the fill value's: bool, int64 for an
    int, float32 for a float (as torch.full)."""
    shape = _shape_arg((shape,) if isinstance(shape, numbers.Integral) else tuple(shape))
    if dtype is None:
        dtype = _scalar_dtype(fill_value)
    return _factory(shape, lambda d, s, t: d.full(s, fill_value, t), dtype, device, requires_grad)


def _scalar_dtype(v):
    if isinstance(v, Tensor):
        return v.dtype
    if isinstance(v, (bool, np.bool_)):
        return _dt.bool_
    if isinstance(v, numbers.Integral):
        return _dt.int64
    return _dt.default_float


def zeros(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full(_shape_arg(shape), 0, _or(dtype, _dt.default_float), device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full(_shape_arg(shape), 1, _or(dtype, _dt.default_float), device, requires_grad)


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


def arange(start, stop=None, step=1, dtype=None, device=None, requires_grad=False) -> Tensor:
    """int64 for integer arguments, float32 when any is a float (as torch.arange)."""
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        ints = all(isinstance(v, numbers.Integral) for v in (start, stop, step))
        dtype = _dt.int64 if ints else _dt.default_float
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    return tensor(np.arange(start, stop, step), dtype=dtype, device=device,
                  requires_grad=requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False) -> Tensor:
    """``steps`` evenly spaced values from start to end, both included (float32 default)."""
    if int(steps) < 0:
        raise ValueError(f"linspace: steps must be non-negative, got {steps}")
    return tensor(np.linspace(float(start), float(end), int(steps)),
                  dtype=_or(dtype, _dt.default_float), device=device, requires_grad=requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """The n x m identity (m = n by default)."""
    m = n if m is None else m
    if n < 0 or m < 0:
        raise ValueError(f"eye: sizes must be non-negative, got {n} and {m}")
    return tensor(np.eye(int(n), int(m)), dtype=_or(dtype, _dt.default_float), device=device,
                  requires_grad=requires_grad)


def randint(low, high=None, size=None, dtype=None, device=None, requires_grad=False):
    """Integers uniform in [low, high) of shape ``size`` (``randint(high, size)`` too), int64
    by default; from the global generator."""
    if size is None:  # randint(high, size)
        if high is None:
            raise TypeError("randint: missing the size argument")
        low, high, size = 0, low, high
    elif high is None:
        low, high = 0, low
    if int(high) <= int(low):
        raise ValueError(f"randint: expected low < high, got low={low} and high={high}")
    shape = _shape_arg((size,) if isinstance(size, numbers.Integral) else tuple(size))
    draws = _random.generator().integers(int(low), int(high), shape, dtype=np.int64)
    return tensor(draws, dtype=_or(dtype, _dt.int64), device=device, requires_grad=requires_grad)


def randperm(n, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A random permutation of 0 .. n-1 (int64 by default); from the global generator."""
    if int(n) < 0:
        raise ValueError(f"randperm: n must be non-negative, got {n}")
    return tensor(_random.generator().permutation(int(n)), dtype=_or(dtype, _dt.int64),
                  device=device, requires_grad=requires_grad)


def multinomial(probs: Tensor, num_samples, replacement=False) -> Tensor:
    """``num_samples`` class indices per row of ``probs`` (1-D or 2-D, non-negative weights,
    not normalised), with or without replacement; int64, on probs' device. Drawn on the host
    from the global generator."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim not in (1, 2) or p.shape[-1] == 0:
        raise ValueError(f"multinomial: probs must be 1-D or 2-D with categories, got shape "
                         f"{p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("multinomial: probs must be finite and non-negative")
    rows = p.reshape(-1, p.shape[-1])
    n = int(num_samples)
    if n <= 0 or (not replacement and n > rows.shape[1]):
        raise ValueError(f"multinomial: cannot draw {n} samples from {rows.shape[1]} "
                         f"categories {'with' if replacement else 'without'} replacement")
    totals = rows.sum(1, keepdims=True)
    if (totals <= 0).any():
        raise ValueError(f"multinomial: a row of probs sums to {totals.min()}")
    gen = _random.generator()
    if replacement:  # the inverse CDF of each row, at uniforms below its total
        cdf = np.cumsum(rows, 1)
        u = gen.random((rows.shape[0], n)) * cdf[:, -1:]
        out = np.stack([np.searchsorted(c, v, side="right") for c, v in zip(cdf, u,
                                                                            strict=True)])
    else:
        # NOTE: as torch: the n largest p / E for E ~ Exp(1) (Efraimidis-Spirakis), so
        # categories of probability 0 come last, once the others are drawn
        keys = rows / gen.standard_exponential(rows.shape)
        out = np.argsort(-keys, 1, kind="stable")[:, :n]
    return tensor(out.reshape(p.shape[:-1] + (n,)).astype(np.int64), device=probs.device)


def _like(fn, t, dtype, device, **kw):
    return fn(*t.shape, dtype=t.dtype if dtype is None else dtype,
              device=t.device if device is None else device, **kw)


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    return _like(zeros, t, dtype, device, requires_grad=requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    return _like(ones, t, dtype, device, requires_grad=requires_grad)


def empty_like(t, dtype=None, device=None, requires_grad=False):
    return _like(empty, t, dtype, device, requires_grad=requires_grad)


def randn_like(t, dtype=None, device=None, requires_grad=False):
    return _like(randn, t, dtype, device, requires_grad=requires_grad)


def rand_like(t, dtype=None, device=None, requires_grad=False):
    return _like(rand, t, dtype, device, requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    return full(t.shape, fill_value, dtype=t.dtype if dtype is None else dtype,
                device=t.device if device is None else device, requires_grad=requires_grad)
