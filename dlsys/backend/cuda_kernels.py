"""Numba CUDA kernels of the CUDA device (dlsys.backend.cuda); only the backend imports this.

Every kernel works on FLAT, C-contiguous 1-D device arrays (the device reshapes compact arrays
with ``reshape(-1)``), with shapes passed as integers, so one compiled kernel serves every rank.
The numpy reference of each kernel is the CPU device (dlsys.backend.cpu*); the tests compare.

NOTE: launch geometry lives in ``launch_1d`` / ``launch_rows``. Under the simulator
(NUMBA_ENABLE_CUDASIM=1) every simulated thread is a Python thread (~0.14 ms each), so we launch
few threads and let grid-stride loops cover the data; on a GPU we launch full blocks.
NOTE: nothing here uses warp shuffles or ``__cuda_array_interface__`` (the simulator has
neither): cross-thread reductions go through shared memory with ``syncthreads``.
"""

from __future__ import annotations

import functools
import math
import sys

import numba
import numpy as np
from numba import cuda

SIMULATOR = bool(getattr(getattr(cuda, "config", None), "ENABLE_CUDASIM", 0)
                 or getattr(numba.config, "ENABLE_CUDASIM", 0))

# NOTE: shared-memory arrays need a compile-time size: 256 slots, and blocks of row kernels are
# powers of two <= 256 so the tree reduction halves cleanly.
TPB = 256
_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _cdiv(a, b):
    return -(-a // b)


def _pow2(n, cap):
    p = 1
    while p < n and p < cap:
        p *= 2
    return p


def _run(kernel, grid, block, args):
    if not SIMULATOR:
        kernel[grid, block](*args)
        return
    # NOTE: the simulator's scheduler busy-polls its block threads while holding the GIL, so
    # every syncthreads costs up to one GIL switch interval (5 ms by default); a shorter
    # interval during simulated launches makes kernels with barriers ~2-3x faster. Restored
    # afterwards, so the rest of the process keeps its own setting.
    old = sys.getswitchinterval()
    sys.setswitchinterval(min(old, 1e-4))
    try:
        kernel[grid, block](*args)
    finally:
        sys.setswitchinterval(old)


def launch_1d(kernel, n, *args):
    """kernel[grid, block](*args) covering n items with a grid-stride loop (no launch for 0)."""
    if n <= 0:
        return
    if SIMULATOR:
        blocks, threads = 1, min(n, 8)
    else:
        threads = 256
        blocks = min(_cdiv(n, threads), 65535)
    _run(kernel, blocks, threads, args)


def launch_rows(kernel, nrows, ncols, *args):
    """One block per row (grid-stride over rows), a power-of-two block striding the columns."""
    if nrows <= 0:
        return
    if SIMULATOR:
        blocks, threads = min(nrows, 2), _pow2(ncols, 4)
    else:
        blocks, threads = min(nrows, 65535), max(32, _pow2(ncols, TPB))
    _run(kernel, blocks, threads, args)


# ============================================================================================
# elementwise: device functions per op, kernels built per op by cached factories
# ============================================================================================
@cuda.jit(device=True)
def _neg(v):
    return -v


@cuda.jit(device=True)
def _exp(v):
    return math.exp(v)


@cuda.jit(device=True)
def _log(v):
    return math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan)


@cuda.jit(device=True)
def _sqrt(v):
    return math.sqrt(v) if v >= 0 else math.nan


@cuda.jit(device=True)
def _abs(v):
    return abs(v)


@cuda.jit(device=True)
def _sign(v):
    # NOTE: v * 0 + 1 (not a literal) keeps v's type; NaN stays NaN as in np.sign
    if v > 0:
        return v * 0 + 1
    if v < 0:
        return v * 0 - 1
    return v * 0


@cuda.jit(device=True)
def _relu(v):
    # NOTE: v * 0 (not a literal 0) keeps the operand's type and propagates NaN like np.maximum.
    return v if v > 0 else v * 0


