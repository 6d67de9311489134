"""Single-process pieces of Horovod's API (issue 14): the scaling arithmetic, the bucket rule
of gradient_predivide_factor and join, alltoall's splits, the descriptions' new fields, the
handles' bookkeeping and the errors a rank raises alone."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import numpy as np
import pytest

import collective as col
from collective import scaling
from collective.alltoall import _splits
from collective.engines import Engine
from collective.reduce_ops import Average, Sum
from collective.safety import describe, fingerprint


@pytest.mark.parametrize("dtype", ["int32", "int64", "float16", "float32", "float64"])
def test_scale_is_horovods_arithmetic(dtype):
    x = (np.arange(-20, 20) * 7 / 3).astype(dtype)
    f = 0.37
    if np.dtype(dtype).kind == "i":
        want = np.trunc(x.astype(np.float64) * f).astype(dtype)  # float64, toward zero
    elif dtype == "float16":
        want = (x.astype(np.float32) * np.float32(f)).astype(np.float16)  # in float32
    else:
        want = x * np.dtype(dtype).type(f)
    got = scaling.scale(x.copy(), f)
    assert got.dtype == x.dtype and got.tobytes() == want.tobytes()


def test_scale_factor_must_be_a_number():
    with pytest.raises(TypeError, match="prescale_factor"):
        scaling.check_factor("2", "prescale_factor")
    assert scaling.options(1.0, 1.0) is None
    assert scaling.options(2.0, 1.0) == (("prescale_factor", 2.0), ("postscale_factor", 1.0))


def _bucket(compressed):
    host = np.zeros(3)
    return SimpleNamespace(host=host, wire=np.zeros(3, np.float16) if compressed else host)


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("f", [1.0, 4.0])
@pytest.mark.parametrize("active", [None, 3, 2])
def test_engine_rule_average(compressed, f, active):
    """Every case gives x_sum * (post / pre) with the division by the right count: P, or the
    ranks that contributed under a join."""
    P = 4
    engine = Engine(SimpleNamespace(size=P), Average, predivide=f)
    engine.active = active
    bucket = _bucket(compressed)
    pre, op = engine.rule(bucket)
    post = engine.post(bucket)
    wire_divides = P if op is Average else 1  # the ring divides by P for Average
    assert (post / ((pre or 1.0) * wire_divides)) == pytest.approx(1.0 / (active or P))
    if not compressed and f == 1.0 and active is None:
        assert (pre, op, post) == (0, Average, 1.0)  # the unchanged fast path
    if compressed:
        assert pre > 1  # divided before the cast to float16, for its range
    if active is not None:
        assert op is Sum


def test_engine_rule_sum_is_untouched():
    engine = Engine(SimpleNamespace(size=4), Sum)
    engine.active = 2
    assert engine.rule(_bucket(False)) == (0, Sum) and engine.post(_bucket(True)) == 1.0


def test_alltoall_splits_are_checked():
    assert _splits(None, 6, 3).tolist() == [2, 2, 2]
    assert _splits([1, 0, 2], 3, 3).tolist() == [1, 0, 2]
    assert _splits(np.array([3, 0], np.int32), 3, 2).tolist() == [3, 0]
    with pytest.raises(ValueError, match="7 rows cannot be split over 3 ranks"):
        _splits(None, 7, 3)
    with pytest.raises(ValueError, match="sum to the first dimension"):
        _splits([1, 1], 3, 2)
    with pytest.raises(ValueError, match="one entry per rank"):
        _splits([3], 3, 2)
    with pytest.raises(ValueError, match="integers"):
        _splits(np.ones(2, np.float32), 2, 2)
    with pytest.raises(ValueError, match="non-negative"):
        _splits([-1, 3], 2, 2)


def test_descriptions_carry_name_and_options():
    a = describe("allreduce", (3,), np.dtype("f4"), Sum, "auto", name="x")
    b = describe("allreduce", (3,), np.dtype("f4"), Sum, "auto", name="y")
    c = describe("allreduce", (3,), np.dtype("f4"), Sum, "auto", options=(("p", 2.0),))
    assert len({fingerprint(d) for d in (a, b, c)}) == 3


def test_product_and_reduce_op_names():
    assert col.Product.ufunc is np.multiply and str(col.Product) == "col.Product"
    from collective.reduce_ops import as_op

    assert as_op("prod") is col.Product and as_op("product") is col.Product


def test_single_rank_errors_are_raised_at_once():
    x = np.ones(3)
    with pytest.raises(TypeError, match="process_set"):
        col.allreduce(x, process_set=[0])
    with pytest.raises(TypeError, match="expected a list"):
        col.grouped_allreduce(x)
    with pytest.raises(ValueError, match="ranks repeat"):
        col.ProcessSet([0, 0])
    with pytest.raises(ValueError, match="not a rank of the world"):
        col.ProcessSet([1])
    with pytest.raises(ValueError, match="duplicate|already in flight"):
        h = col.allreduce_async(x, name="n")
        try:
            col.allreduce_async(x, name="n")
        finally:
            col.synchronize(h)
    with pytest.raises(TypeError, match="handle"):
        col.synchronize(x)
    with pytest.raises(TypeError, match="root= or root_rank="):
        col.broadcast(x, root=1, root_rank=0)


def test_a_dropped_handle_is_an_error_at_the_next_blocking_call():
    col.allreduce_async(np.ones(3))  # never synchronised: collected at once
    gc.collect()
    with pytest.raises(RuntimeError, match="garbage collected without"):
        col.allreduce(np.ones(2))
    assert col.allreduce(np.ones(2)).tolist() == [1.0, 1.0]  # reported once
