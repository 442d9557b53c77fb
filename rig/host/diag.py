"""Stall diagnostics for the host and the load generator: where did a slow millisecond go?

A `Stalls` recorder keeps, per named source, a count, total, maximum and coarse histogram of
durations in milliseconds, and a short timeline of every duration over `threshold_ms` stamped with
`time.monotonic()` (CLOCK_MONOTONIC on Linux, the same clock in every process of the machine,
so the host's and the load generator's timelines can be laid side by side). Sources: cyclic GC
pauses (`gc.callbacks`, per generation), event-loop lag (a 10 ms ticker's lateness), and
whatever the caller records (journal commits, checkpoints). Everything is cheap enough to stay on.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import os
import threading
import time
from collections import deque
from typing import Any

__all__ = ["Stalls", "cpu_steal_ticks", "loop_lag_ticker"]

_TICK = 0.010
_EDGES = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
_LABELS = ("<1", "<2", "<5", "<10", "<20", "<50", "<100", ">=100")


class Stalls:
    """Durations by source (count, total, max) plus a timeline of the slow ones."""

    def __init__(self, threshold_ms: float = 5.0, keep: int = 2000) -> None:
        self.threshold_ms = threshold_ms
        self._lock = threading.Lock()
        self._stats: dict[str, list[float]] = {}
        self._slow: deque[tuple[float, str, float]] = deque(maxlen=keep)
        self._gc_started = 0.0
        self._gc_hooked = False

    def record(self, source: str, ms: float, at: float | None = None) -> None:
        """One duration of `source` in ms, ending at monotonic time `at` (default: now)."""
        with self._lock:
            st = self._stats.get(source)
            if st is None:
                st = self._stats[source] = [0, 0.0, 0.0, *([0] * (len(_EDGES) + 1))]
            st[0] += 1
            st[1] += ms
            if ms > st[2]:
                st[2] = ms
            st[3 + bisect.bisect_right(_EDGES, ms)] += 1
            if ms >= self.threshold_ms:
                self._slow.append((time.monotonic() if at is None else at, source, ms))

    def reset(self) -> None:
        with self._lock:
            self._stats.clear()
            self._slow.clear()

    def snapshot(self, per_source: int = 5) -> dict[str, Any]:
        """{'sources': {name: {count, total_ms, max_ms, hist_ms}}, 'slow': [[t, source, ms]]}:
        the `per_source` slowest recent events of each source, in time order."""
        with self._lock:
            sources = {
                name: {
                    "count": int(st[0]),
                    "total_ms": round(st[1], 3),
                    "max_ms": round(st[2], 3),
                    "hist_ms": {k: n for k, n in zip(_LABELS, st[3:], strict=True) if n},
                }
                for name, st in sorted(self._stats.items())
            }
            worst: list[tuple[float, str, float]] = []
            for name in self._stats:
                mine = [e for e in self._slow if e[1] == name]
                worst += sorted(mine, key=lambda e: -e[2])[:per_source]
        return {
            "threshold_ms": self.threshold_ms,
            "sources": sources,
            "slow": [[round(t, 4), s, round(ms, 3)] for t, s, ms in sorted(worst)],
        }

    # ---- cyclic GC ----------------------------------------------------------------------

    def watch_gc(self) -> None:
        """Time every cyclic collection (source 'gc<generation>')."""
        if not self._gc_hooked:
            gc.callbacks.append(self._gc)
            self._gc_hooked = True

    def unwatch_gc(self) -> None:
        if self._gc_hooked:
            gc.callbacks.remove(self._gc)
            self._gc_hooked = False

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self.record(f"gc{info['generation']}", (time.perf_counter() - self._gc_started) * 1e3)
            self._gc_started = 0.0


def _runqueue_ns(fd: int | None) -> int:
    """Nanoseconds this thread has spent runnable but not running (0 when unknown)."""
    if fd is None:
        return 0
    try:
        return int(os.pread(fd, 64, 0).split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def cpu_steal_ticks() -> int:
    """System-wide CPU steal (hypervisor) in clock ticks from /proc/stat; 0 when unknown."""
    try:
        with open("/proc/stat", "rb") as f:
            return int(f.readline().split()[8])
    except (OSError, IndexError, ValueError):
        return 0


async def loop_lag_ticker(stalls: Stalls, source: str = "loop_lag") -> None:
    """Forever: sleep 10 ms and record how late the wake-up was (a blocked event loop), and
    how long the loop thread waited for a CPU meanwhile ('<source>_runqueue': descheduled)."""
    loop = asyncio.get_running_loop()
    try:
        fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    except OSError:
        fd = None
    try:
        waited = _runqueue_ns(fd)
        while True:
            due = loop.time() + _TICK
            await asyncio.sleep(_TICK)
            stalls.record(source, max(0.0, loop.time() - due) * 1e3)
            if fd is not None:
                now = _runqueue_ns(fd)
                stalls.record(source + "_runqueue", (now - waited) / 1e6)
                waited = now
    finally:
        if fd is not None:
            os.close(fd)