@cuda.jit(device=True)
def _tanh(v):
    return math.tanh(v)


@cuda.jit(device=True)
def _sigmoid(v):
    # NOTE: exp of a non-positive number never overflows.
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@cuda.jit(device=True)
def _erf(v):
    return math.erf(v)


@cuda.jit(device=True)
def _gelu(v):
    return v * (0.5 * (1.0 + math.erf(v * _SQRT1_2)))


@cuda.jit(device=True)
def _gelu_grad(v):
    return 0.5 * (1.0 + math.erf(v * _SQRT1_2)) + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v)


UNARY_FUNCS = {"neg": _neg, "exp": _exp, "log": _log, "sqrt": _sqrt, "abs": _abs,
               "sign": _sign, "relu": _relu, "tanh": _tanh, "sigmoid": _sigmoid, "erf": _erf,
               "gelu": _gelu, "gelu_grad": _gelu_grad}


@cuda.jit(device=True)
def _add(a, b):
    return a + b


@cuda.jit(device=True)
def _sub(a, b):
    return a - b


@cuda.jit(device=True)
def _mul(a, b):
    return a * b


@cuda.jit(device=True)
def _div(a, b):
    # NOTE: IEEE results for x/0 (numpy's), not Python's ZeroDivisionError.
    if b == 0:
        if a == 0 or a != a:
            return math.nan
        return math.inf if a > 0 else -math.inf
    return a / b


@cuda.jit(device=True)
def _pow(a, b):
    return a ** b


@cuda.jit(device=True)
def _maximum(a, b):
    return a if (a > b or a != a) else b


@cuda.jit(device=True)
def _minimum(a, b):
    return a if (a < b or a != a) else b


@cuda.jit(device=True)
def _eq(a, b):
    return a == b


@cuda.jit(device=True)
def _ne(a, b):
    return a != b


@cuda.jit(device=True)
def _lt(a, b):
    return a < b


@cuda.jit(device=True)
def _le(a, b):
    return a <= b


@cuda.jit(device=True)
def _gt(a, b):
    return a > b


@cuda.jit(device=True)
def _ge(a, b):
    return a >= b


BINARY_FUNCS = {"add": _add, "sub": _sub, "mul": _mul, "div": _div, "pow": _pow,
                "maximum": _maximum, "minimum": _minimum, "eq": _eq, "ne": _ne, "lt": _lt,
                "le": _le, "gt": _gt, "ge": _ge}


# fused backward of unary ops: f(a, g) = g * op'(x), a is x or y = op(x) (see BACKWARD_INPUT)
@cuda.jit(device=True)
def _relu_bw(x, g):
    return g if x > 0 else g * 0


@cuda.jit(device=True)
def _tanh_bw(y, g):
    return g * (1 - y * y)


@cuda.jit(device=True)
def _sigmoid_bw(y, g):
    return g * (y * (1 - y))


@cuda.jit(device=True)
def _exp_bw(y, g):
    return g * y


@cuda.jit(device=True)
def _gelu_bw(x, g):
    return g * _gelu_grad(x)


BACKWARD_FUNCS = {"relu": _relu_bw, "tanh": _tanh_bw, "sigmoid": _sigmoid_bw, "exp": _exp_bw,
                  "gelu": _gelu_bw}
BACKWARD_INPUT = {"relu": "x", "tanh": "y", "sigmoid": "y", "exp": "y", "gelu": "x"}


@functools.cache
def unary_kernel(op):
    f = UNARY_FUNCS[op]

    @cuda.jit
    def k(x, out, n):
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):
            out[i] = f(x[i])
    return k


@functools.cache
def binary_kernel(op, table="binary"):
    f = BINARY_FUNCS[op] if table == "binary" else BACKWARD_FUNCS[op]

    @cuda.jit
    def k(a, b, out, n):
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):
            out[i] = f(a[i], b[i])
    return k


