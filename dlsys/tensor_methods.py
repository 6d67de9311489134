"""The op methods of Tensor, and the ``ds.*`` functions of the same ops: one table.

Each op function of ``dlsys.ops`` takes the tensor first, so it is attached to Tensor as it is
(``Tensor.sum = ops.reduce.sum``): ``x.sum(1)`` is one call into the op, with no forwarding
method in between, and ``ds.sum(x, 1)`` is the same function. Like PyTorch's
native_functions.yaml, one entry gives both spellings; unlike a class body, the table keeps
``tensor.py`` to the tensor itself (storage, conversion, autograd, in-place writes).

``METHODS`` and ``OPERATORS`` are attached to Tensor when ``dlsys.tensor`` finishes importing;
``FUNCTIONS`` are the names ``dlsys`` exports as ``ds.<name>``.
"""

from __future__ import annotations

import numpy as np

from . import creation as _cr
from . import random as _random
from .ops import compare as _cmp
from .ops import einsum as _es
from .ops import elementwise as _ew
from .ops import index as _ix
from .ops import matmul as _mm
from .ops import nn as _nn
from .ops import piecewise as _pw
from .ops import rearrange as _ra
from .ops import reduce as _rd
from .ops import shape as _sh
from .ops import sort as _so
from .tensor import Tensor

__all__ = ["METHODS", "OPERATORS", "FUNCTIONS", "attach"]


def _where(x, condition, y):
    """``x.where(condition, y)``: torch's method spelling of ``where(condition, x, y)``."""
    return _ew.where(condition, x, y)


def _logsumexp(x, dim, keepdim=False):
    return _nn.logsumexp(x, dim, keepdim=keepdim)


def _softmax(x, dim=None, dtype=None):
    return _nn.softmax(x, dim, dtype=dtype)


def _log_softmax(x, dim=None, dtype=None):
    return _nn.log_softmax(x, dim, dtype=dtype)


def _reshape_as(x, other):
    return _sh.reshape(x, other.shape)


def _view_as(x, other):
    return _sh.view(x, other.shape)


def _inplace(name, fn):
    """``x.name_(...)``: fn's result written into x (the in-place rules of Tensor: x must not
    require grad, or grad mode is off)."""
    def method(x, *args, **kwargs):
        x._check_inplace(name + "_")
        out = fn(x, *args, **kwargs)
        x.device.copy_(x._data, out._data)
        return x

    method.__name__ = name + "_"
    method.__doc__ = f"In-place {name} (see Tensor.{name})."
    return method


def _new(fill):
    def method(x, *size, dtype=None, device=None, requires_grad=False):
        return _cr.full(size[0] if len(size) == 1 and isinstance(size[0], (tuple, list))
                        else size, fill, dtype=x.dtype if dtype is None else dtype,
                        device=x.device if device is None else device,
                        requires_grad=requires_grad)
    return method


def _new_full(x, size, fill_value, dtype=None, device=None, requires_grad=False):
    return _new(fill_value)(x, tuple(size), dtype=dtype, device=device,
                            requires_grad=requires_grad)


def _new_tensor(x, data, dtype=None, device=None, requires_grad=False):
    return _cr.tensor(data, dtype=x.dtype if dtype is None else dtype,
                      device=x.device if device is None else device, requires_grad=requires_grad)


def _fill_random(draw):
    def method(x, *args, **kwargs):
        """In place: random values from the global generator (ds.manual_seed)."""
        x._check_inplace(draw.__name__ + "_")
        host = draw(_random.generator(), x.shape, *args, **kwargs)
        x.device.copy_(x._data, host.astype(x.dtype, copy=False))
        return x
    return method


def normal(gen, shape, mean=0.0, std=1.0):
    return gen.normal(mean, std, shape)


def uniform(gen, shape, a=0.0, b=1.0):  # noqa: A002 - torch's names
    return gen.uniform(a, b, shape)


