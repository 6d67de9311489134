"""CPU kernels for the stride-1 3x3 convolution (NCHW, groups 1, any dilation, padding up to
twice the dilation), the layer of CIFAR ResNets and VGGs, forward and weight gradient; the
input gradient is the same forward kernel on the output gradient (see ``cpu_kernels_conv``).

The samples of a block are laid out as flat zero-padded planes, one per channel:
``xp[c, b * plane + y * WP + z]``, WP = OW + 2 dw. An output position q of the block reads the
nine taps ``xp[c, q + i dh WP + j dw]``, so one pass over q is nine long, contiguous
multiply-adds that LLVM vectorises; positions with z >= OW or y >= OH are computed and
dropped (their share: (WP HP) / (OW OH) - 1, 13% at 32x32, 27% at 16x16). Each pass makes two
output channels from one read of the nine input vectors (four measured slower: the 36 weights
no longer stay in registers).

NOTE: the indices are uint64: with signed ones Numba adds the negative-index wrap-around to
each load and LLVM turns the nine loads into gathers (measured 3-5x slower).

The numpy reference is ``cpu_kernels_conv.conv2d_ref`` (and its backward references), which
the tests compare these kernels with.
"""

from __future__ import annotations

import numpy as np

from .cpu_kernels import jit

_FM = {"reassoc", "contract"}

# Samples per block: about this many flat positions per pass (the two accumulator rows and
# the nine input rows stay in L1/L2). NOTE: measured on the project machine at batch 64:
# 1 sample of 32x32 (1,156 positions), 2-4 of 16x16, 8 of 8x8 were the fastest.
POSITIONS_PER_BLOCK = 1200


