"""CPU kernels for LayerNorm and RMSNorm (forward and backward) over the last axis of a compact
(R, C) array, BatchNorm's training forward and backward over axes 0 and 2 of a compact
(N, C, L) array, and the backward of the softmax family.

Each ``*_ref`` is the numpy reference (any float dtype); the Numba kernel (``*_nb``) beside it
computes the same in one pass per row over compact float32/float64 arrays, with float64 row
statistics; the ``*_fast`` wrappers allocate outputs and take the reference otherwise.
Statistics are returned per row (mean and rstd = 1 / sqrt(var + eps), float32 for float32
input) and saved by the front end for the backward, as PyTorch's native_layer_norm does.
"""

from __future__ import annotations

import math

import numpy as np

from .cpu_kernels import jit, numba_ok
from .cpu_kernels_math import fexp

_FM = {"reassoc", "contract"}


# -- LayerNorm ---------------------------------------------------------------------------------
def layer_norm_ref(x, w, b, eps):
    """(y, mean, rstd) of x (R, C) normalised over its rows (biased variance), y * w + b."""
    mean = x.mean(axis=1)
    xc = x - mean[:, None]
    rstd = (1.0 / np.sqrt((xc * xc).mean(axis=1) + eps)).astype(x.dtype)
    y = xc * rstd[:, None]
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y.astype(x.dtype, copy=False), mean, rstd


def layer_norm_backward_ref(g, x, w, mean, rstd):
    """(dx, dw, db) for the output gradient g (dw, db None when there is no weight)."""
    xhat = (x - mean[:, None]) * rstd[:, None]
    gw = g if w is None else g * w
    dx = rstd[:, None] * (gw - gw.mean(axis=1, keepdims=True)
                          - xhat * (gw * xhat).mean(axis=1, keepdims=True))
    if w is None:
        return dx.astype(x.dtype, copy=False), None, None
    return dx.astype(x.dtype, copy=False), (g * xhat).sum(axis=0), g.sum(axis=0)


@jit(fastmath=_FM)
def layer_norm_nb(x, w, b, eps, y, mean, rstd):
    r, c = x.shape
    for i in range(r):
        s = 0.0
        for j in range(c):
            s += x[i, j]
        mu = s / c
        v = 0.0
        for j in range(c):
            d = x[i, j] - mu
            v += d * d
        rs = 1.0 / math.sqrt(v / c + eps)
        mean[i] = mu
        rstd[i] = rs
        for j in range(c):
            y[i, j] = (x[i, j] - mu) * rs * w[j] + b[j]


@jit(fastmath=_FM)
def layer_norm_backward_nb(g, x, w, mean, rstd, dx, dw, db):
    """dx = rstd (gw - mean(gw) - xhat mean(gw xhat)), gw = g w; dw, db summed over rows
    into float64 accumulators (then rounded once)."""
    r, c = x.shape
    aw = np.zeros(c, np.float64)
    ab = np.zeros(c, np.float64)
    for i in range(r):
        mu, rs = mean[i], rstd[i]
        s1 = 0.0
        s2 = 0.0
        for j in range(c):
            xh = (x[i, j] - mu) * rs
            gw = g[i, j] * w[j]
            s1 += gw
            s2 += gw * xh
            aw[j] += g[i, j] * xh
            ab[j] += g[i, j]
        m1, m2 = s1 / c, s2 / c
        for j in range(c):
            xh = (x[i, j] - mu) * rs
            dx[i, j] = rs * (g[i, j] * w[j] - m1 - xh * m2)
    for j in range(c):
        dw[j] = aw[j]
        db[j] = ab[j]


def layer_norm_fast(x, w, b, eps):
    if not numba_ok(x, *(a for a in (w, b) if a is not None)) or x.size == 0:
        return layer_norm_ref(x, w, b, eps)
    c = x.shape[1]
    w1 = np.ones(c, x.dtype) if w is None else w
    b1 = np.zeros(c, x.dtype) if b is None else b
    y = np.empty_like(x)
    mean, rstd = np.empty(x.shape[0], x.dtype), np.empty(x.shape[0], x.dtype)
    layer_norm_nb(x, w1, b1, float(eps), y, mean, rstd)
    return y, mean, rstd


