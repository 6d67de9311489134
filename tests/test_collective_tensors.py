"""collective's one adapter to dlsys (collective/tensors.py) and the buckets built on it, in one
process (no MPI): CPU storage used in place, CUDA staged through host memory, no duck typing."""

from __future__ import annotations

import numpy as np
import pytest

import dlsys as ds
from collective import tensors
from collective.buckets import build_buckets
from collective.compression import Compression
from collective.context import HostPool

DEVICES = ["cpu"] + (["cuda"] if ds.cuda_is_available() else [])


def test_cpu_tensor_is_staged_in_place():
    t = ds.tensor(np.arange(6.0).reshape(2, 3))
    staged = tensors.stage(t, inplace=True, what="allreduce_", pool=HostPool())
    assert np.shares_memory(staged.array, t.numpy())
    staged.array *= 2
    staged.commit()
    assert t.numpy()[1, 2] == 10.0


def test_non_contiguous_cpu_tensor_writes_back():
    t = ds.tensor(np.arange(12.0).reshape(3, 4))
    view = t[:, 1:3]
    staged = tensors.stage(view, inplace=True, what="allreduce_", pool=HostPool())
    assert staged.array.flags.c_contiguous
    staged.array[...] = -1
    staged.commit()
    assert np.array_equal(t.numpy()[:, 1:3], -np.ones((3, 2)))
    assert np.array_equal(t.numpy()[:, 0], [0.0, 4.0, 8.0])


@pytest.mark.skipif("cuda" not in DEVICES, reason="no CUDA device or simulator")
def test_cuda_tensor_is_staged_through_host_memory():
    t = ds.tensor(np.arange(4.0), device="cuda")
    ptr = t.data_ptr()
    staged = tensors.stage(t, inplace=True, what="allreduce_", pool=HostPool())
    assert isinstance(staged.array, np.ndarray) and staged.array.tolist() == [0, 1, 2, 3]
    staged.array += 1
    staged.commit()
    assert t.numpy().tolist() == [1, 2, 3, 4] and t.data_ptr() == ptr  # same device memory
    out = tensors.stage(t, inplace=False, what="allreduce", pool=HostPool()).wrap(np.ones(4))
    assert isinstance(out, ds.Tensor) and out.device == t.device


def test_wrap_returns_the_kind_that_was_passed():
    pool = HostPool()
    assert isinstance(tensors.stage(np.ones(2), inplace=False, what="x", pool=pool)
                      .wrap(np.zeros(2)), np.ndarray)
    out = tensors.stage(ds.ones(2), inplace=False, what="x", pool=pool).wrap(np.zeros(2))
    assert isinstance(out, ds.Tensor) and out.numpy().tolist() == [0.0, 0.0]


def test_objects_that_look_like_tensors_are_not_tensors():
    class LooksLikeATensor:
        _data = np.ones(3)
        device = "cpu"
        shape = (3,)
        dtype = np.float64

    assert not tensors.is_tensor(LooksLikeATensor())
    with pytest.raises(TypeError, match="LooksLikeATensor"):
        tensors.stage(LooksLikeATensor(), inplace=False, what="allreduce", pool=HostPool())
    assert tensors.is_tensor(ds.ones(1)) and not tensors.is_tensor(np.ones(1))


def test_tensor_dtype_is_checked():
    with pytest.raises(TypeError, match="bool"):
        tensors.stage(ds.tensor(np.ones(2, bool)), inplace=False, what="allreduce",
                      pool=HostPool())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("compression", [Compression.none, Compression.fp16])
def test_bucket_views_pack_and_unpack(device, compression):
    params = [ds.tensor(np.zeros(s), dtype=ds.float32, device=device, requires_grad=True)
              for s in [(2, 3), (), (4,)]]
    params[0].grad = ds.tensor(np.full((2, 3), 7.0), dtype=ds.float32, device=device)
    (bucket,) = build_buckets(["a", "b", "c"], params, 1 << 20, compression)
    assert [p.grad.shape for p in params] == [(2, 3), (), (4,)]
    assert all(bucket.is_view(i) for i in range(3))
    assert params[0].grad.numpy().tolist() == [[7.0] * 3] * 2  # an existing grad is kept
    with ds.no_grad():
        params[2].grad.copy_(np.arange(4.0))
    wire = bucket.pack(prescale=2)
    j = [id(p) for p in bucket.params].index(id(params[2]))  # reverse registration order
    c = slice(bucket.offsets[j], bucket.offsets[j] + 4)
    assert wire.dtype == np.dtype(compression.wire_dtype(np.float32))
    assert (wire is bucket.host) == (compression is Compression.none)
    # divided before the cast (the engine asks for it only with compression or
    # gradient_predivide_factor: see test_engine_rule_prescales_only_when_asked)
    assert wire[c].tolist() == [0.0, 0.5, 1.0, 1.5]
    wire[...] = 3
    bucket.unpack()
    assert all(np.all(p.grad.numpy() == 3) for p in params)
    wire[...] = 3
    bucket.unpack(postscale=0.5)
    assert all(np.all(p.grad.numpy() == 1.5) for p in params)
    params[1].grad = None  # replaced by the user (model.zero_grad): brought back as zeros
    bucket.reattach_all()
    assert bucket.is_view(1) and params[1].grad.numpy() == 0
