"""ds.utils.checkpoint / checkpoint_sequential: gradients bitwise those without checkpointing
(dropout included), what is kept, autograd.grad, hooks, double backward, nesting, errors; and
ds.cpu().memory_stats()."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import dlsys as ds
from dlsys import nn
from dlsys.utils.checkpoint import CheckpointError, checkpoint, checkpoint_sequential


class Block(nn.Module):
    """A pre-LN residual MLP block with dropout (several consumers per tensor, random masks)."""

    def __init__(self, d, p=0.2):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        return x + self.drop(self.fc2(nn.functional.gelu(self.fc1(self.ln(x)))))


def make(n=6, d=8, seed=0, dtype=np.float32, device="cpu"):
    ds.manual_seed(seed)
    return nn.Sequential(*[Block(d) for _ in range(n)]).to(dtype).to(device)


def grads(model, x):
    return [p.grad.numpy().copy() for p in model.parameters()] + [x.grad.numpy().copy()]


def run(model, x, forward, seed=5):
    model.zero_grad()
    x.grad = None
    ds.manual_seed(seed)
    y = forward(model, x)
    (y * y).sum().backward()
    after = ds.rand(3).numpy()  # the generator after backward: recomputation must not move it
    return y.detach().numpy().copy(), grads(model, x), after


def plain(m, x):
    return m(x)


def per_block(m, x):
    for b in m:
        x = checkpoint(b, x)
    return x


@pytest.mark.parametrize("forward", [per_block, lambda m, x: checkpoint_sequential(m, 3, x),
                                     lambda m, x: checkpoint_sequential(m, 2, x,
                                                                        use_reentrant=True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_bitwise_equal_to_no_checkpointing(forward, dtype):
    m = make(dtype=dtype)
    x = ds.tensor(np.random.default_rng(1).standard_normal((4, 8)), dtype=dtype,
                  requires_grad=True)
    y0, g0, r0 = run(m, x, plain)
    y1, g1, r1 = run(m, x, forward)
    np.testing.assert_array_equal(y1, y0)
    for a, b in zip(g0, g1, strict=True):
        np.testing.assert_array_equal(b, a)
    np.testing.assert_array_equal(r1, r0)


def test_without_preserve_rng_state_dropout_differs():
    m = make()
    x = ds.randn(4, 8, requires_grad=True)
    _, g0, _ = run(m, x, plain)
    _, g1, _ = run(m, x, lambda m, x: checkpoint(m, x, preserve_rng_state=False))
    assert not all(np.array_equal(a, b) for a, b in zip(g0, g1, strict=True))


def test_inside_tensors_are_not_kept():
    lin = nn.Linear(8, 8)
    inside = []

    def fn(x):
        h = lin(x).tanh()
        inside.append(weakref.ref(h))
        return (h * h).sum(1)

    x = ds.randn(4, 8, requires_grad=True)
    y = checkpoint(fn, x)
    gc.collect()
    assert inside[0]() is None  # the forward's intermediate is gone
    assert type(y.grad_fn).__name__ == "CheckpointBackward"
    assert {id(t) for t in y._inputs} == {id(x), id(lin.weight), id(lin.bias)}
    y.sum().backward()
    assert x.grad is not None and lin.weight.grad is not None


def test_autograd_grad_and_hooks_fire_once():
    m = make(n=4)
    x = ds.randn(3, 8, requires_grad=True)
    ds.manual_seed(2)
    want = ds.autograd.grad((m(x) ** 2).sum(), [x, m[0].fc1.weight])
    ds.manual_seed(2)
    got = ds.autograd.grad((per_block(m, x) ** 2).sum(), [x, m[0].fc1.weight])
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(b.numpy(), a.numpy())
    assert x.grad is None and all(p.grad is None for p in m.parameters())
    calls = []
    for p in m.parameters():
        p.register_post_accumulate_grad_hook(lambda p: calls.append(id(p)))
    (per_block(m, x) ** 2).sum().backward()
    assert sorted(calls) == sorted(id(p) for p in m.parameters())  # once each


def test_no_input_requires_grad():
    m = make(n=2)
    x = ds.randn(3, 8)  # parameters still get gradients (the non-reentrant rule, as PyTorch)
    checkpoint(m, x).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    with pytest.warns(UserWarning, match="None of the inputs have requires_grad=True"):
        y = checkpoint(m, x, use_reentrant=True)
    assert not y.requires_grad
    with pytest.raises(ValueError, match="Unexpected keyword arguments"):
        checkpoint(lambda x, s: x * s, x, use_reentrant=True, s=2.0)


def test_kwargs_nested_outputs_passthrough_and_closures():
    w = ds.randn(4, 4, requires_grad=True)
    x = ds.randn(3, 4, requires_grad=True)
    outer = {}

    def fn(x, scale=1.0):
        h = (x @ outer["w2"]).tanh() * scale
        return {"h": h, "pair": (h.sum(), x), "n": 3}

    def loss(out):
        return (out["h"] ** 2).sum() + out["pair"][0] * 3 + (out["pair"][1] * 5).sum()

    outer["w2"] = w * 2.0  # a non-leaf closed over: an input of the checkpoint node
    loss(fn(x, scale=0.5)).backward()
    gx, gw = x.grad.numpy().copy(), w.grad.numpy().copy()
    x.grad = w.grad = None
    outer["w2"] = w * 2.0
    out = checkpoint(fn, x, scale=0.5)
    assert out["n"] == 3 and out["pair"][1] is x
    loss(out).backward()
    np.testing.assert_allclose(x.grad.numpy(), gx, rtol=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), gw, rtol=1e-6)


def test_double_backward_and_nesting():
    lin = nn.Linear(5, 5).double()
    x = ds.tensor(np.random.default_rng(3).standard_normal((2, 5)), dtype=ds.float64,
                  requires_grad=True)

    def f(x):
        return lin(x).tanh() * x

    def nested(x):
        return checkpoint(f, checkpoint(f, x))

    want = []
    for fwd in (lambda x: f(f(x)), nested):
        x.grad = None
        lin.zero_grad()
        (g,) = ds.autograd.grad(fwd(x).sum(), x, create_graph=True)
        (g * g).sum().backward()
        want.append((g.numpy().copy(), x.grad.numpy().copy(), lin.weight.grad.numpy().copy()))
    for a, b in zip(*want, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


def test_recomputation_that_differs_raises():
    state = {"n": 4}

    def fn(x):
        return x[: state["n"]] * 2

    y = checkpoint(fn, ds.randn(6, 2, requires_grad=True))
    state["n"] = 3
    with pytest.raises(CheckpointError, match="recomputed output"):
        y.sum().backward()
    lin1, lin2 = nn.Linear(2, 2), nn.Linear(2, 2)
    layers = [lin1]
    y = checkpoint(lambda x: layers[0](x), ds.randn(3, 2))
    layers[0] = lin2
    with pytest.raises(CheckpointError, match="did not use"):
        y.sum().backward()


def test_under_no_grad_it_just_runs():
    m = make(n=2)
    with ds.no_grad():
        y = checkpoint(m, ds.randn(2, 8, requires_grad=True))
    assert y.grad_fn is None and not y.requires_grad


def test_checkpoint_sequential_arguments():
    m = make(n=5)
    x = ds.randn(2, 8, requires_grad=True)
    ds.manual_seed(0)
    want = m(x).numpy().copy()
    for segs in (1, 2, 5):
        ds.manual_seed(0)
        np.testing.assert_array_equal(checkpoint_sequential(list(m), segs, x).numpy(), want)
    with pytest.raises(ValueError, match="segments"):
        checkpoint_sequential(m, 0, x)


@pytest.mark.skipif(not ds.cuda_is_available(), reason="no CUDA device or simulator")
def test_on_cuda():
    m = make(n=2, d=4, device="cuda")
    x = ds.randn(2, 4, device="cuda", requires_grad=True)
    y0, g0, _ = run(m, x, plain)
    y1, g1, _ = run(m, x, per_block)
    np.testing.assert_array_equal(y1, y0)
    for a, b in zip(g0, g1, strict=True):
        np.testing.assert_array_equal(b, a)


# -- memory ---------------------------------------------------------------------------------------
def test_memory_stats_count_live_arrays_and_the_peak():
    dev = ds.cpu()
    dev.reset_peak_memory_stats()
    base = dev.memory_allocated()
    x = ds.zeros(1000, 250)  # 1 MB
    assert 1_000_000 <= dev.memory_allocated() - base < 1_010_000
    del x
    assert dev.memory_allocated() - base < 10_000
    s = dev.memory_stats()
    assert s["allocated_bytes.all.peak"] - base >= 1_000_000
    dev.reset_peak_memory_stats()
    assert dev.max_memory_allocated() - base < 10_000


def test_checkpointing_lowers_the_peak():
    """16 blocks, 4 segments: the peak of forward + backward falls well below the plain one."""
    m = make(n=16, d=32)
    x = ds.randn(512, 32, requires_grad=True)  # activations well above the parameters' grads
    peaks = []
    for fwd in (plain, lambda m, x: checkpoint_sequential(m, 4, x)):
        m.zero_grad()
        gc.collect()
        dev = ds.cpu()
        dev.reset_peak_memory_stats()
        base = dev.memory_allocated()
        (fwd(m, x) ** 2).sum().backward()
        peaks.append(dev.max_memory_allocated() - base)
    assert peaks[1] < 0.5 * peaks[0], peaks  # measured 0.14x


class AttnBlock(nn.Module):
    """A pre-LN transformer block with dropout inside the attention and after the MLP."""

    def __init__(self, d=8, heads=2, t=5):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=0.2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d),
                                 nn.Dropout(0.2))
        self.mask = ds.tensor(np.triu(np.ones((t, t), bool), 1))

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=self.mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


def test_transformer_blocks_bitwise():
    ds.manual_seed(0)
    m = nn.Sequential(*[AttnBlock() for _ in range(4)])
    x = ds.randn(3, 5, 8, requires_grad=True)
    y0, g0, r0 = run(m, x, plain)
    y1, g1, r1 = run(m, x, lambda m, x: checkpoint_sequential(m, 2, x))
    np.testing.assert_array_equal(y1, y0)
    for a, b in zip(g0, g1, strict=True):
        np.testing.assert_array_equal(b, a)
    np.testing.assert_array_equal(r1, r0)
