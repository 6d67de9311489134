"""scaled_dot_product_attention, PyTorch's semantics: q (..., L, E), k (..., S, E),
v (..., S, Ev) with broadcasting batch dims; a bool mask (True takes part) or a float mask
(added to the scores) broadcasting to (..., L, S); is_causal (row i sees columns j <= i,
combined with a mask if both are given, as PyTorch's CPU kernel does); dropout of the
attention weights drawn from dlsys's generator; scale (default 1/sqrt(E)); enable_gqa.

One op: the device computes softmax(scale * q @ k^T + mask) @ v and its backward (on the CPU
with a fused Numba softmax between two BLAS products). Under create_graph the gradient is
composed from differentiable ops instead, so gradients of gradients are exact.
"""

from __future__ import annotations

import math

import numpy as np

from .. import autograd as _ag
from .. import random as _random
from ..autograd import apply, wrap
from ..tensor import Tensor
from . import Op, check_same
from . import elementwise as _ew
from . import reduce as _rd
from . import shape as _sh
from .matmul import matmul
from .nn import softmax

__all__ = ["scaled_dot_product_attention"]


def _mT(x):  # noqa: N802
    return _sh.permute(x, 0, 2, 1)


class Attention(Op):
    """Inputs (q, k, v) or (q, k, v, mask) on flattened (B, ., .) batches; a constant mask
    (bool masks, float masks that need no gradient) and the dropout multiplier are kept."""

    __slots__ = ("scale", "causal", "mask", "drop", "probs")

    def __init__(self, scale, causal, mask, drop):
        self.scale, self.causal, self.mask, self.drop = scale, causal, mask, drop

    def compute(self, q, k, v, m=None):
        out, self.probs = self.device.attention(q, k, v, self.mask if m is None else m,
                                                self.scale, self.causal, self.drop)
        return out

    def gradient(self, g, node):
        q, k, v = node._inputs[:3]
        mt = node._inputs[3] if len(node._inputs) == 4 else None
        if _ag.is_grad_enabled():  # create_graph: a differentiable gradient
            dq, dk, dv, ds = self._composed_gradient(q, k, v, mt, g)
        else:
            d, dev = self.device, g.device
            arrays = d.attention_backward(q._data, k._data, v._data, self.probs, self.drop,
                                          g._data, self.scale)
            dq, dk, dv, ds = (wrap(a, dev) for a in arrays)
        grads = [dq if q._requires_grad else None, dk if k._requires_grad else None,
                 dv if v._requires_grad else None]
        if mt is not None:
            grads.append(None if not mt._requires_grad else
                         ds if mt.shape[0] == ds.shape[0] else _rd.sum(ds, 0, keepdims=True))
        return tuple(grads)

    def _composed_gradient(self, q, k, v, mt, g):
        dev = q.device
        s = matmul(q, _mT(k)) * self.scale
        mask = mt if mt is not None else (None if self.mask is None else wrap(self.mask, dev))
        if mask is not None:
            s = s + mask
        if self.causal:
            L, S = s.shape[1:]
            keep = wrap(dev.from_numpy(np.tril(np.ones((L, S), bool))), dev)
            s = _ew.where(keep, s, -math.inf)
        d = self.device
        rowmax, _ = d.max(s._data, 2, keepdims=True)
        live = wrap(d.scalar("gt", rowmax, -math.inf), dev)
        safe = _ew.where(live, s, 0.0)  # NOTE: a row masked everywhere has no gradient
        p = _ew.where(live, softmax(safe, 2), 0.0)
        drop = None if self.drop is None else wrap(self.drop, dev)
        a = p if drop is None else p * drop
        dv = matmul(_mT(a), g)
        dp = matmul(g, _mT(v))
        if drop is not None:
            dp = dp * drop
        ds = p * (dp - _rd.sum(dp * p, 2, keepdims=True))
        return matmul(ds, k) * self.scale, matmul(_mT(ds), q) * self.scale, dv, ds


