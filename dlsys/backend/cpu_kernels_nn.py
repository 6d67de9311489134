"""CPU kernels for the nn ops: softmax family, cross-entropy, im2col/col2im, pooling.

Each ``*_ref`` function is the numpy reference (any dtype, any layout); the Numba kernel
(``*_nb``) beside it computes the same on compact float32/float64 arrays; the ``*_fast``
wrappers at the end allocate outputs, make inputs compact and fall back to the reference for
other dtypes (float16: Numba has no float16 arithmetic). Kernel sizes, strides and paddings
are plain ints.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .cpu_kernels import jit, numba_ok


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
    with np.errstate(divide="ignore"):  # NOTE: log(0) = -inf is the right answer there
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
        e = math.exp(x[r, j] - m)
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
            s += math.exp(x[r, j] - m)
        c = m + math.log(s)
        for j in range(x.shape[1]):
            out[r, j] = x[r, j] - c


@jit(fastmath=_FM)
def cross_entropy_nb(logits, target, probs):
    """One pass per row: max, exp and its sum (probs), loss. Returns the mean loss (float64)."""
    n, c = logits.shape
    total = 0.0
    for r in range(n):
        m, s = _softmax_row(logits, r, probs)
        total += math.log(s) + m - logits[r, target[r]]
    return total / n if n else np.nan


@jit()
def cross_entropy_backward_nb(probs, target, scale, out):
    n, c = probs.shape
    for r in range(n):
        for j in range(c):
            out[r, j] = probs[r, j] * scale
        out[r, target[r]] -= scale


# NOTE: both conv kernels pad one sample at a time into a small scratch plane (no bounds tests
# in the inner loop); for one output row y they sweep the columns with the inner loop along
# the row's output positions, so the (OW, C*kh*kw) block being written stays in L1 and the
# scratch plane is read sequentially. This measured faster than a row-by-row loop with bounds
# tests, than a column-by-column sweep of the whole sample, and than numpy's window copy.
@jit()
def im2col_nb(x, kh, kw, sh, sw, ph, pw, out):
    n, c, h, w = x.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    oh = (hp - kh) // sh + 1
    ow = (wp - kw) // sw + 1
    xp = np.zeros((c, hp, wp), x.dtype)
    o4 = out.reshape(n, oh, ow, c * kh * kw)
    for b in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    xp[ch, i + ph, j + pw] = x[b, ch, i, j]
        for y in range(oh):
            for ch in range(c):
                for i in range(kh):
                    r = y * sh + i
                    for j in range(kw):
                        col = (ch * kh + i) * kw + j
                        for z in range(ow):
                            o4[b, y, z, col] = xp[ch, r, z * sw + j]


@jit()
def col2im_nb(cols, kh, kw, sh, sw, ph, pw, out):
    """out ((N, C, H, W), every element written) = the adjoint of im2col applied to cols."""
    n, c, h, w = out.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    oh = (hp - kh) // sh + 1
    ow = (wp - kw) // sw + 1
    xp = np.empty((c, hp, wp), cols.dtype)
    c4 = cols.reshape(n, oh, ow, c * kh * kw)
    for b in range(n):
        xp[:] = 0
        for y in range(oh):
            for ch in range(c):
                for i in range(kh):
                    r = y * sh + i
                    for j in range(kw):
                        col = (ch * kh + i) * kw + j
                        for z in range(ow):
                            xp[ch, r, z * sw + j] += c4[b, y, z, col]
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    out[b, ch, i, j] = xp[ch, i + ph, j + pw]


@jit()
def max_pool2d_nb(x, kh, kw, sh, sw, out, argmax):
    """Fast path, exact when x has no nan; returns True when it saw a nan (the caller then
    reruns max_pool2d_nan_nb). NOTE: the compare feeds selects, not branches: on real data the
    branchy loop mispredicts about half the time and measured 3x slower."""
    w = x.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    nan = False
    for b in range(x.shape[0]):
        for ch in range(x.shape[1]):
            xp = x[b, ch]
            op = out[b, ch]
            ap = argmax[b, ch]
            for y in range(oh):
                for z in range(ow):
                    r0 = y * sh
                    c0 = z * sw
                    best = xp[r0, c0]
                    arg = r0 * w + c0
                    for i in range(kh):
                        for j in range(kw):
                            v = xp[r0 + i, c0 + j]
                            take = v > best  # strict: the first of ties wins, as np.argmax
                            nan |= v != v
                            best = v if take else best
                            arg = (r0 + i) * w + c0 + j if take else arg
                    op[y, z] = best
                    ap[y, z] = arg
    return nan


@jit()
def max_pool2d_nan_nb(x, kh, kw, sh, sw, out, argmax):
    """The nan-exact version: the first nan of a window wins (as np.argmax)."""
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    for b in range(n):
        for ch in range(c):
            for y in range(oh):
                for z in range(ow):
                    best = x[b, ch, y * sh, z * sw]
                    arg = y * sh * w + z * sw
                    for i in range(kh):
                        for j in range(kw):
                            v = x[b, ch, y * sh + i, z * sw + j]
                            if v > best or (v != v and best == best):
                                best = v
                                arg = (y * sh + i) * w + z * sw + j
                    out[b, ch, y, z] = best
                    argmax[b, ch, y, z] = arg


@jit()
def max_pool2d_backward_nb(grad_out, argmax, out):
    """out: zeroed (N, C, H*W); repeated argmax (overlapping windows) adds up."""
    n, c, oh, ow = grad_out.shape
    for b in range(n):
        for ch in range(c):
            for y in range(oh):
                for z in range(ow):
                    out[b, ch, argmax[b, ch, y, z]] += grad_out[b, ch, y, z]


@jit(fastmath=_FM)
def avg_pool2d_nb(x, kh, kw, sh, sw, out):
    n, c = x.shape[0], x.shape[1]
    oh, ow = out.shape[2], out.shape[3]
    inv = 1.0 / (kh * kw)
    for b in range(n):
        for ch in range(c):
            for y in range(oh):
                for z in range(ow):
                    s = 0.0
                    for i in range(kh):
                        for j in range(kw):
                            s += x[b, ch, y * sh + i, z * sw + j]
                    out[b, ch, y, z] = s * inv


@jit()
def avg_pool2d_backward_nb(grad_out, kh, kw, sh, sw, out, tiles):
    """out: (N, C, H, W), zeroed unless ``tiles`` (windows tile the input exactly, so each
    element is assigned once: no zero fill, no read-modify-write). NOTE: one input row at a
    time, so the writes run along the row."""
    n, c, oh, ow = grad_out.shape
    inv = 1.0 / (kh * kw)
    for b in range(n):
        for ch in range(c):
            go = grad_out[b, ch]
            o = out[b, ch]
            for y in range(oh):
                for i in range(kh):
                    row = o[y * sh + i]
                    for z in range(ow):
                        g = go[y, z] * inv
                        for j in range(kw):
                            if tiles:
                                row[z * sw + j] = g
                            else:
                                row[z * sw + j] += g


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


def cross_entropy_fast(logits, target):
    if not numba_ok(logits) or logits.size == 0:
        return cross_entropy_ref(logits, target)
    probs = np.empty_like(logits)
    loss = cross_entropy_nb(logits, np.ascontiguousarray(target, dtype=np.int64), probs)
    return np.asarray(loss, dtype=logits.dtype), probs


def cross_entropy_backward_fast(probs, target, grad_loss):
    if not numba_ok(probs) or probs.size == 0:
        return cross_entropy_backward_ref(probs, target, grad_loss)
    out = np.empty_like(probs)
    cross_entropy_backward_nb(probs, np.ascontiguousarray(target, dtype=np.int64),
                              float(grad_loss) / probs.shape[0], out)
    return out


def im2col_fast(x, kh, kw, sh, sw, ph, pw):
    x = np.ascontiguousarray(x)
    if not numba_ok(x):
        return im2col_ref(x, kh, kw, sh, sw, ph, pw)
    n, c, h, w = x.shape
    oh, ow = _out_hw(h, w, kh, kw, sh, sw, ph, pw)
    out = np.empty((n * oh * ow, c * kh * kw), dtype=x.dtype)
    im2col_nb(x, kh, kw, sh, sw, ph, pw, out)
    return out


def col2im_fast(cols, x_shape, kh, kw, sh, sw, ph, pw):
    cols = np.ascontiguousarray(cols)
    if not numba_ok(cols):
        return col2im_ref(cols, x_shape, kh, kw, sh, sw, ph, pw)
    out = np.empty(x_shape, dtype=cols.dtype)
    col2im_nb(cols, kh, kw, sh, sw, ph, pw, out)
    return out


def max_pool2d_fast(x, kh, kw, sh, sw):
    x = np.ascontiguousarray(x)
    if not numba_ok(x):
        return max_pool2d_ref(x, kh, kw, sh, sw)
    n, c, h, w = x.shape
    oh, ow = _out_hw(h, w, kh, kw, sh, sw)
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int64)
    if max_pool2d_nb(x, kh, kw, sh, sw, out, argmax):
        max_pool2d_nan_nb(x, kh, kw, sh, sw, out, argmax)
    return out, argmax


def max_pool2d_backward_fast(grad_out, argmax, x_shape):
    grad_out = np.ascontiguousarray(grad_out)
    if not numba_ok(grad_out):
        return max_pool2d_backward_ref(grad_out, argmax, x_shape)
    n, c, h, w = x_shape
    out = np.zeros((n, c, h * w), dtype=grad_out.dtype)
    max_pool2d_backward_nb(grad_out, np.ascontiguousarray(argmax, dtype=np.int64), out)
    return out.reshape(x_shape)


def avg_pool2d_fast(x, kh, kw, sh, sw):
    x = np.ascontiguousarray(x)
    if not numba_ok(x):
        return avg_pool2d_ref(x, kh, kw, sh, sw)
    n, c, h, w = x.shape
    oh, ow = _out_hw(h, w, kh, kw, sh, sw)
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    avg_pool2d_nb(x, kh, kw, sh, sw, out)
    return out


def avg_pool2d_backward_fast(grad_out, x_shape, kh, kw, sh, sw):
    grad_out = np.ascontiguousarray(grad_out)
    if not numba_ok(grad_out):
        return avg_pool2d_backward_ref(grad_out, x_shape, kh, kw, sh, sw)
    oh, ow = grad_out.shape[2:]
    tiles = (sh, sw) == (kh, kw) and x_shape[2:] == (oh * kh, ow * kw)
    out = (np.empty if tiles else np.zeros)(x_shape, dtype=grad_out.dtype)
    avg_pool2d_backward_nb(grad_out, kh, kw, sh, sw, out, tiles)
    return out
