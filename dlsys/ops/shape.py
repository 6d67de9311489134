"""Shape and index ops: reshape, permute, broadcast_to, getitem (gather / scatter-add),
stack, concatenate, casts and device moves."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..autograd import apply, wrap
from ..tensor import Tensor
from . import Op, alias, wrap_dim

__all__ = ["reshape", "view", "permute", "transpose", "swapaxes", "movedim", "mT", "T", "t",
           "broadcast_to", "expand", "expand_as", "flatten", "squeeze", "unsqueeze", "flip",
           "getitem",
           "normalize_index", "setitem", "stack", "concatenate", "cast", "to_device",
           "contiguous", "clone"]


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
    shape = _resolve(shape, xs, x.numel())
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


def permute(x: Tensor, *dims) -> Tensor:
    dims = _shape_args(dims)
    n = x.ndim
    if len(dims) != n:
        raise ValueError(f"permute: {tuple(dims)} does not name each of the {n} dims of a "
                         f"tensor of shape {x.shape} once")
    norm = tuple(wrap_dim(d, n, "permute") for d in dims)
    if sorted(norm) != list(range(n)):
        raise ValueError(f"permute: {tuple(dims)} repeats a dim (shape {x.shape})")
    if norm == tuple(range(n)):
        return x
    return apply(Permute(norm), x)


def transpose(x: Tensor, dim0, dim1) -> Tensor:
    """Swap two dims (PyTorch's transpose; ``permute`` reorders all of them)."""
    n = x.ndim
    a, b = wrap_dim(dim0, n, "transpose"), wrap_dim(dim1, n, "transpose")
    if a == b or n < 2:
        return x
    axes = list(range(n))
    axes[a], axes[b] = axes[b], axes[a]
    return apply(Permute(tuple(axes)), x)


swapaxes = transpose


def movedim(x: Tensor, source: int, destination: int) -> Tensor:
    """Move one dim to position ``destination``, keeping the others in order."""
    n = x.ndim
    s, d = wrap_dim(source, n, "movedim"), wrap_dim(destination, n, "movedim")
    if s == d or n < 2:
        return x
    axes = [i for i in range(n) if i != s]
    axes.insert(d, s)
    return apply(Permute(tuple(axes)), x)


def T(x: Tensor) -> Tensor:  # noqa: N802 - PyTorch's name
    """All dims reversed (x.T; for a 2-D tensor, the transpose)."""
    n = x.ndim
    return x if n < 2 else apply(Permute(tuple(range(n - 1, -1, -1))), x)


def t(x: Tensor) -> Tensor:
    """The transpose of a tensor of at most 2 dims (torch's t())."""
    if x.ndim > 2:
        raise ValueError(f"t() expects a tensor with <= 2 dims, got shape {x.shape} (use "
                         "transpose(dim0, dim1) or permute)")
    return T(x)


def mT(x: Tensor) -> Tensor:  # noqa: N802
    """The last two dims swapped (a batch of matrices transposed)."""
    if x.ndim < 2:
        raise ValueError(f"mT: needs a matrix or a batch of matrices, got a {x.ndim}-D tensor "
                         f"of shape {x.shape}")
    return transpose(x, -2, -1)


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


def expand(x: Tensor, *sizes) -> Tensor:
    """broadcast_to where a size of -1 keeps that dim's size (torch's expand)."""
    sizes = tuple(int(s) for s in _shape_args(sizes))
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: {len(sizes)} sizes {sizes} for a tensor of shape {x.shape} "
                         f"(the number of sizes must be at least its {x.ndim} dims)")
    shape = []
    for i, s in enumerate(sizes):
        if s == -1:
            if i < lead:
                raise ValueError(f"expand: -1 is not allowed for a new leading dim, got {sizes}")
            s = x.shape[i - lead]
        shape.append(s)
    return broadcast_to(x, tuple(shape))


def expand_as(x: Tensor, other: Tensor) -> Tensor:
    return broadcast_to(x, other.shape)


def flatten(x: Tensor, start_dim=0, end_dim=-1) -> Tensor:
    n = x.ndim
    s, e = wrap_dim(start_dim, n, "flatten"), wrap_dim(end_dim, n, "flatten")
    if n == 0:
        return reshape(x, 1)
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shp = x.shape
    return reshape(x, shp[:s] + (math.prod(shp[s:e + 1]),) + shp[e + 1:])


