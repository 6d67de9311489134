"""2-D pooling (NCHW or unbatched CHW): max (padding, dilation, ceil_mode, indices), average
(padding, ceil_mode, count_include_pad, divisor_override) and adaptive average."""

from __future__ import annotations

import numpy as np

from ..autograd import apply, wrap
from ..backend.device import pool_out_size
from ..tensor import Tensor
from . import Op
from . import reduce as _rd
from . import shape as _sh
from .matmul import matmul

__all__ = ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"]


def _pair_arg(v, name, what):
    t = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(t) == 1:
        t = t * 2
    if len(t) != 2 or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool)
                              for i in t):
        raise TypeError(f"{what}: {name} must be an int or a pair of ints, got {v!r}")
    return int(t[0]), int(t[1])


def _pool_args(x, kernel_size, stride, padding, dilation, ceil_mode, what):
    """Checked (kernel, stride, padding, dilation) pairs and the output size, as PyTorch's
    pool2d_shape_check."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: expected a Tensor input, got {type(x).__name__}")
    if x._data.dtype.kind != "f":
        raise TypeError(f"{what}: needs a floating tensor, got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{what}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got "
                         f"shape {x.shape}")
    k = _pair_arg(kernel_size, "kernel_size", what)
    s = k if stride is None or (isinstance(stride, (tuple, list)) and not stride) \
        else _pair_arg(stride, "stride", what)
    p, d = _pair_arg(padding, "padding", what), _pair_arg(dilation, "dilation", what)
    if min(k) <= 0 or min(s) <= 0 or min(d) <= 0 or min(p) < 0:
        raise ValueError(f"{what}: kernel_size {k}, stride {s} and dilation {d} must be "
                         f"positive and padding {p} non-negative")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{what}: padding {p} should be at most half of the kernel size {k}")
    out = tuple(pool_out_size(n, kk, ss, pp, dd, ceil_mode)
                for n, kk, ss, pp, dd in zip(x.shape[2:], k, s, p, d, strict=True))
    if min(out) < 1:
        raise ValueError(f"{what}: kernel {k} (stride {s}, padding {p}, dilation {d}) does not "
                         f"fit input of shape {x.shape}: output size {out}")
    return k, s, p, d


def _unbatched(fn, x, *args, **kw):
    """Run a pooling function on a 3-D (C, H, W) input as PyTorch does (a batch of one)."""
    out = fn(_sh.unsqueeze(x, 0), *args, **kw)
    if isinstance(out, tuple):
        return tuple(_sh.squeeze(o, 0) for o in out)
    return _sh.squeeze(out, 0)


# -- max pooling -------------------------------------------------------------------------------
class MaxPool2d(Op):
    __slots__ = ("kernel", "stride", "padding", "dilation", "ceil_mode", "argmax", "x_shape")

    def __init__(self, kernel, stride, padding, dilation, ceil_mode):
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def compute(self, x):
        self.x_shape = x.shape
        out, self.argmax = self.device.max_pool2d(x, self.kernel, self.stride, self.padding,
                                                  self.dilation, self.ceil_mode)
        return out

    def gradient(self, g, node):
        return (apply(MaxPool2dBackward(self.argmax, self.x_shape), g),)


class MaxPool2dBackward(Op):
    __slots__ = ("argmax", "x_shape")

    def __init__(self, argmax, x_shape):
        self.argmax, self.x_shape = argmax, x_shape

    def compute(self, g):
        return self.device.max_pool2d_backward(g, self.argmax, self.x_shape)

    def gradient(self, gg, node):
        # the adjoint: gather gg at the argmax positions of each (n, c) plane
        n, c, h, w = self.x_shape
        oh, ow = self.argmax.shape[2:]
        d = self.device
        flat = d.reshape(self.argmax, (n * c, oh * ow))
        base = d.from_numpy((np.arange(n * c, dtype=np.int64) * (h * w))[:, None])
        idx = d.binary("add", flat, d.broadcast_to(base, flat.shape))
        got = _sh.getitem(_sh.reshape(gg, -1), wrap(idx, gg.device))
        return (_sh.reshape(got, n, c, oh, ow),)


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """torch.nn.functional.max_pool2d; with return_indices also the int64 flat index of each
    maximum into its (H*W) input plane."""
    if isinstance(x, Tensor) and x.ndim == 3:
        return _unbatched(max_pool2d, x, kernel_size, stride, padding, dilation, ceil_mode,
                          return_indices)
    k, s, p, d = _pool_args(x, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    op = MaxPool2d(k, s, p, d, bool(ceil_mode))
    out = apply(op, x)
    if return_indices:
        return out, wrap(x.device.compact(op.argmax), x.device)
    return out


# -- average pooling -----------------------------------------------------------------------------
class AvgPool2d(Op):
    __slots__ = ("kernel", "stride", "padding", "ceil_mode", "count_include_pad", "divisor",
                 "x_shape")

    def __init__(self, kernel, stride, padding, ceil_mode, count_include_pad, divisor,
                 x_shape=None):
        self.kernel, self.stride, self.padding, self.ceil_mode = kernel, stride, padding, \
            ceil_mode
        self.count_include_pad, self.divisor, self.x_shape = count_include_pad, divisor, x_shape

    def _opts(self):
        return (self.kernel, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                self.divisor)

    def compute(self, x):
        self.x_shape = x.shape
        return self.device.avg_pool2d(x, *self._opts())

    def gradient(self, g, node):
        return (apply(AvgPool2dBackward(*self._opts(), self.x_shape), g),)


class AvgPool2dBackward(AvgPool2d):
    __slots__ = ()

    def compute(self, g):
        k, s, p, c, cip, div = self._opts()
        return self.device.avg_pool2d_backward(g, self.x_shape, k, s, p, c, cip, div)

    def gradient(self, gg, node):
        return (apply(AvgPool2d(*self._opts()), gg),)  # its own adjoint


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """torch.nn.functional.avg_pool2d."""
    if isinstance(x, Tensor) and x.ndim == 3:
        return _unbatched(avg_pool2d, x, kernel_size, stride, padding, ceil_mode,
                          count_include_pad, divisor_override)
    k, s, p, _ = _pool_args(x, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    if divisor_override is not None and (not isinstance(divisor_override, int)
                                         or divisor_override == 0):
        raise ValueError(f"avg_pool2d: divisor_override must be a non-zero int, got "
                         f"{divisor_override!r}")
    return apply(AvgPool2d(k, s, p, bool(ceil_mode), bool(count_include_pad),
                           divisor_override), x)


# -- adaptive average pooling --------------------------------------------------------------------
def _bins(n_in, n_out):
    """(n_out, n_in) averaging matrix of PyTorch's adaptive bins
    [floor(i * n_in / n_out), ceil((i + 1) * n_in / n_out))."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        a, b = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        m[i, a:b] = 1.0 / (b - a)
    return m


