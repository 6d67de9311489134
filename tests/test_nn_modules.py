"""dlsys.nn layers against numpy / hand computations."""

import math

import numpy as np
import pytest

import dlsys as ds
from dlsys import nn
from dlsys.nn import init


def t(a, requires_grad=False, dtype=None):
    a = np.asarray(a)
    return ds.tensor(a, dtype=dtype or (a.dtype if a.dtype.kind == "f" else None),
                     requires_grad=requires_grad)


def rng(seed=0):
    return np.random.default_rng(seed)


def test_linear_forward_backward_matches_numpy():
    ds.manual_seed(0)
    lin = nn.Linear(5, 3).to(ds.float64)
    x = rng().standard_normal((4, 5))
    xt = t(x, requires_grad=True)
    y = lin(xt)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    np.testing.assert_allclose(y.numpy(), x @ w.T + b, rtol=1e-12)
    y.sum().backward()
    np.testing.assert_allclose(lin.weight.grad.numpy(), np.ones((4, 3)).T @ x, rtol=1e-12)
    np.testing.assert_allclose(lin.bias.grad.numpy(), np.full(3, 4.0))
    np.testing.assert_allclose(xt.grad.numpy(), np.ones((4, 3)) @ w, rtol=1e-12)


def test_linear_default_init_like_pytorch():
    ds.manual_seed(1)
    lin = nn.Linear(400, 300)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    bound = 1 / math.sqrt(400)
    assert w.shape == (300, 400) and w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound    # U(-b, b) has std b/sqrt(3)
    assert lin.weight.requires_grad and isinstance(lin.weight, nn.Parameter)
    assert nn.Linear(2, 2, bias=False).bias is None


def test_init_is_seeded():
    ds.manual_seed(7)
    a = nn.Linear(6, 4).weight.numpy().copy()
    ds.manual_seed(7)
    b = nn.Linear(6, 4).weight.numpy().copy()
    np.testing.assert_array_equal(a, b)


def naive_conv2d(x, w, b, stride, padding):
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out + b[None, :, None, None]


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1)])
def test_conv2d_matches_naive(stride, padding):
    ds.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=stride, padding=padding).to(ds.float64)
    assert conv.weight.shape == (3, 2, 3, 3) and conv.bias.shape == (3,)
    assert np.abs(conv.weight.numpy()).max() <= 1 / math.sqrt(2 * 9)
    x = rng(1).standard_normal((2, 2, 6, 5))
    y = conv(t(x)).numpy()
    np.testing.assert_allclose(
        y, naive_conv2d(x, conv.weight.numpy(), conv.bias.numpy(), stride, padding), rtol=1e-10)


def test_pooling_matches_numpy():
    x = rng(2).standard_normal((2, 3, 4, 6))
    blocks = x.reshape(2, 3, 2, 2, 3, 2)
    np.testing.assert_allclose(nn.MaxPool2d(2)(t(x)).numpy(), blocks.max(axis=(3, 5)))
    np.testing.assert_allclose(nn.AvgPool2d(2)(t(x)).numpy(), blocks.mean(axis=(3, 5)),
                               rtol=1e-12)


def test_activations_flatten_losses():
    x = rng(3).standard_normal((4, 5))
    xt = t(x)
    np.testing.assert_allclose(nn.ReLU()(xt).numpy(), np.maximum(x, 0))
    np.testing.assert_allclose(nn.Tanh()(xt).numpy(), np.tanh(x), rtol=1e-12)
    np.testing.assert_allclose(nn.Sigmoid()(xt).numpy(), 1 / (1 + np.exp(-x)), rtol=1e-12)
    gelu = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    np.testing.assert_allclose(nn.GELU()(xt).numpy(), gelu, rtol=1e-6, atol=1e-7)
    z = rng(4).standard_normal((2, 3, 4, 5))
    assert nn.Flatten()(t(z)).shape == (2, 60)
    assert nn.Flatten(1, 2)(t(z)).shape == (2, 12, 5)
    target = np.array([0, 4, 2, 1])
    lse = np.log(np.exp(x).sum(1))
    ce = np.mean(lse - x[np.arange(4), target])
    np.testing.assert_allclose(nn.CrossEntropyLoss()(xt, t(target)).item(), ce, rtol=1e-10)
    y = rng(5).standard_normal((4, 5))
    np.testing.assert_allclose(nn.MSELoss()(xt, t(y)).item(), np.mean((x - y) ** 2),
                               rtol=1e-12)


def test_dropout_train_and_eval():
    ds.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = t(np.ones((200, 50), np.float32))
    y = drop(x).numpy()
    kept = y != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    drop.eval()
    np.testing.assert_array_equal(drop(x).numpy(), x.numpy())
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


def test_embedding_gathers_rows():
    ds.manual_seed(0)
    emb = nn.Embedding(10, 4)
    w = emb.weight.numpy()
    assert w.shape == (10, 4) and abs(w.std() - 1) < 0.5
    idx = np.array([[1, 3], [9, 1]])
    np.testing.assert_array_equal(emb(t(idx)).numpy(), w[idx])


