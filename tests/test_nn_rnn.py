"""RNN, LSTM and GRU against PyTorch over 12+ steps: outputs, final states, gradients of the
input, the initial states and every weight; multi-layer, bidirectional, batch_first, unbatched,
float32 and float64, cpu and the CUDA simulator."""

from __future__ import annotations

import numpy as np
import pytest
from module_oracle import compare, devices

import dlsys as ds
from dlsys import nn

torch = pytest.importorskip("torch")
tnn = torch.nn

RNG = np.random.default_rng(0)
KINDS = ["LSTM", "GRU", "RNN"]


def make(lib, kind, *args, **kw):
    return getattr(lib, kind)(*args, **kw)


def states(kind, shape):
    h = RNG.standard_normal(shape)
    return (h, RNG.standard_normal(shape)) if kind == "LSTM" else h


def call_with(kind, h0):
    """module(x, hx) with hx built from the converted inputs (a tuple for LSTM)."""
    if kind == "LSTM":
        return lambda m, x, h, c: m(x, (h, c))
    return lambda m, x, h: m(x, h)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2), dict(num_layers=2, batch_first=True),
                                dict(bidirectional=True, num_layers=2), dict(bias=False)])
def test_against_torch(kind, kw, dtype):
    torch.manual_seed(0)
    tm = make(tnn, kind, 3, 5, **kw)
    dm = make(nn, kind, 3, 5, **kw)
    length, batch = 13, 2
    x = RNG.standard_normal((batch, length, 3) if kw.get("batch_first") else (length, batch, 3))
    dirs = 2 if kw.get("bidirectional") else 1
    hx = states(kind, (kw.get("num_layers", 1) * dirs, batch, 5))
    tol = (1e-4, 1e-5) if dtype == np.float32 else None
    inputs = [x] + (list(hx) if kind == "LSTM" else [hx])
    compare(torch, dm, tm, inputs, dtype, tol=tol, call=call_with(kind, hx))
    compare(torch, make(nn, kind, 3, 5, **kw), tm, [x], dtype, tol=tol)  # zero initial states


@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_and_state_dict_names(kind):
    tm = make(tnn, kind, 3, 4, num_layers=2, bidirectional=True)
    dm = make(nn, kind, 3, 4, num_layers=2, bidirectional=True)
    assert list(dm.state_dict()) == list(tm.state_dict())
    assert [p.shape for p in dm.parameters()] == [tuple(p.shape) for p in tm.parameters()]
    x = RNG.standard_normal((12, 3))
    compare(torch, dm, tm, [x], np.float64)


@pytest.mark.parametrize("device", devices()[1:])
@pytest.mark.parametrize("kind", KINDS)
def test_on_cuda(kind, device):
    tm = make(tnn, kind, 2, 3, num_layers=2)
    x = RNG.standard_normal((5, 1, 2))  # NOTE: short: the CUDA simulator pays ~0.1 s per step
    compare(torch, make(nn, kind, 2, 3, num_layers=2), tm, [x], np.float32, device,
            tol=(1e-4, 1e-5))


def test_dropout_between_layers_and_relu():
    ds.manual_seed(0)
    m = nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    x = ds.randn(12, 2, 3)
    ds.manual_seed(1)
    a = m(x)[0].numpy()
    ds.manual_seed(1)
    np.testing.assert_array_equal(m(x)[0].numpy(), a)  # seeded masks
    ds.manual_seed(2)
    assert not np.array_equal(m(x)[0].numpy(), a)
    m.eval()
    m.dropout = 0.0
    plain = m(x)[0].numpy()
    m.dropout = 0.5
    np.testing.assert_array_equal(m(x)[0].numpy(), plain)  # no dropout in eval mode
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.GRU(2, 2, dropout=0.2)
    tm = tnn.RNN(3, 4, nonlinearity="relu")
    compare(torch, nn.RNN(3, 4, nonlinearity="relu"), tm, [RNG.standard_normal((12, 2, 3))])


def test_second_derivatives_and_gradcheck():
    from gradcheck import gradcheck

    ds.manual_seed(0)
    m = nn.GRU(2, 3).double()

    def f(x):
        return m(x)[0]

    assert gradcheck(f, RNG.standard_normal((4, 1, 2))) < 1e-6
    x = ds.tensor(RNG.standard_normal((4, 1, 2)), dtype=ds.float64, requires_grad=True)
    (g,) = ds.autograd.grad((m(x)[0] ** 2).sum(), x, create_graph=True)
    (g * g).sum().backward()  # through the recurrence twice
    assert m.weight_hh_l0.grad is not None


def test_bad_inputs():
    m = nn.LSTM(3, 4)
    with pytest.raises(ValueError, match="input_size. Expected 3, got 2"):
        m(ds.randn(5, 2, 2))
    with pytest.raises(ValueError, match=r"h_0 of shape \(1, 2, 4\)"):
        m(ds.randn(5, 2, 3), (ds.zeros(1, 3, 4), ds.zeros(1, 2, 4)))
    with pytest.raises(TypeError, match="tuple"):
        m(ds.randn(5, 2, 3), ds.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="2 \\(unbatched\\) or 3"):
        m(ds.randn(3))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(2, 2, nonlinearity="gelu")