def adaptive_avg_pool2d(x: Tensor, output_size) -> Tensor:
    """torch.nn.functional.adaptive_avg_pool2d; output_size an int, or a pair whose None
    entries keep the input's size.

    NOTE: composed, not a kernel: a global pool (output 1) is a mean, bins that tile the input
    are avg_pool2d, and other sizes are the separable product P_h @ x @ P_w^T with PyTorch's
    bins as averaging matrices (two GEMMs; their gradients come with matmul's)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"adaptive_avg_pool2d: expected a Tensor input, got {type(x).__name__}")
    if x.ndim == 3:
        return _unbatched(adaptive_avg_pool2d, x, output_size)
    if x.ndim != 4 or x._data.dtype.kind != "f":
        raise ValueError(f"adaptive_avg_pool2d: expected a floating 3-D or 4-D input, got "
                         f"shape {x.shape} dtype {x.dtype}")
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) \
        else (output_size, output_size)
    if len(sizes) != 2:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be an int or a pair, got "
                         f"{output_size!r}")
    h, w = x.shape[2:]
    oh, ow = (n if s is None else int(s) for s, n in zip(sizes, (h, w), strict=True))
    if oh <= 0 or ow <= 0 or min(x.shape[1:]) == 0:
        raise ValueError(f"adaptive_avg_pool2d: output_size {output_size!r} for input of "
                         f"shape {x.shape} (sizes must be positive, input non-empty)")
    if (oh, ow) == (1, 1):
        return _rd.mean(x, (2, 3), keepdims=True)
    if h % oh == 0 and w % ow == 0:
        k = (h // oh, w // ow)
        return avg_pool2d(x, k, k)
    dev, dt = x.device, x.dtype
    pht = wrap(dev.from_numpy(np.ascontiguousarray(_bins(h, oh).T).astype(dt)), dev)
    pwt = wrap(dev.from_numpy(np.ascontiguousarray(_bins(w, ow).T).astype(dt)), dev)
    cols = _sh.permute(matmul(x, pwt), 0, 1, 3, 2)  # (N, C, OW, H)
    return _sh.permute(matmul(cols, pht), 0, 1, 3, 2)
