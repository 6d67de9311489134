"""Pieces of a tensor as one graph node (a custom Function): the backward is one concatenation
of the pieces' gradients, where slicing each piece with ``x[...]`` would give every piece's
gradient a zero tensor of x's full shape (quadratic in the number of pieces for the time steps
of a recurrent layer)."""

from __future__ import annotations

from dlsys.autograd import Function
from dlsys.ops.shape import concatenate, stack


class _Pieces(Function):
    @staticmethod
    def forward(ctx, x, dim, sizes, squeeze):
        ctx.dim, ctx.squeeze = dim, squeeze
        pre = (slice(None),) * dim
        out, start = [], 0
        for s in sizes:
            out.append(x[pre + ((start,) if squeeze else (slice(start, start + s),))])
            start += s
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        g = stack(grads, ctx.dim) if ctx.squeeze else concatenate(grads, ctx.dim)
        return g, None, None, None


def split_views(x, n: int, dim: int):
    """x cut into ``n`` equal pieces along ``dim`` (views)."""
    size = x.shape[dim] // n
    return _Pieces.apply(x, dim % x.ndim, (size,) * n, False)


def unbind_views(x, dim: int = 0):
    """The slices of x along ``dim``, that dim removed (views)."""
    return _Pieces.apply(x, dim % x.ndim, (1,) * x.shape[dim], True)
