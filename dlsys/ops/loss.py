"""Losses with PyTorch's options and semantics: cross_entropy (class indices or class
probabilities, (N, C) or (N, C, d1, ...) or unbatched (C,), weight, ignore_index,
label_smoothing), nll_loss, binary_cross_entropy (with its clamped logs and PyTorch's
gradient), binary_cross_entropy_with_logits (weight, pos_weight), mse_loss, l1_loss,
smooth_l1_loss; every one with reduction "mean" | "sum" | "none".

NOTE: the options after input, target (and weight) are keyword-only: PyTorch's signatures
still hold the deprecated size_average and reduce there, so a positional option would bind
to a different parameter than in PyTorch; here it is a TypeError instead.

The common case of cross_entropy, (N, C) logits with integer targets, mean, no weight and no
smoothing, is one fused kernel forward and one backward (ignored rows included); the other
cases are composed from log_softmax and indexing, whose gradients follow.
"""

from __future__ import annotations

import numpy as np

from .. import backend as _backend
from ..autograd import apply, wrap
from ..tensor import Tensor
from . import Op, check_same
from . import elementwise as _ew
from . import reduce as _rd
from . import shape as _sh
from .nn import log_softmax

__all__ = ["cross_entropy", "nll_loss", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "mse_loss", "l1_loss", "smooth_l1_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def _reduction(reduction, what):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{what}: {reduction!r} is not a valid value for reduction (expected "
                         f"one of {_REDUCTIONS})")
    return reduction


def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    return _rd.sum(loss) if reduction == "sum" else _rd.mean(loss)


def _float_input(x, what):
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: expected a Tensor input, got {type(x).__name__}")
    if x._data.dtype.kind != "f":
        raise TypeError(f"{what}: needs a floating input, got dtype {x.dtype}")


def _as_target(target, like: Tensor, what):
    """target as a Tensor on like's device (numpy arrays and lists are copied there)."""
    if isinstance(target, Tensor):
        if target.device != like.device:
            raise ValueError(f"{what}: input on {like.device}, target on {target.device}")
        return target
    host = np.asarray(target)
    if host.dtype.kind == "f" and not isinstance(target, np.ndarray):
        host = host.astype(like.dtype)  # NOTE: Python floats take the input's dtype
    if host.dtype.kind == "f" and host.dtype != like.dtype:
        raise TypeError(f"{what}: target dtype {host.dtype} differs from input dtype "
                        f"{like.dtype}")
    return wrap(like.device.from_numpy(np.ascontiguousarray(host)), like.device)


def _same_shape(a, b, what):
    check_same(a, b, what)
    if a.shape != b.shape:
        raise ValueError(f"{what}: input shape {a.shape} and target shape {b.shape} differ "
                         f"(dlsys does not broadcast a loss's target)")


# -- cross-entropy, fused common case ------------------------------------------------------------
class CrossEntropy(Op):
    """Mean cross-entropy of (N, C) logits and int (N,) targets (rows with target ==
    ignore_index left out): one fused kernel forward, one backward, the softmax saved."""

    __slots__ = ("target", "ignore_index", "probs")

    def __init__(self, target, ignore_index):
        self.target, self.ignore_index = target, ignore_index

    def compute(self, logits):
        loss, self.probs = self.device.cross_entropy(logits, self.target, self.ignore_index)
        return loss

    def gradient(self, g, node):
        return (apply(CrossEntropyBackward(self.probs, self.target, self.ignore_index),
                      node._inputs[0], g),)


