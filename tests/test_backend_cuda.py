"""The CUDA device vs the CPU device (the numpy reference), kernel by kernel, on tiny shapes.

Runs on a GPU, or under the Numba CUDA simulator in a separate pytest invocation (the simulator
must be switched on before numba is imported):

    NUMBA_ENABLE_CUDASIM=1 .venv/bin/python -m pytest tests/test_backend_cuda.py \
        tests/test_cuda_ops.py

Skipped, with the reason, when neither a GPU nor the simulator is available.
NOTE: the simulator runs every CUDA thread as a Python thread (~0.14 ms each): keep shapes tiny.
"""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

from dlsys import config
from dlsys.backend import cpu, cuda_is_available

if not cuda_is_available():
    pytest.skip("numba-cuda is not installed, or no CUDA GPU and its simulator is off (run "
                "with NUMBA_ENABLE_CUDASIM=1 set before Python starts)", allow_module_level=True)

from dlsys import cuda  # noqa: E402
from dlsys.backend.cuda.launch import SIMULATOR  # noqa: E402

D = cuda()
C = cpu()
RNG = np.random.default_rng(0)


def h(x):
    return D.to_numpy(x)


def dev(a):
    return D.from_numpy(np.asarray(a))


def rnd(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def close(got, want, rtol=1e-5, atol=1e-6):
    got = h(got) if not isinstance(got, np.ndarray) else got
    want = np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol,
                               atol=atol)


# -- the simulator itself ------------------------------------------------------------------------
def test_simulator_gives_every_thread_of_a_block_the_same_shared_array(monkeypatch):
    """numba-cuda's simulator could hand two threads different ``cuda.shared.array``s (an
    unlocked lookup-then-insert); dlsys.backend.cuda.simulator locks it. np.empty is slowed
    down here so that, unlocked, every thread would miss the lookup and allocate its own."""
    if not SIMULATOR:
        pytest.skip("a real GPU: the simulator is not in use")
    from numba.cuda.simulator.kernelapi import FakeCUDAShared

    shared = FakeCUDAShared(0)
    empty = np.empty

    def slow_empty(*args, **kwargs):
        time.sleep(0.01)
        return empty(*args, **kwargs)

    monkeypatch.setattr(np, "empty", slow_empty)
    start = threading.Barrier(4)
    got = []

    def cuda_thread():
        start.wait()
        got.append(shared.array(8, np.float32))  # one call site, as in a kernel

    threads = [threading.Thread(target=cuda_thread) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(a is got[0] for a in got)
    assert shared.array(8, np.float32) is not got[0]  # another call site: another array


def test_caching_allocator_reuses_blocks_only_once_nothing_refers_to_them():
    if SIMULATOR or not D.memory_stats():
        pytest.skip("a GPU with the caching allocator (not the simulator, not "
                    "DLSYS_CUDA_CACHING_ALLOCATOR=0)")

    def addr(a):
        return a.device_ctypes_pointer.value

    # NOTE: the first launch compiles, and compiling leaves reference cycles that hold the
    # arguments until a collection; a collection in the middle would give other dead blocks of
    # this size back to the pool, which hands out the most recently freed block first
    D.empty((1000,), np.float32)
    D.full((1000,), 0.0, np.float32)
    gc.collect()
    gc.disable()
    try:
        _check_block_reuse(addr)
    finally:
        gc.enable()


def _check_block_reuse(addr):
    x = D.full((1000,), 1.0, np.float32)
    first = addr(x)
    del x  # back to the pool
    assert D.memory_stats()["cached"] >= 4096
    y = D.full((1000,), 2.0, np.float32)
    assert addr(y) == first  # the same block again, no cuMemAlloc
    view = D.getitem(y, slice(10, 20))
    del y  # the view keeps the block in use
    z = D.full((1000,), 3.0, np.float32)
    assert addr(z) != first and (h(view) == 2).all()
    del view
    assert addr(D.empty((1000,), np.float32)) == first
    D.empty_cache()
    assert D.memory_stats()["cached"] == 0


def test_kernels_launch_from_another_thread():
    # the DistributedOptimizer's communication thread launches kernels too; on a GPU a new
    # thread must get the context made current, also on the lean launch path
    a = rnd(64)
    x = dev(a)
    close(D.unary("exp", x), np.exp(a))  # this thread first: compiled, signature cached
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("y", h(D.unary("exp", x))))
    t.start()
    t.join()
    close(got["y"], np.exp(a))


