"""Reductions, with PyTorch's semantics: sum, mean, prod, amax/amin (ties share the gradient
evenly), max/min (a value, or ``(values, indices)`` along a dim), argmax/argmin, var/std
(unbiased by default), any/all, norm, cumsum.

Every function takes ``dim``/``keepdim`` (torch) or ``axis``/``keepdims`` (numpy).
"""

from __future__ import annotations

import collections
import math

import numpy as np

from ..autograd import apply, wrap
from ..tensor import Tensor
from . import Op, alias, normalize_dims, wrap_dim
from . import elementwise as _ew
from . import index as _ix
from . import shape as _sh

__all__ = ["sum", "mean", "prod", "amax", "amin", "max", "min", "argmax", "argmin", "var",
           "std", "any", "all", "count_nonzero", "norm", "cumsum", "normalize_axes"]

# torch.return_types.max / min: named tuples of (values, indices)
max_result = collections.namedtuple("max", ("values", "indices"))
min_result = collections.namedtuple("min", ("values", "indices"))


def normalize_axes(axis, ndim, what="axis") -> tuple:
    """None -> all axes; int or sequence -> sorted non-negative tuple (``normalize_dims``)."""
    return normalize_dims(axis, ndim, what)


def _kd_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _dims(x, dim, axis, keepdim, keepdims, what):
    if axis is not None:
        dim = alias(dim, axis, "dim", "axis")
    if keepdims is not None:
        keepdim = alias(keepdim, keepdims, "keepdim", "keepdims", False)
    return normalize_dims(dim, x.ndim, what), bool(keepdim)


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


def sum(x: Tensor, dim=None, keepdim=False, *, dtype=None, axis=None,  # noqa: A001
        keepdims=None) -> Tensor:
    """Integer and bool tensors sum to int64 (as torch)."""
    axes, kd = _dims(x, dim, axis, keepdim, keepdims, "sum")
    if dtype is not None:
        x = x.to(dtype)
    return apply(Sum(axes, kd), x)


def mean(x: Tensor, dim=None, keepdim=False, *, dtype=None, axis=None,
         keepdims=None) -> Tensor:
    axes, kd = _dims(x, dim, axis, keepdim, keepdims, "mean")
    if dtype is not None:
        x = x.to(dtype)
    if x._data.dtype.kind != "f":
        raise TypeError(f"mean: needs a floating tensor, got dtype {x._data.dtype} (pass "
                        f"dtype=ds.float32 or cast first)")
    n = math.prod(x.shape[a] for a in axes)
    s = apply(Sum(axes, kd), x)
    return s * (1.0 / n) if n else s * float("nan")


def prod(x: Tensor, dim=None, keepdim=False, *, dtype=None, axis=None,
         keepdims=None) -> Tensor:
    """Product over one dim (or all): a tree of elementwise products, so the gradient is
    exact with zeros in the input (as torch's) and differentiable again."""
    dim = alias(dim, axis, "dim", "axis")
    kd = bool(alias(keepdim, keepdims, "keepdim", "keepdims", False))
    if dtype is not None:
        x = x.to(dtype)
    elif x.dtype.kind in "biu":
        x = x.to(np.int64)  # NOTE: as torch, integer and bool products are int64
    if dim is None:
        out = _prod_last(_sh.reshape(x, -1))
        return _sh.reshape(out, (1,) * x.ndim) if kd else out
    d = wrap_dim(dim, x.ndim, "prod")
    if x.ndim == 0:
        return x
    moved = _sh.movedim(x, d, -1)
    out = _prod_last(moved)
    return _sh.unsqueeze(out, d) if kd else out


def _prod_last(x: Tensor) -> Tensor:
    """Product over the last dim, halving it with one elementwise multiply per level."""
    n = x.shape[-1]
    if n == 0:  # the empty product
        return wrap(x.device.full(x.shape[:-1], 1, x.dtype), x.device)
    while n > 1:
        h = n // 2
        head = x[..., :h] * x[..., h:2 * h]
        x = _sh.concatenate([head, x[..., 2 * h:]], -1) if n % 2 else head
        n = x.shape[-1]
    return x[..., 0]


# -- extrema ---------------------------------------------------------------------------------------
class Extreme(Op):
    """amax / amin over ``axes``: every extremal element gets an equal share of the gradient."""

    __slots__ = ("name", "axes", "keepdims")

    def __init__(self, name, axes, keepdims):
        self.name, self.axes, self.keepdims = name, axes, keepdims

    def compute(self, x):
        d = self.device
        reduce = d.max if self.name == "amax" else d.min
        v = x
        for a in reversed(self.axes):
            v = reduce(v, a, keepdims=True)[0]
        if not self.keepdims:
            v = d.reshape(v, tuple(s for i, s in enumerate(x.shape) if i not in self.axes))
        return v

    def gradient(self, g, node):
        x = node._inputs[0]
        d = self.device
        kd = _kd_shape(x.shape, self.axes)
        top = d.broadcast_to(d.reshape(node._data, kd), x.shape)
        mask = d.astype(d.binary("eq", x._data, top), g.dtype)
        count = d.broadcast_to(d.sum(mask, self.axes, keepdims=True), x.shape)
        w = wrap(d.binary("div", mask, count), g.device)
        return (_sh.broadcast_to(_sh.reshape(g, kd), x.shape) * w,)


