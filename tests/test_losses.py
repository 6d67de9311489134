"""Losses: the fused cross-entropy kernels with ignore_index against their references, the
device methods on cpu and cuda (the simulator in CI), gradcheck of every loss and option
(first order with non-contiguous inputs, second order for a few), the modules, and the input
checks (shapes, target range, dtypes, options)."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import gradcheck, gradgradcheck

import dlsys as ds
import dlsys.nn.functional as F
from dlsys.backend import cpu_kernels_nn as KN

FLOATS = [np.float32, np.float64]
DEVICES = ["cpu"] + (["cuda"] if ds.cuda_is_available() else [])


def tol(dt):
    return dict(rtol=2e-5, atol=2e-6) if dt == np.float32 else dict(rtol=1e-12, atol=1e-13)


def R(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape)


def U01(*shape, seed=0):
    return np.random.default_rng(seed).uniform(0.05, 0.95, shape)


def on(x, data, **kw):
    return ds.tensor(data, device=x.device, **kw)


# -- kernels and device methods ------------------------------------------------------------------
@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("ignore", [-100, 2])
def test_cross_entropy_kernels_with_ignored_rows(dt, ignore):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((9, 5)) * 4).astype(dt)
    target = np.array([0, 2, 4, -100, 2, 1, 3, 2, -100]) if ignore == -100 else \
        np.array([0, 2, 4, 1, 2, 1, 3, 2, 0])
    loss, probs = KN.cross_entropy_fast(logits, target, ignore)
    loss_r, probs_r = KN.cross_entropy_ref(logits, target, ignore)
    np.testing.assert_allclose(loss, loss_r, **tol(dt))
    np.testing.assert_allclose(probs, probs_r, **tol(dt))
    keep = target != ignore
    lse = np.log(np.exp(logits.astype(np.float64)).sum(1))
    ref = np.mean(lse[keep] - logits[keep, target[keep]])
    np.testing.assert_allclose(loss, ref, **tol(dt))
    g = KN.cross_entropy_backward_fast(probs, target, 0.5, ignore)
    np.testing.assert_allclose(g, KN.cross_entropy_backward_ref(probs, target, 0.5, ignore),
                               **tol(dt))
    assert np.all(g[~keep] == 0)


def test_cross_entropy_kernels_with_every_row_ignored():
    logits = np.ones((3, 4))
    target = np.full(3, -100)
    for f in (KN.cross_entropy_fast, KN.cross_entropy_ref):
        loss, probs = f(logits, target, -100)
        assert np.isnan(loss)
    assert np.all(KN.cross_entropy_backward_fast(probs, target, 1.0, -100) == 0)


@pytest.mark.parametrize("device", DEVICES)
def test_device_cross_entropy_with_ignore_index(device):
    dev = ds.backend.as_device(device)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 4))
    t = np.array([1, -100, 3, 0, -100, 2])
    loss, probs = dev.cross_entropy(dev.from_numpy(x), dev.from_numpy(t), -100)
    wl, wp = KN.cross_entropy_ref(x, t, -100)
    np.testing.assert_allclose(dev.to_numpy(loss), wl, rtol=1e-12)
    g = dev.cross_entropy_backward(probs, dev.from_numpy(t), dev.from_numpy(np.asarray(3.0)),
                                   -100)
    np.testing.assert_allclose(dev.to_numpy(g), KN.cross_entropy_backward_ref(wp, t, 3.0, -100),
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dt", FLOATS)
def test_log_sigmoid_is_accurate_in_both_tails(device, dt):
    dev = ds.backend.as_device(device)
    x = np.array([-800.0, -90.0, -30.0, -1.0, 0.0, 1e-8, 1.0, 20.0, 40.0, 90.0, 800.0], dt)
    got = dev.to_numpy(dev.log_sigmoid(dev.from_numpy(x)))
    ref = -np.logaddexp(0.0, -x.astype(np.float64))
    np.testing.assert_allclose(got, ref, rtol=1e-6 if dt == np.float32 else 1e-14, atol=0)


# -- gradcheck of the ops on every device ----------------------------------------------------------
T4 = [1, 0, 3, 1]
CASES = []


def case(name, fn, *arrays):
    CASES.append(pytest.param(fn, arrays, id=name))


for red in ("mean", "sum", "none"):
    case(f"ce_{red}", lambda x, r=red: F.cross_entropy(x, on(x, T4), reduction=r), R(4, 5))
    case(f"ce_weight_ignore_{red}", lambda x, r=red: F.cross_entropy(
        x, on(x, [1, -100, 3, 1]), on(x, [0.5, 2.0, 1.0, 1.5, 0.7], dtype=ds.float64),
        reduction=r), R(4, 5))
    case(f"ce_smooth_{red}", lambda x, r=red: F.cross_entropy(
        x, on(x, [2, 4, -1, 0]), ignore_index=-1, label_smoothing=0.3, reduction=r), R(4, 5))
    case(f"ce_probs_{red}", lambda x, p, r=red: F.cross_entropy(x, p, reduction=r,
                                                                label_smoothing=0.1),
         R(3, 4), np.abs(R(3, 4, seed=1)))
    case(f"nll_{red}", lambda x, r=red: F.nll_loss(x, on(x, T4), reduction=r), R(4, 5))
    case(f"bce_{red}", lambda p, y, r=red: F.binary_cross_entropy(p, y, reduction=r),
         U01(3, 4), U01(3, 4, seed=1))
    case(f"bce_logits_{red}", lambda x, y, r=red: F.binary_cross_entropy_with_logits(
        x, y, reduction=r), R(3, 4) * 3, U01(3, 4, seed=1))
    case(f"mse_{red}", lambda a, b, r=red: F.mse_loss(a, b, reduction=r), R(3, 4),
         R(3, 4, seed=1))
    case(f"l1_{red}", lambda a, b, r=red: F.l1_loss(a, b, reduction=r), R(3, 4),
         R(3, 4, seed=1))
    case(f"smooth_l1_{red}", lambda a, b, r=red: F.smooth_l1_loss(a, b, reduction=r, beta=0.8),
         R(3, 4), R(3, 4, seed=1))
case("ce_fast_ignore", lambda x: F.cross_entropy(x, on(x, [1, -100, 3, 1])), R(4, 5))
case("ce_nd", lambda x: F.cross_entropy(x, on(x, [[[0, 2], [1, 1], [2, 0]]])), R(1, 3, 3, 2))
case("ce_nd_weight", lambda x: F.cross_entropy(x, on(x, [[0, 2, 1], [2, 2, 0]]),
                                               on(x, [1.0, 0.2, 3.0], dtype=ds.float64),
                                               label_smoothing=0.2), R(2, 3, 3))
case("ce_unbatched", lambda x: F.cross_entropy(x, on(x, 2)), R(4))
case("ce_probs_weight_nd", lambda x, p: F.cross_entropy(
    x, p, on(x, [1.0, 0.5, 2.0], dtype=ds.float64)), R(2, 3, 2), np.abs(R(2, 3, 2, seed=1)))
case("nll_weight_nd", lambda x: F.nll_loss(x, on(x, [[1, 0], [2, -100]]),
                                           on(x, [0.3, 1.0, 2.0], dtype=ds.float64)),
     R(2, 3, 2))
case("bce_weight", lambda p, y: F.binary_cross_entropy(p, y, on(p, [0.5, 2.0, 1.0, 3.0],
                                                                dtype=ds.float64)),
     U01(3, 4), U01(3, 4, seed=1))
case("bce_logits_pos_weight", lambda x, y: F.binary_cross_entropy_with_logits(
    x, y, on(x, [[1.0], [0.5], [2.0]], dtype=ds.float64),
    pos_weight=on(x, [0.5, 2.0, 1.0, 3.0], dtype=ds.float64)), R(3, 4) * 3, U01(3, 4, seed=1))
case("smooth_l1_beta0", lambda a, b: F.smooth_l1_loss(a, b, beta=0.0), R(3, 4),
     R(3, 4, seed=1))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("noncontig", [False, True])
@pytest.mark.parametrize("fn,arrays", CASES)
def test_gradcheck(fn, arrays, noncontig, device):
    assert gradcheck(fn, *arrays, noncontig=noncontig, device=device) < 1e-6


SECOND = [
    pytest.param(lambda x: F.cross_entropy(x, on(x, [1, -100, 2])), (R(3, 4),),
                 id="ce_fast_ignore"),
    pytest.param(lambda x: F.cross_entropy(x, on(x, [1, 0, 2]), label_smoothing=0.2,
                                           reduction="sum"), (R(3, 4),), id="ce_general"),
    pytest.param(lambda p, y: F.binary_cross_entropy(p, y), (U01(2, 3), U01(2, 3, seed=1)),
                 id="bce"),
    pytest.param(lambda x, y: F.binary_cross_entropy_with_logits(x, y), (R(2, 3),
                                                                         U01(2, 3, seed=1)),
                 id="bce_logits"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn,arrays", SECOND)
def test_second_order(fn, arrays, device):
    assert gradgradcheck(fn, *arrays, device=device) < 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_every_target_ignored_gives_nan_mean_and_zero_gradient(device):
    x = ds.tensor(R(3, 4), dtype=ds.float64, device=device, requires_grad=True)
    t = ds.tensor([-100, -100, -100], device=device)
    loss = F.cross_entropy(x, t)
    assert np.isnan(loss.item())
    loss.backward()
    assert np.all(x.grad.numpy() == 0)
    assert F.cross_entropy(x, t, reduction="sum").item() == 0.0


def test_binary_cross_entropy_clamps_its_logs_as_pytorch():
    p = ds.tensor([0.0, 1.0, 0.0, 1.0], dtype=ds.float64, requires_grad=True)
    y = ds.tensor([1.0, 0.0, 0.0, 1.0], dtype=ds.float64)
    loss = F.binary_cross_entropy(p, y, reduction="none")
    np.testing.assert_array_equal(loss.numpy(), [100.0, 100.0, 0.0, 0.0])
    loss.sum().backward()  # (x - t) / max(x (1 - x), 1e-12)
    np.testing.assert_array_equal(p.grad.numpy(), [-1e12, 1e12, 0.0, 0.0])


def test_binary_cross_entropy_with_logits_is_accurate_for_large_logits():
    # the values PyTorch gives (no inf or nan where a naive log(sigmoid(x)) would overflow)
    x = ds.tensor([40.0, -40.0, 700.0, -700.0, 30.0], dtype=ds.float64)
    t = ds.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=ds.float64)
    got = F.binary_cross_entropy_with_logits(x, t, reduction="none").numpy()
    np.testing.assert_allclose(got, [4.248354255291589e-18, 0.0, 9.859676543759771e-305,
                                     700.0, 30.0], rtol=1e-14)


# -- modules -------------------------------------------------------------------------------------
def test_loss_modules_forward_their_options():
    x = ds.tensor(R(4, 3), dtype=ds.float64)
    t = ds.tensor([0, 2, -1, 1])
    w = ds.tensor([1.0, 2.0, 0.5], dtype=ds.float64)
    m = ds.nn.CrossEntropyLoss(w, ignore_index=-1, reduction="sum", label_smoothing=0.1)
    assert "weight" in dict(m.named_buffers())
    np.testing.assert_allclose(m(x, t).numpy(), F.cross_entropy(
        x, t, w, ignore_index=-1, reduction="sum", label_smoothing=0.1).numpy())
    np.testing.assert_allclose(ds.nn.NLLLoss(reduction="none", ignore_index=-1)(x, t).numpy(),
                               F.nll_loss(x, t, ignore_index=-1, reduction="none").numpy())
    p, y = ds.tensor(U01(2, 3), dtype=ds.float64), ds.tensor(U01(2, 3, seed=1),
                                                             dtype=ds.float64)
    np.testing.assert_allclose(ds.nn.BCELoss(reduction="sum")(p, y).numpy(),
                               F.binary_cross_entropy(p, y, reduction="sum").numpy())
    pw = ds.tensor([2.0, 1.0, 0.5], dtype=ds.float64)
    np.testing.assert_allclose(ds.nn.BCEWithLogitsLoss(pos_weight=pw)(p, y).numpy(),
                               F.binary_cross_entropy_with_logits(p, y, pos_weight=pw).numpy())
    for mod, fn in [(ds.nn.MSELoss, F.mse_loss), (ds.nn.L1Loss, F.l1_loss)]:
        np.testing.assert_allclose(mod(reduction="none")(p, y).numpy(),
                                   fn(p, y, reduction="none").numpy())
    np.testing.assert_allclose(ds.nn.SmoothL1Loss(beta=0.3)(p, y).numpy(),
                               F.smooth_l1_loss(p, y, beta=0.3).numpy())
    assert "reduction='sum'" in repr(m)


# -- input checks --------------------------------------------------------------------------------
@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def test_cross_entropy_rejects_bad_inputs(device):
    x = ds.zeros(4, 3, device=device)
    t = ds.tensor([0, 1, 2, 0], device=device)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"expected target of shape \(2, 2\)"):
        F.cross_entropy(ds.zeros(2, 3, 2, device=device), ds.tensor([0, 1], device=device))
    with pytest.raises(ValueError, match=r"weight of shape \(2,\) does not match 3 classes"):
        F.cross_entropy(x, t, ds.ones(2, device=device))
    with pytest.raises(TypeError, match="dtypes differ"):
        F.cross_entropy(x, t, ds.ones(3, dtype=ds.float64, device=device))
    with pytest.raises(TypeError, match="class probabilities of the input's shape"):
        F.cross_entropy(x, ds.zeros(4, 2, device=device))
    with pytest.raises(ValueError, match="ignore_index is not supported"):
        F.cross_entropy(x, ds.zeros(4, 3, device=device), ignore_index=0)
    with pytest.raises(ValueError, match="at least 1 dimension"):
        F.cross_entropy(ds.zeros((), device=device), ds.tensor(0, device=device))
    with pytest.raises(TypeError, match="floating"):
        F.cross_entropy(ds.zeros(4, 3, dtype=ds.int64, device=device), t)
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        F.cross_entropy(x, np.array([0, 1, 3, -100]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        F.nll_loss(x, np.array([0, 1, 2, -5]), ignore_index=-100)
    with pytest.raises(TypeError, match="integer class indices"):
        F.nll_loss(x, ds.zeros(4, 3, device=device))


def test_elementwise_losses_reject_bad_inputs(device):
    a = ds.zeros(2, 3, device=device)
    for fn in (F.mse_loss, F.l1_loss, F.smooth_l1_loss, F.binary_cross_entropy,
               F.binary_cross_entropy_with_logits):
        with pytest.raises(ValueError, match=r"input shape \(2, 3\) and target shape \(3,\)"):
            fn(a, ds.zeros(3, device=device))
        with pytest.raises(TypeError, match="dtypes differ"):
            fn(a, ds.zeros(2, 3, dtype=ds.float64, device=device))
        with pytest.raises(ValueError, match="reduction"):
            fn(a, a, reduction="max")
    with pytest.raises(ValueError, match="beta"):
        F.smooth_l1_loss(a, a, beta=-1.0)
    # options are keyword-only: PyTorch's third positional slot is size_average (or weight)
    with pytest.raises(TypeError):
        F.mse_loss(a, a, "sum")
    with pytest.raises(TypeError):
        ds.nn.MSELoss("sum")
    if device == "cpu":
        with pytest.raises(ValueError, match="between 0 and 1"):
            F.binary_cross_entropy(ds.full((2,), 1.5), ds.zeros(2))
