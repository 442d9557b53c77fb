"""Load generator for the host: N terminal connections sending chip authorisations, and a
malformed-frame fuzzer running beside them; also a bare framed echo server to compare against.

Each connection is one terminal (its own terminal id) sending 0100 requests with a valid ARQC
computed from a card profile's TEST issuer keys, one at a time, and timing each round trip; the
requests and the blocking `TerminalClient` are built in `rig.host.terminal` (re-exported here).
Run the echo server: `python -m rig.host.loadgen echo --listen 127.0.0.1:0 --framing len2`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import secrets
import signal
import string
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rig.host.diag import Stalls, loop_lag_ticker
from rig.host.terminal import (
    DEFAULT_AMOUNT,
    DEFAULT_PROFILE,
    MERCHANT,
    LoadError,
    TerminalClient,
    _stan_template,
    chip_authorization,
    chip_icc,
    malformed_frames,
)
from rig.iso8583 import messages
from rig.iso8583.framing import (
    Framing,
    FramingError,
    Tpdu,
    get_framing,
    read_framed,
)
from rig.iso8583.messages import Iso8583Error

__all__ = [
    "DEFAULT_AMOUNT",
    "DEFAULT_PROFILE",
    "MERCHANT",
    "LoadConfig",
    "LoadError",
    "LoadResult",
    "TerminalClient",
    "chip_authorization",
    "chip_icc",
    "echo_server",
    "malformed_frames",
    "run_load",
]


@dataclass
class LoadConfig:
    """Where and how hard to push: target, framing, connections, duration, what to send."""

    host: str
    port: int
    framing: str = "len2"
    connections: int = 64
    duration: float = 5.0
    warmup: float = 0.5
    timeout: float = 5.0
    cafile: Path | None = None
    profiles: Path = Path("cardprofiles")
    profile: str = DEFAULT_PROFILE
    amount: int = DEFAULT_AMOUNT
    malformed: int = 0
    fuzz_connections: int = 2
    seed: int | None = None
    record: bool = False
    rate: float | None = None
    """Total requests/s over all connections (paced); None: closed loop, as fast as answered."""


@dataclass
class LoadResult:
    """Throughput, latency percentiles, response codes, errors, malformed-frame outcomes."""

    connections: int
    duration_s: float
    rate: float | None = None
    requests: int = 0
    late_sends: int = 0
    responses: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)
    rc: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)
    stalls: Stalls = field(default_factory=Stalls, repr=False)

    def to_dict(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3) if lat else None

        return {
            "mode": "paced" if self.rate else "closed-loop",
            "target_rate_per_s": self.rate,
            "late_sends": self.late_sends,
            "connections": self.connections,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "responses": self.responses,
            "per_s": round(len(lat) / self.duration_s, 1) if self.duration_s else 0.0,
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "max_ms": round(lat[-1] * 1000, 3) if lat else None,
            "response_codes": dict(self.rc),
            "errors": dict(self.errors),
            "malformed_sent": self.malformed["sent"],
            "malformed_outcomes": {k: v for k, v in self.malformed.items() if k != "sent"},
            "diagnostics": self.stalls.snapshot(),
        }


async def _open(cfg: LoadConfig) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    ctx = None
    if cfg.cafile is not None:
        from rig.host.tls import client_context

        ctx = client_context(cfg.cafile)
    return await asyncio.open_connection(
        cfg.host, cfg.port, ssl=ctx, server_hostname=cfg.host if ctx else None
    )


class _Terminal(asyncio.Protocol):
    """One load connection as a Protocol: prebuilt frame with the STAN patched in, one request
    outstanding, sent back-to-back (closed loop) or on a fixed schedule (paced)."""

    def __init__(self, cfg: LoadConfig, profile: Any, tid: str, now: datetime, phase: float):
        self.cfg = cfg
        self.tid = tid
        self.doc = chip_authorization(profile, stan=1, terminal_id=tid, amount=cfg.amount, now=now)
        self.framing = get_framing(cfg.framing)
        self.tpdu = Tpdu(1, 0) if cfg.framing == "len2-tpdu" else None
        self.template, self.stan_at, self.stan_bcd = _stan_template(self.doc)
        self.interval = cfg.connections / cfg.rate if cfg.rate else 0.0
        self.phase = phase
        self.stan = 0
        self.res: LoadResult
        self.transport: asyncio.Transport | None = None
        self.reader = self.framing.reader()
        self.sent_raw = b""
        self.sent_at = 0.0
        self.due = 0.0
        self.outstanding = False
        self.timer: asyncio.TimerHandle | None = None
        self.lost: asyncio.Future[None] | None = None

    def payload(self, stan: int) -> bytes:
        digits = f"{stan % 1_000_000:06d}"
        value = bytes.fromhex(digits) if self.stan_bcd else digits.encode()
        at = self.stan_at
        return self.template[:at] + value + self.template[at + len(value) :]

    # ---- protocol ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
        if self.outstanding:
            self.res.errors["connection: closed with a request outstanding"] += 1
            self.outstanding = False
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except FramingError:
            self.res.errors["connection: FramingError"] += 1
            self._close()
            return
        for frame in frames:
            self._response(frame.payload)

    # ---- requests ----

    def _next(self) -> None:
        if self.transport is None:
            return
        now = time.perf_counter()
        if not self.interval:
            self._send(now, now)
            return
        if not self.due:
            self.due = self.start + self.phase
        else:
            self.due += self.interval
            if self.due < now:
                self.res.late_sends += 1
        if self.due >= self.end:
            self._close()
            return
        delay = self.due - now
        if delay > 0:
            self.timer = self.loop.call_later(delay, self._send_due)
        else:
            self._send(now, self.due)

    def _send_due(self) -> None:
        self.timer = None
        now = time.perf_counter()
        self.res.stalls.record("send_lag", (now - self.due) * 1e3)
        self._send(now, self.due)

    def _send(self, now: float, due: float) -> None:
        if self.transport is None:
            return
        if now >= self.end:
            self._close()
            return
        self.stan += 1
        raw = self.sent_raw = self.payload(self.stan)
        self.sent_at = due
        self.outstanding = True
        self.transport.write(self.framing.frame(raw, self.tpdu))
        self.res.requests += 1

    def _response(self, payload: bytes) -> None:
        t1 = time.perf_counter()
        if not self.outstanding:
            self.res.errors["unsolicited response"] += 1
            return
        self.outstanding = False
        self.res.responses += 1
        res = self.res
        if payload == self.sent_raw:
            rc, resp = "echo", None
        else:
            try:
                resp = messages.decode(payload)
            except Iso8583Error:
                res.errors["bad response"] += 1
                self._next()
                return
            rc = resp.get("39", "echo")
        res.rc[rc] += 1
        if self.sent_at >= self.counted_from:
            res.latencies.append(t1 - self.sent_at)
            res.stalls.record("response", (t1 - self.sent_at) * 1e3)
        if self.cfg.record:
            resp = resp or {}
            res.records.append(
                {
                    "request": self.sent_raw.hex(),
                    "rc": rc,
                    "auth_id": resp.get("38"),
                    "rrn": resp.get("37"),
                    "stan": f"{self.stan % 1_000_000:06d}",
                    "tid": self.tid,
                }
            )
        self._next()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def check_timeout(self, now: float) -> None:
        if self.outstanding and now - self.sent_at > self.cfg.timeout:
            self.res.errors["timeout"] += 1
            self.outstanding = False
            self._close()

    async def run(self, res: LoadResult, start: float, end: float) -> None:
        self.res, self.start, self.end = res, start, end
        self.counted_from = start + self.cfg.warmup
        self.loop = asyncio.get_running_loop()
        ctx = None
        if self.cfg.cafile is not None:
            from rig.host.tls import client_context

            ctx = client_context(self.cfg.cafile)
        while time.perf_counter() < end:
            self.lost = self.loop.create_future()
            self.reader = self.framing.reader()
            try:
                await self.loop.create_connection(
                    lambda: self,
                    self.cfg.host,
                    self.cfg.port,
                    ssl=ctx,
                    server_hostname=self.cfg.host if ctx else None,
                )
            except OSError as e:
                res.errors[f"connect: {e.__class__.__name__}"] += 1
                await asyncio.sleep(0.05)
                continue
            try:
                await asyncio.wait_for(
                    asyncio.shield(self.lost), max(0.0, end - time.perf_counter()) + 1
                )
            except TimeoutError:
                self._close()
                await self.lost
            if time.perf_counter() < end:
                await asyncio.sleep(0.05)


async def _fuzzer(cfg: LoadConfig, res: LoadResult, quota: int, template: bytes, seed: int) -> None:
    rng = random.Random(seed)
    framing = get_framing(cfg.framing)
    tpdu = Tpdu(1, 0) if cfg.framing == "len2-tpdu" else None
    sent = 0
    while sent < quota:
        try:
            reader, writer = await _open(cfg)
        except OSError:
            res.malformed["connect_failed"] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while sent < quota:
                payload = malformed_frames(rng, template)
                writer.write(framing.frame(payload, tpdu))
                sent += 1
                res.malformed["sent"] += 1
                try:
                    async with asyncio.timeout(cfg.timeout):
                        frame = await read_framed(reader, framing)
                except FramingError:
                    res.malformed["clean_close"] += 1
                    break
                except TimeoutError:
                    res.malformed["no_reaction"] += 1
                    break
                try:
                    rc = messages.decode(frame.payload).get("39")
                except Iso8583Error:
                    rc = "undecodable"
                res.malformed["rc30" if rc == "30" else f"other:{rc}"] += 1
        except OSError:
            res.malformed["clean_close"] += 1
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def run_load(cfg: LoadConfig) -> LoadResult:
    """Run the load (and the fuzzer when `cfg.malformed`), return the measured result."""
    from rig.profiles import ProfileError, load_all

    try:
        profile = load_all(cfg.profiles)[cfg.profile]
    except (ProfileError, KeyError):
        raise LoadError(f"card profile {cfg.profile!r} not found in {cfg.profiles}") from None
    try:
        get_framing(cfg.framing)
    except FramingError as e:
        raise LoadError(str(e)) from None
    now = datetime.now(UTC)
    tag = "".join(random.choices(string.ascii_uppercase, k=2))
    if cfg.rate is not None and cfg.rate <= 0:
        raise LoadError("rate must be > 0 requests/s (or None for closed loop)")
    n = cfg.connections
    spread = n / cfg.rate if cfg.rate else 0.0
    terms = [_Terminal(cfg, profile, f"L{tag}{i:05d}", now, spread * i / n) for i in range(n)]
    res = LoadResult(n, max(0.0, cfg.duration - cfg.warmup), rate=cfg.rate)
    start = time.perf_counter() + 0.05
    end = start + cfg.duration
    jobs: list[Any] = [t.run(res, start, end) for t in terms]
    if cfg.malformed:
        seed = cfg.seed if cfg.seed is not None else secrets.randbits(32)
        template = messages.encode(terms[0].doc)
        n = max(1, cfg.fuzz_connections)
        jobs += [
            _fuzzer(cfg, res, cfg.malformed // n + (i < cfg.malformed % n), template, seed + i)
            for i in range(n)
        ]
    loop = asyncio.get_running_loop()
    sweeper = loop.create_task(_sweep(terms, end))
    ticker = loop.create_task(loop_lag_ticker(res.stalls))
    res.stalls.watch_gc()
    try:
        await asyncio.gather(*jobs)
    finally:
        res.stalls.unwatch_gc()
        sweeper.cancel()
        ticker.cancel()
    res.duration_s = max(1e-9, min(time.perf_counter(), end) - start - cfg.warmup)
    return res


async def _sweep(terms: list[_Terminal], end: float) -> None:
    """Request time-outs for every load connection, checked four times a second."""
    while time.perf_counter() < end + 1:
        await asyncio.sleep(0.25)
        now = time.perf_counter()
        for t in terms:
            t.check_timeout(now)


# ---- bare echo server ------------------------------------------------------------------------


class _Echo(asyncio.Protocol):
    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self.reader = framing.reader()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except FramingError:
            self.transport.close()
            return
        for f in frames:
            self.transport.write(  # type: ignore[attr-defined]
                self.framing.frame(f.payload, f.tpdu.swapped() if f.tpdu else None)
            )


async def echo_server(host: str, port: int, framing: str) -> tuple[asyncio.AbstractServer, str]:
    """A bare server with the host's framing that writes every frame back (the baseline)."""
    fr = get_framing(framing)
    server = await asyncio.get_running_loop().create_server(lambda: _Echo(fr), host, port)
    bound = server.sockets[0].getsockname()
    return server, f"{bound[0]}:{bound[1]}"


async def _echo_main(listen: str, framing: str) -> None:
    from rig.bench.sim.common import announce_ready

    host, _, port = listen.rpartition(":")
    server, address = await echo_server(host, int(port), framing)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    announce_ready(listen=address)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Bare framed echo server (load baseline).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    echo = sub.add_parser("echo")
    echo.add_argument("--listen", default="127.0.0.1:0")
    echo.add_argument("--framing", default="len2")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_echo_main(args.listen, args.framing))


if __name__ == "__main__":
    main()
