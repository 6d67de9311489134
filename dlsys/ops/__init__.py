"""Ops: one class per operation with ``compute(*arrays)`` (backend arrays in, one array out) and
``gradient(out_grad, node)`` written in Tensor ops (so gradients of gradients work), then a small
functional wrapper that checks its inputs and resolves broadcasting once.

``gradient`` returns one entry per input, None for inputs that do not require grad (they are
skipped, never computed). ``self.device`` is set by ``dlsys.autograd.apply`` before ``compute``;
``compute`` calls only device methods. Inputs are validated here, in the functional wrappers.
"""

from __future__ import annotations


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
