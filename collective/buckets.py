"""Gradient buckets: parameters fused into flat buffers, reduced with one collective each.

Like PyTorch DDP's reducer, parameters are assigned to buckets of about ``cap_bytes`` in
REVERSE registration order, which is roughly the order in which backward produces their
gradients (the last layer first), so the first bucket fills up early and can be reduced while
backward is still computing the rest. One bucket holds one dtype on one device (a flat buffer
has a single dtype). The assignment depends only on the parameter list, so it is the same on
every rank, and the buckets are always reduced in index order.

Each parameter's ``.grad`` is a Tensor VIEW into its bucket's flat buffer, and dlsys
accumulates gradients in place into an existing ``.grad``: backward writes straight into the
buffer and a reduction needs no pack/unpack copy.
"""

from __future__ import annotations

import numpy as np


def assign_buckets(specs, cap_bytes):
    """Group parameters into buckets.

    ``specs``: one ``(key, nbytes)`` per parameter in registration order, where ``key`` is
    what must be equal within a bucket (dtype, device). Returns a list of buckets, each a list
    of parameter indices, in the order they are to be reduced. Parameters are taken in reverse
    order; each key has one open bucket, closed when the next parameter would take it past
    ``cap_bytes`` (a parameter larger than the cap gets a bucket of its own).
    """
    if cap_bytes <= 0:
        raise ValueError(f"bucket cap must be positive, got {cap_bytes} bytes")
    buckets: list[list[int]] = []
    open_buckets: dict = {}  # key -> [bucket index, bytes so far]
    for i in reversed(range(len(specs))):
        key, nbytes = specs[i]
        current = open_buckets.get(key)
        if current is None or (current[1] > 0 and current[1] + nbytes > cap_bytes):
            buckets.append([])
            current = open_buckets[key] = [len(buckets) - 1, 0]
        buckets[current[0]].append(i)
        current[1] += nbytes
    return buckets


class Bucket:
    """One flat gradient buffer and the parameters whose ``.grad`` are views into it."""

    def __init__(self, index, params, names, device, dtype):
        import dlsys as ds

        self.index = index
        self.params = list(params)
        self.names = list(names)
        self.device = device
        self.dtype = np.dtype(dtype)
        self.shapes = [tuple(p.shape) for p in self.params]
        self.numels = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        self.offsets = [int(o) for o in np.cumsum([0] + self.numels[:-1])]
        self.numel = int(sum(self.numels))
        self.nbytes = self.numel * self.dtype.itemsize
        self.flat_array = device.full((self.numel,), 0, self.dtype)
        self.flat = ds.Tensor.from_array(self.flat_array, device)
        self.views = [
            ds.Tensor.from_array(
                device.reshape(device.getitem(self.flat_array, (slice(off, off + n),)), shape),
                device)
            for off, n, shape in zip(self.offsets, self.numels, self.shapes, strict=True)
        ]
        for p, view in zip(self.params, self.views, strict=True):
            self.adopt(p, view)

    @staticmethod
    def adopt(param, view):
        """Make ``view`` the parameter's ``.grad``, keeping the value of a gradient it had."""
        if param.grad is not None and param.grad._data is not view._data:
            view.copy_(param.grad)
        param.grad = view

    def is_view(self, i):
        """Whether parameter i's ``.grad`` still is its view into this bucket."""
        grad = self.params[i].grad
        return grad is not None and grad._data is self.views[i]._data

    def reattach(self, i):
        """Bring a ``.grad`` that was replaced (set to None or to a new Tensor, e.g. by
        ``model.zero_grad()``) back into the bucket: its value (zeros for None) is copied in."""
        p = self.params[i]
        if p.grad is None:
            self.views[i].zero_()
            p.grad = self.views[i]
        elif not self.is_view(i):
            self.adopt(p, self.views[i])

    def zero_(self):
        self.flat.zero_()

    def __repr__(self):
        return (f"Bucket({self.index}, {len(self.params)} params, {self.numel} x {self.dtype}, "
                f"{self.nbytes / 2**20:.2f} MiB, {self.device})")


def build_buckets(names, params, cap_bytes):
    """Buckets for ``params`` (Tensors requiring grad) named ``names``, in reduction order."""
    specs = [((np.dtype(p.dtype).str, repr(p.device)),
              int(np.prod(p.shape, dtype=np.int64)) * np.dtype(p.dtype).itemsize)
             for p in params]
    return [Bucket(b, [params[i] for i in idx], [names[i] for i in idx], params[idx[0]].device,
                   params[idx[0]].dtype)
            for b, idx in enumerate(assign_buckets(specs, cap_bytes))]
