"""Normalisation functions as torch.nn.functional's: group_norm (composed of Tensor ops, whose
gradients of any order come from those) and rms_norm (one fused op; its create_graph gradient
is composed). layer_norm lives in ops.nn."""

from __future__ import annotations

import math

import numpy as np

from .. import autograd as _ag
from ..autograd import apply, wrap
from ..tensor import Tensor
from . import Op, check_same
from . import reduce as _rd
from . import shape as _sh

__all__ = ["group_norm", "rms_norm"]


def _float(x, what):
    if x._data.dtype.kind != "f":
        raise TypeError(f"{what}: needs a floating tensor, got dtype {x._data.dtype}")


def group_norm(x: Tensor, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalise (N, C, *) input over each group of C / num_groups channels and the spatial
    dims (biased variance), then scale and shift per channel."""
    _float(x, "group_norm")
    num_groups = int(num_groups)
    if x.ndim < 2 or num_groups <= 0 or x.shape[1] % num_groups:
        raise ValueError(f"group_norm: expected (N, C, *) input with C divisible by num_groups "
                         f"{num_groups}, got shape {x.shape}")
    n, c = x.shape[:2]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != (c,):
            raise ValueError(f"group_norm: {name} of shape {p.shape} does not match the "
                             f"{c} channels of input of shape {x.shape}")
    xg = _sh.reshape(x, n, num_groups, -1)
    xc = xg - _rd.mean(xg, 2, keepdims=True)
    var = _rd.mean(xc * xc, 2, keepdims=True)
    y = _sh.reshape(xc / (var + eps).sqrt(), *x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * _sh.reshape(weight, *shape)
    if bias is not None:
        y = y + _sh.reshape(bias, *shape)
    return y


class RMSNorm(Op):
    """Inputs (x, [weight]), x normalised over its trailing ``k`` dims: one fused kernel
    forward (the row rstd kept) and one backward."""

    __slots__ = ("k", "eps", "has_w", "rstd")

    def __init__(self, k, eps, has_w):
        self.k, self.eps, self.has_w = k, eps, has_w

    def compute(self, x, w=None):
        d = self.device
        cols = math.prod(x.shape[x.ndim - self.k:])
        w2 = None if w is None else d.compact(d.reshape(w, (cols,)))
        y, self.rstd = d.rms_norm(d.compact(d.reshape(x, (-1, cols))), w2, self.eps)
        return d.reshape(y, x.shape)

    def gradient(self, g, node):
        x = node._inputs[0]
        w = node._inputs[1] if self.has_w else None
        if _ag.is_grad_enabled():  # create_graph: a differentiable gradient
            axes = tuple(range(x.ndim - self.k, x.ndim))
            lead = tuple(range(x.ndim - self.k))
            r = (_rd.mean(x * x, axes, keepdims=True) + self.eps) ** -0.5
            gw = g if w is None else g * w
            dx = r * (gw - x * (r * r) * _rd.mean(gw * x, axes, keepdims=True))
            dw = None if w is None else (_rd.sum(g * x * r, lead) if lead else g * x * r)
        else:
            d, dev = self.device, g.device
            cols = math.prod(x.shape[x.ndim - self.k:])
            w2 = None if w is None else d.compact(d.reshape(w._data, (cols,)))
            dxa, dwa = d.rms_norm_backward(d.compact(d.reshape(g._data, (-1, cols))),
                                           d.compact(d.reshape(x._data, (-1, cols))), w2,
                                           self.rstd)
            dx = wrap(d.reshape(dxa, x.shape), dev)
            dw = None if w is None else wrap(d.reshape(dwa, w.shape), dev)
        if w is None:
            return (dx if x._requires_grad else None,)
        return (dx if x._requires_grad else None, dw if w._requires_grad else None)


def rms_norm(x: Tensor, normalized_shape, weight=None, eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x**2) + eps) over the trailing ``normalized_shape`` dims, times weight;
    ``eps=None`` is the dtype's machine epsilon, as in PyTorch."""
    _float(x, "rms_norm")
    ns = (int(normalized_shape),) if isinstance(normalized_shape, (int, np.integer)) \
        else tuple(int(s) for s in normalized_shape)
    k = len(ns)
    if k == 0 or x.shape[-k:] != ns:
        raise ValueError(f"rms_norm: input of shape {x.shape} does not end with "
                         f"normalized_shape {ns}")
    if weight is not None:
        if weight.shape != ns:
            raise ValueError(f"rms_norm: weight of shape {weight.shape} does not match "
                             f"normalized_shape {ns}")
        check_same(x, weight, "rms_norm")
    eps = float(np.finfo(x.dtype).eps) if eps is None else float(eps)
    op = RMSNorm(k, eps, weight is not None)
    return apply(op, x) if weight is None else apply(op, x, weight)


class BatchNorm(Op):
    """Training-mode batch normalisation of (N, C, *) input over every axis but 1: inputs
    (x, [weight], [bias]); one fused kernel forward (the batch mean, biased variance and rstd
    kept) and one backward."""

    __slots__ = ("eps", "has_w", "has_b", "mean", "var", "rstd")

    def __init__(self, eps, has_w, has_b):
        self.eps, self.has_w, self.has_b = eps, has_w, has_b

    def _split(self, args):
        rest = list(args[1:])
        w = rest.pop(0) if self.has_w else None
        b = rest.pop(0) if self.has_b else None
        return args[0], w, b

    def compute(self, *args):
        d = self.device
        x, w, b = self._split(args)
        x3 = d.compact(d.reshape(x, (x.shape[0], x.shape[1], -1)))
        y, self.mean, self.var, self.rstd = d.batch_norm(x3, w, b, self.eps)
        return d.reshape(y, x.shape)

    def gradient(self, g, node):
        x, w, b = self._split(node._inputs)
        if _ag.is_grad_enabled():  # create_graph: a differentiable gradient
            gx, gw, gb = self._composed_gradient(g, x, w)
        else:
            d, dev = self.device, g.device
            shp = (x.shape[0], x.shape[1], -1)
            dx, dw, db = d.batch_norm_backward(d.compact(d.reshape(g._data, shp)),
                                               d.compact(d.reshape(x._data, shp)),
                                               None if w is None else w._data,
                                               self.mean, self.rstd)
            gx = wrap(d.reshape(dx, x.shape), dev)
            gw, gb = (None if a is None else wrap(a, dev) for a in (dw, db))
        out = [gx if x._requires_grad else None]
        if w is not None:
            out.append(gw if w._requires_grad else None)
        if b is not None:
            out.append(gb if b._requires_grad else None)
        return tuple(out)

    def _composed_gradient(self, g, x, w):
        axes = (0,) + tuple(range(2, x.ndim))
        bshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        xc = x - _rd.mean(x, axes, keepdims=True)
        rstd = (_rd.mean(xc * xc, axes, keepdims=True) + self.eps) ** -0.5
        xhat = xc * rstd
        gw = g if w is None else g * _sh.reshape(w, *bshape)
        dx = rstd * (gw - _rd.mean(gw, axes, keepdims=True)
                     - xhat * _rd.mean(gw * xhat, axes, keepdims=True))
        return dx, _rd.sum(g * xhat, axes), _rd.sum(g, axes)


def batch_norm_train(x: Tensor, weight=None, bias=None, eps: float = 1e-5):
    """Batch normalisation of (N, C, *) input with its own statistics (training mode):
    returns (y, mean, var), mean and the biased var per channel as (C,) tensors that take no
    gradient (for the running statistics)."""
    _float(x, "batch_norm")
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected (N, C, *) input, got shape {x.shape}")
    c = x.shape[1]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None:
            if p.shape != (c,):
                raise ValueError(f"batch_norm: {name} of shape {p.shape} does not match the "
                                 f"{c} channels of input of shape {x.shape}")
            check_same(x, p, "batch_norm")
    op = BatchNorm(float(eps), weight is not None, bias is not None)
    y = apply(op, x, *(p for p in (weight, bias) if p is not None))
    dev = x.device
    return y, wrap(op.mean, dev), wrap(op.var, dev)
