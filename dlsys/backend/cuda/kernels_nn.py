"""Numba CUDA kernels for the nn ops: softmax family, cross-entropy backward, im2col/col2im,
pooling (elementwise, gather and reduction kernels: ``kernels``). Conventions as in ``kernels``:
flat C-contiguous 1-D device arrays, shapes as integers, the CPU device as the reference.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda

from .kernels import UNARY_FUNCS, block_sum
from .launch import TPB

_log = UNARY_FUNCS["log"]  # NOTE: log(0) = -inf, log(<0) = nan, as numpy

# softmax family, one block per row: mode 0 softmax, 1 log_softmax, 2 logsumexp (-> aux[row]),
# 3 cross-entropy (probs -> out, per-row loss -> aux[row], targets in target, 0 where the
# target is ``ignore``)
SOFTMAX, LOG_SOFTMAX, LOGSUMEXP, CROSS_ENTROPY = 0, 1, 2, 3


@functools.cache
def softmax_rows_kernel(dtype):
    acc_t = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def k(x, out, aux, target, ignore, nrows, ncols, mode, zero):
        sm = cuda.shared.array(TPB, acc_t)
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        for row in range(cuda.blockIdx.x, nrows, cuda.gridDim.x):
            base = row * ncols
            m = x[base]
            for c in range(t, ncols, nt):
                v = x[base + c]
                if v > m:
                    m = v
            sm[t] = m
            cuda.syncthreads()
            s = nt // 2
            while s > 0:
                if t < s and sm[t + s] > sm[t]:
                    sm[t] = sm[t + s]
                cuda.syncthreads()
                s //= 2
            m = sm[0]
            cuda.syncthreads()
            if m == -math.inf:
                m = zero  # NOTE: an all -inf row: exp(x - 0) = 0, logsumexp = -inf, not NaN
            acc = zero
            for c in range(t, ncols, nt):
                acc += math.exp(x[base + c] - m)
            sm[t] = acc
            block_sum(sm, t, nt)
            total = sm[0]
            cuda.syncthreads()
            if mode == 1:
                lse = _log(total)
                for c in range(t, ncols, nt):
                    out[base + c] = x[base + c] - m - lse
            elif mode == 2:
                if t == 0:
                    aux[row] = _log(total) + m
            else:
                for c in range(t, ncols, nt):
                    out[base + c] = math.exp(x[base + c] - m) / total
                if mode == 3 and t == 0:
                    tr = target[row]
                    aux[row] = zero if tr == ignore else _log(total) - (x[base + tr] - m)
    return k


@cuda.jit
def cross_entropy_backward_kernel(probs, target, g, count, ignore, out, ncols, n):
    # d(mean loss)/d logits = (probs - onehot(target)) * grad_loss / (rows kept), 0 on ignored
    # rows; g and count are 1-element arrays (so no host synchronisation is needed)
    c = count[0]
    scale = g[0] / c if c > 0 else g[0] * 0  # NOTE: every row ignored: all zeros
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        r = e // ncols
        c = e % ncols
        tr = target[r]
        p = probs[e]
        if c == tr:
            p -= 1
        out[e] = p * scale if tr != ignore else p * 0


@cuda.jit
def log_sigmoid_kernel(x, out, n):
    # log(sigmoid(v)) = -(max(-v, 0) + log1p(exp(-|v|))): no overflow, no cancellation
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        v = x[i]
        out[i] = -(max(-v, v * 0) + math.log1p(math.exp(-abs(v))))


# ============================================================================================
# convolution helpers and pooling (NCHW, flat arrays)
# ============================================================================================
@cuda.jit
def im2col_kernel(x, out, c, h, w, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, zero, n):
    ck = c * kh * kw
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        col = e % ck
        row = e // ck
        kj = col % kw
        t = col // kw
        ki = t % kh
        ci = t // kh
        ox = row % ow
        t2 = row // ow
        oy = t2 % oh
        ni = t2 // oh
        y = oy * sh - pt + ki * dh
        xx = ox * sw - pl + kj * dw
        if 0 <= y < h and 0 <= xx < w:
            out[e] = x[((ni * c + ci) * h + y) * w + xx]
        else:
            out[e] = zero


@cuda.jit
def col2im_kernel(cols, out, c, h, w, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, zero, n):
    # NOTE: a gather per input pixel (sum over the windows that cover it) instead of a
    # scatter-add per column entry: deterministic and free of atomics.
    ck = c * kh * kw
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        xx = e % w
        y = (e // w) % h
        ci = (e // (w * h)) % c
        ni = e // (w * h * c)
        acc = zero
        for ki in range(kh):
            yy = y + pt - ki * dh
            if yy < 0 or yy % sh != 0 or yy // sh >= oh:
                continue
            oy = yy // sh
            for kj in range(kw):
                xq = xx + pl - kj * dw
                if xq < 0 or xq % sw != 0 or xq // sw >= ow:
                    continue
                ox = xq // sw
                acc += cols[((ni * oh + oy) * ow + ox) * ck + (ci * kh + ki) * kw + kj]
        out[e] = acc


@cuda.jit
def max_pool_kernel(x, out, argmax, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        ox = e % ow
        oy = (e // ow) % oh
        plane = e // (ow * oh)
        base = plane * h * w
        y0 = oy * sh - ph
        x0 = ox * sw - pw
        i0 = 0 if y0 >= 0 else (-y0 + dh - 1) // dh
        j0 = 0 if x0 >= 0 else (-x0 + dw - 1) // dw
        bidx = (y0 + i0 * dh) * w + x0 + j0 * dw
        best = x[base + bidx]
        for i in range(i0, kh):
            yy = y0 + i * dh
            if yy >= h:
                break
            for j in range(j0, kw):
                xq = x0 + j * dw
                if xq >= w:
                    break
                p = yy * w + xq
                v = x[base + p]
                # NOTE: PyTorch's rule: the first maximum wins, a NaN wins (the last NaN)
                if v > best or v != v:
                    best = v
                    bidx = p
        out[e] = best
        argmax[e] = bidx


@cuda.jit
def max_pool_backward_kernel(grad_out, argmax, gx, hw, ohw, n):
    # NOTE: the interface gives no window geometry here, only argmax; overlapping windows may
    # pick the same input pixel, hence atomics.
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        plane = e // ohw
        cuda.atomic.add(gx, plane * hw + argmax[e], grad_out[e])


@cuda.jit(device=True)
def _avg_divisor(oy, ox, h, w, kh, kw, sh, sw, ph, pw, cip, divisor):
    """(row start, row end, column start, column end, divisor) of PyTorch's window."""
    r0 = oy * sh - ph
    c0 = ox * sw - pw
    r1 = min(r0 + kh, h + ph)
    c1 = min(c0 + kw, w + pw)
    pool = (r1 - r0) * (c1 - c0)
    r0 = max(r0, 0)
    c0 = max(c0, 0)
    r1 = min(r1, h)
    c1 = min(c1, w)
    div = divisor if divisor > 0 else (pool if cip else (r1 - r0) * (c1 - c0))
    return r0, r1, c0, c1, div


