"""Convolution and pooling: every CPU kernel against its numpy reference (both routes, every
geometry option), the device methods on cpu and cuda (the simulator in CI), gradcheck of the
ops (first and second order, non-contiguous inputs), the modules and the input checks."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import gradcheck, gradgradcheck

import dlsys as ds
import dlsys.nn.functional as F
from dlsys.backend import cpu_kernels_conv as KC
from dlsys.backend import cpu_kernels_pool as KP

FLOATS = [np.float32, np.float64]
DEVICES = ["cpu"] + (["cuda"] if ds.cuda_is_available() else [])


def tol(dt):
    return dict(rtol=2e-5, atol=2e-5) if dt == np.float32 else dict(rtol=1e-11, atol=1e-12)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def R(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape)


# (x shape, w shape, stride, pads (top, bottom, left, right), dilation, groups)
CONV = [
    ((2, 3, 7, 6), (4, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),   # gemm, "same"
    ((3, 4, 9, 8), (6, 2, 3, 2), (2, 1), (1, 1, 2, 2), (2, 1), 2),   # direct, groups
    ((2, 6, 5, 5), (6, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 6),   # depthwise
    ((2, 8, 6, 7), (8, 8, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),   # pointwise
    ((5, 16, 6, 5), (32, 16, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),  # gemm, strided
    ((3, 8, 8, 8), (16, 4, 4, 4), (1, 1), (1, 2, 2, 1), (1, 2), 2),  # gemm, asymmetric pads
    ((2, 32, 4, 4), (8, 16, 3, 3), (1, 2), (0, 0, 1, 1), (1, 1), 2),  # gemm groups, blocks
    ((2, 4, 6, 5), (4, 2, 2, 3), (1, 1), (3, 0, 1, 2), (2, 1), 2),   # direct, pad > kernel
    ((1, 3, 7, 7), (6, 1, 3, 3), (1, 1), (2, 1, 0, 2), (2, 2), 3),   # direct, dilated, asym
]


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("case", CONV)
def test_conv_kernels_match_references(rng, dt, case, monkeypatch):
    monkeypatch.setattr(KC, "COLS_PER_BLOCK", 40)  # several samples per block, several blocks
    _check_fast_against_references(rng, dt, case)


def _check_fast_against_references(rng, dt, case):
    """conv2d_fast and its two backward functions against the numpy references."""
    xs, ws, stride, pads, dil, groups = case
    x, w = rng.standard_normal(xs).astype(dt), rng.standard_normal(ws).astype(dt)
    out = KC.conv2d_fast(x, w, stride, pads, dil, groups)
    np.testing.assert_allclose(out, KC.conv2d_ref(x, w, stride, pads, dil, groups), **tol(dt))
    g = rng.standard_normal(out.shape).astype(dt)
    np.testing.assert_allclose(
        KC.conv2d_backward_input_fast(g, w, xs, stride, pads, dil, groups),
        KC.conv2d_backward_input_ref(g, w, xs, stride, pads, dil, groups), **tol(dt))
    np.testing.assert_allclose(
        KC.conv2d_backward_weight_fast(x, g, ws, stride, pads, dil, groups),
        KC.conv2d_backward_weight_ref(x, g, ws, stride, pads, dil, groups), **tol(dt))


def test_conv_routes_cover_both_kernels():
    routes = {KC.conv_route(c[0], c[1], c[5]) for c in CONV}
    assert routes == {"gemm", "direct"}
    assert KC.conv_route((1, 32, 8, 8), (32, 1, 3, 3), 32) == "direct"  # depthwise
    assert KC.conv_route((1, 16, 8, 8), (16, 16, 3, 3), 1) == "gemm"


# The stride-1 3x3 kernels (cpu_kernels_conv3x3): odd channel counts, dilation, asymmetric and
# zero padding, several samples per block with a partial last block.
CONV3X3 = [
    ((5, 3, 7, 6), (5, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((3, 4, 9, 8), (6, 4, 3, 3), (1, 1), (0, 2, 2, 0), (2, 1), 1),
    ((2, 2, 6, 6), (3, 2, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("case", CONV3X3)
def test_conv3x3_kernels_match_references(rng, dt, case, monkeypatch):
    from dlsys.backend import cpu_kernels_conv3x3 as K3

    xs, ws, stride, pads, dil, groups = case
    monkeypatch.setattr(KC, "FUSED_MIN_POSITIONS", 0)  # the forward too, at these small sizes
    monkeypatch.setattr(K3, "POSITIONS_PER_BLOCK", 200)  # 2-3 samples per block
    for p in ("forward", "input", "weight"):
        assert KC.conv_route(xs, ws, groups, stride, pads, dil, p) == "3x3"
    _check_fast_against_references(rng, dt, case)


def test_conv3x3_route_is_taken_only_where_it_applies():
    args = ((64, 16, 32, 32), (16, 16, 3, 3), 1)
    assert KC.conv_route(*args, (1, 1), (1, 1, 1, 1), (1, 1)) == "3x3"  # ResNet's conv
    assert KC.conv_route(*args, (2, 2), (1, 1, 1, 1), (1, 1)) == "gemm"  # strided
    assert KC.conv_route(*args, (1, 1), (3, 3, 3, 3), (1, 1)) == "gemm"  # pad > 2 x dilation
    assert KC.conv_route((64, 16, 8, 8), (16, 16, 3, 3), 1, (1, 1), (1, 1, 1, 1), (1, 1)) \
        == "gemm"  # a small plane: the forward's GEMM is faster
    assert KC.conv_route((64, 16, 8, 8), (16, 16, 3, 3), 1, (1, 1), (1, 1, 1, 1), (1, 1),
                         "input") == "3x3"
    assert KC.conv_route((64, 16, 32, 32), (16, 8, 3, 3), 2, (1, 1), (1, 1, 1, 1), (1, 1)) \
        == "gemm"  # groups


def _direct_conv(x, w, stride, pads, dil, groups):
    """A loop-per-output-position definition of the grouped, dilated cross-correlation."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (pt, pb, pl, pr), (dh, dw) = stride, pads, dil
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    og = o // groups
    out = np.zeros((n, o, oh, ow))
    for y in range(oh):
        for z in range(ow):
            rows = slice(y * sh, y * sh + dh * (kh - 1) + 1, dh)
            win = xp[:, :, rows, z * sw:z * sw + dw * (kw - 1) + 1:dw]
            for oc in range(o):
                gi = oc // og
                out[:, oc, y, z] = np.einsum("nchw,chw->n", win[:, gi * cg:(gi + 1) * cg], w[oc])
    return out


