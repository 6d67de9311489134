"""torch as the oracle: elementwise ops, comparisons, bitwise ops, clamp, where, matmul and
activations, forward and input gradients in float32 and float64 (tests/torch_oracle.py), the
edge cases of issue 11 (pow gradients at 0 and for c <= 0, clamp at its bounds, 1-D and empty
matmuls), and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from torch_oracle import DEVICES, P, R, U, check, check_raises

torch = pytest.importorskip("torch")

A, B = R(3, 4), R(4, seed=1)
CASES = {  # name: (fn(L, *tensors), arrays)
    "add_bcast": (lambda L, a, b: a + b - 2.0 * b, (A, B)),
    "mul_div": (lambda L, a, b: a * b / (b * b + 1.0), (A, B)),
    "rsub_rdiv": (lambda L, a: 1.5 - a + 2.0 / (a * a + 1.0), (A,)),
    "neg_abs": (lambda L, a: -a + a.abs() + abs(a), (R(3, 4, seed=5) + 0.01,)),
    "exp_log_sqrt": (lambda L, a: a.exp() + a.log() + a.sqrt() + a.log1p(), (P(3, 4),)),
    "sin_cos": (lambda L, a: a.sin() * 2 + a.cos(), (A,)),
    "erf": (lambda L, a: a.erf() + L.erf(a * 2), (A,)),
    "tanh_sigmoid_relu": (lambda L, a: a.tanh() + a.sigmoid() + a.relu(), (U(3, 4),)),
    "pow_tensor": (lambda L, a, b: a ** b, (P(3, 4), R(4, seed=2))),
    "pow_scalars": (lambda L, a: a ** 2 + a ** 0.5 + 2.0 ** a + a.pow(3), (P(3, 4),)),
    "maximum_minimum": (lambda L, a, b: L.maximum(a, b) + L.minimum(a, b) * 2, (U(3, 4), B)),
    "max_min_other": (lambda L, a, b: a.max(b) - a.min(b), (U(3, 4), B)),
    "clamp": (lambda L, a: a.clamp(-0.5, 0.7) + a.clamp(min=0.1) + a.clip(max=0.2),
              (U(3, 4),)),
    "clamp_tensor_bounds": (lambda L, a, lo, hi: a.clamp(lo, hi), (U(3, 4), R(4) - 1, R(3, 1) + 1)),
    "clamp_min_gt_max": (lambda L, a: a.clamp(0.5, -0.5), (U(3, 4),)),
    "where_tensors": (lambda L, a, b: L.where(a > 0, a, b), (U(3, 4), B)),
    "where_scalar_branches": (lambda L, a: L.where(a > 0, a, 0.5) + L.where(a < 0, -1.0, a),
                              (U(3, 4),)),
    "where_two_scalars": (lambda L, a: L.where(a > 0, 1.0, 0.0), (U(3, 4),)),
    "where_two_ints": (lambda L, a: L.where(a > 0, 2, -1), (U(3, 4),)),
    "where_method": (lambda L, a, b: a.where(a > 0, b), (U(3, 4), B)),
    "compare": (lambda L, a, b: ((a > b), (a <= 0.1), (a == a), (a != b)), (U(3, 4), B)),
    "compare_int_float": (lambda L, i: (i > 1.5, i == 2), (np.array([1, 2, 3]),)),
    "bool_ops": (lambda L, m, n: (m & n, m | n, m ^ n, ~m, m & True),
                 (np.array([True, False, True]), np.array([True, True, False]))),
    "int_bitwise": (lambda L, i, j: (i & j, i | j, i ^ j, ~i), (np.array([3, -4, 5]),
                                                             np.array([6, 7, -8]))),
    "remainder": (lambda L, a, b: (a % b, a % 0.7, L.remainder(a, -1.5), a.remainder(b)),
                  (R(3, 4) * 4, B + 0.1)),
    "floor_divide_forward": (lambda L, a, b: (a.detach() // b.detach(), a.detach() // 0.3,
                                              1.0 // a.detach()), (R(3, 4) * 4, B + 0.1)),
    "int_remainder_floor_divide": (lambda L, i, j: (i % j, i // j, i % 3, -7 // j, 7 % j),
                                   (np.array([5, -3, 7, -7]), np.array([2, 2, -3, 3]))),
    "float_mod_by_zero": (lambda L, a: (a % 0.0, a.detach() // 0.0), (np.array([1.0, -2.0, 0.0]),)),
    "square_rsqrt_reciprocal_sign": (lambda L, a: (a.square(), a.abs().rsqrt(),
                                                   a.reciprocal(), a.sign(), L.square(a)),
                                     (U(3, 4) + 0.05,)),
    "new_and_type_as": (lambda L, a, i: (a.new_zeros(2, 3), a.new_ones((2,)),
                                         a.new_full((2, 2), 3), a.new_tensor([1, 2]),
                                         i.type_as(a), a.to(i)), (A, np.array([1, 2]))),
    "floor_ceil_trunc": (lambda L, a: (a.floor(), L.ceil(a), a.trunc(), a.sign()),
                         (np.array([-2.5, -0.5, -0.0, 0.5, 1.5, 2.0, np.inf, -np.inf, np.nan]),)),
    "logical": (lambda L, i, m: (L.logical_and(i, m), L.logical_or(i, m), i.logical_xor(m),
                                 L.logical_not(i)), (np.array([0, 2, -1, 0]),
                                                     np.array([True, True, False, False]))),
    "isnan_isinf_isfinite": (lambda L, a, i: (a.isnan(), L.isinf(a), L.isfinite(a),
                                              L.isfinite(i), L.isinf(i)),
                             (np.array([1.0, np.nan, np.inf, -np.inf, -0.0]), np.array([1, 2]))),
    "mm_bmm_dot_outer": (lambda L, a, b, c, d, v, w: (L.mm(a, b), L.bmm(c, d), L.dot(v, w),
                                                      L.outer(v, w[:3]), a.mm(b)),
                         (R(3, 4), R(4, 2), R(2, 3, 4), R(2, 4, 5), R(4), R(4, seed=1))),
    "matmul_2d": (lambda L, a, b: a @ b, (R(3, 4), R(4, 5))),
    "matmul_batched_bcast": (lambda L, a, b: a @ b, (R(2, 1, 3, 4), R(5, 4, 2))),
    "matmul_1d_1d": (lambda L, a, b: a @ b, (R(4), R(4, seed=1))),
    "matmul_1d_2d": (lambda L, a, b: a @ b, (R(4), R(4, 3))),
    "matmul_2d_1d": (lambda L, a, b: L.matmul(a, b), (R(3, 4), R(4))),
    "matmul_1d_3d": (lambda L, a, b: a @ b, (R(4), R(2, 4, 3))),
    "matmul_3d_1d": (lambda L, a, b: a @ b, (R(2, 3, 4), R(4))),
    "matmul_empty_rows": (lambda L, a, b: a @ b, (R(0, 3), R(3, 4))),
    "matmul_empty_inner": (lambda L, a, b: a @ b, (R(3, 0), R(0, 4))),
    "matmul_empty_batch": (lambda L, a, b: a @ b, (R(0, 2, 3), R(3, 4))),
    "matmul_empty_1d": (lambda L, a, b: a @ b, (R(0), R(0))),
    "silu": (lambda L, a: L.nn.functional.silu(a), (A,)),
    "softplus": (lambda L, a: L.nn.functional.softplus(a * 10), (A,)),
    "softplus_beta_threshold": (lambda L, a: L.nn.functional.softplus(a * 10, 0.5, 3.0), (A,)),
    "gelu": (lambda L, a: L.nn.functional.gelu(a), (A,)),
    "gelu_tanh": (lambda L, a: L.nn.functional.gelu(a, approximate="tanh"), (A,)),
    "relu_module_functions": (lambda L, a: L.nn.functional.relu(a) + L.tanh(a), (U(3, 4),)),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch(name, device):
    fn, arrays = CASES[name]
    check(torch, fn, *arrays, device=device)


# -- the gradients of issue 11 ------------------------------------------------------------------
POW_EDGES = {  # x ** 0, 0 ** x, 0 ** 0.3, c ** x with c <= 0, tensor ** tensor at 0
    "x_pow_0": (lambda L, x: x ** 0, (np.array([0.0, 2.0, -1.5]),)),
    "x_pow_0.3_at_0": (lambda L, x: x ** 0.3, (np.array([0.0, 2.0]),)),
    "zero_pow_x": (lambda L, x: 0.0 ** x, (np.array([0.3, 0.0, 2.0, -0.5]),)),
    "neg_pow_x": (lambda L, x: (-2.0) ** x, (np.array([2.0, 3.0, 0.5]),)),
    "tensor_pow_zero_exponent": (lambda L, a, b: a ** b, (np.array([0.0, 0.0, 2.0, 0.0]),
                                                         np.array([0.0, 0.3, 0.0, 2.0]))),
    "tensor_pow_negative_base": (lambda L, a, b: a ** b, (np.array([-2.0, -1.5]),
                                                         np.array([2.0, 3.0]))),
}


@pytest.mark.parametrize("name", list(POW_EDGES))
def test_pow_gradients_as_torch(name):
    fn, arrays = POW_EDGES[name]
    check(torch, fn, *arrays)


def test_clamp_gradient_is_one_at_the_bounds():
    check(torch, lambda L, a: a.clamp(-1.0, 1.0) + a.clamp(min=0.5) + a.clamp(max=-0.5),
          np.array([-1.0, -0.5, 0.5, 1.0, 2.0]))


def test_clamp_nan_passes():
    check(torch, lambda L, a: a.clamp(-1.0, 1.0), np.array([np.nan, 0.5]))


# -- errors -----------------------------------------------------------------------------------
ERRORS = {
    "clamp_none_none": (lambda L, a: a.clamp(), (A,)),
    "clamp_none_none_kw": (lambda L, a: L.clamp(a, min=None, max=None), (A,)),
    "matmul_misaligned": (lambda L, a, b: a @ b, (R(3, 4), R(3, 4))),
    "matmul_0d": (lambda L, a, b: a @ b, (np.array(1.0), R(3))),
    "matmul_bad_batch": (lambda L, a, b: a @ b, (R(2, 3, 4), R(3, 4, 2))),
    "add_bad_shapes": (lambda L, a, b: a + b, (R(2, 3), R(4, 3))),
    "float_bitwise": (lambda L, a: a & a, (A,)),
    "float_invert": (lambda L, a: ~a, (A,)),
    "gelu_bad_approximate": (lambda L, a: L.nn.functional.gelu(a, approximate="x"), (A,)),
    "matmul_mixed_dtypes": (lambda L, a, b: a @ b.double(), (R(3, 4), R(4, 2))),
    "int_remainder_by_zero": (lambda L, a, b: a.long() % 0, (A, A)),
    "mm_of_3d": (lambda L, a, b: L.mm(a[None], b), (A, A.T.copy())),
    "bmm_batches_differ": (lambda L, a, b: L.bmm(a[None].expand(2, 3, 4), b[None]),
                           (A, A.T.copy())),
    "dot_of_2d": (lambda L, a, b: L.dot(a, b), (A, A)),
    "int_floor_divide_by_zero_tensor": (lambda L, a, b: a.long() // (b * 0).long(), (A, A)),
    "floor_divide_backward": (lambda L, a, b: (a // 2.0).sum().backward(), (A, A)),
    "rremainder_backward": (lambda L, a, b: (7.0 % a).sum().backward(), (A, A)),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_raises_where_torch_raises(name):
    fn, arrays = ERRORS[name]
    check_raises(torch, fn, *arrays)


# -- where dlsys deliberately differs: a clear error instead of a silent cast ------------------
DIFFERENT = {  # torch promotes (float64, or int -> float); dlsys raises TypeError naming both
    "float32_plus_float64": (lambda L, a, b: a + b.double(), "float32.*float64"),
    "int_times_float_scalar": (lambda L, a, b: a.long() * 1.5, "float scalar.*int64"),
    "int_true_division": (lambda L, a, b: a.long() / 2, "true division"),
    "where_mixed_dtypes": (lambda L, a, b: L.where(a > 0, a, b.double()), "float32.*float64"),
    "clamp_int_float_bound": (lambda L, a, b: a.long().clamp(0.5), "float scalar"),
    "cat_mixed": (lambda L, a, b: L.cat([a, b.double()]), "float32.*float64"),
}


@pytest.mark.parametrize("name", list(DIFFERENT))
def test_deliberate_difference_raises_type_error(name):
    import dlsys as ds

    fn, pattern = DIFFERENT[name]
    a, b = R(3, 4), R(3, 4, seed=1)
    fn(torch, torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))
    with pytest.raises(TypeError, match=pattern):
        fn(ds, ds.tensor(a, dtype=ds.float32), ds.tensor(b, dtype=ds.float32))


def test_pow_of_negative_base_scalar_has_no_math_domain_error():
    import dlsys as ds

    x = ds.tensor([2.0, 0.5], requires_grad=True)
    ((-3.0) ** x).sum().backward()
    assert np.isnan(x.grad.numpy()).all()  # torch: nan (log of a negative base)
    assert not math.isnan(float((-3.0) ** ds.tensor(2.0)))


INPLACE = {  # name: fn(x) on a tensor that does not require grad; returns x
    "clamp_": lambda x: x.clamp_(-0.5, 0.5),
    "masked_fill_": lambda x: x.masked_fill_(x > 0, 2.0),
    "scatter_": lambda x: x.scatter_(1, x.new_tensor([[0], [2], [1]]).long(), 7.0),
    "tril_": lambda x: x.tril_(1),
    "exp_sin_abs_": lambda x: x.exp_().sin_().abs_(),
    "pow_": lambda x: x.abs_().pow_(1.5),
}


@pytest.mark.parametrize("name", list(INPLACE))
def test_inplace_variants_as_torch(name):
    import dlsys as ds

    a = R(3, 4)
    t, d = torch.tensor(a), ds.tensor(a)
    assert INPLACE[name](d) is d
    INPLACE[name](t)
    np.testing.assert_allclose(d.numpy(), t.numpy(), rtol=1e-12)


def test_allclose_and_equal_as_torch():
    import dlsys as ds

    a, b = R(3), R(3) + 1e-9
    for L in (torch, ds):
        x, y = L.tensor(a), L.tensor(b)
        assert L.allclose(x, y) and not L.equal(x, y) and L.equal(x, x.clone())
        assert not L.allclose(x, y + 1.0)
