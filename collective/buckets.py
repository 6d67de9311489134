"""Gradient buckets: parameters fused into flat buffers, reduced with one collective each.

Like PyTorch DDP's reducer, parameters are assigned to buckets in REVERSE registration order,
which is roughly the order in which backward produces their gradients (the last layer first),
so the first bucket fills up early and can be reduced while backward is still computing the
rest. The first bucket of each (dtype, device) is small (``FIRST_BUCKET_BYTES``, DDP's
``_DEFAULT_FIRST_BUCKET_BYTES``), so that its reduction starts early even in a model whose
gradients would fit one bucket of the cap; the others hold up to the cap. One bucket holds one
dtype on one device (a flat buffer has a single dtype). The assignment depends only on the
parameter list, so it is the same on every rank, and the buckets are always reduced in index
order.

Each parameter's ``.grad`` is a Tensor VIEW into its bucket's flat buffer, and dlsys
accumulates gradients in place into an existing ``.grad``: backward writes straight into the
buffer and a reduction needs no pack/unpack copy on the CPU. The reduction works on host
memory (``host``: the CPU buffer itself, or a host copy of a CUDA one) and sends ``wire`` (the
host memory itself, or its compressed copy).
"""

from __future__ import annotations

import numpy as np

from . import tensors

FIRST_BUCKET_BYTES = 1 << 20


def assign_buckets(specs, cap_bytes, first_cap_bytes=None):
    """Group parameters into buckets.

    ``specs``: one ``(key, nbytes)`` per parameter in registration order, where ``key`` is
    what must be equal within a bucket (dtype, device). Returns a list of buckets, each a list
    of parameter indices, in the order they are to be reduced. Parameters are taken in reverse
    order; each key has one open bucket, closed when the next parameter would take it past its
    cap: ``first_cap_bytes`` (default ``cap_bytes``) for the key's first bucket, ``cap_bytes``
    for the others (a parameter larger than the cap gets a bucket of its own).
    """
    if cap_bytes <= 0:
        raise ValueError(f"bucket cap must be positive, got {cap_bytes} bytes")
    first = cap_bytes if first_cap_bytes is None else first_cap_bytes
    if first <= 0:
        raise ValueError(f"first bucket cap must be positive, got {first} bytes")
    buckets: list[list[int]] = []
    open_buckets: dict = {}  # key -> [bucket index, bytes so far, cap]
    for i in reversed(range(len(specs))):
        key, nbytes = specs[i]
        current = open_buckets.get(key)
        if current is None or (current[1] > 0 and current[1] + nbytes > current[2]):
            buckets.append([])
            cap = first if current is None else cap_bytes
            current = open_buckets[key] = [len(buckets) - 1, 0, cap]
        buckets[current[0]].append(i)
        current[1] += nbytes
    return buckets


