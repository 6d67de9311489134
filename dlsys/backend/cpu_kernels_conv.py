"""CPU kernels for 2-D convolution (NCHW, cross-correlation as PyTorch), any stride, padding
(top, bottom, left, right), dilation and groups.

``*_ref`` are the numpy references (any float dtype and layout); the Numba kernels (``*_nb``)
work on compact float32/float64 arrays; ``conv2d_fast`` and the two backward ``*_fast``
functions route between three implementations (see ``conv_route``):

- ``gemm``: im2col of a block of samples into a (C*kh*kw, block*L) column matrix, then one
  GEMM per group (BLAS) for the whole block, L = OH*OW output positions per sample.
- ``3x3``: the stride-1 3x3 kernels of ``cpu_kernels_conv3x3`` (nine taps per pass over flat
  padded planes, no column matrix): the input and weight gradients always, the forward for
  planes of at least FUSED_MIN_POSITIONS outputs.
- ``direct``: Numba loops for depthwise and other convs whose per-group GEMM would be too
  small for BLAS to pay off: at stride 1 each tap is one long multiply-add over a flat padded
  plane (``conv2d_flat_nb``, whose input gradient is a stride-1 conv too); other strides take
  row loops.

NOTE: blocks instead of one im2col of the whole batch: the columns are kh*kw times the input
(38 MB for ResNet's 16-channel 3x3 layer at batch 64), so a whole-batch im2col streams them
through DRAM twice; one whole-batch GEMM measured 1.3-2x slower for forward + backward than
GEMMs over blocks of ~COLS_PER_BLOCK output positions, whose columns stay in L2
(benchmarks/nn_ops.py --block). The backward recomputes the columns block by block instead of
keeping them (memory: the input, as PyTorch saves).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import cpu_kernels_conv3x3 as K3
from .cpu_kernels import jit, numba_ok
from .device import conv_out_size as out_size

# NOTE: measured on the project machine (benchmarks/nn_ops.py --block): 256-1024 output
# positions per block (512: one sample at 32x32, 8 at 8x8) were the fastest for ResNet's
# 16..64-channel layers, forward and backward; 2048 and more were slower (the columns leave
# L2, and the blocks of the whole batch were 1.3-2x slower).
COLS_PER_BLOCK = 512
# Per-group GEMMs smaller than this (rows of the weight x reduction length) take the direct
# kernel: a depthwise 3x3 conv is a (1, 9) @ (9, L) GEMM per channel. NOTE: measured at
# (64, 32, 16, 16) 3x3, forward + backward: direct 3.5x faster at 9 (depthwise), 1.3x at 36,
# 1.6x slower at 144; LeNet's first conv (150) is 2.7x faster by GEMM.
MIN_GEMM_WORK = 64
# NOTE: measured at batch 64, 16..64 channels (forward / input gradient / weight gradient,
# ms, fused vs im2col + GEMM, one thread, the machine under load): 32x32 9.8/10.0/12.9 vs
# 19.7/18.8/33.0; 16x16 14.0/17.2/9.1 vs 12.3/25.5/19.5; 8x8 15.0/10.6/10.4 vs
# 10.2/21.4/10.4. The forward's GEMM wins on small planes (the dropped positions of the flat
# planes are 27-56% there), the gradients' never loses.
FUSED_MIN_POSITIONS = 256


def _geometry(x_shape, w_shape, stride, pads, dilation):
    """(OH, OW) of the convolution."""
    (sh, sw), (pt, pb, pl, pr), (dh, dw) = stride, pads, dilation
    return (out_size(x_shape[2], w_shape[2], sh, pt, pb, dh),
            out_size(x_shape[3], w_shape[3], sw, pl, pr, dw))


# -- numpy references ---------------------------------------------------------------------------
def im2col_ref(x, kh, kw, stride, pads, dilation):
    """(N, C, H, W) -> (N*OH*OW, C*kh*kw): rows (n, oh, ow), columns (c, i, j)."""
    (sh, sw), (pt, pb, pl, pr), (dh, dw) = stride, pads, dilation
    n, c, h, w = x.shape
    oh, ow = out_size(h, kh, sh, pt, pb, dh), out_size(w, kw, sw, pl, pr, dw)
    # NOTE: pad by at least what the windows reach (a strided conv may not reach pb/pr)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, max(pb, 0)), (pl, max(pr, 0))))
    s0, s1, s2, s3 = xp.strides
    win = as_strided(xp, (n, oh, ow, c, kh, kw),
                     (s0, s2 * sh, s3 * sw, s1, s2 * dh, s3 * dw), writeable=False)
    return win.reshape(n * oh * ow, c * kh * kw)


def col2im_ref(cols, x_shape, kh, kw, stride, pads, dilation):
    """The adjoint of im2col_ref: columns scatter-added back into an (N, C, H, W) array."""
    (sh, sw), (pt, pb, pl, pr), (dh, dw) = stride, pads, dilation
    n, c, h, w = x_shape
    oh, ow = out_size(h, kh, sh, pt, pb, dh), out_size(w, kw, sw, pl, pr, dw)
    hp = max(h + pt + pb, pt + (oh - 1) * sh + (kh - 1) * dh + 1)
    wp = max(w + pl + pr, pl + (ow - 1) * sw + (kw - 1) * dw + 1)
    out = np.zeros((n, c, hp, wp), dtype=cols.dtype)
    cv = cols.reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)  # n c kh kw oh ow
    for i in range(kh):
        for j in range(kw):
            out[:, :, i * dh:i * dh + sh * oh:sh, j * dw:j * dw + sw * ow:sw] += cv[:, :, i, j]
    return np.ascontiguousarray(out[:, :, pt:pt + h, pl:pl + w])


def _split(cols, n, groups):
    """(N*L, C*kh*kw) columns -> (G, N*L, Ck/G)."""
    return cols.reshape(cols.shape[0], groups, -1).transpose(1, 0, 2)


def conv2d_ref(x, w, stride, pads, dilation, groups):
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    oh, ow = _geometry(x.shape, w.shape, stride, pads, dilation)
    cols = _split(im2col_ref(x, kh, kw, stride, pads, dilation), n, groups)  # G, NL, Ckg
    wg = w.reshape(groups, o // groups, cg * kh * kw)
    out = np.matmul(cols, wg.transpose(0, 2, 1))  # G, NL, Og
    return np.ascontiguousarray(out.reshape(groups, n, oh * ow, o // groups)
                                .transpose(1, 0, 3, 2).reshape(n, o, oh, ow))


def _g_split(g, groups):
    """(N, O, OH, OW) output gradient -> (G, N*L, O/G)."""
    n, o = g.shape[:2]
    return g.reshape(n, groups, o // groups, -1).transpose(1, 0, 3, 2).reshape(groups, -1,
                                                                             o // groups)


def conv2d_backward_input_ref(g, w, x_shape, stride, pads, dilation, groups):
    o, cg, kh, kw = w.shape
    wg = w.reshape(groups, o // groups, cg * kh * kw)
    dcols = np.matmul(_g_split(g, groups), wg)  # G, NL, Ckg
    dcols = dcols.transpose(1, 0, 2).reshape(dcols.shape[1], -1)
    return col2im_ref(np.ascontiguousarray(dcols), x_shape, kh, kw, stride, pads, dilation)


def conv2d_backward_weight_ref(x, g, w_shape, stride, pads, dilation, groups):
    n = x.shape[0]
    o, cg, kh, kw = w_shape
    cols = _split(im2col_ref(x, kh, kw, stride, pads, dilation), n, groups)  # G, NL, Ckg
    dw = np.matmul(_g_split(g, groups).transpose(0, 2, 1), cols)  # G, Og, Ckg
    return dw.reshape(w_shape)


# -- Numba kernels ------------------------------------------------------------------------------
@jit(inline="always")
def _valid(n_out, s, p, k_off, n_in):
    """The output positions z in [lo, hi) whose input index z * s - p + k_off is in [0, n_in)."""
    t = p - k_off
    lo = 0 if t <= 0 else (t + s - 1) // s
    hi = (n_in - 1 + t) // s + 1 if n_in - 1 + t >= 0 else 0
    return lo, max(lo, min(hi, n_out))


# NOTE: plain element indexing throughout: a slice (row view) inside these loops costs a
# reference-count update per view, which measured slower than the copies themselves. In
# im2col the bounds test is a select inside the row loop: that measured 1.5-4x faster than
# splitting the row into zero / copy / zero runs.
@jit()
def im2col_block_nb(x, b0, b1, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, out):
    """out (C*kh*kw, (b1-b0)*OH*OW): row (c, i, j) holds, for every sample of the block and
    output position (y, z), x[b, c, y*sh - pt + i*dh, z*sw - pl + j*dw] (0 outside)."""
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    L = oh * ow
    for b in range(b0, b1):
        col0 = (b - b0) * L
        for ch in range(c):
            for i in range(kh):
                for j in range(kw):
                    r = (ch * kh + i) * kw + j
                    off = j * dw - pl
                    for y in range(oh):
                        iy = y * sh - pt + i * dh
                        base = col0 + y * ow
                        if iy < 0 or iy >= h:
                            for z in range(ow):
                                out[r, base + z] = 0
                            continue
                        if sw == 1:
                            for z in range(ow):
                                ix = z + off
                                out[r, base + z] = x[b, ch, iy, ix] if 0 <= ix < w else 0
                        else:
                            for z in range(ow):
                                ix = z * sw + off
                                out[r, base + z] = x[b, ch, iy, ix] if 0 <= ix < w else 0


@jit()
def col2im_block_nb(cols, b0, b1, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, out):
    """The adjoint of im2col_block_nb: out[b0:b1] (N, C, H, W) = the columns summed back
    (the block's samples of out are overwritten). NOTE: a gather per input row (each element
    sums the column entries that read it), 1.5-2x faster than scattering column rows."""
    c, h, w = out.shape[1], out.shape[2], out.shape[3]
    L = oh * ow
    for b in range(b0, b1):
        col0 = (b - b0) * L
        for ch in range(c):
            for iy in range(h):
                for ix in range(w):
                    out[b, ch, iy, ix] = 0
                for i in range(kh):
                    yy = iy + pt - i * dh
                    if yy < 0 or yy % sh != 0 or yy // sh >= oh:
                        continue
                    base = col0 + (yy // sh) * ow
                    for j in range(kw):
                        r = (ch * kh + i) * kw + j
                        off = pl - j * dw
                        if sw == 1:
                            for ix in range(w):
                                zz = ix + off
                                out[b, ch, iy, ix] += cols[r, base + zz] if 0 <= zz < ow else 0
                        else:  # NOTE: the inputs that output z reads, no division per element
                            zlo, zhi = _valid(ow, sw, pl, j * dw, w)
                            for z in range(zlo, zhi):
                                out[b, ch, iy, z * sw - off] += cols[r, base + z]


@jit(fastmath={"reassoc", "contract"})
def conv2d_direct_nb(x, w, sh, sw, pt, pl, dh, dw, groups, out):
    """out (N, O, OH, OW) = the grouped convolution, one output row at a time (the inner loop
    runs along it, contiguous for stride 1)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    oh, ow = out.shape[2], out.shape[3]
    og = o // groups
    out[:] = 0
    for b in range(n):
        for oc in range(o):
            c0 = (oc // og) * cg
            for ci in range(cg):
                for i in range(kh):
                    ylo, yhi = _valid(oh, sh, pt, i * dh, h)
                    for j in range(kw):
                        zlo, zhi = _valid(ow, sw, pl, j * dw, wd)
                        wv = w[oc, ci, i, j]
                        off = j * dw - pl
                        for y in range(ylo, yhi):
                            iy = y * sh - pt + i * dh
                            for z in range(zlo, zhi):
                                out[b, oc, y, z] += wv * x[b, c0 + ci, iy, z * sw + off]


@jit(fastmath={"reassoc", "contract"})
def conv2d_direct_backward_input_nb(g, w, sh, sw, pt, pl, dh, dw, groups, out):
    """out (N, C, H, W) = the gradient of conv2d_direct_nb's input for output gradient g."""
    n, c, h, wd = out.shape
    o, cg, kh, kw = w.shape
    oh, ow = g.shape[2], g.shape[3]
    og = o // groups
    out[:] = 0
    for b in range(n):
        for oc in range(o):
            c0 = (oc // og) * cg
            for ci in range(cg):
                for i in range(kh):
                    ylo, yhi = _valid(oh, sh, pt, i * dh, h)
                    for j in range(kw):
                        zlo, zhi = _valid(ow, sw, pl, j * dw, wd)
                        wv = w[oc, ci, i, j]
                        off = j * dw - pl
                        for y in range(ylo, yhi):
                            iy = y * sh - pt + i * dh
                            for z in range(zlo, zhi):
                                out[b, c0 + ci, iy, z * sw + off] += wv * g[b, oc, y, z]


@jit(fastmath={"reassoc", "contract"})
def conv2d_direct_backward_weight_nb(x, g, sh, sw, pt, pl, dh, dw, groups, out):
    """out (O, C/G, kh, kw) = the gradient of conv2d_direct_nb's weight (float64 sums)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = out.shape
    oh, ow = g.shape[2], g.shape[3]
    og = o // groups
    for oc in range(o):
        c0 = (oc // og) * cg
        for ci in range(cg):
            for i in range(kh):
                ylo, yhi = _valid(oh, sh, pt, i * dh, h)
                for j in range(kw):
                    zlo, zhi = _valid(ow, sw, pl, j * dw, wd)
                    off = j * dw - pl
                    acc = 0.0
                    for b in range(n):
                        for y in range(ylo, yhi):
                            iy = y * sh - pt + i * dh
                            for z in range(zlo, zhi):
                                acc += g[b, oc, y, z] * x[b, c0 + ci, iy, z * sw + off]
                    out[oc, ci, i, j] = acc


# NOTE: the stride-1 direct kernels work on flat padded planes: with the input plane copied
# into a zeroed (hp, wp) scratch, tap (i, j) of every output position q = y * wp + z reads the
# scratch at q + i*dh*wp + j*dw, so each tap is one long contiguous multiply-add over the
# plane (LLVM vectorises it; rows of 8-32 would not be) and the columns z >= ow are computed
# and dropped. 3-6x faster than the row loops above for depthwise convs.
@jit()
def _pad_planes(x, b, c0, pt, pl, xp, wp):
    """xp (cg, hp*wp) = planes c0.. of sample b at offset (pt, pl) in zeros (a negative
    offset crops)."""
    h, w = x.shape[2], x.shape[3]
    hp = xp.shape[1] // wp
    for ci in range(xp.shape[0]):
        for q in range(xp.shape[1]):
            xp[ci, q] = 0
        for y in range(max(0, -pt), min(h, hp - pt)):
            r = (y + pt) * wp + pl
            for z in range(max(0, -pl), min(w, wp - pl)):
                xp[ci, r + z] = x[b, c0 + ci, y, z]


@jit(fastmath={"reassoc", "contract"})
def conv2d_flat_nb(x, w, pt, pl, dh, dw, groups, out):
    """The stride-1 grouped convolution (any padding, dilation) on flat padded planes."""
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    oh, ow = out.shape[2], out.shape[3]
    og = o // groups
    wp = ow + (kw - 1) * dw
    L = oh * wp
    xp = np.empty((cg, (oh + (kh - 1) * dh + 1) * wp), x.dtype)  # NOTE: a spare row for the
    acc = np.empty(L, x.dtype)  # reads past the last row's end (columns that are dropped)
    for b in range(n):
        for gi in range(groups):
            _pad_planes(x, b, gi * cg, pt, pl, xp, wp)
            for oc in range(gi * og, (gi + 1) * og):
                for q in range(L):
                    acc[q] = 0
                for ci in range(cg):
                    for i in range(kh):
                        for j in range(kw):
                            wv = w[oc, ci, i, j]
                            s = i * dh * wp + j * dw
                            for q in range(L):
                                acc[q] += wv * xp[ci, s + q]
                for y in range(oh):
                    for z in range(ow):
                        out[b, oc, y, z] = acc[y * wp + z]


@jit(fastmath={"reassoc", "contract"})
def conv2d_flat_backward_weight_nb(x, g, pt, pl, dh, dw, groups, out):
    """The weight gradient of conv2d_flat_nb: one long dot product per tap and sample."""
    n = x.shape[0]
    o, cg, kh, kw = out.shape
    oh, ow = g.shape[2], g.shape[3]
    og = o // groups
    wp = ow + (kw - 1) * dw
    L = oh * wp
    xp = np.empty((cg, (oh + (kh - 1) * dh + 1) * wp), x.dtype)
    gp = np.zeros(L, x.dtype)  # NOTE: columns z >= ow stay zero: they take no part
    acc = np.zeros((o, cg, kh, kw))
    for b in range(n):
        for gi in range(groups):
            _pad_planes(x, b, gi * cg, pt, pl, xp, wp)
            for oc in range(gi * og, (gi + 1) * og):
                for y in range(oh):
                    for z in range(ow):
                        gp[y * wp + z] = g[b, oc, y, z]
                for ci in range(cg):
                    for i in range(kh):
                        for j in range(kw):
                            s = i * dh * wp + j * dw
                            t = 0.0
                            for q in range(L):
                                t += gp[q] * xp[ci, s + q]
                            acc[oc, ci, i, j] += t
    for oc in range(o):
        for ci in range(cg):
            for i in range(kh):
                for j in range(kw):
                    out[oc, ci, i, j] = acc[oc, ci, i, j]


def _transposed_weight(w, groups):
    """The weight of the stride-1 convolution that is conv2d's input gradient: flipped taps,
    input and output channels swapped within each group: (C, O/G, kh, kw)."""
    o, cg, kh, kw = w.shape
    wt = w.reshape(groups, o // groups, cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return np.ascontiguousarray(wt.reshape(groups * cg, o // groups, kh, kw))


# -- routing and the block loops -----------------------------------------------------------------
def conv_route(x_shape, w_shape, groups, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1),
               pass_="forward"):
    """"3x3", "gemm" or "direct" for the forward, "input" or "weight" pass (see the module
    docstring)."""
    o, cg, kh, kw = w_shape
    if K3.applies(x_shape, w_shape, stride, pads, dilation, groups):
        oh, ow = _geometry(x_shape, w_shape, stride, pads, dilation)
        if pass_ != "forward" or oh * ow >= FUSED_MIN_POSITIONS:
            return "3x3"
    return "gemm" if (o // groups) * cg * kh * kw >= MIN_GEMM_WORK else "direct"


def _conv3x3(x, w, pads, dilation, out):
    (pt, _, pl, _), (dh, dw) = pads, dilation
    nb = K3.block_samples(out.shape[2], out.shape[3], dh, dw)
    K3.conv3x3_nb(x, w, pt, pl, dh, dw, nb, out)
    return out


def _blocks(n, L):
    nb = max(1, min(n, COLS_PER_BLOCK // max(L, 1)))
    return [(b, min(n, b + nb)) for b in range(0, n, nb)]


def _args(stride, pads, dilation):
    """The ints the kernels take: (sh, sw, pt, pl, dh, dw) (the bottom and right padding only
    enter through the output size)."""
    (sh, sw), (pt, _, pl, _), (dh, dw) = stride, pads, dilation
    return sh, sw, pt, pl, dh, dw


def conv2d_fast(x, w, stride, pads, dilation, groups):
    """conv2d_ref's result; Numba + BLAS for compact float32/float64 inputs."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    if not numba_ok(x, w):
        return conv2d_ref(x, w, stride, pads, dilation, groups)
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    oh, ow = _geometry(x.shape, w.shape, stride, pads, dilation)
    sh, sw, pt, pl, dh, dw = _args(stride, pads, dilation)
    out = np.empty((n, o, oh, ow), x.dtype)
    if out.size == 0:
        return out
    route = conv_route(x.shape, w.shape, groups, stride, pads, dilation)
    if route == "3x3":
        return _conv3x3(x, w, pads, dilation, out)
    if route == "direct":
        if (sh, sw) == (1, 1):
            conv2d_flat_nb(x, w, pt, pl, dh, dw, groups, out)
        else:
            conv2d_direct_nb(x, w, sh, sw, pt, pl, dh, dw, groups, out)
        return out
    L, ckg, og = oh * ow, cg * kh * kw, o // groups
    wg = w.reshape(groups, og, ckg)
    blocks = _blocks(n, L)
    cols = np.empty((ckg * groups, (blocks[0][1] - blocks[0][0]) * L), x.dtype)
    res = np.empty((o, cols.shape[1]), x.dtype)
    for b0, b1 in blocks:
        nb = b1 - b0
        cb = cols[:, :nb * L]
        im2col_block_nb(x, b0, b1, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, cb)
        # NOTE: one sample: the GEMM writes its NCHW plane in place; several: (O, nb, L)
        # goes through a small buffer, reordered to (nb, O, L) while it is in cache
        r = out[b0].reshape(o, L) if nb == 1 else res[:, :nb * L]
        for gi in range(groups):
            np.matmul(wg[gi], cb[gi * ckg:(gi + 1) * ckg], out=r[gi * og:(gi + 1) * og])
        if nb > 1:
            out[b0:b1].reshape(nb, o, L)[...] = r.reshape(o, nb, L).transpose(1, 0, 2)
    return out


def _g_block(g, b0, b1, buf):
    """The output gradient of samples b0:b1 as (O, nb*L) (a view for one sample)."""
    nb, o = b1 - b0, g.shape[1]
    if nb == 1:
        return g[b0].reshape(o, -1)
    L = g.shape[2] * g.shape[3]
    gb = buf[:, :nb * L]
    gb.reshape(o, nb, L)[...] = g[b0:b1].reshape(nb, o, L).transpose(1, 0, 2)
    return gb


def conv2d_backward_input_fast(g, w, x_shape, stride, pads, dilation, groups):
    g, w = np.ascontiguousarray(g), np.ascontiguousarray(w)
    if not numba_ok(g, w):
        return conv2d_backward_input_ref(g, w, x_shape, stride, pads, dilation, groups)
    sh, sw, pt, pl, dh, dw = _args(stride, pads, dilation)
    out = np.empty(x_shape, g.dtype)
    if out.size == 0 or g.size == 0:
        out[...] = 0
        return out
    route = conv_route(x_shape, w.shape, groups, stride, pads, dilation, "input")
    if route == "3x3":  # the stride-1 conv of g with the flipped, transposed weight
        (pt, pb, pl, pr), (dh, dw) = pads, dilation
        return _conv3x3(g, _transposed_weight(w, 1),
                        (2 * dh - pt, 2 * dh - pb, 2 * dw - pl, 2 * dw - pr), dilation, out)
    if route == "direct":
        kh, kw = w.shape[2:]
        if (sh, sw) == (1, 1):  # the input gradient is a stride-1 conv of g
            conv2d_flat_nb(g, _transposed_weight(w, groups), dh * (kh - 1) - pt,
                           dw * (kw - 1) - pl, dh, dw, groups, out)
        else:
            conv2d_direct_backward_input_nb(g, w, sh, sw, pt, pl, dh, dw, groups, out)
        return out
    n, o, oh, ow = g.shape
    _, cg, kh, kw = w.shape
    L, ckg, og = oh * ow, cg * kh * kw, o // groups
    wt = np.ascontiguousarray(w.reshape(groups, og, ckg).transpose(0, 2, 1))  # G, Ckg, Og
    blocks = _blocks(n, L)
    width = (blocks[0][1] - blocks[0][0]) * L
    dcols = np.empty((ckg * groups, width), g.dtype)
    gbuf = np.empty((o, width), g.dtype)
    for b0, b1 in blocks:
        gb = _g_block(g, b0, b1, gbuf)
        dc = dcols[:, :gb.shape[1]]
        for gi in range(groups):
            np.matmul(wt[gi], gb[gi * og:(gi + 1) * og], out=dc[gi * ckg:(gi + 1) * ckg])
        col2im_block_nb(dc, b0, b1, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, out)
    return out


def conv2d_backward_weight_fast(x, g, w_shape, stride, pads, dilation, groups):
    x, g = np.ascontiguousarray(x), np.ascontiguousarray(g)
    if not numba_ok(x, g):
        return conv2d_backward_weight_ref(x, g, w_shape, stride, pads, dilation, groups)
    sh, sw, pt, pl, dh, dw = _args(stride, pads, dilation)
    route = conv_route(x.shape, w_shape, groups, stride, pads, dilation, "weight")
    if route == "3x3":
        out = np.zeros(w_shape, x.dtype)
        if g.size:
            nb = K3.block_samples(g.shape[2], g.shape[3], dh, dw)
            K3.conv3x3_backward_weight_nb(x, g, pt, pl, dh, dw, nb, out)
        return out
    if route == "direct":
        out = np.empty(w_shape, x.dtype)
        if (sh, sw) == (1, 1):
            conv2d_flat_backward_weight_nb(x, g, pt, pl, dh, dw, groups, out)
        else:
            conv2d_direct_backward_weight_nb(x, g, sh, sw, pt, pl, dh, dw, groups, out)
        return out
    n, o, oh, ow = g.shape
    _, cg, kh, kw = w_shape
    L, ckg, og = oh * ow, cg * kh * kw, o // groups
    # NOTE: dW^T = cols @ g^T, (C*kh*kw, O) per group: this orientation of the long-K GEMM
    # measured 1.5-2x faster than g @ cols^T (OpenBLAS, 16..64 channels)
    acc = np.zeros((groups, ckg, og), x.dtype)
    if g.size == 0:
        return np.zeros(w_shape, x.dtype)
    part = np.empty((ckg, og), x.dtype)
    blocks = _blocks(n, L)
    width = (blocks[0][1] - blocks[0][0]) * L
    cols = np.empty((ckg * groups, width), x.dtype)
    gbuf = np.empty((o, width), x.dtype)
    for b0, b1 in blocks:
        gb = _g_block(g, b0, b1, gbuf)
        cb = cols[:, :gb.shape[1]]
        im2col_block_nb(x, b0, b1, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, cb)
        for gi in range(groups):
            np.matmul(cb[gi * ckg:(gi + 1) * ckg], gb[gi * og:(gi + 1) * og].T, out=part)
            acc[gi] += part
    return np.ascontiguousarray(acc.transpose(0, 2, 1)).reshape(w_shape)
