"""Neural-network ops: the softmax family, dropout, layer_norm, embedding (convolution:
``conv``, pooling: ``pool``, attention: ``attention``, losses: ``loss``)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import autograd as _ag
from .. import random as _random
from ..autograd import apply, wrap
from ..tensor import Tensor
from . import Op, alias, check_same, normalize_dims, wrap_dim
from . import reduce as _rd
from . import shape as _sh

__all__ = ["softmax", "log_softmax", "logsumexp", "dropout", "layer_norm", "embedding"]


def _float(x, what):
    if x._data.dtype.kind != "f":
        raise TypeError(f"{what}: needs a floating tensor, got dtype {x._data.dtype}")


# -- softmax family ----------------------------------------------------------------------------
def _last_axis(d, fn, x, axis, drops=False):
    """fn over ``axis`` of x via the device's last-axis kernels on a compact 2-D array; x may
    be a tuple of same-shape arrays (fn then gets a tuple of compact 2-D arrays)."""
    xs = x if isinstance(x, tuple) else (x,)
    nd = xs[0].ndim
    axis = axis % nd
    if axis != nd - 1:
        perm = tuple(i for i in range(nd) if i != axis) + (axis,)
        xs = tuple(d.permute(a, perm) for a in xs)
    shp = xs[0].shape
    rows = tuple(d.compact(d.reshape(a, (-1, shp[-1])) if a.ndim != 2 else a) for a in xs)
    y = fn(rows if isinstance(x, tuple) else rows[0])
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
        if not _ag.is_grad_enabled():  # NOTE: one fused kernel; create_graph composes below
            d = self.device
            grad = _last_axis(d, lambda yg: d.softmax_backward(yg[0], yg[1], self.log),
                              (node._data, g._data), self.axis)
            return (wrap(grad, g.device),)
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


class LayerNorm(Op):
    """Inputs (x, [weight], [bias]) with x normalised over its trailing ``k`` dims: one fused
    kernel forward (the row statistics kept) and one backward for x, weight and bias."""

    __slots__ = ("k", "eps", "has_w", "has_b", "mean", "rstd")

    def __init__(self, k, eps, has_w, has_b):
        self.k, self.eps, self.has_w, self.has_b = k, eps, has_w, has_b

    def _split(self, args):
        x, rest = args[0], list(args[1:])
        w = rest.pop(0) if self.has_w else None
        b = rest.pop(0) if self.has_b else None
        return x, w, b

    def compute(self, *args):
        d = self.device
        x, w, b = self._split(args)
        cols = math.prod(x.shape[x.ndim - self.k:])
        x2 = d.compact(d.reshape(x, (-1, cols)))
        w, b = (None if a is None else d.compact(d.reshape(a, (cols,))) for a in (w, b))
        y, self.mean, self.rstd = d.layer_norm(x2, w, b, self.eps)
        return d.reshape(y, x.shape)

    def gradient(self, g, node):
        x, w, b = self._split(node._inputs)
        if _ag.is_grad_enabled():  # create_graph: a differentiable gradient
            return self._composed_gradient(g, x, w, b)
        d, dev = self.device, g.device
        cols = math.prod(x.shape[x.ndim - self.k:])
        x2 = d.compact(d.reshape(x._data, (-1, cols)))
        w2 = None if w is None else d.compact(d.reshape(w._data, (cols,)))
        dx, dw, db = d.layer_norm_backward(d.compact(d.reshape(g._data, (-1, cols))), x2, w2,
                                           self.mean, self.rstd)
        out = [wrap(d.reshape(dx, x.shape), dev) if x._requires_grad else None]
        if w is not None:
            out.append(wrap(d.reshape(dw, w.shape), dev) if w._requires_grad else None)
        if b is not None:
            out.append(wrap(d.reshape(db, b.shape), dev) if b._requires_grad else None)
        return tuple(out)

    def _composed_gradient(self, g, x, w, b):
        axes = tuple(range(x.ndim - self.k, x.ndim))
        lead = tuple(range(x.ndim - self.k))
        xc = x - _rd.mean(x, axes, keepdims=True)
        rstd = (_rd.mean(xc * xc, axes, keepdims=True) + self.eps) ** -0.5
        xhat = xc * rstd
        gw = g if w is None else g * w
        dx = rstd * (gw - _rd.mean(gw, axes, keepdims=True)
                     - xhat * _rd.mean(gw * xhat, axes, keepdims=True))
        lead_sum = (lambda t: _rd.sum(t, lead)) if lead else (lambda t: t)
        out = [dx if x._requires_grad else None]
        if w is not None:
            out.append(lead_sum(g * xhat) if w._requires_grad else None)
        if b is not None:
            out.append(lead_sum(g) if b._requires_grad else None)
        return tuple(out)


def layer_norm(x: Tensor, normalized_shape, weight=None, bias=None, eps=1e-5) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` dims, then scale and shift."""
    _float(x, "layer_norm")
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(ns)
    if k == 0 or x.shape[-k:] != ns:
        raise ValueError(f"layer_norm: input of shape {x.shape} does not end with "
                         f"normalized_shape {ns}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is None:
            continue
        if p.shape != ns:
            raise ValueError(f"layer_norm: {name} of shape {p.shape} does not match "
                             f"normalized_shape {ns}")
        check_same(x, p, "layer_norm")
    inputs = [x] + [p for p in (weight, bias) if p is not None]
    return apply(LayerNorm(k, float(eps), weight is not None, bias is not None), *inputs)


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

