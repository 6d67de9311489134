"""The device methods added for PyTorch's semantics, on every device: min (and max of bool),
cumsum, stable argsort (NaN last, or first descending), sin/cos/log1p, logical and bitwise
ops. The CPU is checked against plain numpy; CUDA (a GPU or Numba's simulator) against the CPU,
on tiny shapes (the simulator runs every thread as a Python thread)."""

from __future__ import annotations

import numpy as np
import pytest

import dlsys as ds
from dlsys.backend import cpu
from dlsys.backend import cpu_kernels as K

DEVICES = ["cpu"] + (["cuda"] if ds.cuda_is_available() else [])
RNG = np.random.default_rng(0)
C = cpu()


@pytest.fixture(params=DEVICES)
def D(request):
    return ds.backend.as_device(request.param)


def h(D, x):
    return np.asarray(D.to_numpy(x))


def same(D, got, want, exact=True):
    got = h(D, got)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype,
                                                                 want.shape, want.dtype)
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_argsort_reference_is_stable_with_nan_as_largest():
    x = np.array([2.0, np.nan, 1.0, 2.0, np.nan, 0.0])
    assert K.argsort_ref(x, 0).tolist() == [5, 2, 0, 3, 1, 4]
    assert K.argsort_ref(x, 0, descending=True).tolist() == [1, 4, 0, 3, 2, 5]
    b = np.array([True, False, True, False])
    assert K.argsort_ref(b, 0, descending=True).tolist() == [0, 2, 1, 3]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.bool_])
@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("descending", [False, True])
def test_argsort_matches_the_reference(D, dtype, axis, descending):
    x = RNG.integers(-3, 3, (3, 5, 4)).astype(dtype)  # many ties: stability matters
    if dtype == np.float32:
        x[0, 1, 2] = x[2, 3, 1] = np.nan
    same(D, D.argsort(D.from_numpy(x), axis, descending), K.argsort_ref(x, axis, descending))


def test_argsort_float16_and_strided(D):
    x = RNG.standard_normal((4, 6)).astype(np.float16)
    same(D, D.argsort(D.from_numpy(x), 1), K.argsort_ref(x, 1))
    y = RNG.standard_normal((6, 4)).astype(np.float32)
    v = D.permute(D.from_numpy(y), (1, 0))
    same(D, D.argsort(v, 0), K.argsort_ref(y.T, 0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.bool_])
def test_cumsum(D, dtype):
    x = RNG.integers(-4, 5, (3, 4, 2)).astype(dtype)
    for axis in (0, 1, 2):
        same(D, D.cumsum(D.from_numpy(x), axis), np.cumsum(x, axis=axis))
    same(D, D.cumsum(D.from_numpy(np.zeros((0, 3), dtype)), 0), np.zeros((0, 3), np.cumsum(
        np.zeros(1, dtype)).dtype))


def test_cumsum_float_is_sequential(D):
    x = RNG.standard_normal((2, 50)).astype(np.float32)
    same(D, D.cumsum(D.from_numpy(x), 1), np.cumsum(x, axis=1))  # bit for bit, same order
    f = RNG.standard_normal((3, 5)).astype(np.float16)
    np.testing.assert_allclose(h(D, D.cumsum(D.from_numpy(f), 1)).astype(np.float64),
                               np.cumsum(f.astype(np.float32), 1), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.int32, np.bool_])
def test_min_and_max(D, dtype):
    x = RNG.integers(-5, 5, (3, 6)).astype(dtype)
    if dtype == np.int64:
        x[1, 2] = np.iinfo(np.int64).min  # min is not -max(-x): no overflow
    for axis in (0, 1):
        for kd in (False, True):
            for name, arg in (("min", np.argmin), ("max", np.argmax)):
                v, i = getattr(D, name)(D.from_numpy(x), axis, kd)
                wi = arg(x, axis=axis, keepdims=True)
                wv = np.take_along_axis(x, wi, axis)
                if not kd:
                    wv, wi = wv.squeeze(axis), wi.squeeze(axis)
                same(D, v, wv)
                same(D, i, wi.astype(np.int64))
    v, i = D.min(D.from_numpy(x), None)
    same(D, v, np.asarray(x.min()))


def test_min_takes_the_first_nan(D):
    x = np.array([[1.0, np.nan, -2.0, np.nan]], np.float32)
    v, i = D.min(D.from_numpy(x), 1)
    assert np.isnan(h(D, v)).all() and h(D, i).tolist() == [1]


@pytest.mark.parametrize("op,ref", [("sin", np.sin), ("cos", np.cos), ("log1p", np.log1p)])
def test_float_unary(D, op, ref):
    x = RNG.uniform(-0.9, 3, (3, 4))
    for dt in (np.float32, np.float64):
        same(D, D.unary(op, D.from_numpy(x.astype(dt))), ref(x.astype(dt)), exact=False)


def test_logical_and_bitwise(D):
    m, n = np.array([True, False, True, False]), np.array([True, True, False, False])
    i, j = np.array([3, -4, 5, 0], np.int32), np.array([6, 7, -8, 1], np.int32)
    same(D, D.unary("logical_not", D.from_numpy(m)), ~m)
    same(D, D.unary("bitwise_not", D.from_numpy(i)), ~i)
    for op, f in (("bitwise_and", np.bitwise_and), ("bitwise_or", np.bitwise_or),
                  ("bitwise_xor", np.bitwise_xor)):
        same(D, D.binary(op, D.from_numpy(m), D.from_numpy(n)), f(m, n))
        same(D, D.binary(op, D.from_numpy(i), D.from_numpy(j)), f(i, j))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32])
def test_remainder_and_floor_divide_round_toward_minus_infinity(D, dtype):
    a = np.array([5.5, -3.2, 7.0, -7.0, 1.0, 0.0]).astype(dtype) if dtype in (
        np.float32, np.float64) else np.array([5, -3, 7, -7, 1, 0], dtype)
    b = np.array([2.0, 2.5, -3.0, 2.0, 0.1, 3.0]).astype(dtype) if a.dtype.kind == "f" else \
        np.array([2, 2, -3, 2, 3, 3], dtype)
    for op, f in (("remainder", np.remainder), ("floor_divide", np.floor_divide)):
        same(D, D.binary(op, D.from_numpy(a), D.from_numpy(b)), f(a, b))
        s = 2 if a.dtype.kind in "iu" else 2.5
        same(D, D.scalar(op, D.from_numpy(a), s), f(a, a.dtype.type(s)))
        same(D, D.scalar(op, D.from_numpy(b), s, reverse=True), f(b.dtype.type(s), b))


def test_float_remainder_and_floor_divide_by_zero(D):
    a = np.array([5.0, -3.0, 0.0], np.float32)
    z = np.zeros(3, np.float32)
    with np.errstate(all="ignore"):
        for op, f in (("remainder", np.remainder), ("floor_divide", np.floor_divide)):
            same(D, D.binary(op, D.from_numpy(a), D.from_numpy(z)), f(a, z))


def test_sign_of_infinities_and_nan(D):
    x = np.array([np.inf, -np.inf, 2.0, -0.5, 0.0, np.nan], np.float32)
    same(D, D.unary("sign", D.from_numpy(x)), np.sign(x))  # CUDA gave nan for +-inf
    i = np.array([5, -3, 0], np.int32)
    same(D, D.unary("sign", D.from_numpy(i)), np.sign(i))
