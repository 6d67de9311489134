"""Reductions: sum, mean, max (values; ties share the gradient evenly), argmax (no grad)."""

from __future__ import annotations

import math

import numpy as np

from ..autograd import apply, wrap
from ..tensor import Tensor
from . import Op
from . import shape as _sh

__all__ = ["sum", "mean", "max", "argmax", "normalize_axes"]


def normalize_axes(axis, ndim, what="axis") -> tuple:
    """None -> all axes; int or sequence -> sorted non-negative tuple (IndexError if out of
    range, ValueError on repeats)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < (ndim or 1):
            raise IndexError(f"{what} {a} is out of range for a tensor with {ndim} dims")
        out.append(a % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated {what} in {axis}")
    return tuple(sorted(out)) if ndim else ()


def _kd_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


class Sum(Op):
    __slots__ = ("axes", "keepdims", "in_shape")

    def __init__(self, axes, keepdims):
        self.axes, self.keepdims = axes, keepdims

    def compute(self, x):
        self.in_shape = x.shape
        return self.device.sum(x, self.axes, self.keepdims)

    def gradient(self, g, node):
        if not self.keepdims:
            g = _sh.reshape(g, _kd_shape(self.in_shape, self.axes))
        return (_sh.broadcast_to(g, self.in_shape),)


def sum(x: Tensor, axis=None, keepdims=False) -> Tensor:  # noqa: A001
    axes = normalize_axes(axis, x.ndim)
    return apply(Sum(axes, bool(keepdims)), x)


def mean(x: Tensor, axis=None, keepdims=False) -> Tensor:
    if x._data.dtype.kind != "f":
        raise TypeError(f"mean: needs a floating tensor, got dtype {x._data.dtype}")
    axes = normalize_axes(axis, x.ndim)
    n = math.prod(x.shape[a] for a in axes)
    s = apply(Sum(axes, bool(keepdims)), x)
    return s * (1.0 / n) if n else s * float("nan")


class Max(Op):
    __slots__ = ("axes", "keepdims")

    def __init__(self, axes, keepdims):
        self.axes, self.keepdims = axes, keepdims

    def compute(self, x):
        d = self.device
        v = x
        for a in reversed(self.axes):
            v = d.max(v, a, keepdims=True)[0]
        if not self.keepdims:
            v = d.reshape(v, tuple(s for i, s in enumerate(x.shape) if i not in self.axes))
        return v

    def gradient(self, g, node):
        x = node._inputs[0]
        d = self.device
        kd = _kd_shape(x.shape, self.axes)
        top = d.broadcast_to(d.reshape(node._data, kd), x.shape)
        # NOTE: amax semantics: every maximal element gets an equal share of the gradient.
        mask = d.astype(d.binary("eq", x._data, top), g.dtype)
        count = d.broadcast_to(d.sum(mask, self.axes, keepdims=True), x.shape)
        w = wrap(d.binary("div", mask, count), g.device)
        return (_sh.broadcast_to(_sh.reshape(g, kd), x.shape) * w,)


def max(x: Tensor, axis=None, keepdims=False) -> Tensor:  # noqa: A001
    axes = normalize_axes(axis, x.ndim)
    for a in axes:
        if x.shape[a] == 0:
            raise ValueError(f"max: zero-size axis {a} in shape {x.shape}")
    return apply(Max(axes, bool(keepdims)), x)


def argmax(x: Tensor, axis=None, keepdims=False) -> Tensor:
    """int64 indices of the maxima (flat indices when axis is None); no gradient."""
    d = x.device
    if axis is None:
        _, idx = d.max(d.reshape(x._data, (-1,)), 0, keepdims=False)
        if keepdims:
            idx = d.reshape(idx, (1,) * x.ndim)
        return wrap(idx, d)
    (a,) = normalize_axes(axis, x.ndim)
    return wrap(d.max(x._data, a, keepdims=keepdims)[1], d)
