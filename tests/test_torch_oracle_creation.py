"""torch as the oracle: tensor construction and factories (ds.tensor keeps a numpy array's
dtype, Python floats become float32; full/arange/linspace/eye dtypes and values; randint,
randperm and multinomial shapes, dtypes and ranges), the Tensor attributes of torch (size(),
numel(), dim(), dtype aliases), and the errors."""

from __future__ import annotations

import numpy as np
import pytest

import dlsys as ds

torch = pytest.importorskip("torch")

DATA = {  # name: data given to both ds.tensor and torch.tensor
    "python_floats": [1.0, 2.5],
    "python_ints": [[1, 2], [3, 4]],
    "python_bools": [True, False],
    "mixed_int_float": [1, 2.5],
    "mixed_bool_int": [True, 2],
    "empty_list": [],
    "python_float_scalar": 3.5,
    "python_int_scalar": 3,
    "numpy_float64": np.arange(3.0),
    "numpy_float32": np.arange(3, dtype=np.float32),
    "numpy_float16": np.arange(3, dtype=np.float16),
    "numpy_int32": np.arange(3, dtype=np.int32),
    "numpy_int64": np.arange(3),
    "numpy_bool": np.array([True, False]),
    "numpy_float64_scalar": np.float64(1.5),
    "numpy_float32_scalar": np.float32(1.5),
    "numpy_int32_scalar": np.int32(4),
    "numpy_0d_float64": np.array(2.0),
    "list_with_numpy_float64": [np.float64(1.5), 2.0],
    "list_of_numpy_int32": [np.int32(1), np.int32(2)],
    "list_of_numpy_float16": [np.float16(1.5)],
    "list_of_numpy_int32_arrays": [np.array([1, 2], np.int32)],
    "list_numpy_int32_and_python_int": [np.int32(1), 5],
    "list_numpy_float32_and_python_float": [np.float32(1.5), 2.0],
    "nested_mixed": [[1, 2], [3.5, 4]],
}


def _dtype_of(t):
    return np.asarray(t.detach().numpy() if hasattr(t, "detach") else t).dtype


@pytest.mark.parametrize("name", list(DATA))
def test_tensor_dtype_and_values_as_torch(name):
    data = DATA[name]
    want = torch.tensor(data).numpy()
    got = ds.tensor(data).numpy()
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_tensor_with_dtype_casts_as_torch():
    for data in ([1.7, -2.2], np.array([1.7, -2.2])):
        for d, t in ((ds.int64, torch.int64), (ds.float64, torch.float64), (ds.bool, torch.bool),
                     (ds.float16, torch.float16), (ds.int32, torch.int32)):
            np.testing.assert_array_equal(ds.tensor(data, dtype=d).numpy(),
                                          torch.tensor(data, dtype=t).numpy())


FACTORIES = {  # name: fn(L) -> tensor
    "zeros": lambda L: L.zeros(2, 3),
    "zeros_tuple": lambda L: L.zeros((2, 3)),
    "ones_dtype": lambda L: L.ones(2, dtype=L.int64),
    "full_int": lambda L: L.full((2, 2), 7),
    "full_float": lambda L: L.full((2,), 1.5),
    "full_bool": lambda L: L.full((3,), True),
    "full_dtype": lambda L: L.full((2,), 3, dtype=L.float64),
    "arange_int": lambda L: L.arange(5),
    "arange_start_stop_step": lambda L: L.arange(2, 11, 3),
    "arange_negative_step": lambda L: L.arange(5, 0, -2),
    "arange_float": lambda L: L.arange(0.0, 1.0, 0.25),
    "arange_float_step": lambda L: L.arange(0, 2, 0.5),
    "arange_dtype": lambda L: L.arange(4, dtype=L.float64),
    "linspace": lambda L: L.linspace(0, 1, 5),
    "linspace_one": lambda L: L.linspace(2, 3, 1),
    "linspace_empty": lambda L: L.linspace(0, 1, 0),
    "linspace_dtype": lambda L: L.linspace(-1, 1, 7, dtype=L.float64),
    "eye": lambda L: L.eye(3),
    "eye_rect": lambda L: L.eye(2, 4),
    "eye_dtype": lambda L: L.eye(2, dtype=L.int64),
    "zeros_like": lambda L: L.zeros_like(L.ones(2, 3, dtype=L.int32)),
    "full_like": lambda L: L.full_like(L.ones(2), 4.0),
    "empty_shape": lambda L: L.zeros(0, 3),
}


@pytest.mark.parametrize("name", list(FACTORIES))
def test_factory_as_torch(name):
    want = FACTORIES[name](torch).numpy()
    got = FACTORIES[name](ds).numpy()
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


