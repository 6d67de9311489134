"""The glue between collective and dlsys's autograd: a collective recorded as an op.

dlsys records ops with ``dlsys.autograd.apply(op, *inputs)``: an op is an object with
``compute(*arrays)`` (device arrays in, one device array out; ``op.device`` is set by apply)
and ``gradient(out_grad, node)`` (Tensors, one entry per input). dlsys has no public
custom-function class yet (DESIGN 0.2 lists ``ds.autograd.Function``), so this module builds
on that op protocol and on public device methods only (``device.to_numpy``,
``device.from_numpy``).

``record(x, forward, backward)``: ``forward(host_array, op) -> host_array`` runs the
collective on x's values (a numpy array: the CPU storage itself, or a host copy of a CUDA
tensor) and may keep what backward needs on ``op.saved``; ``backward(grad, op) -> Tensor``
computes the input's gradient with collectives of Tensors (so gradients of gradients work).
The rules themselves live beside each collective (allreduce.py, collectives.py, alltoall.py).

Every rank must run backward through the same collectives in the same order, as it runs the
forward ones (each backward is itself a collective call, checked by the handshake).

This module imports dlsys: it is only imported once an input is a dlsys Tensor.
"""

from __future__ import annotations

import numpy as np

import dlsys as ds


class CollectiveOp:
    """One recorded collective (the dlsys op protocol: compute + gradient)."""

    __slots__ = ("device", "name", "forward", "backward", "saved")

    def __init__(self, name, forward, backward):
        self.name, self.forward, self.backward, self.saved = name, forward, backward, None

    def compute(self, a):
        out = self.forward(self.device.to_numpy(a), self)
        return self.device.from_numpy(np.ascontiguousarray(out))

    def gradient(self, out_grad, node):
        return (self.backward(out_grad, self),)

    def __repr__(self):
        return f"<{self.name}>"


def record(name, x, forward, backward):
    """The Tensor ``forward`` computes from ``x``, recorded with the gradient rule ``backward``
    (see the module docstring)."""
    return ds.autograd.apply(CollectiveOp(name, forward, backward), x)


def constant_like(t, array: np.ndarray):
    """``array`` as a Tensor (no grad) on ``t``'s device, in ``t``'s dtype."""
    out = ds.from_numpy(np.ascontiguousarray(array, dtype=np.dtype(t.dtype)))
    return out if t.device.name == "cpu" else out.to(t.device)
