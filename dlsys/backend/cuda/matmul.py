"""The CUDA matmul: shared-memory tiles and a register micro-tile per thread, batched over
blockIdx.z, on flat C-contiguous 1-D device arrays (conventions as in ``kernels``); the CPU
device (numpy's matmul) is the reference."""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda

from .launch import SIMULATOR, cdiv, pow2, run


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
        bm, bn, bk = pow2(m, 32), pow2(n, 32), pow2(k, 16)
        return bm, bn, bk, max(1, bm // 4), max(1, bn // 4)
    if cdiv(m, 64) * cdiv(n, 64) * batch >= 32:
        return 64, 64, 32, 4, 4
    return 32, 32, 16, 2, 2


def launch_matmul(a, b, c, batch, m, n, kdim, zero, config=None):
    if batch == 0 or m == 0 or n == 0:
        return
    bm, bn, bk, tm, tn = config or matmul_config(m, n, kdim, batch)
    exact = m % bm == 0 and n % bn == 0 and kdim % bk == 0
    kern = matmul_kernel(np.dtype(c.dtype).str, bm, bn, bk, tm, tn, exact)
    grid = (cdiv(n, bn), cdiv(m, bm), batch)
    run(kern, grid, (bn // tn, bm // tm), (a, b, c, m, n, kdim, zero))
