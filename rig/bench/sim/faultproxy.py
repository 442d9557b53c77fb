"""Network fault proxy between the terminal and the acquirer host (asyncio TCP).

Relays every accepted connection to the upstream host and, on command, delays, drops,
blackholes, truncates or corrupts traffic. Commands arrive as JSON lines on a control port
(one reply line each); see `drivers.netproxy.FaultProxyControl`. With `--framing len2` a frame
is a 2-byte big-endian length plus payload (the acquirer link framing), with `none` one read.
Usage:
    python -m rig.bench.sim.faultproxy --listen 127.0.0.1:0 --upstream 127.0.0.1:9000 \
        --control 127.0.0.1:0 [--framing none|len2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from dataclasses import dataclass, field
from typing import Any

from rig.bench.sim.common import announce_failure, announce_ready, exit_on_sigterm

DIRECTIONS = ("to_host", "to_terminal")
FAULT_KINDS = ("delay", "drop", "blackhole", "truncate", "corrupt")


def parse_hostport(text: str) -> tuple[str, int]:
    """'host:port' -> (host, port); ValueError naming the bad text."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9000)")
    return host, int(port)


def directions(value: Any) -> tuple[str, ...]:
    """'both' | 'to_host' | 'to_terminal' -> the directions it covers."""
    if value in (None, "both"):
        return DIRECTIONS
    if value in DIRECTIONS:
        return (value,)
    raise ValueError(f"direction {value!r} is not both, to_host or to_terminal")


async def read_frame(reader: asyncio.StreamReader, framing: str) -> bytes:
    """One frame (len2: header + payload) or one chunk; b'' at end of stream (partial kept)."""
    if framing == "none":
        return await reader.read(65536)
    try:
        header = await reader.readexactly(2)
        return header + await reader.readexactly(int.from_bytes(header, "big"))
    except asyncio.IncompleteReadError as exc:
        return exc.partial if exc.partial else b""


@dataclass
class Faults:
    """Fault settings per direction; `truncate`, `corrupt` and `drop` act once then clear."""

    delay_ms: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))
    blackhole: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, False))
    truncate: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS))
    corrupt: dict[str, dict[str, int] | None] = field(
        default_factory=lambda: dict.fromkeys(DIRECTIONS)
    )
    drop_next: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, False))


class Connection:
    """One terminal connection and its upstream leg."""

    def __init__(self, cid: int, client: asyncio.StreamWriter) -> None:
        self.cid = cid
        self.writers: list[asyncio.StreamWriter] = [client]
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.close()


