"""torch as the oracle: reductions and the softmax family, with dim=/keepdim= and axis=/keepdims=,
named tuples of max/min, unbiased var/std (nan and inf when the correction leaves too few
degrees of freedom), min of the most negative integer and of bools, 0-d inputs, and the errors
(dims out of range raise IndexError naming the dim and the number of dims)."""

from __future__ import annotations

import numpy as np
import pytest
from torch_oracle import DEVICES, R, U, check, check_raises

torch = pytest.importorskip("torch")

X = U(2, 3, 4)
CASES = {
    "sum": (lambda L, x: (x.sum(), x.sum(1), x.sum(dim=(0, 2), keepdim=True), L.sum(x, -1)), (X,)),
    "sum_axis_alias": (lambda L, x: x.sum(axis=1, keepdims=True), (X,)),
    "sum_dtype": (lambda L, x: x.sum(dtype=L.float64), (X,)),
    "mean": (lambda L, x: (x.mean(), x.mean(dim=1), x.mean((0, 1), True)), (X,)),
    "prod": (lambda L, x: (x.prod(), x.prod(1), x.prod(dim=-1, keepdim=True)), (X * 0.3,)),
    "prod_zeros": (lambda L, x: x.prod(0), (np.array([[0.0, 2.0, 0.0], [3.0, 0.5, 0.0]]),)),
    "amax_amin": (lambda L, x: (x.amax(), x.amax(1), x.amin((0, 2)), x.amax(-1, True)), (X,)),
    "amax_ties_share": (lambda L, x: x.amax(1), (np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.5]]),)),
    "max_value": (lambda L, x: (x.max(), x.min()), (X,)),
    "max_value_ties_share": (lambda L, x: x.max(), (np.array([3.0, 1.0, 3.0]),)),
    "max_dim": (lambda L, x: x.max(1), (X,)),
    "max_dim_keepdim": (lambda L, x: x.max(dim=-1, keepdim=True), (X,)),
    "min_dim": (lambda L, x: x.min(0), (X,)),
    "max_dim_ties_first_index": (lambda L, x: x.max(1),
                                 (np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.5]]),)),
    "max_function": (lambda L, x: L.max(x, 2), (X,)),
    "argmax_argmin": (lambda L, x: (x.argmax(), x.argmax(1), x.argmin(dim=2, keepdim=True),
                                    x.argmax(keepdim=True)), (X,)),
    "var_std_default_unbiased": (lambda L, x: (x.var(), x.std(), x.var(1), x.std(dim=(0, 2))),
                                 (X,)),
    "var_unbiased_false": (lambda L, x: (x.var(1, unbiased=False), x.std(0, False)), (X,)),
    "var_correction": (lambda L, x: (x.var(correction=0), x.var(1, correction=2, keepdim=True)),
                       (X,)),
    "var_unbiased_positional": (lambda L, x: x.var(False), (X,)),
    "var_one_element_nan": (lambda L, x: (x.var(0), x.std(1)), (R(1, 3),)),

    "any_all": (lambda L, x: ((x > 0).any(), (x > 0).all(1), (x > -9).all(), x.any(dim=0)),
                (X,)),
    "any_all_int": (lambda L, i: (i.any(), i.all(0)), (np.array([[0, 1], [2, 3]]),)),
    "count_nonzero": (lambda L, i, x: (L.count_nonzero(i), i.count_nonzero(0),
                                       L.count_nonzero(x > 0, dim=(0, 1))),
                      (np.array([[0, 1], [2, 0]]), X)),
    "norm": (lambda L, x: (x.norm(), x.norm(dim=1), x.norm(1, 2), x.norm(p=3, dim=(0, 2)),
                           x.norm(float("inf"), 1), x.norm(0), x.norm("fro")), (X,)),
    "norm_at_zero": (lambda L, x: (x.norm(dim=1), x.norm(3, 1), x.norm(0.5, 1), x.norm(1, 1)),
                     (np.array([[0.0, 0.0], [3.0, 0.0]]),)),
    "std_of_a_constant": (lambda L, x: (x.std(), x.std(1), x.norm(dim=0)), (np.ones((2, 3)),)),
    "cumsum": (lambda L, x: (x.cumsum(0), x.cumsum(dim=-1), L.cumsum(x, 1)), (X,)),
    "cumsum_int_bool": (lambda L, i: (i.cumsum(0), (i > 0).cumsum(1)),
                        (np.array([[1, -2], [3, 4]], np.int32),)),
    "logsumexp": (lambda L, x: (x.logsumexp(1), L.logsumexp(x, (0, 2), keepdim=True),
                                x.logsumexp(-1, True)), (X,)),
    "softmax_dims": (lambda L, x: (L.softmax(x, 1), x.softmax(dim=-1), x.log_softmax(0),
                                   L.nn.functional.softmax(x, dim=2)), (X,)),
    "int_sum_is_int64": (lambda L, i: (i.sum(), i.sum(0), (i > 1).sum(), i.prod()),
                         (np.array([[1, 2], [3, 4]], np.int32),)),
    "bool_max_min": (lambda L, m: (m.max(), m.min(), m.max(0), m.amin(1)),
                     (np.array([[True, False], [True, True]]),)),
    "int64_min_value": (lambda L, i: (i.min(), i.min(0), i.amin(), i.argmin()),
                        (np.array([3, -2 ** 63, 5]),)),
    "nan_propagates": (lambda L, x: (x.max(), x.min(0), x.amax(), x.argmax(), x.sum()),
                       (np.array([1.0, np.nan, 3.0]),)),
    "empty_sum_prod_mean": (lambda L, x: (x.sum(0), x.prod(0), x.mean(0)), (R(0, 3),)),
}
SCALAR = np.array(1.5)
CASES.update({  # 0-d inputs, as torch accepts them
    "0d_sum_dims": (lambda L, x: (x.sum(), x.sum(0), x.sum(-1), x.sum(dim=-1, keepdim=True),
                                  x.mean(0)), (SCALAR,)),
    "0d_max_dim": (lambda L, x: x.max(0), (SCALAR,)),
    "0d_min_amax_argmax": (lambda L, x: (x.min(-1, keepdim=True), x.amax(0), x.argmax(0)),
                           (SCALAR,)),
    "0d_prod_cumsum_norm": (lambda L, x: (x.prod(0), x.cumsum(0), x.norm(), x.logsumexp(0)),
                            (SCALAR,)),
    "0d_softmax": (lambda L, x: (L.softmax(x, 0), L.log_softmax(x, -1)), (SCALAR,)),
    "0d_var": (lambda L, x: (x.var(), x.std(correction=0)), (SCALAR,)),
})


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch(name, device):
    fn, arrays = CASES[name]
    check(torch, fn, *arrays, device=device,
          tol={"rtol": 1e-4, "atol": 1e-5} if "prod" in name else None)