@pytest.mark.parametrize("case", CONV)
def test_conv_reference_is_the_textbook_definition(rng, case):
    xs, ws, stride, pads, dil, groups = case
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    np.testing.assert_allclose(KC.conv2d_ref(x, w, stride, pads, dil, groups),
                               _direct_conv(x, w, stride, pads, dil, groups), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("case", CONV[:3])
def test_im2col_block_kernels_are_adjoint_and_match_the_reference(rng, dt, case):
    xs, ws, stride, pads, dil, _ = case
    x = rng.standard_normal(xs).astype(dt)
    kh, kw = ws[2:]
    ref = KC.im2col_ref(x, kh, kw, stride, pads, dil)  # (N*L, C*kh*kw)
    n = xs[0]
    L = ref.shape[0] // n
    (sh, sw), (pt, _, pl, _), (dh, dw) = stride, pads, dil
    oh, ow = KC._geometry(xs, ws, stride, pads, dil)
    cols = np.empty((ref.shape[1], n * L), dt)
    KC.im2col_block_nb(x, 0, n, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, cols)
    np.testing.assert_array_equal(cols, ref.reshape(n, L, -1).transpose(2, 0, 1).reshape(-1,
                                                                                      n * L))
    c = rng.standard_normal(cols.shape).astype(dt)
    back = np.empty(xs, dt)
    KC.col2im_block_nb(c, 0, n, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, back)
    ref_back = KC.col2im_ref(np.ascontiguousarray(c.reshape(-1, n, L).transpose(1, 2, 0))
                             .reshape(n * L, -1), xs, kh, kw, stride, pads, dil)
    np.testing.assert_allclose(back, ref_back, **tol(dt))
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, back),
                               rtol=1e-4 if dt == np.float32 else 1e-11)


