"""The block pool behind the CUDA caching allocator (``cuda/memory.py``): free device blocks by
size class, handed out again instead of being freed. Pure bookkeeping over two driver calls
(``raw_alloc``, ``raw_free``), so it imports no CUDA and is tested on any machine.
"""

from __future__ import annotations

import threading
from collections import defaultdict

_SMALL = 1 << 20  # blocks up to 1 MiB are rounded to 512 bytes


def round_size(nbytes: int) -> int:
    """The pool's size class of an nbytes request: a multiple of 512 bytes up to 1 MiB, above
    that the next of 8 steps per power of two (at most 12.5% unused)."""
    nbytes = max(int(nbytes), 1)
    if nbytes <= _SMALL:
        return -(-nbytes // 512) * 512
    step = 1 << (nbytes.bit_length() - 1 - 3)  # an eighth of the power of two below nbytes
    return -(-nbytes // step) * step


class BlockPool:
    """Free device blocks by size class. ``raw_alloc(nbytes)`` / ``raw_free(ptr)`` talk to
    the driver; everything else is bookkeeping (thread-safe), so it is testable without a GPU.
    """

    def __init__(self, raw_alloc, raw_free):
        self._alloc = raw_alloc
        self._free = raw_free
        self._blocks = defaultdict(list)
        self._lock = threading.Lock()
        self.cached_bytes = 0  # in the pool, free
        self.used_bytes = 0  # handed out, not yet given back

    def take(self, nbytes):
        """(ptr, size class) of a block of at least nbytes: a cached one if any, else a new one
        (after emptying the cache and retrying once when the device is out of memory)."""
        size = round_size(nbytes)
        with self._lock:
            free = self._blocks.get(size)
            ptr = free.pop() if free else None
            if ptr is not None:
                self.cached_bytes -= size
        if ptr is None:
            try:
                ptr = self._alloc(size)
            except MemoryError:
                self.empty()
                ptr = self._alloc(size)
        with self._lock:
            self.used_bytes += size
        return ptr, size

    def give_back(self, ptr, size):
        with self._lock:
            self._blocks[size].append(ptr)
            self.cached_bytes += size
            self.used_bytes -= size

    def empty(self):
        """Free every cached block."""
        with self._lock:
            blocks = [p for ptrs in self._blocks.values() for p in ptrs]
            self._blocks.clear()
            self.cached_bytes = 0
        for ptr in blocks:
            self._free(ptr)
