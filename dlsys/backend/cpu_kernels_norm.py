"""CPU kernels for LayerNorm and RMSNorm (forward and backward) over the last axis of a compact
(R, C) array, and the backward of the softmax family.

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
