"""Gradient compression for DistributedOptimizer (Horovod's interface).

A compressor turns a gradient into what goes over the wire and back:
``compress(x) -> (wire, ctx)`` and ``decompress(wire, ctx) -> x``. ``x`` is a ds.Tensor (any
device) or a numpy array. ``Compression.fp16`` halves the bytes of float32/float64 gradients;
DistributedOptimizer divides by the number of ranks BEFORE casting for ``op=Average``, so the
sum of P gradients cannot overflow float16's range (65504) where the average would not.
"""

from __future__ import annotations

import numpy as np

from .tensors import cast as _cast


def _dtype(x):
    return np.dtype(x.dtype)


class Compressor:
    """No compression: the gradient itself goes over the wire."""

    name = "none"

    @staticmethod
    def wire_dtype(dtype):
        """The dtype sent for a gradient of ``dtype``."""
        return np.dtype(dtype)

    @classmethod
    def compress(cls, x, out=None):
        """(wire, ctx); ``out`` (of wire_dtype) is used as the wire buffer when given."""
        if out is None or out is x:
            return x, None
        return _cast(x, cls.wire_dtype(_dtype(x)), out), None

    @staticmethod
    def decompress(wire, ctx, out=None):
        """The gradient, written into ``out`` when given."""
        if out is None or out is wire:
            return wire
        return _cast(wire, _dtype(out), out)

    def __repr__(self):
        return f"Compression.{self.name}"


NoneCompressor = Compressor


class FP16Compressor(Compressor):
    """Floating gradients travel as float16 (half the bytes of float32); others unchanged."""

    name = "fp16"

    @staticmethod
    def wire_dtype(dtype):
        dtype = np.dtype(dtype)
        return np.dtype(np.float16) if dtype.kind == "f" else dtype

    @classmethod
    def compress(cls, x, out=None):
        dtype = _dtype(x)
        wire_dtype = cls.wire_dtype(dtype)
        if wire_dtype == dtype:
            return Compressor.compress(x, out)
        return _cast(x, wire_dtype, out), dtype

    @staticmethod
    def decompress(wire, ctx, out=None):
        if out is not None:
            return _cast(wire, _dtype(out), out)
        return wire if ctx is None else _cast(wire, ctx)


class Compression:
    """The available compressors: ``Compression.none`` and ``Compression.fp16``."""

    none = Compressor()
    fp16 = FP16Compressor()