def squeeze(x: Tensor, dim=None, *, axis=None) -> Tensor:
    """Drop size-1 dims: all of them, or those of ``dim`` (an int or a tuple) that have size 1."""
    dim = alias(dim, axis, "dim", "axis")
    if dim is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    dims = {wrap_dim(d, x.ndim, "squeeze") for d in (dim if isinstance(dim, (tuple, list))
                                                     else (dim,))}
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1)))


def unsqueeze(x: Tensor, dim=None, *, axis=None) -> Tensor:
    dim = alias(dim, axis, "dim", "axis")
    if dim is None:
        raise TypeError("unsqueeze: missing the dim argument")
    a = wrap_dim(dim, x.ndim + 1, "unsqueeze", f"a tensor with {x.ndim} dims (the result has "
                 f"{x.ndim + 1})")
    shp = list(x.shape)
    shp.insert(a, 1)
    return reshape(x, tuple(shp))


def view(x: Tensor, *shape) -> Tensor:
    """reshape that shares memory, or RuntimeError where torch's view would raise (the new
    shape cannot be expressed with x's strides; reshape copies there)."""
    shape = _resolve(_shape_args(shape), x.shape, x.numel())
    if x.device.name != "cpu" and not x.is_contiguous():
        # NOTE: CUDA's reshape gathers a strided array into a new one: a copy, not a view
        raise RuntimeError(f"view: a non-contiguous tensor on {x.device} (shape {x.shape}, "
                           f"strides {x.stride()}) cannot be viewed on this device; use "
                           ".reshape(...) (a copy) or .contiguous() first")
    if not _viewable(x.shape, x.stride(), shape):
        raise RuntimeError(f"view size is not compatible with input tensor's size and stride "
                           f"(shape {x.shape}, strides {x.stride()}, view {shape}): at least "
                           "one dimension spans across two contiguous subspaces; use "
                           ".reshape(...) instead")
    return reshape(x, shape)


def _viewable(shape, strides, new_shape) -> bool:
    """Can an array of ``shape``/``strides`` (in elements) be viewed as ``new_shape`` without
    a copy? numpy's test on a fake one-byte array (no memory is read)."""
    if math.prod(shape) <= 1:
        return True
    fake = np.lib.stride_tricks.as_strided(np.zeros(1, np.int8), shape=shape, strides=strides)
    v = fake.view()
    try:
        v.shape = new_shape  # NOTE: raises exactly when a copy would be needed
    except AttributeError:
        return False
    return True


def flip(x: Tensor, dims) -> Tensor:
    """Reverse the order along ``dims`` (an int or a sequence)."""
    dims = dims if isinstance(dims, (tuple, list)) else (dims,)
    axes = {wrap_dim(d, x.ndim, "flip") for d in dims}
    if x.ndim == 0 or not axes:
        return x
    return getitem(x, tuple(slice(None, None, -1) if i in axes else slice(None)
                            for i in range(x.ndim)))


class Contiguous(Op):
    __slots__ = ()

    def compute(self, x):
        return self.device.compact(x)

    def gradient(self, g, node):
        return (g,)


def contiguous(x: Tensor) -> Tensor:
    return apply(Contiguous(), x)


class Clone(Op):
    __slots__ = ()

    def compute(self, x):
        return self.device.astype(x, x.dtype)  # NOTE: always a new compact array

    def gradient(self, g, node):
        return (g,)


def clone(x: Tensor) -> Tensor:
    """A copy with its own memory; differentiable (the gradient passes through)."""
    return apply(Clone(), x)


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
    t = type(i)
    if t is int or t is slice or i is None or i is Ellipsis:  # NOTE: the common items first
        return i
    if isinstance(i, np.integer):
        return int(i)
    if isinstance(i, Tensor):
        if i.device != x.device:
            if i.device.name != "cpu":  # NOTE: as torch, CPU indices may index any device
                raise ValueError(f"index tensor is on {i.device}, indexed tensor on {x.device}")
            i = i.to(x.device)
        if i.dtype.kind not in "iub":
            raise TypeError(f"index tensors must be integer or bool, got dtype {i.dtype}")
        if i.ndim == 0 and i.dtype.kind != "b":
            return int(i.item())  # NOTE: torch treats a 0-d integer tensor as an int
        return i._data
    if isinstance(i, (list, np.ndarray)):
        a = np.asarray(i)
        if a.dtype.kind not in "iub" and a.size:
            raise TypeError(f"index arrays must be integer or bool, got dtype {a.dtype}")
        if a.dtype.kind != "b":
            if a.ndim == 0:
                return int(a)
            a = a.astype(np.int64, copy=False)
        return x.device.from_numpy(a)
    if isinstance(i, (bool, np.bool_)):
        raise TypeError("indexing with a Python bool is not supported (use a bool tensor)")
    return i


