"""dlsys.nn.utils against torch.nn.utils: clip_grad_norm_ (dtype of the norm, norm_type,
error_if_nonfinite, non-finite norms) and clip_grad_value_."""

import math

import numpy as np
import pytest

import dlsys as ds
from dlsys import nn
from dlsys.nn.utils import clip_grad_norm_, clip_grad_value_, get_total_norm

torch = pytest.importorskip("torch")

TOL = {np.float16: 2e-3, np.float32: 2e-6, np.float64: 1e-12}


def _pair(grads):
    """The same parameters with these gradients in dlsys and torch."""
    ours, theirs = [], []
    for g in grads:
        p = nn.Parameter(ds.from_numpy(np.zeros_like(g)))
        p.grad = ds.from_numpy(g.copy())
        t = torch.nn.Parameter(torch.zeros(g.shape, dtype=getattr(torch, str(g.dtype))))
        t.grad = torch.from_numpy(g.copy())
        ours.append(p)
        theirs.append(t)
    return ours, theirs


def _grads(dtype, scale=1.0, seed=0):
    r = np.random.default_rng(seed)
    return [(r.standard_normal(s) * scale).astype(dtype) for s in ((3, 4), (5,), (2, 2, 2))]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("norm_type", [2.0, math.inf, 1.0, 3.0, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(dtype, norm_type, max_norm):
    ours, theirs = _pair(_grads(dtype))
    got = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    want = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert isinstance(got, ds.Tensor) and got.shape == () and got.dtype == dtype
    np.testing.assert_allclose(float(got.item()), float(want.item()), rtol=TOL[dtype])
    for p, t in zip(ours, theirs, strict=True):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad.numpy().astype(np.float64),
                                   t.grad.numpy().astype(np.float64), rtol=4 * TOL[dtype],
                                   atol=TOL[dtype])


def test_norm_of_float64_gradients_is_float64():
    # bug: the total norm came back as a float32 Tensor for float64 gradients
    ours, _ = _pair(_grads(np.float64))
    assert clip_grad_norm_(ours, 1.0).dtype == np.float64
    mixed, tmixed = _pair([np.ones(3, np.float32) * 3, np.ones(2, np.float64) * 4])
    got = clip_grad_norm_(mixed, 1.0)
    want = torch.nn.utils.clip_grad_norm_(tmixed, 1.0)
    assert got.dtype == np.float64 and str(want.dtype) == "torch.float64"
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-12)
    assert [p.grad.dtype for p in mixed] == [np.float32, np.float64]
    for p, t in zip(mixed, tmixed, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-6)


def test_unclipped_gradients_are_untouched_bitwise():
    grads = _grads(np.float32, scale=1e-3)
    ours, _ = _pair(grads)
    clip_grad_norm_(ours, 10.0)
    for p, g in zip(ours, grads, strict=True):
        np.testing.assert_array_equal(p.grad.numpy(), g)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_norms_as_torch(bad):
    g = np.array([bad, 1.0, 2.0], np.float32)
    ours, theirs = _pair([g])
    got = clip_grad_norm_(ours, 1.0)
    want = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_array_equal(ours[0].grad.numpy(), theirs[0].grad.numpy())   # nan/0s
    ours, _ = _pair([g])
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(ours[0].grad.numpy(), g)       # nothing was scaled


def test_edge_cases_as_torch():
    assert clip_grad_norm_([], 1.0).item() == 0.0
    p = nn.Parameter(ds.zeros(3))                                 # no grad: ignored
    assert clip_grad_norm_(p, 1.0).item() == 0.0
    ours, theirs = _pair([np.array([3.0, -4.0, 0.0], np.float32)])
    for nt in (0.0, -math.inf):
        np.testing.assert_allclose(get_total_norm([q.grad for q in ours], nt).item(),
                                   torch.nn.utils.get_total_norm([t.grad for t in theirs],
                                                                 nt).item())
    gen = (q for q in ours)
    clip_grad_norm_(gen, 1.0)
    np.testing.assert_allclose(ours[0].grad.numpy(), [0.6, -0.8, 0.0], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_value_matches_torch_bitwise(dtype):
    ours, theirs = _pair(_grads(dtype, scale=2.0))
    assert clip_grad_value_(ours, 0.7) is None
    torch.nn.utils.clip_grad_value_(theirs, 0.7)
    for p, t in zip(ours, theirs, strict=True):
        assert p.grad.dtype == dtype
        np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())
    single, tsingle = _pair([np.array([-3.0, 0.1, 5.0], dtype)])
    clip_grad_value_(single[0], 1)
    torch.nn.utils.clip_grad_value_(tsingle[0], 1)
    np.testing.assert_array_equal(single[0].grad.numpy(), tsingle[0].grad.numpy())