def positive(x):
    """+x: x itself."""
    return x


def square(x):
    return x * x


def rsqrt(x):
    return _ew.sqrt(x) ** -1.0


def reciprocal(x):
    return 1.0 / x


def _type_as(x, other):
    return x.to(other.dtype)


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    """torch.allclose (on host copies; a Python bool)."""
    _cmp.compare("eq", a, b)  # the dtype, device and shape checks of a comparison
    return bool(np.allclose(np.asarray(a), np.asarray(b), rtol, atol, equal_nan))


def equal(a, b) -> bool:
    """torch.equal: the same shape and the same elements."""
    return a.shape == b.shape and a.dtype == b.dtype and bool(
        np.array_equal(np.asarray(a), np.asarray(b)))


OPERATORS = {
    "__add__": _ew.add, "__radd__": _ew.add, "__sub__": _ew.sub, "__rsub__": _ew.rsub,
    "__mul__": _ew.mul, "__rmul__": _ew.mul, "__truediv__": _ew.div, "__rtruediv__": _ew.rdiv,
    "__pow__": _ew.power, "__rpow__": _ew.rpower, "__mod__": _ew.remainder,
    "__rmod__": _ew.rremainder, "__floordiv__": _ew.floor_divide,
    "__rfloordiv__": _ew.rfloor_divide, "__neg__": _ew.neg, "__abs__": _ew.abs,
    "__matmul__": _mm.matmul, "__rmatmul__": _mm.rmatmul,
    "__eq__": _cmp.eq, "__ne__": _cmp.ne, "__lt__": _cmp.lt, "__le__": _cmp.le, "__gt__": _cmp.gt,
    "__ge__": _cmp.ge,
    "__and__": _cmp.bitwise_and, "__rand__": _cmp.bitwise_and, "__or__": _cmp.bitwise_or,
    "__ror__": _cmp.bitwise_or, "__xor__": _cmp.bitwise_xor, "__rxor__": _cmp.bitwise_xor,
    "__invert__": _cmp.bitwise_not, "__pos__": positive, "__getitem__": _sh.getitem,
}