# -- device object, memory ---------------------------------------------------------------------
def test_device_identity_and_local_rank(monkeypatch):
    from dlsys.backend.cuda import select_device_for_local_rank

    assert cuda(0) is D and D == cuda(0) and D != C
    assert repr(D) == "device(type='cuda', index=0)" and D.is_available()
    assert select_device_for_local_rank(0) == 0
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "0")
    config.reload()  # NOTE: dlsys.config reads each variable once
    try:
        assert select_device_for_local_rank() == 0
    finally:
        config.reload()


def test_cuda_factory_and_cuda_package_do_not_shadow_each_other():
    import importlib
    import types

    import dlsys as ds
    import dlsys.backend as B

    pkg = importlib.import_module("dlsys.backend.cuda")
    assert isinstance(pkg, types.ModuleType) and B.cuda is pkg  # the package, always
    assert pkg.CUDADevice is type(D)
    assert isinstance(ds.cuda, types.FunctionType) and ds.cuda(0) is D  # the factory, always
    assert B.registry.cuda is ds.cuda


def test_memory_roundtrip_and_out():
    a = rnd(3, 4)
    x = dev(a)
    close(x, a)
    out = np.empty((3, 4), np.float32)
    assert D.to_numpy(x, out=out) is out
    np.testing.assert_array_equal(out, a)
    out64 = np.empty((3, 4), np.float64)
    D.to_numpy(x, out=out64)
    np.testing.assert_allclose(out64, a)
    strided = np.zeros((3, 8), np.float32)[:, ::2]
    D.to_numpy(x, out=strided)
    np.testing.assert_array_equal(strided, a)
    with pytest.raises(ValueError):
        D.to_numpy(x, out=np.empty((4, 3), np.float32))
    close(D.full((2, 3), 1.5, np.float64), np.full((2, 3), 1.5))
    assert D.empty((2, 0), np.float32).shape == (2, 0)
    assert h(D.full((), 7, np.int64)) == 7


def test_copy_from_host_device_and_into_views():
    dst = D.full((2, 3), 0, np.float32)
    D.copy_(dst, np.arange(6, dtype=np.float64).reshape(2, 3))  # host, cast
    close(dst, np.arange(6, dtype=np.float32).reshape(2, 3))
    D.copy_(dst, dev(np.ones((2, 3), np.int64)))  # device, cast
    close(dst, np.ones((2, 3), np.float32))
    flat = D.full((8,), 0, np.float32)
    view = D.reshape(D.getitem(flat, slice(2, 6)), (2, 2))  # a contiguous view
    D.copy_(view, np.full((2, 2), 3.0))
    close(flat, np.array([0, 0, 3, 3, 3, 3, 0, 0], np.float32))
    with pytest.raises(ValueError):
        D.copy_(dst, np.zeros((3, 2)))


def test_add_inplace_and_synchronize():
    a, b = rnd(2, 3), rnd(2, 3)
    x = dev(a)
    assert D.add_(x, dev(b)) is x
    close(x, a + b)
    col = D.getitem(x, (slice(None), 1))  # a strided view: written through
    D.add_(col, dev(np.ones(2, np.float64)))
    want = a + b
    want[:, 1] += 1
    close(x, want)
    h16 = dev(np.ones(2, np.float16))
    D.add_(h16, dev(np.ones(2, np.float16)))
    close(h16, np.full(2, 2, np.float16))
    D.synchronize()
    C.synchronize()  # the base class no-op
    y = a.copy()
    C.add_(y, b)  # the base class default
    np.testing.assert_allclose(y, a + b)


