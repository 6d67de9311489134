"""The in-place and storage methods of the kernel interface (binary_, scalar_, fill_, setitem,
owns_storage, copy_from, update) on every device, against numpy; the float16 policy; and the
Tensor methods built on them (cross-device copy_, __setitem__, .cuda()).

CUDA runs on a GPU or under Numba's CUDA simulator (tests/conftest.py); skipped otherwise.
"""

from __future__ import annotations

import numpy as np
import pytest

import dlsys as ds
from dlsys.backend import cpu, device, updates

HAVE_CUDA = ds.cuda_is_available()
DEVICES = ["cpu"] + (["cuda"] if HAVE_CUDA else [])
needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="no GPU and no CUDA simulator")


@pytest.fixture(params=DEVICES)
def dev(request):
    return cpu() if request.param == "cpu" else ds.cuda()


def host(d, x):
    return np.array(d.to_numpy(x))


def put(d, a):
    """A device array of its own holding a (the CPU would share a itself)."""
    return d.from_numpy(np.array(a))


A = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.0
B = np.linspace(1.0, 2.0, 12, dtype=np.float32).reshape(3, 4)


# -- in-place elementwise ------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum", "minimum", "pow"])
def test_binary_in_place_keeps_the_destination(dev, op):
    dst = put(dev, np.abs(A) + 1 if op == "pow" else A)
    got = dev.binary_(op, dst, put(dev, B))
    assert got is dst
    ref = device.NUMPY_BINARY[op](np.abs(A) + 1 if op == "pow" else A, B)
    np.testing.assert_allclose(host(dev, dst), ref, rtol=1e-6)


def test_binary_in_place_into_a_strided_view_writes_through(dev):
    base = put(dev, A)
    view = dev.getitem(base, (slice(None), slice(None, None, 2)))
    dev.binary_("add", view, put(dev, B[:, ::2].copy()))
    want = A.copy()
    want[:, ::2] += B[:, ::2]
    np.testing.assert_array_equal(host(dev, base), want)


def test_binary_in_place_with_a_broadcast_source(dev):
    dst = put(dev, A)
    dev.binary_("add", dst, dev.broadcast_to(put(dev, B[0]), (3, 4)))
    np.testing.assert_array_equal(host(dev, dst), A + B[0])


def test_binary_in_place_float16_rounds_once(dev):
    a, b = A.astype(np.float16), B.astype(np.float16)
    dst = put(dev, a)
    dev.binary_("mul", dst, put(dev, b))
    assert dst.dtype == np.float16
    np.testing.assert_array_equal(host(dev, dst),
                                  (a.astype(np.float32) * b.astype(np.float32)).astype(np.float16))


@pytest.mark.parametrize("op,s", [("add", 2.5), ("mul", -3.0)])
def test_scalar_in_place(dev, op, s):
    dst = put(dev, A)
    assert dev.scalar_(op, dst, s) is dst
    np.testing.assert_array_equal(host(dev, dst), device.NUMPY_BINARY[op](A, np.float32(s)))


def test_fill_in_place_of_a_tensor_and_of_a_view(dev):
    x = put(dev, A)
    assert dev.fill_(x, 7) is x
    np.testing.assert_array_equal(host(dev, x), 7)
    view = dev.getitem(x, (slice(1, 3), slice(None, None, 3)))
    dev.fill_(view, -1)
    want = np.full((3, 4), 7, np.float32)
    want[1:3, ::3] = -1
    np.testing.assert_array_equal(host(dev, x), want)


# -- setitem -------------------------------------------------------------------------------------
SETITEM = {
    "slice_scalar": ((slice(1, None), slice(None, 2)), 9.0),
    "row_array": ((0,), np.array([1, 2, 3, 4], np.float32)),
    "broadcast_row": ((slice(None), slice(1, 3)), np.array([5, 6], np.float32)),
    "negative_step": ((slice(None, None, -1), 1), np.array([1, 2, 3], np.float32)),
    "int_array": ((np.array([2, 0]),), 4.0),
    "int_arrays": ((np.array([0, 2]), np.array([3, 1])), np.array([8, 9], np.float32)),
    "mask": ((A > 0,), -2.0),
}


@pytest.mark.parametrize("name", list(SETITEM))
def test_setitem_matches_numpy(dev, name):
    index, value = SETITEM[name]
    x = put(dev, A)
    dev.setitem(x, tuple(i if not isinstance(i, np.ndarray) or i.dtype == bool
                         else put(dev, i) for i in index), value)
    want = A.copy()
    want[index] = value
    np.testing.assert_array_equal(host(dev, x), want)


def test_setitem_from_a_device_array(dev):
    x = put(dev, A)
    dev.setitem(x, (slice(None), 0), put(dev, np.array([7, 8, 9], np.float32)))
    want = A.copy()
    want[:, 0] = [7, 8, 9]
    np.testing.assert_array_equal(host(dev, x), want)


@pytest.mark.parametrize("index", [[0, 2], np.array([True, False, True])])
def test_tensor_setitem_with_advanced_index(dev, index):
    # NOTE: on CUDA this wrote into a gathered copy and was lost before setitem became a device
    # method
    t = ds.tensor(A, device=dev)
    t[index] = 0.5
    want = A.copy()
    want[np.asarray(index)] = 0.5
    np.testing.assert_array_equal(t.numpy(), want)


def test_tensor_setitem_with_a_tensor_index(dev):
    t = ds.tensor(A, device=dev)
    t[ds.tensor([1], device=dev)] = ds.tensor(B[1], device=dev)
    want = A.copy()
    want[1] = B[1]
    np.testing.assert_array_equal(t.numpy(), want)


