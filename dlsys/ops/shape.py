"""Shape and index ops: reshape, permute, broadcast_to, getitem (gather / scatter-add),
stack, concatenate, casts and device moves."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..autograd import apply, wrap
from ..tensor import Tensor
from . import Op

__all__ = ["reshape", "permute", "transpose", "swapaxes", "broadcast_to", "flatten", "squeeze",
           "unsqueeze", "getitem", "normalize_index", "stack", "concatenate", "cast", "to_device",
           "contiguous"]


def _shape_args(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return shape


class Reshape(Op):
    __slots__ = ("shape", "in_shape")

    def __init__(self, shape):
        self.shape = shape

    def compute(self, x):
        self.in_shape = x.shape
        return self.device.reshape(x, self.shape)

    def gradient(self, g, node):
        return (reshape(g, self.in_shape),)


def _resolve(shape, in_shape, size):
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ValueError(f"reshape: only one dimension can be -1, got {shape}")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or size % known:
            raise ValueError(f"reshape: cannot reshape {in_shape} into {shape}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    if math.prod(shape) != size or any(s < 0 for s in shape):
        raise ValueError(f"reshape: cannot reshape {in_shape} into {shape}")
    return shape


def reshape(x: Tensor, *shape) -> Tensor:
    shape = _shape_args(shape)
    xs = x._data.shape
    if shape == xs:
        return x
    shape = _resolve(shape, xs, x.size)
    if shape == xs:
        return x
    return apply(Reshape(shape), x)


class Permute(Op):
    __slots__ = ("axes",)

    def __init__(self, axes):
        self.axes = axes

    def compute(self, x):
        return self.device.permute(x, self.axes)

    def gradient(self, g, node):
        return (apply(Permute(tuple(np.argsort(self.axes).tolist())), g),)


def permute(x: Tensor, *axes) -> Tensor:
    axes = _shape_args(axes)
    n = x.ndim
    norm = tuple(int(a) % n if n else 0 for a in axes)
    if len(norm) != n or sorted(norm) != list(range(n)):
        raise ValueError(f"permute: {tuple(axes)} is not a permutation of the {n} axes of a "
                         f"tensor of shape {x.shape}")
    if norm == tuple(range(n)):
        return x
    return apply(Permute(norm), x)


def swapaxes(x: Tensor, a: int, b: int) -> Tensor:
    axes = list(range(x.ndim))
    a, b = a % x.ndim, b % x.ndim
    axes[a], axes[b] = axes[b], axes[a]
    return permute(x, *axes)


def transpose(x: Tensor, *axes) -> Tensor:
    """numpy semantics: no axes reverses them, a full permutation permutes; two axes on a
    tensor that is not 2-D swap those two (PyTorch's transpose(dim0, dim1))."""
    axes = _shape_args(axes)
    if not axes:
        return permute(x, *range(x.ndim - 1, -1, -1))
    if len(axes) == 2 and x.ndim != 2:
        return swapaxes(x, *axes)
    return permute(x, *axes)


class BroadcastTo(Op):
    __slots__ = ("shape", "in_shape")

    def __init__(self, shape):
        self.shape = shape

    def compute(self, x):
        self.in_shape = x.shape
        return self.device.broadcast_to(x, self.shape)  # a view, no copy

    def gradient(self, g, node):
        from .reduce import Sum

        shape, in_shape = self.shape, self.in_shape
        lead = len(shape) - len(in_shape)
        axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(in_shape)
                                          if s == 1 and shape[i + lead] != 1)
        s = apply(Sum(axes, False), g) if axes else g
        return (reshape(s, in_shape),)


def broadcast_to(x: Tensor, *shape) -> Tensor:
    shape = tuple(int(s) for s in _shape_args(shape))
    xs = x._data.shape
    if shape == xs:
        return x
    ok = len(shape) >= len(xs) and all(
        s == t or s == 1 for s, t in zip(xs[::-1], shape[::-1], strict=False))
    if not ok:
        raise ValueError(f"broadcast_to: cannot broadcast shape {xs} to {shape}")
    return apply(BroadcastTo(shape), x)


def flatten(x: Tensor, start_dim=0, end_dim=-1) -> Tensor:
    n = x.ndim
    if n == 0:
        return reshape(x, 1)
    s, e = start_dim % n, end_dim % n
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shp = x.shape
    return reshape(x, shp[:s] + (math.prod(shp[s:e + 1]),) + shp[e + 1:])


def squeeze(x: Tensor, axis=None) -> Tensor:
    if axis is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    axes = {a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis)}
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if not (i in axes and s == 1)))


def unsqueeze(x: Tensor, axis: int) -> Tensor:
    n = x.ndim + 1
    a = axis % n
    shp = list(x.shape)
    shp.insert(a, 1)
    return reshape(x, tuple(shp))


class Contiguous(Op):
    __slots__ = ()

    def compute(self, x):
        return self.device.compact(x)

    def gradient(self, g, node):
        return (g,)


def contiguous(x: Tensor) -> Tensor:
    return apply(Contiguous(), x)


# -- indexing ----------------------------------------------------------------------------------
def _is_basic(index) -> bool:
    return all(i is None or i is Ellipsis or isinstance(i, (slice, numbers.Integral))
               for i in index)


