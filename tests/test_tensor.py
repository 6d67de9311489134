"""Tensor construction, dtype rules, conversion, RNG, and the error messages for bad input."""

from __future__ import annotations

import numpy as np
import pytest

import dlsys as ds
import dlsys.nn.functional as F
from dlsys.backend.cpu import CPUDevice


class FakeDevice(CPUDevice):
    name = "fake"


def test_tensor_dtype_inference():
    assert ds.tensor([1.0, 2.0]).dtype == ds.float32
    assert ds.tensor(np.zeros(3)).dtype == ds.float64  # a numpy array keeps its dtype (torch)
    assert ds.tensor(np.zeros(3), dtype=ds.float32).dtype == ds.float32
    assert ds.tensor([1, 2]).dtype == ds.int64
    assert ds.tensor(np.array([1, 2], dtype=np.int32)).dtype == ds.int32
    assert ds.tensor(np.float64(1.5)).dtype == ds.float64
    assert ds.tensor([np.float64(1.5), 2.0]).dtype == ds.float64  # as torch
    with pytest.raises(TypeError, match="uint8.*dtype="):
        ds.tensor(np.zeros(2, np.uint8))
    assert ds.tensor([True, False]).dtype == ds.bool_
    assert ds.tensor(3.5).shape == () and ds.tensor(3.5).item() == 3.5
    assert ds.tensor([1, 2], dtype="float64").dtype == ds.float64
    with pytest.raises(TypeError):
        ds.tensor([1.0], dtype=np.complex64)


def test_tensor_copies_and_from_array_does_not():
    a = np.arange(4, dtype=np.float32)
    t = ds.tensor(a)
    a[0] = 9
    assert t.numpy()[0] == 0
    u = ds.Tensor.from_array(a)
    assert u.numpy() is a
    assert np.asarray(u) is a and np.shares_memory(np.asarray(t), t._data)
    assert ds.Tensor([1.0, 2.0]).dtype == ds.float32
    c = np.asarray(u, dtype=np.float64)
    assert c.dtype == np.float64


FACTORY_CHECKS = {
    "zeros": lambda: (ds.zeros(2, 3).shape, ds.zeros(2, 3).ndim, ds.zeros(2, 3).numel(),
                      ds.zeros(2, 3).size(), ds.zeros(2, 3).size(-1), ds.zeros(2, 3).dtype)
    == ((2, 3), 2, 6, (2, 3), 3, ds.float32),
    "ones_dtype": lambda: ds.ones((2, 3), dtype=ds.float64).dtype == ds.float64,
    "full": lambda: ds.full((2,), 7.0).numpy().tolist() == [7.0, 7.0],
    "full_dtype_of_fill": lambda: (ds.full((2,), 7).dtype, ds.full((2,), True).dtype,
                                   ds.full((2,), 7.0).dtype) == (ds.int64, ds.bool_, ds.float32),
    "zeros_like": lambda: ds.zeros_like(ds.zeros(2, 3)).shape == (2, 3),
    "ones_like_dtype": lambda: ds.ones_like(ds.zeros(2, 3), dtype=ds.int64).dtype == ds.int64,
    "randn_requires_grad": lambda: ds.randn(3, 4, requires_grad=True).requires_grad,
    "rand_range": lambda: ds.rand(5).numpy().min() >= 0,
    "arange": lambda: ds.arange(5).numpy().tolist() == [0, 1, 2, 3, 4],
    "arange_dtypes": lambda: (ds.arange(5).dtype, ds.arange(0.5, 2).dtype,
                              ds.arange(0, 2, 0.5).dtype) == (ds.int64, ds.float32, ds.float32),
    "randn_like": lambda: ds.randn_like(ds.zeros(2, 3)).shape == (2, 3),
    "rand_like": lambda: ds.rand_like(ds.zeros(2, 3)).shape == (2, 3),
    "full_like": lambda: ds.full_like(ds.zeros(2, 3), 2).numpy().sum() == 12,
    "len_iter": lambda: (len(ds.zeros(2, 3)), [r.shape for r in ds.zeros(2, 3)])
    == (2, [(3,), (3,)]),
    "repr_requires_grad": lambda: "requires_grad=True" in repr(ds.ones(2, requires_grad=True)),
    "repr_grad_fn": lambda: "grad_fn" in repr(ds.ones(2, requires_grad=True) * 2),
    "float_int": lambda: float(ds.tensor([2.5])) == 2.5 and int(ds.tensor(3)) == 3,
    "hash_by_identity": lambda: bool({ds.ones(1): 1}),  # despite __eq__ returning a Tensor
}