def layer_norm_backward_fast(g, x, w, mean, rstd):
    if not numba_ok(g, x, mean, rstd, *(() if w is None else (w,))) or x.size == 0:
        return layer_norm_backward_ref(g, x, w, mean, rstd)
    c = x.shape[1]
    dx = np.empty_like(x)
    dw, db = np.empty(c, x.dtype), np.empty(c, x.dtype)
    layer_norm_backward_nb(g, x, np.ones(c, x.dtype) if w is None else w, mean, rstd, dx, dw, db)
    return (dx, None, None) if w is None else (dx, dw, db)


# -- RMSNorm -----------------------------------------------------------------------------------
def rms_norm_ref(x, w, eps):
    """(y, rstd) with rstd = 1 / sqrt(mean(x^2) + eps) per row, y = x rstd w."""
    rstd = (1.0 / np.sqrt((x * x).mean(axis=1) + eps)).astype(x.dtype)
    y = x * rstd[:, None]
    return (y if w is None else y * w).astype(x.dtype, copy=False), rstd


def rms_norm_backward_ref(g, x, w, rstd):
    """(dx, dw): dx = rstd (gw - x rstd^2 mean(gw x)), gw = g w; dw = sum(g x rstd)."""
    gw = g if w is None else g * w
    r = rstd[:, None]
    dx = r * (gw - x * (r * r) * (gw * x).mean(axis=1, keepdims=True))
    return dx.astype(x.dtype, copy=False), None if w is None else (g * x * r).sum(axis=0)


@jit(fastmath=_FM)
def rms_norm_nb(x, w, eps, y, rstd):
    r, c = x.shape
    for i in range(r):
        s = 0.0
        for j in range(c):
            s += x[i, j] * x[i, j]
        rs = 1.0 / math.sqrt(s / c + eps)
        rstd[i] = rs
        for j in range(c):
            y[i, j] = x[i, j] * rs * w[j]


@jit(fastmath=_FM)
def rms_norm_backward_nb(g, x, w, rstd, dx, dw):
    r, c = x.shape
    aw = np.zeros(c, np.float64)
    for i in range(r):
        rs = rstd[i]
        s = 0.0
        for j in range(c):
            s += g[i, j] * w[j] * x[i, j]
            aw[j] += g[i, j] * x[i, j] * rs
        k = rs * rs * s / c
        for j in range(c):
            dx[i, j] = rs * (g[i, j] * w[j] - x[i, j] * k)
    for j in range(c):
        dw[j] = aw[j]


def rms_norm_fast(x, w, eps):
    if not numba_ok(x, *(() if w is None else (w,))) or x.size == 0:
        return rms_norm_ref(x, w, eps)
    y, rstd = np.empty_like(x), np.empty(x.shape[0], x.dtype)
    rms_norm_nb(x, np.ones(x.shape[1], x.dtype) if w is None else w, float(eps), y, rstd)
    return y, rstd


def rms_norm_backward_fast(g, x, w, rstd):
    if not numba_ok(g, x, rstd, *(() if w is None else (w,))) or x.size == 0:
        return rms_norm_backward_ref(g, x, w, rstd)
    dx, dw = np.empty_like(x), np.empty(x.shape[1], x.dtype)
    rms_norm_backward_nb(g, x, np.ones(x.shape[1], x.dtype) if w is None else w, rstd, dx, dw)
    return dx, None if w is None else dw


# -- softmax / log_softmax backward (rows of a compact 2-D array) -----------------------------
def softmax_backward_ref(y, g):
    """y (g - sum(g y)) for y = softmax(x) along the rows."""
    return y * (g - (g * y).sum(axis=1, keepdims=True))


def log_softmax_backward_ref(y, g):
    """g - exp(y) sum(g) for y = log_softmax(x) along the rows."""
    return g - np.exp(y) * g.sum(axis=1, keepdims=True)


@jit(fastmath=_FM)
def softmax_backward_nb(y, g, out):
    for i in range(y.shape[0]):
        s = 0.0
        for j in range(y.shape[1]):
            s += g[i, j] * y[i, j]
        for j in range(y.shape[1]):
            out[i, j] = y[i, j] * (g[i, j] - s)


@jit(fastmath=_FM)
def log_softmax_backward_nb(y, g, out):
    for i in range(y.shape[0]):
        s = 0.0
        for j in range(y.shape[1]):
            s += g[i, j]
        for j in range(y.shape[1]):
            out[i, j] = g[i, j] - fexp(y[i, j]) * s