@functools.cache
def scalar_kernel(op, reverse):
    f = BINARY_FUNCS[op]
    if reverse:
        @cuda.jit
        def k(a, s, out, n):
            for i in range(cuda.grid(1), n, cuda.gridsize(1)):
                out[i] = f(s, a[i])
    else:
        @cuda.jit
        def k(a, s, out, n):
            for i in range(cuda.grid(1), n, cuda.gridsize(1)):
                out[i] = f(a[i], s)
    return k


@cuda.jit
def fill_kernel(out, value, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = value


@cuda.jit
def cast_kernel(x, out, n):
    # NOTE: the store converts to out's dtype (float -> int truncates, as numpy's astype)
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = x[i]


@cuda.jit
def cast_bool_kernel(x, out, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = x[i] != 0


@cuda.jit
def where_kernel(cond, a, b, out, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = a[i] if cond[i] else b[i]


# ============================================================================================
# gathers and scatters (views, indexing, concatenation)
# ============================================================================================
@cuda.jit(device=True)
def _strided_offset(i, shape, strides, offset):
    # NOTE: unravel the C-order output index i and dot it with the source strides (in elements);
    # shape/strides are tuples, so one kernel handles every rank, broadcasting (stride 0),
    # permutations and basic slicing (negative steps give negative strides).
    src = offset
    rem = i
    for d in range(len(shape) - 1, -1, -1):
        src += (rem % shape[d]) * strides[d]
        rem //= shape[d]
    return src


@cuda.jit
def gather_strided_kernel(src, out, shape, strides, offset, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = src[_strided_offset(i, shape, strides, offset)]


@cuda.jit
def scatter_add_strided_kernel(out, values, shape, strides, offset, n):
    # NOTE: basic slicing never selects an element twice, so a plain += is race-free.
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        j = _strided_offset(i, shape, strides, offset)
        out[j] += values[i]


@cuda.jit
def take_kernel(src, index, out, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = src[index[i]]


@cuda.jit
def take_rows_kernel(src, index, out, rows, inner, n):
    # out[i, :] = src[index[i], :]; negative indices count from the end as in numpy
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        i = e // inner
        r = index[i]
        if r < 0:
            r += rows
        out[e] = src[r * inner + e % inner]


@cuda.jit
def index_add_flat_kernel(out, index, values, n):
    # NOTE: atomics because repeated indices must all add up (np.add.at semantics)
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        cuda.atomic.add(out, index[i], values[i])


@cuda.jit
def index_add_rows_kernel(out, index, values, rows, inner, n):
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        i = e // inner
        r = index[i]
        if r < 0:
            r += rows
        cuda.atomic.add(out, r * inner + e % inner, values[e])


@cuda.jit
def copy_block_kernel(src, out, src_cols, dst_cols, col_off, n):
    # out viewed as (outer, dst_cols); src as (outer, src_cols) lands at column col_off
    for e in range(cuda.grid(1), n, cuda.gridsize(1)):
        r = e // src_cols
        out[r * dst_cols + col_off + e % src_cols] = src[e]


# ============================================================================================
# reductions over the last axis of a (rows, cols) array: shared-memory tree reductions
# ============================================================================================
@functools.cache
def row_sum_kernel(acc_dtype):
    acc_t = numba.from_dtype(np.dtype(acc_dtype))

    @cuda.jit
    def k(x, out, nrows, ncols, zero):
        sm = cuda.shared.array(TPB, acc_t)
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        for row in range(cuda.blockIdx.x, nrows, cuda.gridDim.x):
            acc = zero
            base = row * ncols
            for c in range(t, ncols, nt):
                acc += x[base + c]
            sm[t] = acc
            cuda.syncthreads()
            s = nt // 2
            while s > 0:
                if t < s:
                    sm[t] += sm[t + s]
                cuda.syncthreads()
                s //= 2
            if t == 0:
                out[row] = sm[0]
            # NOTE: keep thread 0's read of sm[0] ahead of the next row's writes
            cuda.syncthreads()
    return k


@cuda.jit(device=True)
def _argmax_better(v, i, bv, bi):
    """Is (v, i) a better max candidate than (bv, bi)? First NaN wins, then first max;
    index -1 marks an empty candidate."""
    if i < 0:
        return False
    if bi < 0:
        return True
    if v != v:
        return bv == bv or i < bi
    if bv != bv:
        return False
    return v > bv or (v == bv and i < bi)


@functools.cache
def row_argmax_kernel(dtype):
    val_t = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def k(x, out_val, out_idx, nrows, ncols):
        sv = cuda.shared.array(TPB, val_t)
        si = cuda.shared.array(TPB, numba.int64)
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        for row in range(cuda.blockIdx.x, nrows, cuda.gridDim.x):
            base = row * ncols
            bv = x[base]
            bi = -1
            for c in range(t, ncols, nt):
                v = x[base + c]
                if _argmax_better(v, c, bv, bi):
                    bv = v
                    bi = c
            sv[t] = bv
            si[t] = bi
            cuda.syncthreads()
            s = nt // 2
            while s > 0:
                if t < s and _argmax_better(sv[t + s], si[t + s], sv[t], si[t]):
                    sv[t] = sv[t + s]
                    si[t] = si[t + s]
                cuda.syncthreads()
                s //= 2
            if t == 0:
                out_val[row] = sv[0]
                out_idx[row] = si[0]
            cuda.syncthreads()
    return k


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
            cuda.syncthreads()
            s = nt // 2
            while s > 0:
                if t < s:
                    sm[t] += sm[t + s]
                cuda.syncthreads()
                s //= 2
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
def matmul_kernel(dtype, bm, bn, bk, tm, tn):
    """C[b] = A[b] @ B[b] for flat (batch, M, K), (batch, K, N) -> (batch, M, N).

    Block (bn // tn, bm // tm) threads computes a bm x bn tile of C; each thread a tm x tn
    micro-tile held in registers (local arrays).
    NOTE: thread (tx, ty) owns rows ty + i*(bm//tm) and columns tx + j*(bn//tn) (interleaved,
    not contiguous), so neighbouring threads read neighbouring shared-memory words (no bank
    conflicts) and write neighbouring global addresses (coalesced stores).
    NOTE: the A tile is stored transposed (k-major) so the inner loop reads both tiles along
    their fast axis.
    """
    dt = numba.from_dtype(np.dtype(dtype))
    ny = bm // tm
    nx = bn // tn

    @cuda.jit
    def k(a, b, c, m, n, kdim, zero):
        a_s = cuda.shared.array((bk, bm), dt)
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
                a_s[q, r] = a[a_off + gr * kdim + gq] if (gr < m and gq < kdim) else zero
            for e in range(tid, bk * bn, nx * ny):
                q = e // bn
                col = e % bn
                gq = k0 + q
                gc = col0 + col
                b_s[q, col] = b[b_off + gq * n + gc] if (gq < kdim and gc < n) else zero
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


def matmul_config(m, n, k=8):
    """(bm, bn, bk, tm, tn): 64x64 tiles with 4x4 micro-tiles on a GPU, 128x128 with 8x8 for
    large products (more reuse per load).
    NOTE: under the simulator every tile element is Python work and every thread a Python
    thread, so tiles shrink to the problem (<= 32, at most 4x4 threads, no zero padding work);
    the kernel code is the same (tests also run the GPU configurations on small inputs)."""
    if SIMULATOR:
        bm, bn, bk = _pow2(m, 32), _pow2(n, 32), _pow2(k, 16)
        return bm, bn, bk, max(1, bm // 4), max(1, bn // 4)
    if m >= 1024 and n >= 1024:
        return 128, 128, 8, 8, 8
    return 64, 64, 8, 4, 4


def launch_matmul(a, b, c, batch, m, n, kdim, zero, config=None):
    if batch == 0 or m == 0 or n == 0:
        return
    bm, bn, bk, tm, tn = config or matmul_config(m, n, kdim)
    kern = matmul_kernel(np.dtype(c.dtype).str, bm, bn, bk, tm, tn)
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
