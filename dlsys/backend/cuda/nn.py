"""The CUDA device's nn kernels: convolution helpers, pooling and the softmax family, as a
mixin of ``CUDADevice`` (device.py holds memory, elementwise, reductions and matmul; views.py
views and indexing). Launch-side code only; the kernels are in ``kernels`` / ``kernels_nn``."""

from __future__ import annotations

import numpy as np
from numba import cuda

from ..device import conv_out_size, float16_via_float32, pads4, pool_out_size
from ..device import pair as _pair
from . import kernels_nn as KN
from .launch import launch_1d, launch_rows
from .views import is_device_array, prod


class CUDANNKernels:
    """Mixin: needs the CUDADevice helpers (``flat``, ``empty``, ``astype``, ...)."""

    # -- convolution and pooling ---------------------------------------------------------------
    # NOTE: conv2d and its gradients are the base class's: im2col (below) and one batched GEMM
    # over the groups (the matmul kernel).
    @float16_via_float32(0)
    def im2col(self, x, kh, kw, stride, padding, dilation=1):
        (sh, sw), (pt, pb, pl, pr), (dh, dw) = _pair(stride), pads4(padding), _pair(dilation)
        n, c, h, w = x.shape
        oh = conv_out_size(h, kh, sh, pt, pb, dh)
        ow = conv_out_size(w, kw, sw, pl, pr, dw)
        out = self.empty((n * oh * ow, c * kh * kw), x.dtype)
        launch_1d(KN.im2col_kernel, out.size, self.flat(x), out.reshape(-1), c, h, w, kh, kw,
                  sh, sw, pt, pl, dh, dw, oh, ow, x.dtype.type(0), out.size)
        return out

    @float16_via_float32(0)
    def col2im(self, cols, x_shape, kh, kw, stride, padding, dilation=1):
        (sh, sw), (pt, pb, pl, pr), (dh, dw) = _pair(stride), pads4(padding), _pair(dilation)
        n, c, h, w = (int(d) for d in x_shape)
        oh = conv_out_size(h, kh, sh, pt, pb, dh)
        ow = conv_out_size(w, kw, sw, pl, pr, dw)
        out = self.empty((n, c, h, w), cols.dtype)
        launch_1d(KN.col2im_kernel, out.size, self.flat(cols), out.reshape(-1), c, h, w, kh,
                  kw, sh, sw, pt, pl, dh, dw, oh, ow, cols.dtype.type(0), out.size)
        return out

    @float16_via_float32(0, 1)
    def conv2d(self, x, w, stride, padding, dilation, groups):
        return super().conv2d(x, w, stride, padding, dilation, groups)

    @float16_via_float32(0, 1)
    def conv2d_backward_input(self, g, w, x_shape, stride, padding, dilation, groups):
        return super().conv2d_backward_input(g, w, x_shape, stride, padding, dilation, groups)

    @float16_via_float32(0, 1)
    def conv2d_backward_weight(self, x, g, w_shape, stride, padding, dilation, groups):
        return super().conv2d_backward_weight(x, g, w_shape, stride, padding, dilation, groups)

    @float16_via_float32(0)
    def max_pool2d(self, x, kernel, stride, padding=0, dilation=1, ceil_mode=False):
        kh, kw = _pair(kernel, "kernel")
        sh, sw = _pair(kernel if stride is None else stride, "stride")
        (ph, pw), (dh, dw) = _pair(padding), _pair(dilation)
        n, c, h, w = x.shape
        oh = pool_out_size(h, kh, sh, ph, dh, ceil_mode)
        ow = pool_out_size(w, kw, sw, pw, dw, ceil_mode)
        out = self.empty((n, c, oh, ow), x.dtype)
        arg = self.empty((n, c, oh, ow), np.int64)
        launch_1d(KN.max_pool_kernel, out.size, self.flat(x), out.reshape(-1),
                  arg.reshape(-1), h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, out.size)
        return out, arg

    @float16_via_float32(0)
    def max_pool2d_backward(self, grad_out, argmax, x_shape):
        n, c, h, w = (int(d) for d in x_shape)
        gx = self.full((n, c, h, w), 0, grad_out.dtype)
        ohw = prod(grad_out.shape[2:])
        launch_1d(KN.max_pool_backward_kernel, grad_out.size, self.flat(grad_out),
                  self.flat(argmax), gx.reshape(-1), h * w, ohw, grad_out.size)
        return gx

    def _avg_args(self, x_shape, kernel, stride, padding, count_include_pad, divisor_override):
        kh, kw = _pair(kernel, "kernel")
        sh, sw = _pair(kernel if stride is None else stride, "stride")
        ph, pw = _pair(padding)
        h, w = int(x_shape[2]), int(x_shape[3])
        return (h, w, kh, kw, sh, sw, ph, pw, int(bool(count_include_pad)),
                int(divisor_override or 0))

    @float16_via_float32(0)
    def avg_pool2d(self, x, kernel, stride, padding=0, ceil_mode=False, count_include_pad=True,
                   divisor_override=None):
        a = self._avg_args(x.shape, kernel, stride, padding, count_include_pad,
                           divisor_override)
        h, w, kh, kw, sh, sw, ph, pw = a[:8]
        oh = pool_out_size(h, kh, sh, ph, 1, ceil_mode)
        ow = pool_out_size(w, kw, sw, pw, 1, ceil_mode)
        out = self.empty((x.shape[0], x.shape[1], oh, ow), x.dtype)
        launch_1d(KN.avg_pool_kernel, out.size, self.flat(x), out.reshape(-1), *a, oh, ow,
                  x.dtype.type(0), out.size)
        return out

    @float16_via_float32(0)
    def avg_pool2d_backward(self, grad_out, x_shape, kernel, stride, padding=0, ceil_mode=False,
                            count_include_pad=True, divisor_override=None):
        a = self._avg_args(x_shape, kernel, stride, padding, count_include_pad,
                           divisor_override)
        oh, ow = grad_out.shape[2:]
        gx = self.empty(tuple(int(d) for d in x_shape), grad_out.dtype)
        launch_1d(KN.avg_pool_backward_kernel, gx.size, self.flat(grad_out), gx.reshape(-1),
                  *a, oh, ow, grad_out.dtype.type(0), gx.size)
        return gx

    @float16_via_float32(0)
    def log_sigmoid(self, x):
        out = self.empty(x.shape, x.dtype)
        launch_1d(KN.log_sigmoid_kernel, out.size, self.flat(x), out.reshape(-1), out.size)
        return out

    @float16_via_float32(0, 1, 2, 3, 6)
    def attention(self, q, k, v, mask, scale, causal, drop):
        return super().attention(q, k, v, mask, scale, causal, drop)

    @float16_via_float32(0, 1, 2, 3, 4, 5)
    def attention_backward(self, q, k, v, probs, drop, g, scale):
        return super().attention_backward(q, k, v, probs, drop, g, scale)

    # -- softmax family ------------------------------------------------------------------------
    def _softmax_rows(self, x, mode, target=None, ignore=-100):
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
                        aux, tgt, int(ignore), rows, cols, mode, x.dtype.type(0))
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

    def _kept_rows(self, tgt, ignore_index):
        """The number of targets that are not ignore_index, as a 1-element float64 array (on
        the device: no synchronisation)."""
        kept = self.astype(self.scalar("ne", tgt, int(ignore_index)), np.float64)
        return self.sum(kept, (0,)).reshape(1)

    @float16_via_float32(0)
    def cross_entropy(self, logits, target, ignore_index=-100):
        # NOTE: the front end checks shapes, dtypes and (for host targets) the class range
        n = logits.shape[0]
        tgt = self._device_int64(target, None).reshape(-1)
        probs, row_loss = self._softmax_rows(logits, KN.CROSS_ENTROPY, tgt, ignore_index)
        if n == 0:
            return self.full((), np.nan, logits.dtype), probs
        # NOTE: the mean accumulates in float64, like the CPU reference (0/0 = nan if no row
        # is kept)
        total = self.sum(self.astype(row_loss, np.float64), (0,)).reshape(1)
        loss = self.binary("div", total, self._kept_rows(tgt, ignore_index))
        return self.astype(loss, logits.dtype).reshape(()), probs

    @float16_via_float32(0)
    def cross_entropy_backward(self, probs, target, grad_loss, ignore_index=-100):
        n, c = probs.shape
        if is_device_array(grad_loss):
            g = self.flat(grad_loss if grad_loss.dtype == probs.dtype
                           else self.astype(grad_loss, probs.dtype))
        else:
            g = cuda.to_device(np.asarray([float(np.asarray(grad_loss))], dtype=probs.dtype))
        tgt = self._device_int64(target, None).reshape(-1)
        count = self.astype(self._kept_rows(tgt, ignore_index), probs.dtype)
        out = self.empty((n, c), probs.dtype)
        launch_1d(KN.cross_entropy_backward_kernel, out.size, self.flat(probs), tgt, g,
                  count, int(ignore_index), out.reshape(-1), c, out.size)
        return out
