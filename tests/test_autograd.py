"""Autograd engine semantics: leaves and .grad, in-place accumulation, hooks (replacement,
early post-accumulate), graph freeing, no_grad, second backward errors, autograd.grad."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import dlsys as ds
import dlsys.nn.functional as F


def leaf(*shape, seed=0, dtype=ds.float64):
    rng = np.random.default_rng(seed)
    return ds.tensor(rng.standard_normal(shape), dtype=dtype, requires_grad=True)


def test_requires_grad_inference_and_leaves():
    a = leaf(3)
    b = ds.ones(3, dtype=ds.float64)
    c = a * b
    assert c.requires_grad and not c.is_leaf and a.is_leaf and b.is_leaf
    assert not (b * 2).requires_grad
    assert c.grad_fn is not None and (b * 2).grad_fn is None
    with ds.no_grad():
        d = a * b
    assert not d.requires_grad and d.is_leaf
    assert not (a > 0).requires_grad and (a > 0).dtype == ds.bool_


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="int64"):
        ds.tensor([1, 2], requires_grad=True)
    t = ds.tensor([1, 2])
    with pytest.raises(TypeError):
        t.requires_grad = True


def test_grad_accumulates_and_is_updated_in_place():
    a = leaf(2, 3)
    (a * 2).sum().backward()
    g = a.grad
    arr = g._data
    np.testing.assert_allclose(np.asarray(g), 2.0)
    (a * 3).sum().backward()
    assert a.grad is g and a.grad._data is arr  # same object, same storage
    np.testing.assert_allclose(np.asarray(a.grad), 5.0)


def test_grad_that_is_a_view_into_a_bucket_stays_a_view():
    a = leaf(2, 3)
    bucket = np.zeros(10)
    a.grad = ds.Tensor.from_array(bucket[2:8].reshape(2, 3))
    (a * 4).sum().backward()
    np.testing.assert_allclose(bucket[2:8], 4.0)
    assert bucket[0] == 0 and bucket[9] == 0
    assert np.shares_memory(a.grad._data, bucket)


def test_first_grad_owns_its_memory():
    a, b = leaf(3, seed=1), leaf(3, seed=2)
    z = a + b  # the engine hands both leaves the same upstream gradient
    up = ds.tensor([1.0, 2.0, 3.0], dtype=ds.float64)
    z.backward(up)
    assert not np.shares_memory(a.grad._data, b.grad._data)
    assert not np.shares_memory(a.grad._data, up._data)
    a.grad._data[0] = 100.0
    assert b.grad._data[0] == 1.0 and up._data[0] == 1.0
    w = leaf(4, 3)
    x = leaf(5, 3, seed=3)
    s = x.reshape(15).sum()  # x's gradient arrives as a broadcast view: must be compacted
    F.linear(x, w).sum().backward()
    s.backward()
    for t in (w, x):
        assert t.grad._data.flags.c_contiguous and t.grad._data.flags.writeable
        assert t.grad._data.base is None or t.grad._data.base.flags.c_contiguous


def test_grad_setter_validates():
    a = leaf(2)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        a.grad = ds.zeros(3, dtype=ds.float64)
    with pytest.raises(TypeError, match="float32"):
        a.grad = ds.zeros(2)
    a.grad = None
    assert a.grad is None


def test_backward_non_scalar_needs_gradient():
    a = leaf(3)
    y = a * 2
    with pytest.raises(RuntimeError, match="scalar"):
        y.backward()
    with pytest.raises(ValueError, match=r"\(2,\)"):
        y.backward(ds.ones(2, dtype=ds.float64))
    y.backward(ds.tensor([1.0, 0.0, 2.0], dtype=ds.float64))
    np.testing.assert_allclose(np.asarray(a.grad), [2.0, 0.0, 4.0])
    with pytest.raises(RuntimeError, match="does not require grad"):
        ds.ones(1).backward()


def test_second_backward_through_freed_graph_raises():
    a = leaf(3)
    y = (a.exp() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    z = (a.tanh() * a).sum()
    z.backward(retain_graph=True)
    g1 = np.asarray(a.grad).copy()
    z.backward()
    np.testing.assert_allclose(np.asarray(a.grad), 2 * g1 - np.asarray(np.exp(a.numpy()) * 2))


def test_graph_is_freed_after_backward():
    a = leaf(4, 3)
    h = a * 2
    lp = F.log_softmax(h, 1)
    ce = F.cross_entropy(lp, ds.tensor([0, 1, 2, 0]))
    refs = [weakref.ref(h), weakref.ref(lp)]
    op_ref = weakref.ref(ce.grad_fn.probs)
    del h, lp
    gc.collect()
    assert all(r() is not None for r in refs)  # the graph holds them
    ce.backward()
    assert all(r() is None for r in refs)  # refcounting alone frees them: no cycles
    assert op_ref() is None  # the op and the softmax it saved are gone too
    assert "CrossEntropy" in repr(ce)


def test_graph_kept_with_retain_graph():
    a = leaf(3)
    h = a * 2
    r = weakref.ref(h)
    y = h.sum()
    del h
    y.backward(retain_graph=True)
    assert r() is not None
    y.backward()
    assert r() is None


def test_register_hook_replaces_gradient_and_handle_removes():
    a = leaf(3)
    h = a * 1.0
    seen = []
    handle = h.register_hook(lambda g: g * 10)
    ha = a.register_hook(lambda g: seen.append(np.asarray(g).copy()))
    h.sum().backward()
    np.testing.assert_allclose(np.asarray(a.grad), 10.0)
    np.testing.assert_allclose(seen[0], 10.0)
    handle.remove()
    handle.remove()  # idempotent
    ha.remove()
    a.grad = None
    h2 = a * 1.0
    h2.sum().backward()
    np.testing.assert_allclose(np.asarray(a.grad), 1.0)
    assert len(seen) == 1
    with pytest.raises(RuntimeError):
        ds.ones(2).register_hook(lambda g: g)


def test_hook_replacement_must_match():
    a = leaf(3)
    b = a * 1.0
    b.register_hook(lambda g: ds.ones(2, dtype=ds.float64))
    with pytest.raises(ValueError, match="shape"):
        b.sum().backward()


def test_post_accumulate_hook_fires_once_per_leaf_and_early():
    ds.manual_seed(0)
    w1, w2, w3 = (leaf(4, 4, seed=i) for i in range(3))
    x = ds.randn(2, 4, dtype=ds.float64)
    events = []

    def hook(name):
        def f(p):
            # when the last layer's weight is final, the first layer has no gradient yet
            events.append((name, w1.grad is None, np.asarray(p.grad).copy()))
        return f

    handles = [w.register_post_accumulate_grad_hook(hook(n))
               for n, w in (("w1", w1), ("w2", w2), ("w3", w3))]
    h = F.linear(x, w1).tanh()
    h = F.linear(h, w2).tanh() + F.linear(h, w2)  # w2 used twice: one hook call
    out = F.linear(h, w3).sum()
    out.backward()
    names = [e[0] for e in events]
    assert sorted(names) == ["w1", "w2", "w3"]
    assert names[0] == "w3" and events[0][1]  # fired before w1 got its gradient
    assert names[-1] == "w1"
    for n, w in (("w1", w1), ("w2", w2), ("w3", w3)):
        got = [e[2] for e in events if e[0] == n][0]
        np.testing.assert_allclose(got, np.asarray(w.grad))  # .grad final when the hook ran
    for hd in handles:
        hd.remove()
    events.clear()
    F.linear(x, w1).sum().backward()
    assert events == []
    with pytest.raises(RuntimeError, match="leaf"):
        (w1 * 2).register_post_accumulate_grad_hook(lambda p: None)


def test_no_grad_context_and_nesting():
    a = leaf(2)
    assert ds.is_grad_enabled()
    with ds.no_grad():
        assert not ds.is_grad_enabled()
        assert not (a * 2).requires_grad
        with ds.enable_grad():
            assert (a * 2).requires_grad
        assert not ds.is_grad_enabled()
    assert ds.is_grad_enabled()


def test_no_grad_as_decorator_with_and_without_call():
    a = leaf(2)

    @ds.no_grad()
    def f(t):
        return t * 2

    @ds.no_grad
    def g(t):
        return t * 2

    assert not f(a).requires_grad
    assert not g(a).requires_grad
    assert f.__name__ == "f"


def test_no_grad_restores_the_mode_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with ds.no_grad():
            raise ZeroDivisionError
    assert ds.is_grad_enabled()


def test_inplace_on_a_graph_tensor_is_an_error():
    a = leaf(3)
    with pytest.raises(RuntimeError, match="in-place"):
        a.add_(ds.ones(3, dtype=ds.float64))
    with pytest.raises(RuntimeError, match="in-place"):
        (a * 2).mul_(2)


def test_inplace_under_no_grad_keeps_the_storage():
    a = leaf(3)
    arr = a._data
    with ds.no_grad():
        a.add_(ds.ones(3, dtype=ds.float64), alpha=2.0).mul_(0.5)
    assert a._data is arr
    a.data.mul_(0)  # .data shares storage and is detached
    assert np.all(a.numpy() == 0)


def test_copy_casts_into_the_same_storage():
    t = ds.zeros(2, 3)
    view = t._data
    t.copy_(np.arange(6, dtype=np.float64).reshape(2, 3))  # cast float64 -> float32
    assert t._data is view and t.dtype == ds.float32
    np.testing.assert_array_equal(t.numpy(), np.arange(6).reshape(2, 3))
    t.copy_(ds.ones(2, 3, dtype=ds.float64))
    np.testing.assert_array_equal(t.numpy(), 1.0)
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        t.copy_(ds.ones(3, 2))


def test_fill_sub_zero_keep_the_storage():
    t = ds.zeros(2, 3)
    view = t._data
    t.fill_(3)
    t.sub_(ds.ones(2, 3))
    np.testing.assert_array_equal(t.numpy(), 2.0)
    t.zero_()
    assert t._data is view and t.numpy().sum() == 0


def test_detach_and_data_share_storage():
    a = leaf(3)
    d = a.detach()
    assert not d.requires_grad and np.shares_memory(d._data, a._data)
    assert a.data._data is a._data


def test_autograd_grad_leaves_dot_grad_untouched():
    a = leaf(3)
    b = leaf(3, seed=1)
    (ga,) = ds.autograd.grad((a * b).sum(), a)
    np.testing.assert_allclose(np.asarray(ga), b.numpy())
    assert a.grad is None and b.grad is None


def test_create_graph_double_backward_through_backward():
    x = leaf(3)
    y = (x ** 3).sum()
    y.backward(create_graph=True)
    g = x.grad
    assert g.requires_grad
    x.grad = None
    g.sum().backward()
    np.testing.assert_allclose(np.asarray(x.grad), 6 * x.numpy())


def test_unused_branch_and_shared_subgraph():
    a = leaf(3)
    b = leaf(3, seed=1)
    h = a * 2
    y = (h * h).sum() + (h * 0 + b.detach()).sum()
    y.backward()
    np.testing.assert_allclose(np.asarray(a.grad), 8 * a.numpy())
    assert b.grad is None


def test_grad_of_several_outputs_and_inputs():
    a = leaf(3)
    b = leaf(3, seed=1)
    y1 = (a * b).sum()
    y2 = (a * 2).sum()
    ga, gb = ds.autograd.grad([y1, y2], [a, b])
    np.testing.assert_allclose(np.asarray(ga), b.numpy() + 2)
    np.testing.assert_allclose(np.asarray(gb), a.numpy())
    with pytest.raises(RuntimeError, match="does not require grad"):
        ds.autograd.grad((a * 2).sum(), ds.ones(2))


def test_retain_grad_and_setitem():
    a = leaf(3)
    h = a * 2
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(np.asarray(h.grad), 2 * h.numpy())
    t = ds.zeros(2, 3)
    t[0] = 1.0
    t[1, 1:] = ds.tensor([2.0, 3.0])
    np.testing.assert_array_equal(t.numpy(), [[1, 1, 1], [0, 2, 3]])
    with pytest.raises(RuntimeError, match="in-place"):
        a[0] = 1.0


def test_set_grad_enabled():
    with ds.set_grad_enabled(False):
        assert not ds.is_grad_enabled()
    assert ds.is_grad_enabled()
    ds.set_grad_enabled(False)
    assert not ds.is_grad_enabled()
    ds.set_grad_enabled(True)
    assert ds.is_grad_enabled()


def test_pending_gradients_accumulate_in_place_only_when_private(monkeypatch):
    """A tensor used several times sums its gradients into the first fresh one in place
    (no new array per extra consumer), but never into a gradient someone else holds: the
    same gradient object given to two inputs (b + b), or one kept by a hook."""
    from dlsys.backend.cpu import CPUDevice

    adds = []
    orig = CPUDevice.add_
    monkeypatch.setattr(CPUDevice, "add_", lambda self, d, s: adds.append(1) or orig(self, d, s))
    x = ds.tensor(np.ones((3, 4), np.float32), requires_grad=True)
    y = x * 2.0
    (y[:, :2].sum() + y[:, 2:].sum() * 3.0 + y.sum()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.tile([4.0, 4, 8, 8], (3, 1)))
    assert adds, "the pending gradient of y was not accumulated in place"
    a = ds.tensor(np.ones(3, np.float32), requires_grad=True)
    b = a * 1.0
    ((b + b) + b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 3, 3])
    kept = []
    a = ds.tensor(np.ones(3, np.float32), requires_grad=True)
    b = a * 1.0
    b.register_hook(lambda g: kept.append(g))
    (b[:2].sum() + b.sum()).backward()
    np.testing.assert_array_equal(a.grad.numpy(), [2.0, 2, 1])
    np.testing.assert_array_equal(kept[0].numpy(), [2.0, 2, 1])
