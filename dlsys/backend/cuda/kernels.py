"""Numba CUDA kernels of the CUDA device: elementwise, gathers/scatters, reductions (nn kernels:
``kernels_nn``; matmul: ``matmul``; optimizer updates: ``optim``; launches: ``launch``).

Every kernel works on FLAT, C-contiguous 1-D device arrays (the device reshapes compact arrays
with ``reshape(-1)``), with shapes passed as integers, so one compiled kernel serves every rank.
The numpy reference of each kernel is the CPU device (dlsys.backend.cpu*); the tests compare.

NOTE: nothing here uses warp shuffles or ``__cuda_array_interface__`` (the simulator has
neither): cross-thread reductions go through shared memory with ``syncthreads``.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda

from .launch import TPB

_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = math.sqrt(2.0 / math.pi)  # gelu_tanh: 0.5 x (1 + tanh(c (x + a x^3)))
_GELU_A = 0.044715


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
    # NOTE: literals, not v * 0 + 1, which is nan for v = +-inf (the store casts them to the
    # output's type); 0 * v keeps NaN a NaN, as np.sign
    if v > 0:
        return 1
    if v < 0:
        return -1
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


@cuda.jit(device=True)
def _gelu_tanh(v):
    return 0.5 * v * (1.0 + math.tanh(_GELU_C * (v + _GELU_A * v * v * v)))


@cuda.jit(device=True)
def _gelu_tanh_grad(v):
    t = math.tanh(_GELU_C * (v + _GELU_A * v * v * v))
    return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * (_GELU_C * (1.0 + 3 * _GELU_A * v * v))


@cuda.jit(device=True)
def _sin(v):
    return math.sin(v)


@cuda.jit(device=True)
def _cos(v):
    return math.cos(v)


@cuda.jit(device=True)
def _log1p(v):
    return math.log1p(v) if v > -1 else (-math.inf if v == -1 else math.nan)


@cuda.jit(device=True)
def _logical_not(v):
    return not v


@cuda.jit(device=True)
def _bitwise_not(v):
    return ~v  # NOTE: integers only; bool tensors take _logical_not


UNARY_FUNCS = {"neg": _neg, "exp": _exp, "log": _log, "sqrt": _sqrt, "abs": _abs,
               "sign": _sign, "relu": _relu, "tanh": _tanh, "sigmoid": _sigmoid, "erf": _erf,
               "gelu": _gelu, "gelu_grad": _gelu_grad, "gelu_tanh": _gelu_tanh,
               "gelu_tanh_grad": _gelu_tanh_grad, "sin": _sin, "cos": _cos,
               "log1p": _log1p, "logical_not": _logical_not, "bitwise_not": _bitwise_not}
# the ops whose result keeps an integer or bool input's dtype (the others give float64)
UNARY_KEEPS_DTYPE = ("neg", "abs", "sign", "relu", "logical_not", "bitwise_not")


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


@cuda.jit(device=True)
def _bitwise_and(a, b):
    return a & b


@cuda.jit(device=True)
def _bitwise_or(a, b):
    return a | b


@cuda.jit(device=True)
def _bitwise_xor(a, b):
    return a ^ b


@cuda.jit(device=True)
def _remainder(a, b):
    # NOTE: float % has Python's semantics in Numba (the sign of b, exact); x % 0 is nan
    return a % b if b != 0 else math.nan


@cuda.jit(device=True)
def _floor_divide(a, b):
    return a // b if b != 0 else _div(a, b)


@cuda.jit(device=True)
def _remainder_int(a, b):
    # NOTE: integers get their own function so the result keeps their type (a float nan
    # branch would unify it to float64); x % 0 is 0 as numpy's (the front end raises first)
    return a % b if b != 0 else a * 0


@cuda.jit(device=True)
def _floor_divide_int(a, b):
    return a // b if b != 0 else a * 0


BINARY_FUNCS = {"add": _add, "sub": _sub, "mul": _mul, "div": _div, "pow": _pow,
                "maximum": _maximum, "minimum": _minimum, "eq": _eq, "ne": _ne, "lt": _lt,
                "le": _le, "gt": _gt, "ge": _ge, "bitwise_and": _bitwise_and,
                "bitwise_or": _bitwise_or, "bitwise_xor": _bitwise_xor, "remainder": _remainder,
                "floor_divide": _floor_divide, "remainder_int": _remainder_int,
                "floor_divide_int": _floor_divide_int}
# the ops with an integer variant of their device function (see _remainder_int)
INT_VARIANTS = ("remainder", "floor_divide")


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


@cuda.jit(device=True)
def _gelu_tanh_bw(x, g):
    return g * _gelu_tanh_grad(x)


BACKWARD_FUNCS = {"relu": _relu_bw, "tanh": _tanh_bw, "sigmoid": _sigmoid_bw, "exp": _exp_bw,
                  "gelu": _gelu_bw, "gelu_tanh": _gelu_tanh_bw}
BACKWARD_INPUT = {"relu": "x", "tanh": "y", "sigmoid": "y", "exp": "y", "gelu": "x",
                  "gelu_tanh": "x"}


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
def scatter_strided_kernel(out, values, shape, strides, offset, n):
    # NOTE: basic slicing never selects an element twice: no write races.
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[_strided_offset(i, shape, strides, offset)] = values[i]


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
def put_kernel(out, index, values, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[index[i]] = values[i]


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
@cuda.jit(device=True)
def block_sum(sm, t, nt):
    """Tree-sum the block's shared sm[0:nt] into sm[0] (nt a power of two); every thread of the
    block calls it, after writing its own sm[t]."""
    cuda.syncthreads()
    s = nt // 2
    while s > 0:
        if t < s:
            sm[t] += sm[t + s]
        cuda.syncthreads()
        s //= 2


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
            block_sum(sm, t, nt)
            if t == 0:
                out[row] = sm[0]
            # NOTE: keep thread 0's read of sm[0] ahead of the next row's writes
            cuda.syncthreads()
    return k


@cuda.jit(device=True)
def _arg_better(v, i, bv, bi, is_min):
    """Is (v, i) a better extremum candidate than (bv, bi)? First NaN wins, then the first
    max (or min); index -1 marks an empty candidate."""
    if i < 0:
        return False
    if bi < 0:
        return True
    if v != v:
        return bv == bv or i < bi
    if bv != bv:
        return False
    if is_min:
        return v < bv or (v == bv and i < bi)
    return v > bv or (v == bv and i < bi)


@functools.cache
def row_argmax_kernel(dtype, is_min=False):
    """(values, indices) of the max (the min with ``is_min``) of each row."""
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
                if _arg_better(v, c, bv, bi, is_min):
                    bv = v
                    bi = c
            sv[t] = bv
            si[t] = bi
            cuda.syncthreads()
            s = nt // 2
            while s > 0:
                if t < s and _arg_better(sv[t + s], si[t + s], sv[t], si[t], is_min):
                    sv[t] = sv[t + s]
                    si[t] = si[t + s]
                cuda.syncthreads()
                s //= 2
            if t == 0:
                out_val[row] = sv[0]
                out_idx[row] = si[0]
            cuda.syncthreads()
    return k


# ============================================================================================
# scans and sorting along one axis of an (outer, n, inner) array
# ============================================================================================
@cuda.jit
def cumsum_kernel(x, out, n, inner, lines, zero):
    # NOTE: one thread per line (outer, inner) adds sequentially along the axis: the same
    # order as numpy's cumsum, so float results match the CPU's bit for bit.
    for line in range(cuda.grid(1), lines, cuda.gridsize(1)):
        base = (line // inner) * n * inner + line % inner
        acc = zero
        for j in range(n):
            acc += x[base + j * inner]
            out[base + j * inner] = acc


@cuda.jit(device=True)
def _sorts_before(a, ia, b, ib, descending):
    """Does (a at index ia) come before (b at ib) in a stable sort? NaN is the largest."""
    an = a != a
    bn = b != b
    if an or bn:
        if an and bn:
            return ia < ib
        return an if descending else bn
    if a == b:
        return ia < ib
    return (a > b) if descending else (a < b)


@cuda.jit
def argsort_rank_kernel(x, out, n, inner, total, descending):
    # NOTE: each element's position in the sorted line is the number of elements that sort
    # before it (a stable rank): n comparisons per element, no synchronisation. O(n^2) work
    # per line, for the lines of sort/topk (vocabularies, attention rows), not for huge ones.
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        j = (e // inner) % n
        base = e - j * inner
        v = x[e]
        rank = 0
        for k in range(n):
            if _sorts_before(x[base + k * inner], k, v, j, descending):
                rank += 1
        out[base + rank * inner] = j
