"""The CUDA caching allocator's block pool (dlsys.backend.memory_pool): pure bookkeeping over
two driver calls, tested with a fake driver. The allocator itself (dlsys.backend.cuda.memory,
a Numba EMM plugin) is exercised on a GPU by tests/test_backend_cuda.py."""

from __future__ import annotations

import threading

import pytest

from dlsys.backend.memory_pool import BlockPool, round_size


class FakeDriver:
    def __init__(self, capacity=1 << 30):
        self.capacity, self.live, self.next, self.frees = capacity, {}, 1, []

    def alloc(self, nbytes):
        if sum(self.live.values()) + nbytes > self.capacity:
            raise MemoryError(f"out of memory allocating {nbytes}")
        ptr, self.next = self.next, self.next + 1
        self.live[ptr] = nbytes
        return ptr

    def free(self, ptr):
        self.frees.append(ptr)
        del self.live[ptr]


@pytest.mark.parametrize("nbytes,want", [(0, 512), (1, 512), (512, 512), (513, 1024),
                                         (1 << 20, 1 << 20), ((1 << 20) + 1, 1179648),
                                         (3_000_000, 3_145_728), (1 << 30, 1 << 30)])
def test_round_size(nbytes, want):
    assert round_size(nbytes) == want


def test_round_size_wastes_at_most_an_eighth_above_1mib():
    for n in range(1 << 20, 1 << 26, 99_991):
        r = round_size(n)
        assert n <= r < n * 1.125 + 1 and round_size(r) == r


def test_blocks_are_reused_by_size_class_and_freed_only_when_emptied():
    drv = FakeDriver()
    pool = BlockPool(drv.alloc, drv.free)
    a, sa = pool.take(1000)
    b, sb = pool.take(1000)
    assert a != b and sa == sb == 1024 and pool.used_bytes == 2048
    pool.give_back(a, sa)
    assert pool.cached_bytes == 1024 and pool.used_bytes == 1024
    c, sc = pool.take(600)  # same size class: the cached block
    assert c == a and sc == 1024 and pool.cached_bytes == 0
    d, _ = pool.take(5000)  # another class: a new block
    assert d not in (a, b) and len(drv.live) == 3 and drv.frees == []
    for p, s in ((b, sb), (c, sc), (d, 5120)):
        pool.give_back(p, s)
    pool.empty()
    assert sorted(drv.frees) == sorted([a, b, d]) and drv.live == {} and pool.cached_bytes == 0


def test_out_of_memory_empties_the_cache_and_retries_once():
    drv = FakeDriver(capacity=4096)
    pool = BlockPool(drv.alloc, drv.free)
    p, s = pool.take(3000)
    pool.give_back(p, s)  # 3072 cached, 1024 left on the "device"
    q, _ = pool.take(2048)  # does not fit next to the cached block: freed, then it fits
    assert drv.frees == [p] and q in drv.live
    with pytest.raises(MemoryError, match="out of memory"):
        pool.take(4096)  # nothing cached to free: the error reaches the caller


def test_threads_never_get_the_same_block():
    drv = FakeDriver()
    pool = BlockPool(drv.alloc, drv.free)
    got, lock = [], threading.Lock()

    def worker():
        mine = []
        for _ in range(200):
            mine.append(pool.take(512))
            if len(mine) > 3:
                pool.give_back(*mine.pop(0))
        with lock:
            got.extend(p for p, _ in mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 12 and pool.used_bytes == 12 * 512
