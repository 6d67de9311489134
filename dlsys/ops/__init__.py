"""Ops: one class per operation with ``compute(*arrays)`` (backend arrays in, one array out) and
``gradient(out_grad, node)`` written in Tensor ops (so gradients of gradients work), then a small
functional wrapper that checks its inputs and resolves broadcasting once.

``gradient`` returns one entry per input, None for inputs that do not require grad (they are
skipped, never computed). ``self.device`` is set by ``dlsys.tensor.apply`` before ``compute``.
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
