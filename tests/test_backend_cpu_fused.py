"""The fused CPU kernels of GELU (exact and tanh), LayerNorm, RMSNorm and the softmax family
against their numpy references, the vectorised float32 exp/erf against libm, the composed
Device defaults (the CUDA path) against the CPU kernels, and the ops against torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

import dlsys as ds
import dlsys.nn.functional as F
from dlsys.backend import cpu_kernels as K
from dlsys.backend import cpu_kernels_nn as KN
from dlsys.backend import cpu_kernels_norm as KNo
from dlsys.backend.cpu_kernels_math import ferf, fexp
from dlsys.backend.device import Device

torch = pytest.importorskip("torch")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def dev():
    return ds.cpu()


@njit
def _apply_exp(x, out):
    for i in range(x.size):
        out[i] = fexp(x[i])


@njit
def _apply_erf(x, out):
    for i in range(x.size):
        out[i] = ferf(x[i])


SPECIAL = np.array([np.nan, np.inf, -np.inf, -200.0, 200.0, 0.0, -0.0, 88.0, -87.0, 1e-8])


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_fast_math_matches_libm(rng, dt):
    x = np.concatenate([SPECIAL, rng.standard_normal(20000) * 6]).astype(dt)
    x64 = x.astype(np.float64)
    for kernel, exact, tol, rel in ((_apply_exp, math.exp, 2e-7, True),
                                    (_apply_erf, math.erf, 4e-7, False)):
        out = np.empty_like(x)
        kernel(x, out)
        ref = np.array([exact(v) if not (exact is math.exp and v > 700) else np.inf
                        for v in x64])
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
        ok = ~np.isnan(ref)
        if dt == np.float64:  # libm itself
            np.testing.assert_allclose(out[ok], ref[ok], rtol=1e-15, atol=0)
            continue
        with np.errstate(invalid="ignore"):  # inf - inf where both overflow
            err = np.abs(out[ok].astype(np.float64) - ref[ok])
        if rel:  # exp: relative error on float32's normal range, 0 below it, inf above
            r = ref[ok]
            normal = (r > 1.2e-38) & (r < 3.4e38)
            assert np.all(err[normal] <= tol * r[normal]), (err[normal] / r[normal]).max()
            assert np.all(out[ok][r <= 1.2e-38] <= 1.2e-38)
            assert np.all(np.isposinf(out[ok][r >= 3.4e38]))
        else:
            assert err.max() <= tol, (kernel, err.max())


GELU_OPS = ("gelu", "gelu_grad", "gelu_tanh", "gelu_tanh_grad")


@pytest.mark.parametrize("op", GELU_OPS)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_gelu_kernels_match_references(rng, op, dt):
    x = np.concatenate([rng.standard_normal(5000) * 3, [0.0, -12.0, 12.0, 40.0, -40.0]])
    got = K.unary_nb(op, x.astype(dt))
    ref = K.UNARY_REF[op](x)  # float64 reference
    tol = dict(rtol=1e-6, atol=7e-7) if dt == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got, ref, **tol)
    assert got.dtype == dt


@pytest.mark.parametrize("op", ["gelu", "gelu_tanh"])
def test_gelu_grad_is_the_derivative(rng, op):
    x = rng.standard_normal(200) * 3
    h = 1e-6
    fd = (K.unary_nb(op, x + h) - K.unary_nb(op, x - h)) / (2 * h)
    np.testing.assert_allclose(K.unary_nb(op + "_grad", x), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("op", ["gelu", "gelu_tanh"])
@pytest.mark.parametrize("dt", [np.float32, np.float64, np.float16])
def test_gelu_fused_backward(dev, rng, op, dt):
    x = rng.standard_normal((7, 33)).astype(dt)
    g = rng.standard_normal((7, 33)).astype(dt)
    got = dev.unary_backward(op, x, dev.unary(op, x), g)
    ref = K.unary_backward_ref(op, x.astype(np.float64), None, g.astype(np.float64))
    tol = 2e-3 if dt == np.float16 else 2e-6 if dt == np.float32 else 1e-12
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
    assert got.dtype == dt


def _norm_inputs(rng, dt, r=37, c=48):
    x = (rng.standard_normal((r, c)) * 2 + 0.5).astype(dt)
    return (x, rng.standard_normal(c).astype(dt), rng.standard_normal(c).astype(dt),
            rng.standard_normal((r, c)).astype(dt))


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_layer_norm_kernels_match_reference(rng, dev, affine, dt):
    x, w, b, g = _norm_inputs(rng, dt)
    w, b = (w, b) if affine else (None, None)
    tol = dict(rtol=2e-5, atol=2e-5) if dt == np.float32 else dict(rtol=1e-11, atol=1e-12)
    y, mean, rstd = KNo.layer_norm_fast(x, w, b, 1e-5)
    for got, ref in zip((y, mean, rstd), KNo.layer_norm_ref(x, w, b, 1e-5), strict=True):
        np.testing.assert_allclose(got, ref, **tol)
    grads = KNo.layer_norm_backward_fast(g, x, w, mean, rstd)
    refs = KNo.layer_norm_backward_ref(g, x, w, mean, rstd)
    for got, ref in zip(grads, refs, strict=True):
        if ref is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, ref, **tol)
    # the composed default (what CUDA runs) computes the same
    for got, ref in zip(Device.layer_norm(dev, x, w, b, 1e-5), (y, mean, rstd), strict=True):
        np.testing.assert_allclose(got, ref, **tol)
    for got, ref in zip(Device.layer_norm_backward(dev, g, x, w, mean, rstd), grads, strict=True):
        if ref is not None:
            np.testing.assert_allclose(got, ref, **tol)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_rms_norm_kernels_match_reference(rng, dev, affine, dt):
    x, w, _, g = _norm_inputs(rng, dt)
    w = w if affine else None
    tol = dict(rtol=2e-5, atol=2e-5) if dt == np.float32 else dict(rtol=1e-11, atol=1e-12)
    y, rstd = KNo.rms_norm_fast(x, w, 1e-6)
    for got, ref in zip((y, rstd), KNo.rms_norm_ref(x, w, 1e-6), strict=True):
        np.testing.assert_allclose(got, ref, **tol)
    dx, dw = KNo.rms_norm_backward_fast(g, x, w, rstd)
    rdx, rdw = KNo.rms_norm_backward_ref(g, x, w, rstd)
    np.testing.assert_allclose(dx, rdx, **tol)
    assert (dw is None) == (rdw is None)
    if dw is not None:
        np.testing.assert_allclose(dw, rdw, **tol)
    cy, crstd = Device.rms_norm(dev, x, w, 1e-6)
    np.testing.assert_allclose(cy, y, **tol)
    cdx, cdw = Device.rms_norm_backward(dev, g, x, w, rstd)
    np.testing.assert_allclose(cdx, dx, **tol)


def test_norm_references_are_the_gradient(rng):
    """The backward references are the derivatives of the forward ones (central differences
    of sum(g * y) in float64)."""
    x, w, b, g = _norm_inputs(rng, np.float64, r=3, c=5)
    h = 1e-6

    def num_grad(f, a):
        out = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            a[i] += h
            up = (g * f()).sum()
            a[i] -= 2 * h
            down = (g * f()).sum()
            a[i] += h
            out[i] = (up - down) / (2 * h)
        return out

    _, mean, rstd = KNo.layer_norm_ref(x, w, b, 1e-5)
    dx, dw, db = KNo.layer_norm_backward_ref(g, x, w, mean, rstd)
    for a, got in ((x, dx), (w, dw), (b, db)):
        np.testing.assert_allclose(got, num_grad(lambda: KNo.layer_norm_ref(x, w, b, 1e-5)[0],
                                                 a), rtol=1e-6, atol=1e-8)
    _, rstd = KNo.rms_norm_ref(x, w, 1e-6)
    dx, dw = KNo.rms_norm_backward_ref(g, x, w, rstd)
    for a, got in ((x, dx), (w, dw)):
        np.testing.assert_allclose(got, num_grad(lambda: KNo.rms_norm_ref(x, w, 1e-6)[0], a),
                                   rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_softmax_backward_kernels(rng, dev, log, dt):
    x = rng.standard_normal((19, 70)).astype(dt)
    y = (KN.log_softmax_ref if log else KN.softmax_ref)(x)
    g = rng.standard_normal(x.shape).astype(dt)
    tol = dict(rtol=1e-5, atol=1e-6) if dt == np.float32 else dict(rtol=1e-12, atol=1e-13)
    got = KNo.softmax_backward_fast(y, g, log)
    ref = (KNo.log_softmax_backward_ref if log else KNo.softmax_backward_ref)(y, g)
    np.testing.assert_allclose(got, ref, **tol)
    np.testing.assert_allclose(Device.softmax_backward(dev, y, g, log), ref, **tol)


def test_float32_softmax_long_rows_with_masked_entries(rng):
    x = rng.standard_normal((8, 1000)).astype(np.float32) * 10
    x[:, ::7] = -np.inf
    np.testing.assert_allclose(KN.softmax_fast(x), KN.softmax_ref(x), rtol=1e-5, atol=1e-9)
    assert np.all(KN.softmax_fast(x)[:, ::7] == 0)
    np.testing.assert_allclose(KN.log_softmax_fast(x), KN.log_softmax_ref(x), rtol=1e-5,
                               atol=1e-5)
    t = rng.integers(0, 1000, 8)
    t[t % 7 == 0] += 1
    loss, probs = KN.cross_entropy_fast(x, t)
    rloss, rprobs = KN.cross_entropy_ref(x, t)
    np.testing.assert_allclose(loss, rloss, rtol=1e-5)
    np.testing.assert_allclose(probs, rprobs, rtol=1e-5, atol=1e-9)


def _both(x, requires_grad=True):
    return (ds.tensor(x, requires_grad=requires_grad),
            torch.tensor(x, requires_grad=requires_grad))


@pytest.mark.parametrize("which", ["layer_norm", "layer_norm_noaffine", "rms_norm",
                                   "softmax", "log_softmax", "gelu", "gelu_tanh"])
def test_fused_ops_first_and_second_order_as_torch(rng, which):
    x = rng.standard_normal((2, 5, 6))
    w = rng.standard_normal((5, 6))
    b = rng.standard_normal((5, 6))
    g = rng.standard_normal((2, 5, 6))
    (dx, tx), (dw, tw), (db, tb) = _both(x), _both(w), _both(b)

    def f(lib, xx, ww, bb):
        Fn = F if lib is ds else torch.nn.functional
        if which == "layer_norm":
            return Fn.layer_norm(xx, (5, 6), ww, bb, 1e-5)
        if which == "layer_norm_noaffine":
            return Fn.layer_norm(xx, (6,))
        if which == "rms_norm":
            return Fn.rms_norm(xx, (5, 6), ww, 1e-6)
        if which in ("softmax", "log_softmax"):
            return getattr(Fn, which)(xx, dim=1)
        return Fn.gelu(xx, approximate="tanh" if which == "gelu_tanh" else "none")

    yd, yt = f(ds, dx, dw, db), f(torch, tx, tw, tb)
    np.testing.assert_allclose(yd.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    ins_d = [t for t in (dx, dw, db)]
    ins_t = [t for t in (tx, tw, tb)]
    gd = ds.autograd.grad((yd * ds.tensor(g)).sum(), ins_d, create_graph=True)
    gt = torch.autograd.grad((yt * torch.tensor(g)).sum(), ins_t, create_graph=True,
                             allow_unused=True)
    for a, c in zip(gd, gt, strict=True):
        assert (a is None) == (c is None)
        if a is not None:
            np.testing.assert_allclose(a.numpy(), c.detach().numpy(), rtol=1e-9, atol=1e-11)
    # second order: the gradient of sum(dL/dx ** 2) with respect to the inputs
    sd = (gd[0] * gd[0]).sum()
    st = (gt[0] * gt[0]).sum()
    hd = ds.autograd.grad(sd, ins_d)
    ht = torch.autograd.grad(st, ins_t, allow_unused=True)
    for a, c in zip(hd, ht, strict=True):
        if c is None:
            assert a is None or np.allclose(a.numpy(), 0)
        else:
            np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=1e-8, atol=1e-10)


def test_embedding_backward_takes_the_row_kernel(monkeypatch):
    """x[idx] arrives at the device as a 1-tuple (the normalised index): still the Numba row
    kernel, not np.add.at (30 ms instead of 0.2 ms for a GPT's embedding gradient)."""
    out = np.zeros((5, 3), np.float32)
    vals = np.arange(12, dtype=np.float32).reshape(4, 3)
    idx = np.array([1, 1, -1, 0])

    def fail(*a):
        raise AssertionError("np.add.at reference taken")

    monkeypatch.setattr(K, "index_add_ref", fail)
    K.index_add_fast(out, (idx,), vals)
    ref = np.zeros((5, 3), np.float32)
    np.add.at(ref, idx, vals)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_batch_norm_kernels_match_reference(rng, dev, affine, dt):
    x = (rng.standard_normal((5, 4, 9)) * 3 + 1).astype(dt)
    g = rng.standard_normal(x.shape).astype(dt)
    w, b = ((rng.standard_normal(4).astype(dt), rng.standard_normal(4).astype(dt)) if affine
            else (None, None))
    tol = dict(rtol=2e-5, atol=2e-5) if dt == np.float32 else dict(rtol=1e-11, atol=1e-12)
    out = KNo.batch_norm_fast(x, w, b, 1e-5)
    for got, ref in zip(out, KNo.batch_norm_ref(x, w, b, 1e-5), strict=True):
        np.testing.assert_allclose(got, ref, **tol)
    for got, ref in zip(Device.batch_norm(dev, x, w, b, 1e-5), out, strict=True):
        np.testing.assert_allclose(got, ref, **tol)
    _, mean, _, rstd = out
    grads = KNo.batch_norm_backward_fast(g, x, w, mean, rstd)
    for got, ref, comp in zip(grads, KNo.batch_norm_backward_ref(g, x, w, mean, rstd),
                              Device.batch_norm_backward(dev, g, x, w, mean, rstd), strict=True):
        if ref is None:
            assert got is None and comp is None
        else:
            np.testing.assert_allclose(got, ref, **tol)
            np.testing.assert_allclose(comp, ref, **tol)


def test_batch_norm_module_first_and_second_order_as_torch(rng):
    x = rng.standard_normal((4, 3, 5, 2)) * 2 + 0.5
    g = rng.standard_normal(x.shape)
    bn, tbn = ds.nn.BatchNorm2d(3).to(ds.float64), torch.nn.BatchNorm2d(3).double()
    with torch.no_grad():
        tbn.weight.copy_(torch.tensor(rng.standard_normal(3)))
        tbn.bias.copy_(torch.tensor(rng.standard_normal(3)))
    bn.load_state_dict({k: v.numpy() for k, v in tbn.state_dict().items()})
    (dx, tx) = _both(x)
    yd, yt = bn(dx), tbn(tx)
    np.testing.assert_allclose(yd.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(getattr(bn, name).numpy(), getattr(tbn, name).numpy(),
                                   rtol=1e-12)
    ins_d, ins_t = [dx, bn.weight, bn.bias], [tx, tbn.weight, tbn.bias]
    gd = ds.autograd.grad((yd * ds.tensor(g)).sum(), ins_d, create_graph=True)
    gt = torch.autograd.grad((yt * torch.tensor(g)).sum(), ins_t, create_graph=True)
    for a, c in zip(gd, gt, strict=True):
        np.testing.assert_allclose(a.numpy(), c.detach().numpy(), rtol=1e-9, atol=1e-11)
    hd = ds.autograd.grad((gd[0] * gd[0]).sum(), ins_d)
    ht = torch.autograd.grad((gt[0] * gt[0]).sum(), ins_t, allow_unused=True)
    for a, c in zip(hd, ht, strict=True):
        if c is None:
            assert a is None or np.allclose(a.numpy(), 0)
        else:
            np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=1e-8, atol=1e-10)
    # first order without create_graph: the fused backward
    yd = bn(dx)
    (yd * ds.tensor(g)).sum().backward()
    yt = tbn(tx)
    (yt * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(dx.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(bn.weight.grad.numpy(), tbn.weight.grad.numpy(), rtol=1e-9)