def test_astype_and_compact():
    a = np.array([[-1.7, 0.0, 2.5]], np.float32)
    x = dev(a)
    for dt in (np.int32, np.int64, np.float64, np.float16, np.bool_):
        close(D.astype(x, dt), a.astype(dt))
    close(D.astype(dev(np.array([True, False])), np.float32), np.array([1, 0], np.float32))
    assert D.compact(x) is x


def test_random_matches_cpu():
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    close(D.randn((3, 2), np.float32, r1), C.randn((3, 2), np.float32, r2))
    close(D.rand((4,), np.float64, r1), C.rand((4,), np.float64, r2))


# -- views and indexing ------------------------------------------------------------------------
def test_reshape_permute_broadcast():
    a = rnd(2, 3, 4)
    x = dev(a)
    close(D.reshape(x, (4, -1)), a.reshape(4, -1))
    close(D.permute(x, (2, 0, 1)), a.transpose(2, 0, 1))
    close(D.reshape(D.permute(x, (1, 0, 2)), (3, 8)), a.transpose(1, 0, 2).reshape(3, 8))
    b = rnd(3, 1)
    close(D.broadcast_to(dev(b), (2, 3, 4)), np.broadcast_to(b, (2, 3, 4)))
    close(D.broadcast_to(dev(np.float32(2.0)), (2, 2)), np.full((2, 2), 2.0, np.float32))
    with pytest.raises(ValueError):
        D.broadcast_to(dev(b), (2, 2))


@pytest.mark.parametrize("index", [
    1, (slice(None), 1), (slice(None, None, -1),), (Ellipsis, None, slice(1, 3)),
    (1, 2, 3), (slice(0, 2), slice(None), slice(None, None, 2)), (-1, slice(1, None)),
])
def test_getitem_basic(index):
    a = rnd(3, 4, 5)
    close(D.getitem(dev(a), index), C.getitem(a, index))


def test_getitem_contiguous_is_view():
    x = dev(np.zeros((3, 4), np.float32))
    row = D.getitem(x, 1)
    D.copy_(row, np.ones(4))
    assert h(x)[1].sum() == 4 and h(x)[0].sum() == 0


def test_getitem_strided_views_write_through_and_feed_kernels():
    a = rnd(3, 4)
    x = dev(a)
    col = D.getitem(x, (slice(None), 1))  # a strided view
    close(D.unary("exp", col), np.exp(a[:, 1]))
    close(D.sum(col, (0,)), a[:, 1].sum(keepdims=False).reshape(()), rtol=1e-5, atol=1e-6)
    close(D.getitem(col, slice(1, None)), a[1:, 1])  # a view of a view
    D.copy_(col, np.zeros(3))
    D.index_add(D.getitem(x, (Ellipsis, None, slice(2, 4))), (0, 0), dev(np.ones(2, np.float32)))
    want = a.copy()
    want[:, 1] = 0
    want[0, 2:4] += 1
    close(x, want)
    rev = D.getitem(x, (slice(None, None, -1), slice(3, 0, -2)))  # negative steps: a view
    close(rev, want[::-1, 3:0:-2])
    D.copy_(rev, np.full((3, 2), 7.0))
    want[:, 3:0:-2] = 7
    close(x, want)
    close(D.binary("add", rev, rev), np.full((3, 2), 14, np.float32))
    # views of negative-step views walk backwards from their parent's first element
    inner = D.getitem(rev, (slice(None, None, -1), 1))  # x[:, 1], through two reversals
    close(inner, want[::-1, 3:0:-2][::-1, 1])
    D.copy_(inner, np.array([1.0, 2.0, 3.0]))
    want[::-1, 3:0:-2][::-1, 1] = [1, 2, 3]
    close(x, want)
    D.copy_(D.getitem(rev, (2, slice(None, None, -1))), dev(np.array([5.0, 6.0], np.float32)))
    want[::-1, 3:0:-2][2, ::-1] = [5, 6]
    close(x, want)
    close(D.reshape(rev, (6,)), want[::-1, 3:0:-2].reshape(6))