def test_var_with_a_correction_beyond_n_is_inf_as_torch():
    # NOTE: forward only: torch's backward then divides by N - correction < 0 (a finite
    # gradient of an infinite value); dlsys's gradient there is nan.
    check(torch, lambda L, x: x.var(0, correction=3), R(2, 3), grad=False)


def test_max_dim_is_a_named_tuple_with_values_and_indices():
    import dlsys as ds

    r = ds.tensor([[1.0, 5.0], [7.0, 2.0]]).max(dim=1)
    assert type(r).__name__ == "max" and r._fields == ("values", "indices")
    values, indices = r
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0]
    assert ds.tensor([[1.0, 5.0]]).min(1).indices.dtype == ds.int64


ERRORS = {  # name: (fn, arrays, expected exception, message)
    "sum_dim_out_of_range": (lambda L, x: x.sum(3), IndexError, r"\[-3, 2\].*3.*3 dims"),
    "mean_dim_out_of_range": (lambda L, x: x.mean(dim=-4), IndexError, r"-4"),
    "max_dim_out_of_range": (lambda L, x: x.max(5), IndexError, r"5"),
    "argmax_dim_out_of_range": (lambda L, x: x.argmax(3), IndexError, r"3"),
    "var_dim_out_of_range": (lambda L, x: x.var(7), IndexError, r"7"),
    "softmax_dim_out_of_range": (lambda L, x: L.softmax(x, 3), IndexError, r"3"),
    "cumsum_dim_out_of_range": (lambda L, x: x.cumsum(4), IndexError, r"4"),
    "repeated_dims": (lambda L, x: x.sum((0, 0)), ValueError, r"more than once"),
    "max_of_tuple_dims": (lambda L, x: x.max((0, 1)), TypeError, r"amax"),
    "max_of_empty": (lambda L, x: x[:0].max(), ValueError, r"non-empty"),
    "amax_of_empty_dim": (lambda L, x: x[:, :0].amax(1), IndexError, r"non-zero size"),
    "mean_of_int": (lambda L, x: x.long().mean(), TypeError, r"floating"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_raises_where_torch_raises(name):
    fn, exc, match = ERRORS[name]
    check_raises(torch, fn, X, expected=exc, match=match)


def test_0d_dims_out_of_range_raise_index_error():
    check_raises(torch, lambda L, x: x.sum(1), SCALAR, expected=IndexError,
                 match=r"\[-1, 0\].*1")
    check_raises(torch, lambda L, x: x.max(-2), SCALAR, expected=IndexError)