def test_layernorm_matches_numpy():
    ln = nn.LayerNorm(6).to(ds.float64)
    with ds.no_grad():
        ln.weight.copy_(np.arange(6.0))
        ln.bias.copy_(np.full(6, 0.5))
    x = rng(6).standard_normal((3, 6))
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(ln(t(x)).numpy(), ref * np.arange(6.0) + 0.5, rtol=1e-9)


def test_batchnorm2d_train_eval_and_running_stats():
    bn = nn.BatchNorm2d(3).to(ds.float64)
    assert list(dict(bn.state_dict())) == ["weight", "bias", "running_mean", "running_var",
                                           "num_batches_tracked"]
    rm, rv = np.zeros(3), np.ones(3)
    for seed in range(3):
        x = rng(seed).standard_normal((4, 3, 5, 2)) * 2 + 1
        y = bn(t(x)).numpy()
        mean = x.mean(axis=(0, 2, 3))
        var = x.var(axis=(0, 2, 3))
        ref = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
        np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-12)
        n = x.size / 3
        rm = 0.9 * rm + 0.1 * mean                    # PyTorch: momentum 0.1, unbiased var
        rv = 0.9 * rv + 0.1 * var * n / (n - 1)
        np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-10)
        np.testing.assert_allclose(bn.running_var.numpy(), rv, rtol=1e-10)
    assert int(bn.num_batches_tracked.item()) == 3
    bn.eval()
    x = rng(9).standard_normal((2, 3, 2, 2))
    ref = (x - rm[None, :, None, None]) / np.sqrt(rv[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(bn(t(x)).numpy(), ref, rtol=1e-9)
    np.testing.assert_allclose(bn.running_mean.numpy(), rm)   # eval does not update
    with pytest.raises(ValueError, match="BatchNorm2d"):
        bn(t(np.ones((2, 3))))


def test_batchnorm1d_cumulative_momentum_and_grad():
    bn = nn.BatchNorm1d(2, momentum=None).to(ds.float64)
    xs = [rng(s).standard_normal((5, 2)) for s in range(2)]
    for x in xs:
        bn(t(x))
    expect = np.mean([x.mean(0) for x in xs], axis=0)
    np.testing.assert_allclose(bn.running_mean.numpy(), expect, rtol=1e-10)
    x = t(xs[0], requires_grad=True)
    bn(x).sum().backward()   # sum of a normalised batch does not depend on x
    np.testing.assert_allclose(x.grad.numpy(), 0, atol=1e-10)
    np.testing.assert_allclose(bn.bias.grad.numpy(), [5.0, 5.0])


def test_clip_grad_norm():
    a = nn.Parameter(ds.tensor(np.zeros(3, np.float32)))
    b = nn.Parameter(ds.tensor(np.zeros(4, np.float32)))
    a.grad = ds.tensor(np.array([3.0, 0.0, 0.0], np.float32))
    b.grad = ds.tensor(np.array([0.0, 4.0, 0.0, 0.0], np.float32))
    total = nn.utils.clip_grad_norm_([a, b], max_norm=1.0)
    assert total.item() == pytest.approx(5.0)
    np.testing.assert_allclose(a.grad.numpy(), [3 / 5, 0, 0], rtol=1e-5)
    np.testing.assert_allclose(b.grad.numpy(), [0, 4 / 5, 0, 0], rtol=1e-5)
    total = nn.utils.clip_grad_norm_([a, b], max_norm=10.0)   # below the limit: unchanged
    assert total.item() == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(a.grad.numpy(), [3 / 5, 0, 0], rtol=1e-5)
    a.grad = ds.tensor(np.array([-3.0, 1.0, 0.0], np.float32))
    assert nn.utils.clip_grad_norm_([a], 10.0, norm_type=math.inf).item() == pytest.approx(3.0)
    assert nn.utils.clip_grad_norm_(a, 10.0, norm_type=1).item() == pytest.approx(4.0)


def test_init_functions():
    ds.manual_seed(0)
    w = nn.Parameter(ds.zeros(200, 100))
    init.kaiming_uniform_(w, nonlinearity="relu")
    bound = math.sqrt(2) * math.sqrt(3 / 100)
    assert np.abs(w.numpy()).max() <= bound and w.numpy().std() > 0.9 * bound / math.sqrt(3)
    init.xavier_uniform_(w)
    assert np.abs(w.numpy()).max() <= math.sqrt(6 / 300)
    init.normal_(w, 2.0, 0.5)
    assert abs(w.numpy().mean() - 2.0) < 0.05 and abs(w.numpy().std() - 0.5) < 0.05
    init.zeros_(w)
    assert not w.numpy().any()
    init.ones_(w)
    assert (w.numpy() == 1).all()
    assert w.requires_grad and w.grad is None
    with pytest.raises(ValueError, match="fan"):
        init.xavier_uniform_(nn.Parameter(ds.zeros(5)))
