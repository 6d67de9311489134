"""sort, argsort, topk along a dim: the device's stable argsort, then a gather, so the values'
gradient goes to the positions they came from (as torch's)."""

from __future__ import annotations

import collections

import numpy as np

from ..autograd import wrap
from ..tensor import Tensor
from . import index as _ix
from . import shape as _sh
from . import wrap_dim

__all__ = ["sort", "argsort", "topk", "msort"]

# torch.return_types.sort / topk
sort_result = collections.namedtuple("sort", ("values", "indices"))
topk_result = collections.namedtuple("topk", ("values", "indices"))


def argsort(x: Tensor, dim=-1, descending=False, stable=False) -> Tensor:
    """int64 indices that sort x along ``dim``. Always stable (equal elements keep their
    order): one of the orders torch allows when ``stable=False``. NaN sorts as the largest."""
    d = wrap_dim(dim, x.ndim, "argsort")
    if x.ndim == 0:
        return wrap(x.device.full((), 0, np.int64), x.device)
    return wrap(x.device.argsort(x._data, d, bool(descending)), x.device)


def sort(x: Tensor, dim=-1, descending=False, stable=False) -> sort_result:
    """A named tuple (values, indices) sorted along ``dim``."""
    idx = argsort(x, dim, descending, stable)
    if x.ndim == 0:
        return sort_result(x, idx)
    return sort_result(_ix.gather(x, dim, idx), idx)


def msort(x: Tensor) -> Tensor:
    return sort(x, 0).values


def topk(x: Tensor, k, dim=-1, largest=True, sorted=True) -> topk_result:  # noqa: A002
    """The k largest (smallest with ``largest=False``) entries along ``dim`` and their
    indices, in sorted order (also with ``sorted=False``, which leaves the order to us)."""
    d = wrap_dim(dim, x.ndim, "topk")
    n = x.shape[d] if x.ndim else 1
    k = int(k)
    if not 0 <= k <= n:
        raise ValueError(f"topk: k = {k} is out of range for dim {d} of size {n} (shape "
                         f"{x.shape})")
    idx = argsort(x, d, descending=largest)
    if x.ndim == 0:
        return topk_result(x, idx) if k else topk_result(_sh.reshape(x, 1)[:0], idx)
    idx = wrap(x.device.compact(idx[(slice(None),) * d + (slice(0, k),)]._data), x.device)
    return topk_result(_ix.gather(x, d, idx), idx)
