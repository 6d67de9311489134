"""Piecewise elementwise ops: clamp (torch's gradient of 1 at the bounds), sign and the
roundings floor/ceil/trunc (a gradient of 0 everywhere, as torch's)."""

from __future__ import annotations

from ..autograd import apply, wrap
from ..tensor import Tensor
from . import Op
from .elementwise import _operand, where

__all__ = ["clamp", "clamp_min", "clamp_max", "sign", "floor", "ceil", "trunc"]


class Step(Op):
    """A piecewise-constant op (sign, floor, ceil, trunc): its gradient is 0 (torch's)."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def compute(self, x):
        d = self.device
        if self.name == "sign":
            s = d.unary("sign", x)
            if x.dtype.kind != "f":
                return s
            # NOTE: torch's sign(nan) is 0 (numpy's is nan)
            return d.where(d.binary("ne", x, x), d.full(x.shape, 0, x.dtype), s)
        if self.name == "floor":
            return _floor(d, x)
        ceil = d.unary("neg", _floor(d, d.unary("neg", x)))  # -floor(-x)
        if self.name == "ceil":
            return ceil
        return d.where(d.scalar("lt", x, 0), ceil, _floor(d, x))  # trunc: toward zero

    def gradient(self, g, node):
        return (wrap(self.device.full(g.shape, 0, g.dtype), g.device),)


def _floor(d, x):
    """x // 1 where x is finite (floor division is exact); inf and nan stay as they are."""
    finite = d.scalar("eq", d.binary("sub", x, x), 0)
    return d.where(finite, d.scalar("floor_divide", x, 1), x)


def _step(name, x):
    if x._data.dtype.kind in "biu":  # integers are their own floor, ceil and trunc
        return x if name != "sign" else apply(Step(name), x)
    return apply(Step(name), x)


def sign(x):
    """-1, 0 or 1 (nan stays nan)."""
    return _step("sign", x)


def floor(x):
    return _step("floor", x)


def ceil(x):
    return _step("ceil", x)


def trunc(x):
    return _step("trunc", x)


class Clamp(Op):
    """min(max(x, lo), hi) for scalar bounds; the gradient passes where lo <= x <= hi, the
    bounds included (torch's)."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def compute(self, x):
        d = self.device
        if self.lo is not None:
            x = d.scalar("maximum", x, self.lo)
        return x if self.hi is None else d.scalar("minimum", x, self.hi)

    def gradient(self, g, node):
        x = node._inputs[0]
        d = self.device
        inside = None
        if self.lo is not None:
            inside = d.scalar("ge", x._data, self.lo)
        if self.hi is not None:
            le_hi = d.scalar("le", x._data, self.hi)
            inside = le_hi if inside is None else d.binary("bitwise_and", inside, le_hi)
        return (g * wrap(d.astype(inside, g.dtype), g.device),)


def clamp(x, min=None, max=None):  # noqa: A002 - PyTorch's names
    """Clamp to [min, max] (scalars or tensors; either may be None, not both). With min > max
    every element becomes max, as in torch."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = x
        if min is not None:  # NOTE: where, so x keeps the gradient at the bound (torch's)
            out = where(out < min, min, out)
        if max is not None:
            out = where(out > max, max, out)
        return out
    lo = None if min is None else _operand(x, min, "clamp")
    hi = None if max is None else _operand(x, max, "clamp")
    return apply(Clamp(lo, hi), x)


def clamp_min(x, min):  # noqa: A002
    return clamp(x, min, None)


def clamp_max(x, max):  # noqa: A002
    return clamp(x, None, max)
