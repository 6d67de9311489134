"""CPU elementwise kernels (fused chains) and scatter-add.

Each ``*_ref`` is the numpy reference; the Numba kernel beside it computes the same.
"""

from __future__ import annotations

import math

import numpy as np

_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# NOTE: numpy has no erf ufunc (scipy is not a dependency): the reference maps math.erf.
_erf_obj = np.frompyfunc(math.erf, 1, 1)


def erf_ref(x):
    return _erf_obj(x).astype(x.dtype)


def gelu_ref(x):
    """Exact GELU, x * Phi(x) (PyTorch's default approximate='none')."""
    return x * (0.5 * (1.0 + erf_ref(x * _SQRT1_2)))


def gelu_grad_ref(x):
    """d gelu / dx = Phi(x) + x * phi(x)."""
    cdf = 0.5 * (1.0 + erf_ref(x * _SQRT1_2))
    return cdf + x * (_INV_SQRT_2PI * np.exp(-0.5 * x * x))


def sigmoid_ref(x):
    # NOTE: 0.5 * (1 + tanh(x / 2)) is sigmoid without exp overflow for large |x|.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def index_add_ref(out, index, values):
    np.add.at(out, index, values)
