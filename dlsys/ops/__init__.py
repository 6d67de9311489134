"""Ops: one class per operation with ``compute(*arrays)`` (backend arrays in, one array out) and
``gradient(out_grad, node)`` written in Tensor ops (so gradients of gradients work), then a small
functional wrapper that checks its inputs and resolves broadcasting once.

``gradient`` returns one entry per input, None for inputs that do not require grad (they are
skipped, never computed). ``self.device`` is set by ``dlsys.autograd.apply`` before ``compute``;
``compute`` calls only device methods. Inputs are validated here, in the functional wrappers.

The helpers every op module shares live here: ``check_same`` (device and dtype), and
PyTorch's dimension rules (``wrap_dim``, ``normalize_dims``: IndexError out of range, a 0-d
tensor taking dims -1 and 0) with ``alias`` for torch's ``dim=`` beside numpy's ``axis=``.
Which ops are Tensor methods and ``ds.*`` functions: ``dlsys.tensor_methods``.
"""

from __future__ import annotations

import operator


class Op:
    __slots__ = ("device",)

    def compute(self, *arrays):
        raise NotImplementedError

    def gradient(self, out_grad, node):
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__}>"


def needs(node):
    """The requires_grad flags of a node's inputs."""
    return [t._requires_grad for t in node._inputs]


def check_same(a, b, what: str):
    """Same device and dtype, else ValueError / TypeError naming both."""
    if a.device is not b.device and a.device != b.device:
        raise ValueError(f"{what}: expected all tensors on the same device, got {a.device} and "
                         f"{b.device}")
    if a._data.dtype != b._data.dtype:
        raise TypeError(f"{what}: dtypes differ, {a._data.dtype} and {b._data.dtype} (dlsys "
                        f"never casts silently; use .to(dtype))")


# -- dimensions: PyTorch's rules, one place ------------------------------------------------------
def wrap_dim(dim, ndim: int, what: str = "dim", of: str | None = None) -> int:
    """``dim`` as a non-negative index for a tensor of ``ndim`` dims, as PyTorch wraps it: a
    0-d tensor takes dims -1 and 0 (as if it had one); IndexError naming the dim and the
    range otherwise (never a silent wrap-around). ``of`` names what has the ``ndim`` dims
    when it is not the input (stack and unsqueeze address ndim + 1)."""
    n = ndim if ndim else 1
    try:
        d = operator.index(dim)
    except TypeError:
        raise TypeError(f"{what}: expected an int dimension, got {type(dim).__name__}") from None
    if not -n <= d < n:
        raise IndexError(f"{what}: dimension out of range (expected to be in range of "
                         f"[{-n}, {n - 1}], but got {d}) for {of or f'a tensor with {ndim} dims'}")
    return d % n if ndim else 0


def normalize_dims(dim, ndim: int, what: str = "dim") -> tuple:
    """None (or an empty sequence, as torch's sum(dim=())) -> all dims; an int or a
    sequence -> a sorted tuple of non-negative dims (IndexError out of range, RuntimeError-like
    ValueError on repeats). A 0-d tensor reduces over nothing: ()."""
    if dim is None:
        return tuple(range(ndim))
    if type(dim) is int and 0 <= dim < ndim:  # NOTE: the common case, without the checks
        return (dim,)
    dims = (dim,) if not isinstance(dim, (tuple, list)) else tuple(dim)
    if not dims:
        return tuple(range(ndim))
    out = tuple(wrap_dim(d, ndim, what) for d in dims)
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: dim {dim} names a dimension more than once")
    return tuple(sorted(out)) if ndim else ()


def alias(value, other, name: str, other_name: str, default=None):
    """One of two spellings of an argument (torch's ``dim=`` and numpy's ``axis=``); TypeError
    when both are given."""
    if other is None:
        return value
    if value is not default and value is not None:
        raise TypeError(f"got both {name}= and its alias {other_name}=")
    return other