@pytest.mark.parametrize("name", list(FACTORY_CHECKS))
def test_factories_and_attributes(name):
    assert FACTORY_CHECKS[name]()


def test_item_needs_one_element():
    with pytest.raises(ValueError, match="one element"):
        ds.ones(2).item()


def test_rng_seed_and_state():
    ds.manual_seed(42)
    a = ds.randn(5).numpy().copy()
    st = ds.get_rng_state()
    b = ds.rand(3).numpy().copy()
    ds.manual_seed(42)
    np.testing.assert_array_equal(ds.randn(5).numpy(), a)
    ds.set_rng_state(st)
    np.testing.assert_array_equal(ds.rand(3).numpy(), b)
    assert ds.randn(2, dtype=ds.float64).dtype == ds.float64


def test_to_dtype_and_device():
    t = ds.ones(2)
    assert t.to(ds.float32) is t and t.to("cpu") is t and t.to(ds.cpu()) is t
    assert t.to(ds.float64).dtype == ds.float64
    assert t.to("float16").dtype == ds.float16
    assert t.to(dtype=np.float64, device="cpu").dtype == ds.float64
    assert t.double().dtype == ds.float64 and t.long().dtype == ds.int64


def test_mixed_dtypes_are_type_errors_naming_both():
    a = ds.ones(3)
    b = ds.ones(3, dtype=ds.float64)
    for op in (lambda: a + b, lambda: a * b, lambda: a @ b, lambda: ds.stack([a, b]),
               lambda: a > b, lambda: F.mse_loss(a, b)):
        with pytest.raises(TypeError, match="float32.*float64|float64.*float32"):
            op()
    i = ds.tensor([1, 2, 3])
    with pytest.raises(TypeError, match="int64"):
        i * 1.5
    assert (i * 2).dtype == ds.int64 and (i + 1).numpy().tolist() == [2, 3, 4]
    assert (a * 2).dtype == ds.float32 and (2.5 * a).dtype == ds.float32
    h = ds.ones(2, dtype=ds.float16)
    assert (h * 3.0).dtype == ds.float16 and (1 - h).dtype == ds.float16
    with pytest.raises(TypeError, match="int64"):
        i / 2
    with pytest.raises(TypeError, match="float64"):
        a + np.zeros(3)
    assert (a + np.zeros(3, dtype=np.float32)).shape == (3,)
    with pytest.raises(TypeError):
        a + "x"


def test_comparisons_return_bool_without_grad():
    a = ds.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for r in (a > 2, a >= 2, a < 2, a <= 2, a == 2, a != 2, a > ds.ones(1)):
        assert r.dtype == ds.bool_ and not r.requires_grad
    assert (a == 2).numpy().tolist() == [False, True, False]
    assert (ds.tensor([1, 2]) > 1.5).numpy().tolist() == [False, True]


SHAPE_ERRORS = {  # name: (call, exception, pattern)
    "add": (lambda a, b: a + b, ValueError, r"\(2, 3\).*\(4, 3\)"),
    "matmul": (lambda a, b: a @ a, ValueError, r"\(2, 3\).*\(2, 3\)"),
    "mse_loss": (lambda a, b: F.mse_loss(a, b), ValueError, r"\(2, 3\).*\(4, 3\)"),
    "cross_entropy": (lambda a, b: F.cross_entropy(a, ds.tensor([0, 1, 2, 0])), ValueError,
                      r"\(2, 3\).*\(4,\)"),
    "conv2d_channels": (lambda a, b: F.conv2d(ds.ones(1, 2, 5, 5), ds.ones(3, 1, 3, 3)),
                        ValueError, r"\(1, 2, 5, 5\).*\(3, 1, 3, 3\)"),
    "conv2d_too_small": (lambda a, b: F.conv2d(ds.ones(1, 1, 2, 2), ds.ones(3, 1, 3, 3)),
                         ValueError, r"\(1, 1, 2, 2\).*\(3, 1, 3, 3\)"),
    "linear": (lambda a, b: F.linear(a, ds.ones(5, 4)), ValueError, r"\(2, 3\).*\(5, 4\)"),
    "broadcast_to": (lambda a, b: a.broadcast_to(3, 3), ValueError, r"\(2, 3\).*\(3, 3\)"),
    "reshape": (lambda a, b: a.reshape(4, 2), ValueError, r"\(2, 3\)"),
    "stack": (lambda a, b: ds.stack([a, b]), ValueError, r"\(2, 3\).*\(4, 3\)"),
    "cross_entropy_float_target": (lambda a, b: F.cross_entropy(a, ds.tensor([0.0, 1.0])),
                                   TypeError, "float32"),
    "layer_norm": (lambda a, b: F.layer_norm(ds.ones(5, 3), 4), ValueError, r"\(5, 3\)"),
}


