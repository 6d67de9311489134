"""Recurrent layers: RNN, LSTM, GRU (PyTorch's semantics, parameter names and gate order).

The recurrence is written in Tensor ops, so autograd differentiates it (to any order) and it runs
on every device. Per layer and direction: one GEMM projects every time step's input at once, then
each step adds the hidden projection and applies the cell; the step inputs are views made by one
graph node (``_views``), the outputs are stacked once.
"""

from __future__ import annotations

import math
import warnings

from dlsys.creation import zeros
from dlsys.ops.shape import concatenate, stack

from . import functional as F
from . import init
from ._factory import empty_parameter
from ._views import split_views, unbind_views
from .module import Module

__all__ = ["RNNBase", "RNN", "LSTM", "GRU"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _lstm_cell(xt, gh, h, c):
    i, f, g, o = split_views(xt + gh, 4, 1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c.tanh(), c


def _gru_cell(xt, gh, h, c):
    xr, xz, xn = split_views(xt, 3, 1)
    hr, hz, hn = split_views(gh, 3, 1)
    r = (xr + hr).sigmoid()
    z = (xz + hz).sigmoid()
    n = (xn + r * hn).tanh()
    return (h - n) * z + n, None  # NOTE: (1 - z) * n + z * h, in ATen's order


def _tanh_cell(xt, gh, h, c):
    return (xt + gh).tanh(), None


def _relu_cell(xt, gh, h, c):
    return (xt + gh).relu(), None


_CELLS = {"RNN_TANH": _tanh_cell, "RNN_RELU": _relu_cell, "LSTM": _lstm_cell, "GRU": _gru_cell}


class RNNBase(Module):
    """Shared by RNN, LSTM and GRU. Parameters per layer k and direction (suffix "_reverse"):
    weight_ih_l{k} (G*H, in), weight_hh_l{k} (G*H, H), bias_ih_l{k}, bias_hh_l{k} (G*H,), all
    U(-1/sqrt(H), 1/sqrt(H)) as in PyTorch (G = 4 for LSTM, 3 for GRU, 1 for RNN)."""

    def __init__(self, mode, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None):
        super().__init__()
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"dropout should be a number in range [0, 1] representing the "
                             f"probability of an element being zeroed, got {dropout}")
        if int(hidden_size) <= 0 or int(num_layers) <= 0:
            raise ValueError(f"hidden_size and num_layers must be positive, got "
                             f"{hidden_size} and {num_layers}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"dropout option adds dropout after all but last recurrent layer, so "
                          f"non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", UserWarning,
                          stacklevel=3)
        self.mode = mode
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.num_layers, self.bias = int(num_layers), bool(bias)
        self.batch_first, self.dropout = bool(batch_first), float(dropout)
        self.bidirectional = bool(bidirectional)
        gh = _GATES[mode] * self.hidden_size
        dirs = 2 if bidirectional else 1
        self._flat_weights_names = []
        for layer in range(self.num_layers):
            for d in range(dirs):
                in_size = self.input_size if layer == 0 else self.hidden_size * dirs
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                shapes = [("weight_ih", (gh, in_size)), ("weight_hh", (gh, self.hidden_size))]
                if bias:
                    shapes += [("bias_ih", (gh,)), ("bias_hh", (gh,))]
                for name, shape in shapes:
                    setattr(self, name + sfx, empty_parameter(shape, device, dtype))
                    self._flat_weights_names.append(name + sfx)
        self.reset_parameters()

    def reset_parameters(self):
        std = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -std, std)

    def flatten_parameters(self):
        """A no-op (PyTorch's compacts cuDNN weights; there is nothing to compact here)."""

    @property
    def all_weights(self):
        per = 4 if self.bias else 2
        names = self._flat_weights_names
        return [[getattr(self, n) for n in names[i:i + per]] for i in range(0, len(names), per)]

    def _layer_params(self, layer, d):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        b_ih = getattr(self, "bias_ih" + sfx) if self.bias else None
        b_hh = getattr(self, "bias_hh" + sfx) if self.bias else None
        return getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx), b_ih, b_hh

    def _check_hidden(self, h, name, batch, batched):
        dirs = 2 if self.bidirectional else 1
        want = (self.num_layers * dirs, batch, self.hidden_size) if batched else \
            (self.num_layers * dirs, self.hidden_size)
        if tuple(h.shape) != want:
            raise ValueError(f"{type(self).__name__}: expected {name} of shape {want}, got "
                             f"{tuple(h.shape)}")
        return h if batched else h.unsqueeze(1)

    def _run(self, x, hx):
        """x: (L, B, in); hx: (h0, c0) with c0 None except for LSTM, each (layers*dirs, B, H) or
        None. Returns output (L, B, dirs*H) and the final (h_n, c_n)."""
        cell = _CELLS[self.mode]
        dirs = 2 if self.bidirectional else 1
        length, batch = x.shape[0], x.shape[1]
        h0, c0 = hx
        hs, cs = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                w_ih, w_hh, b_ih, b_hh = self._layer_params(layer, d)
                k = layer * dirs + d
                if h0 is None:
                    h = zeros(batch, self.hidden_size, dtype=x.dtype, device=x.device)
                else:
                    h = h0[k]
                c = None
                if self.mode == "LSTM":
                    c = zeros(batch, self.hidden_size, dtype=x.dtype, device=x.device) \
                        if c0 is None else c0[k]
                steps = unbind_views(F.linear(x, w_ih, b_ih), 0) if length else ()
                seq = [None] * length
                for t in (range(length - 1, -1, -1) if d else range(length)):
                    h, c = cell(steps[t], F.linear(h, w_hh, b_hh), h, c)
                    seq[t] = h
                outs.append(stack(seq, 0))
                hs.append(h)
                cs.append(c)
            x = outs[0] if dirs == 1 else concatenate(outs, 2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        return x, stack(hs, 0), (stack(cs, 0) if self.mode == "LSTM" else None)

    def _forward(self, input, hx):  # noqa: A002 - PyTorch's name
        if input.ndim not in (2, 3):
            raise ValueError(f"{type(self).__name__}: expected input of 2 (unbatched) or 3 "
                             f"dims, got shape {tuple(input.shape)}")
        batched = input.ndim == 3
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input.size(-1) must be equal to "
                             f"input_size. Expected {self.input_size}, got {input.shape[-1]}")
        if not batched:
            x = input.unsqueeze(1)
        else:
            x = input.swapaxes(0, 1) if self.batch_first else input
        batch = x.shape[1]
        h0, c0 = hx
        if h0 is not None:
            h0 = self._check_hidden(h0, "hidden state h_0", batch, batched)
        if c0 is not None:
            c0 = self._check_hidden(c0, "cell state c_0", batch, batched)
        out, h_n, c_n = self._run(x, (h0, c0))
        if not batched:
            out, h_n = out.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        elif self.batch_first:
            out = out.swapaxes(0, 1)
        return out, h_n, c_n

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu).
    ``forward(input, h_0=None) -> (output, h_n)``."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             f"'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype)

    def forward(self, input, hx=None):  # noqa: A002
        out, h_n, _ = self._forward(input, (hx, None))
        return out, h_n


class LSTM(RNNBase):
    """LSTM with PyTorch's gates (i, f, g, o in that order in the weights).
    ``forward(input, (h_0, c_0)=None) -> (output, (h_n, c_n))``; input (L, N, in), or (N, L, in)
    with ``batch_first``, or (L, in) unbatched; output (L, N, D*H); h_n, c_n (layers*D, N, H)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        if proj_size:
            raise NotImplementedError("LSTM(proj_size > 0) is not supported")
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device, dtype)

    def forward(self, input, hx=None):  # noqa: A002
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError("LSTM: hx must be a tuple (h_0, c_0)")
        out, h_n, c_n = self._forward(input, (None, None) if hx is None else tuple(hx))
        return out, (h_n, c_n)


class GRU(RNNBase):
    """GRU with PyTorch's gates (r, z, n): n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),
    h' = (1 - z) * n + z * h. ``forward(input, h_0=None) -> (output, h_n)``."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype)

    def forward(self, input, hx=None):  # noqa: A002
        out, h_n, _ = self._forward(input, (hx, None))
        return out, h_n
