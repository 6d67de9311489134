"""matmul (2-D, batched with broadcast batch dims, 1-D operands as in numpy) and the fused
linear layer x @ w.T + b."""

from __future__ import annotations

import math

import numpy as np

from ..autograd import apply
from ..tensor import Tensor
from . import Op, check_same
from . import shape as _sh

__all__ = ["matmul", "rmatmul", "mm", "bmm", "dot", "outer", "linear"]


def _mT(x: Tensor) -> Tensor:  # noqa: N802
    n = x.ndim
    return apply(_sh.Permute(tuple(range(n - 2)) + (n - 1, n - 2)), x)


class MatMul(Op):
    __slots__ = ()

    def compute(self, a, b):
        return self.device.matmul(a, b)

    def gradient(self, g, node):
        a, b = node._inputs
        return (apply(MatMul(), g, _mT(b)) if a._requires_grad else None,
                apply(MatMul(), _mT(a), g) if b._requires_grad else None)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """torch.matmul: 1-D operands are a row (left) or a column (right) that the result drops
    (1-D @ 1-D is the dot product, a 0-d tensor); batch dims broadcast; zero sizes give empty
    results or zeros (a zero inner size)."""
    if not isinstance(b, Tensor):
        raise TypeError(f"matmul: expected a Tensor operand, got {type(b).__name__}")
    check_same(a, b, "matmul")
    sa, sb = a.shape, b.shape
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes {sa} "
                         f"and {sb}")
    if sa[-1] != sb[0 if b.ndim == 1 else -2]:
        raise ValueError(f"matmul: shapes {sa} and {sb} are not aligned (inner dimensions "
                         f"{sa[-1]} and {sb[0 if b.ndim == 1 else -2]} differ)")
    if a.ndim == 1 or b.ndim == 1:
        a2 = _sh.reshape(a, 1, sa[0]) if a.ndim == 1 else a
        b2 = _sh.reshape(b, sb[0], 1) if b.ndim == 1 else b
        out = matmul(a2, b2)
        shape = out.shape[:-2] + (() if a.ndim == 1 else out.shape[-2:-1]) \
            + (() if b.ndim == 1 else out.shape[-1:])
        return _sh.reshape(out, shape)
    if b.ndim == 2 and a.ndim > 2:
        # NOTE: fold the batch into rows: one big GEMM instead of a batch of small ones.
        out = apply(MatMul(), _sh.reshape(a, math.prod(sa[:-1]), sa[-1]), b)
        return _sh.reshape(out, sa[:-1] + (sb[-1],))
    if a.ndim > 2 or b.ndim > 2:
        try:
            batch = np.broadcast_shapes(sa[:-2], sb[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dimensions of shapes {sa} and {sb} cannot be "
                             f"broadcast together") from None
        a = _sh.broadcast_to(a, batch + sa[-2:])
        b = _sh.broadcast_to(b, batch + sb[-2:])
    return apply(MatMul(), a, b)


def _ndims(what, want, *xs):
    for x in xs:
        if not isinstance(x, Tensor) or x.ndim != want:
            raise ValueError(f"{what}: expects {want}-D tensors, got shapes "
                             f"{[getattr(t, 'shape', type(t).__name__) for t in xs]}")


def mm(a: Tensor, b: Tensor) -> Tensor:
    """(n, k) @ (k, m), both 2-D (torch.mm)."""
    _ndims("mm", 2, a, b)
    return matmul(a, b)


def bmm(a: Tensor, b: Tensor) -> Tensor:
    """(B, n, k) @ (B, k, m), both 3-D with the same batch (torch.bmm: no broadcasting)."""
    _ndims("bmm", 3, a, b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"bmm: batch sizes differ, shapes {a.shape} and {b.shape}")
    return matmul(a, b)


def dot(a: Tensor, b: Tensor) -> Tensor:
    """The dot product of two 1-D tensors of the same size (a 0-d tensor)."""
    _ndims("dot", 1, a, b)
    return matmul(a, b)


def outer(a: Tensor, b: Tensor) -> Tensor:
    """a[i] * b[j] for 1-D a and b."""
    _ndims("outer", 1, a, b)
    return _sh.reshape(a, -1, 1) * _sh.reshape(b, 1, -1)


def rmatmul(a: Tensor, o) -> Tensor:
    """o @ a for an operand o that is not a Tensor (a numpy array of a's dtype)."""
    from .elementwise import _operand

    o = _operand(a, o, "matmul")
    if not isinstance(o, Tensor):
        raise TypeError(f"matmul: unsupported operand type {type(o).__name__}")
    return matmul(o, a)


class Linear(Op):
    """x @ w.T (+ b) for 2-D x (N, in), w (out, in), b (out,): one GEMM, bias added in place."""

    __slots__ = ()

    def compute(self, x, w, b=None):
        d = self.device
        out = d.matmul(x, d.permute(w, (1, 0)))
        if b is not None:  # NOTE: into the fresh GEMM output, no second array
            out = d.binary_("add", out, d.broadcast_to(b, out.shape))
        return out

    def gradient(self, g, node):
        x, w = node._inputs[0], node._inputs[1]
        gx = apply(MatMul(), g, w) if x._requires_grad else None
        gw = apply(MatMul(), _mT(g), x) if w._requires_grad else None
        if len(node._inputs) == 3 and node._inputs[2]._requires_grad:
            from .reduce import Sum

            return (gx, gw, apply(Sum((0,), False), g))
        return (gx, gw) if len(node._inputs) == 2 else (gx, gw, None)


def check_bias(x: Tensor, w: Tensor, b: Tensor | None, what: str) -> None:
    """A layer's bias (if any): x's device and dtype, shape (w.shape[0],)."""
    if b is None:
        return
    check_same(x, b, what)
    if b.shape != (w.shape[0],):
        raise ValueError(f"{what}: bias of shape {b.shape} does not match weight of shape "
                         f"{w.shape}")


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """x @ w.T + b with w (out_features, in_features), as torch.nn.functional.linear."""
    check_same(x, w, "linear")
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: input of shape {x.shape} does not match weight of shape "
                         f"{w.shape} (expected input (..., {w.shape[1] if w.ndim == 2 else '?'})"
                         f")")
    check_bias(x, w, b, "linear")
    lead = x.shape[:-1]
    if x.ndim != 2:
        x = _sh.reshape(x, math.prod(lead), x.shape[-1])
    out = apply(Linear(), x, w) if b is None else apply(Linear(), x, w, b)
    if len(lead) != 1:
        out = _sh.reshape(out, lead + (w.shape[0],))
    return out