@pytest.mark.parametrize("name", list(SHAPE_ERRORS))
def test_shape_errors_name_both_shapes(name):
    call, exc, pattern = SHAPE_ERRORS[name]
    with pytest.raises(exc, match=pattern):
        call(ds.ones(2, 3), ds.ones(4, 3))


def test_device_mismatch_is_value_error_naming_both():
    a = ds.ones(3)
    b = ds.Tensor.from_array(np.ones(3, dtype=np.float32), device=FakeDevice())
    for op in (lambda: a + b, lambda: a @ b, lambda: ds.concatenate([a, b]),
               lambda: F.mse_loss(a, b)):
        with pytest.raises(ValueError, match="cpu.*fake"):
            op()


def test_getitem_forward_semantics():
    a = ds.tensor(np.arange(12.0).reshape(3, 4))
    assert a[1].numpy().tolist() == [4, 5, 6, 7]
    assert a[:, 1].shape == (3,) and a[..., None].shape == (3, 4, 1)
    assert a[[0, 0, 2]].shape == (3, 4)
    assert a[ds.tensor([2, 1])].numpy()[0, 0] == 8
    with pytest.raises(TypeError):
        a[ds.tensor([0.5])]
    with pytest.raises(IndexError):
        a[5]


def test_methods_shapes():
    x = ds.randn(2, 3, 4)
    assert x.sum().shape == () and x.sum(1).shape == (2, 4) and x.mean((0, 2), True).shape == \
        (1, 3, 1)
    assert x.amax(2).shape == (2, 3) and x.flatten().shape == (24,)
    assert x.flatten(1).shape == (2, 12) and x.permute(2, 0, 1).shape == (4, 2, 3)
    assert x.T.shape == (4, 3, 2) and x.transpose(0, 1).shape == (3, 2, 4)
    assert x.reshape(6, -1).shape == (6, 4) and x.reshape((4, 6)).shape == (4, 6)
    assert ds.stack([x, x], 1).shape == (2, 2, 3, 4)
    assert ds.concatenate([x, x], -1).shape == (2, 3, 8)
    with pytest.raises(IndexError):
        x.sum(3)
    with pytest.raises(ValueError):
        x.permute(0, 1)


def test_pickle_and_deepcopy_by_value():
    import copy
    import pickle

    t = ds.randn(2, 3, requires_grad=True)
    (t * 2).sum().backward()
    for u in (copy.deepcopy(t), pickle.loads(pickle.dumps(t))):
        assert u.requires_grad and u.device is ds.cpu() and u.is_leaf
        assert not np.shares_memory(u.numpy(), t.numpy())
        np.testing.assert_array_equal(u.numpy(), t.numpy())
        np.testing.assert_array_equal(u.grad.numpy(), t.grad.numpy())


def test_multinomial_frequencies_follow_the_weights():
    ds.manual_seed(0)
    p = np.array([0.1, 0.0, 0.3, 0.6])
    draws = ds.multinomial(ds.tensor(p * 5), 20000, replacement=True).numpy()
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / draws.size, p, atol=0.015)
    firsts = np.array([ds.multinomial(ds.tensor(p), 2).numpy()[0] for _ in range(4000)])
    np.testing.assert_allclose(np.bincount(firsts, minlength=4) / firsts.size, p, atol=0.03)
    assert ds.multinomial(ds.tensor(p), 4).numpy()[-1] == 1  # probability 0 comes last
