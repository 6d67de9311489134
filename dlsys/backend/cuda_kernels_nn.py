"""Numba CUDA kernels for nn and optimizers: softmax family, cross-entropy backward, matmul,
im2col/col2im, pooling, SGD/Adam updates (the elementwise, gather and reduction kernels are in
``cuda_kernels``). Only the CUDA device imports this; conventions as in ``cuda_kernels``:
flat C-contiguous 1-D device arrays, shapes as integers, the CPU device as the reference.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda

from .cuda_kernels import SIMULATOR, TPB, _cdiv, _log, _pow2, _run, block_sum

# softmax family, one block per row: mode 0 softmax, 1 log_softmax, 2 logsumexp (-> aux[row]),
# 3 cross-entropy (probs -> out, per-row loss -> aux[row], targets in target)
SOFTMAX, LOG_SOFTMAX, LOGSUMEXP, CROSS_ENTROPY = 0, 1, 2, 3


@functools.cache
def softmax_rows_kernel(dtype):
    acc_t = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def k(x, out, aux, target, nrows, ncols, mode, zero):
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
                    aux[row] = _log(total) - (x[base + target[row]] - m)
    return k


@cuda.jit
def cross_entropy_backward_kernel(probs, target, g, inv_n, out, ncols, n):
    # d(mean loss)/d logits = (probs - onehot(target)) * grad_loss / N; g is a 1-element array
    scale = g[0] * inv_n
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        r = e // ncols
        c = e % ncols
        p = probs[e]
        if c == target[r]:
            p -= 1
        out[e] = p * scale


# ============================================================================================
# matmul: shared-memory tiles + a register micro-tile per thread, batched over blockIdx.z
# ============================================================================================
@functools.cache
def matmul_kernel(dtype, bm, bn, bk, tm, tn, exact=False):
    """C[b] = A[b] @ B[b] for flat (batch, M, K), (batch, K, N) -> (batch, M, N).

    Block (bn // tn, bm // tm) threads computes a bm x bn tile of C; each thread a tm x tn
    micro-tile held in registers (local arrays).
    NOTE: thread (tx, ty) owns rows ty + i*(bm//tm) and columns tx + j*(bn//tn) (interleaved,
    not contiguous), so neighbouring threads read neighbouring shared-memory words (no bank
    conflicts) and write neighbouring global addresses (coalesced stores).
    NOTE: the A tile is stored transposed (k-major) so the inner loop reads both tiles along
    their fast axis; its rows are padded so that the transposing stores (a warp writes bk
    consecutive k of 32 // bk rows) hit 32 different banks.
    ``exact``: M, N, K are multiples of the tile sizes, so the loads skip bounds checks.
    """
    dt = numba.from_dtype(np.dtype(dtype))
    ny = bm // tm
    nx = bn // tn
    bm_padded = bm + max(1, 32 // bk)  # NOTE: shapes of shared arrays are closure constants

    @cuda.jit
    def k(a, b, c, m, n, kdim, zero):
        a_s = cuda.shared.array((bk, bm_padded), dt)
        b_s = cuda.shared.array((bk, bn), dt)
        acc = cuda.local.array((tm, tn), dt)
        a_r = cuda.local.array(tm, dt)
        b_r = cuda.local.array(tn, dt)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * nx + tx
        row0 = cuda.blockIdx.y * bm
        col0 = cuda.blockIdx.x * bn
        bz = cuda.blockIdx.z
        a_off = bz * m * kdim
        b_off = bz * kdim * n
        c_off = bz * m * n
        for i in range(tm):
            for j in range(tn):
                acc[i, j] = zero
        for k0 in range(0, kdim, bk):
            for e in range(tid, bm * bk, nx * ny):
                r = e // bk
                q = e % bk
                gr = row0 + r
                gq = k0 + q
                if exact or (gr < m and gq < kdim):
                    a_s[q, r] = a[a_off + gr * kdim + gq]
                else:
                    a_s[q, r] = zero
            for e in range(tid, bk * bn, nx * ny):
                q = e // bn
                col = e % bn
                gq = k0 + q
                gc = col0 + col
                if exact or (gq < kdim and gc < n):
                    b_s[q, col] = b[b_off + gq * n + gc]
                else:
                    b_s[q, col] = zero
            cuda.syncthreads()
            for q in range(bk):
                for i in range(tm):
                    a_r[i] = a_s[q, ty + i * ny]
                for j in range(tn):
                    b_r[j] = b_s[q, tx + j * nx]
                for i in range(tm):
                    for j in range(tn):
                        acc[i, j] += a_r[i] * b_r[j]
            cuda.syncthreads()
        for i in range(tm):
            gr = row0 + ty + i * ny
            if gr < m:
                for j in range(tn):
                    gc = col0 + tx + j * nx
                    if gc < n:
                        c[c_off + gr * n + gc] = acc[i, j]
    return k


def matmul_config(m, n, k=8, batch=1):
    """(bm, bn, bk, tm, tn): 64x64x32 tiles with 4x4 micro-tiles; 32x32x16 with 2x2 when that
    leaves fewer than 32 blocks (small products: keep more SMs busy).
    NOTE: measured on an H100 (float32, n x n x n; `benchmarks/cuda.py --sweep`): 64x64x32 gave
    12.3 TFLOP/s at n = 4096 vs 7.6-9.9 for 64x64x8 and 128x128x8 with 8x8 micro-tiles.
    Under the simulator every tile element is Python work and every thread a Python thread, so
    tiles shrink to the problem (<= 32, at most 4x4 threads, no zero padding work); the kernel
    code is the same (tests also run the GPU configurations on small inputs)."""
    if SIMULATOR:
        bm, bn, bk = _pow2(m, 32), _pow2(n, 32), _pow2(k, 16)
        return bm, bn, bk, max(1, bm // 4), max(1, bn // 4)
    if _cdiv(m, 64) * _cdiv(n, 64) * batch >= 32:
        return 64, 64, 32, 4, 4
    return 32, 32, 16, 2, 2


def launch_matmul(a, b, c, batch, m, n, kdim, zero, config=None):
    if batch == 0 or m == 0 or n == 0:
        return
    bm, bn, bk, tm, tn = config or matmul_config(m, n, kdim, batch)
    exact = m % bm == 0 and n % bn == 0 and kdim % bk == 0
    kern = matmul_kernel(np.dtype(c.dtype).str, bm, bn, bk, tm, tn, exact)
    grid = (_cdiv(n, bn), _cdiv(m, bm), batch)
    _run(kern, grid, (bn // tn, bm // tm), (a, b, c, m, n, kdim, zero))


# ============================================================================================
# convolution helpers and pooling (NCHW, flat arrays)
# ============================================================================================
@cuda.jit
def im2col_kernel(x, out, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow, zero, n):
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
        y = oy * sh - ph + ki
        xx = ox * sw - pw + kj
        if 0 <= y < h and 0 <= xx < w:
            out[e] = x[((ni * c + ci) * h + y) * w + xx]
        else:
            out[e] = zero


@cuda.jit
def col2im_kernel(cols, out, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow, zero, n):
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
            yy = y + ph - ki
            if yy < 0 or yy % sh != 0 or yy // sh >= oh:
                continue
            oy = yy // sh
            for kj in range(kw):
                xq = xx + pw - kj
                if xq < 0 or xq % sw != 0 or xq // sw >= ow:
                    continue
                ox = xq // sw
                acc += cols[((ni * oh + oy) * ow + ox) * ck + (ci * kh + ki) * kw + kj]
        out[e] = acc


@cuda.jit
def max_pool_kernel(x, out, argmax, h, w, kh, kw, sh, sw, oh, ow, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        ox = e % ow
        oy = (e // ow) % oh
        plane = e // (ow * oh)
        base = plane * h * w
        y0 = oy * sh
        x0 = ox * sw
        best = x[base + y0 * w + x0]
        bidx = y0 * w + x0
        for i in range(kh):
            for j in range(kw):
                p = (y0 + i) * w + x0 + j
                v = x[base + p]
                # NOTE: first max in row-major window order wins; a NaN wins over numbers
                if v > best or (v != v and best == best):
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


@cuda.jit
def avg_pool_kernel(x, out, h, w, kh, kw, sh, sw, oh, ow, zero, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        ox = e % ow
        oy = (e // ow) % oh
        plane = e // (ow * oh)
        base = plane * h * w + oy * sh * w + ox * sw
        acc = zero
        for i in range(kh):
            for j in range(kw):
                acc += x[base + i * w + j]
        out[e] = acc / (kh * kw)


@cuda.jit
def avg_pool_backward_kernel(grad_out, gx, h, w, kh, kw, sh, sw, oh, ow, zero, n):
    # gather per input pixel over the windows covering it (deterministic, no atomics)
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        xx = e % w
        y = (e // w) % h
        plane = e // (w * h)
        acc = zero
        oy_lo = max(0, (y - kh + sh) // sh)
        oy_hi = min(oh - 1, y // sh)
        ox_lo = max(0, (xx - kw + sw) // sw)
        ox_hi = min(ow - 1, xx // sw)
        for oy in range(oy_lo, oy_hi + 1):
            for ox in range(ox_lo, ox_hi + 1):
                acc += grad_out[(plane * oh + oy) * ow + ox]
        gx[e] = acc / (kh * kw)


# ============================================================================================
# optimizer updates (PyTorch semantics; scalars come typed as the parameter's dtype)
# ============================================================================================
@cuda.jit
def sgd_kernel(param, grad, buf, lr, momentum, weight_decay, one_minus_damp, use_momentum,
               nesterov, first_step, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        d = grad[i] + weight_decay * param[i]
        if use_momentum:
            b = d if first_step else momentum * buf[i] + one_minus_damp * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        param[i] -= lr * d


@cuda.jit
def adam_kernel(param, grad, m, v, decay, weight_decay, one_minus_b1, beta2, one_minus_b2, eps,
                step_size, bc2_sqrt, n):
    # decay multiplies param first (AdamW: 1 - lr * wd, else 1); weight_decay is added to the
    # gradient (Adam: wd, AdamW: 0)
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        p = param[i] * decay
        g = grad[i] + weight_decay * p
        mi = m[i] + one_minus_b1 * (g - m[i])
        vi = beta2 * v[i] + one_minus_b2 * g * g
        m[i] = mi
        v[i] = vi
        param[i] = p - step_size * (mi / (math.sqrt(vi) / bc2_sqrt + eps))