def softmax_backward_fast(y, g, log=False):
    if not numba_ok(y, g) or y.size == 0:
        return (log_softmax_backward_ref if log else softmax_backward_ref)(y, g)
    out = np.empty_like(y)
    (log_softmax_backward_nb if log else softmax_backward_nb)(y, g, out)
    return out


# -- BatchNorm (training: batch statistics) over axes 0 and 2 of a compact (N, C, L) array ------
def batch_norm_ref(x, w, b, eps):
    """(y, mean, var, rstd) per channel: var is biased, rstd = 1 / sqrt(var + eps)."""
    mean = x.mean(axis=(0, 2))
    xc = x - mean[:, None]
    var = (xc * xc).mean(axis=(0, 2)).astype(x.dtype)
    rstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    y = xc * rstd[:, None]
    if w is not None:
        y = y * w[:, None]
    if b is not None:
        y = y + b[:, None]
    return y.astype(x.dtype, copy=False), mean, var, rstd


def batch_norm_backward_ref(g, x, w, mean, rstd):
    """(dx, dw, db) for the output gradient g (dw, db None when there is no weight)."""
    r = rstd[:, None]
    xhat = (x - mean[:, None]) * r
    db = g.sum(axis=(0, 2))
    dw = (g * xhat).sum(axis=(0, 2))
    m = x.shape[0] * x.shape[2]
    k = r if w is None else r * w[:, None]
    dx = k * (g - (db / m)[:, None] - xhat * (dw / m)[:, None])
    if w is None:
        return dx.astype(x.dtype, copy=False), None, None
    return dx.astype(x.dtype, copy=False), dw.astype(x.dtype), db.astype(x.dtype)


@jit(fastmath=_FM)
def batch_norm_nb(x, w, b, eps, y, mean, var, rstd):
    n, c, L = x.shape
    m = n * L
    for ch in range(c):
        s = 0.0
        for i in range(n):
            for j in range(L):
                s += x[i, ch, j]
        mu = s / m
        v = 0.0
        for i in range(n):
            for j in range(L):
                d = x[i, ch, j] - mu
                v += d * d
        v /= m
        rs = 1.0 / math.sqrt(v + eps)
        mean[ch], var[ch], rstd[ch] = mu, v, rs
        a = rs * w[ch]
        sh = b[ch] - mu * a
        for i in range(n):
            for j in range(L):
                y[i, ch, j] = x[i, ch, j] * a + sh


@jit(fastmath=_FM)
def batch_norm_backward_nb(g, x, w, mean, rstd, dx, dw, db):
    n, c, L = x.shape
    m = n * L
    for ch in range(c):
        mu, rs = mean[ch], rstd[ch]
        sg = 0.0
        sgx = 0.0
        for i in range(n):
            for j in range(L):
                sg += g[i, ch, j]
                sgx += g[i, ch, j] * (x[i, ch, j] - mu)
        db[ch] = sg
        dw[ch] = sgx * rs
        k = w[ch] * rs
        m1 = sg / m
        m2 = sgx * rs * rs / m  # NOTE: mean(g xhat) * rstd, for the (x - mu) form
        for i in range(n):
            for j in range(L):
                dx[i, ch, j] = k * (g[i, ch, j] - m1 - (x[i, ch, j] - mu) * m2)


def batch_norm_fast(x, w, b, eps):
    if not numba_ok(x, *(a for a in (w, b) if a is not None)) or x.size == 0:
        return batch_norm_ref(x, w, b, eps)
    c = x.shape[1]
    y = np.empty_like(x)
    mean, var, rstd = (np.empty(c, x.dtype) for _ in range(3))
    batch_norm_nb(x, np.ones(c, x.dtype) if w is None else w,
                  np.zeros(c, x.dtype) if b is None else b, float(eps), y, mean, var, rstd)
    return y, mean, var, rstd


def batch_norm_backward_fast(g, x, w, mean, rstd):
    if not numba_ok(g, x, mean, rstd, *(() if w is None else (w,))) or x.size == 0:
        return batch_norm_backward_ref(g, x, w, mean, rstd)
    c = x.shape[1]
    dx = np.empty_like(x)
    dw, db = np.empty(c, x.dtype), np.empty(c, x.dtype)
    batch_norm_backward_nb(g, x, np.ones(c, x.dtype) if w is None else w, mean, rstd, dx, dw,
                           db)
    return (dx, None, None) if w is None else (dx, dw, db)