def _extreme(name, x, dim, keepdim):
    axes = normalize_dims(dim, x.ndim, name)
    for a in axes:
        if x.shape[a] == 0:
            raise IndexError(f"{name}: expected reduction dim {a} to have non-zero size, got "
                             f"shape {x.shape}")
    if x.ndim == 0:
        return x
    return apply(Extreme(name, axes, keepdim), x)


def amax(x: Tensor, dim=None, keepdim=False, *, axis=None, keepdims=None) -> Tensor:
    dim = alias(dim, axis, "dim", "axis")
    return _extreme("amax", x, dim, bool(alias(keepdim, keepdims, "keepdim", "keepdims", False)))


def amin(x: Tensor, dim=None, keepdim=False, *, axis=None, keepdims=None) -> Tensor:
    dim = alias(dim, axis, "dim", "axis")
    return _extreme("amin", x, dim, bool(alias(keepdim, keepdims, "keepdim", "keepdims", False)))


def _arg(name, x, dim, keepdim):
    """int64 indices of the first extremum along ``dim`` (flat indices when dim is None)."""
    d = x.device
    reduce = d.max if name == "argmax" else d.min
    if x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {x.shape}")
    if dim is None:
        _, idx = reduce(d.reshape(x._data, (-1,)), 0, keepdims=False)
        return wrap(d.reshape(idx, (1,) * x.ndim) if keepdim else idx, d)
    a = wrap_dim(dim, x.ndim, name)
    if x.ndim == 0:
        return wrap(d.full((), 0, np.int64), d)
    return wrap(reduce(x._data, a, keepdims=keepdim)[1], d)


def argmax(x: Tensor, dim=None, keepdim=False, *, axis=None, keepdims=None) -> Tensor:
    dim = alias(dim, axis, "dim", "axis")
    return _arg("argmax", x, dim, bool(alias(keepdim, keepdims, "keepdim", "keepdims", False)))


def argmin(x: Tensor, dim=None, keepdim=False, *, axis=None, keepdims=None) -> Tensor:
    dim = alias(dim, axis, "dim", "axis")
    return _arg("argmin", x, dim, bool(alias(keepdim, keepdims, "keepdim", "keepdims", False)))


def _max_min(name, x, dim, keepdim, axis, keepdims):
    dim = alias(dim, axis, "dim", "axis")
    keepdim = bool(alias(keepdim, keepdims, "keepdim", "keepdims", False))
    if isinstance(dim, Tensor):  # torch.max(a, b): the elementwise maximum
        return (_ew.maximum if name == "max" else _ew.minimum)(x, dim)
    if dim is None:  # the value; its gradient is shared evenly by ties (as torch)
        if x.numel() == 0:
            raise ValueError(f"{name}(): expected a non-empty tensor for a reduction without "
                             f"dim, got shape {x.shape}")
        return _extreme("amax" if name == "max" else "amin", x, None, False)
    if isinstance(dim, (tuple, list)):
        raise TypeError(f"{name}(dim) takes one int dim, got {dim!r} (use amax/amin for "
                        "several dims)")
    a = wrap_dim(dim, x.ndim, name)
    if x.ndim and x.shape[a] == 0:
        raise IndexError(f"{name}: expected reduction dim {a} to have non-zero size, got shape "
                         f"{x.shape}")
    idx = _arg("argmax" if name == "max" else "argmin", x, a, True)
    values = _ix.gather(x, a, idx)  # NOTE: the gradient goes to the chosen index (as torch)
    if not keepdim:
        values, idx = _sh.squeeze(values, a), _sh.squeeze(idx, a)
    return (max_result if name == "max" else min_result)(values, idx)


def max(x: Tensor, dim=None, keepdim=False, *, axis=None, keepdims=None):  # noqa: A001
    """``max()``: the largest value; ``max(dim)``: a named tuple (values, indices);
    ``max(other)``: the elementwise maximum (as torch.max)."""
    return _max_min("max", x, dim, keepdim, axis, keepdims)


def min(x: Tensor, dim=None, keepdim=False, *, axis=None, keepdims=None):  # noqa: A001
    """As ``max``; computed as a minimum (exact for the most negative integer, and bool)."""
    return _max_min("min", x, dim, keepdim, axis, keepdims)


# -- moments ---------------------------------------------------------------------------------------
def _correction(unbiased, correction):
    if correction is not None and unbiased is not None:
        raise TypeError("var/std: give unbiased= or correction=, not both")
    if correction is not None:
        return float(correction)
    return 1.0 if unbiased is None or unbiased else 0.0