class CrossEntropyBackward(Op):
    """(probs - onehot) * g / n_kept; inputs (logits, g) so a second derivative reaches both."""

    __slots__ = ("probs", "target", "ignore_index")

    def __init__(self, probs, target, ignore_index):
        self.probs, self.target, self.ignore_index = probs, target, ignore_index

    def compute(self, logits, g):
        return self.device.cross_entropy_backward(self.probs, self.target, g, self.ignore_index)

    def gradient(self, gg, node):
        logits, g = node._inputs
        d = self.device
        p = wrap(self.probs, gg.device)
        unit = apply(CrossEntropyBackward(self.probs, self.target, self.ignore_index),
                     logits.detach(), wrap(d.full((), 1, gg.dtype), gg.device))
        dlogits = dg = None
        if logits._requires_grad:  # the softmax Jacobian applied to gg, on the kept rows
            kept = wrap(d.astype(d.scalar("ne", self.target, self.ignore_index), gg.dtype),
                        gg.device)
            n_kept = _rd.sum(kept)
            dlogits = p * (gg - _rd.sum(gg * p, 1, keepdims=True)) * \
                (_sh.unsqueeze(kept, 1) * (g / n_kept))
        if g._requires_grad:
            dg = _rd.sum(gg * unit)
        return (dlogits, dg)


# -- cross-entropy and nll, general case ---------------------------------------------------------
def _class_last(x):
    """(N, C, d1, ...) -> (N*d1*..., C) rows (a copy when there are trailing dims)."""
    if x.ndim == 2:
        return x
    perm = (0,) + tuple(range(2, x.ndim)) + (1,)
    return _sh.reshape(_sh.permute(x, *perm), -1, x.shape[1])


def _check_index_target(x, t, what):
    """Integer class indices of shape (N, d1, ...) for x (N, C, d1, ...), or () for (C,)."""
    if t.dtype.kind not in "iu":
        raise TypeError(f"{what}: class-index target must have an integer dtype, got "
                        f"{t.dtype}")
    want = x.shape[:1] + x.shape[2:]
    if t.shape != want:
        raise ValueError(f"{what}: expected target of shape {want} for input of shape "
                         f"{x.shape}, got {t.shape}")


def _check_classes(t: Tensor, given, n_classes, ignore_index, what):
    """Class indices in [0, C) (ignore_index aside), checked where they are in host memory (a
    kernel would read out of bounds): a CPU target, or host data given for a CUDA input.
    NOTE: a CUDA target is not checked: that would cost a device-to-host copy and a
    synchronisation per step."""
    if isinstance(given, Tensor):
        if t.device != _backend.cpu():
            return
        given = t.numpy()
    h = np.asarray(given).reshape(-1)
    if not h.size or (h.min() >= 0 and h.max() < n_classes):
        return
    h = h[h != ignore_index]
    if h.size and (h.min() < 0 or h.max() >= n_classes):
        raise ValueError(f"{what}: target values must lie in [0, {n_classes}), got min "
                         f"{h.min()} max {h.max()} (ignore_index={ignore_index} aside)")


def _check_weight(weight, x, n_classes, what):
    if weight is None:
        return None
    if not isinstance(weight, Tensor):
        raise TypeError(f"{what}: weight must be a Tensor, got {type(weight).__name__}")
    check_same(x, weight, what)
    if weight.shape != (n_classes,):
        raise ValueError(f"{what}: weight of shape {weight.shape} does not match {n_classes} "
                         f"classes")
    return weight


def _nll_rows(logp, t, weight, ignore_index, label_smoothing, reduction):
    """The class-index loss of (M, C) log-probabilities and (M,) targets."""
    m, c = logp.shape
    d = logp.device
    keep = t != ignore_index
    safe = _ew.where(keep, t, 0)
    rows = wrap(d.from_numpy(np.arange(m, dtype=np.int64) * c), d)
    picked = _sh.getitem(_sh.reshape(logp, -1), rows + safe.to(np.int64))
    kept = keep.to(logp.dtype)
    w_t = kept if weight is None else _sh.getitem(weight, safe.to(np.int64)) * kept
    loss = -(picked * w_t)
    if label_smoothing:
        wl = logp if weight is None else logp * weight
        smooth = -_rd.sum(wl, 1) * kept
        loss = loss * (1.0 - label_smoothing) + smooth * (label_smoothing / c)
    if reduction == "mean":
        return _rd.sum(loss) / _rd.sum(w_t)  # NOTE: 0 / 0 = nan when every row is ignored
    return _rd.sum(loss) if reduction == "sum" else loss


