"""CPU elementwise kernels (fused chains) and scatter-add.

Each ``*_ref`` is the numpy reference; the Numba kernel (``*_nb``) beside it computes the same.
Numba kernels take C-contiguous float32/float64 arrays; the ``*_fast`` wrappers check that and
fall back to the reference otherwise (float16 included: Numba has no float16 arithmetic).
NOTE: kernels are compiled lazily (no eager signatures) with cache=True, and the wrappers pass
only flat C arrays, so each kernel has at most two specialisations (float32, float64).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .cpu_kernels_math import ferf, fexp, like


def jit(**options):
    """``njit`` with the project's options: cache=True, and error_model="numpy" (IEEE float
    division, no zero-division checks: numpy's semantics, and the checks otherwise keep LLVM
    from vectorising a loop: 7x on the Adam update)."""
    return njit(cache=True, error_model="numpy", **options)


# NOTE: contraction (fused multiply-add) and reassociation let LLVM vectorise the float32
# polynomials of cpu_kernels_math; no nnan/ninf, so inf and nan propagate as in numpy.
_FM = {"reassoc", "contract"}


_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_NB_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def numba_ok(*arrays):
    """True when every array is C-contiguous float32/float64 of one dtype (a Numba fast path)."""
    dt = arrays[0].dtype
    return dt in _NB_FLOATS and all(a.dtype == dt and a.flags.c_contiguous for a in arrays)


# NOTE: numpy has no erf ufunc (scipy is not a dependency): the reference maps math.erf.
_erf_obj = np.frompyfunc(math.erf, 1, 1)


def erf_ref(x):
    return _erf_obj(x).astype(x.dtype)


@jit(fastmath=_FM)
def erf_nb(x, out):
    for i in range(x.size):
        out[i] = ferf(x[i])


def gelu_ref(x):
    """Exact GELU, x * Phi(x) (PyTorch's default approximate='none')."""
    return x * (0.5 * (1.0 + erf_ref(x * _SQRT1_2)))


@jit(fastmath=_FM, inline="always")
def _gelu(v):
    return v * (like(v, 0.5) + like(v, 0.5) * ferf(v * like(v, _SQRT1_2)))


@jit(fastmath=_FM)
def gelu_nb(x, out):
    for i in range(x.size):
        out[i] = _gelu(x[i])


def gelu_grad_ref(x):
    """d gelu / dx = Phi(x) + x * phi(x)."""
    cdf = 0.5 * (1.0 + erf_ref(x * _SQRT1_2))
    return cdf + x * (_INV_SQRT_2PI * np.exp(-0.5 * x * x))


@jit(fastmath=_FM, inline="always")
def _gelu_grad(v):
    h = like(v, 0.5)
    return h + h * ferf(v * like(v, _SQRT1_2)) + v * like(v, _INV_SQRT_2PI) * fexp(-h * v * v)


@jit(fastmath=_FM)
def gelu_grad_nb(x, out):
    for i in range(x.size):
        out[i] = _gelu_grad(x[i])


# -- GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) -----------------
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


def gelu_tanh_ref(x):
    return 0.5 * x * (1.0 + np.tanh(_GELU_C * (x + _GELU_A * x * x * x)))


@jit(fastmath=_FM, inline="always")
def _gelu_tanh_parts(v):
    """(s, s (1 - s)) for s = sigmoid(2u) = (1 + tanh(u)) / 2, u = c (v + a v^3), from
    e = exp(-2|u|) <= 1: no overflow, and no cancellation in 1 + tanh(u) for u << 0."""
    one = like(v, 1.0)
    u = like(v, _GELU_C) * (v + like(v, _GELU_A) * v * v * v)
    e = fexp(like(v, -2.0) * abs(u))
    inv = one / (one + e)
    s = inv if u >= 0 else e * inv
    return s, e * inv * inv


@jit(fastmath=_FM, inline="always")
def _gelu_tanh(v):
    s, _ = _gelu_tanh_parts(v)
    return v * s


@jit(fastmath=_FM)
def gelu_tanh_nb(x, out):
    for i in range(x.size):
        out[i] = _gelu_tanh(x[i])


def gelu_tanh_grad_ref(x):
    """0.5 (1 + t) + 0.5 x (1 - t^2) u' for t = tanh(u), u = c (x + a x^3)."""
    t = np.tanh(_GELU_C * (x + _GELU_A * x * x * x))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * (_GELU_C * (1.0 + 3 * _GELU_A * x * x))


@jit(fastmath=_FM, inline="always")
def _gelu_tanh_grad(v):
    s, ds = _gelu_tanh_parts(v)  # d/dv (v s) = s + v s (1 - s) 2u'
    du = like(v, 2.0 * _GELU_C) * (like(v, 1.0) + like(v, 3.0 * _GELU_A) * v * v)
    return s + v * ds * du


@jit(fastmath=_FM)
def gelu_tanh_grad_nb(x, out):
    for i in range(x.size):
        out[i] = _gelu_tanh_grad(x[i])


def sigmoid_ref(x):
    # NOTE: 0.5 * (1 + tanh(x / 2)) is sigmoid without exp overflow for large |x|.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@jit()
def sigmoid_nb(x, out):
    for i in range(x.size):
        v = x[i]
        if v >= 0:
            out[i] = 1.0 / (1.0 + math.exp(-v))
        else:
            e = math.exp(v)  # NOTE: exp of a negative never overflows
            out[i] = e / (1.0 + e)


# -- fused backward of unary ops: grad * f'(x), one pass instead of two or three ---------------
def unary_backward_ref(op, x, y, grad):
    if op == "relu":
        return np.where(x > 0, grad, grad.dtype.type(0))
    if op == "tanh":
        return grad * (1 - y * y)
    if op == "sigmoid":
        return grad * (y * (1 - y))
    if op == "exp":
        return grad * y
    if op == "gelu":
        return grad * gelu_grad_ref(x)
    if op == "gelu_tanh":
        return grad * gelu_tanh_grad_ref(x)
    raise ValueError(f"unary_backward: unsupported op {op!r}")


@jit()
def relu_backward_nb(x, g, out):
    for i in range(x.size):
        out[i] = g[i] if x[i] > 0 else 0.0


@jit()
def tanh_backward_nb(y, g, out):
    for i in range(y.size):
        out[i] = g[i] * (1.0 - y[i] * y[i])


@jit()
def sigmoid_backward_nb(y, g, out):
    for i in range(y.size):
        out[i] = g[i] * (y[i] * (1.0 - y[i]))


@jit(fastmath=_FM)
def gelu_backward_nb(x, g, out):
    for i in range(x.size):
        out[i] = g[i] * _gelu_grad(x[i])


@jit(fastmath=_FM)
def gelu_tanh_backward_nb(x, g, out):
    for i in range(x.size):
        out[i] = g[i] * _gelu_tanh_grad(x[i])


UNARY_NB = {"erf": erf_nb, "gelu": gelu_nb, "gelu_grad": gelu_grad_nb, "sigmoid": sigmoid_nb,
            "gelu_tanh": gelu_tanh_nb, "gelu_tanh_grad": gelu_tanh_grad_nb}
UNARY_REF = {"erf": erf_ref, "gelu": gelu_ref, "gelu_grad": gelu_grad_ref, "sigmoid": sigmoid_ref,
             "gelu_tanh": gelu_tanh_ref, "gelu_tanh_grad": gelu_tanh_grad_ref}
# which input the fused backward kernel reads: x (the forward input) or y (its output)
BACKWARD_NB = {"relu": (relu_backward_nb, "x"), "tanh": (tanh_backward_nb, "y"),
               "sigmoid": (sigmoid_backward_nb, "y"), "gelu": (gelu_backward_nb, "x"),
               "gelu_tanh": (gelu_tanh_backward_nb, "x")}


def unary_nb(op, x):
    out = np.empty_like(x)
    UNARY_NB[op](x.reshape(-1), out.reshape(-1))
    return out


def unary_backward_nb(op, x, y, grad):
    kernel, which = BACKWARD_NB[op]
    a = x if which == "x" else y
    out = np.empty_like(grad)
    kernel(a.reshape(-1), grad.reshape(-1), out.reshape(-1))
    return out


# -- reductions over leading axes ------------------------------------------------------------
def sum_leading_ref(a):
    """Column sums of a 2-D array (a reduction over the leading axes of a compact array)."""
    return a.sum(axis=0)


@jit()
def sum_leading_nb(a, out):
    """NOTE: numpy's axis-0 sum walks a narrow (R, C) array C elements at a time (10x slower
    than this for conv bias gradients, C = 6); rows are added into float64 accumulators
    (vectorised along the row), so float32 sums are also more exact than numpy's."""
    acc = np.zeros(a.shape[1], np.float64)
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            acc[c] += a[r, c]
    for c in range(a.shape[1]):
        out[c] = acc[c]


def sum_fast(x, axes, keepdims):
    """sum over ``axes`` when they are the leading axes of x in memory order (x compact or a
    permuted dense view, e.g. axes (0, 2, 3) of an NCHW view of NHWC memory); None otherwise
    (the caller uses numpy)."""
    if x.dtype not in _NB_FLOATS or x.size == 0 or not axes or len(axes) >= x.ndim:
        return None
    if x.flags.c_contiguous:
        order = tuple(range(x.ndim))
    else:
        order = tuple(sorted(range(x.ndim), key=lambda i: -x.strides[i]))
        if not x.transpose(order).flags.c_contiguous:
            return None
    k = len(axes)
    if sorted(order[:k]) != sorted(axes):
        return None
    xt = x.transpose(order)
    kept = xt.shape[k:]
    out = np.empty(int(np.prod(kept)), x.dtype)
    sum_leading_nb(xt.reshape(-1, out.size), out)
    # the kept axes come in memory order: put them back in the input's order
    res = out.reshape(kept).transpose(np.argsort(order[k:]))
    if keepdims:
        res = res.reshape(tuple(1 if i in axes else n for i, n in enumerate(x.shape)))
    return np.ascontiguousarray(res)


# -- scatter-add ------------------------------------------------------------------------------
def index_add_ref(out, index, values):
    np.add.at(out, index, values)


@jit()
def index_add_rows_nb(out, index, values):
    """out[index[i], :] += values[i, :] for 2-D out/values and 1-D in-range int64 index."""
    for i in range(index.size):
        r = index[i]
        for j in range(out.shape[1]):
            out[r, j] += values[i, j]


BASIC_INDEX = (int, np.integer, slice, type(None), type(Ellipsis))


def index_add_fast(out, index, values):
    """Route out[index] += values (repeated indices add up) to the row kernel when ``index``
    is one integer array selecting along axis 0; basic indexing (a view, no repeats) to a
    plain in-place add; everything else to np.add.at."""
    if all(isinstance(i, BASIC_INDEX) for i in (index if isinstance(index, tuple) else (index,))):
        out[index] += values  # NOTE: np.add.at is ~10x slower and needless without repeats
        return
    if isinstance(index, tuple) and len(index) == 1:
        index = index[0]  # NOTE: the front end's normalised form of x[idx] (embedding rows)
    if (not isinstance(index, np.ndarray) or index.dtype.kind not in "iu" or out.ndim == 0
            or not numba_ok(out) or values.dtype != out.dtype
            or values.shape != index.shape + out.shape[1:]):
        return index_add_ref(out, index, values)
    rows = out.shape[0]
    idx = index.reshape(-1).astype(np.int64, copy=False)
    if idx.size == 0 or out.size == 0:
        return index_add_ref(out, index, values)  # NOTE: np.add.at raises if out of range
    lo, hi = int(idx.min()), int(idx.max())
    if lo < -rows or hi >= rows:
        raise IndexError(f"index_add: index out of range [{lo}, {hi}] for axis 0 of size "
                         f"{rows} (shape {out.shape})")
    if lo < 0:
        idx = np.where(idx < 0, idx + rows, idx)
    vals = np.ascontiguousarray(values).reshape(idx.size, -1)
    index_add_rows_nb(out.reshape(rows, -1), idx, vals)


# -- sorting ----------------------------------------------------------------------------------
def argsort_ref(x, axis, descending=False):
    """Stable argsort along ``axis``, int64. Descending sorts the reversed array ascending and
    reverses back, so equal elements still keep their order and NaN comes first."""
    if not descending:
        return np.argsort(x, axis=axis, kind="stable").astype(np.int64, copy=False)
    n = x.shape[axis]
    rev = np.flip(x, axis)
    idx = np.flip(np.argsort(rev, axis=axis, kind="stable"), axis)
    return np.ascontiguousarray(n - 1 - idx).astype(np.int64, copy=False)