def _bool_to_additive(mask: Tensor, dtype):
    d = mask.device
    m = mask._data
    return d.where(m, d.full(m.shape, 0, dtype), d.full(m.shape, -np.inf, dtype))


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask=None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None, enable_gqa: bool = False) -> Tensor:
    """torch.nn.functional.scaled_dot_product_attention."""
    what = "scaled_dot_product_attention"
    for t in (query, key, value):
        if not isinstance(t, Tensor):
            raise TypeError(f"{what}: query, key and value must be Tensors")
    check_same(query, key, what)
    check_same(query, value, what)
    if query._data.dtype.kind != "f":
        raise TypeError(f"{what}: needs floating tensors, got dtype {query.dtype}")
    if min(query.ndim, key.ndim, value.ndim) < 2:
        raise ValueError(f"{what}: query, key and value need at least 2 dims (..., L, E), got "
                         f"shapes {query.shape}, {key.shape}, {value.shape}")
    (L, E), (S, Ek), (Sv, Ev) = query.shape[-2:], key.shape[-2:], value.shape[-2:]
    if E != Ek or S != Sv:
        raise ValueError(f"{what}: query {query.shape}, key {key.shape} and value "
                         f"{value.shape} do not match ((..., L, E), (..., S, E), (..., S, Ev))")
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{what}: dropout_p must be in [0, 1], got {dropout_p}")
    if enable_gqa:
        key, value = _repeat_kv(query, key, what), _repeat_kv(query, value, what)
    try:
        batch = tuple(np.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2]))
    except ValueError:
        raise ValueError(f"{what}: batch dims of query {query.shape}, key {key.shape} and "
                         f"value {value.shape} cannot be broadcast together") from None
    nb = math.prod(batch)
    q, k, v = (_sh.reshape(_sh.broadcast_to(t, batch + t.shape[-2:]), nb, *t.shape[-2:])
               for t in (query, key, value))
    mask_const, mask_in = _prepare_mask(attn_mask, query, batch, L, S, what)
    drop = None
    if dropout_p > 0.0:
        keep = _random.generator().random((nb, L, S)) >= dropout_p
        mult = keep * (1.0 / (1.0 - dropout_p)) if dropout_p < 1.0 else np.zeros((nb, L, S))
        drop = query.device.from_numpy(mult.astype(query.dtype))
    sc = 1.0 / math.sqrt(E) if scale is None else float(scale)
    op = Attention(sc, bool(is_causal), mask_const, drop)
    out = apply(op, q, k, v) if mask_in is None else apply(op, q, k, v, mask_in)
    return _sh.reshape(out, batch + (L, Ev))


def _repeat_kv(query, t, what):
    """Grouped-query attention: t's heads (dim -3) repeated to query's (head h uses h // G)."""
    if query.ndim < 3 or t.ndim < 3 or query.shape[-3] % t.shape[-3]:
        raise ValueError(f"{what}: enable_gqa needs query heads ({query.shape}) divisible by "
                         f"key/value heads ({t.shape})")
    g = query.shape[-3] // t.shape[-3]
    x = _sh.unsqueeze(t, t.ndim - 2)
    x = _sh.broadcast_to(x, t.shape[:-2] + (g,) + t.shape[-2:])
    return _sh.reshape(x, t.shape[:-3] + (t.shape[-3] * g,) + t.shape[-2:])


def _prepare_mask(attn_mask, query, batch, L, S, what):
    """(constant (1 or B, L, S) additive array or None, mask Tensor input or None)."""
    if attn_mask is None:
        return None, None
    if not isinstance(attn_mask, Tensor):
        raise TypeError(f"{what}: attn_mask must be a Tensor, got {type(attn_mask).__name__}")
    if attn_mask.device != query.device:
        raise ValueError(f"{what}: attn_mask on {attn_mask.device}, query on {query.device}")
    kind = attn_mask.dtype.kind
    if kind != "b" and attn_mask.dtype != query.dtype:
        raise TypeError(f"{what}: attn_mask must be bool or of the query's dtype "
                        f"{query.dtype}, got {attn_mask.dtype}")
    try:
        np.broadcast_shapes(attn_mask.shape, batch + (L, S))
    except ValueError:
        raise ValueError(f"{what}: attn_mask of shape {attn_mask.shape} does not broadcast to "
                         f"{batch + (L, S)}") from None
    lead = attn_mask.shape[:-2] if attn_mask.ndim > 2 else ()
    shared = all(n == 1 for n in lead) and len(lead) <= len(batch)
    full = ((1,) if shared else (math.prod(batch),)) + (L, S)
    if kind == "b" or not attn_mask._requires_grad:
        d = query.device
        m = _bool_to_additive(attn_mask, query.dtype) if kind == "b" else attn_mask._data
        m = d.reshape(m, m.shape[-2:]) if shared and m.ndim > 2 else m
        tgt = (L, S) if shared else batch + (L, S)
        return d.compact(d.reshape(d.compact(d.broadcast_to(m, tgt)), full)), None
    m = _sh.reshape(attn_mask, attn_mask.shape[-2:]) if shared and attn_mask.ndim > 2 \
        else attn_mask
    m = _sh.broadcast_to(m, (L, S) if shared else batch + (L, S))
    return None, _sh.reshape(m, *full)
