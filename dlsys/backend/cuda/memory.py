"""A caching device allocator for the CUDA device, as Numba's External Memory Management
(EMM) plugin: freed blocks go back to a pool keyed by rounded size and are handed out again,
instead of a ``cuMemAlloc`` per new array and a ``cuMemFree`` (which synchronises the device)
per dead one. PyTorch's CUDA caching allocator does the same, with block splitting on top.

NOTE: reuse is safe because every dlsys kernel and copy runs on the (legacy) default stream:
work that still reads a freed block is ordered before any later work that writes it.
Installed by ``install_caching_allocator()`` (``dlsys.backend.cuda``), which the first
``ds.cuda()`` calls; importing this module changes nothing. DLSYS_CUDA_CACHING_ALLOCATOR=0
keeps Numba's own allocator.
"""

from __future__ import annotations

import weakref

from numba import cuda
from numba.cuda.cudadrv import driver as _drv

from ..memory_pool import BlockPool


def _cu_alloc(nbytes):
    try:
        return _drv.driver.cuMemAlloc(nbytes)
    except _drv.CudaAPIError as e:
        if e.code == _drv.binding.CUresult.CUDA_ERROR_OUT_OF_MEMORY:
            raise MemoryError(f"CUDA out of memory allocating {nbytes} bytes") from e
        raise


class CachingMemoryManager(cuda.GetIpcHandleMixin, cuda.HostOnlyCUDAMemoryManager):
    """Numba EMM plugin: device memory from a ``BlockPool``; host (pinned) memory as Numba's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pool = BlockPool(_cu_alloc, _drv.driver.cuMemFree)

    def initialize(self):
        pass

    def memalloc(self, size):
        ptr, block = self.pool.take(size)
        pool, key = self.pool, int(ptr)
        allocations = self.allocations

        def release():  # NOTE: must not reference the pointer object below (it would live on)
            allocations.pop(key, None)
            pool.give_back(ptr, block)

        # NOTE: like Numba's own manager: an AutoFreePointer kept in ``allocations`` lives
        # until the last array or view referring to it is gone, then ``release`` runs.
        mem = _drv.AutoFreePointer(weakref.proxy(self.context), ptr, size, finalizer=release)
        allocations[key] = mem
        return mem.own()

    def get_memory_info(self):
        free, total = _drv.driver.cuMemGetInfo()
        return cuda.MemoryInfo(free=free, total=total)

    def reset(self):
        super().reset()
        self.pool.empty()

    @property
    def interface_version(self):
        return 1


_installed = False


def install() -> bool:
    """Make Numba use the caching allocator for contexts created from now on (call it before
    the first CUDA context exists); idempotent. False when another plugin was configured."""
    global _installed
    if not _installed:
        if _drv.config.CUDA_MEMORY_MANAGER != "default":
            return False
        cuda.set_memory_manager(CachingMemoryManager)
        _installed = True
    return True