RANDOM = {  # name: (fn(L), range check of the values)
    "randint_high_size": (lambda L: L.randint(5, (3, 4)), lambda a: a.min() >= 0 and a.max() < 5),
    "randint_low_high": (lambda L: L.randint(-2, 3, (100,)),
                         lambda a: a.min() >= -2 and a.max() < 3),
    "randint_kw": (lambda L: L.randint(low=1, high=4, size=(2,)), lambda a: set(a) <= {1, 2, 3}),
    "randperm": (lambda L: L.randperm(7), lambda a: sorted(a) == list(range(7))),
    "randn": (lambda L: L.randn(2, 3), lambda a: True),
    "rand": (lambda L: L.rand(4), lambda a: a.min() >= 0 and a.max() < 1),
    "multinomial_with_replacement": (
        lambda L: L.multinomial(L.tensor([0.0, 1.0, 3.0]), 10, replacement=True),
        lambda a: set(a) <= {1, 2}),
    "multinomial_without_replacement": (
        lambda L: L.multinomial(L.tensor([[1.0, 1.0, 0.0, 2.0], [0.0, 1.0, 1.0, 1.0]]), 3),
        lambda a: all(len(set(r)) == 3 for r in a) and 2 not in a[0] and 0 not in a[1]),
}


@pytest.mark.parametrize("name", list(RANDOM))
def test_random_factory_shape_dtype_and_range_as_torch(name):
    fn, ok = RANDOM[name]
    want = fn(torch).numpy()
    got = fn(ds).numpy()
    assert got.dtype == want.dtype and got.shape == want.shape
    assert ok(got)


def test_random_factories_follow_manual_seed():
    for fn in (lambda: ds.randint(0, 100, (5,)), lambda: ds.randperm(9),
               lambda: ds.multinomial(ds.tensor([1.0, 2.0, 3.0]), 2)):
        ds.manual_seed(3)
        a = fn().numpy().copy()
        ds.manual_seed(3)
        np.testing.assert_array_equal(fn().numpy(), a)


def test_tensor_attributes_as_torch():
    t, d = torch.zeros(2, 3, 4), ds.zeros(2, 3, 4)
    assert tuple(t.size()) == d.size() == d.shape and t.size(1) == d.size(1) == d.size(-2)
    assert t.numel() == d.numel() == d.nelement() and t.dim() == d.dim() == d.ndim
    assert t.element_size() == d.element_size() and d.is_floating_point()
    assert not ds.zeros(2, dtype=ds.long).is_floating_point()
    for name in ("bool", "long", "int", "float", "double", "half"):
        assert np.dtype(getattr(ds, name)) == torch.zeros(1, dtype=getattr(torch, name)).numpy(
        ).dtype
    for m in ("int", "long", "bool", "float", "double", "half"):
        assert getattr(d, m)().dtype == _dtype_of(getattr(t, m)()), m
    assert list(range(ds.tensor(3))) == list(range(torch.tensor(3)))  # __index__
    assert [10, 20, 30][ds.tensor(1)] == [10, 20, 30][torch.tensor(1)]
    assert (+ds.tensor([1.5])).tolist() == (+torch.tensor([1.5])).tolist()
    for bad in (ds.tensor(2.5), ds.tensor([1, 2])):
        with pytest.raises(TypeError, match="single element"):
            range(bad)


ERRORS = {  # name: (fn(L), expected exception, message)
    "size_dim_out_of_range": (lambda L: L.zeros(2, 3).size(2), IndexError, r"2"),
    "size_of_0d": (lambda L: L.zeros(()).size(0), IndexError, r"0-d"),
    "randint_empty_range": (lambda L: L.randint(3, 3, (2,)), ValueError, r"low < high"),
    "randperm_negative": (lambda L: L.randperm(-1), ValueError, r"non-negative"),
    "linspace_negative": (lambda L: L.linspace(0, 1, -1), ValueError, r"non-negative"),
    "eye_negative": (lambda L: L.eye(-1), ValueError, r"non-negative"),
    "zeros_negative": (lambda L: L.zeros(-1, 2), ValueError, r"non-negative"),
    "arange_step_0": (lambda L: L.arange(0, 5, 0), ValueError, r"non-zero"),
    "multinomial_too_many": (lambda L: L.multinomial(L.tensor([1.0, 0.0, 1.0]), 4), ValueError,
                             r"cannot draw 4"),
    "multinomial_negative": (lambda L: L.multinomial(L.tensor([1.0, -1.0]), 1), ValueError,
                             r"non-negative"),
    "multinomial_3d": (lambda L: L.multinomial(L.ones(1, 1, 2), 1), ValueError, r"1-D or 2-D"),
    "requires_grad_of_int": (lambda L: L.tensor([1, 2], requires_grad=True), (TypeError,
                                                                             RuntimeError),
                             r"floating"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_raises_where_torch_raises(name):
    fn, exc, match = ERRORS[name]
    with pytest.raises(Exception):  # noqa: B017
        fn(torch)
    with pytest.raises(exc, match=match):
        fn(ds)


def test_unsupported_numpy_dtype_is_a_clear_error():
    # a deliberate difference: torch keeps uint8/int16; dlsys has no kernels for them
    assert torch.tensor(np.zeros(2, np.uint8)).dtype == torch.uint8
    with pytest.raises(TypeError, match="uint8.*dtype="):
        ds.tensor(np.zeros(2, np.uint8))
    assert ds.tensor(np.zeros(2, np.uint8), dtype=ds.int64).dtype == ds.int64
