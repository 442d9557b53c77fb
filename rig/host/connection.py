"""One terminal connection of the reference host: frame reader, request queue, answer order.

A connection hands each request to its `HostServer`. The usual one (a single frame with nothing
else outstanding) is handled inside `data_received` and answered from the journal's commit
callback; anything else is queued for the connection's task, which takes one request at a time
and first waits until every request already handed to the journal has been answered, so the
responses on a connection always keep the order of its requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from rig.iso8583.framing import Frame, Framing, FramingError

if TYPE_CHECKING:
    from rig.host.server import HostServer

__all__ = ["MAX_PENDING", "TerminalConnection"]

log = logging.getLogger("rig.host")

MAX_PENDING = 64
"""Queued requests per connection before reading from it pauses (resumes at half)."""


class TerminalConnection(asyncio.Protocol):
    """One terminal connection: incremental frame reader, a queue, one worker task at a time."""

    def __init__(self, server: HostServer, framing: Framing, name: str) -> None:
        self.server = server
        self.framing = framing
        self.name = name
        self.reader = framing.reader()
        self.pending: deque[tuple[Frame, float]] = deque()
        self.task: asyncio.Task[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.closed = False
        self.paused = False
        self.inflight = 0
        self.drained: asyncio.Future[None] | None = None
        self.last = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.server._opened(self)

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        before = self.reader.keepalives
        try:
            frames = self.reader.feed(data)
        except FramingError as e:
            self.server._bad_frame(self, e)
            return
        if self.reader.keepalives != before:
            self.server._keepalives(self, self.reader.keepalives - before)
        if not frames:
            return
        now = time.perf_counter()
        if self.task is None and not self.pending and not self.inflight and len(frames) == 1:
            # The common case (one request, nothing outstanding): handled right here, and the
            # response leaves from the journal's commit callback; no task, no coroutine.
            try:
                rest = self.server._process(self, frames[0], now)
            except Exception:
                self._internal_error()
                return
            if rest is not None:
                self.task = self.server._loop.create_task(self._work(rest))
            return
        self.pending.extend((f, now) for f in frames)
        if len(self.pending) > MAX_PENDING and not self.paused:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        if self.task is None:
            self.task = self.server._loop.create_task(self._work())

    async def _work(self, first: Coroutine[Any, Any, None] | None = None) -> None:
        """Requests one at a time, in arrival order: each answered before the next is read."""
        try:
            if first is not None:
                await first
            while self.pending and not self.closed:
                if self.inflight:
                    await self._drain()
                    continue
                frame, arrived = self.pending.popleft()
                rest = self.server._process(self, frame, arrived)
                if rest is not None:
                    await rest
                if self.paused and len(self.pending) < MAX_PENDING // 2:
                    self.paused = False
                    self.transport.resume_reading()  # type: ignore[union-attr]
            if self.inflight:
                await self._drain()
        except Exception:
            self._internal_error()
        finally:
            self.task = None

    def _internal_error(self) -> None:
        self.server.counters["internal_errors"] += 1
        log.exception("%s %s: internal error; closing this connection only", self.name, self.peer)
        self.close()

    async def _drain(self) -> None:
        """Wait until every request handed to the journal has been answered."""
        if self.inflight:
            if self.drained is None or self.drained.done():
                self.drained = self.server._loop.create_future()
            await self.drained

    def answered(self) -> None:
        """One in-flight request's response is out (or abandoned)."""
        self.inflight -= 1
        if not self.inflight and self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def write(self, raw: bytes, tpdu: Any) -> None:
        if self.closed:
            return
        self.transport.write(  # type: ignore[union-attr]
            self.framing.frame(raw, tpdu.swapped() if tpdu is not None else None)
        )

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server._lost(self)
