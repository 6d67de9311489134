"""Creating a layer's Parameters on a device with a dtype, and PyTorch's default init."""

from __future__ import annotations

import math

import numpy as np

from dlsys.backend import as_device
from dlsys.backend.device import pair  # noqa: F401 - re-exported for the layers
from dlsys.tensor import Tensor

from . import init
from .parameter import Parameter


def empty_tensor(shape, device=None, dtype=None) -> Tensor:
    dev = as_device(device)
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    return Tensor.from_array(dev.empty(tuple(int(s) for s in shape), dtype), device=dev)


def empty_parameter(shape, device=None, dtype=None) -> Parameter:
    return Parameter(empty_tensor(shape, device, dtype))


def reset_weight_and_bias(weight, bias) -> None:
    """PyTorch's default for Linear and Conv: kaiming_uniform_(a=sqrt(5)) for the weight, and
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias (if any)."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = init._fan(weight, "fan_in")
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(bias, -bound, bound)
