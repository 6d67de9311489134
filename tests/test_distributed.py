"""DistributedOptimizer, buckets, broadcast helpers: DESIGN.md guarantees 1-4.

The MPI checks are batched into a few jobs (one per world size, plus the failure cases), each
rank computing the single-process reference itself, so the suite stays fast on 2 cores.
"""

from __future__ import annotations

import numpy as np
import pytest
from mpi_harness import run_mpi

from collective.buckets import assign_buckets
from collective.compression import Compression

# -- no MPI -------------------------------------------------------------------------------------


def test_assign_buckets_reverse_order_and_cap():
    f32 = "f4"
    specs = [(f32, 400), (f32, 400), (f32, 400), (f32, 400), (f32, 400)]
    # reverse registration order, at most 1000 bytes each
    assert assign_buckets(specs, 1000) == [[4, 3], [2, 1], [0]]
    # a huge cap: one bucket; a tiny cap: one parameter per bucket
    assert assign_buckets(specs, 10**9) == [[4, 3, 2, 1, 0]]
    assert assign_buckets(specs, 1) == [[4], [3], [2], [1], [0]]


def test_assign_buckets_one_dtype_per_bucket():
    specs = [("f4", 8), ("f8", 8), ("f4", 8), ("f8", 8)]
    buckets = assign_buckets(specs, 1000)
    assert buckets == [[3, 1], [2, 0]]
    for b in buckets:
        assert len({specs[i][0] for i in b}) == 1
    with pytest.raises(ValueError, match="positive"):
        assign_buckets(specs, 0)


def test_compression_numpy_roundtrip():
    x = np.linspace(-3, 3, 11, dtype=np.float32)
    wire, ctx = Compression.fp16.compress(x)
    assert wire.dtype == np.float16
    back = Compression.fp16.decompress(wire, ctx)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x, rtol=1e-3)
    out = np.empty_like(x)
    Compression.fp16.decompress(wire, ctx, out=out)
    np.testing.assert_array_equal(out, back)
    same, ctx = Compression.none.compress(x)
    assert same is x and Compression.none.decompress(same, ctx) is x
    ints = np.arange(4)
    assert Compression.fp16.compress(ints)[0] is ints  # integers are never cast
