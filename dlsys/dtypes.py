"""dtypes: numpy dtype objects, and the strict mixing rules of dlsys.

Rules (checked once per op in the front end, never in the kernels):

- ``ds.float16/float32/float64/int32/int64/bool_`` are ``numpy.dtype`` objects; numpy dtypes and
  their names ("float32") are accepted wherever a dtype is.
- Two tensors in one op must have the SAME dtype, else ``TypeError`` naming both. Nothing is
  promoted or cast silently: cast explicitly with ``x.to(ds.float64)``.
- A Python scalar takes the tensor's dtype (``x * 2`` stays float32 for a float32 ``x``); a float
  scalar with an integer tensor is a ``TypeError`` (it would truncate), an int scalar is fine.
- ``ds.tensor(data)``, as ``torch.tensor``: a numpy array (or numpy scalar) keeps its dtype
  (float64 stays float64; dtypes dlsys has no kernels for, e.g. uint8, are a TypeError asking
  for ``dtype=``); Python floats -> float32 (the default dtype), ints -> int64, bools -> bool.
  ``ds.full`` takes its fill value's dtype the same way; ``ds.arange`` is int64 unless an
  argument is a float.
- Only floating tensors can require grad. Comparisons return bool tensors that never do.
"""

from __future__ import annotations

import numpy as np

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
bool_ = np.dtype("bool")

default_float = float32
SUPPORTED = (float16, float32, float64, int32, int64, bool_)
SUPPORTED_SET = frozenset(SUPPORTED)

__all__ = ["float16", "float32", "float64", "int32", "int64", "bool_", "default_float",
           "as_dtype", "is_floating"]


def as_dtype(d) -> np.dtype:
    """A supported numpy dtype from a dtype, a numpy scalar type or a name; TypeError else."""
    try:
        dt = np.dtype(d)
    except TypeError as e:
        raise TypeError(f"not a dtype: {d!r}") from e
    if dt not in SUPPORTED:
        raise TypeError(f"unsupported dtype {dt}; dlsys supports "
                        f"{', '.join(str(s) for s in SUPPORTED)}")
    return dt


def is_floating(dt) -> bool:
    return np.dtype(dt).kind == "f"