def test_getitem_advanced():
    a = rnd(4, 3)
    idx = np.array([[3, 0], [-1, 3]])
    close(D.getitem(dev(a), idx), a[idx])  # host int array on axis 0
    close(D.getitem(dev(a), (dev(idx),)), a[idx])  # device int array on axis 0
    rows, cols = np.array([0, 2, 3]), np.array([1, 1, 0])
    close(D.getitem(dev(a), (dev(rows), cols)), a[rows, cols])  # general fallback
    mask = a > 0
    close(D.getitem(dev(a), dev(mask)), a[mask])
    close(D.getitem(dev(a), (slice(None), np.array([2, 0]))), a[:, [2, 0]])


def test_index_add():
    base = rnd(5, 3)
    idx = np.array([0, 2, 0, 4, 0])
    vals = rnd(5, 3)
    for index, v in [((idx,), vals), ((dev(idx),), vals), ((slice(1, 4), 1), rnd(3)),
                     ((np.array([1, 1, 3]), np.array([0, 0, 2])), rnd(3))]:
        want = base.copy()
        C.index_add(want, index[0] if len(index) == 1 else index, v)
        got = dev(base)
        D.index_add(got, index, dev(v))
        close(got, want)
    want = np.zeros(4, np.float16)
    np.add.at(want, np.array([1, 1]), np.array([0.5, 0.25], np.float16))
    got = D.full((4,), 0, np.float16)
    D.index_add(got, np.array([1, 1]), dev(np.array([0.5, 0.25], np.float16)))
    close(got, want)


def test_stack_concatenate():
    a, b = rnd(2, 3), rnd(2, 3)
    for axis in (0, 1, -1):
        close(D.concatenate([dev(a), dev(b), dev(a)], axis), np.concatenate([a, b, a], axis))
    for axis in (0, 1, 2):
        close(D.stack([dev(a), dev(b)], axis), np.stack([a, b], axis))
    close(D.concatenate([dev(a), dev(b[:1])], 0), np.concatenate([a, b[:1]], 0))
    with pytest.raises(ValueError):
        D.concatenate([dev(a), dev(rnd(3, 3))], 1)


# -- elementwise -------------------------------------------------------------------------------
UNARY = ("neg", "exp", "log", "sqrt", "abs", "sign", "relu", "tanh", "sigmoid", "gelu", "erf",
         "gelu_grad", "gelu_tanh", "gelu_tanh_grad")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_unary(dtype):
    a = rnd(2, 5, dtype=dtype)
    pos = np.abs(a) + dtype(0.1)
    tol = 2e-3 if dtype == np.float16 else 1e-5
    for op in UNARY:
        src = pos if op in ("log", "sqrt") else a
        close(D.unary(op, dev(src)), C.unary(op, src), rtol=tol, atol=tol)


def test_unary_int_and_backward():
    i = np.array([-3, 0, 4], np.int32)
    close(D.unary("neg", dev(i)), -i)
    close(D.unary("abs", dev(i)), np.abs(i))
    x, g = rnd(2, 4), rnd(2, 4)
    for op in ("relu", "tanh", "sigmoid", "exp", "gelu", "gelu_tanh"):
        y = C.unary(op, x)
        close(D.unary_backward(op, dev(x), dev(y), dev(g)), C.unary_backward(op, x, y, g))


