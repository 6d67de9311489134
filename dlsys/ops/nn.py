"""Neural-network ops: the softmax family, dropout, layer_norm, embedding (convolution:
``conv``, pooling: ``pool``, attention: ``attention``, losses: ``loss``)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import random as _random
from ..autograd import apply, wrap
from ..tensor import Tensor
from . import Op, alias, normalize_dims, wrap_dim
from . import reduce as _rd
from . import shape as _sh

__all__ = ["softmax", "log_softmax", "logsumexp", "dropout", "layer_norm", "embedding"]


def _float(x, what):
    if x._data.dtype.kind != "f":
        raise TypeError(f"{what}: needs a floating tensor, got dtype {x._data.dtype}")


# -- softmax family ----------------------------------------------------------------------------
def _last_axis(d, fn, x, axis, drops=False):
    """fn over ``axis`` of x via the device's last-axis kernels on a compact 2-D array."""
    nd = x.ndim
    axis = axis % nd
    if axis != nd - 1:
        perm = tuple(i for i in range(nd) if i != axis) + (axis,)
        x = d.permute(x, perm)
    shp = x.shape
    y = fn(d.compact(d.reshape(x, (-1, shp[-1])) if x.ndim != 2 else x))
    if drops:
        return d.reshape(y, shp[:-1])
    y = d.reshape(y, shp)
    if axis != nd - 1:
        y = d.permute(y, tuple(np.argsort(perm).tolist()))
    return y


class Softmax(Op):
    __slots__ = ("axis", "log")

    def __init__(self, axis, log):
        self.axis, self.log = axis, log

    def compute(self, x):
        d = self.device
        return _last_axis(d, d.log_softmax if self.log else d.softmax, x, self.axis)

    def gradient(self, g, node):
        if self.log:  # g - softmax * sum(g)
            return (g - node.exp() * _rd.sum(g, self.axis, keepdims=True),)
        return (node * (g - _rd.sum(g * node, self.axis, keepdims=True)),)


class LogSumExp(Op):
    __slots__ = ("axis",)

    def __init__(self, axis):
        self.axis = axis

    def compute(self, x):
        d = self.device
        return _last_axis(d, d.logsumexp, x, self.axis, drops=True)

    def gradient(self, g, node):
        x = node._inputs[0]
        kd = _sh.unsqueeze(node, self.axis)
        return (_sh.unsqueeze(g, self.axis) * (x - kd).exp(),)


def _axis(x, dim, axis, what):
    """The one dim of a softmax-family op; torch's implicit dim when none is given (with its
    deprecation warning): 0 for 0-, 1- and 3-D inputs, else 1."""
    dim = alias(dim, axis, "dim", "axis")
    if dim is None:
        warnings.warn(f"Implicit dimension choice for {what} has been deprecated. Change the "
                      "call to include dim=X as an argument.", UserWarning, stacklevel=3)
        dim = 0 if x.ndim in (0, 1, 3) else 1
    return wrap_dim(dim, x.ndim, what)


def _softmax_family(op_cls, x, dim, axis, dtype, what, *args):
    if dtype is not None:
        x = x.to(dtype)
    _float(x, what)
    a = _axis(x, dim, axis, what)
    if x.ndim == 0:  # NOTE: as torch: a 0-d input is one row of one element
        return _sh.reshape(apply(op_cls(0, *args), _sh.reshape(x, 1)), ())
    return apply(op_cls(a, *args), x)


def softmax(x: Tensor, dim=None, dtype=None, *, axis=None) -> Tensor:
    return _softmax_family(Softmax, x, dim, axis, dtype, "softmax", False)


def log_softmax(x: Tensor, dim=None, dtype=None, *, axis=None) -> Tensor:
    return _softmax_family(Softmax, x, dim, axis, dtype, "log_softmax", True)


def logsumexp(x: Tensor, dim=-1, keepdim=False, *, axis=None, keepdims=None) -> Tensor:
    """log(sum(exp(x))) over ``dim`` (an int or a tuple of dims), stable."""
    keepdim = bool(alias(keepdim, keepdims, "keepdim", "keepdims", False))
    dims = normalize_dims(alias(dim, axis, "dim", "axis", -1), x.ndim, "logsumexp")
    _float(x, "logsumexp")
    if x.ndim == 0:
        return x
    if len(dims) == 1:
        out = apply(LogSumExp(dims[0]), x)
    else:  # several dims: moved last and merged into one
        keep = [i for i in range(x.ndim) if i not in dims]
        moved = _sh.permute(x, *keep, *dims)
        merged = _sh.reshape(moved, tuple(x.shape[i] for i in keep)
                             + (math.prod(x.shape[i] for i in dims),))
        out = apply(LogSumExp(len(keep)), merged)
    if keepdim:
        out = _sh.reshape(out, tuple(1 if i in dims else n for i, n in enumerate(x.shape)))
    return out


# -- regularisation and normalisation ------------------------------------------------------------
def dropout(x: Tensor, p=0.5, training=True) -> Tensor:
    """Inverted dropout; the mask comes from the global generator (ds.manual_seed)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    _float(x, "dropout")
    d = x.device
    if p == 1.0:
        return x * 0.0
    keep = _random.generator().random(x.shape) >= p
    mask = (keep * (1.0 / (1.0 - p))).astype(x.dtype)
    return x * wrap(d.from_numpy(mask), d)


def layer_norm(x: Tensor, normalized_shape, weight=None, bias=None, eps=1e-5) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` dims, then scale and shift."""
    _float(x, "layer_norm")
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(ns)
    if k == 0 or x.shape[-k:] != ns:
        raise ValueError(f"layer_norm: input of shape {x.shape} does not end with "
                         f"normalized_shape {ns}")
    axes = tuple(range(x.ndim - k, x.ndim))
    mu = _rd.mean(x, axes, keepdims=True)
    xc = x - mu
    var = _rd.mean(xc * xc, axes, keepdims=True)
    y = xc / (var + eps).sqrt()
    if weight is not None:
        if weight.shape != ns:
            raise ValueError(f"layer_norm: weight of shape {weight.shape} does not match "
                             f"normalized_shape {ns}")
        y = y * weight
    if bias is not None:
        if bias.shape != ns:
            raise ValueError(f"layer_norm: bias of shape {bias.shape} does not match "
                             f"normalized_shape {ns}")
        y = y + bias
    return y


def embedding(idx: Tensor, weight: Tensor) -> Tensor:
    """Rows of ``weight`` (num, dim) at integer ``idx``; repeated indices add their gradients."""
    if not isinstance(idx, Tensor):
        idx = wrap(weight.device.from_numpy(np.asarray(idx, dtype=np.int64)),
                    weight.device)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num, dim), got shape {weight.shape}")
    if idx.device != weight.device:
        raise ValueError(f"embedding: indices on {idx.device}, weight on {weight.device}")
    flat = _sh.reshape(idx, -1) if idx.ndim != 1 else idx
    rows = _sh.getitem(weight, flat)
    return _sh.reshape(rows, idx.shape + (weight.shape[1],))