class FaultProxy:
    """The relay and its counters."""

    def __init__(self, upstream: tuple[str, int], framing: str) -> None:
        self.upstream = upstream
        self.framing = framing
        self.faults = Faults()
        self.active: dict[int, Connection] = {}
        self.total = 0
        self.upstream_failures = 0
        self.frames = dict.fromkeys(DIRECTIONS, 0)
        self.bytes = dict.fromkeys(DIRECTIONS, 0)
        self.applied = dict.fromkeys(FAULT_KINDS, 0)
        self.sessions = Sessions()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions.enter(writer)
        self.total += 1
        conn = Connection(self.total, writer)
        self.active[conn.cid] = conn
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                self.upstream_failures += 1
                return
            conn.writers.append(up_writer)
            await asyncio.gather(
                self.pump("to_host", reader, up_writer, conn),
                self.pump("to_terminal", up_reader, writer, conn),
            )
        finally:
            conn.close()
            self.active.pop(conn.cid, None)
            self.sessions.leave(writer)

    async def pump(
        self,
        direction: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: Connection,
    ) -> None:
        """Copy frames one way, applying the faults set for that direction."""
        try:
            while not conn.closed:
                frame = await read_frame(reader, self.framing)
                if not frame:
                    break
                f = self.faults
                if f.delay_ms[direction]:
                    self.applied["delay"] += 1
                    await asyncio.sleep(f.delay_ms[direction] / 1000)
                if f.blackhole[direction]:
                    self.applied["blackhole"] += 1
                    continue
                if f.drop_next[direction]:
                    f.drop_next[direction] = False
                    self.applied["drop"] += 1
                    break
                cut = f.truncate[direction]
                if cut is not None:
                    f.truncate[direction] = None
                    self.applied["truncate"] += 1
                    await self._forward(direction, writer, frame[:cut])
                    break
                spec = f.corrupt[direction]
                if spec is not None:
                    f.corrupt[direction] = None
                    self.applied["corrupt"] += 1
                    frame = corrupt(frame, spec["offset"], spec["xor"])
                await self._forward(direction, writer, frame)
        except (ConnectionError, OSError):
            pass
        finally:
            conn.close()

    async def _forward(self, direction: str, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()
        self.frames[direction] += 1
        self.bytes[direction] += len(data)

    def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Apply one control command; returns the reply (ValueError for bad input)."""
        name = cmd.get("cmd")
        f = self.faults
        if name == "delay":
            ms = cmd.get("ms")
            if not isinstance(ms, int) or ms < 0:
                raise ValueError("delay needs 'ms' as a non-negative integer")
            for d in directions(cmd.get("direction")):
                f.delay_ms[d] = ms
        elif name == "drop":
            when = cmd.get("when", "now")
            if when == "now":
                conns = list(self.active.values())
                for conn in conns:
                    conn.close()
                self.applied["drop"] += len(conns)
                return {"ok": True, "dropped": len(conns)}
            if when != "next_frame":
                raise ValueError("drop 'when' must be 'now' or 'next_frame'")
            for d in directions(cmd.get("direction")):
                f.drop_next[d] = True
        elif name == "blackhole":
            for d in directions(cmd.get("direction")):
                f.blackhole[d] = bool(cmd.get("on", True))
        elif name == "truncate_next":
            k = cmd.get("k")
            if not isinstance(k, int) or k < 0:
                raise ValueError("truncate_next needs 'k' as a non-negative integer")
            for d in directions(cmd.get("direction")):
                f.truncate[d] = k
        elif name == "corrupt_next":
            offset, xor = cmd.get("offset", -1), cmd.get("xor", 0xFF)
            if not isinstance(offset, int) or not isinstance(xor, int) or not 1 <= xor <= 255:
                raise ValueError("corrupt_next needs integer 'offset' and 'xor' in 1..255")
            for d in directions(cmd.get("direction")):
                f.corrupt[d] = {"offset": offset, "xor": xor}
        elif name == "clear":
            self.faults = Faults()
        elif name != "status":
            raise ValueError(
                f"unknown cmd {name!r}: use delay, drop, blackhole, truncate_next, "
                "corrupt_next, clear or status"
            )
        return {"ok": True, **self.status()}

    def status(self) -> dict[str, Any]:
        return {
            "connections": {
                "total": self.total,
                "active": len(self.active),
                "upstream_failures": self.upstream_failures,
            },
            "frames": dict(self.frames),
            "bytes": dict(self.bytes),
            "faults_applied": dict(self.applied),
            "faults": vars(self.faults),
        }

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve JSON-line commands on one control connection."""
        self.sessions.enter(writer)
        try:
            while line := await reader.readline():
                try:
                    cmd = json.loads(line)
                    if not isinstance(cmd, dict):
                        raise ValueError('a command is a JSON object like {"cmd": "status"}')
                    reply = self.command(cmd)
                except ValueError as exc:
                    reply = {"ok": False, "error": str(exc)}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self.sessions.leave(writer)


class Sessions:
    """Connection handler tasks, so SIGTERM can close them and let them end before exiting."""

    def __init__(self) -> None:
        self.tasks: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}

    def enter(self, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks[writer] = task

    def leave(self, writer: asyncio.StreamWriter) -> None:
        self.tasks.pop(writer, None)

    async def shutdown(self, grace: float = 1.0) -> None:
        """Close every connection and wait up to `grace` seconds for the handlers to end."""
        for writer in list(self.tasks):
            writer.close()
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=grace)


def corrupt(frame: bytes, offset: int, xor: int) -> bytes:
    """`frame` with the byte at `offset` (negative counts from the end) XORed with `xor`."""
    if not frame:
        return frame
    i = offset % len(frame) if offset < 0 else min(offset, len(frame) - 1)
    return frame[:i] + bytes([frame[i] ^ xor]) + frame[i + 1 :]


def _endpoint(server: asyncio.Server) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"{host}:{port}"


async def serve(args: argparse.Namespace) -> None:
    try:
        listen, control, upstream = (
            parse_hostport(args.listen),
            parse_hostport(args.control),
            parse_hostport(args.upstream),
        )
    except ValueError as exc:
        announce_failure(str(exc))
        return
    proxy = FaultProxy(upstream, args.framing)
    try:
        relay = await asyncio.start_server(proxy.handle, *listen)
        ctl = await asyncio.start_server(proxy.control, *control)
    except OSError as exc:
        announce_failure(f"cannot listen: {exc}")
        return
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    announce_ready(listen=_endpoint(relay), control=_endpoint(ctl), upstream=args.upstream)
    async with relay, ctl:
        await stopping.wait()
        for conn in list(proxy.active.values()):
            conn.close()
        await proxy.sessions.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT the terminal connects to")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the acquirer host")
    parser.add_argument("--control", required=True, help="HOST:PORT of the JSON-lines control")
    parser.add_argument("--framing", choices=("none", "len2"), default="none")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
