"""The CUDA device's nn kernels: convolution helpers, pooling and the softmax family, as a
mixin of ``CUDADevice`` (device.py holds memory, elementwise, reductions and matmul; views.py
views and indexing). Launch-side code only; the kernels are in ``kernels`` / ``kernels_nn``."""

from __future__ import annotations

import numpy as np
from numba import cuda

from ..device import float16_via_float32
from ..device import pair as _pair
from . import kernels_nn as KN
from .launch import launch_1d, launch_rows
from .views import is_device_array, prod


class CUDANNKernels:
    """Mixin: needs the CUDADevice helpers (``flat``, ``empty``, ``astype``, ...)."""

    # -- convolution and pooling ---------------------------------------------------------------
    @float16_via_float32(0)
    def im2col(self, x, kh, kw, stride, padding):
        sh, sw = _pair(stride, "stride")
        ph, pw = _pair(padding, "padding")
        n, c, h, w = x.shape
        oh = (h + 2 * ph - kh) // sh + 1
        ow = (w + 2 * pw - kw) // sw + 1
        out = self.empty((n * oh * ow, c * kh * kw), x.dtype)
        launch_1d(KN.im2col_kernel, out.size, self.flat(x), out.reshape(-1), c, h, w, kh, kw,
                  sh, sw, ph, pw, oh, ow, x.dtype.type(0), out.size)
        return out

    @float16_via_float32(0)
    def col2im(self, cols, x_shape, kh, kw, stride, padding):
        sh, sw = _pair(stride, "stride")
        ph, pw = _pair(padding, "padding")
        n, c, h, w = (int(d) for d in x_shape)
        oh = (h + 2 * ph - kh) // sh + 1
        ow = (w + 2 * pw - kw) // sw + 1
        out = self.empty((n, c, h, w), cols.dtype)
        launch_1d(KN.col2im_kernel, out.size, self.flat(cols), out.reshape(-1), c, h, w, kh,
                  kw, sh, sw, ph, pw, oh, ow, cols.dtype.type(0), out.size)
        return out

    @float16_via_float32(0)
    def max_pool2d(self, x, kernel, stride):
        kh, kw = _pair(kernel, "kernel")
        sh, sw = _pair(kernel if stride is None else stride, "stride")
        n, c, h, w = x.shape
        oh = (h - kh) // sh + 1
        ow = (w - kw) // sw + 1
        out = self.empty((n, c, oh, ow), x.dtype)
        arg = self.empty((n, c, oh, ow), np.int64)
        launch_1d(KN.max_pool_kernel, out.size, self.flat(x), out.reshape(-1),
                  arg.reshape(-1), h, w, kh, kw, sh, sw, oh, ow, out.size)
        return out, arg

    @float16_via_float32(0)
    def max_pool2d_backward(self, grad_out, argmax, x_shape):
        n, c, h, w = (int(d) for d in x_shape)
        gx = self.full((n, c, h, w), 0, grad_out.dtype)
        ohw = prod(grad_out.shape[2:])
        launch_1d(KN.max_pool_backward_kernel, grad_out.size, self.flat(grad_out),
                  self.flat(argmax), gx.reshape(-1), h * w, ohw, grad_out.size)
        return gx

    @float16_via_float32(0)
    def avg_pool2d(self, x, kernel, stride):
        kh, kw = _pair(kernel, "kernel")
        sh, sw = _pair(kernel if stride is None else stride, "stride")
        n, c, h, w = x.shape
        oh = (h - kh) // sh + 1
        ow = (w - kw) // sw + 1
        out = self.empty((n, c, oh, ow), x.dtype)
        launch_1d(KN.avg_pool_kernel, out.size, self.flat(x), out.reshape(-1), h, w, kh, kw,
                  sh, sw, oh, ow, x.dtype.type(0), out.size)
        return out

    @float16_via_float32(0)
    def avg_pool2d_backward(self, grad_out, x_shape, kernel, stride):
        kh, kw = _pair(kernel, "kernel")
        sh, sw = _pair(kernel if stride is None else stride, "stride")
        n, c, h, w = (int(d) for d in x_shape)
        oh, ow = grad_out.shape[2:]
        gx = self.empty((n, c, h, w), grad_out.dtype)
        launch_1d(KN.avg_pool_backward_kernel, gx.size, self.flat(grad_out), gx.reshape(-1),
                  h, w, kh, kw, sh, sw, oh, ow, grad_out.dtype.type(0), gx.size)
        return gx

    # -- softmax family ------------------------------------------------------------------------
    def _softmax_rows(self, x, mode, target=None):
        """Run the row kernel over the last axis; returns (out (x's shape), aux (rows,))."""
        cols = tuple(x.shape)[-1] if x.ndim else 1
        rows = x.size // cols if cols else 0
        x2 = self.flat(x)
        out = self.empty(x.shape, x.dtype)
        aux = self.empty((rows,), x.dtype)
        # NOTE: a never-read int64 stand-in: the GPU compiler types every branch, and indexing
        # with a float array (e.g. passing aux here) would not compile
        tgt = target if target is not None else self._no_target()
        if cols:
            launch_rows(KN.softmax_rows_kernel(x.dtype.str), rows, cols, x2, out.reshape(-1),
                        aux, tgt, rows, cols, mode, x.dtype.type(0))
        return out, aux

    @float16_via_float32(0)
    def softmax(self, x):
        return self._softmax_rows(x, KN.SOFTMAX)[0]

    @float16_via_float32(0)
    def log_softmax(self, x):
        return self._softmax_rows(x, KN.LOG_SOFTMAX)[0]

    @float16_via_float32(0)
    def logsumexp(self, x):
        """log(sum(exp(x))) over the last axis (stable); the result drops that axis."""
        return self._softmax_rows(x, KN.LOGSUMEXP)[1].reshape(tuple(x.shape[:-1]))

    @float16_via_float32(0)
    def cross_entropy(self, logits, target):
        # NOTE: the front end checks shapes, dtypes and (for host targets) the class range
        n = logits.shape[0]
        tgt = self._device_int64(target, None)
        probs, row_loss = self._softmax_rows(logits, KN.CROSS_ENTROPY, tgt.reshape(-1))
        if n == 0:
            return self.full((), np.nan, logits.dtype), probs
        # NOTE: the mean accumulates in float64, like the CPU reference
        total = self.sum(self.astype(row_loss, np.float64), (0,))
        loss = self.scalar("div", total, float(n))
        return self.astype(loss, logits.dtype).reshape(()), probs

    @float16_via_float32(0)
    def cross_entropy_backward(self, probs, target, grad_loss):
        n, c = probs.shape
        if is_device_array(grad_loss):
            g = self.flat(grad_loss if grad_loss.dtype == probs.dtype
                           else self.astype(grad_loss, probs.dtype))
        else:
            g = cuda.to_device(np.asarray([float(np.asarray(grad_loss))], dtype=probs.dtype))
        tgt = self._device_int64(target, None).reshape(-1)
        out = self.empty((n, c), probs.dtype)
        launch_1d(KN.cross_entropy_backward_kernel, out.size, self.flat(probs), tgt, g,
                  probs.dtype.type(1.0 / max(n, 1)), out.reshape(-1), c, out.size)
        return out
