"""Indexing along one dim (torch's gather, scatter, scatter_add, index_select, select, narrow)
and masking (masked_fill, tril, triu).

gather is getitem with an index array at ``dim`` and open ranges elsewhere; scatter_add is
getitem's adjoint (a scatter-add into zeros): so each gradient, and its gradient, is one of
the two ops that getitem already has, on every device.
"""

from __future__ import annotations

import numpy as np

from ..autograd import apply, wrap
from ..tensor import Tensor
from . import Op, check_same, wrap_dim
from . import elementwise as _ew
from . import shape as _sh

__all__ = ["gather", "scatter", "scatter_add", "index_select", "select", "narrow",
           "masked_fill", "tril", "triu", "one_hot"]


def _index_tensor(x: Tensor, index, what: str) -> Tensor:
    """``index`` as an int64 Tensor on x's device, checked to lie in [0, size) on the CPU
    (torch rejects negative indices here; numpy would wrap them).
    NOTE: a CUDA index is not checked: that would cost a device-to-host copy per call."""
    if not isinstance(index, Tensor):
        index = wrap(x.device.from_numpy(np.asarray(index)), x.device)
    if index.dtype.kind not in "iu":
        raise TypeError(f"{what}: index must be an integer tensor, got dtype {index.dtype}")
    if index.device != x.device:
        raise ValueError(f"{what}: index on {index.device}, input on {x.device}")
    return index


def _check_range(index: Tensor, size: int, dim: int, what: str) -> None:
    if index.device.name == "cpu" and index.numel():
        a = index.numpy()
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= size:
            raise IndexError(f"{what}: index {lo if lo < 0 else hi} is out of bounds for dim "
                             f"{dim} with size {size}")


def _along(x: Tensor, dim: int, index: Tensor, what: str) -> tuple:
    """The numpy index of ``x`` that picks ``index`` along ``dim``: index[i...] at dim,
    the position i of every other dim (torch's gather addressing)."""
    if index.ndim != x.ndim:
        raise ValueError(f"{what}: index of shape {index.shape} must have as many dims as the "
                         f"input of shape {x.shape}")
    for k, (n, m) in enumerate(zip(index.shape, x.shape, strict=True)):
        if k != dim and n > m:
            raise ValueError(f"{what}: index of shape {index.shape} is larger than the input "
                             f"of shape {x.shape} in dim {k}")
    _check_range(index, x.shape[dim], dim, what)
    d = x.device
    parts = []
    for k, n in enumerate(index.shape):
        if k == dim:
            parts.append(index._data if index.dtype == np.int64
                         else d.astype(index._data, np.int64))
        else:
            shape = [1] * index.ndim
            shape[k] = n
            parts.append(d.from_numpy(np.arange(n, dtype=np.int64).reshape(shape)))
    return tuple(parts)


def _scalar_as_1d(x: Tensor) -> Tensor:
    return _sh.reshape(x, 1) if x.ndim == 0 else x


def gather(x: Tensor, dim, index) -> Tensor:
    """out[i][j][k] = x[index[i][j][k]][j][k] for dim 0 (and so on), as torch.gather."""
    index = _index_tensor(x, index, "gather")
    if x.ndim == 0:
        return _sh.reshape(gather(_scalar_as_1d(x), 0, _scalar_as_1d(index)), index.shape)
    dim = wrap_dim(dim, x.ndim, "gather")
    return apply(_sh.GetItem(_along(x, dim, index, "gather")), x)


class Scatter(Op):
    """A copy of x with src written at ``index`` (inputs x, src; src has the index's shape)."""

    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index

    def compute(self, x, src):
        d = self.device
        out = d.astype(x, x.dtype)  # NOTE: a copy
        d.setitem(out, self.index, src)
        return out

    def gradient(self, g, node):
        x, src = node._inputs
        gx = gs = None
        if x._requires_grad:  # the overwritten positions get nothing
            zeros = wrap(self.device.full(src.shape, 0, g.dtype), g.device)
            gx = apply(Scatter(self.index), g, zeros)
        if src._requires_grad:
            gs = apply(_sh.GetItem(self.index), g)
        return (gx, gs)


def _src(x: Tensor, index: Tensor, src, what: str) -> Tensor:
    """src as a Tensor of index's shape: a scalar filled in, a larger tensor cut (torch uses
    its leading part)."""
    if not isinstance(src, Tensor):
        return wrap(x.device.full(index.shape, _ew._operand(x, src, what), x.dtype), x.device)
    check_same(x, src, what)
    if src.ndim != index.ndim or any(s < n for s, n in zip(src.shape, index.shape,
                                                            strict=True)):
        raise ValueError(f"{what}: src of shape {src.shape} is smaller than the index of shape "
                         f"{index.shape}")
    if src.shape != index.shape:
        src = _sh.getitem(src, tuple(slice(0, n) for n in index.shape))
    return src


def scatter(x: Tensor, dim, index, src=None, *, value=None, reduce=None) -> Tensor:
    """A copy of x with out[index[i][j]][j] = src[i][j] (dim 0, and so on); ``src`` a Tensor
    or a scalar (``value=``). With repeated indices one of the values lands (unspecified
    which, as in torch)."""
    if reduce is not None:
        raise ValueError("scatter: reduce= is not supported (use scatter_add)")
    if (src is None) == (value is None):
        raise TypeError("scatter: give exactly one of src and value")
    src = value if src is None else src
    index = _index_tensor(x, index, "scatter")
    if x.ndim == 0:
        return _sh.reshape(scatter(_scalar_as_1d(x), 0, _scalar_as_1d(index),
                                   _scalar_as_1d(src) if isinstance(src, Tensor) else src),
                           ())
    dim = wrap_dim(dim, x.ndim, "scatter")
    src = _src(x, index, src, "scatter")
    return apply(Scatter(_along(x, dim, index, "scatter")), x, src)