def test_norms_and_softmax_backward_composed_on_cuda():
    """LayerNorm, RMSNorm and the softmax backward run the Device defaults on CUDA (composed
    kernels): the same as the CPU's fused kernels."""
    x, w, b, g = rnd(6, 10), rnd(10), rnd(10), rnd(6, 10)
    y, mean, rstd = C.layer_norm(x, w, b, 1e-5)
    for got, ref in zip(D.layer_norm(dev(x), dev(w), dev(b), 1e-5), (y, mean, rstd),
                        strict=True):
        close(got, ref)
    for got, ref in zip(D.layer_norm_backward(dev(g), dev(x), dev(w), dev(mean), dev(rstd)),
                        C.layer_norm_backward(g, x, w, mean, rstd), strict=True):
        close(got, ref)
    y, rstd = C.rms_norm(x, w, 1e-6)
    close(D.rms_norm(dev(x), dev(w), 1e-6)[0], y)
    for got, ref in zip(D.rms_norm_backward(dev(g), dev(x), dev(w), dev(rstd)),
                        C.rms_norm_backward(g, x, w, rstd), strict=True):
        close(got, ref)
    p = C.softmax(x)
    close(D.softmax_backward(dev(p), dev(g)), C.softmax_backward(p, g))
    lp = C.log_softmax(x)
    close(D.softmax_backward(dev(lp), dev(g), True), C.softmax_backward(lp, g, True))


BINARY = ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le",
          "gt", "ge")


def test_binary():
    a, b = rnd(3, 4), rnd(3, 4)
    b[0, 0] = a[0, 0]  # a tie for the comparisons
    pa = np.abs(a) + np.float32(0.5)
    for op in BINARY:
        lhs = pa if op == "pow" else a
        close(D.binary(op, dev(lhs), dev(b)), C.binary(op, lhs, b), rtol=1e-5, atol=1e-5)
    i, j = np.array([7, -3, 4], np.int32), np.array([2, 2, -4], np.int32)
    for op in ("add", "mul", "div", "maximum", "lt"):
        close(D.binary(op, dev(i), dev(j)), C.binary(op, i, j))
    close(D.binary("div", dev(np.array([1.0, -1.0, 0.0], np.float32)),
                   dev(np.zeros(3, np.float32))), np.array([np.inf, -np.inf, np.nan], np.float32))
    with pytest.raises(ValueError):
        D.binary("add", dev(a), dev(rnd(4, 3)))


def test_binary_float16():
    a, b = rnd(3, dtype=np.float16), rnd(3, dtype=np.float16)
    close(D.binary("mul", dev(a), dev(b)), C.binary("mul", a, b), rtol=2e-3, atol=2e-3)
    close(D.binary("gt", dev(a), dev(b)), C.binary("gt", a, b))


def test_scalar():
    a = np.abs(rnd(2, 3)) + np.float32(0.1)
    for op in BINARY:
        for s in (2, 0.5):
            for rev in (False, True):
                close(D.scalar(op, dev(a), s, rev), C.scalar(op, a, s, rev), rtol=1e-5,
                      atol=1e-5)
    i = np.array([1, 5, -2], np.int64)
    for op in ("add", "mul", "sub", "div", "ge"):
        close(D.scalar(op, dev(i), 3, True), C.scalar(op, i, 3, True))


def test_where():
    c, a, b = RNG.random((2, 3)) > 0.5, rnd(2, 3), rnd(2, 3)
    close(D.where(dev(c), dev(a), dev(b)), np.where(c, a, b))


# -- reductions --------------------------------------------------------------------------------
@pytest.mark.parametrize("axes,keepdims", [((0,), False), ((1,), True), ((0, 2), False),
                                           ((0, 1, 2), False), (None, True), ((), False)])
def test_sum(axes, keepdims):
    a = rnd(3, 4, 5)
    want = C.sum(a, axes if axes is not None else (0, 1, 2), keepdims)
    close(D.sum(dev(a), axes, keepdims), want, rtol=1e-5, atol=1e-5)


