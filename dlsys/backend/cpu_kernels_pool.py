"""CPU kernels for 2-D max and average pooling (NCHW) with PyTorch's options: padding,
dilation (max), ceil_mode, count_include_pad and divisor_override (average).

``*_ref`` are the numpy references (a loop over output positions, vectorised over N and C);
the Numba kernels (``*_nb``) compute the same on compact float32/float64 arrays; the
``*_fast`` wrappers allocate outputs and fall back to the references for other inputs.
Geometry arguments are plain ints; output sizes follow ``device.pool_out_size``.
"""

from __future__ import annotations

import numpy as np

from .cpu_kernels import jit, numba_ok
from .device import pool_out_size


def _sizes(x_shape, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode):
    h, w = x_shape[2], x_shape[3]
    return (pool_out_size(h, kh, sh, ph, dh, ceil_mode),
            pool_out_size(w, kw, sw, pw, dw, ceil_mode))


def _taps(start, k, d, n):
    """The input indices start + t*d (t < k) that lie in [0, n)."""
    idx = start + d * np.arange(k)
    return idx[(idx >= 0) & (idx < n)]


# -- max pooling -------------------------------------------------------------------------------
def max_pool2d_ref(x, kh, kw, sh, sw, ph=0, pw=0, dh=1, dw=1, ceil_mode=False):
    """(out, argmax): argmax is the int64 flat index into each (H*W) plane. The first maximum
    of a window wins; a NaN beats every number and a later NaN an earlier one (PyTorch's CPU
    rule ``val > max or isnan(val)``)."""
    n, c, h, w = x.shape
    oh, ow = _sizes(x.shape, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode)
    out = np.empty((n, c, oh, ow), x.dtype)
    arg = np.empty((n, c, oh, ow), np.int64)
    for y in range(oh):
        rows = _taps(y * sh - ph, kh, dh, h)
        for z in range(ow):
            cols = _taps(z * sw - pw, kw, dw, w)
            win = x[:, :, rows][:, :, :, cols].reshape(n, c, -1)
            flat = (rows[:, None] * w + cols[None, :]).reshape(-1)
            nan = np.isnan(win)
            k = np.where(nan.any(-1), win.shape[-1] - 1 - np.argmax(nan[..., ::-1], -1),
                         np.argmax(np.where(nan, -np.inf, win), -1))
            out[:, :, y, z] = np.take_along_axis(win, k[..., None], -1)[..., 0]
            arg[:, :, y, z] = flat[k]
    return out, arg


def max_pool2d_backward_ref(grad_out, argmax, x_shape):
    n, c, h, w = x_shape
    gx = np.zeros((n * c, h * w), dtype=grad_out.dtype)
    rows = np.arange(n * c).reshape(n * c, 1)
    np.add.at(gx, (rows, argmax.reshape(n * c, -1)), grad_out.reshape(n * c, -1))
    return gx.reshape(x_shape)


@jit(inline="always")
def _first_tap(start, d):
    """The smallest t >= 0 with start + t*d >= 0."""
    return 0 if start >= 0 else (-start + d - 1) // d


