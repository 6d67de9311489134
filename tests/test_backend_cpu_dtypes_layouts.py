"""CPU device: float16 results (computed in float32, rounded once) and inputs of any layout
(strided or permuted views give what their compact copies give), one case per method."""

from __future__ import annotations

import numpy as np
import pytest

from dlsys import backend as B
from dlsys.backend import cpu_kernels_nn as KN


@pytest.fixture
def dev():
    return B.cpu()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _f16_cases():
    """name -> fn(dev, x (2, 2, 5, 5), lg (4, 3)) returning float16 results of one method."""
    t = np.array([0, 1, 2, 0])

    def pool_back(d, x, lg):
        out, am = d.max_pool2d(x, 2, 2)
        return d.max_pool2d_backward(out, am, x.shape)

    def sgd(d, x, lg):
        p, g, b = np.ones(3, np.float16), np.full(3, 0.5, np.float16), np.zeros(3, np.float16)
        d.update("sgd", p, g, b, 0.1, 0.9, 0.0, False, 0.0, True)
        np.testing.assert_allclose(p, 0.95, rtol=1e-3)
        return p

    def index_add(d, x, lg):
        emb = np.zeros((3, 2), np.float16)
        d.index_add(emb, np.array([1, 1]), np.ones((2, 2), np.float16))
        np.testing.assert_array_equal(emb[1], 2)
        return emb

    return {
        "im2col": lambda d, x, lg: d.im2col(x, 3, 3, 1, 1),
        "col2im": lambda d, x, lg: d.col2im(d.im2col(x, 3, 3, 1, 1), x.shape, 3, 3, 1, 1),
        "max_pool2d_backward": pool_back,
        "avg_pool2d_backward": lambda d, x, lg: d.avg_pool2d_backward(d.avg_pool2d(x, 2, 2),
                                                                      x.shape, 2, 2),
        "cross_entropy": lambda d, x, lg: d.cross_entropy(lg, t),
        "cross_entropy_backward": lambda d, x, lg: d.cross_entropy_backward(
            d.cross_entropy(lg, t)[1], t, 1.0),
        "softmax": lambda d, x, lg: d.softmax(lg),
        "log_softmax": lambda d, x, lg: d.log_softmax(lg),
        "logsumexp": lambda d, x, lg: d.logsumexp(lg),
        "matmul": lambda d, x, lg: d.matmul(lg, lg.T),
        "sgd": sgd,
        "index_add": index_add,
        "unary_backward_gelu": lambda d, x, lg: d.unary_backward("gelu", lg, d.unary("gelu", lg),
                                                                 lg),
        "unary_backward_tanh": lambda d, x, lg: d.unary_backward("tanh", lg, d.unary("tanh", lg),
                                                                 lg),
    }


@pytest.mark.parametrize("name", list(_f16_cases()))
def test_float16_results_stay_float16(dev, rng, name):
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float16)
    lg = rng.standard_normal((4, 3)).astype(np.float16)
    out = _f16_cases()[name](dev, x, lg)
    for o in out if isinstance(out, tuple) else (out,):
        assert o.dtype == np.float16


def test_float16_cross_entropy_is_computed_in_float32(dev, rng):
    lg = rng.standard_normal((4, 3)).astype(np.float16)
    t = np.array([0, 1, 2, 0])
    loss, probs = dev.cross_entropy(lg, t)
    loss64, probs64 = KN.cross_entropy_ref(lg.astype(np.float64), t)
    np.testing.assert_allclose(loss, loss64, rtol=1e-3)  # computed in float32, rounded once
    np.testing.assert_allclose(probs, probs64, rtol=1e-3, atol=1e-4)


def _strided():
    base = np.random.default_rng(5).standard_normal((5, 3, 2, 6)).astype(np.float32)
    x = base.transpose(1, 2, 3, 0)[:, :, :, ::2]  # (3, 2, 6, 3), strided
    x4 = x.transpose(0, 3, 1, 2)  # (3, 3, 2, 6) NCHW view
    lg = x.reshape(-1, 3)[::2]  # strided rows
    return x, x4, lg


def _layout_cases():
    """name -> fn(dev, make) where make(a) is a or its compact copy: the result must not
    depend on the layout of the inputs."""
    def pool_back(d, make):
        _, x4, _ = _strided()
        out, am = d.max_pool2d(np.ascontiguousarray(x4), 2, 2)
        g = np.asfortranarray(np.ones_like(out))
        return d.max_pool2d_backward(make(g), am, x4.shape)

    def avg_back(d, make):
        _, x4, _ = _strided()
        g = np.asfortranarray(np.ones_like(d.avg_pool2d(np.ascontiguousarray(x4), 2, 2)))
        return d.avg_pool2d_backward(make(g), x4.shape, 2, 2)

    def col2im(d, make):
        _, x4, _ = _strided()
        cols = d.im2col(np.ascontiguousarray(x4), 2, 2, 1, 1)
        return d.col2im(make(cols.T.copy().T), x4.shape, 2, 2, 1, 1)

    def ce(d, make):
        _, _, lg = _strided()
        return d.cross_entropy(make(lg), np.arange(lg.shape[0]) % 3)[0]

    def sgd(d, make):
        x, _, _ = _strided()
        p = np.ascontiguousarray(x).copy()
        view = make(p[:, :, ::2])  # the optimizer updates a strided view in place
        d.update("sgd", view, np.ones(view.shape, np.float32), None, 0.5, 0.0, 0.0, False, 0.0,
                 True)
        return view

    return {
        "im2col": lambda d, make: d.im2col(make(_strided()[1]), 2, 2, 1, 1),
        "col2im": col2im,
        "max_pool2d": lambda d, make: d.max_pool2d(make(_strided()[1]), 2, 2),
        "max_pool2d_backward": pool_back,
        "avg_pool2d": lambda d, make: d.avg_pool2d(make(_strided()[1]), 2, 2),
        "avg_pool2d_backward": avg_back,
        "cross_entropy": ce,
        "softmax": lambda d, make: d.softmax(make(_strided()[2])),
        "sgd_update": sgd,
    }


@pytest.mark.parametrize("name", list(_layout_cases()))
def test_non_contiguous_inputs_match_compact(dev, name):
    fn = _layout_cases()[name]
    got = fn(dev, lambda a: a)
    want = fn(dev, np.ascontiguousarray)
    for g, w in zip(got if isinstance(got, tuple) else (got,),
                    want if isinstance(want, tuple) else (want,), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6)


def test_sgd_update_of_a_strided_view_leaves_the_rest_alone(dev):
    x, _, _ = _strided()
    xc = np.ascontiguousarray(x)
    p = xc.copy()
    dev.update("sgd", p[:, :, ::2], np.ones(p[:, :, ::2].shape, np.float32), None, 0.5, 0.0,
               0.0, False, 0.0, True)
    np.testing.assert_array_equal(p[:, :, 1::2], xc[:, :, 1::2])
    np.testing.assert_allclose(p[:, :, ::2], xc[:, :, ::2] - 0.5)
