"""Priority memory pool for host frame buffers.

Buffers are keyed by (shape, dtype). ``acquire`` hands out a free buffer of that key or
allocates one; ``release`` puts it back. Cached (free) buffers count against the budget;
when a new allocation would pass it, free buffers are evicted lowest priority first, then
least recently released. Steady state therefore allocates nothing: every frame reuses the
buffers of an earlier one, which ``stats().allocations`` proves.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Priority(IntEnum):
    """Eviction order: LOW buffers are dropped first."""

    LOW = 0
    NORMAL = 1
    HIGH = 2  # frame buffers in flight and detector inputs


class PoolExhausted(MemoryError):
    """The pool could not provide a buffer within its budget."""


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Counters of a pool; bytes in MB."""

    capacity_mb: float
    in_use_mb: float
    cached_mb: float
    allocations: int
    reuses: int
    evictions: int
    failures: int

    @property
    def reuse_rate(self) -> float:
        """Share of acquires served from the cache (0..1)."""
        total = self.allocations + self.reuses
        return self.reuses / total if total else 0.0


_Key = tuple[tuple[int, ...], str]


class MemoryPool:
    """Thread-safe pool of numpy buffers with a byte budget.

    ``allocator`` exists so tests can inject an allocation failure; it takes
    (shape, dtype) and returns an array.
    """

    def __init__(self, capacity_mb: float = 512.0, allocator=None) -> None:
        self._capacity = int(capacity_mb * 1024 * 1024)
        self._lock = threading.Lock()
        self._free: OrderedDict[int, tuple[_Key, Priority, np.ndarray]] = OrderedDict()
        self._in_use: dict[int, tuple[_Key, Priority, np.ndarray]] = {}
        # free buffers by key, and the bytes held: acquire is O(1) however many sizes exist
        self._free_by_key: dict[_Key, dict[int, None]] = {}
        self._bytes = 0
        self._allocator = allocator or (lambda shape, dtype: np.empty(shape, dtype))
        self._allocations = 0
        self._reuses = 0
        self._evictions = 0
        self._failures = 0

    # -- public API -------------------------------------------------------------------
    @property
    def capacity_mb(self) -> float:
        """The byte budget, in MB (changed by ``resize``)."""
        with self._lock:
            return self._capacity / (1024 * 1024)

    def acquire(
        self, shape: tuple[int, ...], dtype: np.dtype | type = np.uint8,
        priority: Priority = Priority.NORMAL,
    ) -> np.ndarray:
        """Return an uninitialised buffer of ``shape``/``dtype``; give it back with release.

        Raises PoolExhausted when the budget cannot hold it even after evicting every free
        buffer, or when the allocator itself fails.
        """
        key: _Key = (tuple(int(s) for s in shape), np.dtype(dtype).str)
        with self._lock:
            same = self._free_by_key.get(key)
            if same:
                ident = next(iter(same))
                self._drop_free(ident)
                _k, _prio, arr = self._free.pop(ident)
                self._in_use[ident] = (key, priority, arr)
                self._reuses += 1
                return arr
            nbytes = int(np.prod(key[0], dtype=np.int64)) * np.dtype(dtype).itemsize
            self._make_room(nbytes)
            if self._used_bytes() + nbytes > self._capacity:
                self._failures += 1
                raise PoolExhausted(
                    f"pool budget {self._capacity // 2**20} MB cannot hold {nbytes / 2**20:.1f} MB"
                )
            try:
                arr = self._allocator(key[0], np.dtype(dtype))
            except MemoryError as exc:
                self._failures += 1
                raise PoolExhausted(str(exc) or "allocation failed") from exc
            self._allocations += 1
            self._bytes += arr.nbytes
            self._in_use[id(arr)] = (key, priority, arr)
            return arr

    def release(self, arr: np.ndarray) -> None:
        """Give a buffer back. Unknown arrays are ignored (they were never pooled)."""
        with self._lock:
            entry = self._in_use.pop(id(arr), None)
            if entry is not None:
                self._free[id(arr)] = entry
                self._free_by_key.setdefault(entry[0], {})[id(arr)] = None

    def free_cache(self) -> int:
        """Drop every free buffer; returns the bytes freed."""
        with self._lock:
            freed = sum(a.nbytes for _, _, a in self._free.values())
            self._evictions += len(self._free)
            self._free.clear()
            self._free_by_key.clear()
            self._bytes -= freed
            return freed

    def resize(self, capacity_mb: float) -> None:
        """Change the budget; free buffers beyond it are evicted."""
        with self._lock:
            self._capacity = int(capacity_mb * 1024 * 1024)
            self._make_room(0)

    def stats(self) -> PoolStats:
        """A snapshot of the counters."""
        with self._lock:
            mb = 1024 * 1024
            return PoolStats(
                capacity_mb=self._capacity / mb,
                in_use_mb=sum(a.nbytes for _, _, a in self._in_use.values()) / mb,
                cached_mb=sum(a.nbytes for _, _, a in self._free.values()) / mb,
                allocations=self._allocations,
                reuses=self._reuses,
                evictions=self._evictions,
                failures=self._failures,
            )

    def reset_stats(self) -> None:
        """Zero the counters (buffers stay)."""
        with self._lock:
            self._allocations = self._reuses = self._evictions = self._failures = 0

    # -- internals --------------------------------------------------------------------
    def _used_bytes(self) -> int:
        return self._bytes

    def _drop_free(self, ident: int) -> None:
        """Forget ``ident`` in the by-key index of free buffers."""
        key = self._free[ident][0]
        same = self._free_by_key[key]
        del same[ident]
        if not same:
            del self._free_by_key[key]

    def _make_room(self, nbytes: int) -> None:
        while self._free and self._used_bytes() + nbytes > self._capacity:
            # lowest priority first; among equals the oldest released (dict order)
            victim = min(self._free, key=lambda i: self._free[i][1])
            self._drop_free(victim)
            self._bytes -= self._free.pop(victim)[2].nbytes
            self._evictions += 1