class GetItem(Op):
    __slots__ = ("index", "in_shape")

    def __init__(self, index):
        self.index = index

    def compute(self, x):
        self.in_shape = x.shape
        return self.device.getitem(x, self.index)

    def gradient(self, g, node):
        return (apply(GetItemBackward(self.index, self.in_shape), g),)


class GetItemBackward(Op):
    """Zeros of the input's shape with ``g`` added at ``index`` (repeated indices add up)."""

    __slots__ = ("index", "in_shape")

    def __init__(self, index, in_shape):
        self.index, self.in_shape = index, in_shape

    def compute(self, g):
        d = self.device
        out = d.full(self.in_shape, 0, g.dtype)
        if _is_basic(self.index):
            # NOTE: basic indexing selects each element at most once: a view copy suffices.
            d.copy_(d.getitem(out, self.index), g)
        else:
            d.index_add(out, self.index, g)
        return out

    def gradient(self, gg, node):
        return (apply(GetItem(self.index), gg),)


def _norm_index_item(i, x):
    if isinstance(i, Tensor):
        if i.device != x.device:
            raise ValueError(f"index tensor is on {i.device}, indexed tensor on {x.device}")
        if i.dtype.kind not in "iub":
            raise TypeError(f"index tensors must be integer or bool, got dtype {i.dtype}")
        return i._data
    if isinstance(i, (list, np.ndarray)):
        a = np.asarray(i)
        if a.dtype.kind not in "iub":
            raise TypeError(f"index arrays must be integer or bool, got dtype {a.dtype}")
        if a.dtype.kind in "iu":
            a = a.astype(np.int64, copy=False)
        return x.device.from_numpy(a)
    if isinstance(i, (bool, np.bool_)):
        raise TypeError("indexing with a Python bool is not supported")
    return i


def normalize_index(x: Tensor, index) -> tuple:
    """``index`` as a tuple of ints, slices, None, Ellipsis and index arrays of x's device
    (Tensors of x's device, lists and numpy arrays of integers or bools)."""
    if not isinstance(index, tuple):
        index = (index,)
    return tuple(_norm_index_item(i, x) for i in index)


def getitem(x: Tensor, index) -> Tensor:
    return apply(GetItem(normalize_index(x, index)), x)


class Stack(Op):
    __slots__ = ("axis",)

    def __init__(self, axis):
        self.axis = axis

    def compute(self, *xs):
        return self.device.stack(list(xs), self.axis)

    def gradient(self, g, node):
        pre = (slice(None),) * self.axis
        return tuple(getitem(g, pre + (i,)) if t._requires_grad else None
                     for i, t in enumerate(node._inputs))


class Concatenate(Op):
    __slots__ = ("axis",)

    def __init__(self, axis):
        self.axis = axis

    def compute(self, *xs):
        return self.device.concatenate(list(xs), self.axis)

    def gradient(self, g, node):
        pre = (slice(None),) * self.axis
        out, start = [], 0
        for t in node._inputs:
            n = t.shape[self.axis]
            out.append(getitem(g, pre + (slice(start, start + n),)) if t._requires_grad
                       else None)
            start += n
        return tuple(out)


def _check_seq(tensors, what):
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{what}: expected a non-empty sequence of tensors")
    t0 = tensors[0]
    for t in tensors[1:]:
        if t.device != t0.device:
            raise ValueError(f"{what}: tensors on different devices, {t0.device} and {t.device}")
        if t.dtype != t0.dtype:
            raise TypeError(f"{what}: dtypes differ, {t0.dtype} and {t.dtype}")
    return tensors


def stack(tensors, axis=0) -> Tensor:
    tensors = _check_seq(tensors, "stack")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
    axis = axis % (tensors[0].ndim + 1)
    return apply(Stack(axis), *tensors)


def concatenate(tensors, axis=0) -> Tensor:
    tensors = _check_seq(tensors, "concatenate")
    t0 = tensors[0]
    if t0.ndim == 0:
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated")
    axis = axis % t0.ndim
    for t in tensors[1:]:
        if t.ndim != t0.ndim or any(t.shape[i] != t0.shape[i] for i in range(t0.ndim)
                                    if i != axis):
            raise ValueError(f"concatenate: shapes {t0.shape} and {t.shape} differ outside "
                             f"axis {axis}")
    return apply(Concatenate(axis), *tensors)


# -- dtype and device --------------------------------------------------------------------------
class Cast(Op):
    __slots__ = ("dtype", "in_dtype")

    def __init__(self, dtype):
        self.dtype = dtype

    def compute(self, x):
        self.in_dtype = x.dtype
        return self.device.astype(x, self.dtype)

    def gradient(self, g, node):
        return (cast(g, self.in_dtype),)


def cast(x: Tensor, dtype) -> Tensor:
    if dtype == x.dtype:
        return x
    if np.dtype(dtype).kind != "f":  # integer results never require grad
        return wrap(x.device.astype(x._data, dtype), x.device)
    return apply(Cast(dtype), x)


class ToDevice(Op):
    __slots__ = ("dst", "src")

    def __init__(self, dst):
        self.dst = dst

    def compute(self, x):
        self.src = self.device
        out = self.dst.empty(tuple(x.shape), x.dtype)
        return self.dst.copy_from(out, x, self.src)

    def gradient(self, g, node):
        return (to_device(g, self.src),)


def to_device(x: Tensor, device) -> Tensor:
    if device == x.device:
        return x
    out = apply(ToDevice(device), x)
    out.device = device
    return out