def var(x: Tensor, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
        keepdims=None) -> Tensor:
    """Variance with Bessel's correction by default (``correction=1``, as torch); nan when
    the correction leaves no degree of freedom, inf when it leaves fewer than none."""
    if isinstance(dim, bool):  # torch's var(unbiased) overload
        dim, unbiased = None, dim
    axes, kd = _dims(x, dim, axis, keepdim, keepdims, "var")
    if x._data.dtype.kind != "f":
        raise TypeError(f"var: needs a floating tensor, got dtype {x._data.dtype}")
    c = _correction(unbiased, correction)
    n = math.prod(x.shape[a] for a in axes)
    d = x - mean(x, axes, keepdim=True)
    dof = n - c
    return sum(d * d, axes, kd) * (1.0 / dof if dof > 0 else math.inf)


def std(x: Tensor, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
        keepdims=None) -> Tensor:
    # NOTE: a root whose gradient is 0 where the variance is 0 (a constant input): torch's
    return apply(Root(2.0), var(x, dim, unbiased, keepdim, correction=correction, axis=axis,
                                keepdims=keepdims))


# -- logical ---------------------------------------------------------------------------------------
def _count(x, test, dim, keepdim, axis, keepdims, what):
    """The number of elements along ``dim`` that compare ``test`` ("ne"/"eq") with 0."""
    axes, kd = _dims(x, dim, axis, keepdim, keepdims, what)
    d = x.device
    return d.sum(d.scalar(test, x._data, 0), axes, kd)


def any(x: Tensor, dim=None, keepdim=False, *, axis=None, keepdims=None) -> Tensor:  # noqa: A001
    """True where any element along ``dim`` is non-zero; a bool tensor, no gradient."""
    d = x.device
    return wrap(d.scalar("gt", _count(x, "ne", dim, keepdim, axis, keepdims, "any"), 0), d)


def count_nonzero(x: Tensor, dim=None, *, axis=None) -> Tensor:
    """The number of non-zero elements along ``dim`` (all when None), int64."""
    return wrap(_count(x, "ne", dim, False, axis, None, "count_nonzero"), x.device)


def all(x: Tensor, dim=None, keepdim=False, *, axis=None, keepdims=None) -> Tensor:  # noqa: A001
    d = x.device
    return wrap(d.scalar("eq", _count(x, "eq", dim, keepdim, axis, keepdims, "all"), 0), d)


# -- norm ------------------------------------------------------------------------------------------
class Root(Op):
    """s ** (1/p) for s >= 0, with gradient 0 where s == 0 (torch's norm backward at 0)."""

    __slots__ = ("p",)

    def __init__(self, p):
        self.p = p

    def compute(self, s):
        return self.device.scalar("pow", s, 1.0 / self.p)

    def gradient(self, g, node):
        s = node._inputs[0]
        safe = _ew.where(s == 0, 1.0, s)
        return (_ew.where(s == 0, 0.0, g * node / (safe * self.p)),)


def norm(x: Tensor, p="fro", dim=None, keepdim=False, *, dtype=None, axis=None,
         keepdims=None) -> Tensor:
    """The vector p-norm over ``dim`` (all elements when None): p = 2 / "fro", 1, inf, -inf,
    0 (the count of non-zeros) or any other real number."""
    axes, kd = _dims(x, dim, axis, keepdim, keepdims, "norm")
    if dtype is not None:
        x = x.to(dtype)
    if x._data.dtype.kind != "f":
        raise TypeError(f"norm: needs a floating tensor, got dtype {x._data.dtype}")
    if p == "fro":
        p = 2
    if isinstance(p, str) or not isinstance(p, (int, float)):
        raise ValueError(f"norm: p must be a number or 'fro', got {p!r}")
    a = x.abs()
    if p == math.inf:
        return amax(a, axes, kd)
    if p == -math.inf:
        return amin(a, axes, kd)
    if p == 0:
        return sum((x != 0).to(x.dtype), axes, kd)
    if p == 1:
        return sum(a, axes, kd)
    if p == 2:
        s = sum(x * x, axes, kd)
    else:  # NOTE: |x| ** p with 0 (and a gradient of 0) at x == 0, where a ** (p - 1) is inf
        zero = a == 0
        s = sum(_ew.where(zero, 0.0, _ew.where(zero, 1.0, a) ** float(p)), axes, kd)
    return apply(Root(float(p)), s)


# -- scan ------------------------------------------------------------------------------------------
class Cumsum(Op):
    __slots__ = ("axis",)

    def __init__(self, axis):
        self.axis = axis

    def compute(self, x):
        return self.device.cumsum(x, self.axis)

    def gradient(self, g, node):  # the reversed cumulative sum of g
        return (_sh.flip(apply(Cumsum(self.axis), _sh.flip(g, self.axis)), self.axis),)


def cumsum(x: Tensor, dim=None, *, dtype=None, axis=None) -> Tensor:
    """Cumulative sum along ``dim`` (required, as in torch); integers and bool give int64."""
    dim = alias(dim, axis, "dim", "axis")
    if dim is None:
        raise TypeError("cumsum: missing the dim argument")
    a = wrap_dim(dim, x.ndim, "cumsum")
    if dtype is not None:
        x = x.to(dtype)
    elif x.dtype.kind in "biu" and x.dtype != np.int64:
        x = x.to(np.int64)
    if x.ndim == 0:
        return x
    return apply(Cumsum(a), x)