# -- storage ownership ---------------------------------------------------------------------------
def test_cpu_owns_storage_only_of_compact_arrays_without_a_base():
    d = cpu()
    a = np.ones((3, 4), np.float32)
    assert d.owns_storage(a)
    assert not d.owns_storage(a[1:])  # a view
    assert not d.owns_storage(np.ones((4, 3), np.float32).T)  # not C-contiguous


@needs_cuda
def test_cuda_never_claims_sole_ownership():
    # NOTE: numba views share the allocation without referring to the array object, so a
    # refcount cannot prove that nothing else reaches the memory
    d = ds.cuda()
    assert not d.owns_storage(put(d, A))


# -- cross-device copies -------------------------------------------------------------------------
@needs_cuda
def test_copy_cuda_tensor_into_a_host_buffer_is_one_copy_straight_into_it(monkeypatch):
    src = ds.tensor(A, device="cuda")
    dst_host = np.zeros((3, 4), np.float32)
    calls = []
    cls = type(src._data)
    copy_to_host = cls.copy_to_host

    def spy(self, ary=None, stream=0):
        calls.append(ary)
        return copy_to_host(self, ary, stream)

    monkeypatch.setattr(cls, "copy_to_host", spy)
    dst = ds.from_numpy(dst_host)
    assert dst.copy_(src) is dst
    assert len(calls) == 1 and calls[0] is dst_host  # no host array in between
    np.testing.assert_array_equal(dst_host, A)


@needs_cuda
def test_copy_cuda_tensor_into_a_strided_or_other_dtype_host_tensor():
    src = ds.tensor(A, device="cuda")
    buf = np.zeros((3, 8), np.float32)
    ds.from_numpy(buf)[:, ::2].copy_(src)
    np.testing.assert_array_equal(buf[:, ::2], A)
    np.testing.assert_array_equal(buf[:, 1::2], 0)
    d64 = ds.zeros(3, 4, dtype=ds.float64)
    d64.copy_(src)
    np.testing.assert_array_equal(d64.numpy(), A.astype(np.float64))


@needs_cuda
def test_copy_cpu_tensor_into_a_cuda_tensor():
    dst = ds.zeros(3, 4, device="cuda")
    dst.copy_(ds.tensor(A))
    np.testing.assert_array_equal(dst.numpy(), A)
    with pytest.raises(ValueError, match=r"source shape \(4,\) does not match"):
        dst.copy_(ds.tensor(A[0]))


@needs_cuda
def test_tensor_cuda_and_cpu_methods_move_data():
    x = ds.tensor(A)
    y = x.cuda()
    assert y.device == ds.cuda() and x.cuda(0).device == ds.cuda(0)
    np.testing.assert_array_equal(y.cpu().numpy(), A)


# -- optimizer updates through the registry ------------------------------------------------------
@pytest.fixture
def scratch_registry(monkeypatch):
    monkeypatch.setattr(updates, "_KERNELS", dict(updates._KERNELS))
    return updates


def test_a_new_update_needs_no_device_method(dev, scratch_registry):
    @scratch_registry.register(dev.name, "halve")
    def halve(d, param, grad):
        d.binary_("sub", param, d.scalar("mul", grad, 0.5))

    p = put(dev, A)
    dev.update("halve", p, put(dev, B))
    np.testing.assert_allclose(host(dev, p), A - 0.5 * B)
    assert "halve" in scratch_registry.registered(dev.name)
    assert not hasattr(dev, "halve")


def test_an_unknown_update_names_the_device_and_what_it_has(dev):
    with pytest.raises(NotImplementedError, match=r"no 'lamb' update kernel for .*'adam'"):
        dev.update("lamb", None)  # NOTE: rmsprop exists since issue 12


# -- the float16 policy --------------------------------------------------------------------------
class Recorder:
    """A stand-in device exposing the two methods the decorator uses, on numpy arrays."""

    def __init__(self):
        self.seen = []

    def astype(self, x, dtype):
        return x.astype(dtype)

    def copy_(self, dst, src):
        np.copyto(dst, src, casting="unsafe")

    @device.float16_via_float32(0, 1)
    def add(self, a, b):
        self.seen.append((a.dtype, b.dtype))
        return a + b, a > b

    @device.float16_via_float32(0, inplace=(0,))
    def double_(self, x):
        self.seen.append(x.dtype)
        x *= 2
        return x


def test_float16_runs_in_float32_and_rounds_float_results_once():
    r = Recorder()
    a, b = np.array([1.5, 2.0], np.float16), np.array([0.25, 3.0], np.float16)
    total, greater = r.add(a, b)
    assert r.seen == [(np.float32, np.float32)]
    assert total.dtype == np.float16 and greater.dtype == np.bool_
    np.testing.assert_array_equal(total, (a.astype(np.float32) + b).astype(np.float16))


def test_other_dtypes_call_the_method_directly():
    r = Recorder()
    a = np.array([1.5, 2.0], np.float32)
    total, _ = r.add(a, a)
    assert r.seen == [(np.float32, np.float32)] and total.dtype == np.float32


def test_float16_in_place_writes_back_and_returns_the_original():
    r = Recorder()
    x = np.array([1.5, -2.0], np.float16)
    assert r.double_(x) is x
    assert r.seen == [np.float32]
    np.testing.assert_array_equal(x, np.array([3.0, -4.0], np.float16))