@pytest.mark.parametrize("device", DEVICES)
def test_device_conv_methods_agree_with_the_cpu_reference(device, rng):
    dev = ds.backend.as_device(device)
    for xs, ws, stride, pads, dil, groups in CONV[:3]:
        x, w = rng.standard_normal(xs), rng.standard_normal(ws)
        out = dev.conv2d(dev.from_numpy(x), dev.from_numpy(w), stride, pads, dil, groups)
        ref = KC.conv2d_ref(x, w, stride, pads, dil, groups)
        np.testing.assert_allclose(dev.to_numpy(out), ref, rtol=1e-12, atol=1e-12)
        g = rng.standard_normal(ref.shape)
        dx = dev.conv2d_backward_input(dev.from_numpy(g), dev.from_numpy(w), xs, stride, pads,
                                       dil, groups)
        np.testing.assert_allclose(
            dev.to_numpy(dx), KC.conv2d_backward_input_ref(g, w, xs, stride, pads, dil, groups),
            rtol=1e-12, atol=1e-12)
        dw = dev.conv2d_backward_weight(dev.from_numpy(x), dev.from_numpy(g), ws, stride, pads,
                                        dil, groups)
        np.testing.assert_allclose(
            dev.to_numpy(dw), KC.conv2d_backward_weight_ref(x, g, ws, stride, pads, dil, groups),
            rtol=1e-12, atol=1e-12)


def test_device_im2col_matches_the_reference(rng):
    dev = ds.cpu()
    x = rng.standard_normal((2, 3, 6, 5))
    cols = dev.im2col(x, 3, 2, (2, 1), (1, 0), (1, 2))
    assert cols.flags.c_contiguous
    np.testing.assert_array_equal(cols, KC.im2col_ref(x, 3, 2, (2, 1), (1, 1, 0, 0), (1, 2)))
    assert dev.col2im(cols, x.shape, 3, 2, (2, 1), (1, 0), (1, 2)).shape == x.shape


def test_float16_conv_is_computed_in_float32(rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float16)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float16)
    geom = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    out = ds.cpu().conv2d(x, w, *geom)
    assert out.dtype == np.float16
    ref = KC.conv2d_ref(x.astype(np.float32), w.astype(np.float32), *geom)
    np.testing.assert_array_equal(out, ref.astype(np.float16))


# -- pooling kernels -------------------------------------------------------------------------------
# (x shape, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode)
POOL = [((2, 3, 6, 6), 2, 2, 2, 2, 0, 0, 1, 1, False),
        ((1, 2, 7, 5), 3, 2, 2, 1, 0, 0, 1, 1, False),
        ((2, 1, 5, 5), 3, 3, 1, 1, 1, 1, 1, 1, False),
        ((1, 1, 4, 6), 1, 1, 1, 1, 0, 0, 1, 1, False),
        ((2, 2, 7, 8), 3, 3, 2, 2, 1, 1, 1, 1, True),
        ((1, 2, 9, 7), 3, 2, 2, 1, 1, 1, 2, 3, True),
        ((1, 1, 6, 6), 4, 4, 3, 3, 2, 2, 1, 1, True)]


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("case", POOL)
def test_max_pool_kernels_with_ties(rng, dt, case):
    xs, kh, kw, sh, sw, ph, pw, dh, dw, ceil = case
    x = rng.integers(0, 3, xs).astype(dt)  # NOTE: few distinct values: many ties
    out, am = KP.max_pool2d_fast(x, kh, kw, sh, sw, ph, pw, dh, dw, ceil)
    out_r, am_r = KP.max_pool2d_ref(x, kh, kw, sh, sw, ph, pw, dh, dw, ceil)
    np.testing.assert_array_equal(out, out_r)
    np.testing.assert_array_equal(am, am_r)  # first maximum in window order
    assert am.dtype == np.int64
    flat = x.reshape(xs[0], xs[1], -1)
    np.testing.assert_array_equal(np.take_along_axis(flat, am.reshape(*xs[:2], -1), 2),
                                  out.reshape(*xs[:2], -1))
    g = rng.standard_normal(out.shape).astype(dt)
    gx = KP.max_pool2d_backward_fast(g, am, xs)
    np.testing.assert_allclose(gx, KP.max_pool2d_backward_ref(g, am, xs), **tol(dt))
    np.testing.assert_allclose(gx.sum(), g.sum(), rtol=1e-4)


