"""Neural-network ops: conv2d (im2col + one GEMM), pooling, the softmax family, fused
cross-entropy, mse, dropout, layer_norm, embedding."""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import backend as _backend
from .. import random as _random
from ..autograd import apply, wrap
from ..backend.device import pair as _pair
from ..tensor import Tensor
from . import Op, alias, check_same, normalize_dims, wrap_dim
from . import reduce as _rd
from . import shape as _sh
from .matmul import MatMul, check_bias

__all__ = ["conv2d", "max_pool2d", "avg_pool2d", "softmax", "log_softmax", "logsumexp",
           "cross_entropy", "mse_loss", "dropout", "layer_norm", "embedding"]


def _float(x, what):
    if x._data.dtype.kind != "f":
        raise TypeError(f"{what}: needs a floating tensor, got dtype {x._data.dtype}")


# -- convolution -------------------------------------------------------------------------------
class Im2col(Op):
    """(N, C, H, W) -> (N*OH*OW, C*kh*kw); its adjoint Col2im is its gradient (and back)."""

    __slots__ = ("kh", "kw", "stride", "padding", "x_shape")

    def __init__(self, kh, kw, stride, padding, x_shape):
        self.kh, self.kw, self.stride, self.padding = kh, kw, stride, padding
        self.x_shape = x_shape

    def compute(self, x):
        return self.device.im2col(x, self.kh, self.kw, self.stride, self.padding)

    def gradient(self, g, node):
        return (apply(Col2im(self.kh, self.kw, self.stride, self.padding, self.x_shape), g),)


class Col2im(Im2col):
    __slots__ = ()

    def compute(self, cols):
        return self.device.col2im(cols, self.x_shape, self.kh, self.kw, self.stride,
                                  self.padding)

    def gradient(self, g, node):
        return (apply(Im2col(self.kh, self.kw, self.stride, self.padding, self.x_shape), g),)


def conv2d(x: Tensor, w: Tensor, b: Tensor | None = None, stride=1, padding=0) -> Tensor:
    """NCHW convolution (cross-correlation, as PyTorch) with weights (out, in, kh, kw)."""
    check_same(x, w, "conv2d")
    if x.ndim != 4 or w.ndim != 4 or x.shape[1] != w.shape[1]:
        raise ValueError(f"conv2d: input of shape {x.shape} (N, C, H, W) does not match weight "
                         f"of shape {w.shape} (out, C, kh, kw)")
    check_bias(x, w, b, "conv2d")
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    if oh <= 0 or ow <= 0 or sh <= 0 or sw <= 0 or ph < 0 or pw < 0:
        raise ValueError(f"conv2d: input of shape {x.shape} is too small for weight of shape "
                         f"{w.shape} with stride {stride} and padding {padding}")
    cols = apply(Im2col(kh, kw, (sh, sw), (ph, pw), x.shape), x)
    w2 = _sh.reshape(w, o, c * kh * kw)
    out = apply(ConvGemm(n), cols, w2) if b is None else apply(ConvGemm(n), cols, w2, b)
    return _sh.reshape(out, n, o, oh, ow)


class ConvGemm(Op):
    """(N*L, Ck) columns and (O, Ck) weights -> (N, O, L) = w @ cols[n].T per sample (+ b).

    NOTE: one GEMM per sample writes NCHW directly; a single (N*L, Ck) @ (Ck, O) GEMM is a bit
    faster alone but leaves (N, OH, OW, O), which every later op then has to copy to NCHW."""

    __slots__ = ("n",)

    def __init__(self, n):
        self.n = n

    def compute(self, cols, w, b=None):
        d = self.device
        ck = cols.shape[1]
        c3 = d.permute(d.reshape(cols, (self.n, -1, ck)), (0, 2, 1))  # (N, Ck, L) view
        out = d.matmul(d.broadcast_to(w, (self.n,) + w.shape), c3)
        if b is not None:  # NOTE: into the fresh GEMM output, no second array
            out = d.binary_("add", out, d.broadcast_to(d.reshape(b, (1, -1, 1)), out.shape))
        return out

    def gradient(self, g, node):
        cols, w = node._inputs[0], node._inputs[1]
        n, (o, ck) = self.n, w.shape
        dcols = dw = db = None
        if cols._requires_grad:  # (N, L, O) @ (O, Ck) per sample
            dcols = _sh.reshape(apply(MatMul(), _sh.permute(g, 0, 2, 1),
                                      _sh.broadcast_to(w, (n, o, ck))), -1, ck)
        if w._requires_grad:  # (O, N*L) @ (N*L, Ck): one GEMM over the whole batch
            dw = apply(MatMul(), _sh.reshape(_sh.permute(g, 1, 0, 2), o, -1), cols)
        if len(node._inputs) == 3 and node._inputs[2]._requires_grad:
            db = _rd.sum(g, (0, 2))
        return (dcols, dw) if len(node._inputs) == 2 else (dcols, dw, db)


