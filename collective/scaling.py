"""``prescale_factor`` / ``postscale_factor`` (Horovod's): multiply before / after the reduction.

The arithmetic is Horovod's on the CPU, so a Horovod script gets the same values:
- float32/float64: ``x * f`` in the tensor's dtype (f rounded to it first);
- float16: in float32, rounded back to float16 (Horovod's "FP32 math for FP16 on CPU");
- integers: in float64, converted back to the integer dtype by truncation toward zero (as
  C's and torch's float -> int conversion). NOTE: this is the one place collective converts
  floats to integers: it is what the factor asks for, and what Horovod does.

A factor of 1.0 (the default) costs nothing: no pass over the data.
"""

from __future__ import annotations

import numbers

import numpy as np

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


def check_factor(f, what: str) -> float:
    if isinstance(f, bool) or not isinstance(f, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {type(f).__name__} {f!r}")
    return float(f)


def _factor(dtype: np.dtype, f: float):
    if dtype.kind == "f":
        return np.float32(f) if dtype.itemsize <= 4 else np.float64(f)
    return np.float64(f)


def scale(arr: np.ndarray, f: float, out: np.ndarray | None = None) -> np.ndarray:
    """``arr * f`` with the dtype rules above, written into ``out`` (default: ``arr``)."""
    out = arr if out is None else out
    np.multiply(arr, _factor(arr.dtype, f), out=out, casting="unsafe")
    return out


def options(prescale: float, postscale: float) -> tuple | None:
    """The part of a call's description that the factors add (None when both are 1)."""
    if prescale == 1.0 and postscale == 1.0:
        return None
    return (("prescale_factor", prescale), ("postscale_factor", postscale))
