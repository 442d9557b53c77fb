"""The journal's in-memory filter of duplicate-detection keys: no database read per request.

A scalable Bloom filter over every (terminal, STAN, transmission, MTI class) key in the journal:
keys of earlier runs are loaded once at open (one index-only scan), keys appended by this process
are added as they are submitted. A Bloom filter has no false negatives, so a key it does not hold
is certainly new and the journal skips its SQL look-up; a hit (a duplicate, or a rare false
positive, about 0.2 %) is confirmed in SQLite. Memory stays near 2 bytes per key: 10 million
entries cost about 20 MB, where a set of keys would cost gigabytes.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

__all__ = ["KeyFilter"]

_PROBES = 4
_BITS_PER_KEY = 16
_MASK64 = (1 << 64) - 1


class _Bloom:
    """One fixed-size Bloom filter of `capacity` keys (power-of-two bit array, 4 probes)."""

    __slots__ = ("bits", "capacity", "count", "mask")

    def __init__(self, capacity: int) -> None:
        size = 1 << max(16, (capacity * _BITS_PER_KEY - 1).bit_length())
        self.bits = bytearray(size >> 3)
        self.mask = size - 1
        self.capacity = capacity
        self.count = 0

    def add(self, h: int) -> None:
        bits, mask = self.bits, self.mask
        step = (h >> 32) | 1
        for _ in range(_PROBES):
            i = h & mask
            bits[i >> 3] |= 1 << (i & 7)
            h += step
        self.count += 1

    def has(self, h: int) -> bool:
        bits, mask = self.bits, self.mask
        step = (h >> 32) | 1
        for _ in range(_PROBES):
            i = h & mask
            if not bits[i >> 3] & (1 << (i & 7)):
                return False
            h += step
        return True


class KeyFilter:
    """Set-like membership of journal keys with no false negatives (see the module docstring)."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._filters = [_Bloom(capacity)]

    def add(self, key: Hashable) -> None:
        """Remember `key` (growing by a new, twice as large filter when the current one is full)."""
        top = self._filters[-1]
        if top.count >= top.capacity:
            top = _Bloom(top.capacity * 2)
            self._filters.append(top)
        top.add(hash(key) & _MASK64)

    def update(self, keys: Iterable[Hashable]) -> None:
        for key in keys:
            self.add(key)

    def __contains__(self, key: Hashable) -> bool:
        h = hash(key) & _MASK64
        return any(f.has(h) for f in self._filters)

    def __len__(self) -> int:
        """Keys added (with repeats)."""
        return sum(f.count for f in self._filters)