# -- pooling -----------------------------------------------------------------------------------
def _pool_args(x, kernel_size, stride, what):
    if x.ndim != 4:
        raise ValueError(f"{what}: expected a 4-D (N, C, H, W) input, got shape {x.shape}")
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    if k[0] > x.shape[2] or k[1] > x.shape[3] or min(k) <= 0 or min(s) <= 0:
        raise ValueError(f"{what}: kernel {k} with stride {s} does not fit input of shape "
                         f"{x.shape}")
    return k, s


class MaxPool2d(Op):
    __slots__ = ("kernel", "stride", "argmax", "x_shape")

    def __init__(self, kernel, stride):
        self.kernel, self.stride = kernel, stride

    def compute(self, x):
        self.x_shape = x.shape
        out, self.argmax = self.device.max_pool2d(x, self.kernel, self.stride)
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


def max_pool2d(x: Tensor, kernel_size, stride=None) -> Tensor:
    _float(x, "max_pool2d")
    k, s = _pool_args(x, kernel_size, stride, "max_pool2d")
    return apply(MaxPool2d(k, s), x)


class AvgPool2d(Op):
    __slots__ = ("kernel", "stride", "x_shape")

    def __init__(self, kernel, stride, x_shape=None):
        self.kernel, self.stride, self.x_shape = kernel, stride, x_shape

    def compute(self, x):
        self.x_shape = x.shape
        return self.device.avg_pool2d(x, self.kernel, self.stride)

    def gradient(self, g, node):
        return (apply(AvgPool2dBackward(self.kernel, self.stride, self.x_shape), g),)


class AvgPool2dBackward(AvgPool2d):
    __slots__ = ()

    def compute(self, g):
        return self.device.avg_pool2d_backward(g, self.x_shape, self.kernel, self.stride)

    def gradient(self, gg, node):
        return (apply(AvgPool2d(self.kernel, self.stride), gg),)  # its own adjoint


def avg_pool2d(x: Tensor, kernel_size, stride=None) -> Tensor:
    _float(x, "avg_pool2d")
    k, s = _pool_args(x, kernel_size, stride, "avg_pool2d")
    return apply(AvgPool2d(k, s), x)


# -- softmax family ----------------------------------------------------------------------------
def _last_axis(d, fn, x, axis, drops=False):
    """fn over ``axis`` of x via the device's last-axis kernels on a compact 2-D array."""
    nd = x.ndim
    axis = axis % nd
    if axis != nd - 1:
        perm = tuple(i for i in range(nd) if i != axis) + (axis,)
        x = d.permute(x, perm)
    shp = x.shape
    y = fn(d.compact(d.reshape(x, (-1, shp[-1])) if x.ndim != 2 else x))
    if drops:
        return d.reshape(y, shp[:-1])
    y = d.reshape(y, shp)
    if axis != nd - 1:
        y = d.permute(y, tuple(np.argsort(perm).tolist()))
    return y


class Softmax(Op):
    __slots__ = ("axis", "log")

    def __init__(self, axis, log):
        self.axis, self.log = axis, log

    def compute(self, x):
        d = self.device
        return _last_axis(d, d.log_softmax if self.log else d.softmax, x, self.axis)

    def gradient(self, g, node):
        if self.log:  # g - softmax * sum(g)
            return (g - node.exp() * _rd.sum(g, self.axis, keepdims=True),)
        return (node * (g - _rd.sum(g * node, self.axis, keepdims=True)),)