@pytest.mark.parametrize("dt", FLOATS)
def test_max_pool_with_nans_matches_reference(rng, dt):
    x = rng.integers(0, 3, (2, 2, 7, 6)).astype(dt)
    x[rng.random(x.shape) < 0.15] = np.nan
    for geom in [(2, 2, 2, 2, 0, 0, 1, 1, False), (3, 2, 1, 2, 1, 1, 1, 1, True)]:
        out, am = KP.max_pool2d_fast(x, *geom)
        out_r, am_r = KP.max_pool2d_ref(x, *geom)
        np.testing.assert_array_equal(out, out_r)
        np.testing.assert_array_equal(am, am_r)


def test_max_pool_nan_and_tie_order():
    """PyTorch's CPU rule: the first of equal maxima wins; a NaN wins, the last NaN."""
    x = np.array([[[[1.0, 1.0], [np.nan, np.nan]]]])
    for f in (KP.max_pool2d_fast, KP.max_pool2d_ref):
        out, am = f(x, 2, 2, 2, 2)
        assert np.isnan(out[0, 0, 0, 0]) and am[0, 0, 0, 0] == 3
        out, am = f(x[:, :, :1], 1, 2, 1, 2)
        assert out[0, 0, 0, 0] == 1 and am[0, 0, 0, 0] == 0


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("case", [c for c in POOL if c[7:9] == (1, 1)])
@pytest.mark.parametrize("cip,div", [(True, None), (False, None), (True, 5)])
def test_avg_pool_kernels(rng, dt, case, cip, div):
    xs, kh, kw, sh, sw, ph, pw, _, _, ceil = case
    opts = (kh, kw, sh, sw, ph, pw, ceil, cip, div)
    x = rng.standard_normal(xs).astype(dt)
    out = KP.avg_pool2d_fast(x, *opts)
    np.testing.assert_allclose(out, KP.avg_pool2d_ref(x, *opts), **tol(dt))
    g = rng.standard_normal(out.shape).astype(dt)
    gx = KP.avg_pool2d_backward_fast(g, xs, *opts)
    np.testing.assert_allclose(gx, KP.avg_pool2d_backward_ref(g, xs, *opts), **tol(dt))
    np.testing.assert_allclose(np.vdot(out, g), np.vdot(x, gx), rtol=1e-4)  # adjoint


@pytest.mark.parametrize("device", DEVICES)
def test_device_pool_methods_agree_with_the_cpu_kernels(device, rng):
    dev = ds.backend.as_device(device)
    x = rng.standard_normal((2, 2, 7, 8))
    for k, s, p, d, ceil in [(2, None, 0, 1, False), (3, 2, 1, 2, True), ((3, 2), (2, 1), (1, 0),
                                                                           1, True)]:
        v, a = dev.max_pool2d(dev.from_numpy(x), k, s, p, d, ceil)
        wv, wa = ds.cpu().max_pool2d(x, k, s, p, d, ceil)
        np.testing.assert_allclose(dev.to_numpy(v), wv)
        np.testing.assert_array_equal(dev.to_numpy(a), wa)
        g = rng.standard_normal(wv.shape)
        np.testing.assert_allclose(dev.to_numpy(dev.max_pool2d_backward(dev.from_numpy(g), a,
                                                                        x.shape)),
                                   ds.cpu().max_pool2d_backward(g, wa, x.shape), rtol=1e-12)
        if d != 1:
            continue
        for cip, div in [(True, None), (False, None), (True, 3)]:
            opts = (k, s, p, ceil, cip, div)
            m = dev.avg_pool2d(dev.from_numpy(x), *opts)
            wm = ds.cpu().avg_pool2d(x, *opts)
            np.testing.assert_allclose(dev.to_numpy(m), wm, rtol=1e-12)
            gm = rng.standard_normal(wm.shape)
            np.testing.assert_allclose(
                dev.to_numpy(dev.avg_pool2d_backward(dev.from_numpy(gm), x.shape, *opts)),
                ds.cpu().avg_pool2d_backward(gm, x.shape, *opts), rtol=1e-12, atol=1e-14)


def test_pool_device_defaults(rng):
    dev = ds.cpu()
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    out, am = dev.max_pool2d(x, 2, None)
    assert out.shape == (1, 2, 2, 2) and am.shape == out.shape
    a = dev.avg_pool2d(x, (2, 2), 2)
    np.testing.assert_allclose(a[0, 0, 0, 0], x[0, 0, :2, :2].mean(), rtol=1e-6)
    assert dev.avg_pool2d_backward(a, x.shape, 2, None).shape == x.shape
    assert dev.max_pool2d(x.astype(np.float16), 2, 2)[0].dtype == np.float16


