"""The CPU device: numpy (and its BLAS) where it is best, Numba kernels where numpy is slow.

Every method returns numpy.ndarray (never a numpy scalar: 0-d results are 0-d arrays).
Numba kernels (cpu_kernels*.py) run on compact float32/float64 arrays; other inputs take the
numpy reference beside each kernel. float16: Numba has no float16 arithmetic, so float16 takes
the numpy references, except erf/gelu/gelu_grad (no numpy ufunc), matmul (no float16 BLAS) and
the softmax family with cross-entropy (exp sums), which compute in float32 and round once
(``float16_via_float32``); float16 sums accumulate in float32. Inputs are validated by the
front end, not here.
"""

from __future__ import annotations

import numpy as np

from . import cpu_kernels as K
from . import cpu_kernels_attention as KA
from . import cpu_kernels_conv as KC
from . import cpu_kernels_nn as KN
from . import cpu_kernels_norm as KNo
from . import (
    cpu_kernels_optim,  # noqa: F401 - registers the CPU's optimizer updates
    cpu_memory_stats,
)
from . import cpu_kernels_pool as KP
from .device import (
    BINARY_OPS,
    COMPARE_OPS,
    NUMPY_BINARY,
    UNARY_OPS,
    Device,
    float16_via_float32,
    pads4,
)
from .device import pair as _pair

# NOTE: routing follows benchmarks/kernels.py (one thread, float32; see the table there): a
# Numba kernel is used only where it measured faster than its numpy reference. Softmax-family
# kernels win on short rows only: even with cpu_kernels_math's vectorised exp, the row max
# (no vectorised max reduction without nnan) keeps them behind numpy on rows of 100-1000.
_SOFTMAX_NUMBA_MAX_C = 32
# sigmoid/tanh: numpy's SIMD tanh is as fast
_NUMBA_UNARY = ("gelu", "erf", "gelu_grad", "gelu_tanh", "gelu_tanh_grad")


def _arr(r):
    return r if isinstance(r, np.ndarray) else np.asarray(r)


_UNARY = {
    "neg": np.negative,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "sign": np.sign,
    "relu": lambda x: np.maximum(x, x.dtype.type(0)),
    "tanh": np.tanh,
    "sigmoid": K.sigmoid_ref,
    "gelu": K.gelu_ref,
    "erf": K.erf_ref,
    "gelu_grad": K.gelu_grad_ref,
    "gelu_tanh": K.gelu_tanh_ref,
    "gelu_tanh_grad": K.gelu_tanh_grad_ref,
    "sin": np.sin,
    "cos": np.cos,
    "log1p": np.log1p,
    "logical_not": np.logical_not,
    "bitwise_not": np.invert,
}


def _dense_order(x):
    """Axes order in which x is C-contiguous (x may be a permuted view of a compact array, as
    conv2d's NCHW output over an NHWC buffer), or None when x has gaps or repeats."""
    if x.flags.c_contiguous:
        return None
    order = tuple(sorted(range(x.ndim), key=lambda i: -x.strides[i]))
    return order if x.transpose(order).flags.c_contiguous else None


def _via_numba(kernel, op, *arrays):
    """Run an elementwise Numba kernel (flat C arrays) on arrays of any layout: operands are
    put in the memory order of the first one (no copy for a permuted dense view; others are
    copied in that order; broadcast views, e.g. the gradient of a sum, are materialised); the
    result has the first operand's layout, as a numpy ufunc's would.
    NOTE: Numba has no float16 arithmetic, and erf has no numpy ufunc to fall back on:
    float16 goes through float32 and back."""
    if arrays[0].dtype == np.float16:
        return kernel(op, *(a.astype(np.float32) for a in arrays)).astype(np.float16)
    if all(a.flags.c_contiguous for a in arrays):
        return kernel(op, *arrays)
    order = _dense_order(arrays[0])
    if order is None:
        return kernel(op, *(np.ascontiguousarray(a) for a in arrays))
    out = kernel(op, *(np.ascontiguousarray(a.transpose(order)) for a in arrays))
    return out.transpose(np.argsort(order))


def _short_rows(x):
    return x.ndim >= 1 and x.shape[-1] <= _SOFTMAX_NUMBA_MAX_C


