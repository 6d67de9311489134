"""Normalisation, activation and embedding layers against PyTorch (forward, input and parameter
gradients, float32 and float64, cpu and the CUDA simulator), gradcheck of the new functions."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import gradcheck, gradgradcheck
from module_oracle import compare, devices

import dlsys as ds
import dlsys.nn.functional as F
from dlsys import nn

torch = pytest.importorskip("torch")
tnn = torch.nn

RNG = np.random.default_rng(0)
DTYPES = [np.float32, np.float64]


def randomize(tmod, seed=0):
    """Non-trivial affine weights (torch initialises them to ones and zeros)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tmod.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return tmod


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", [
    lambda lib: lib.GroupNorm(2, 4),
    lambda lib: lib.GroupNorm(4, 4, eps=1e-3),
    lambda lib: lib.GroupNorm(1, 4, affine=False),
])
def test_group_norm(make, dtype, device):
    x = RNG.standard_normal((2, 4, 3, 2))
    compare(torch, make(nn), randomize(make(tnn)), [x], dtype, device)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", [
    lambda lib: lib.RMSNorm(6),
    lambda lib: lib.RMSNorm((3, 6), eps=1e-4),
    lambda lib: lib.RMSNorm(6, elementwise_affine=False),
])
def test_rms_norm(make, dtype, device):
    x = RNG.standard_normal((2, 3, 6))
    compare(torch, make(nn), randomize(make(tnn)), [x], dtype, device)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [dict(), dict(bias=False), dict(elementwise_affine=False),
                                dict(eps=1e-2)])
def test_layer_norm_options(kw, dtype, device):
    x = RNG.standard_normal((2, 3, 5))
    compare(torch, nn.LayerNorm(5, **kw), randomize(tnn.LayerNorm(5, **kw)), [x], dtype, device)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", [lambda lib: lib.SiLU(), lambda lib: lib.GELU(),
                                  lambda lib: lib.GELU(approximate="tanh"),
                                  lambda lib: lib.Softmax(dim=1), lambda lib: lib.Identity(3, k=4)])
def test_activations(make, dtype, device):
    x = RNG.standard_normal((3, 4)) * 3
    compare(torch, make(nn), make(tnn), [x], dtype, device)


def test_activation_arguments():
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU(approximate="fast")
    assert repr(nn.GELU("tanh")) == "GELU(approximate='tanh')"


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_padding_idx(padding_idx, dtype, device):
    idx = np.array([[0, 2, 4, 2], [4, 1, 2, 3]])
    tm = tnn.Embedding(5, 3, padding_idx=padding_idx)
    dm = nn.Embedding(5, 3, padding_idx=padding_idx)
    if padding_idx is not None:  # the padding row starts as zeros, as torch's
        assert not np.any(dm.weight.numpy()[padding_idx])
        assert dm.padding_idx == tm.padding_idx
    with torch.no_grad():
        tm.weight.copy_(torch.randn(5, 3))  # a non-zero padding row is still returned
    compare(torch, dm, tm, [idx], dtype, device)


def test_embedding_padding_idx_range_and_plain_indices():
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(3, 2, padding_idx=3)
    e = nn.Embedding(4, 2, padding_idx=0)
    e([[0, 1], [0, 3]]).sum().backward()  # indices as a list
    np.testing.assert_array_equal(e.weight.grad.numpy(), [[0, 0], [1, 1], [0, 0], [1, 1]])
    with ds.no_grad():
        assert e([0, 1]).grad_fn is None


@pytest.mark.parametrize("device", devices())
def test_gradcheck_group_and_rms_norm(device):
    x = RNG.standard_normal((2, 4, 3))
    w, b = RNG.standard_normal(4), RNG.standard_normal(4)
    assert gradcheck(lambda x, w, b: F.group_norm(x, 2, w, b), x, w, b, device=device) < 1e-6
    assert gradcheck(lambda x, w: F.rms_norm(x, 3, w[:3], eps=1e-6), x, w,
                     device=device) < 1e-6
    assert gradgradcheck(lambda x: F.group_norm(x, 2, eps=1e-3), x, device=device) < 1e-5


def test_functional_norms_as_torch():
    x = RNG.standard_normal((2, 4, 3)).astype(np.float32)
    tx = torch.tensor(x)
    np.testing.assert_allclose(F.group_norm(ds.tensor(x), 2).numpy(),
                               torch.nn.functional.group_norm(tx, 2).numpy(), atol=2e-6)
    np.testing.assert_allclose(F.rms_norm(ds.tensor(x), [4, 3]).numpy(),
                               torch.nn.functional.rms_norm(tx, [4, 3]).numpy(), atol=2e-6)
    with pytest.raises(ValueError, match="divisible"):
        F.group_norm(ds.tensor(x), 3)
    with pytest.raises(ValueError, match="divisible"):
        nn.GroupNorm(3, 4)
    with pytest.raises(ValueError, match="normalized_shape"):
        F.rms_norm(ds.tensor(x), 4)
    with pytest.raises(ValueError, match=r"\(N, 6, \*\)"):
        nn.GroupNorm(2, 6)(ds.tensor(x))
    with pytest.raises(TypeError, match="floating"):
        F.group_norm(ds.tensor([[1, 2]]), 1)


def test_embedding_from_pretrained_and_pickled_modules():
    import pickle

    w = RNG.standard_normal((4, 3)).astype(np.float32)
    e = nn.Embedding.from_pretrained(ds.tensor(w))
    t = tnn.Embedding.from_pretrained(torch.tensor(w))
    assert e.weight.requires_grad == t.weight.requires_grad is False
    np.testing.assert_array_equal(e(ds.tensor([[1, 3]])).numpy(), t(torch.tensor([[1, 3]])).numpy())
    assert nn.Embedding.from_pretrained(w, freeze=False).weight.requires_grad
    m = pickle.loads(pickle.dumps(nn.Sequential(nn.Linear(2, 2), nn.SiLU())))
    seen = []
    m.register_forward_hook(lambda mod, a, o: seen.append(o.shape))
    m(ds.ones(1, 2))
    assert seen == [(1, 2)]