# -- the ops: gradcheck on every device ------------------------------------------------------------
CASES = []


def case(name, fn, *arrays):
    CASES.append(pytest.param(fn, arrays, id=name))


case("conv_groups_dilation", lambda x, w, b: F.conv2d(x, w, b, (2, 1), (1, 2), (2, 1), 2),
     R(2, 4, 7, 6), R(6, 2, 3, 2, seed=1), R(6, seed=2))
case("conv_same_even", lambda x, w: F.conv2d(x, w, padding="same", dilation=(1, 2)),
     R(1, 2, 5, 6), R(3, 2, 2, 3, seed=1))
case("conv_valid", lambda x, w: F.conv2d(x, w, padding="valid"), R(2, 2, 5, 4),
     R(3, 2, 3, 2, seed=1))
case("conv_depthwise", lambda x, w: F.conv2d(x, w, padding=1, groups=3), R(2, 3, 5, 5),
     R(6, 1, 3, 3, seed=1))
case("conv_gemm_route", lambda x, w: F.conv2d(x, w, stride=2, padding=1), R(2, 8, 5, 5),
     R(4, 8, 3, 3, seed=1))
case("conv_unbatched", lambda x, w: F.conv2d(x, w, padding=1), R(2, 4, 3), R(3, 2, 3, 3, seed=1))
case("max_pool_pad_ceil", lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True),
     np.random.default_rng(0).permutation(2 * 63).reshape(1, 2, 7, 9) * 0.1)
case("max_pool_dilation", lambda x: F.max_pool2d(x, (2, 3), (1, 2), (1, 1), (2, 1)),
     np.random.default_rng(1).permutation(2 * 42).reshape(2, 1, 7, 6) * 0.1)
case("avg_pool_pad_ceil", lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True), R(1, 2, 7, 8))
case("avg_pool_exclude_pad", lambda x: F.avg_pool2d(x, 3, 2, 1, True, False), R(2, 1, 6, 7))
case("avg_pool_divisor", lambda x: F.avg_pool2d(x, 2, divisor_override=3), R(1, 2, 4, 6))
case("adaptive_global", lambda x: F.adaptive_avg_pool2d(x, 1), R(2, 3, 4, 5))
case("adaptive_tiles", lambda x: F.adaptive_avg_pool2d(x, (2, 5)), R(1, 2, 4, 5))
case("adaptive_overlap", lambda x: F.adaptive_avg_pool2d(x, (3, 4)), R(2, 2, 5, 7))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("noncontig", [False, True])
@pytest.mark.parametrize("fn,arrays", CASES)
def test_gradcheck(fn, arrays, noncontig, device):
    assert gradcheck(fn, *arrays, noncontig=noncontig, device=device) < 1e-6