class LogSumExp(Op):
    __slots__ = ("axis",)

    def __init__(self, axis):
        self.axis = axis

    def compute(self, x):
        d = self.device
        return _last_axis(d, d.logsumexp, x, self.axis, drops=True)

    def gradient(self, g, node):
        x = node._inputs[0]
        kd = _sh.unsqueeze(node, self.axis)
        return (_sh.unsqueeze(g, self.axis) * (x - kd).exp(),)


def _axis(x, dim, axis, what):
    """The one dim of a softmax-family op; torch's implicit dim when none is given (with its
    deprecation warning): 0 for 0-, 1- and 3-D inputs, else 1."""
    dim = alias(dim, axis, "dim", "axis")
    if dim is None:
        warnings.warn(f"Implicit dimension choice for {what} has been deprecated. Change the "
                      "call to include dim=X as an argument.", UserWarning, stacklevel=3)
        dim = 0 if x.ndim in (0, 1, 3) else 1
    return wrap_dim(dim, x.ndim, what)


def _softmax_family(op_cls, x, dim, axis, dtype, what, *args):
    if dtype is not None:
        x = x.to(dtype)
    _float(x, what)
    a = _axis(x, dim, axis, what)
    if x.ndim == 0:  # NOTE: as torch: a 0-d input is one row of one element
        return _sh.reshape(apply(op_cls(0, *args), _sh.reshape(x, 1)), ())
    return apply(op_cls(a, *args), x)


def softmax(x: Tensor, dim=None, dtype=None, *, axis=None) -> Tensor:
    return _softmax_family(Softmax, x, dim, axis, dtype, "softmax", False)


def log_softmax(x: Tensor, dim=None, dtype=None, *, axis=None) -> Tensor:
    return _softmax_family(Softmax, x, dim, axis, dtype, "log_softmax", True)


def logsumexp(x: Tensor, dim=-1, keepdim=False, *, axis=None, keepdims=None) -> Tensor:
    """log(sum(exp(x))) over ``dim`` (an int or a tuple of dims), stable."""
    keepdim = bool(alias(keepdim, keepdims, "keepdim", "keepdims", False))
    dims = normalize_dims(alias(dim, axis, "dim", "axis", -1), x.ndim, "logsumexp")
    _float(x, "logsumexp")
    if x.ndim == 0:
        return x
    if len(dims) == 1:
        out = apply(LogSumExp(dims[0]), x)
    else:  # several dims: moved last and merged into one
        keep = [i for i in range(x.ndim) if i not in dims]
        moved = _sh.permute(x, *keep, *dims)
        merged = _sh.reshape(moved, tuple(x.shape[i] for i in keep)
                             + (math.prod(x.shape[i] for i in dims),))
        out = apply(LogSumExp(len(keep)), merged)
    if keepdim:
        out = _sh.reshape(out, tuple(1 if i in dims else n for i, n in enumerate(x.shape)))
    return out


# -- losses ------------------------------------------------------------------------------------
class CrossEntropy(Op):
    """Mean cross-entropy of (N, C) logits and int (N,) targets: one fused kernel forward, one
    backward, the softmax saved in between."""

    __slots__ = ("target", "probs")

    def __init__(self, target):
        self.target = target

    def compute(self, logits):
        loss, self.probs = self.device.cross_entropy(logits, self.target)
        return loss

    def gradient(self, g, node):
        return (apply(CrossEntropyBackward(self.probs, self.target), node._inputs[0], g),)