def test_sum_dtypes():
    i = RNG.integers(-5, 5, (3, 4)).astype(np.int32)
    close(D.sum(dev(i), (1,)), C.sum(i, (1,)))  # int32 -> int64 like numpy
    bl = i > 0
    close(D.sum(dev(bl), (0, 1)), C.sum(bl, (0, 1)))
    f = rnd(4, 40, dtype=np.float16)
    close(D.sum(dev(f), (1,)), C.sum(f, (1,)), rtol=2e-3, atol=2e-3)


def test_max():
    a = rnd(3, 7, 2)
    a[1, 2, 0] = a[1, 5, 0] = 9.0  # a tie: the first index wins
    for axis in (0, 1, 2):
        for kd in (False, True):
            v, i = D.max(dev(a), axis, kd)
            wv, wi = C.max(a, axis, kd)
            close(v, wv)
            close(i, wi)
    v, i = D.max(dev(a), None)
    close(v, a.max())
    close(i, np.asarray(a.argmax(), np.int64))
    v, i = D.max(dev(rnd(2, 3, dtype=np.float16)), 1)
    assert h(v).dtype == np.float16 and h(i).dtype == np.int64


# -- matmul ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sa,sb", [((5, 7), (7, 9)), ((1, 1), (1, 1)), ((17, 3), (3, 18)),
                                   ((2, 3, 11), (2, 11, 5)), ((7,), (7, 3)), ((4, 7), (7,))])