def normalize_index(x: Tensor, index) -> tuple:
    """``index`` as a tuple of ints, slices, None, Ellipsis and index arrays of x's device
    (Tensors of x's device, lists and numpy arrays of integers or bools)."""
    if not isinstance(index, tuple):
        index = (index,)
    return tuple(_norm_index_item(i, x) for i in index)


def torch_steps(index: tuple):
    """PyTorch's order for an index that mixes ints and index arrays, as two numpy indices
    (basic, advanced), else None.

    NOTE: numpy counts an int next to an index array as one more advanced index, so
    ``x[0, :, idx]`` puts the indexed dim first; PyTorch selects the int first and then
    indexes, so the dim stays in place. Applying the basic part (ints, slices, None) first and
    the arrays second gives PyTorch's shape with numpy's rules."""
    arrays = [hasattr(i, "dtype") for i in index]  # NOTE: ints are Python ints here
    if not any(arrays) or int not in {type(i) for i in index}:
        return None
    first, second = [], []
    for i, is_array in zip(index, arrays, strict=True):
        if is_array:  # a bool mask spans as many dims as it has
            first.extend([slice(None)] * (i.ndim if i.dtype == np.bool_ else 1))
            second.append(i)
        elif type(i) is int:
            first.append(i)
        else:  # a slice, None or Ellipsis: kept by the first step, passed by the second
            first.append(i)
            second.append(Ellipsis if i is Ellipsis else slice(None))
    return tuple(first), tuple(second)


def getitem(x: Tensor, index) -> Tensor:
    index = normalize_index(x, index)
    steps = torch_steps(index)
    if steps is None:
        return apply(GetItem(index), x)
    return apply(GetItem(steps[1]), apply(GetItem(steps[0]), x))


def setitem(x: Tensor, index, value) -> None:
    """x[index] = value in place (value: a scalar, host array or array of x's device), with
    getitem's PyTorch index order."""
    index = normalize_index(x, index)
    steps = torch_steps(index)
    d = x.device
    if steps is None:
        d.setitem(x._data, index, value)
    else:  # NOTE: the basic step is a view on every device: the second step writes through
        d.setitem(d.getitem(x._data, steps[0]), steps[1], value)


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
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"{what}: expected a sequence of Tensors, got a "
                            f"{type(t).__name__}")
    t0 = tensors[0]
    for t in tensors[1:]:
        if t.device != t0.device:
            raise ValueError(f"{what}: tensors on different devices, {t0.device} and {t.device}")
        if t.dtype != t0.dtype:
            raise TypeError(f"{what}: dtypes differ, {t0.dtype} and {t.dtype}")
    return tensors


def stack(tensors, dim=0, *, axis=None) -> Tensor:
    tensors = _check_seq(tensors, "stack")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
    nd = tensors[0].ndim
    dim = wrap_dim(alias(dim, axis, "dim", "axis", 0), nd + 1, "stack",
                   f"stacking tensors with {nd} dims (the result has {nd + 1})")
    return apply(Stack(dim), *tensors)


def concatenate(tensors, dim=0, *, axis=None) -> Tensor:
    tensors = _check_seq(tensors, "concatenate")
    t0 = tensors[0]
    if t0.ndim == 0:
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated")
    dim = wrap_dim(alias(dim, axis, "dim", "axis", 0), t0.ndim, "concatenate")
    for t in tensors[1:]:
        if t.ndim != t0.ndim or any(t.shape[i] != t0.shape[i] for i in range(t0.ndim)
                                    if i != dim):
            raise ValueError(f"concatenate: shapes {t0.shape} and {t.shape} differ outside "
                             f"dim {dim}")
    return apply(Concatenate(dim), *tensors)


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
