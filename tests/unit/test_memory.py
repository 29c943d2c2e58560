"""Priority memory pool: reuse, budget, eviction order, injected allocation failure."""

from __future__ import annotations

import numpy as np
import pytest

from backend.memory import MemoryPool, PoolExhausted, Priority

FRAME = (720, 1280, 3)


def test_steady_state_allocates_nothing_new():
    pool = MemoryPool(64)
    for _ in range(50):
        a = pool.acquire(FRAME, np.uint8, Priority.HIGH)
        b = pool.acquire((1, 3, 288, 480), np.float32, Priority.HIGH)
        pool.release(a)
        pool.release(b)
    st = pool.stats()
    assert st.allocations == 2
    assert st.reuses == 98
    assert st.reuse_rate == pytest.approx(98 / 100)


def test_budget_evicts_low_priority_first():
    pool = MemoryPool(capacity_mb=3.5)  # room for three 1 MB buffers, not four
    mb = (1024, 1024)
    low = pool.acquire(mb, np.uint8, Priority.LOW)
    high = pool.acquire((1024, 1025), np.uint8, Priority.HIGH)
    pool.release(high)
    pool.release(low)
    pool.acquire((1024, 1026), np.uint8)
    pool.acquire((1024, 1027), np.uint8)  # needs room: the LOW buffer goes first
    st = pool.stats()
    assert st.evictions == 1
    again = pool.acquire((1024, 1025), np.uint8)  # the HIGH one is still cached
    assert again is high


def test_over_budget_raises_pool_exhausted():
    pool = MemoryPool(capacity_mb=1.0)
    with pytest.raises(PoolExhausted):
        pool.acquire((2048, 1024), np.uint8)
    assert pool.stats().failures == 1


def test_allocator_failure_becomes_pool_exhausted():
    def failing(shape, dtype):
        raise MemoryError("injected")

    pool = MemoryPool(64, allocator=failing)
    with pytest.raises(PoolExhausted, match="injected"):
        pool.acquire(FRAME)


def test_free_cache_and_resize():
    pool = MemoryPool(64)
    bufs = [pool.acquire((100, 100 + i)) for i in range(4)]
    for b in bufs:
        pool.release(b)
    assert pool.stats().cached_mb > 0
    assert pool.free_cache() == sum(b.nbytes for b in bufs)
    assert pool.stats().cached_mb == 0
    pool.resize(1)
    assert pool.stats().capacity_mb == 1


def test_release_of_foreign_array_is_ignored():
    pool = MemoryPool(8)
    pool.release(np.zeros(10))
    assert pool.stats().cached_mb == 0
