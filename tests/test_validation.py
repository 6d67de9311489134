"""Bad input is rejected once, by the front end, with a clear error naming what is wrong
(guarantee 6), on every device: the devices themselves do not validate (dlsys.backend.device).
"""

from __future__ import annotations

import numpy as np
import pytest

import dlsys as ds
import dlsys.nn.functional as F

DEVICES = ["cpu"] + (["cuda"] if ds.cuda_is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def logits(device):
    return ds.tensor(np.random.default_rng(0).standard_normal((5, 4)), device=device)


# -- cross-entropy targets -------------------------------------------------------------------------
def test_cross_entropy_rejects_an_out_of_range_host_target(device):
    with pytest.raises(ValueError, match=r"target values must lie in \[0, 4\), got min 0 max 4"):
        F.cross_entropy(logits(device), np.array([0, 4, 0, 0, 0]))


def test_cross_entropy_rejects_an_out_of_range_cpu_tensor_target():
    with pytest.raises(ValueError, match=r"target values must lie in \[0, 4\)"):
        F.cross_entropy(logits("cpu"), ds.tensor([0, 1, -1, 0, 0]))


def test_cross_entropy_rejects_a_target_of_the_wrong_length(device):
    with pytest.raises(ValueError, match=r"\(5, 4\).*\(3,\)"):
        F.cross_entropy(logits(device), ds.tensor([0, 1, 2], device=device))


def test_cross_entropy_rejects_a_probability_target_of_another_dtype(device):
    # NOTE: a float target is class probabilities (as in torch); it must match the logits' dtype
    with pytest.raises(TypeError, match="target dtype float32 differs from input dtype"):
        F.cross_entropy(logits(device), np.zeros(5, np.float32))


# -- windows -------------------------------------------------------------------------------------
@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
def test_pooling_window_must_fit(device, pool):
    x = ds.zeros(1, 2, 4, 4, device=device)
    with pytest.raises(ValueError, match=r"does not fit input of shape \(1, 2, 4, 4\)"):
        pool(x, 5, 1)


@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
def test_pooling_needs_nchw(device, pool):
    # NOTE: a 3-D input is an unbatched (C, H, W) one, as in PyTorch
    with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\) input, got shape \(4, 4\)"):
        pool(ds.zeros(4, 4, device=device), 2)


def test_conv2d_kernel_must_fit_the_padded_input(device):
    x, w = ds.zeros(1, 2, 4, 4, device=device), ds.zeros(3, 2, 6, 6, device=device)
    with pytest.raises(ValueError, match="too small for weight of shape"):
        F.conv2d(x, w, padding=0)
    assert F.conv2d(x, w, padding=1).shape == (1, 3, 1, 1)


def test_conv2d_needs_nchw(device):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        F.conv2d(ds.zeros(4, 4, device=device), ds.zeros(3, 2, 3, 3, device=device))


# -- in-place binary ops: one shared check --------------------------------------------------------
INPLACE = ["add_", "sub_", "mul_", "div_"]


@pytest.mark.parametrize("op", INPLACE)
def test_inplace_op_rejects_another_dtype(device, op):
    x = ds.ones(2, 3, device=device)
    other = ds.ones(2, 3, dtype=ds.float64, device=device)
    with pytest.raises(TypeError, match=f"{op}: dtypes differ, float32 and float64"):
        getattr(x, op)(other)
    np.testing.assert_array_equal(x.numpy(), 1.0)  # untouched


@pytest.mark.parametrize("op", INPLACE)
def test_inplace_op_rejects_another_shape(device, op):
    x = ds.ones(2, 3, device=device)
    with pytest.raises(ValueError, match=rf"{op}: shapes \(2, 3\) and \(3,\) differ"):
        getattr(x, op)(ds.ones(3, device=device))


@pytest.mark.parametrize("op", INPLACE)
def test_inplace_op_rejects_another_device(op):
    if "cuda" not in DEVICES:
        pytest.skip("needs a CUDA device (or the simulator)")
    x = ds.ones(2, 3)
    with pytest.raises(ValueError, match=f"{op}: expected all tensors on the same device"):
        getattr(x, op)(ds.ones(2, 3, device="cuda"))


@pytest.mark.parametrize("op", INPLACE)
def test_inplace_op_rejects_a_numpy_array_of_another_dtype(device, op):
    with pytest.raises(TypeError, match="numpy array of dtype float64"):
        getattr(ds.ones(3, device=device), op)(np.ones(3))


def test_inplace_float_scalar_on_an_integer_tensor_would_truncate(device):
    x = ds.tensor([1, 2, 3], device=device)
    with pytest.raises(TypeError, match="float scalar 0.5 with an integer tensor"):
        x.mul_(0.5)
    np.testing.assert_array_equal(x.numpy(), [1, 2, 3])


def test_inplace_int_scalar_on_an_integer_tensor(device):
    x = ds.tensor([1, 2, 3], device=device)
    x.add_(1)
    x.sub_(2)
    x.mul_(3)
    np.testing.assert_array_equal(x.numpy(), [0, 3, 6])
    assert x.dtype == ds.int64


def test_div_of_an_integer_tensor_in_place_is_an_error(device):
    with pytest.raises(TypeError, match="div_: true division needs a floating tensor"):
        ds.tensor([2, 4], device=device).div_(ds.tensor([1, 2], device=device))


def test_inplace_ops_compute_what_their_out_of_place_ops_do(device):
    a = np.array([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]], np.float32)
    b = np.array([[2.0, 4.0, -1.0], [0.5, 3.0, 2.0]], np.float32)
    for op, ref in [("add_", a + b), ("sub_", a - b), ("mul_", a * b), ("div_", a / b)]:
        x = ds.tensor(a, device=device)
        getattr(x, op)(ds.tensor(b, device=device))
        np.testing.assert_allclose(x.numpy(), ref, rtol=1e-6, err_msg=op)
    x = ds.tensor(a, device=device)
    x.add_(ds.tensor(b, device=device), alpha=0.5).div_(2.0)
    np.testing.assert_allclose(x.numpy(), (a + 0.5 * b) / 2, rtol=1e-6)
