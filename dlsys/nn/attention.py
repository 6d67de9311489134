"""MultiheadAttention (PyTorch's torch.nn.MultiheadAttention: parameters, masks, outputs)."""

from __future__ import annotations

import math

import numpy as np

from dlsys.creation import zeros
from dlsys.ops.elementwise import where

from . import functional as F
from . import init
from ._factory import empty_parameter
from ._views import split_views
from .linear import Linear
from .module import Module

__all__ = ["MultiheadAttention"]


def _float_mask(mask, name, dtype):
    """A bool mask (True: not allowed) as 0 / -inf of ``dtype``; a float mask as it is."""
    if mask is None:
        return None
    if mask.dtype == np.bool_:
        return where(mask, float("-inf"), zeros(*mask.shape, dtype=dtype, device=mask.device))
    if mask.dtype.kind != "f":
        raise TypeError(f"only bool and floating types of {name} are supported, got "
                        f"{mask.dtype}")
    if mask.dtype != dtype:
        raise TypeError(f"{name} of dtype {mask.dtype} does not match the query's {dtype}")
    return mask


def _attention(q, k, v, mask, dropout_p, training):
    """softmax(q k^T / sqrt(d) + mask) v over (B, H, L, d) heads; also the weights."""
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.swapaxes(-2, -1)
    if mask is not None:
        scores = scores + mask
    w = F.softmax(scores, -1)
    if dropout_p > 0.0 and training:
        w = F.dropout(w, dropout_p, True)
    return w @ v, w


class MultiheadAttention(Module):
    """Attention over ``num_heads`` heads of ``embed_dim // num_heads`` dims, with PyTorch's
    parameters (``in_proj_weight`` (3E, E) and ``in_proj_bias``, or ``q/k/v_proj_weight`` when
    ``kdim``/``vdim`` differ from E; ``out_proj``) and initialisation, so torch's state_dict
    loads as it is.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (output, weights or None)``: query (L, N, E)
    (or (N, L, E) with ``batch_first``, or (L, E) unbatched); key/value (S, N, kdim/vdim);
    ``key_padding_mask`` (N, S) and ``attn_mask`` (L, S) or (N * num_heads, L, S), bool (True:
    not attended) or float (added to the scores); the weights are averaged over heads unless
    ``average_attn_weights=False``. ``is_causal`` is a hint that attn_mask is causal (it must be
    given, as in PyTorch)."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim=None, vdim=None,
                 batch_first: bool = False, device=None, dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got "
                             f"embed_dim={embed_dim} and num_heads={num_heads} instead")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are "
                                      "not supported")
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        self.kdim = int(kdim) if kdim is not None else self.embed_dim
        self.vdim = int(vdim) if vdim is not None else self.embed_dim
        self._qkv_same_embed_dim = self.kdim == self.embed_dim and self.vdim == self.embed_dim
        self.dropout, self.batch_first = float(dropout), bool(batch_first)
        self.head_dim = self.embed_dim // self.num_heads
        e = self.embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = empty_parameter((3 * e, e), device, dtype)
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = empty_parameter((e, e), device, dtype)
            self.k_proj_weight = empty_parameter((e, self.kdim), device, dtype)
            self.v_proj_weight = empty_parameter((e, self.vdim), device, dtype)
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = empty_parameter((3 * e,), device, dtype)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(e, e, bias=bias, device=device, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self):
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _project(self, query, key, value):
        b = self.in_proj_bias
        bq, bk, bv = split_views(b, 3, 0) if b is not None else (None, None, None)
        if self._qkv_same_embed_dim:
            if query is key and key is value:  # self-attention: one GEMM
                return split_views(F.linear(query, self.in_proj_weight, b), 3, -1)
            wq, wk, wv = split_views(self.in_proj_weight, 3, 0)
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)

    def _mask(self, key_padding_mask, attn_mask, n, tgt, src, dtype, batched):
        """key_padding_mask and attn_mask as one float mask broadcasting to (N, H, L, S)."""
        kpm = _float_mask(key_padding_mask, "key_padding_mask", dtype)
        am = _float_mask(attn_mask, "attn_mask", dtype)
        if kpm is not None:
            want = (n, src) if batched else (src,)
            if tuple(kpm.shape) != want:
                raise ValueError(f"expected key_padding_mask of shape {want}, got "
                                 f"{tuple(kpm.shape)}")
            kpm = kpm.reshape(n, 1, 1, src)
        if am is not None:
            if am.ndim == 2:
                if tuple(am.shape) != (tgt, src):
                    raise ValueError(f"The shape of the 2D attn_mask is {tuple(am.shape)}, but "
                                     f"should be {(tgt, src)}.")
                am = am.reshape(1, 1, tgt, src)
            elif am.ndim == 3:
                want = (n * self.num_heads, tgt, src)
                if tuple(am.shape) != want:
                    raise ValueError(f"The shape of the 3D attn_mask is {tuple(am.shape)}, but "
                                     f"should be {want}.")
                am = am.reshape(n, self.num_heads, tgt, src)
            else:
                raise ValueError(f"attn_mask's dimension {am.ndim} is not supported")
        if kpm is None:
            return am
        return kpm if am is None else am + kpm

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True,
                attn_mask=None, average_attn_weights: bool = True, is_causal: bool = False):
        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use "
                               "the Transformer module method `generate_square_subsequent_mask`"
                               " to create this mask.")
        batched = query.ndim == 3
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(f"query, key and value must all be 3-D (batched) or 2-D "
                             f"(unbatched), got shapes {tuple(query.shape)}, "
                             f"{tuple(key.shape)} and {tuple(value.shape)}")
        same = query is key and key is value
        if not batched:  # everything as (N, L, E) from here on
            query, key, value = (t.unsqueeze(0) for t in (query, key, value))
        elif not self.batch_first:
            query, key, value = (t.swapaxes(0, 1) for t in (query, key, value))
        if same:
            key = value = query
        n, tgt, e = query.shape
        src = key.shape[1]
        if e != self.embed_dim or key.shape[-1] != self.kdim or value.shape[-1] != self.vdim \
                or key.shape[:2] != value.shape[:2] or key.shape[0] != n:
            raise ValueError(f"MultiheadAttention(embed_dim={self.embed_dim}, kdim={self.kdim},"
                             f" vdim={self.vdim}): query, key and value of shapes "
                             f"{tuple(query.shape)}, {tuple(key.shape)} and "
                             f"{tuple(value.shape)} (as (N, L, E)) do not fit")
        mask = self._mask(key_padding_mask, attn_mask, n, tgt, src, query.dtype, batched)
        q, k, v = self._project(query, key, value)
        h, d = self.num_heads, self.head_dim
        q, k, v = (t.reshape(n, -1, h, d).swapaxes(1, 2) for t in (q, k, v))
        out, w = _attention(q, k, v, mask, self.dropout, self.training)
        out = self.out_proj(out.swapaxes(1, 2).reshape(n, tgt, e))
        if not batched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.swapaxes(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            w = w.mean(1)
        return out, (w.squeeze(0) if not batched else w)

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, " \
               f"batch_first={self.batch_first}"
