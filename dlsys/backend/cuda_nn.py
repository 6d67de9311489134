"""The CUDA device's nn and optimizer kernels: convolution helpers, pooling, the softmax
family and optimizer updates, as a mixin of ``CUDADevice`` (cuda.py holds memory, views,
elementwise, reductions and matmul). Launch-side code only; the kernels are in
``cuda_kernels`` / ``cuda_kernels_nn``."""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import cuda_kernels as K
from . import cuda_kernels_nn as KN
from .device import pair as _pair

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)


def is_device_array(x) -> bool:
    """True for numba device arrays (and the simulator's fake ones); numpy is not."""
    return hasattr(x, "copy_to_host") and not isinstance(x, np.ndarray)


def _prod(shape):
    p = 1
    for d in shape:
        p *= int(d)
    return p


class CUDANNKernels:
    """Mixin: needs the CUDADevice helpers (``_flat``, ``_up``, ``empty``, ``astype``, ...)."""

    # -- convolution and pooling ---------------------------------------------------------------
    def im2col(self, x, kh, kw, stride, padding):
        sh, sw = _pair(stride, "stride")
        ph, pw = _pair(padding, "padding")
        if x.dtype == _F16:
            return self.astype(self.im2col(self.astype(x, _F32), kh, kw, stride, padding), _F16)
        n, c, h, w = x.shape
        oh = (h + 2 * ph - kh) // sh + 1
        ow = (w + 2 * pw - kw) // sw + 1
        out = self.empty((n * oh * ow, c * kh * kw), x.dtype)
        K.launch_1d(KN.im2col_kernel, out.size, self._flat(x), out.reshape(-1), c, h, w, kh, kw,
                    sh, sw, ph, pw, oh, ow, x.dtype.type(0), out.size)
        return out

    def col2im(self, cols, x_shape, kh, kw, stride, padding):
        sh, sw = _pair(stride, "stride")
        ph, pw = _pair(padding, "padding")
        if cols.dtype == _F16:
            r = self.col2im(self.astype(cols, _F32), x_shape, kh, kw, stride, padding)
            return self.astype(r, _F16)
        n, c, h, w = (int(d) for d in x_shape)
        oh = (h + 2 * ph - kh) // sh + 1
        ow = (w + 2 * pw - kw) // sw + 1
        out = self.empty((n, c, h, w), cols.dtype)
        K.launch_1d(KN.col2im_kernel, out.size, self._flat(cols), out.reshape(-1), c, h, w, kh,
                    kw, sh, sw, ph, pw, oh, ow, cols.dtype.type(0), out.size)
        return out

    def max_pool2d(self, x, kernel, stride):
        kh, kw = _pair(kernel, "kernel")
        sh, sw = _pair(kernel if stride is None else stride, "stride")
        if x.dtype == _F16:
            v, i = self.max_pool2d(self.astype(x, _F32), kernel, stride)
            return self.astype(v, _F16), i
        n, c, h, w = x.shape
        oh = (h - kh) // sh + 1
        ow = (w - kw) // sw + 1
        out = self.empty((n, c, oh, ow), x.dtype)
        arg = self.empty((n, c, oh, ow), np.int64)
        K.launch_1d(KN.max_pool_kernel, out.size, self._flat(x), out.reshape(-1),
                    arg.reshape(-1), h, w, kh, kw, sh, sw, oh, ow, out.size)
        return out, arg

    def max_pool2d_backward(self, grad_out, argmax, x_shape):
        if grad_out.dtype == _F16:
            r = self.max_pool2d_backward(self.astype(grad_out, _F32), argmax, x_shape)
            return self.astype(r, _F16)
        n, c, h, w = (int(d) for d in x_shape)
        gx = self.full((n, c, h, w), 0, grad_out.dtype)
        ohw = _prod(grad_out.shape[2:])
        K.launch_1d(KN.max_pool_backward_kernel, grad_out.size, self._flat(grad_out),
                    self._flat(argmax), gx.reshape(-1), h * w, ohw, grad_out.size)
        return gx

    def avg_pool2d(self, x, kernel, stride):
        kh, kw = _pair(kernel, "kernel")
        sh, sw = _pair(kernel if stride is None else stride, "stride")
        if x.dtype == _F16:
            return self.astype(self.avg_pool2d(self.astype(x, _F32), kernel, stride), _F16)
        n, c, h, w = x.shape
        oh = (h - kh) // sh + 1
        ow = (w - kw) // sw + 1
        out = self.empty((n, c, oh, ow), x.dtype)
        K.launch_1d(KN.avg_pool_kernel, out.size, self._flat(x), out.reshape(-1), h, w, kh, kw,
                    sh, sw, oh, ow, x.dtype.type(0), out.size)
        return out

    def avg_pool2d_backward(self, grad_out, x_shape, kernel, stride):
        kh, kw = _pair(kernel, "kernel")
        sh, sw = _pair(kernel if stride is None else stride, "stride")
        if grad_out.dtype == _F16:
            r = self.avg_pool2d_backward(self.astype(grad_out, _F32), x_shape, kernel, stride)
            return self.astype(r, _F16)
        n, c, h, w = (int(d) for d in x_shape)
        oh, ow = grad_out.shape[2:]
        gx = self.empty((n, c, h, w), grad_out.dtype)
        K.launch_1d(KN.avg_pool_backward_kernel, gx.size, self._flat(grad_out), gx.reshape(-1),
                    h, w, kh, kw, sh, sw, oh, ow, grad_out.dtype.type(0), gx.size)
        return gx

    # -- softmax family ------------------------------------------------------------------------
    def _softmax_rows(self, x, mode, target=None):
        """Run the row kernel over the last axis; returns (out (x's shape), aux (rows,))."""
        if x.dtype.kind != "f":
            raise TypeError(f"softmax family needs a floating-point array, got {x.dtype}")
        cols = tuple(x.shape)[-1] if x.ndim else 1
        rows = x.size // cols if cols else 0
        x2 = self._flat(x)
        out = self.empty(x.shape, x.dtype)
        aux = self.empty((rows,), x.dtype)
        # NOTE: a never-read int64 stand-in: the GPU compiler types every branch, and indexing
        # with a float array (e.g. passing aux here) would not compile
        tgt = target if target is not None else self._no_target()
        if cols:
            K.launch_rows(KN.softmax_rows_kernel(x.dtype.str), rows, cols, x2, out.reshape(-1),
                          aux, tgt, rows, cols, mode, x.dtype.type(0))
        return out, aux

    def softmax(self, x):
        if x.dtype == _F16:
            return self.astype(self.softmax(self.astype(x, _F32)), _F16)
        return self._softmax_rows(x, KN.SOFTMAX)[0]

    def log_softmax(self, x):
        if x.dtype == _F16:
            return self.astype(self.log_softmax(self.astype(x, _F32)), _F16)
        return self._softmax_rows(x, KN.LOG_SOFTMAX)[0]

    def logsumexp(self, x):
        """log(sum(exp(x))) over the last axis (stable); the result drops that axis."""
        if x.dtype == _F16:
            return self.astype(self.logsumexp(self.astype(x, _F32)), _F16)
        return self._softmax_rows(x, KN.LOGSUMEXP)[1].reshape(tuple(x.shape[:-1]))

    def cross_entropy(self, logits, target):
        if logits.ndim != 2 or target.ndim != 1 or target.shape[0] != logits.shape[0]:
            raise ValueError(f"cross_entropy: logits must be (N, C) and target (N,), got "
                             f"{logits.shape} and {target.shape}")
        if np.dtype(target.dtype).kind not in "iu":
            raise TypeError(f"cross_entropy: target must be an integer array, got "
                            f"{target.dtype}")
        if logits.dtype == _F16:
            loss, probs = self.cross_entropy(self.astype(logits, _F32), target)
            return self.astype(loss, _F16), self.astype(probs, _F16)
        # NOTE: targets are not range-checked here: that would cost a device->host sync per
        # step; a host (numpy) target is checked.
        n = logits.shape[0]
        tgt = self._device_int64(target, None)
        if not is_device_array(target):
            t = np.asarray(target)
            if t.size and (t.min() < 0 or t.max() >= logits.shape[1]):
                raise ValueError(f"cross_entropy: target values must lie in "
                                 f"[0, {logits.shape[1]}), got min {t.min()} max {t.max()}")
        probs, row_loss = self._softmax_rows(logits, KN.CROSS_ENTROPY, tgt.reshape(-1))
        if n == 0:
            return self.full((), np.nan, logits.dtype), probs
        # NOTE: the mean accumulates in float64, like the CPU reference
        total = self.sum(self.astype(row_loss, np.float64), (0,))
        loss = self.scalar("div", total, float(n))
        return self.astype(loss, logits.dtype).reshape(()), probs

    def cross_entropy_backward(self, probs, target, grad_loss):
        if probs.dtype == _F16:
            r = self.cross_entropy_backward(self.astype(probs, _F32), target, grad_loss)
            return self.astype(r, _F16)
        n, c = probs.shape
        if is_device_array(grad_loss):
            g = self._flat(grad_loss if grad_loss.dtype == probs.dtype
                           else self.astype(grad_loss, probs.dtype))
        else:
            g = cuda.to_device(np.asarray([float(np.asarray(grad_loss))], dtype=probs.dtype))
        tgt = self._device_int64(target, None).reshape(-1)
        out = self.empty((n, c), probs.dtype)
        K.launch_1d(KN.cross_entropy_backward_kernel, out.size, self._flat(probs), tgt, g,
                    probs.dtype.type(1.0 / max(n, 1)), out.reshape(-1), c, out.size)
        return out

    # -- optimizer updates ---------------------------------------------------------------------
    def sgd_step(self, param, grad, momentum_buf, lr, momentum, weight_decay, nesterov,
                 dampening, first_step):
        if momentum != 0 and momentum_buf is None:
            raise ValueError("sgd_step: momentum != 0 needs a momentum_buf")
        if param.dtype == _F16:
            return self._f16_update(self.sgd_step, param, grad, [momentum_buf], lr, momentum,
                                    weight_decay, nesterov, dampening, first_step)
        p = self._inplace_flat(param, "sgd_step")
        g = self._flat(grad if grad.dtype == param.dtype else self.astype(grad, param.dtype))
        b = p if momentum_buf is None else self._inplace_flat(momentum_buf, "sgd_step")
        t = param.dtype.type
        K.launch_1d(KN.sgd_kernel, p.size, p, g, b, t(lr), t(momentum), t(weight_decay),
                    t(1 - dampening), momentum != 0, bool(nesterov), bool(first_step), p.size)

    def adam_step(self, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                  step, decoupled):
        if param.dtype == _F16:
            return self._f16_update(self.adam_step, param, grad, [exp_avg, exp_avg_sq], lr,
                                    beta1, beta2, eps, weight_decay, step, decoupled)
        p = self._inplace_flat(param, "adam_step")
        g = self._flat(grad if grad.dtype == param.dtype else self.astype(grad, param.dtype))
        m = self._inplace_flat(exp_avg, "adam_step")
        v = self._inplace_flat(exp_avg_sq, "adam_step")
        t = param.dtype.type
        decay, wd = (1 - lr * weight_decay, 0.0) if decoupled else (1.0, weight_decay)
        K.launch_1d(KN.adam_kernel, p.size, p, g, m, v, t(decay), t(wd), t(1 - beta1), t(beta2),
                    t(1 - beta2), t(eps), t(lr / (1 - beta1 ** step)),
                    t(math.sqrt(1 - beta2 ** step)), p.size)

    def _f16_update(self, fn, param, grad, states, *args):
        """Run an optimizer update on float32 copies of a float16 param and its states."""
        p32 = self.astype(param, _F32)
        s32 = [None if s is None else self.astype(s, _F32) for s in states]
        fn(p32, self.astype(grad, _F32), *s32, *args)
        self.copy_(param, p32)
        for s, s2 in zip(states, s32, strict=True):
            if s is not None:
                self.copy_(s, s2)