class CrossEntropyBackward(Op):
    """(probs - onehot) * g / N; inputs (logits, g) so a second derivative reaches both."""

    __slots__ = ("probs", "target")

    def __init__(self, probs, target):
        self.probs, self.target = probs, target

    def compute(self, logits, g):
        return self.device.cross_entropy_backward(self.probs, self.target, g)

    def gradient(self, gg, node):
        logits, g = node._inputs
        n = max(logits.shape[0], 1)
        p = wrap(self.probs, gg.device)
        dlogits = dg = None
        if logits._requires_grad:  # softmax Jacobian applied to gg, scaled by g / N
            dlogits = p * (gg - _rd.sum(gg * p, 1, keepdims=True)) * (g * (1.0 / n))
        if g._requires_grad:
            ones = apply(CrossEntropyBackward(self.probs, self.target), logits.detach(),
                         wrap(self.device.full((), 1, gg.dtype), gg.device))
            dg = _rd.sum(gg * ones)
        return (dlogits, dg)


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy of (N, C) logits and int64 (N,) class indices."""
    _float(logits, "cross_entropy")
    if not isinstance(target, Tensor):
        host = np.asarray(target)
        if host.dtype.kind in "iu":
            _check_classes(host, logits)
        target = wrap(logits.device.from_numpy(host), logits.device)
    elif target.device == _backend.cpu() and target.dtype.kind in "iu":
        _check_classes(target.numpy(), logits)
    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, got dtype "
                        f"{target.dtype}")
    if logits.device != target.device:
        raise ValueError(f"cross_entropy: logits on {logits.device}, target on {target.device}")
    if logits.ndim != 2 or target.ndim != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(f"cross_entropy: logits of shape {logits.shape} (N, C) do not match "
                         f"target of shape {target.shape} (N,)")
    return apply(CrossEntropy(target._data), logits)


def _check_classes(t: np.ndarray, logits: Tensor):
    """Class indices in [0, C), checked where they are in host memory (a kernel would read out
    of bounds). NOTE: a CUDA target is not checked: that would cost a device-to-host copy and
    a synchronisation per step."""
    c = logits.shape[-1] if logits.ndim else 0
    if t.size and (t.min() < 0 or t.max() >= c):
        raise ValueError(f"cross_entropy: target values must lie in [0, {c}), got min "
                         f"{t.min()} max {t.max()}")


def mse_loss(a: Tensor, b: Tensor) -> Tensor:
    """mean((a - b)**2); the shapes must be equal (no silent broadcasting)."""
    check_same(a, b, "mse_loss")
    if a.shape != b.shape:
        raise ValueError(f"mse_loss: input shape {a.shape} and target shape {b.shape} differ")
    d = a - b
    return _rd.mean(d * d)


# -- regularisation and normalisation ------------------------------------------------------------
def dropout(x: Tensor, p=0.5, training=True) -> Tensor:
    """Inverted dropout; the mask comes from the global generator (ds.manual_seed)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    _float(x, "dropout")
    d = x.device
    if p == 1.0:
        return x * 0.0
    keep = _random.generator().random(x.shape) >= p
    mask = (keep * (1.0 / (1.0 - p))).astype(x.dtype)
    return x * wrap(d.from_numpy(mask), d)


def layer_norm(x: Tensor, normalized_shape, weight=None, bias=None, eps=1e-5) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` dims, then scale and shift."""
    _float(x, "layer_norm")
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(ns)
    if k == 0 or x.shape[-k:] != ns:
        raise ValueError(f"layer_norm: input of shape {x.shape} does not end with "
                         f"normalized_shape {ns}")
    axes = tuple(range(x.ndim - k, x.ndim))
    mu = _rd.mean(x, axes, keepdims=True)
    xc = x - mu
    var = _rd.mean(xc * xc, axes, keepdims=True)
    y = xc / (var + eps).sqrt()
    if weight is not None:
        if weight.shape != ns:
            raise ValueError(f"layer_norm: weight of shape {weight.shape} does not match "
                             f"normalized_shape {ns}")
        y = y * weight
    if bias is not None:
        if bias.shape != ns:
            raise ValueError(f"layer_norm: bias of shape {bias.shape} does not match "
                             f"normalized_shape {ns}")
        y = y + bias
    return y


def embedding(idx: Tensor, weight: Tensor) -> Tensor:
    """Rows of ``weight`` (num, dim) at integer ``idx``; repeated indices add their gradients."""
    if not isinstance(idx, Tensor):
        idx = wrap(weight.device.from_numpy(np.asarray(idx, dtype=np.int64)),
                    weight.device)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num, dim), got shape {weight.shape}")
    if idx.device != weight.device:
        raise ValueError(f"embedding: indices on {idx.device}, weight on {weight.device}")
    flat = _sh.reshape(idx, -1) if idx.ndim != 1 else idx
    rows = _sh.getitem(weight, flat)
    return _sh.reshape(rows, idx.shape + (weight.shape[1],))

