"""The public storage API other libraries use (collective among them): array interfaces,
data_ptr, stride, is_set_to, from_numpy."""

import numpy as np
import pytest

import dlsys as ds


def test_cpu_numpy_is_the_writable_storage():
    t = ds.zeros(3, 4)
    a = np.asarray(t)
    assert a is t.numpy() and a.flags.writeable
    a[1, 2] = 5.0
    assert t.numpy()[1, 2] == 5.0


def test_data_ptr_and_element_strides_of_views():
    t = ds.zeros(4, 6, dtype=ds.float64)
    v = t[1:, ::2]
    assert t.stride() == (6, 1) and v.stride() == (6, 2) and v.stride(1) == 2
    assert v.data_ptr() == t.data_ptr() + 6 * 8


def test_is_set_to_means_same_memory_not_same_object():
    t = ds.zeros(8)
    assert t.is_set_to(t) and t.is_set_to(t.detach()) and t.detach().is_set_to(t)
    assert not t.is_set_to(t[1:]) and not t.is_set_to(t.reshape(2, 4))
    assert not t.is_set_to(ds.zeros(8))
    with pytest.raises(TypeError, match="is_set_to"):
        t.is_set_to(np.zeros(8))


def test_from_numpy_shares_memory_and_keeps_dtype():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = ds.from_numpy(a)
    assert t.dtype == np.float64 and t.shape == (2, 3)
    a[0, 0] = 42.0
    assert t.numpy()[0, 0] == 42.0
    with pytest.raises(TypeError, match="from_numpy"):
        ds.from_numpy([1.0, 2.0])
    with pytest.raises(TypeError, match="unsupported dtype"):
        ds.from_numpy(np.zeros(2, dtype=np.complex64))


def test_cuda_tensor_has_no_host_array_interface():
    if not ds.cuda_is_available():
        pytest.skip("no CUDA device (or simulator)")
    t = ds.zeros(4, device="cuda")
    assert np.asarray(t).shape == (4,)  # a host copy
    assert t.data_ptr() != 0 and t.stride() == (1,)
    assert not hasattr(ds.zeros(2), "__cuda_array_interface__")
