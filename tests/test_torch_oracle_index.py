"""torch as the oracle: indexing (basic, advanced, and ints mixed with index arrays, where
PyTorch's result shape differs from numpy's), __setitem__ in the same order, gather/scatter/
scatter_add/index_select/select/narrow, masked_fill, tril/triu, sort/argsort/topk, one_hot,
nonzero; forward and input gradients in float32 and float64, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
from torch_oracle import DEVICES, R, U, check, check_raises

torch = pytest.importorskip("torch")

X = R(2, 3, 4)
X5 = R(2, 3, 12, 5, 6)
I3 = np.array([0, 2, 1])


def ix(L, a):
    """An index array as each library's own tensor."""
    return L.tensor(a)


CASES = {
    "basic": (lambda L, x: (x[1], x[:, 1:3], x[..., ::2], x[None, 0, ..., -1], x[1, 2, 3]),
              (X,)),
    "int_array": (lambda L, x: (x[ix(L, [1, 0])], x[:, ix(L, I3)], x[ix(L, [[0, 1], [1, 1]])]),
                  (X,)),
    "list_index": (lambda L, x: (x[[0, 1, 1]], x[:, [2, 0]]), (X,)),
    "two_arrays": (lambda L, x: (x[ix(L, [0, 1]), ix(L, [2, 0])], x[ix(L, [0, 1]), :,
                                                                    ix(L, [3, 1])]), (X,)),
    "bool_mask": (lambda L, x: (x[x > 0], x[ix(L, [True, False])],
                                x[:, ix(L, [True, False, True])]), (X,)),
    "issue_mixed_ints_and_array": (lambda L, x: x[1, :, 3:11:2, ix(L, I3), 0:2], (X5,)),
    "int_slice_array": (lambda L, x: (x[0, :, ix(L, [1, 3])], x[ix(L, [1, 0]), :, 0],
                                      x[..., 0, ix(L, [1, 2])], x[None, 0, :, ix(L, [1, 2])]),
                        (X,)),
    "0d_tensor_index_is_an_int": (lambda L, x: x[ix(L, 1), :, ix(L, [0, 3])], (X,)),
    "int_and_mask": (lambda L, x: x[0, ix(L, [True, False, True]), 1:], (X,)),
    "repeated_indices_add_gradients": (lambda L, x: x[ix(L, [0, 0, 1, 0])], (R(3, 2),)),
    "negative_indices": (lambda L, x: (x[-1], x[ix(L, [-1, 0])], x[:, -2:]), (X,)),
    "gather": (lambda L, x, i: (x.gather(1, i), L.gather(x, 1, i)),
               (R(2, 3), np.array([[0, 0, 2], [1, 2, 1]]))),
    "gather_smaller_index": (lambda L, x, i: x.gather(0, i), (R(3, 4), np.array([[1, 0], [2, 2]]))),
    "gather_dim_neg": (lambda L, x, i: x.gather(-1, i), (X, np.array([[[3, 0]]] * 2))),
    "scatter": (lambda L, x, i, s: (x.scatter(1, i, s), x.scatter(0, i[:, :1] - i[:, :1], 2.5)),
                (R(2, 4), np.array([[0, 2], [1, 3]]), R(2, 2))),
    "scatter_value_kw": (lambda L, x, i: x.scatter(1, i, value=-1.0),
                         (R(2, 4), np.array([[0, 2], [1, 3]]))),
    "scatter_add": (lambda L, x, i, j, s: (x.scatter_add(1, i, s), L.scatter_add(x, 0, j, s)),
                    (R(2, 3), np.array([[0, 0], [2, 0]]), np.array([[1, 0], [1, 1]]), R(2, 2))),
    "index_select": (lambda L, x, i: (x.index_select(1, i), L.index_select(x, 0, i[1:2]),
                                      x.index_select(-1, i)), (X, np.array([2, 0, 2]))),
    "select_narrow": (lambda L, x: (x.select(1, -1), x.narrow(2, 1, 2), x.narrow(0, -1, 1),
                                    L.select(x, 0, 1), L.narrow(x, 1, 0, 3)), (X,)),
    "masked_fill": (lambda L, x, m: (x.masked_fill(m, 0.0), x.masked_fill(m[0], -2.0),
                                     x.masked_fill(x > 0, 1.0)),
                    (X, np.array([[[True, False, True, False]], [[False, False, True, True]]]))),
    "masked_fill_tensor_value": (lambda L, x, v: x.masked_fill(x > 0, v), (X, np.array(0.5))),
    "tril_triu": (lambda L, x: (x.tril(), x.triu(1), L.tril(x, -1), L.triu(x, diagonal=-2),
                                x[0].tril(2)), (X,)),
    "tril_int_bool": (lambda L, i: (i.tril(), (i > 2).triu()), (np.arange(12).reshape(3, 4),)),
    "sort": (lambda L, x: (x.sort(), x.sort(0), x.sort(dim=1, descending=True), L.sort(x, -1)),
             (U(2, 3, 4),)),
    "sort_stable_ties": (lambda L, x: (x.sort(stable=True), x.sort(descending=True, stable=True)),
                         (np.array([[2.0, 1.0, 2.0, 1.0, 3.0, 2.0]]),)),
    "sort_nan": (lambda L, x: (x.sort(stable=True), x.sort(descending=True, stable=True)),
                 (np.array([1.0, np.nan, 0.0, np.nan, -1.0]),)),
    "sort_int_bool": (lambda L, i: (i.sort(stable=True), (i > 0).sort(stable=True).indices),
                      (np.array([3, -1, 2, -1, 0]),)),
    "argsort": (lambda L, x: (x.argsort(), x.argsort(0, descending=True), L.argsort(x, dim=1)),
                (U(2, 3, 4),)),
    "topk": (lambda L, x: (x.topk(2), x.topk(1, 0), x.topk(3, dim=1, largest=False),
                           L.topk(x, 4)), (U(2, 3, 4),)),
    "topk_1d_all": (lambda L, x: x.topk(5), (U(5),)),
    "one_hot": (lambda L, i: (L.nn.functional.one_hot(i), L.nn.functional.one_hot(i, 5)),
                (np.array([[0, 3], [1, 1]]),)),
    "nonzero": (lambda L, x: ((x > 0).nonzero(), L.nonzero(x > 0, as_tuple=True),
                              L.where(x > 0)), (X,)),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch(name, device):
    fn, arrays = CASES[name]
    check(torch, fn, *arrays, device=device)


def test_scatter_with_a_larger_src_uses_its_leading_part():
    # NOTE: forward only: torch's own backward rejects a src larger than the index
    check(torch, lambda L, x, i, s: x.scatter(1, i, s),
          R(2, 4), np.array([[0, 2], [1, 3]]), R(2, 3), grad=False)


def test_setitem_takes_pytorchs_index_order():
    import dlsys as ds

    a = np.zeros((2, 3, 4))
    v = np.arange(6.0).reshape(3, 2)  # torch's shape of x[0, :, [1, 3]] is (3, 2)
    t, d = torch.tensor(a), ds.tensor(a)
    t[0, :, torch.tensor([1, 3])] = torch.tensor(v)
    d[0, :, ds.tensor([1, 3])] = v
    np.testing.assert_array_equal(d.numpy(), t.numpy())
    d[1, ds.tensor([True, False, True]), 1:] = 7.0
    t[1, torch.tensor([True, False, True]), 1:] = 7.0
    np.testing.assert_array_equal(d.numpy(), t.numpy())


ERRORS = {  # name: (fn, expected, message); X is (2, 3, 4)
    "index_out_of_range": (lambda L, x: x[5], IndexError, None),
    "index_array_out_of_range": (lambda L, x: x[ix(L, [2])], IndexError, None),
    "float_index": (lambda L, x: x[ix(L, [0.5])], TypeError, r"integer or bool"),
    "gather_out_of_range": (lambda L, x: x.gather(1, ix(L, [[[5]]])), IndexError, r"5.*size 3"),
    "gather_negative": (lambda L, x: x.gather(1, ix(L, [[[-1]]])), IndexError, r"-1"),
    "gather_rank": (lambda L, x: x.gather(1, ix(L, [0, 1])), ValueError, r"as many dims"),
    "gather_float_index": (lambda L, x: x.gather(1, x), TypeError, r"integer"),
    "gather_dim_3": (lambda L, x: x.gather(3, ix(L, [[[0]]])), IndexError, r"3"),
    "scatter_add_out_of_range": (lambda L, x: x.scatter_add(0, ix(L, [[[3]]]), x), IndexError,
                                 r"3"),
    "index_select_2d_index": (lambda L, x: x.index_select(0, ix(L, [[0]])), ValueError, r"1-D"),
    "index_select_negative": (lambda L, x: x.index_select(1, ix(L, [-1])), IndexError, r"-1"),
    "select_out_of_range": (lambda L, x: x.select(2, 4), IndexError, r"4"),
    "narrow_too_long": (lambda L, x: x.narrow(0, 1, 5), IndexError, r"exceed"),
    "masked_fill_float_mask": (lambda L, x: x.masked_fill(x, 1.0), TypeError, r"bool"),
    "masked_fill_mask_too_big": (lambda L, x: x.masked_fill(ix(L, np.ones((3, 3, 4), bool)), 1.0),
                                 ValueError, r"\(3, 3, 4\)"),
    "tril_1d": (lambda L, x: L.tril(x[0, 0]), ValueError, r"2 dims"),
    "topk_too_many": (lambda L, x: x.topk(5), ValueError, r"k = 5"),
    "sort_dim_3": (lambda L, x: x.sort(3), IndexError, r"3"),
    "one_hot_too_few_classes": (lambda L, x: L.nn.functional.one_hot(ix(L, [0, 3]), 2),
                                ValueError, r"\[0, 2\)"),
    "one_hot_float": (lambda L, x: L.nn.functional.one_hot(x), TypeError, r"integer"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_raises_where_torch_raises(name):
    fn, exc, match = ERRORS[name]
    check_raises(torch, fn, X, expected=exc, match=match)