def test_matmul(sa, sb):
    a, b = rnd(*sa), rnd(*sb)
    close(D.matmul(dev(a), dev(b)), np.matmul(a, b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("config,m,n,k", [((64, 64, 32, 4, 4), 3, 70, 9),  # across a tile edge
                                          ((32, 32, 16, 2, 2), 32, 32, 32)])  # exact: no checks
def test_matmul_gpu_tile_configs(config, m, n, k):
    # the tile shapes a GPU uses (the simulator picks smaller ones)
    from dlsys.backend.cuda.matmul import launch_matmul

    a, b = rnd(m, k), rnd(k, n)
    out = D.empty((m, n), np.float32)
    launch_matmul(dev(a).reshape(-1), dev(b).reshape(-1), out.reshape(-1), 1, m, n, k,
                  np.float32(0), config=config)
    close(out, a @ b, rtol=1e-4, atol=1e-5)


def test_matmul_dtypes():
    a, b = rnd(3, 4, dtype=np.float64), rnd(4, 2, dtype=np.float64)
    close(D.matmul(dev(a), dev(b)), a @ b, rtol=1e-12, atol=1e-12)
    i, j = RNG.integers(-3, 3, (2, 3)), RNG.integers(-3, 3, (3, 2))
    close(D.matmul(dev(i), dev(j)), i @ j)
    f, g = rnd(2, 3, dtype=np.float16), rnd(3, 2, dtype=np.float16)
    close(D.matmul(dev(f), dev(g)), C.matmul(f, g), rtol=2e-3, atol=2e-3)
    with pytest.raises(ValueError):
        D.matmul(dev(rnd(2, 3)), dev(rnd(2, 3)))


# -- convolution and pooling -------------------------------------------------------------------
@pytest.mark.parametrize("k,stride,padding", [(3, 1, 1), (2, 2, 0), (3, 2, 1)])
def test_im2col_col2im(k, stride, padding):
    x = rnd(2, 2, 5, 4)
    cols = C.im2col(x, k, k, stride, padding)
    close(D.im2col(dev(x), k, k, stride, padding), cols)
    g = rnd(*cols.shape)
    close(D.col2im(dev(g), x.shape, k, k, stride, padding),
          C.col2im(g, x.shape, k, k, stride, padding), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k,stride", [(2, None), (3, 1), (2, 1)])
def test_pooling(k, stride):
    x = rnd(1, 2, 4, 5)
    v, a = D.max_pool2d(dev(x), k, stride)
    wv, wa = C.max_pool2d(x, k, stride)
    close(v, wv)
    close(a, wa)
    g = rnd(*wv.shape)
    close(D.max_pool2d_backward(dev(g), a, x.shape), C.max_pool2d_backward(g, wa, x.shape))
    close(D.avg_pool2d(dev(x), k, stride), C.avg_pool2d(x, k, stride))
    close(D.avg_pool2d_backward(dev(g), x.shape, k, stride),
          C.avg_pool2d_backward(g, x.shape, k, stride))


# -- softmax family ----------------------------------------------------------------------------
def test_softmax_family():
    x = rnd(3, 6) * np.float32(5)
    close(D.softmax(dev(x)), C.softmax(x))
    close(D.log_softmax(dev(x)), C.log_softmax(x), rtol=1e-5, atol=1e-5)
    x3 = rnd(2, 2, 3)
    close(D.logsumexp(dev(x3)), C.logsumexp(x3), rtol=1e-5, atol=1e-5)
    ninf = np.array([[-np.inf, -np.inf], [0.0, 1.0]], np.float32)
    close(D.logsumexp(dev(ninf)), C.logsumexp(ninf))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy(dtype):
    x, t = rnd(4, 5, dtype=dtype), np.array([0, 4, 2, 2])
    loss, probs = D.cross_entropy(dev(x), dev(t))
    wl, wp = C.cross_entropy(x, t)
    close(loss, wl)
    close(probs, wp)
    g = D.cross_entropy_backward(probs, dev(t), dev(np.asarray(2.0, dtype)))
    close(g, C.cross_entropy_backward(wp, t, np.asarray(2.0, dtype)))
    close(D.cross_entropy_backward(probs, t, 1.0), C.cross_entropy_backward(wp, t, 1.0))
    loss2, _ = D.cross_entropy(dev(x), t)  # host target
    close(loss2, wl)


# -- optimizer updates -------------------------------------------------------------------------
@pytest.mark.parametrize("momentum,nesterov,wd,damp", [(0.0, False, 0.0, 0.0),
                                                        (0.9, False, 1e-2, 0.1),
                                                        (0.9, True, 0.0, 0.0)])
def test_sgd_step(momentum, nesterov, wd, damp):
    p, g = rnd(3, 4), rnd(3, 4)
    buf = np.zeros_like(p) if momentum else None
    dp, dg = dev(p), dev(g)
    dbuf = dev(buf) if momentum else None
    for step in range(3):
        C.update("sgd", p, g, buf, 0.1, momentum, wd, nesterov, damp, step == 0)
        D.update("sgd", dp, dg, dbuf, 0.1, momentum, wd, nesterov, damp, step == 0)
    close(dp, p)
    close(dg, g)  # grad is never modified
    if momentum:
        close(dbuf, buf)


@pytest.mark.parametrize("decoupled,wd", [(False, 0.0), (False, 0.1), (True, 0.01)])
def test_adam_step(decoupled, wd):
    p, g = rnd(5), rnd(5)
    m, v = np.zeros_like(p), np.zeros_like(p)
    dp, dg, dm, dv = dev(p), dev(g), dev(m), dev(v)
    for step in (1, 2, 3):
        C.update("adam", p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, wd, step, decoupled)
        D.update("adam", dp, dg, dm, dv, 1e-2, 0.9, 0.999, 1e-8, wd, step, decoupled)
    close(dp, p)
    close(dm, m)
    close(dv, v)


def test_optimizer_float16():
    p, g = rnd(4, dtype=np.float16), rnd(4, dtype=np.float16)
    m, v = np.zeros_like(p), np.zeros_like(p)
    dp, dm, dv = dev(p), dev(m), dev(v)
    C.update("adam", p, g, m, v, 1e-2, 0.9, 0.999, 1e-4, 0.0, 1, False)
    D.update("adam", dp, dev(g), dm, dv, 1e-2, 0.9, 0.999, 1e-4, 0.0, 1, False)
    close(dp, p, rtol=2e-3, atol=2e-3)
