"""dlsys on ds.cuda() vs ds.cpu(): ops (forward + backward), modules, optimizers, a few training
steps of a tiny MLP, device transfers and device-mixing errors.

Every check runs the same seeded function on both devices and compares the results. Runs on a
GPU or under the Numba CUDA simulator (tests/conftest.py switches it on when there is no GPU;
see tests/test_backend_cuda.py for the separate command); skipped with the reason otherwise.
NOTE: the simulator runs every CUDA thread as a Python thread: keep shapes tiny.
"""

from __future__ import annotations

import numpy as np
import pytest

import dlsys as ds

if not ds.cuda_is_available():
    pytest.skip("numba-cuda is not installed, or no CUDA GPU and its simulator is off (run with "
                "NUMBA_ENABLE_CUDASIM=1 set before Python starts)", allow_module_level=True)

import dlsys.nn.functional as F  # noqa: E402
from dlsys import nn, optim  # noqa: E402

DEVICES = ["cpu", "cuda"]


def both(fn, rtol=1e-5, atol=1e-6):
    """Run fn(device) on cpu and cuda with the same seed; compare every returned array."""
    out = {}
    for d in DEVICES:
        ds.manual_seed(0)
        res = fn(d)
        res = res if isinstance(res, (list, tuple)) else [res]
        out[d] = [np.asarray(r.numpy() if isinstance(r, ds.Tensor) else r) for r in res]
    for i, (a, b) in enumerate(zip(out["cpu"], out["cuda"], strict=True)):
        assert a.shape == b.shape and a.dtype == b.dtype, (i, a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_allclose(b.astype(np.float64), a.astype(np.float64), rtol=rtol,
                                   atol=atol, err_msg=f"result {i}")
    return out


def leaf(a, d):
    return ds.tensor(np.asarray(a), device=d, requires_grad=True)


RNG = np.random.default_rng(0)
A = RNG.standard_normal((2, 3)).astype(np.float32)
B = RNG.standard_normal((3,)).astype(np.float32)
P = (np.abs(RNG.standard_normal((2, 3))) + 0.5).astype(np.float32)


# -- devices and transfers ---------------------------------------------------------------------
def test_to_numpy_is_a_host_copy():
    x = ds.tensor(A).to("cuda")
    assert x.device == ds.cuda() and x.device != ds.cpu()
    h = x.numpy()
    np.testing.assert_array_equal(h, A)
    h[0, 0] = 100.0  # a host copy: the device tensor is unchanged
    assert x.numpy()[0, 0] == A[0, 0]
    np.testing.assert_array_equal(np.asarray(x), A)


def test_to_cpu_and_back():
    back = ds.tensor(A).to("cuda").to("cpu")
    assert back.device == ds.cpu()
    np.testing.assert_array_equal(back.numpy(), A)


def test_integer_tensor_on_cuda():
    y = ds.tensor([1, 2, 3], device="cuda")
    assert y.dtype == ds.int64 and y.device == ds.cuda() and y.sum().item() == 6


def test_copy_from_numpy_and_from_another_device():
    z = ds.zeros(2, 2, device=ds.cuda())
    z.copy_(A[:, :2])  # numpy source
    z.add_(ds.ones(2, 2, device="cuda"))
    np.testing.assert_allclose(z.numpy(), A[:, :2] + 1)
    z.copy_(ds.ones(2, 2))  # across devices
    np.testing.assert_array_equal(z.numpy(), np.ones((2, 2), np.float32))


def test_mixing_devices_raises_naming_both():
    a = ds.tensor(A)
    b = ds.tensor(A, device="cuda")
    for f in (lambda: a + b, lambda: b * a, lambda: a @ b.transpose(1, 0)):
        with pytest.raises(ValueError) as e:
            f()
        msg = str(e.value)
        assert "cpu" in msg and "cuda" in msg, msg


def test_grad_moves_with_backward_on_cuda():
    x = leaf(A, "cuda")
    (x * x).sum().backward()
    assert x.grad.device == ds.cuda()
    np.testing.assert_allclose(x.grad.numpy(), 2 * A, rtol=1e-6)


# -- ops, forward and backward -----------------------------------------------------------------
def test_elementwise_broadcast_and_grads():
    def f(d):
        a, b, p = leaf(A, d), leaf(B, d), leaf(P, d)
        y = (a + b) * p - a / p + p ** 2.0 + (-a).exp() * 0.5 + p.log() + p.sqrt()
        z = y.relu() + a.tanh() + a.sigmoid() + F.gelu(a) + ds.maximum(a, p)
        z.sum().backward()
        return z, a.grad, b.grad, p.grad, (a > p), ds.where(a > 0, a, p)
    both(f, rtol=1e-5, atol=1e-5)


def test_reductions_and_shapes():
    def f(d):
        x = leaf(RNG_X, d)
        s = x.sum(axis=(0, 2)) + x.mean(axis=0).sum(axis=1) + x.amax(axis=2).max(dim=0).values
        t = x.permute(2, 0, 1).reshape(4, 6)[1:3, ::2] * 2
        u = (ds.stack([x[0], x[1]], axis=1).flatten()
             + ds.concatenate([x[:, 0], x[:, 2], x[:, 1]], 1).flatten())
        loss = s.sum() + t.sum() + (u * u).sum() + x.max()
        loss.backward()
        return s, t, u, loss, x.grad
    both(f, rtol=1e-5, atol=1e-5)


RNG_X = RNG.standard_normal((2, 3, 4)).astype(np.float32)


def test_indexing_grads():
    def f(d):
        x = leaf(RNG_X, d)
        w = ds.tensor(np.arange(6, dtype=np.float32).reshape(3, 2), device=d)
        a = x[:, ::-1, 1:3] * w  # negative step and strided slice (views on both devices)
        b = x[1, :, -1]
        c = x[ds.tensor(np.array([1, 0, 1]), device=d)]  # integer array: repeated rows add up
        e = x[np.array([0, 1]), np.array([2, 2])]
        loss = (a * a).sum() + b.sum() + (c * c).sum() + e.sum()
        loss.backward()
        return a, b, c, e, x.grad
    both(f, rtol=1e-5, atol=1e-5)


def test_matmul_and_linear():
    a3 = RNG.standard_normal((2, 3, 5)).astype(np.float32)
    b2 = RNG.standard_normal((5, 4)).astype(np.float32)
    bias = RNG.standard_normal((4,)).astype(np.float32)

    def f(d):
        a, b, c = leaf(a3, d), leaf(b2, d), leaf(bias, d)
        y = a @ b
        z = F.linear(a, b.transpose(1, 0), c)
        (y.sum() + (z * z).sum()).backward()
        return y, z, a.grad, b.grad, c.grad
    both(f, rtol=1e-4, atol=1e-5)


def test_softmax_family_and_losses():
    logits = RNG.standard_normal((4, 5)).astype(np.float32)
    target = np.array([0, 3, 4, 1])

    def f(d):
        x = leaf(logits, d)
        t = ds.tensor(target, device=d)
        s = F.softmax(x, axis=-1)
        ls = F.log_softmax(x, axis=1)
        lse = F.logsumexp(x, axis=-1)
        ce = F.cross_entropy(x, t)
        mse = F.mse_loss(s, ds.tensor(np.full((4, 5), 0.2, np.float32), device=d))
        (ce + mse + (s * ls).sum() + lse.sum()).backward()
        return s, ls, lse, ce, mse, x.grad
    both(f, rtol=1e-5, atol=1e-5)


def test_conv_pool_norm_embedding():
    img = RNG.standard_normal((2, 2, 5, 5)).astype(np.float32)
    w = RNG.standard_normal((3, 2, 3, 3)).astype(np.float32)
    b = RNG.standard_normal((3,)).astype(np.float32)
    table = RNG.standard_normal((6, 3)).astype(np.float32)

    def f(d):
        x, ww, bb, tb = leaf(img, d), leaf(w, d), leaf(b, d), leaf(table, d)
        y = F.conv2d(x, ww, bb, stride=1, padding=1)
        m = F.max_pool2d(y, 2)
        a = F.avg_pool2d(y, 2, stride=1)
        n = F.layer_norm(y, (5,), None, None, 1e-5)
        e = F.embedding(ds.tensor(np.array([[1, 5], [1, 0]]), device=d), tb)
        loss = (m * m).sum() + a.sum() + (n * y).sum() + (e * e).sum()
        loss.backward()
        return y, m, a, n, e, x.grad, ww.grad, bb.grad, tb.grad
    both(f, rtol=1e-4, atol=1e-4)


# -- modules, optimizers, training -------------------------------------------------------------
def test_modules_forward_backward_and_state():
    img = RNG.standard_normal((2, 1, 5, 5)).astype(np.float32)

    def f(d):
        model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3))
        model.to(d)
        x = ds.tensor(img, device=d)
        out = model(x)
        out.sum().backward()
        sd = model.state_dict()
        model.eval()
        ev = model(x)
        grads = [p.grad for p in model.parameters()]
        return [out, ev, sd["1.running_mean"], sd["1.running_var"]] + grads
    both(f, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opt_name,dtype", [("sgd", "float32"), ("adam", "float32"),
                                            ("sgd", "float64")])
def test_tiny_mlp_training_matches_cpu(opt_name, dtype):
    x_np = RNG.standard_normal((6, 4)).astype(dtype)
    y_np = np.array([0, 1, 2, 1, 0, 2])
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)

    def f(d):
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).to(d).to(np.dtype(dtype))
        if opt_name == "sgd":
            opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                            weight_decay=1e-3)
        else:
            opt = optim.AdamW(model.parameters(), lr=1e-2)
        x, y = ds.tensor(x_np, dtype=x_np.dtype, device=d), ds.tensor(y_np, device=d)
        losses = []
        for _ in range(3):
            opt.zero_grad()
            loss = nn.CrossEntropyLoss()(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return [np.array(losses)] + list(model.parameters())
    out = both(f, **tol)
    assert out["cuda"][0][-1] < out["cuda"][0][0]  # it learns


def test_load_state_dict_across_devices():
    ds.manual_seed(1)
    src = nn.Linear(3, 2)
    dst = nn.Linear(3, 2).to("cuda")
    dst.load_state_dict(src.state_dict())
    for k, v in dst.state_dict().items():
        assert v.device == ds.cuda()
        np.testing.assert_array_equal(v.numpy(), src.state_dict()[k].numpy())