SECOND = [
    pytest.param(lambda x, w: F.conv2d(x, w, stride=2, padding=1, groups=2).tanh(),
                 (R(1, 4, 5, 5), R(4, 2, 3, 3, seed=1)), id="conv_grouped_strided"),
    pytest.param(lambda x, w: F.conv2d(x, w, padding="same", dilation=2).tanh(),
                 (R(1, 2, 5, 5), R(2, 2, 2, 2, seed=1)), id="conv_same_dilated"),
    pytest.param(lambda x: F.avg_pool2d(x, 3, 2, 1, True, False).tanh(), (R(1, 2, 5, 6),),
                 id="avg_pool_options"),
    pytest.param(lambda x: F.adaptive_avg_pool2d(x, (2, 3)).tanh(), (R(1, 1, 5, 5),),
                 id="adaptive"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn,arrays", SECOND)
def test_second_order(fn, arrays, device):
    assert gradgradcheck(fn, *arrays, device=device) < 1e-5


def test_conv2d_takes_pytorchs_bias_keyword():
    x, w, b = ds.randn(1, 2, 4, 4), ds.randn(3, 2, 3, 3), ds.randn(3)
    np.testing.assert_array_equal(F.conv2d(x, w, bias=b, padding=1).numpy(),
                                  F.conv2d(x, w, b, padding=1).numpy())
    with pytest.raises(TypeError, match="twice"):
        F.conv2d(x, w, b, bias=b)


def test_max_pool_return_indices_are_flat_plane_positions():
    x = ds.tensor(np.arange(2 * 16, dtype=np.float32).reshape(1, 2, 4, 4))
    out, idx = F.max_pool2d(x, 2, return_indices=True)
    assert idx.dtype == ds.int64 and idx.shape == (1, 2, 2, 2)
    np.testing.assert_array_equal(idx.numpy()[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(np.take_along_axis(x.numpy().reshape(1, 2, -1),
                                                     idx.numpy().reshape(1, 2, -1), 2),
                                  out.numpy().reshape(1, 2, -1))
    o3, i3 = F.max_pool2d(x[0], 2, return_indices=True)  # unbatched
    assert o3.shape == (2, 2, 2) and i3.shape == (2, 2, 2)


# -- modules and input checks --------------------------------------------------------------------
def test_conv2d_module_options():
    m = ds.nn.Conv2d(4, 8, 3, padding="same", dilation=2, groups=2, bias=False)
    assert m.weight.shape == (8, 2, 3, 3) and m.bias is None
    assert m(ds.randn(2, 4, 6, 6)).shape == (2, 8, 6, 6)
    assert "groups=2" in repr(m) and "dilation=(2, 2)" in repr(m) and "'same'" in repr(m)
    with pytest.raises(ValueError, match="divisible by groups"):
        ds.nn.Conv2d(4, 6, 3, groups=4)
    with pytest.raises(ValueError, match="strided"):
        ds.nn.Conv2d(4, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding_mode"):
        ds.nn.Conv2d(4, 4, 3, padding_mode="reflect")


def test_pool_modules_options():
    x = ds.randn(1, 2, 7, 7)
    out, idx = ds.nn.MaxPool2d(3, 2, 1, return_indices=True, ceil_mode=True)(x)
    assert out.shape == (1, 2, 4, 4) and idx.shape == out.shape
    assert ds.nn.AvgPool2d(3, 2, 1, count_include_pad=False)(x).shape == (1, 2, 4, 4)
    assert ds.nn.AdaptiveAvgPool2d((1, 3))(x).shape == (1, 2, 1, 3)


@pytest.mark.parametrize("device", DEVICES)
def test_conv2d_rejects_bad_arguments(device):
    x, w = ds.zeros(1, 4, 5, 5, device=device), ds.zeros(6, 2, 3, 3, device=device)
    with pytest.raises(ValueError, match="has 5 channels, but weight .* expects 6"):
        F.conv2d(ds.zeros(1, 5, 5, 5, device=device), ds.zeros(6, 2, 3, 3, device=device),
                 groups=3)
    with pytest.raises(ValueError, match="not divisible by groups"):
        F.conv2d(x, ds.zeros(5, 2, 3, 3, device=device), groups=2)
    with pytest.raises(ValueError, match="strided"):
        F.conv2d(x, w, stride=2, padding="same", groups=2)
    with pytest.raises(ValueError, match="invalid padding string"):
        F.conv2d(x, w, padding="full", groups=2)
    with pytest.raises(ValueError, match="positive"):
        F.conv2d(x, w, dilation=0, groups=2)
    with pytest.raises(TypeError, match="dtypes differ"):
        F.conv2d(x, ds.zeros(6, 2, 3, 3, dtype=ds.float64, device=device), groups=2)
    with pytest.raises(TypeError, match="floating"):
        F.conv2d(ds.zeros(1, 4, 5, 5, dtype=ds.int64, device=device),
                 ds.zeros(6, 2, 3, 3, dtype=ds.int64, device=device), groups=2)


@pytest.mark.parametrize("device", DEVICES)
def test_pooling_rejects_bad_arguments(device):
    x = ds.zeros(1, 2, 6, 6, device=device)
    with pytest.raises(ValueError, match="at most half of the kernel size"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="positive"):
        F.avg_pool2d(x, 2, stride=0)
    with pytest.raises(ValueError, match="divisor_override"):
        F.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(TypeError, match="floating"):
        F.max_pool2d(ds.zeros(1, 1, 4, 4, dtype=ds.int64, device=device), 2)
    with pytest.raises(ValueError, match="output_size"):
        F.adaptive_avg_pool2d(x, 0)
