"""scaled_dot_product_attention: the fused CPU kernels against their numpy references, the
device methods on cpu and cuda (the simulator in CI), gradcheck (first and second order,
non-contiguous inputs), masks, causal rows, dropout's statistics and the input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gradcheck import gradcheck, gradgradcheck

import dlsys as ds
import dlsys.nn.functional as F
from dlsys.backend import cpu_kernels_attention as KA

FLOATS = [np.float32, np.float64]
DEVICES = ["cpu"] + (["cuda"] if ds.cuda_is_available() else [])
sdpa = F.scaled_dot_product_attention


def tol(dt):
    return dict(rtol=2e-5, atol=2e-6) if dt == np.float32 else dict(rtol=1e-12, atol=1e-13)


def R(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape)


def test_exp_le0_matches_numpy():
    x = np.concatenate([-np.abs(np.random.default_rng(0).standard_normal(10000) * 30),
                        [0.0, -0.0, -1e-300, -707.9, -708.0, -708.1, -1e4, -np.inf]])
    out = np.empty_like(x)
    KA.exp_le0_nb(x, out)
    ref = np.exp(x)
    big = ref > 1e-300
    np.testing.assert_allclose(out[big], ref[big], rtol=4e-16, atol=0)
    assert np.all(out[~big] <= 1e-300) and out[-1] == 0.0 and out[10000] == 1.0


def _inputs(rng, dt, b=3, L=5, S=6, e=4, ev=3):
    return (rng.standard_normal((b, L, e)).astype(dt), rng.standard_normal((b, S, e)).astype(dt),
            rng.standard_normal((b, S, ev)).astype(dt))


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("mask_kind", ["none", "shared", "per_batch", "rows_masked"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dropout", [False, True])
def test_kernels_match_references(dt, mask_kind, causal, dropout):
    rng = np.random.default_rng(7)
    q, k, v = _inputs(rng, dt)
    mask = None
    if mask_kind == "shared":
        mask = rng.standard_normal((1, 5, 6)).astype(dt)
    elif mask_kind == "per_batch":
        mask = rng.standard_normal((3, 5, 6)).astype(dt)
    elif mask_kind == "rows_masked":
        mask = np.where(rng.random((3, 5, 6)) < 0.4, -np.inf, 0).astype(dt)
        mask[:, 2] = -np.inf  # a row that sees nothing: zeros
    drop = (rng.random((3, 5, 6)) > 0.3).astype(dt) / dt(0.7) if dropout else None
    out, p = KA.attention_fast(q, k, v, mask, 0.4, causal, drop)
    out_r, p_r = KA.attention_ref(q, k, v, mask, 0.4, causal, drop)
    np.testing.assert_allclose(p, p_r, **tol(dt))
    np.testing.assert_allclose(out, out_r, **tol(dt))
    if mask_kind == "rows_masked":
        assert np.all(p[:, 2] == 0) and np.all(out[:, 2] == 0)
    if causal:
        assert np.all(np.triu(p[0], 1) == 0)
    g = rng.standard_normal(out.shape).astype(dt)
    for a, b in zip(KA.attention_backward_fast(q, k, v, p, drop, g, 0.4),
                    KA.attention_backward_ref(q, k, v, p_r, drop, g, 0.4), strict=True):
        np.testing.assert_allclose(a, b, **tol(dt))


@pytest.mark.parametrize("device", DEVICES)
def test_device_attention_matches_the_cpu_reference(device):
    dev = ds.backend.as_device(device)
    rng = np.random.default_rng(3)
    q, k, v = _inputs(rng, np.float64)
    mask = np.where(rng.random((1, 5, 6)) < 0.3, -np.inf, 0.5)
    mask[0, 1] = -np.inf
    drop = (rng.random((3, 5, 6)) > 0.5) * 2.0
    on = dev.from_numpy
    out, p = dev.attention(on(q), on(k), on(v), on(mask), 0.3, True, on(drop))
    out_r, p_r = KA.attention_ref(q, k, v, mask, 0.3, True, drop)
    np.testing.assert_allclose(dev.to_numpy(p), p_r, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dev.to_numpy(out), out_r, rtol=1e-12, atol=1e-14)
    g = rng.standard_normal(out_r.shape)
    got = dev.attention_backward(on(q), on(k), on(v), p, on(drop), on(g), 0.3)
    for a, b in zip(got, KA.attention_backward_ref(q, k, v, p_r, drop, g, 0.3), strict=True):
        np.testing.assert_allclose(dev.to_numpy(a), b, rtol=1e-12, atol=1e-13)


def test_float16_is_computed_in_float32():
    rng = np.random.default_rng(0)
    q, k, v = (a.astype(np.float16) for a in _inputs(rng, np.float32))
    out, p = ds.cpu().attention(q, k, v, None, 0.5, False, None)
    assert out.dtype == np.float16 and p.dtype == np.float16
    ref, _ = KA.attention_ref(*(a.astype(np.float32) for a in (q, k, v)), None, 0.5, False,
                              None)
    np.testing.assert_array_equal(out, ref.astype(np.float16))


# -- the op ------------------------------------------------------------------------------------
def _bool_mask(shape, seed=0):
    m = np.random.default_rng(seed).random(shape) < 0.7
    m[..., 0] = True  # every row sees something (a row that sees nothing has no gradient)
    return m


CASES = [
    pytest.param(lambda q, k, v: sdpa(q, k, v), (R(2, 3, 4, 5), R(2, 3, 6, 5, seed=1),
                                                   R(2, 3, 6, 3, seed=2)), id="bhtd"),
    pytest.param(lambda q, k, v: sdpa(q, k, v, is_causal=True, scale=0.3),
                 (R(2, 5, 4), R(2, 5, 4, seed=1), R(2, 5, 2, seed=2)), id="causal_scale"),
    pytest.param(lambda q, k, v: sdpa(q, k, v, is_causal=True),
                 (R(1, 2, 6, 3), R(1, 2, 4, 3, seed=1), R(1, 2, 4, 2, seed=2)), id="causal_L>S"),
    pytest.param(lambda q, k, v: sdpa(q, k, v, attn_mask=ds.tensor(_bool_mask((4, 5)),
                                                                   device=q.device)),
                 (R(2, 4, 3), R(2, 5, 3, seed=1), R(2, 5, 2, seed=2)), id="bool_mask"),
    pytest.param(lambda q, k, v, m: sdpa(q, k, v, attn_mask=m),
                 (R(2, 2, 3, 4), R(2, 2, 5, 4, seed=1), R(2, 2, 5, 2, seed=2),
                  R(2, 1, 3, 5, seed=3)), id="float_mask_grad"),
    pytest.param(lambda q, k, v: sdpa(q, k, v), (R(3, 2), R(4, 2, seed=1), R(4, 3, seed=2)),
                 id="2d"),
    pytest.param(lambda q, k, v: sdpa(q, k, v), (R(2, 3, 3, 2), R(1, 3, 4, 2, seed=1),
                                                   R(2, 1, 4, 2, seed=2)), id="broadcast"),
    pytest.param(lambda q, k, v: sdpa(q, k, v, enable_gqa=True),
                 (R(1, 4, 3, 2), R(1, 2, 4, 2, seed=1), R(1, 2, 4, 3, seed=2)), id="gqa"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("noncontig", [False, True])
@pytest.mark.parametrize("fn,arrays", CASES)
def test_gradcheck(fn, arrays, noncontig, device):
    assert gradcheck(fn, *arrays, noncontig=noncontig, device=device) < 1e-6


def _dropped(q, k, v):
    ds.manual_seed(11)  # the same dropout mask at every evaluation
    return sdpa(q, k, v, dropout_p=0.3, is_causal=True)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_with_dropout(device):
    assert gradcheck(_dropped, R(2, 4, 3), R(2, 4, 3, seed=1), R(2, 4, 2, seed=2),
                     device=device) < 1e-6


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn,arrays", [CASES[1], CASES[4]])
def test_second_order(fn, arrays, device):
    assert gradgradcheck(fn, *arrays, device=device) < 1e-5


def _naive(q, k, v, mask=None, causal=False, scale=None):
    s = q @ np.swapaxes(k, -1, -2) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    m = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(m), m, 0))
    z = e.sum(-1, keepdims=True)
    return np.where(z > 0, e / np.where(z > 0, z, 1), 0) @ v


@pytest.mark.parametrize("device", DEVICES)
def test_forward_matches_the_definition_with_a_fully_masked_row(device):
    q, k, v = R(2, 3, 4, 5), R(2, 3, 6, 5, seed=1), R(2, 3, 6, 2, seed=2)
    mask = _bool_mask((4, 6))
    mask[1] = False  # row 1 sees nothing: zeros, as PyTorch
    out = sdpa(*(ds.tensor(a, dtype=ds.float64, device=device) for a in (q, k, v)),
               attn_mask=ds.tensor(mask, device=device), is_causal=True)
    ref = _naive(q, k, v, mask & np.tril(np.ones((4, 6), bool)))
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-14)
    assert np.all(out.numpy()[:, :, 1] == 0)


def test_dropout_statistics_and_seed():
    q = ds.zeros(8, 64, 4)  # uniform attention: every weight 1/64
    v = ds.tensor(np.eye(64, dtype=np.float32)[None].repeat(8, 0))
    ds.manual_seed(5)
    a = sdpa(q, q, v, dropout_p=0.25).numpy()  # row i of a is the dropped weights of row i
    ds.manual_seed(5)
    np.testing.assert_array_equal(sdpa(q, q, v, dropout_p=0.25).numpy(), a)
    kept = a != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(a[kept], 1 / 64 / 0.75, rtol=1e-6)
    assert np.all(sdpa(q, q, v, dropout_p=1.0).numpy() == 0)


@pytest.mark.parametrize("device", DEVICES)
def test_rejects_bad_inputs(device):
    q = ds.zeros(2, 3, 4, device=device)
    with pytest.raises(ValueError, match=r"do not match"):
        sdpa(q, ds.zeros(2, 5, 3, device=device), ds.zeros(2, 5, 4, device=device))
    with pytest.raises(ValueError, match=r"do not match"):
        sdpa(q, ds.zeros(2, 5, 4, device=device), ds.zeros(2, 6, 4, device=device))
    with pytest.raises(TypeError, match="dtypes differ"):
        sdpa(q, q.to(ds.float64), q)
    with pytest.raises(ValueError, match="dropout_p"):
        sdpa(q, q, q, dropout_p=1.5)
    with pytest.raises(ValueError, match="does not broadcast"):
        sdpa(q, q, q, attn_mask=ds.zeros(4, 3, device=device))
    with pytest.raises(TypeError, match="attn_mask must be bool or"):
        sdpa(q, q, q, attn_mask=ds.zeros(3, 3, dtype=ds.float64, device=device))
    with pytest.raises(ValueError, match="cannot be broadcast"):
        sdpa(q, ds.zeros(3, 3, 4, device=device), ds.zeros(3, 3, 4, device=device))
    with pytest.raises(ValueError, match="enable_gqa"):
        sdpa(ds.zeros(1, 3, 2, 4, device=device), ds.zeros(1, 2, 2, 4, device=device),
             ds.zeros(1, 2, 2, 4, device=device), enable_gqa=True)
