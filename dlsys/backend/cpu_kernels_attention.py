"""CPU kernels for scaled dot-product attention on compact (B, L, E) / (B, S, E) / (B, S, Ev)
batches: the two products go to BLAS (numpy's batched matmul); the softmax of the scaled,
masked scores and its backward are fused Numba kernels, one sweep of each row in cache (no
scaled, masked or exponentiated copy of the scores is written).

``attention_ref`` / ``attention_backward_ref`` are the numpy references (any float dtype);
``attention_fast`` / ``attention_backward_fast`` use the kernels for float32/float64.
mask: None or an additive (1 or B, L, S) float array; causal: row i sees columns j <= i
(PyTorch's top-left alignment); drop: None or a (B, L, S) multiplier (keep / (1 - p)).
A row that sees no column (every score -inf) gets zero probabilities, as PyTorch.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .cpu_kernels import jit, numba_ok


def _t(a):
    return a.transpose(0, 2, 1)


# -- numpy references ---------------------------------------------------------------------------
def attention_softmax_ref(s, scale, mask, causal):
    t = s * s.dtype.type(scale)
    if mask is not None:
        t = t + mask
    if causal:
        L, S = t.shape[1:]
        t = np.where(np.tril(np.ones((L, S), bool)), t, -np.inf)
    m = t.max(axis=-1, keepdims=True)
    live = m > -np.inf
    with np.errstate(invalid="ignore"):
        e = np.exp(t - np.where(live, m, 0))
    return np.where(live, e / np.where(live, e.sum(-1, keepdims=True), 1), 0).astype(s.dtype)


def attention_ref(q, k, v, mask, scale, causal, drop):
    p = attention_softmax_ref(np.matmul(q, _t(k)), scale, mask, causal)
    return np.matmul(p if drop is None else p * drop, v), p


def attention_softmax_backward_ref(p, da, drop):
    dp = da if drop is None else da * drop
    return p * (dp - (dp * p).sum(-1, keepdims=True))


def attention_backward_ref(q, k, v, probs, drop, g, scale):
    a = probs if drop is None else probs * drop
    ds = attention_softmax_backward_ref(probs, np.matmul(g, _t(v)), drop)
    sc = q.dtype.type(scale)
    return np.matmul(ds, k) * sc, np.matmul(_t(ds), q) * sc, np.matmul(_t(a), g), ds


# -- Numba kernels ------------------------------------------------------------------------------
# NOTE: Numba's math.exp is a scalar libm call (~4 ns an element here, 7x numpy's SIMD exp),
# which made a fused softmax slower than numpy's separate passes. exp_le0 is exp for x <= 0
# (every exponent of a softmax after its max is subtracted) as plain arithmetic that LLVM
# vectorises: x = k ln2 + r with k = rint(x / ln2), |r| <= ln2 / 2 (Cody-Waite, two-part ln2),
# exp(r) by its degree-13 Taylor polynomial (truncation < 5e-18), times 2^k built from its
# exponent bits; within 3e-16 of numpy's exp (tests), 0 below -708 (where exp is subnormal:
# nothing next to the row's max term, exp(0) = 1).
@intrinsic
def _bits_as_float64(typingctx, bits):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 = _LN2_HI + _LN2_LO, _LN2_HI with a short mantissa
_LN2_LO = 1.9082149292705877e-10
_F = [1.0 / float(np.prod(np.arange(1, n + 1))) for n in range(14)]  # 1/n!
_F0, _F1, _F2, _F3, _F4, _F5, _F6, _F7, _F8, _F9, _F10, _F11, _F12, _F13 = _F


@jit(inline="always")
def exp_le0(x):
    xc = x if x > -708.0 else -708.0
    k = np.rint(xc * _LOG2E)
    r = (xc - k * _LN2_HI) - k * _LN2_LO
    # NOTE: Horner written out: a loop over the coefficients kept LLVM from vectorising
    p = ((((((((((((_F13 * r + _F12) * r + _F11) * r + _F10) * r + _F9) * r + _F8) * r + _F7)
                * r + _F6) * r + _F5) * r + _F4) * r + _F3) * r + _F2) * r + _F1) * r + _F0
    y = p * _bits_as_float64((np.int64(k) + 1023) << 52)
    return y if x > -708.0 else 0.0


@jit(fastmath={"reassoc", "contract"})
def exp_le0_nb(x, out):
    """exp_le0 over an array (its test against np.exp)."""
    for i in range(x.size):
        out[i] = exp_le0(x[i])


@jit(fastmath={"reassoc", "contract"})
def attention_softmax_nb(s, scale, mask, use_mask, causal, out):
    """out[b, i] = softmax over j of scale * s[b, i, j] + mask[b or 0, i, j] (j <= i when
    causal), in one sweep of the row in cache: scale, mask and max, then exp and sum, then
    normalise."""
    B, L, S = s.shape
    mb = mask.shape[0]
    for b in range(B):
        bm = b if mb > 1 else 0
        for i in range(L):
            end = min(S, i + 1) if causal else S
            m = -np.inf
            for j in range(end):
                t = s[b, i, j] * scale
                if use_mask:
                    t += mask[bm, i, j]
                out[b, i, j] = t
                m = t if t > m else m
            if m == -np.inf:  # nothing to attend to: zeros (PyTorch's rule), not 0/0
                for j in range(S):
                    out[b, i, j] = 0
                continue
            tot = 0.0
            for j in range(end):
                e = exp_le0(out[b, i, j] - m)
                out[b, i, j] = e
                tot += e
            inv = 1.0 / tot
            for j in range(end):
                out[b, i, j] *= inv
            for j in range(end, S):
                out[b, i, j] = 0


@jit(fastmath={"reassoc", "contract"})
def attention_softmax_backward_nb(p, da, drop, use_drop, out):
    """out = p * (dp - sum_j dp * p) with dp = da * drop."""
    B, L, S = p.shape
    for b in range(B):
        for i in range(L):
            dot = 0.0
            for j in range(S):
                dp = da[b, i, j] * drop[b, i, j] if use_drop else da[b, i, j]
                out[b, i, j] = dp
                dot += dp * p[b, i, j]
            for j in range(S):
                out[b, i, j] = p[b, i, j] * (out[b, i, j] - dot)


# -- wrappers ------------------------------------------------------------------------------------
def attention_fast(q, k, v, mask, scale, causal, drop):
    if not numba_ok(q, k, v) or q.size == 0 or k.shape[1] == 0:
        return attention_ref(q, k, v, mask, scale, causal, drop)
    s = np.matmul(q, _t(k))
    m = np.zeros((1, 1, 1), s.dtype) if mask is None else np.ascontiguousarray(mask, s.dtype)
    # NOTE: into a second array, not in place: LLVM's vector loops check that the arrays do
    # not overlap and take their scalar fallback when they do (2-4x slower)
    p = np.empty_like(s)
    attention_softmax_nb(s, float(scale), m, mask is not None, bool(causal), p)
    return np.matmul(p if drop is None else p * drop, v), p


def attention_backward_fast(q, k, v, probs, drop, g, scale):
    g = np.ascontiguousarray(g)
    if not numba_ok(q, k, v, probs, g) or probs.size == 0:
        return attention_backward_ref(q, k, v, probs, drop, g, scale)
    a = probs if drop is None else probs * drop
    dv = np.matmul(_t(a), g)
    da = np.matmul(g, _t(v))
    dr = np.zeros((1, 1, 1), probs.dtype) if drop is None else np.ascontiguousarray(drop)
    ds = np.empty_like(da)  # NOTE: not in place (see attention_fast)
    attention_softmax_backward_nb(probs, da, dr, drop is not None, ds)
    dq = np.matmul(ds, k)
    dq *= q.dtype.type(scale)
    dk = np.matmul(_t(ds), q)
    dk *= q.dtype.type(scale)
    return dq, dk, dv, ds
