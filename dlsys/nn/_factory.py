"""Creating a layer's uninitialised Parameters on a device with a dtype."""

from __future__ import annotations

import numpy as np

from dlsys.backend import as_device
from dlsys.backend.device import pair  # noqa: F401 - re-exported for the layers
from dlsys.tensor import Tensor

from .parameter import Parameter


def empty_tensor(shape, device=None, dtype=None) -> Tensor:
    dev = as_device(device)
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    return Tensor.from_array(dev.empty(tuple(int(s) for s in shape), dtype), device=dev)


def empty_parameter(shape, device=None, dtype=None) -> Parameter:
    return Parameter(empty_tensor(shape, device, dtype))