def _arg_extreme(arg, x, axis, keepdims):
    """(values, indices) of np.argmax / np.argmin along ``axis`` (all of x when None)."""
    if axis is None:
        idx = np.asarray(arg(x), dtype=np.int64)
        val = _arr(x.reshape(-1)[idx])
        if keepdims:
            shp = (1,) * x.ndim
            return val.reshape(shp), idx.reshape(shp)
        return val, idx
    if x.shape[axis] == 0:
        raise ValueError(f"max/min: zero-size axis {axis} in shape {x.shape}")
    idx = arg(x, axis=axis, keepdims=True)
    val = np.take_along_axis(x, idx, axis=axis)
    idx = idx.astype(np.int64, copy=False)
    if not keepdims:
        val, idx = val.squeeze(axis), idx.squeeze(axis)
    return _arr(val), _arr(idx)


class CPUDevice(Device):
    name = "cpu"

    # -- memory --------------------------------------------------------------------------------
    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def full(self, shape, value, dtype):
        return np.full(shape, value, dtype=dtype)

    def from_numpy(self, a):
        a = np.asarray(a)
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
        return a if a.flags.writeable else a.copy()  # NOTE: tensors may be written in place

    def to_numpy(self, x, out=None):
        if out is None:
            return x
        np.copyto(out, x, casting="unsafe")
        return out

    def copy_(self, dst, src):
        src = np.asarray(src)
        if src.shape != dst.shape:
            raise ValueError(f"copy_: shapes differ, dst {dst.shape} vs src {src.shape}")
        np.copyto(dst, src, casting="unsafe")
        return dst

    def copy_from(self, dst, src, src_device):
        src_device.to_numpy(src, out=dst)  # NOTE: straight into dst, no host array between
        return dst

    def add_(self, dst, src):
        np.add(dst, src, out=dst)
        return dst

    def binary_(self, op, dst, src):
        NUMPY_BINARY[op](dst, src, out=dst)
        return dst

    def scalar_(self, op, dst, s):
        NUMPY_BINARY[op](dst, s, out=dst, casting="unsafe")
        return dst

    def fill_(self, dst, value):
        dst.fill(value)
        return dst

    def setitem(self, dst, index, value):
        dst[index] = value

    def owns_storage(self, x):
        return x.base is None and x.flags.c_contiguous

    def astype(self, x, dtype):
        return x.astype(dtype)

    def compact(self, x):
        return x if x.flags.c_contiguous else np.ascontiguousarray(x)

    # -- memory accounting (cpu_memory_stats: tracemalloc, from the first call on) ------------
    def memory_stats(self) -> dict:
        """Bytes of host memory live now and at the peak since the last reset, counted from the
        first call of this or ``reset_peak_memory_stats`` (torch.cuda.memory_stats's keys)."""
        return cpu_memory_stats.stats()

    def reset_peak_memory_stats(self) -> None:
        cpu_memory_stats.reset_peak()

    def memory_allocated(self) -> int:
        return cpu_memory_stats.stats()["allocated_bytes.all.current"]

    def max_memory_allocated(self) -> int:
        return cpu_memory_stats.stats()["allocated_bytes.all.peak"]

    # -- views ---------------------------------------------------------------------------------
    def reshape(self, x, shape):
        return np.reshape(x, shape)

    def permute(self, x, axes):
        return np.transpose(x, axes)

    def broadcast_to(self, x, shape):
        return np.broadcast_to(x, shape)

    def getitem(self, x, index):
        t = index if isinstance(index, tuple) else (index,)
        if all(isinstance(i, K.BASIC_INDEX) for i in t) and not any(i is Ellipsis for i in t):
            # NOTE: x[1, 2] is a numpy scalar (a copy); x[1, 2, ...] is a 0-d view, so basic
            # indexing always gives a view (the front end writes gradients through it).
            index = t + (Ellipsis,)
        return _arr(x[index])

    def index_add(self, out, index, values):
        K.index_add_fast(out, index, values)
        return out

    def stack(self, arrays, axis):
        return np.stack(arrays, axis=axis)

    def concatenate(self, arrays, axis):
        return np.concatenate(arrays, axis=axis)

    # -- elementwise ---------------------------------------------------------------------------
    def unary(self, op, x):
        f = _UNARY.get(op)
        if f is None:
            raise ValueError(f"unknown unary op {op!r}; known: {UNARY_OPS}")
        if op in _NUMBA_UNARY and x.dtype.kind == "f":
            return _via_numba(K.unary_nb, op, x)
        return _arr(f(x))

    def unary_backward(self, op, x, y, grad):
        """grad * op'(x) for op in relu, tanh, sigmoid, gelu, gelu_tanh, exp (y = op(x), the output,
        is used where cheaper: tanh, sigmoid, exp). One fused pass (Numba) for float32/64."""
        if op in K.BACKWARD_NB and x.dtype.kind == "f" and x.dtype == y.dtype == grad.dtype:
            return _via_numba(K.unary_backward_nb, op, x, y, grad)
        return _arr(K.unary_backward_ref(op, x, y, grad))

    def binary(self, op, a, b):
        f = NUMPY_BINARY.get(op)
        if f is None:
            raise ValueError(f"unknown binary op {op!r}; known: {BINARY_OPS}")
        if a.shape != b.shape:
            raise ValueError(f"binary {op}: shapes differ, {a.shape} vs {b.shape}")
        return _arr(f(a, b))

    def scalar(self, op, a, s, reverse=False):
        f = NUMPY_BINARY.get(op)
        if f is None:
            raise ValueError(f"unknown scalar op {op!r}; known: {BINARY_OPS}")
        r = _arr(f(s, a) if reverse else f(a, s))
        if op not in COMPARE_OPS and r.dtype != a.dtype and a.dtype.kind == "f":
            r = r.astype(a.dtype)
        return r

    def where(self, cond, a, b):
        return _arr(np.where(cond, a, b))

    # -- reductions ----------------------------------------------------------------------------
    def sum(self, x, axes, keepdims=False):
        if x.dtype == np.float16:
            # NOTE: accumulate float16 in float32 (as PyTorch does), round once at the end.
            return _arr(np.sum(x, axis=axes, dtype=np.float32, keepdims=keepdims)
                        .astype(np.float16))
        if axes is not None:
            r = K.sum_fast(x, tuple(axes), keepdims)
            if r is not None:
                return r
        return _arr(np.sum(x, axis=axes, keepdims=keepdims))

    def max(self, x, axis, keepdims=False):
        return _arg_extreme(np.argmax, x, axis, keepdims)

    def min(self, x, axis, keepdims=False):
        return _arg_extreme(np.argmin, x, axis, keepdims)

    def cumsum(self, x, axis):
        if x.dtype == np.float16:  # NOTE: accumulate in float32, as sum
            return np.cumsum(x, axis=axis, dtype=np.float32).astype(np.float16)
        return _arr(np.cumsum(x, axis=axis))

    def argsort(self, x, axis, descending=False):
        return K.argsort_ref(x, axis, descending)

    # -- linear algebra ------------------------------------------------------------------------
    @float16_via_float32(0, 1)  # NOTE: numpy has no float16 BLAS (a slow loop)
    def matmul(self, a, b):
        return _arr(np.matmul(a, b))

    # -- convolution and pooling ---------------------------------------------------------------
    def im2col(self, x, kh, kw, stride, padding, dilation=1):
        return np.ascontiguousarray(KC.im2col_ref(x, kh, kw, _pair(stride, "stride"),
                                                  pads4(padding), _pair(dilation, "dilation")))

    def col2im(self, cols, x_shape, kh, kw, stride, padding, dilation=1):
        return KC.col2im_ref(cols, tuple(x_shape), kh, kw, _pair(stride, "stride"),
                             pads4(padding), _pair(dilation, "dilation"))

    @float16_via_float32(0, 1)  # NOTE: no float16 BLAS
    def conv2d(self, x, w, stride, padding, dilation, groups):
        return KC.conv2d_fast(x, w, _pair(stride), pads4(padding), _pair(dilation), groups)

    @float16_via_float32(0, 1)
    def conv2d_backward_input(self, g, w, x_shape, stride, padding, dilation, groups):
        return KC.conv2d_backward_input_fast(g, w, tuple(x_shape), _pair(stride),
                                             pads4(padding), _pair(dilation), groups)

    @float16_via_float32(0, 1)
    def conv2d_backward_weight(self, x, g, w_shape, stride, padding, dilation, groups):
        return KC.conv2d_backward_weight_fast(x, g, tuple(w_shape), _pair(stride),
                                              pads4(padding), _pair(dilation), groups)

    @float16_via_float32(0)
    def max_pool2d(self, x, kernel, stride, padding=0, dilation=1, ceil_mode=False):
        kh, kw = _pair(kernel, "kernel")
        sh, sw = _pair(kernel if stride is None else stride, "stride")
        return KP.max_pool2d_fast(x, kh, kw, sh, sw, *_pair(padding), *_pair(dilation),
                                  bool(ceil_mode))

    @float16_via_float32(0)
    def max_pool2d_backward(self, grad_out, argmax, x_shape):
        return KP.max_pool2d_backward_fast(grad_out, argmax, tuple(x_shape))

    @float16_via_float32(0)
    def avg_pool2d(self, x, kernel, stride, padding=0, ceil_mode=False, count_include_pad=True,
                   divisor_override=None):
        kh, kw = _pair(kernel, "kernel")
        sh, sw = _pair(kernel if stride is None else stride, "stride")
        return KP.avg_pool2d_fast(x, kh, kw, sh, sw, *_pair(padding), bool(ceil_mode),
                                  count_include_pad, divisor_override)

    @float16_via_float32(0)
    def avg_pool2d_backward(self, grad_out, x_shape, kernel, stride, padding=0, ceil_mode=False,
                            count_include_pad=True, divisor_override=None):
        kh, kw = _pair(kernel, "kernel")
        sh, sw = _pair(kernel if stride is None else stride, "stride")
        return KP.avg_pool2d_backward_fast(grad_out, tuple(x_shape), kh, kw, sh, sw,
                                           *_pair(padding), bool(ceil_mode), count_include_pad,
                                           divisor_override)

    # -- softmax family ------------------------------------------------------------------------
    @float16_via_float32(0)
    def softmax(self, x):
        return KN.softmax_fast(x) if _short_rows(x) else KN.softmax_ref(x)

    @float16_via_float32(0)
    def log_softmax(self, x):
        return KN.log_softmax_fast(x) if _short_rows(x) else KN.log_softmax_ref(x)

    @float16_via_float32(0)
    def logsumexp(self, x):
        """log(sum(exp(x))) over the last axis (stable); the result drops that axis."""
        return _arr(KN.logsumexp_ref(x))

    @float16_via_float32(0)
    def cross_entropy(self, logits, target, ignore_index=-100):
        if _short_rows(logits):
            return KN.cross_entropy_fast(logits, target, ignore_index)
        return KN.cross_entropy_ref(logits, target, ignore_index)

    @float16_via_float32(0)
    def cross_entropy_backward(self, probs, target, grad_loss, ignore_index=-100):
        return KN.cross_entropy_backward_fast(probs, target, grad_loss, ignore_index)

    @float16_via_float32(0, 1)
    def softmax_backward(self, y, g, log=False):
        return KNo.softmax_backward_fast(y, g, log)

    # -- normalisation -------------------------------------------------------------------------
    @float16_via_float32(0, 1, 2)
    def layer_norm(self, x, w, b, eps):
        return KNo.layer_norm_fast(x, w, b, eps)

    @float16_via_float32(0, 1, 2, 3, 4)
    def layer_norm_backward(self, g, x, w, mean, rstd):
        return KNo.layer_norm_backward_fast(g, x, w, mean, rstd)

    @float16_via_float32(0, 1)
    def rms_norm(self, x, w, eps):
        return KNo.rms_norm_fast(x, w, eps)

    @float16_via_float32(0, 1, 2, 3)
    def rms_norm_backward(self, g, x, w, rstd):
        return KNo.rms_norm_backward_fast(g, x, w, rstd)

    @float16_via_float32(0, 1, 2)
    def batch_norm(self, x, w, b, eps):
        return KNo.batch_norm_fast(x, w, b, eps)

    @float16_via_float32(0, 1, 2, 3, 4)
    def batch_norm_backward(self, g, x, w, mean, rstd):
        return KNo.batch_norm_backward_fast(g, x, w, mean, rstd)

    def log_sigmoid(self, x):
        # NOTE: -logaddexp(0, -x) = -log1p(exp(-x)) without overflow or cancellation
        return _arr(-np.logaddexp(x.dtype.type(0), -x))

    # -- attention -----------------------------------------------------------------------------
    @float16_via_float32(0, 1, 2, 3, 6)
    def attention(self, q, k, v, mask, scale, causal, drop):
        return KA.attention_fast(q, k, v, mask, scale, causal, drop)

    @float16_via_float32(0, 1, 2, 3, 4, 5)
    def attention_backward(self, q, k, v, probs, drop, g, scale):
        return KA.attention_backward_fast(q, k, v, probs, drop, g, scale)

