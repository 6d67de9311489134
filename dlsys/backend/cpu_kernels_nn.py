"""CPU kernels for the nn ops: softmax family, cross-entropy, im2col/col2im, pooling.

Each ``*_ref`` function is the numpy reference; the Numba kernel beside it computes the same.
All functions take compact float32/float64 arrays (``cpu.py`` makes them compact and routes
float16 to the references) and ints for kernel/stride/padding pairs.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def _out_hw(h, w, kh, kw, sh, sw, ph=0, pw=0):
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    return oh, ow


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
    return (np.log(np.exp(x - m).sum(axis=-1, keepdims=True)) + m)[..., 0]


def cross_entropy_ref(logits, target):
    """(mean loss as a 0-d array of logits' dtype, softmax probs)."""
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    probs = e / s
    logp_t = z[np.arange(n), target] - np.log(s[:, 0])
    loss = -logp_t.mean(dtype=np.float64) if n else np.float64(np.nan)
    return np.asarray(loss, dtype=logits.dtype), probs


def cross_entropy_backward_ref(probs, target, grad_loss):
    n = probs.shape[0]
    g = probs.copy()
    g[np.arange(n), target] -= 1
    g *= probs.dtype.type(float(grad_loss) / max(n, 1))
    return g


# -- im2col / col2im ---------------------------------------------------------------------------
def im2col_ref(x, kh, kw, sh, sw, ph, pw):
    n, c, h, w = x.shape
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = _out_hw(h, w, kh, kw, sh, sw, ph, pw)
    s0, s1, s2, s3 = x.strides
    win = as_strided(x, (n, oh, ow, c, kh, kw), (s0, s2 * sh, s3 * sw, s1, s2, s3),
                     writeable=False)
    return win.reshape(n * oh * ow, c * kh * kw)


def col2im_ref(cols, x_shape, kh, kw, sh, sw, ph, pw):
    n, c, h, w = x_shape
    oh, ow = _out_hw(h, w, kh, kw, sh, sw, ph, pw)
    out = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    cv = cols.reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)  # n c kh kw oh ow
    for i in range(kh):
        for j in range(kw):
            out[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += cv[:, :, i, j]
    return np.ascontiguousarray(out[:, :, ph:ph + h, pw:pw + w])


# -- pooling (no padding) ----------------------------------------------------------------------
def _windows(x, kh, kw, sh, sw):
    n, c, h, w = x.shape
    oh, ow = _out_hw(h, w, kh, kw, sh, sw)
    s0, s1, s2, s3 = x.strides
    return as_strided(x, (n, c, oh, ow, kh, kw), (s0, s1, s2 * sh, s3 * sw, s2, s3),
                      writeable=False)


def max_pool2d_ref(x, kh, kw, sh, sw):
    """(out, argmax): argmax is the int64 flat index into each (H*W) plane; ties and NaNs
    pick the first in window order (row-major)."""
    n, c, h, w = x.shape
    win = _windows(x, kh, kw, sh, sw)
    oh, ow = win.shape[2:4]
    flat = win.reshape(n, c, oh, ow, kh * kw)
    k = flat.argmax(axis=-1)
    out = np.take_along_axis(flat, k[..., None], axis=-1)[..., 0]
    i, j = np.divmod(k, kw)
    rows = np.arange(oh).reshape(oh, 1) * sh + i
    colz = np.arange(ow).reshape(1, ow) * sw + j
    return np.ascontiguousarray(out), (rows * w + colz).astype(np.int64)


def max_pool2d_backward_ref(grad_out, argmax, x_shape):
    n, c, h, w = x_shape
    gx = np.zeros((n * c, h * w), dtype=grad_out.dtype)
    rows = np.arange(n * c).reshape(n * c, 1)
    np.add.at(gx, (rows, argmax.reshape(n * c, -1)), grad_out.reshape(n * c, -1))
    return gx.reshape(x_shape)


def avg_pool2d_ref(x, kh, kw, sh, sw):
    win = _windows(x, kh, kw, sh, sw)
    return win.mean(axis=(4, 5), dtype=x.dtype)


def avg_pool2d_backward_ref(grad_out, x_shape, kh, kw, sh, sw):
    n, c, h, w = x_shape
    oh, ow = grad_out.shape[2:]
    gx = np.zeros(x_shape, dtype=grad_out.dtype)
    g = grad_out / grad_out.dtype.type(kh * kw)
    for i in range(kh):
        for j in range(kw):
            gx[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += g
    return gx
