"""ds.autograd.Function against torch.autograd.Function: the same class bodies, written once
for both libraries (their APIs are the same), forward, gradients, double backward, saved outputs,
non-Tensor arguments, several outputs, non-differentiable outputs and the error cases."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import gradcheck, gradgradcheck

import dlsys as ds

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)
X = RNG.standard_normal((3, 4))


def make_exp(lib):
    class Exp(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = x.exp()
            ctx.save_for_backward(y)  # an output: double backward goes through it
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return g * y

    return Exp


def make_scale(lib):
    class Scale(lib.autograd.Function):
        """x * k + b with a Python number k and a flag; b may be None."""

        @staticmethod
        def forward(ctx, x, k, b, square):
            ctx.k, ctx.square = k, square
            ctx.save_for_backward(x)
            ctx.needs = ctx.needs_input_grad
            y = x * k
            if square:
                y = y * x
            return y if b is None else y + b

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            gx = g * ctx.k * (2 * x if ctx.square else 1)
            return gx, None, (g.sum(0) if ctx.needs[2] else None), None

    return Scale


def make_two(lib):
    class Two(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            ctx.save_for_backward(x, y)
            return x * y, x + y, 7

        @staticmethod
        def backward(ctx, ga, gb, gnone):
            assert gnone is None
            x, y = ctx.saved_tensors
            return ga * y + gb, ga * x + gb

    return Two


def pair(a, dtype=np.float64):
    """The same leaf in both libraries."""
    return (ds.tensor(a.astype(dtype), dtype=dtype, requires_grad=True),
            torch.tensor(a.astype(dtype), requires_grad=True))


def close(d, t, tol=1e-12):
    np.testing.assert_allclose(np.asarray(d), t.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_forward_backward_and_double_backward_as_torch(dtype, tol):
    (dx, tx), w = pair(X, dtype), RNG.standard_normal(X.shape).astype(dtype)
    dy, ty = make_exp(ds).apply(dx), make_exp(torch).apply(tx)
    close(dy, ty, tol)
    assert type(dy.grad_fn).__name__ == type(ty.grad_fn).__name__ == "ExpBackward"
    (dg,) = ds.autograd.grad((dy * ds.tensor(w, dtype=dtype)).sum(), dx, create_graph=True)
    (tg,) = torch.autograd.grad((ty * torch.tensor(w)).sum(), tx, create_graph=True)
    close(dg, tg, tol)
    (dg * dg).sum().backward()
    (tg * tg).sum().backward()
    close(dx.grad, tx.grad, tol * 10)


def test_gradcheck_first_and_second_order():
    exp = make_exp(ds)
    assert gradcheck(lambda x: exp.apply(x) * x, X) < 1e-6
    assert gradgradcheck(lambda x: exp.apply(x) * x, X) < 1e-6
    scale = make_scale(ds)
    b = RNG.standard_normal(4)
    assert gradcheck(lambda x, b: scale.apply(x, 3.0, b, True), X, b) < 1e-6


@pytest.mark.parametrize("square", [False, True])
def test_non_tensor_arguments_needs_input_grad_and_broadcast_gradient(square):
    (dx, tx), (db, tb) = pair(X), pair(X[0])
    for lib, x, b in ((ds, dx, db), (torch, tx, tb)):
        f = make_scale(lib)
        y = f.apply(x, 2.5, b, square)
        y.backward(lib.ones(3, 4, dtype=y.dtype))
    close(dx.grad, tx.grad)
    close(db.grad, tb.grad)
    # needs_input_grad: one flag per forward argument, False for non-Tensors
    x = ds.tensor(X, requires_grad=True)
    ctx_probe = make_scale(ds)
    y = ctx_probe.apply(x, 2.0, ds.tensor(X[0]), square)
    assert y.grad_fn.ctx.needs == (True, False, False, False)


def test_several_outputs_unused_outputs_get_zeros_non_tensor_outputs_none():
    (dx, tx), (dy, ty) = pair(X), pair(X + 1)
    da, db, dseven = make_two(ds).apply(dx, dy)
    ta, tb, tseven = make_two(torch).apply(tx, ty)
    assert dseven == tseven == 7
    close(da, ta)
    close(db, tb)
    (da * 3).sum().backward()  # only the first output is used: gb arrives as zeros
    (ta * 3).sum().backward()
    close(dx.grad, tx.grad)
    close(dy.grad, ty.grad)
    dx.grad = None
    tx.grad = None
    da, db, _ = make_two(ds).apply(dx, dy)
    ta, tb, _ = make_two(torch).apply(tx, ty)
    (da * db).sum().backward()  # both outputs, gradients merged into one backward call
    (ta * tb).sum().backward()
    close(dx.grad, tx.grad)


def test_set_materialize_grads_false_gives_none():
    seen = []

    class F(ds.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.set_materialize_grads(False)
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, ga, gb):
            seen.append(gb)
            return ga * 2

    x = ds.tensor(X, requires_grad=True)
    F.apply(x)[0].sum().backward()
    assert seen == [None]
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.ones_like(X))


def test_mark_non_differentiable_and_integer_outputs():
    def make(lib):
        class Sort(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                idx = lib.tensor(np.argsort(x.detach().numpy(), axis=-1))
                vals = lib.tensor(np.take_along_axis(x.detach().numpy(), idx.numpy(), -1),
                                  dtype=lib.float64)
                flag = vals > 0
                ctx.mark_non_differentiable(flag)
                ctx.save_for_backward(idx)
                return vals, idx, flag

            @staticmethod
            def backward(ctx, gv, gi, gf):
                (idx,) = ctx.saved_tensors
                out = np.zeros(gv.shape)
                np.put_along_axis(out, idx.numpy(), gv.detach().numpy(), -1)
                return lib.tensor(out, dtype=lib.float64)

        return Sort

    (dx, tx) = pair(X)
    dv, di, df = make(ds).apply(dx)
    tv, ti, tf = make(torch).apply(tx)
    assert not di.requires_grad and not df.requires_grad and dv.requires_grad
    assert not ti.requires_grad and not tf.requires_grad
    w = RNG.standard_normal(X.shape)
    (dv * ds.tensor(w, dtype=ds.float64)).sum().backward()
    (tv * torch.tensor(w)).sum().backward()
    close(dx.grad, tx.grad)


def test_returning_an_input_gives_a_new_tensor_and_setup_context_style():
    class Ident(ds.autograd.Function):
        @staticmethod
        def forward(x, scale=2.0):  # PyTorch 2 style: no ctx here
            return x

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.scale = inputs[1]  # defaults are bound, as in PyTorch

        @staticmethod
        def backward(ctx, g):
            return g * ctx.scale, None

    x = ds.tensor(X, requires_grad=True)
    y = Ident.apply(x)
    assert y is not x and x.is_leaf and x.grad_fn is None
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full(X.shape, 2.0))


def test_no_graph_without_grad_and_graph_freed_after_backward():
    exp = make_exp(ds)
    x = ds.tensor(X, requires_grad=True)
    with ds.no_grad():
        assert exp.apply(x).grad_fn is None
    assert exp.apply(ds.tensor(X)).grad_fn is None
    y = exp.apply(x)
    y.sum().backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.sum().backward()
    y = exp.apply(x)
    y.sum().backward(retain_graph=True)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * np.exp(X), rtol=1e-6)


def test_bad_gradients_raise_clear_errors():
    def make(result):
        class Bad(ds.autograd.Function):
            @staticmethod
            def forward(ctx, x, n):
                return x * n

            @staticmethod
            def backward(ctx, g):
                return result(g)

        return Bad

    x = ds.tensor(X, requires_grad=True)
    with pytest.raises(ValueError, match="incorrect number of gradients"):
        make(lambda g: g).apply(x, 2).sum().backward()
    with pytest.raises(ValueError, match=r"invalid gradient at index 0 - got \[3\]"):
        make(lambda g: (g[:, 0], None)).apply(x, 2).sum().backward()
    with pytest.raises(TypeError, match="returned float"):
        make(lambda g: (1.0, None)).apply(x, 2).sum().backward()
    with pytest.raises(TypeError, match="not a Tensor"):
        make(lambda g: (g, g)).apply(x, 2).sum().backward()
    # extra trailing Nones are accepted, a float64 gradient is cast to the input's dtype
    x32 = ds.tensor(X.astype(np.float32), requires_grad=True)
    make(lambda g: (g.to(ds.float64), None, None)).apply(x32, 2).sum().backward()
    assert x32.grad.dtype == np.float32
    with pytest.raises(TypeError, match="save_for_backward"):
        class Saves(ds.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(X)
                return x
        Saves.apply(x)


def test_once_differentiable():
    class Sq(ds.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @ds.autograd.once_differentiable
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 2 * x

    x = ds.tensor(X, requires_grad=True)
    (g,) = ds.autograd.grad(Sq.apply(x).sum(), x)
    np.testing.assert_allclose(g.numpy(), 2 * X.astype(np.float32), rtol=1e-6)
    (g,) = ds.autograd.grad(Sq.apply(x).sum(), x, create_graph=True)
    assert not g.requires_grad  # as PyTorch: the upstream gradient needs none
    y = Sq.apply(x)
    (g,) = ds.autograd.grad((y * y).sum(), x, create_graph=True)
    assert g.requires_grad
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.sum().backward()


@pytest.mark.skipif(not ds.cuda_is_available(), reason="no CUDA device or simulator")
def test_on_cuda():
    exp = make_exp(ds)
    x = ds.tensor(X[:2, :2], device="cuda", requires_grad=True)
    y = exp.apply(x)
    assert y.device == ds.cuda()
    (g,) = ds.autograd.grad(y.sum(), x, create_graph=True)
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.exp(X[:2, :2]).astype(np.float32), rtol=1e-6)
