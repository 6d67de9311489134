"""CPU backend: every Numba kernel against its numpy reference, and the interface semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlsys import backend as B
from dlsys.backend import cpu_kernels as K
from dlsys.backend import cpu_kernels_nn as KN
from dlsys.backend import cpu_kernels_optim as KO
from dlsys.backend.device import Device

FLOATS = [np.float32, np.float64]


def tol(dt):
    return dict(rtol=2e-5, atol=2e-6) if dt == np.float32 else dict(rtol=1e-12, atol=1e-13)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def dev():
    return B.cpu()


# -- devices ------------------------------------------------------------------------------------
def test_device_helpers():
    d = B.cpu()
    assert d is B.cpu() and repr(d) == "device(type='cpu')"
    assert B.as_device(None) is d and B.as_device("cpu") is d and B.as_device(d) is d
    assert d == B.as_device("CPU") and hash(d) == hash(B.cpu())
    with pytest.raises(ValueError, match="unknown device"):
        B.as_device("tpu")
    assert isinstance(B.cuda_is_available(), bool)
    if not B.cuda_is_available():
        with pytest.raises(RuntimeError, match="numba-cuda|no GPU"):
            B.cuda()
        with pytest.raises(RuntimeError):
            B.as_device("cuda:1")


# -- softmax family and cross-entropy -----------------------------------------------------------
@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (3, 33)])
def test_softmax_family_kernels(rng, dt, shape):
    x = (rng.standard_normal(shape) * 30).astype(dt)  # NOTE: large logits test stability
    if shape[1] > 1:
        x[0, 0] = -np.inf  # a zero probability (a row of all -inf would be nan, as in numpy)
    for nb, ref in [(KN.softmax_fast, KN.softmax_ref), (KN.log_softmax_fast, KN.log_softmax_ref)]:
        out = nb(x)
        assert out.dtype == dt and out.shape == shape
        np.testing.assert_allclose(out, ref(x), **tol(dt))
    np.testing.assert_allclose(KN.softmax_fast(x).sum(1), 1, **tol(dt))


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("n,c", [(1, 1), (7, 5), (4, 40)])
def test_cross_entropy_kernels(rng, dt, n, c):
    logits = (rng.standard_normal((n, c)) * 10).astype(dt)
    target = rng.integers(0, c, n)
    loss, probs = KN.cross_entropy_fast(logits, target)
    loss_r, probs_r = KN.cross_entropy_ref(logits, target)
    assert loss.shape == () and loss.dtype == dt and isinstance(loss, np.ndarray)
    np.testing.assert_allclose(loss, loss_r, **tol(dt))
    np.testing.assert_allclose(probs, probs_r, **tol(dt))
    # the textbook formula in float64
    l64 = logits.astype(np.float64)
    lse = np.log(np.exp(l64 - l64.max(1, keepdims=True)).sum(1)) + l64.max(1)
    np.testing.assert_allclose(loss, np.mean(lse - l64[np.arange(n), target]), **tol(dt))
    g = KN.cross_entropy_backward_fast(probs, target, 0.75)
    np.testing.assert_allclose(g, KN.cross_entropy_backward_ref(probs, target, 0.75), **tol(dt))


def test_cross_entropy_device_semantics(dev, rng):
    logits = rng.standard_normal((5, 4)).astype(np.float32)
    target = np.array([0, 3, 3, 1, 2])
    for lg in (logits, np.asfortranarray(logits)):  # non-compact input takes the numpy path
        loss, probs = dev.cross_entropy(lg, target)
        g = dev.cross_entropy_backward(probs, target, np.asarray(2.0, np.float32))
        onehot = np.eye(4, dtype=np.float32)[target]
        np.testing.assert_allclose(g, (probs - onehot) * 2.0 / 5, rtol=1e-6, atol=1e-7)
        assert g.dtype == np.float32 and loss.dtype == np.float32
    # NOTE: bad targets are the front end's to reject (tests/test_validation.py)


def test_softmax_device_routes(dev, rng):
    for c in (5, 100):  # short rows: Numba; long rows: numpy
        x = rng.standard_normal((2, 3, c))
        np.testing.assert_allclose(dev.softmax(x), KN.softmax_ref(x), rtol=1e-12)
        np.testing.assert_allclose(dev.log_softmax(x), KN.log_softmax_ref(x), rtol=1e-12)
        lse = dev.logsumexp(x)
        assert lse.shape == (2, 3)
        np.testing.assert_allclose(lse, np.log(np.exp(x).sum(-1)), rtol=1e-12)
        np.testing.assert_allclose(Device.logsumexp(dev, x), lse, rtol=1e-12)


# NOTE: the convolution and pooling kernels are tested in tests/test_conv_pool.py


# -- optimizers ---------------------------------------------------------------------------------
def _sgd_scalar(p, g, buf, lr, mom, wd, nesterov, damp, first):
    d = g + wd * p
    if mom:
        buf = d if first else mom * buf + (1 - damp) * d
        d = d + mom * buf if nesterov else buf
    return p - lr * d, buf


SGD_CASES = [(0.1, 0.0, 0.0, False, 0.0), (0.1, 0.9, 0.0, False, 0.0), (0.05, 0.9, 0.01, True, 0.0),
             (0.1, 0.5, 0.1, False, 0.3)]


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("case", SGD_CASES)
def test_sgd_kernel_vs_reference_and_scalar_loop(rng, dt, case):
    lr, mom, wd, nest, damp = case
    p0 = rng.standard_normal(7).astype(dt)
    grads = [rng.standard_normal(7).astype(dt) for _ in range(4)]
    p_nb, p_ref = p0.copy(), p0.copy()
    b_nb, b_ref = (np.zeros(7, dt), np.zeros(7, dt)) if mom else (None, None)
    ps, bs = [float(v) for v in p0], [0.0] * 7
    for t, g in enumerate(grads):
        g_copy = g.copy()
        KO.sgd_fast(p_nb, g, b_nb, lr, mom, wd, nest, damp, t == 0)
        KO.sgd_ref(p_ref, g, b_ref, lr, mom, wd, nest, damp, t == 0)
        np.testing.assert_array_equal(g, g_copy)  # grad is never modified
        for i in range(7):
            ps[i], bs[i] = _sgd_scalar(ps[i], float(g[i]), bs[i], lr, mom, wd, nest, damp, t == 0)
    np.testing.assert_allclose(p_nb, p_ref, **tol(dt))
    np.testing.assert_allclose(p_nb, ps, **tol(dt))
    if mom:
        np.testing.assert_allclose(b_nb, b_ref, **tol(dt))


def test_optimizer_kernels_without_decay_keep_inf():
    for dt in FLOATS:
        p, g = np.array([np.inf, 1.0], dt), np.array([0.5, 0.5], dt)
        KO.sgd_fast(p, g, None, 0.1, 0.0, 0.0, False, 0.0, True)
        assert p[0] == np.inf
        m, v = np.zeros(2, dt), np.zeros(2, dt)
        KO.adam_fast(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, 0.0, 1, False)
        assert p[0] == np.inf


def test_sgd_momentum_closed_form(dev):
    # constant gradient g: buf_t = g (1 - mu^t) / (1 - mu), p_T = p_0 - lr * sum_t buf_t
    g, mu, lr, steps = np.full(3, 0.5), 0.9, 0.1, 5
    p, buf = np.ones(3), np.zeros(3)
    for t in range(steps):
        dev.update("sgd", p, g, buf, lr, mu, 0.0, False, 0.0, t == 0)
    expect = 1 - lr * sum(0.5 * (1 - mu ** t) / (1 - mu) for t in range(1, steps + 1))
    np.testing.assert_allclose(p, expect, rtol=1e-12)


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("wd,decoupled", [(0.0, False), (0.1, False), (0.1, True)])
def test_adam_kernel_vs_reference(rng, dt, wd, decoupled):
    p0 = rng.standard_normal(9).astype(dt)
    p_nb, p_ref = p0.copy(), p0.copy()
    st_nb = [np.zeros(9, dt), np.zeros(9, dt)]
    st_ref = [np.zeros(9, dt), np.zeros(9, dt)]
    for step in range(1, 5):
        g = rng.standard_normal(9).astype(dt)
        g_copy = g.copy()
        KO.adam_fast(p_nb, g, *st_nb, 1e-2, 0.9, 0.99, 1e-8, wd, step, decoupled)
        KO.adam_ref(p_ref, g, *st_ref, 1e-2, 0.9, 0.99, 1e-8, wd, step, decoupled)
        np.testing.assert_array_equal(g, g_copy)
    np.testing.assert_allclose(p_nb, p_ref, **tol(dt))
    np.testing.assert_allclose(st_nb[0], st_ref[0], **tol(dt))
    np.testing.assert_allclose(st_nb[1], st_ref[1], **tol(dt))


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_closed_form(dev, decoupled):
    # constant gradient: m_hat = g and v_hat = g^2 exactly, so each step moves lr*g/(|g|+eps)
    # (AdamW first scales param by 1 - lr*wd); Adam with wd=0 and AdamW coincide without decay.
    g = np.array([0.5, -2.0, 1e-3])
    lr, eps, wd, steps = 0.01, 1e-8, 0.1 if decoupled else 0.0, 6
    p, m, v = np.ones(3), np.zeros(3), np.zeros(3)
    expect = np.ones(3)
    for step in range(1, steps + 1):
        dev.update("adam", p, g, m, v, lr, 0.9, 0.999, eps, wd, step, decoupled)
        expect = expect * (1 - lr * wd) - lr * g / (np.abs(g) + eps)
    np.testing.assert_allclose(p, expect, rtol=1e-10)
    np.testing.assert_allclose(m, g * (1 - 0.9 ** steps), rtol=1e-12)
    np.testing.assert_allclose(v, g * g * (1 - 0.999 ** steps), rtol=1e-12)


# -- scatter-add ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dt", FLOATS)
def test_index_add_repeated_and_negative(rng, dt):
    cases = [((5, 3), np.array([1, 1, 4, -1, 0, 1])), ((6,), np.array([[2, 2], [5, 0]])),
             ((4, 2, 3), np.array([3, 3, 3]))]
    for out_shape, idx in cases:
        vals = rng.standard_normal(idx.shape + out_shape[1:]).astype(dt)
        base = rng.standard_normal(out_shape).astype(dt)
        a, b = base.copy(), base.copy()
        K.index_add_fast(a, idx, vals)
        K.index_add_ref(b, idx, vals)
        np.testing.assert_allclose(a, b, **tol(dt))
    with pytest.raises(IndexError, match="out of range"):
        K.index_add_fast(np.zeros((3, 2), dt), np.array([0, 3]), np.ones((2, 2), dt))


def test_index_add_device_general_index(dev):
    base = np.arange(24.0).reshape(2, 3, 4)
    for index in [(slice(None), 1), (Ellipsis, slice(1, None, 2)), (1, None, 2), 0]:
        a, b = base.copy(), base.copy()
        v = np.ones(base[index].shape)
        dev.index_add(a, index, v)
        np.add.at(b, index, v)
        np.testing.assert_array_equal(a, b)
    out = np.zeros((3, 4))
    dev.index_add(out, (slice(None), np.array([0, 0, 3])), np.ones((3, 3)))  # np.add.at path
    np.testing.assert_array_equal(out[:, 0], 2)
    emb = np.zeros((4, 2), np.float32)
    assert dev.index_add(emb, np.array([2, 2]), np.ones((2, 2), np.float32)) is emb
    np.testing.assert_array_equal(emb[2], 2)


# -- elementwise --------------------------------------------------------------------------------
@pytest.mark.parametrize("dt", FLOATS)
def test_unary_kernels(rng, dt):
    x = (rng.standard_normal((5, 7)) * 4).astype(dt)
    x[0, :3] = [0.0, 40.0, -40.0]
    for op in K.UNARY_NB:
        np.testing.assert_allclose(K.unary_nb(op, x), K.UNARY_REF[op](x), **tol(dt))
    erf = np.vectorize(math.erf)(x.astype(np.float64))
    np.testing.assert_allclose(K.unary_nb("erf", x), erf, **tol(dt))
    np.testing.assert_allclose(K.unary_nb("gelu", x), x * 0.5 * (1 + np.vectorize(math.erf)(
        x / math.sqrt(2))), **tol(dt))
    # gelu_grad is the derivative of gelu (central differences in float64)
    if dt == np.float64:
        h = 1e-6
        fd = (K.unary_nb("gelu", x + h) - K.unary_nb("gelu", x - h)) / (2 * h)
        np.testing.assert_allclose(K.unary_nb("gelu_grad", x), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("op", ["relu", "tanh", "sigmoid", "gelu"])
def test_unary_backward_kernels(dev, rng, dt, op):
    x = rng.standard_normal((3, 5)).astype(dt)
    y = dev.unary(op, x)
    g = rng.standard_normal((3, 5)).astype(dt)
    out = K.unary_backward_nb(op, x, y, g)
    np.testing.assert_allclose(out, K.unary_backward_ref(op, x, y, g), **tol(dt))
    np.testing.assert_allclose(Device.unary_backward(dev, op, x, y, g), out, **tol(dt))
    gb = np.broadcast_to(dt(1.5), x.shape)  # broadcast views are made compact first
    np.testing.assert_allclose(dev.unary_backward(op, x, y, gb),
                               K.unary_backward_ref(op, x, y, gb), **tol(dt))


def test_elementwise_kernels_keep_permuted_layout(dev, rng):
    base = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)  # NHWC buffer
    x = base.transpose(0, 3, 1, 2)  # an NCHW view, as conv2d returns
    y = dev.unary("gelu", x)
    np.testing.assert_allclose(y, K.gelu_ref(x), **tol(np.float32))
    assert y.strides == x.strides  # same layout, no copy of x
    g = rng.standard_normal(x.shape).astype(np.float32)  # compact: copied into x's order
    for op in ("relu", "gelu", "tanh"):
        yy = dev.unary(op, x)
        np.testing.assert_allclose(dev.unary_backward(op, x, yy, g),
                                   K.unary_backward_ref(op, x, yy, g), **tol(np.float32))


def test_unary_device_dtypes(dev, rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    for op in B.UNARY_OPS:
        if op in ("logical_not", "bitwise_not"):  # bool and integer ops: tested below
            continue
        r = dev.unary(op, np.abs(x) if op in ("log", "sqrt", "log1p") else x)
        assert r.dtype == np.float32 and r.shape == x.shape, op
        r16 = dev.unary(op, np.abs(x).astype(np.float16))
        assert r16.dtype == np.float16, op
    np.testing.assert_allclose(dev.unary("gelu", x.T), K.gelu_ref(x.T), **tol(np.float32))
    np.testing.assert_allclose(dev.unary("sigmoid", np.array([-800.0, 0.0, 800.0])), [0, 0.5, 1])
    np.testing.assert_array_equal(dev.unary("relu", np.array([-1, 2])), [0, 2])
    np.testing.assert_array_equal(dev.unary("logical_not", np.array([True, False])),
                                  [False, True])
    b = dev.unary("bitwise_not", np.array([0, -3], np.int32))
    assert b.dtype == np.int32 and b.tolist() == [-1, 2]
    with pytest.raises(ValueError, match="unknown unary"):
        dev.unary("cosh", x)


def test_binary_and_scalar(dev):
    a = np.array([1.0, 2.0, 4.0], np.float32)
    b = np.array([2.0, 2.0, 2.0], np.float32)
    for op, f in [("add", np.add), ("sub", np.subtract), ("div", np.divide), ("pow", np.power),
                  ("maximum", np.maximum), ("minimum", np.minimum)]:
        r = dev.binary(op, a, b)
        assert r.dtype == np.float32
        np.testing.assert_array_equal(r, f(a, b))
    for op in ("eq", "ne", "lt", "le", "gt", "ge"):
        assert dev.binary(op, a, b).dtype == np.bool_ and dev.scalar(op, a, 2).dtype == np.bool_
    with pytest.raises(ValueError, match=r"\(3,\) vs \(2,\)"):
        dev.binary("add", a, b[:2])
    np.testing.assert_array_equal(dev.scalar("sub", a, 1, reverse=True), 1 - a)
    np.testing.assert_array_equal(dev.scalar("pow", a, 2.0, reverse=True), 2.0 ** a)
    assert dev.scalar("mul", a, 0.1).dtype == np.float32
    assert dev.scalar("add", a.astype(np.float16), 1e3).dtype == np.float16
    np.testing.assert_array_equal(dev.where(a > 1, a, b), [2, 2, 4])


# -- interface semantics -------------------------------------------------------------------------
def _a():
    return np.arange(12, dtype=np.float32).reshape(3, 4)


def _copy_casts(d):
    dst = np.zeros((3, 4), np.float16)
    d.copy_(dst, _a())
    return dst.dtype == np.float16 and dst[1, 1] == 5


def _broadcast_strides(d):
    bc = d.broadcast_to(np.arange(3.0).reshape(3, 1), (2, 3, 4))
    return bc.shape == (2, 3, 4) and bc.strides[0] == 0 and bc.strides[2] == 0


MEMORY_CHECKS = {
    "no_copies_of_compact_arrays": lambda d: all(
        f(a) is a for a in [_a()] for f in (d.from_numpy, d.to_numpy, d.compact)),
    "compact_of_a_transpose": lambda d: d.compact(_a().T).flags.c_contiguous,
    "from_numpy_of_read_only": lambda d: d.from_numpy(
        np.frombuffer(bytes(8), np.float32)).flags.writeable,
    "from_numpy_keeps_0d": lambda d: d.from_numpy(np.array(3.0)).shape == (),
    "to_numpy_out": lambda d: [d.to_numpy(_a(), out=o) is o and o[2, 3] == 11
                               for o in [np.empty((3, 4), np.float64)]][0],
    "copy_casts": _copy_casts,
    "full_dtype": lambda d: d.full((2,), 7, np.int64).dtype == np.int64,
    "empty_shape": lambda d: d.empty((2, 1), np.float32).shape == (2, 1),
    "astype_copies": lambda d: [b.dtype == np.float64 and not np.shares_memory(a, b)
                                for a in [_a()] for b in [d.astype(a, np.float64)]][0],
    "broadcast_is_a_view": _broadcast_strides,
    "permute_is_a_view": lambda d: [p.shape == (4, 3) and np.shares_memory(p, a)
                                    for a in [_a()] for p in [d.permute(a, (1, 0))]][0],
    "reshape": lambda d: d.reshape(_a(), (4, 3)).shape == (4, 3),
    "stack": lambda d: d.stack([_a(), _a()], 1).shape == (3, 2, 4),
    "concatenate": lambda d: d.concatenate([_a(), _a()], 0).shape == (6, 4),
}


@pytest.mark.parametrize("name", list(MEMORY_CHECKS))
def test_memory_and_views(dev, name):
    assert MEMORY_CHECKS[name](dev)


def test_copy_shape_mismatch(dev):
    with pytest.raises(ValueError, match="shapes differ"):
        dev.copy_(np.zeros((3, 4), np.float16), _a()[:2])


def test_getitem_basic_and_gather(dev):
    a = np.arange(24.0).reshape(2, 3, 4)
    v = dev.getitem(a, (slice(None), 1, slice(None, None, 2)))
    assert v.shape == (2, 2) and np.shares_memory(v, a)
    assert dev.getitem(a, (None, Ellipsis, 0)).shape == (1, 2, 3)
    s = dev.getitem(a, (1, 2, 3))
    assert isinstance(s, np.ndarray) and s.shape == () and s == 23
    s[...] = -1  # basic indexing is always a view, even down to one element
    assert a[1, 2, 3] == -1 and dev.getitem(a, 1).shape == (3, 4)
    assert np.shares_memory(dev.getitem(a[0, 0], 2), a)
    g = dev.getitem(a, np.array([1, 1, 0]))
    assert g.shape == (3, 3, 4) and not np.shares_memory(g, a)
    g2 = dev.getitem(a, (np.array([0, 1]), slice(None), np.array([3, 0])))
    np.testing.assert_array_equal(g2, a[[0, 1], :, [3, 0]])


def test_reductions(dev, rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    s = dev.sum(x, None)
    assert isinstance(s, np.ndarray) and s.shape == ()
    assert dev.sum(x, (0, 2), keepdims=True).shape == (1, 4, 1)
    h = np.full(4096, 0.1, np.float16)
    assert dev.sum(h, (0,)).dtype == np.float16
    np.testing.assert_allclose(dev.sum(h, (0,)), 409.6, rtol=1e-3)  # float32 accumulation
    x[0, 1, 2] = x[0, 1, 0] = 9.0  # a tie: argmax is the first
    val, idx = dev.max(x, 2)
    assert idx.dtype == np.int64 and idx.shape == val.shape == (3, 4) and idx[0, 1] == 0
    np.testing.assert_array_equal(val, x.max(2))
    val, idx = dev.max(x, 1, keepdims=True)
    assert val.shape == idx.shape == (3, 1, 5) and idx.dtype == np.int64
    val, idx = dev.max(x, None)
    assert val.shape == idx.shape == () and val == 9.0 and idx.dtype == np.int64


@pytest.mark.parametrize("dt", FLOATS)
def test_sum_leading_axes_kernel(dev, rng, dt):
    a = rng.standard_normal((7, 3)).astype(dt)
    out = np.empty(3, dt)
    K.sum_leading_nb(a, out)
    np.testing.assert_allclose(out, K.sum_leading_ref(a), **tol(dt))
    base = rng.standard_normal((2, 4, 5, 3)).astype(dt)
    nchw = base.transpose(0, 3, 1, 2)  # a permuted dense view
    cases = [(base, (0,)), (base, (0, 1, 2)), (nchw, (0, 2, 3)), (nchw, (0,)), (base, (1,)),
             (base, (0, 2)), (base.transpose(1, 0, 2, 3), (0, 1)), (base[:, ::2], (0,))]
    for x, axes in cases:
        for keepdims in (False, True):
            r = dev.sum(x, axes, keepdims)
            assert r.dtype == dt and isinstance(r, np.ndarray)
            np.testing.assert_allclose(r, np.sum(x.astype(np.float64), axis=axes,
                                                 keepdims=keepdims), **tol(dt))
    assert K.sum_fast(base, (1,), False) is None  # not leading: numpy
    assert K.sum_fast(nchw, (0, 2, 3), False) is not None
    big = np.full((4096, 2), 0.1, np.float32)  # float64 accumulation: exact to rounding
    np.testing.assert_allclose(dev.sum(big, (0,)), 409.6, rtol=1e-7)


def test_matmul(dev, rng):
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b = rng.standard_normal((2, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(dev.matmul(a, b), a @ b, rtol=1e-5)
    r16 = dev.matmul(a.astype(np.float16), b.astype(np.float16))
    assert r16.dtype == np.float16
    np.testing.assert_allclose(r16, a @ b, rtol=2e-2, atol=2e-2)
    assert isinstance(dev.matmul(a[0, 0], b[0, :, 0]), np.ndarray)


def test_random_is_reproducible(dev):
    r1 = dev.randn((3, 2), np.float32, np.random.default_rng(5))
    r2 = dev.randn((3, 2), np.float32, np.random.default_rng(5))
    assert r1.dtype == np.float32 and np.array_equal(r1, r2)
    u = dev.rand((100,), np.float64, np.random.default_rng(0))
    assert u.min() >= 0 and u.max() < 1