class Bucket:
    """One flat gradient buffer, the parameters whose ``.grad`` are views into it, and the
    host memory its reduction works on."""

    def __init__(self, index, params, names, device, dtype, compression, memory=None):
        self.index = index
        self.params = list(params)
        self.names = list(names)
        self.device = device
        self.dtype = np.dtype(dtype)
        self.compression = compression
        self.shapes = [tuple(p.shape) for p in self.params]
        self.numels = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        self.offsets = [int(o) for o in np.cumsum([0] + self.numels[:-1])]
        self.numel = int(sum(self.numels))
        self.nbytes = self.numel * self.dtype.itemsize
        wire_dtype = np.dtype(compression.wire_dtype(self.dtype))
        # ``memory``: a zeroed array given for the wire (DistributedOptimizer's buckets in the
        # node's shared window, collective/shared_buckets.py); uncompressed CPU gradients then
        # live in it, so backward writes them there
        self.shared = memory is not None
        if memory is not None and (memory.dtype != wire_dtype or memory.size != self.numel):
            raise ValueError(f"bucket {index}: memory of {memory.size} x {memory.dtype} given "
                             f"for a wire of {self.numel} x {wire_dtype}")
        cpu = device.name == "cpu"
        if memory is not None and cpu and wire_dtype == self.dtype:
            self.flat = tensors.host_tensor(memory)
        else:
            self.flat = tensors.flat_zeros(self.numel, self.dtype, device)
        self.views = tensors.views(self.flat, self.offsets, self.numels, self.shapes)
        self.on_cpu = cpu
        if cpu:
            self.host = self.flat.numpy()
        elif memory is not None and wire_dtype == self.dtype:
            self.host = memory
        else:
            self.host = np.zeros(self.numel, self.dtype)
        if wire_dtype == self.dtype:
            self.wire = self.host
        else:
            self.wire = memory if memory is not None else np.zeros(self.numel, wire_dtype)
        for p, view in zip(self.params, self.views, strict=True):
            self.adopt(p, view)

    @staticmethod
    def adopt(param, view):
        """Make ``view`` the parameter's ``.grad``, keeping the value of a gradient it had."""
        if param.grad is not None and not tensors.same_memory(param.grad, view):
            view.copy_(param.grad)
        param.grad = view

    def is_view(self, i):
        """Whether parameter i's ``.grad`` still is its view into this bucket."""
        return tensors.same_memory(self.params[i].grad, self.views[i])

    def reattach(self, i):
        """Bring a ``.grad`` that was replaced (set to None or to a new Tensor, e.g. by
        ``model.zero_grad()``) back into the bucket: its value (zeros for None) is copied in."""
        p = self.params[i]
        if p.grad is None:
            self.views[i].zero_()
            p.grad = self.views[i]
        elif not self.is_view(i):
            self.adopt(p, self.views[i])

    def reattach_all(self):
        for i in range(len(self.params)):
            if not self.is_view(i):
                self.reattach(i)

    def zero_(self):
        self.flat.zero_()

    def pack(self, prescale=0) -> np.ndarray:
        """This rank's gradients as the host array to reduce (``wire``). ``prescale``: divide
        by it (``np.true_divide``) before compressing, so that a sum of P float16 values cannot
        overflow where their average would not (and for ``gradient_predivide_factor``)."""
        if not self.on_cpu:
            tensors.read_into(self.host, self.flat)
        if prescale:
            np.true_divide(self.host, prescale, out=self.host)
        if self.wire is not self.host:
            self.compression.compress(self.host, out=self.wire)
        return self.wire

    def unpack(self, postscale=1.0):
        """Write the reduced ``wire`` back into the gradients, multiplied by ``postscale``."""
        if self.wire is not self.host:
            self.compression.decompress(self.wire, None, out=self.host)
        if postscale != 1.0:
            np.multiply(self.host, postscale, out=self.host)
        if not self.on_cpu:
            tensors.write_from(self.flat, self.host)

    def __repr__(self):
        return (f"Bucket({self.index}, {len(self.params)} params, {self.numel} x {self.dtype}, "
                f"{self.nbytes / 2**20:.2f} MiB, {self.device})")


def plan_buckets(params, cap_bytes, first_cap_bytes=FIRST_BUCKET_BYTES):
    """The buckets of ``params`` (Tensors requiring grad) as lists of parameter indices, in
    reduction order; the first of each (dtype, device) holds up to min(first_cap_bytes,
    cap_bytes)."""
    specs = [((np.dtype(p.dtype).str, repr(p.device)),
              int(np.prod(p.shape, dtype=np.int64)) * np.dtype(p.dtype).itemsize)
             for p in params]
    return assign_buckets(specs, cap_bytes, min(first_cap_bytes, cap_bytes))


def wire_specs(params, groups, compression) -> list:
    """(elements, wire dtype) of each bucket of ``groups`` (what a shared window must hold)."""
    return [(int(sum(int(np.prod(params[i].shape, dtype=np.int64)) for i in idx)),
             np.dtype(compression.wire_dtype(np.dtype(params[idx[0]].dtype))))
            for idx in groups]


def build_buckets(names, params, cap_bytes, compression, first_cap_bytes=FIRST_BUCKET_BYTES,
                  groups=None, memory=None):
    """Buckets for ``params`` (Tensors requiring grad) named ``names``, in reduction order
    (``groups``: as ``plan_buckets`` gives them, planned here if None). ``memory``: None, or
    ``memory(b)`` the zeroed array bucket b's wire lives in (see ``Bucket``)."""
    if groups is None:
        groups = plan_buckets(params, cap_bytes, first_cap_bytes)
    return [Bucket(b, [params[i] for i in idx], [names[i] for i in idx], params[idx[0]].device,
                   params[idx[0]].dtype, compression, None if memory is None else memory(b))
            for b, idx in enumerate(groups)]
