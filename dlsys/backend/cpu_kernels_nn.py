"""CPU kernels for the nn ops: the softmax family and cross-entropy (convolution:
``cpu_kernels_conv``, pooling: ``cpu_kernels_pool``, attention: ``cpu_kernels_attention``).

Each ``*_ref`` function is the numpy reference (any dtype, any layout); the Numba kernel
(``*_nb``) beside it computes the same on compact float32/float64 arrays; the ``*_fast``
wrappers at the end allocate outputs, make inputs compact and fall back to the reference for
other dtypes (float16: Numba has no float16 arithmetic).
"""

from __future__ import annotations

import math

import numpy as np

from .cpu_kernels import jit, numba_ok
from .cpu_kernels_math import fexp


# -- softmax family (last axis of a 2-D array) -------------------------------------------------
def softmax_ref(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def log_softmax_ref(x):
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def logsumexp_ref(x):
    m = x.max(axis=-1, keepdims=True)
    # NOTE: a row of all -inf would give nan from (-inf) - (-inf); treat its max as 0.
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype)
    with np.errstate(divide="ignore"):  # NOTE: log(0) = -inf is the right answer there
        return (np.log(np.exp(x - m).sum(axis=-1, keepdims=True)) + m)[..., 0]


def cross_entropy_ref(logits, target, ignore_index=-100):
    """(mean loss over the rows whose target is not ignore_index, as a 0-d array of logits'
    dtype (nan when there is none), softmax probs)."""
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    probs = e / s
    keep = target != ignore_index
    rows = np.arange(n)[keep]
    logp_t = z[rows, target[keep]] - np.log(s[keep, 0])
    loss = -logp_t.mean(dtype=np.float64) if rows.size else np.float64(np.nan)
    return np.asarray(loss, dtype=logits.dtype), probs


def cross_entropy_backward_ref(probs, target, grad_loss, ignore_index=-100):
    keep = target != ignore_index
    rows = np.arange(probs.shape[0])[keep]
    g = np.zeros_like(probs)
    g[rows] = probs[rows]
    g[rows, target[keep]] -= 1
    g *= probs.dtype.type(float(grad_loss) / max(rows.size, 1))
    return g


# ============================================================================================
# Numba kernels (compact float32/float64 inputs; see cpu.py for the routing)
# NOTE: "reassoc"/"contract" only: they let LLVM vectorise row sums and fuse multiply-adds,
# but keep inf/nan semantics (no nnan/ninf), so -inf logits and nan inputs behave like numpy.
# ============================================================================================
_FM = {"reassoc", "contract"}


# NOTE: inline="always" (Numba IR inlining): as a call, the tuple return of _softmax_row cost
# cross_entropy ~30% on MNIST-sized (128, 10) logits.
@jit(fastmath=_FM, inline="always")
def _row_max(x, r):
    m = x[r, 0]
    for j in range(1, x.shape[1]):
        if x[r, j] > m:
            m = x[r, j]
    return m


@jit(fastmath=_FM, inline="always")
def _softmax_row(x, r, out):
    """out[r] = softmax(x[r]); returns (max of the row, sum of exp(x[r] - max))."""
    m = _row_max(x, r)
    s = 0.0
    for j in range(x.shape[1]):
        e = fexp(x[r, j] - m)
        out[r, j] = e
        s += e
    inv = 1.0 / s
    for j in range(x.shape[1]):
        out[r, j] *= inv
    return m, s


@jit(fastmath=_FM)
def softmax_nb(x, out):
    for r in range(x.shape[0]):
        _softmax_row(x, r, out)


@jit(fastmath=_FM)
def log_softmax_nb(x, out):
    for r in range(x.shape[0]):
        m = _row_max(x, r)
        s = 0.0
        for j in range(x.shape[1]):
            s += fexp(x[r, j] - m)
        c = m + math.log(s)
        for j in range(x.shape[1]):
            out[r, j] = x[r, j] - c


@jit(fastmath=_FM)
def cross_entropy_nb(logits, target, ignore, probs):
    """One pass per row: max, exp and its sum (probs), loss. Returns the mean loss (float64)
    over the rows whose target is not ``ignore`` (nan if none)."""
    n, c = logits.shape
    total = 0.0
    count = 0
    for r in range(n):
        m, s = _softmax_row(logits, r, probs)
        t = target[r]
        if t != ignore:
            total += math.log(s) + m - logits[r, t]
            count += 1
    return total / count if count else np.nan


@jit()
def cross_entropy_backward_nb(probs, target, ignore, grad_loss, out):
    """out = (probs - onehot) * grad_loss / (rows kept), zero on the ignored rows."""
    n, c = probs.shape
    kept = 0
    for r in range(n):
        kept += target[r] != ignore
    scale = grad_loss / max(kept, 1)
    for r in range(n):
        t = target[r]
        s = scale if t != ignore else 0.0
        for j in range(c):
            out[r, j] = probs[r, j] * s
        if t != ignore:
            out[r, t] -= s


# -- wrappers: allocate outputs, fall back to the references where Numba does not apply --------
def _rows(x):
    return x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x


def softmax_fast(x):
    if not numba_ok(x) or x.size == 0:
        return softmax_ref(x)
    out = np.empty_like(x)
    softmax_nb(_rows(x), _rows(out))
    return out


def log_softmax_fast(x):
    if not numba_ok(x) or x.size == 0:
        return log_softmax_ref(x)
    out = np.empty_like(x)
    log_softmax_nb(_rows(x), _rows(out))
    return out


def cross_entropy_fast(logits, target, ignore_index=-100):
    if not numba_ok(logits) or logits.size == 0:
        return cross_entropy_ref(logits, target, ignore_index)
    probs = np.empty_like(logits)
    loss = cross_entropy_nb(logits, np.ascontiguousarray(target, dtype=np.int64),
                            int(ignore_index), probs)
    return np.asarray(loss, dtype=logits.dtype), probs


def cross_entropy_backward_fast(probs, target, grad_loss, ignore_index=-100):
    if not numba_ok(probs) or probs.size == 0:
        return cross_entropy_backward_ref(probs, target, grad_loss, ignore_index)
    out = np.empty_like(probs)
    cross_entropy_backward_nb(probs, np.ascontiguousarray(target, dtype=np.int64),
                              int(ignore_index), float(grad_loss), out)
    return out