def applies(x_shape, w_shape, stride, pads, dilation, groups) -> bool:
    """True when these kernels compute this convolution: 3x3, stride 1, one group, every
    padding between 0 and twice the dilation (so the input gradient is such a conv too)."""
    (dh, dw), (pt, pb, pl, pr) = dilation, pads
    return (tuple(w_shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and groups == 1
            and 0 <= pt <= 2 * dh and 0 <= pb <= 2 * dh and 0 <= pl <= 2 * dw
            and 0 <= pr <= 2 * dw)


def block_samples(oh, ow, dh, dw) -> int:
    return max(1, POSITIONS_PER_BLOCK // ((oh + 2 * dh) * (ow + 2 * dw)))


@jit()
def _pad_block(x, b0, b1, pt, pl, wp, plane, xp):
    """xp[c, (b - b0) * plane + (y + pt) * wp + z + pl] = x[b, c, y, z], zeros elsewhere."""
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    xp[:] = 0
    for b in range(b0, b1):
        base = (b - b0) * plane
        for ci in range(c):
            for y in range(h):
                r = base + (y + pt) * wp + pl
                for z in range(w):
                    xp[ci, r + z] = x[b, ci, y, z]


@jit(fastmath=_FM)
def conv3x3_nb(x, w, pt, pl, dh, dw, nb, out):
    """out (N, O, OH, OW) = the convolution of x (N, C, H, W) with w (O, C, 3, 3), top and
    left padding pt, pl (the bottom and right padding follow from out's size)."""
    n, c = x.shape[0], x.shape[1]
    o = w.shape[0]
    oh, ow = out.shape[2], out.shape[3]
    wp = ow + 2 * dw
    plane = (oh + 2 * dh) * wp
    xp = np.empty((c, nb * plane + 2 * dh * wp + 2 * dw), x.dtype)  # a tail for the last reads
    acc = np.empty((2, nb * plane), x.dtype)
    s1, s2 = np.uint64(dw), np.uint64(2 * dw)
    r1, r2 = np.uint64(dh * wp), np.uint64(2 * dh * wp)
    for b0 in range(0, n, nb):
        b1 = min(n, b0 + nb)
        _pad_block(x, b0, b1, pt, pl, wp, plane, xp)
        m = (b1 - b0) * plane
        for o0 in range(0, o, 2):
            o1 = min(o0 + 1, o - 1)  # an odd last channel is computed twice
            a0, a1 = acc[0], acc[1]
            a0[:] = 0
            a1[:] = 0
            for ci in range(c):
                p = xp[ci]
                u0, u1, u2 = w[o0, ci, 0, 0], w[o0, ci, 0, 1], w[o0, ci, 0, 2]
                u3, u4, u5 = w[o0, ci, 1, 0], w[o0, ci, 1, 1], w[o0, ci, 1, 2]
                u6, u7, u8 = w[o0, ci, 2, 0], w[o0, ci, 2, 1], w[o0, ci, 2, 2]
                v0, v1, v2 = w[o1, ci, 0, 0], w[o1, ci, 0, 1], w[o1, ci, 0, 2]
                v3, v4, v5 = w[o1, ci, 1, 0], w[o1, ci, 1, 1], w[o1, ci, 1, 2]
                v6, v7, v8 = w[o1, ci, 2, 0], w[o1, ci, 2, 1], w[o1, ci, 2, 2]
                for qi in range(m):
                    q = np.uint64(qi)
                    x0, x1, x2 = p[q], p[q + s1], p[q + s2]
                    x3, x4, x5 = p[q + r1], p[q + r1 + s1], p[q + r1 + s2]
                    x6, x7, x8 = p[q + r2], p[q + r2 + s1], p[q + r2 + s2]
                    a0[q] += (u0 * x0 + u1 * x1 + u2 * x2 + u3 * x3 + u4 * x4 + u5 * x5
                              + u6 * x6 + u7 * x7 + u8 * x8)
                    a1[q] += (v0 * x0 + v1 * x1 + v2 * x2 + v3 * x3 + v4 * x4 + v5 * x5
                              + v6 * x6 + v7 * x7 + v8 * x8)
            for b in range(b0, b1):
                base = (b - b0) * plane
                for y in range(oh):
                    r = base + y * wp
                    for z in range(ow):
                        out[b, o0, y, z] = a0[r + z]
                        out[b, o1, y, z] = a1[r + z]


@jit()
def _pad_grad(g, b0, b1, o0, o1, wp, plane, gp):
    """gp[k, (b - b0) * plane + y * wp + z] = g[b, (o0, o1)[k], y, z]; the dropped positions
    stay zero (they take no part in the weight gradient)."""
    oh, ow = g.shape[2], g.shape[3]
    gp[:] = 0
    for b in range(b0, b1):
        base = (b - b0) * plane
        for y in range(oh):
            r = base + y * wp
            for z in range(ow):
                gp[0, r + z] = g[b, o0, y, z]
                gp[1, r + z] = g[b, o1, y, z]


@jit(fastmath=_FM)
def _dot18(p, g0, g1, m, s1, s2, r1, r2, a0, a1, both):
    """a0[k] += sum_q g0[q] p[q + off_k], a1 likewise with g1, for the nine tap offsets."""
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = t8 = p.dtype.type(0)
    e0 = e1 = e2 = e3 = e4 = e5 = e6 = e7 = e8 = p.dtype.type(0)
    for qi in range(m):
        q = np.uint64(qi)
        d0 = g0[q]
        d1 = g1[q]
        x0, x1, x2 = p[q], p[q + s1], p[q + s2]
        x3, x4, x5 = p[q + r1], p[q + r1 + s1], p[q + r1 + s2]
        x6, x7, x8 = p[q + r2], p[q + r2 + s1], p[q + r2 + s2]
        t0 += d0 * x0
        t1 += d0 * x1
        t2 += d0 * x2
        t3 += d0 * x3
        t4 += d0 * x4
        t5 += d0 * x5
        t6 += d0 * x6
        t7 += d0 * x7
        t8 += d0 * x8
        e0 += d1 * x0
        e1 += d1 * x1
        e2 += d1 * x2
        e3 += d1 * x3
        e4 += d1 * x4
        e5 += d1 * x5
        e6 += d1 * x6
        e7 += d1 * x7
        e8 += d1 * x8
    a0[0] += t0
    a0[1] += t1
    a0[2] += t2
    a0[3] += t3
    a0[4] += t4
    a0[5] += t5
    a0[6] += t6
    a0[7] += t7
    a0[8] += t8
    if both:
        a1[0] += e0
        a1[1] += e1
        a1[2] += e2
        a1[3] += e3
        a1[4] += e4
        a1[5] += e5
        a1[6] += e6
        a1[7] += e7
        a1[8] += e8


@jit(fastmath=_FM)
def conv3x3_backward_weight_nb(x, g, pt, pl, dh, dw, nb, out):
    """out (O, C, 3, 3) = the weight gradient of conv3x3_nb for output gradient g: per block
    and pair of output channels, 18 long dot products (accumulated over blocks in float64).
    NOTE: a dropped position of g is zero, but it still multiplies an input value: an inf or
    nan in x there makes the gradient nan, where PyTorch's would not read it."""
    n, c = x.shape[0], x.shape[1]
    o = g.shape[1]
    oh, ow = g.shape[2], g.shape[3]
    wp = ow + 2 * dw
    plane = (oh + 2 * dh) * wp
    xp = np.empty((c, nb * plane + 2 * dh * wp + 2 * dw), x.dtype)
    gp = np.empty((2, nb * plane), x.dtype)
    acc = np.zeros((o, c, 9))
    s1, s2 = np.uint64(dw), np.uint64(2 * dw)
    r1, r2 = np.uint64(dh * wp), np.uint64(2 * dh * wp)
    for b0 in range(0, n, nb):
        b1 = min(n, b0 + nb)
        _pad_block(x, b0, b1, pt, pl, wp, plane, xp)
        m = (b1 - b0) * plane
        for o0 in range(0, o, 2):
            o1 = min(o0 + 1, o - 1)
            _pad_grad(g, b0, b1, o0, o1, wp, plane, gp)
            g0, g1 = gp[0], gp[1]
            for ci in range(c):
                _dot18(xp[ci], g0, g1, m, s1, s2, r1, r2, acc[o0, ci], acc[o1, ci], o1 != o0)
    for oc in range(o):
        for ci in range(c):
            for k in range(9):
                out[oc, ci, k // 3, k % 3] = acc[oc, ci, k]