def _prob_rows(logp, y, weight, label_smoothing, reduction):
    m, c = logp.shape
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / c
    wl = logp if weight is None else logp * weight
    loss = -_rd.sum(wl * y, 1)
    if reduction == "mean":
        return _rd.sum(loss) / float(m) if m else _rd.sum(loss) * float("nan")
    return _rd.sum(loss) if reduction == "sum" else loss


def _class_loss(x, target, weight, ignore_index, reduction, label_smoothing, what, logits):
    """cross_entropy (logits=True) and nll_loss: the checks, then the fast or general path."""
    _float_input(x, what)
    _reduction(reduction, what)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{what}: label_smoothing must be in [0, 1], got {label_smoothing}")
    if x.ndim == 0:
        raise ValueError(f"{what}: input must have at least 1 dimension (classes), got a 0-d "
                         f"tensor")
    t = _as_target(target, x, what)
    if x.ndim == 1:  # unbatched: (C,) with a () index or (C,) probabilities
        batched = _class_loss(_sh.unsqueeze(x, 0), _sh.unsqueeze(t, 0), weight, ignore_index,
                              reduction, label_smoothing, what, logits)
        return _sh.squeeze(batched, 0) if reduction == "none" else batched
    n_classes = x.shape[1]
    weight = _check_weight(weight, x, n_classes, what)
    probs_target = t.dtype.kind == "f"
    if probs_target:
        if not logits or t.shape != x.shape:
            raise TypeError(f"{what}: target must hold integer class indices "
                            + (f"or class probabilities of the input's shape {x.shape}, "
                               if logits else "")
                            + f"got dtype {t.dtype} shape {t.shape}")
        check_same(x, t, what)
        if ignore_index >= 0:
            raise ValueError(f"{what}: ignore_index is not supported for class-probability "
                             f"targets")
    else:
        _check_index_target(x, t, what)
        _check_classes(t, target, n_classes, ignore_index, what)
    if (logits and not probs_target and x.ndim == 2 and reduction == "mean" and weight is None
            and not label_smoothing):
        return apply(CrossEntropy(t._data, int(ignore_index)), x)
    rows = _class_last(x)
    logp = log_softmax(rows, 1) if logits else rows
    if probs_target:
        loss = _prob_rows(logp, _class_last(t), weight, label_smoothing, reduction)
    else:
        loss = _nll_rows(logp, _sh.reshape(t, -1), weight, ignore_index, label_smoothing,
                         reduction)
    if reduction == "none":
        loss = _sh.reshape(loss, x.shape[:1] + x.shape[2:])
    return loss


