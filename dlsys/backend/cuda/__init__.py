"""The CUDA backend (package numba-cuda): ``CUDADevice`` and its kernels.

Modules: ``device`` (the device: memory, elementwise, reductions, matmul;
``select_device_for_local_rank``), ``views`` (views and indexing), ``nn`` (convolution,
pooling, softmax family), ``optim`` (optimizer updates), ``kernels`` / ``kernels_nn`` /
``matmul`` (the Numba CUDA kernels), ``launch`` (launch geometry and the lean launcher),
``memory`` (the caching allocator), ``simulator`` (fixes for Numba's CUDA simulator).

Only this package imports ``numba.cuda`` (and ``dlsys.backend.cuda_is_available``, lazily).
It is imported by ``ds.cuda()`` (``dlsys.backend.registry``) the first time a CUDA device is
asked for, never by ``import dlsys``. Importing it patches nothing but Numba's CUDA simulator,
and only when the simulator is on.
"""

from __future__ import annotations

from . import optim  # noqa: F401 - registers the CUDA optimizer updates
from .device import CUDADevice, install_caching_allocator, select_device_for_local_rank
from .launch import SIMULATOR

if SIMULATOR:
    from . import simulator

    simulator.apply()

__all__ = ["CUDADevice", "select_device_for_local_rank", "install_caching_allocator", "SIMULATOR"]
