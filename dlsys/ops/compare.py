"""Elementwise ops without a gradient: comparisons (bool results) and the bitwise / logical
ops (& | ^ ~ on bool and integer tensors)."""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import wrap
from ..tensor import Tensor
from . import check_same
from .elementwise import _operand, prepare

__all__ = ["compare", "eq", "ne", "lt", "le", "gt", "ge", "bitwise_and", "bitwise_or",
           "bitwise_xor", "bitwise_not", "logical_not", "logical_and", "logical_or", "logical_xor",
           "isnan", "isinf", "isfinite"]


def compare(name, a, o):
    """A bool Tensor (never requires grad). A float scalar may meet an integer tensor here:
    the result is a bool, nothing is truncated."""
    d = a.device
    if isinstance(o, numbers.Real) and not isinstance(o, (bool, np.bool_)):
        return wrap(d.scalar(name, a._data, o), d)
    o = _operand(a, o, name)
    if isinstance(o, Tensor):
        check_same(a, o, name)
        x, y = a._data, o._data
        if x.shape != y.shape:
            try:
                shape = np.broadcast_shapes(x.shape, y.shape)
            except ValueError:
                raise ValueError(f"{name}: shapes {x.shape} and {y.shape} cannot be broadcast "
                                 f"together") from None
            x, y = d.broadcast_to(x, shape), d.broadcast_to(y, shape)
        return wrap(d.binary(name, x, y), d)
    return wrap(d.scalar(name, a._data, o), d)


def eq(a, o):
    return compare("eq", a, o)


def ne(a, o):
    return compare("ne", a, o)


def lt(a, o):
    return compare("lt", a, o)


def le(a, o):
    return compare("le", a, o)


def gt(a, o):
    return compare("gt", a, o)


def ge(a, o):
    return compare("ge", a, o)


# -- bitwise ----------------------------------------------------------------------------------
def _bitwise(name, a, o):
    if a._data.dtype.kind not in "biu":
        raise TypeError(f"{name}: needs bool or integer tensors, got dtype {a._data.dtype}")
    if not isinstance(o, Tensor):
        if isinstance(o, (bool, np.bool_)) or (isinstance(o, numbers.Integral)
                                               and a.dtype.kind != "b"):
            o = wrap(a.device.full((), o, a.dtype), a.device)
        else:
            raise TypeError(f"{name}: unsupported operand {o!r} for a tensor of dtype {a.dtype}")
    a, o = prepare(a, o, name)
    return wrap(a.device.binary(name, a._data, o._data), a.device)


def bitwise_and(a, o):
    return _bitwise("bitwise_and", a, o)


def bitwise_or(a, o):
    return _bitwise("bitwise_or", a, o)


def bitwise_xor(a, o):
    return _bitwise("bitwise_xor", a, o)


def bitwise_not(a):
    """~a: logical not of a bool tensor, bitwise not of an integer one."""
    kind = a._data.dtype.kind
    if kind not in "biu":
        raise TypeError(f"bitwise_not: needs a bool or integer tensor, got dtype {a.dtype}")
    return wrap(a.device.unary("logical_not" if kind == "b" else "bitwise_not", a._data),
                a.device)


def logical_not(a):
    return wrap(a.device.unary("logical_not", (a != 0)._data if a.dtype.kind != "b"
                               else a._data), a.device)


def _truth(a):
    return a if a.dtype == np.bool_ else a != 0


def logical_and(a, b):
    return bitwise_and(_truth(a), _truth(b))


def logical_or(a, b):
    return bitwise_or(_truth(a), _truth(b))


def logical_xor(a, b):
    return bitwise_xor(_truth(a), _truth(b))


def isnan(a):
    return a != a


def isinf(a):
    if a.dtype.kind != "f":
        return wrap(a.device.full(a.shape, False, np.bool_), a.device)
    return wrap(a.device.scalar("eq", a.device.unary("abs", a._data), np.inf), a.device)


def isfinite(a):
    """Neither inf nor nan: x - x is 0 exactly for finite x."""
    if a.dtype.kind != "f":
        return wrap(a.device.full(a.shape, True, np.bool_), a.device)
    return wrap(a.device.scalar("eq", a.device.binary("sub", a._data, a._data), 0), a.device)