def scatter_add(x: Tensor, dim, index, src) -> Tensor:
    """x with src added at ``index`` along ``dim``; repeated indices add up."""
    index = _index_tensor(x, index, "scatter_add")
    if x.ndim == 0:
        return _sh.reshape(scatter_add(_scalar_as_1d(x), 0, _scalar_as_1d(index),
                                       _scalar_as_1d(src)), ())
    dim = wrap_dim(dim, x.ndim, "scatter_add")
    if not isinstance(src, Tensor):
        raise TypeError(f"scatter_add: src must be a Tensor, got {type(src).__name__}")
    src = _src(x, index, src, "scatter_add")
    added = apply(_sh.GetItemBackward(_along(x, dim, index, "scatter_add"), x.shape), src)
    return x + added


def index_select(x: Tensor, dim, index) -> Tensor:
    """The entries of ``index`` (1-D, or 0-d as one entry) along ``dim``."""
    index = _index_tensor(x, index, "index_select")
    if index.ndim > 1:
        raise ValueError(f"index_select: index must be 1-D, got shape {index.shape}")
    x1 = _scalar_as_1d(x)
    dim = wrap_dim(dim, x.ndim, "index_select")
    _check_range(index, x1.shape[dim], dim, "index_select")
    out = _sh.getitem(x1, (slice(None),) * dim + (_scalar_as_1d(index),))
    return _sh.reshape(out, ()) if x.ndim == 0 else out


def select(x: Tensor, dim, index) -> Tensor:
    """x[..., index, ...] at ``dim`` (that dim removed)."""
    dim = wrap_dim(dim, x.ndim, "select")
    n = x.shape[dim]
    if not -n <= int(index) < n:
        raise IndexError(f"select: index {index} is out of range for dim {dim} of size {n}")
    return _sh.getitem(x, (slice(None),) * dim + (int(index),))


def narrow(x: Tensor, dim, start, length) -> Tensor:
    """``length`` entries from ``start`` along ``dim`` (a view)."""
    dim = wrap_dim(dim, x.ndim, "narrow")
    n = x.shape[dim]
    start = int(start) + (n if int(start) < 0 else 0)
    if not 0 <= start <= n or length < 0 or start + length > n:
        raise IndexError(f"narrow: start {start} and length {length} exceed dim {dim} of "
                         f"size {n}")
    return _sh.getitem(x, (slice(None),) * dim + (slice(start, start + int(length)),))


# -- masks ----------------------------------------------------------------------------------
def masked_fill(x: Tensor, mask, value) -> Tensor:
    """x with ``value`` (a scalar or a 0-d tensor) where the bool ``mask`` (broadcast to x's
    shape) is True."""
    if not isinstance(mask, Tensor) or mask.dtype != np.bool_:
        raise TypeError(f"masked_fill: mask must be a bool tensor, got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")
    if isinstance(value, Tensor) and value.ndim != 0:
        raise ValueError(f"masked_fill: value must be a scalar or a 0-d tensor, got shape "
                         f"{value.shape}")
    try:
        shape = np.broadcast_shapes(mask.shape, x.shape)
    except ValueError:
        shape = None
    if shape != x.shape:
        raise ValueError(f"masked_fill: mask of shape {mask.shape} does not broadcast to the "
                         f"input's shape {x.shape}")
    return _ew.where(mask, value, x)


def _triangle(x: Tensor, diagonal: int, lower: bool, what: str) -> Tensor:
    if x.ndim < 2:
        raise ValueError(f"{what}: needs a tensor of at least 2 dims, got shape {x.shape}")
    m, n = x.shape[-2:]
    keep = np.tri(m, n, int(diagonal), dtype=bool)
    if not lower:
        keep = ~np.tri(m, n, int(diagonal) - 1, dtype=bool)
    mask = wrap(x.device.from_numpy(keep), x.device)
    return _ew.where(mask, x, False if x.dtype == np.bool_ else 0)


def tril(x: Tensor, diagonal=0) -> Tensor:
    """The lower triangle of the last two dims (j <= i + diagonal), zeros above."""
    return _triangle(x, diagonal, True, "tril")


def triu(x: Tensor, diagonal=0) -> Tensor:
    """The upper triangle of the last two dims (j >= i + diagonal), zeros below."""
    return _triangle(x, diagonal, False, "triu")


def one_hot(index: Tensor, num_classes=-1) -> Tensor:
    """int64 (*index.shape, num_classes) with 1 at each index (num_classes = max + 1 when -1,
    which reads the indices on the host)."""
    if not isinstance(index, Tensor) or index.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expects an integer index tensor, got "
                        f"{getattr(index, 'dtype', type(index).__name__)}")
    host = np.asarray(index)
    if num_classes == -1:
        num_classes = int(host.max()) + 1 if host.size else 0
    if host.size and (host.min() < 0 or host.max() >= num_classes):
        raise ValueError(f"one_hot: class values must lie in [0, {num_classes}), got min "
                         f"{host.min()} max {host.max()}")
    classes = wrap(index.device.from_numpy(np.arange(num_classes, dtype=index.dtype)),
                   index.device)
    return (_sh.unsqueeze(index, -1) == classes).to(np.int64)