@cuda.jit
def avg_pool_kernel(x, out, h, w, kh, kw, sh, sw, ph, pw, cip, divisor, oh, ow, zero, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        ox = e % ow
        oy = (e // ow) % oh
        plane = e // (ow * oh)
        r0, r1, c0, c1, div = _avg_divisor(oy, ox, h, w, kh, kw, sh, sw, ph, pw, cip, divisor)
        acc = zero
        for r in range(r0, r1):
            for c in range(c0, c1):
                acc += x[(plane * h + r) * w + c]
        out[e] = acc / div if r1 > r0 and c1 > c0 else zero


@cuda.jit
def avg_pool_backward_kernel(grad_out, gx, h, w, kh, kw, sh, sw, ph, pw, cip, divisor, oh, ow,
                             zero, n):
    # gather per input pixel over the windows covering it (deterministic, no atomics)
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        xx = e % w
        y = (e // w) % h
        plane = e // (w * h)
        acc = zero
        oy_lo = max(0, (y + ph - kh + sh) // sh)
        oy_hi = min(oh - 1, (y + ph) // sh)
        ox_lo = max(0, (xx + pw - kw + sw) // sw)
        ox_hi = min(ow - 1, (xx + pw) // sw)
        for oy in range(oy_lo, oy_hi + 1):
            for ox in range(ox_lo, ox_hi + 1):
                r0, r1, c0, c1, div = _avg_divisor(oy, ox, h, w, kh, kw, sh, sw, ph, pw, cip,
                                                   divisor)
                acc += grad_out[(plane * oh + oy) * ow + ox] / div
        gx[e] = acc