METHODS = {
    # elementwise
    "add": _ew.add, "sub": _ew.sub, "mul": _ew.mul, "div": _ew.div, "pow": _ew.power,
    "remainder": _ew.remainder, "floor_divide": _ew.floor_divide,
    "neg": _ew.neg, "abs": _ew.abs, "exp": _ew.exp, "log": _ew.log, "log1p": _ew.log1p,
    "sqrt": _ew.sqrt, "relu": _ew.relu, "tanh": _ew.tanh, "sigmoid": _ew.sigmoid,
    "sin": _ew.sin, "cos": _ew.cos, "erf": _ew.erf, "maximum": _ew.maximum,
    "minimum": _ew.minimum, "clamp": _pw.clamp, "clip": _pw.clamp, "clamp_min": _pw.clamp_min,
    "clamp_max": _pw.clamp_max, "where": _where, "eq": _cmp.eq, "ne": _cmp.ne, "lt": _cmp.lt,
    "le": _cmp.le, "gt": _cmp.gt, "ge": _cmp.ge, "bitwise_and": _cmp.bitwise_and,
    "bitwise_or": _cmp.bitwise_or, "bitwise_xor": _cmp.bitwise_xor,
    "bitwise_not": _cmp.bitwise_not, "logical_not": _cmp.logical_not,
    "logical_and": _cmp.logical_and, "logical_or": _cmp.logical_or,
    "logical_xor": _cmp.logical_xor, "isnan": _cmp.isnan, "isinf": _cmp.isinf,
    "isfinite": _cmp.isfinite, "nonzero": _ew.nonzero,
    "matmul": _mm.matmul, "mm": _mm.mm, "bmm": _mm.bmm, "dot": _mm.dot, "outer": _mm.outer,
    # reductions
    "sum": _rd.sum, "mean": _rd.mean, "prod": _rd.prod, "amax": _rd.amax, "amin": _rd.amin,
    "max": _rd.max, "min": _rd.min, "argmax": _rd.argmax, "argmin": _rd.argmin,
    "var": _rd.var, "std": _rd.std, "any": _rd.any, "all": _rd.all, "norm": _rd.norm,
    "count_nonzero": _rd.count_nonzero,
    "cumsum": _rd.cumsum, "logsumexp": _logsumexp, "softmax": _softmax,
    "log_softmax": _log_softmax,
    # shape and views
    "reshape": _sh.reshape, "view": _sh.view, "permute": _sh.permute,
    "transpose": _sh.transpose, "swapaxes": _sh.swapaxes, "movedim": _sh.movedim, "t": _sh.t,
    "broadcast_to": _sh.broadcast_to, "expand": _sh.expand, "expand_as": _sh.expand_as,
    "flatten": _sh.flatten, "reshape_as": _reshape_as, "view_as": _view_as,
    "squeeze": _sh.squeeze, "unsqueeze": _sh.unsqueeze, "flip": _sh.flip,
    "contiguous": _sh.contiguous, "clone": _sh.clone,
    "repeat": _ra.repeat, "roll": _ra.roll, "split": _ra.split, "chunk": _ra.chunk,
    "unbind": _ra.unbind,
    # indexing along a dim, masks, sorting
    "gather": _ix.gather, "scatter": _ix.scatter, "scatter_add": _ix.scatter_add,
    "index_select": _ix.index_select, "select": _ix.select, "narrow": _ix.narrow,
    "masked_fill": _ix.masked_fill, "tril": _ix.tril, "triu": _ix.triu,
    "sort": _so.sort, "argsort": _so.argsort, "topk": _so.topk, "msort": _so.msort,
}

METHODS.update({
    "positive": positive, "square": square, "rsqrt": rsqrt, "reciprocal": reciprocal,
    "sign": _pw.sign,
    "floor": _pw.floor, "ceil": _pw.ceil, "trunc": _pw.trunc,
    "new_zeros": _new(0), "new_ones": _new(1), "new_full": _new_full, "new_tensor": _new_tensor,
    "type_as": _type_as, "allclose": allclose, "equal": equal,
    "normal_": _fill_random(normal), "uniform_": _fill_random(uniform),
})
METHODS.update({f"{n}_": _inplace(n, METHODS[n]) for n in (
    "clamp", "clip", "masked_fill", "scatter", "scatter_add", "tril", "triu", "exp", "log",
    "sqrt", "relu", "sigmoid", "tanh", "neg", "abs", "pow", "sin", "cos", "square", "sign")})

PROPERTIES = {"T": _sh.T, "mT": _sh.mT}

# ds.<name>: torch.<name>'s function of each op (the method names, minus the methods that
# torch has only as methods, plus the functions that are not methods)
_METHOD_ONLY = ("where", "view", "contiguous", "expand", "expand_as", "reshape_as", "view_as",
                "repeat", "scatter_add", "msort", "new_zeros", "new_ones", "new_full",
                "new_tensor", "type_as")
FUNCTIONS = {name: fn for name, fn in METHODS.items()
             if name not in _METHOD_ONLY and not name.endswith("_")}
FUNCTIONS.update({
    "where": _ew.where, "scatter_add": _ix.scatter_add, "stack": _sh.stack,
    "concatenate": _sh.concatenate, "cat": _sh.concatenate, "concat": _sh.concatenate,
    "einsum": _es.einsum, "msort": _so.msort,
})


def attach(cls=Tensor) -> None:
    """Put the table on the Tensor class (once, at import)."""
    for name, fn in {**OPERATORS, **METHODS}.items():
        setattr(cls, name, fn)
    for name, fn in PROPERTIES.items():
        setattr(cls, name, property(fn))