@jit(inline="always")
def _end_tap(start, k, d, n):
    """One past the largest t < k with start + t*d < n."""
    return 0 if start >= n else min(k, (n - 1 - start) // d + 1)


@jit()
def max_pool2d_nb(x, kh, kw, sh, sw, ph, pw, dh, dw, out, argmax):
    """NOTE: the compare feeds selects, not branches: on real data the branchy loop
    mispredicts about half the time and measured 3x slower."""
    h, w = x.shape[2], x.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    for b in range(x.shape[0]):
        for ch in range(x.shape[1]):
            for y in range(oh):
                r0 = y * sh - ph
                i0, i1 = _first_tap(r0, dh), _end_tap(r0, kh, dh, h)
                for z in range(ow):
                    c0 = z * sw - pw
                    j0, j1 = _first_tap(c0, dw), _end_tap(c0, kw, dw, w)
                    best = x[b, ch, r0 + i0 * dh, c0 + j0 * dw]
                    arg = (r0 + i0 * dh) * w + c0 + j0 * dw
                    for i in range(i0, i1):
                        r = r0 + i * dh
                        for j in range(j0, j1):
                            v = x[b, ch, r, c0 + j * dw]
                            take = (v > best) | (v != v)
                            best = v if take else best
                            arg = r * w + c0 + j * dw if take else arg
                    out[b, ch, y, z] = best
                    argmax[b, ch, y, z] = arg


@jit()
def max_pool2d_dense_nb(x, kh, kw, sh, sw, out, argmax):
    """max_pool2d_nb for windows that lie inside the input (no padding, no dilation, no
    window past the edge): fixed tap counts, 2x faster on LeNet's 2x2 pools."""
    w = x.shape[3]
    oh, ow = out.shape[2], out.shape[3]
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
                            take = (v > best) | (v != v)
                            best = v if take else best
                            arg = (r0 + i) * w + c0 + j if take else arg
                    op[y, z] = best
                    ap[y, z] = arg


@jit()
def max_pool2d_backward_nb(grad_out, argmax, out):
    """out: zeroed (N, C, H*W); repeated argmax (overlapping windows) adds up."""
    n, c, oh, ow = grad_out.shape
    for b in range(n):
        for ch in range(c):
            for y in range(oh):
                for z in range(ow):
                    out[b, ch, argmax[b, ch, y, z]] += grad_out[b, ch, y, z]


# -- average pooling -----------------------------------------------------------------------------
def _avg_window(y, k, s, p, n):
    """PyTorch's window along one axis: (start, end) clipped to the input, and the length
    clipped to the padded input (the count_include_pad divisor)."""
    start = y * s - p
    end = min(start + k, n + p)
    padded = end - start
    return max(start, 0), min(end, n), padded


def avg_pool2d_ref(x, kh, kw, sh, sw, ph=0, pw=0, ceil_mode=False, count_include_pad=True,
                   divisor_override=None):
    n, c, h, w = x.shape
    oh, ow = _sizes(x.shape, kh, kw, sh, sw, ph, pw, 1, 1, ceil_mode)
    out = np.zeros((n, c, oh, ow), x.dtype)
    for y in range(oh):
        r0, r1, rp = _avg_window(y, kh, sh, ph, h)
        for z in range(ow):
            c0, c1, cp = _avg_window(z, kw, sw, pw, w)
            if r0 >= r1 or c0 >= c1:
                continue
            div = divisor_override or (rp * cp if count_include_pad else (r1 - r0) * (c1 - c0))
            out[:, :, y, z] = x[:, :, r0:r1, c0:c1].sum(axis=(2, 3)) / x.dtype.type(div)
    return out


def avg_pool2d_backward_ref(grad_out, x_shape, kh, kw, sh, sw, ph=0, pw=0, ceil_mode=False,
                            count_include_pad=True, divisor_override=None):
    n, c, h, w = x_shape
    oh, ow = grad_out.shape[2:]
    gx = np.zeros(x_shape, dtype=grad_out.dtype)
    for y in range(oh):
        r0, r1, rp = _avg_window(y, kh, sh, ph, h)
        for z in range(ow):
            c0, c1, cp = _avg_window(z, kw, sw, pw, w)
            if r0 >= r1 or c0 >= c1:
                continue
            div = divisor_override or (rp * cp if count_include_pad else (r1 - r0) * (c1 - c0))
            gx[:, :, r0:r1, c0:c1] += (grad_out[:, :, y, z] / grad_out.dtype.type(div))[..., None,
                                                                                       None]
    return gx


@jit(inline="always")
def _avg_bounds(y, k, s, p, n):
    start = y * s - p
    end = min(start + k, n + p)
    return max(start, 0), min(end, n), end - start


@jit(fastmath={"reassoc", "contract"})
def avg_pool2d_nb(x, kh, kw, sh, sw, ph, pw, count_include_pad, divisor, out):
    """divisor > 0 overrides the window size (divisor_override)."""
    h, w = x.shape[2], x.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    for b in range(x.shape[0]):
        for ch in range(x.shape[1]):
            for y in range(oh):
                r0, r1, rp = _avg_bounds(y, kh, sh, ph, h)
                for z in range(ow):
                    c0, c1, cp = _avg_bounds(z, kw, sw, pw, w)
                    s = 0.0
                    for r in range(r0, r1):
                        for col in range(c0, c1):
                            s += x[b, ch, r, col]
                    cnt = (r1 - r0) * (c1 - c0)
                    div = divisor if divisor > 0 else (rp * cp if count_include_pad else cnt)
                    out[b, ch, y, z] = s / div if cnt > 0 else 0.0


@jit(fastmath={"reassoc", "contract"})
def avg_pool2d_dense_nb(x, kh, kw, sh, sw, inv, out):
    """avg_pool2d_nb for windows inside the input (no padding, none past the edge): fixed
    tap counts and one divisor (1.4x faster at LeNet's sizes)."""
    oh, ow = out.shape[2], out.shape[3]
    for b in range(x.shape[0]):
        for ch in range(x.shape[1]):
            xp = x[b, ch]
            op = out[b, ch]
            for y in range(oh):
                for z in range(ow):
                    s = 0.0
                    for i in range(kh):
                        for j in range(kw):
                            s += xp[y * sh + i, z * sw + j]
                    op[y, z] = s * inv


def _avg_backward_dense(grad_out, x_shape, kh, kw, sh, sw, inv):
    """The backward of avg_pool2d_dense_nb as strided numpy adds, one per tap. NOTE: measured
    1.45x faster than the scatter kernel below for windows inside the input."""
    oh, ow = grad_out.shape[2:]
    gx = np.zeros(x_shape, dtype=grad_out.dtype)
    g = grad_out * grad_out.dtype.type(inv)
    for i in range(kh):
        for j in range(kw):
            gx[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += g
    return gx


@jit()
def avg_pool2d_backward_nb(grad_out, kh, kw, sh, sw, ph, pw, count_include_pad, divisor, out):
    """out: zeroed (N, C, H, W); each window adds grad / divisor to its inputs (the writes
    run along an input row)."""
    h, w = out.shape[2], out.shape[3]
    n, c, oh, ow = grad_out.shape
    for b in range(n):
        for ch in range(c):
            for y in range(oh):
                r0, r1, rp = _avg_bounds(y, kh, sh, ph, h)
                for z in range(ow):
                    c0, c1, cp = _avg_bounds(z, kw, sw, pw, w)
                    cnt = (r1 - r0) * (c1 - c0)
                    div = divisor if divisor > 0 else (rp * cp if count_include_pad else cnt)
                    if cnt == 0:
                        continue
                    g = grad_out[b, ch, y, z] / div
                    for r in range(r0, r1):
                        for col in range(c0, c1):
                            out[b, ch, r, col] += g


# -- wrappers ------------------------------------------------------------------------------------
def _inside(x_shape, oh, ow, kh, kw, sh, sw, ph, pw):
    """True when every (undilated) window lies inside the input: no padding, and ceil_mode
    added no window past the edge."""
    return (ph, pw) == (0, 0) and (oh - 1) * sh + kh <= x_shape[2] \
        and (ow - 1) * sw + kw <= x_shape[3]



def max_pool2d_fast(x, kh, kw, sh, sw, ph=0, pw=0, dh=1, dw=1, ceil_mode=False):
    x = np.ascontiguousarray(x)
    if not numba_ok(x) or x.size == 0:
        return max_pool2d_ref(x, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode)
    n, c = x.shape[:2]
    oh, ow = _sizes(x.shape, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode)
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int64)
    if (dh, dw) == (1, 1) and _inside(x.shape, oh, ow, kh, kw, sh, sw, ph, pw):
        max_pool2d_dense_nb(x, kh, kw, sh, sw, out, argmax)
    else:
        max_pool2d_nb(x, kh, kw, sh, sw, ph, pw, dh, dw, out, argmax)
    return out, argmax


def max_pool2d_backward_fast(grad_out, argmax, x_shape):
    grad_out = np.ascontiguousarray(grad_out)
    if not numba_ok(grad_out):
        return max_pool2d_backward_ref(grad_out, argmax, x_shape)
    n, c, h, w = x_shape
    out = np.zeros((n, c, h * w), dtype=grad_out.dtype)
    max_pool2d_backward_nb(grad_out, np.ascontiguousarray(argmax, dtype=np.int64), out)
    return out.reshape(x_shape)


def avg_pool2d_fast(x, kh, kw, sh, sw, ph=0, pw=0, ceil_mode=False, count_include_pad=True,
                    divisor_override=None):
    x = np.ascontiguousarray(x)
    if not numba_ok(x):
        return avg_pool2d_ref(x, kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad,
                              divisor_override)
    n, c = x.shape[:2]
    oh, ow = _sizes(x.shape, kh, kw, sh, sw, ph, pw, 1, 1, ceil_mode)
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    if _inside(x.shape, oh, ow, kh, kw, sh, sw, ph, pw):
        avg_pool2d_dense_nb(x, kh, kw, sh, sw, 1.0 / (divisor_override or kh * kw), out)
    else:
        avg_pool2d_nb(x, kh, kw, sh, sw, ph, pw, bool(count_include_pad),
                      int(divisor_override or 0), out)
    return out


def avg_pool2d_backward_fast(grad_out, x_shape, kh, kw, sh, sw, ph=0, pw=0, ceil_mode=False,
                             count_include_pad=True, divisor_override=None):
    grad_out = np.ascontiguousarray(grad_out)
    if not numba_ok(grad_out):
        return avg_pool2d_backward_ref(grad_out, x_shape, kh, kw, sh, sw, ph, pw, ceil_mode,
                                       count_include_pad, divisor_override)
    oh, ow = grad_out.shape[2:]
    if _inside(x_shape, oh, ow, kh, kw, sh, sw, ph, pw):
        return _avg_backward_dense(grad_out, x_shape, kh, kw, sh, sw,
                                   1.0 / (divisor_override or kh * kw))
    out = np.zeros(x_shape, dtype=grad_out.dtype)
    avg_pool2d_backward_nb(grad_out, kh, kw, sh, sw, ph, pw, bool(count_include_pad),
                           int(divisor_override or 0), out)
    return out
