"""2-D convolution (NCHW, cross-correlation as PyTorch) with stride, padding (int, pair,
"same", "valid"), dilation and groups; its two gradients are ops too, so gradients of
gradients work (each gradient op's own gradient is a convolution or the other one).
"""

from __future__ import annotations

from ..autograd import apply
from ..backend.device import conv_out_size
from ..tensor import Tensor
from . import Op, check_same
from . import reduce as _rd
from . import shape as _sh
from .matmul import check_bias

__all__ = ["conv2d"]


class _Geometry(Op):
    __slots__ = ("stride", "pads", "dilation", "groups")

    def __init__(self, stride, pads, dilation, groups):
        self.stride, self.pads, self.dilation, self.groups = stride, pads, dilation, groups

    def _geom(self):
        return self.stride, self.pads, self.dilation, self.groups


class Conv2d(_Geometry):
    """conv2d(x, w) (+ b): one device call, the bias added into its fresh output."""

    __slots__ = ()

    def compute(self, x, w, b=None):
        d = self.device
        out = d.conv2d(x, w, *self._geom())
        if b is not None:
            out = d.binary_("add", out, d.broadcast_to(d.reshape(b, (1, -1, 1, 1)), out.shape))
        return out

    def gradient(self, g, node):
        x, w = node._inputs[0], node._inputs[1]
        geom = self._geom()
        dx = apply(Conv2dInputGrad(x.shape, *geom), g, w) if x._requires_grad else None
        dw = apply(Conv2dWeightGrad(w.shape, *geom), x, g) if w._requires_grad else None
        if len(node._inputs) == 2:
            return dx, dw
        b = node._inputs[2]
        return dx, dw, (_rd.sum(g, (0, 2, 3)) if b._requires_grad else None)


class Conv2dInputGrad(_Geometry):
    """dx = A_w^T g, for A_w the linear map x -> conv2d(x, w). Inputs (g, w)."""

    __slots__ = ("x_shape",)

    def __init__(self, x_shape, *geom):
        super().__init__(*geom)
        self.x_shape = x_shape

    def compute(self, g, w):
        return self.device.conv2d_backward_input(g, w, self.x_shape, *self._geom())

    def gradient(self, u, node):
        # <u, A_w^T g> = <conv2d(u, w), g>: linear in g, and in w through conv2d's weight
        g, w = node._inputs
        geom = self._geom()
        dg = apply(Conv2d(*geom), u, w) if g._requires_grad else None
        dw = apply(Conv2dWeightGrad(w.shape, *geom), u, g) if w._requires_grad else None
        return dg, dw


class Conv2dWeightGrad(_Geometry):
    """dw = B_x^T g, for B_x the linear map w -> conv2d(x, w). Inputs (x, g)."""

    __slots__ = ("w_shape",)

    def __init__(self, w_shape, *geom):
        super().__init__(*geom)
        self.w_shape = w_shape

    def compute(self, x, g):
        return self.device.conv2d_backward_weight(x, g, self.w_shape, *self._geom())

    def gradient(self, u, node):
        # <u, B_x^T g> = <conv2d(x, u), g>: linear in g, and in x through conv2d's input
        x, g = node._inputs
        geom = self._geom()
        dx = apply(Conv2dInputGrad(x.shape, *geom), g, u) if x._requires_grad else None
        dg = apply(Conv2d(*geom), x, u) if g._requires_grad else None
        return dx, dg


def _ints(v, name, n=2):
    """A pair of ints from an int or a sequence of n ints, each checked to be an int."""
    t = tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
    if len(t) == 1:
        t = t * n
    if len(t) != n or not all(isinstance(i, int) and not isinstance(i, bool) for i in t):
        raise TypeError(f"conv2d: {name} must be an int or a tuple of {n} ints, got {v!r}")
    return t


def _padding(padding, w_shape, stride, dilation):
    """(top, bottom, left, right) from an int, a pair, "valid" or "same"."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding != "same":
            raise ValueError(f"conv2d: invalid padding string {padding!r}, expected 'same' or "
                             f"'valid'")
        if stride != (1, 1):
            raise ValueError("conv2d: padding='same' is not supported for strided convolutions")
        pads = []
        for k, d in zip(w_shape[2:], dilation, strict=True):
            total = d * (k - 1)  # NOTE: PyTorch puts the odd one on the bottom / right
            pads += [total // 2, total - total // 2]
        return tuple(pads)
    ph, pw = _ints(padding, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"conv2d: padding must be non-negative, got {padding!r}")
    return ph, ph, pw, pw


def conv2d(x: Tensor, w: Tensor, b: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups=1, *, bias: Tensor | None = None) -> Tensor:
    """torch.nn.functional.conv2d: x (N, C, H, W) or unbatched (C, H, W), weight
    (O, C/groups, kh, kw), bias (O,) (``b``, or PyTorch's keyword ``bias=``)."""
    if bias is not None:
        if b is not None:
            raise TypeError("conv2d: got the bias twice (b and bias=)")
        b = bias
    if not isinstance(x, Tensor) or not isinstance(w, Tensor):
        raise TypeError("conv2d: input and weight must be Tensors")
    check_same(x, w, "conv2d")
    if x._data.dtype.kind != "f":
        raise TypeError(f"conv2d: needs floating tensors, got dtype {x.dtype}")
    if w.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-D (out, in/groups, kh, kw), got shape "
                         f"{w.shape}")
    if x.ndim == 3:
        return _sh.squeeze(conv2d(_sh.unsqueeze(x, 0), w, b, stride, padding, dilation,
                                  groups), 0)
    if x.ndim != 4:
        raise ValueError(f"conv2d: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got "
                         f"shape {x.shape}")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    o, cg, kh, kw = w.shape
    if o % groups:
        raise ValueError(f"conv2d: out_channels {o} (weight {w.shape}) is not divisible by "
                         f"groups={groups}")
    if x.shape[1] != cg * groups:
        raise ValueError(f"conv2d: input of shape {x.shape} has {x.shape[1]} channels, but "
                         f"weight of shape {w.shape} with groups={groups} expects "
                         f"{cg * groups}")
    check_bias(x, w, b, "conv2d")
    stride, dilation = _ints(stride, "stride"), _ints(dilation, "dilation")
    if min(stride) <= 0 or min(dilation) <= 0:
        raise ValueError(f"conv2d: stride {stride} and dilation {dilation} must be positive")
    pads = _padding(padding, w.shape, stride, dilation)
    h, wd = x.shape[2:]
    oh = conv_out_size(h, kh, stride[0], pads[0], pads[1], dilation[0])
    ow = conv_out_size(wd, kw, stride[1], pads[2], pads[3], dilation[1])
    if oh <= 0 or ow <= 0:
        raise ValueError(f"conv2d: input of shape {x.shape} padded by {pads} (top, bottom, "
                         f"left, right) is too small for weight of shape {w.shape} (dilated "
                         f"kernel {dilation[0] * (kh - 1) + 1} x {dilation[1] * (kw - 1) + 1})")
    op = Conv2d(stride, pads, dilation, groups)
    return apply(op, x, w) if b is None else apply(op, x, w, b)