def cross_entropy(input: Tensor, target, weight: Tensor | None = None, *,
                  ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """torch.nn.functional.cross_entropy: input (N, C), (N, C, d1, ...) or (C,) logits;
    target class indices ((N,), (N, d1, ...) or ()) or class probabilities (input's shape)."""
    return _class_loss(input, target, weight, ignore_index, reduction, float(label_smoothing),
                       "cross_entropy", True)


def nll_loss(input: Tensor, target, weight: Tensor | None = None, *, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """torch.nn.functional.nll_loss: input log-probabilities (N, C), (N, C, d1, ...) or (C,)."""
    return _class_loss(input, target, weight, ignore_index, reduction, 0.0, "nll_loss", False)


# -- binary cross-entropy ------------------------------------------------------------------------
class BinaryCrossEntropy(Op):
    """-(t log x + (1 - t) log(1 - x)), each log clamped at -100 as PyTorch; the gradient is
    PyTorch's (x - t) / max(x (1 - x), 1e-12), not the derivative of the clamped logs."""

    __slots__ = ()

    def compute(self, x, t):
        d = self.device
        with np.errstate(divide="ignore"):  # NOTE: log(0) = -inf, clamped next (CPU arrays)
            return self._loss(d, x, t)

    @staticmethod
    def _loss(d, x, t):
        lx = d.binary("maximum", d.unary("log", x), d.full(x.shape, -100, x.dtype))
        l1x = d.binary("maximum", d.unary("log", d.scalar("sub", x, 1, reverse=True)),
                       d.full(x.shape, -100, x.dtype))
        # -(t * lx + (1 - t) * l1x) = -(l1x + t * (lx - l1x))
        return d.unary("neg", d.binary("add", l1x, d.binary("mul", t, d.binary("sub", lx,
                                                                                  l1x))))

    def gradient(self, g, node):
        x, t = node._inputs
        dx = dt = None
        if x._requires_grad:
            dx = g * (x - t) / _ew.maximum(x * (1.0 - x), 1e-12)
        if t._requires_grad:
            dt = g * ((1.0 - x).log().clamp(-100.0) - x.log().clamp(-100.0))
        return dx, dt


def _check_range01(x, what):
    """PyTorch checks 0 <= input <= 1; done where the data is in host memory (CPU)."""
    if x.device == _backend.cpu() and x.numel():
        h = x.numpy()
        if not ((h >= 0) & (h <= 1)).all():
            raise ValueError(f"{what}: all elements of input should be between 0 and 1")


def _elementwise_weight(loss, weight, what):
    if weight is None:
        return loss
    if not isinstance(weight, Tensor):
        raise TypeError(f"{what}: weight must be a Tensor, got {type(weight).__name__}")
    return _ew.mul(loss, weight)


def binary_cross_entropy(input: Tensor, target, weight: Tensor | None = None, *,
                         reduction: str = "mean") -> Tensor:
    """torch.nn.functional.binary_cross_entropy on probabilities; weight broadcasts."""
    what = "binary_cross_entropy"
    _float_input(input, what)
    _reduction(reduction, what)
    t = _as_target(target, input, what)
    _same_shape(input, t, what)
    _check_range01(input, what)
    loss = apply(BinaryCrossEntropy(), input, t)
    return _reduce(_elementwise_weight(loss, weight, what), reduction)


class LogSigmoid(Op):
    """log(sigmoid(x)), accurate in both tails (a device kernel: log1p of exp(-|x|))."""

    __slots__ = ()

    def compute(self, x):
        return self.device.log_sigmoid(x)

    def gradient(self, g, node):
        return (g * (1.0 - node._inputs[0].sigmoid()),)


def binary_cross_entropy_with_logits(input: Tensor, target, weight: Tensor | None = None, *,
                                     reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """torch.nn.functional.binary_cross_entropy_with_logits:
    (1 - t) x - (1 + (pos_weight - 1) t) log(sigmoid(x)), times weight; both broadcast."""
    what = "binary_cross_entropy_with_logits"
    _float_input(input, what)
    _reduction(reduction, what)
    t = _as_target(target, input, what)
    _same_shape(input, t, what)
    ls = apply(LogSigmoid(), input)
    if pos_weight is None:
        loss = (1.0 - t) * input - ls
    else:
        if not isinstance(pos_weight, Tensor):
            raise TypeError(f"{what}: pos_weight must be a Tensor")
        loss = (1.0 - t) * input - (1.0 + (pos_weight - 1.0) * t) * ls
    return _reduce(_elementwise_weight(loss, weight, what), reduction)


# -- regression losses ---------------------------------------------------------------------------
def _regression(input, target, reduction, what):
    _float_input(input, what)
    _reduction(reduction, what)
    t = _as_target(target, input, what)
    _same_shape(input, t, what)
    return input - t


def mse_loss(input: Tensor, target, *, reduction: str = "mean") -> Tensor:
    """(input - target) ** 2; the shapes must be equal (no silent broadcasting)."""
    d = _regression(input, target, reduction, "mse_loss")
    return _reduce(d * d, reduction)


def l1_loss(input: Tensor, target, *, reduction: str = "mean") -> Tensor:
    """|input - target| (gradient sign(d), 0 at 0, as PyTorch)."""
    return _reduce(_regression(input, target, reduction, "l1_loss").abs(), reduction)


def smooth_l1_loss(input: Tensor, target, *, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
    """0.5 d**2 / beta where |d| < beta, else |d| - 0.5 beta (beta = 0: l1_loss)."""
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    d = _regression(input, target, reduction, "smooth_l1_loss")
    a = d.abs()
    if beta == 0:
        return _reduce(a, reduction)
    loss = _ew.where(a < beta, d * d * (0.5 / beta), a - 0.5 * beta)
    return _reduce(loss, reduction)
