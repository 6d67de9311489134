"""The owner's reduction of the "shared_memory" allreduce's reduce-scatter schedule
(collective/algorithms/shared_memory.py): the Numba kernel against its numpy reference, in
place and out of place. The schedules themselves run in tests/ranks/collectives.py (every
dtype, op and P = 2-8, bits equal to the rank-order reduction at every size)."""

from __future__ import annotations

import numpy as np
import pytest

from collective.algorithms.shared_memory import reduce_to_two, reducer, sum_to_two


@pytest.mark.parametrize("P", [2, 3, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("divisor", [0, 3])
@pytest.mark.parametrize("owner", [None, 0, 2])
def test_kernel_is_bitwise_its_numpy_reference(P, dtype, divisor, owner):
    """owner: which input is also the output (in place), None: a separate output."""
    rng = np.random.default_rng(P)
    n = 4099
    xs = [(rng.standard_normal(n) * 3).astype(dtype) for _ in range(P)]
    k = None if owner is None else owner % P
    got_x, want_x = [x.copy() for x in xs], [x.copy() for x in xs]
    got_out = got_x[k] if k is not None else np.full(n, np.nan, dtype)
    want_out = want_x[k] if k is not None else np.full(n, np.nan, dtype)
    got_res, want_res = np.full(n, np.nan, dtype), np.full(n, np.nan, dtype)
    sum_to_two(got_x, got_out, got_res, divisor)
    reduce_to_two(want_x, want_out, want_res, np.add, divisor)
    for g, w in ((got_out, want_out), (got_res, want_res)):
        assert np.array_equal(g.view(np.uint8), w.view(np.uint8))
    # the reference is the documented rank order, ((x0 + x1) + x2) ..., then / divisor
    acc = xs[0] + xs[1]
    for x in xs[2:]:
        acc = acc + x
    if divisor:
        acc = np.true_divide(acc, divisor)
    assert np.array_equal(got_res, acc)


def test_other_dtypes_ops_and_sizes_take_the_numpy_path():
    assert reducer(np.float32, np.add, 2) is sum_to_two
    assert reducer(np.float64, np.add, 4) is sum_to_two
    for args in ((np.float64, np.add, 5), (np.float16, np.add, 2), (np.int64, np.add, 2),
                 (np.float32, np.maximum, 2)):
        assert reducer(*args) is not sum_to_two
    xs = [np.array([3, -1, 7], np.int64), np.array([2, 5, -9], np.int64)]
    out, res = np.empty(3, np.int64), np.empty(3, np.int64)
    reducer(np.int64, np.maximum, 2)(xs, out, res, 0)
    assert out.tolist() == res.tolist() == [3, 5, 7]
