"""Devices and their kernels (the lowest layer of dlsys).

- ``device``: the kernel interface every device implements (``Device``), the op tables and the
  float16 policy shared by all devices.
- ``cpu``, ``cpu_kernels*``, ``cpu_memory``: the CPU device (numpy + Numba ``@njit``).
- ``cuda/``: the CUDA device (numba-cuda), imported only when a CUDA device is asked for, so a
  machine without numba-cuda or a GPU never pays for (or fails on) that import.
- ``updates``: optimizer update kernels, registered per device.
- ``memory_pool``: the block pool of the CUDA caching allocator (no CUDA; tested anywhere).
- ``registry``: ``cpu()``, ``cuda(index)``, ``cuda_is_available()``, ``as_device(x)``; the first
  use of a device prepares the process for it (see there).

NOTE: the CUDA device factory is ``dlsys.cuda`` (``dlsys.backend.registry.cuda``); the name
``dlsys.backend.cuda`` is the CUDA package.
"""

from __future__ import annotations

from .cpu import CPUDevice
from .device import BINARY_OPS, COMPARE_OPS, UNARY_OPS, Device
from .registry import as_device, cpu, cuda_is_available, default_device

__all__ = ["Device", "CPUDevice", "UNARY_OPS", "BINARY_OPS", "COMPARE_OPS", "cpu",
           "cuda_is_available", "as_device", "default_device"]
