"""Runtime control of a running host: JSON lines over TCP on 127.0.0.1, and a Python client.

Requests are one JSON object per line, `{"cmd": NAME, ...}`; each gets one line back,
`{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`. Commands:
`status`, `force` (rc, delay_ms, no_answer, drop_connection, malformed, count), `pause`,
`resume`, `clear`, `journal` (limit; always masked), `diag` (stall diagnostics since the last
reset; `reset`), `reconcile` (terminal, batch: host totals against the terminal's last 0500, in
balance or not, the differing transactions; masked). Tests and `rig host ctl` use `HostControl`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rig.host.server import HostServer

ACTION_FIELDS = ("rc", "delay_ms", "no_answer", "drop_connection", "malformed")
COMMANDS = ("status", "force", "pause", "resume", "clear", "journal", "diag", "reconcile")
_MAX_LINE = 65536


class ControlError(RuntimeError):
    """The control endpoint refused a command or cannot be reached; the message says why."""


def _action_kwargs(req: dict[str, Any]) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    rc = req.get("rc")
    if rc is not None:
        if not (isinstance(rc, str) and len(rc) == 2 and rc.isalnum()):
            raise ControlError(f"rc {rc!r} is not a 2-character response code such as '05'")
        kw["rc"] = rc
    delay = req.get("delay_ms", 0)
    if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay <= 600_000:
        raise ControlError(f"delay_ms {delay!r} must be an integer 0..600000")
    kw["delay_ms"] = delay
    for flag in ("no_answer", "drop_connection", "malformed"):
        value = req.get(flag, False)
        if not isinstance(value, bool):
            raise ControlError(f"{flag} must be true or false, not {value!r}")
        kw[flag] = value
    return kw


class ControlServer:
    """The host side: a JSON-lines listener that acts on a `HostServer`."""

    def __init__(self, host: HostServer) -> None:
        self.host = host
        self._server: asyncio.base_events.Server | None = None

    async def start(self, address: str, port: int) -> str:
        """Listen (loopback only is recommended); returns 'HOST:PORT'."""
        self._server = await asyncio.start_server(self._client, address, port, limit=_MAX_LINE)
        bound = self._server.sockets[0].getsockname()
        return f"{bound[0]}:{bound[1]}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write((json.dumps(self.execute(line)) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    def execute(self, line: bytes) -> dict[str, Any]:
        """One command line -> one reply object (never raises)."""
        try:
            req = json.loads(line)
        except ValueError:
            return {
                "ok": False,
                "error": 'a command is one JSON object per line: {"cmd": "status"}',
            }
        if not isinstance(req, dict) or req.get("cmd") not in COMMANDS:
            return {"ok": False, "error": f"unknown command; valid commands: {', '.join(COMMANDS)}"}
        try:
            return {"ok": True, "result": getattr(self, "_" + req["cmd"])(req)}
        except ControlError as e:
            return {"ok": False, "error": str(e)}

    def _status(self, req: dict[str, Any]) -> dict[str, Any]:
        return self.host.status()

    def _force(self, req: dict[str, Any]) -> dict[str, Any]:
        from rig.host.rules import Action

        count = req.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10_000:
            raise ControlError(f"count {count!r} must be an integer 1..10000")
        mti = req.get("mti")
        if mti is not None and not (isinstance(mti, str) and len(mti) == 4 and mti.isdigit()):
            raise ControlError(f"mti {mti!r} must be 4 digits such as '0200'")
        kw = _action_kwargs(req)
        self.host.rules.force_next(Action(**kw), count, mti=mti)
        return {"forced": kw, "count": count, "mti": mti, "pending": self.host.rules.forced_pending}

    def _pause(self, req: dict[str, Any]) -> dict[str, Any]:
        self.host.rules.pause(True)
        return {"paused": True}

    def _resume(self, req: dict[str, Any]) -> dict[str, Any]:
        self.host.rules.pause(False)
        return {"paused": False}

    def _clear(self, req: dict[str, Any]) -> dict[str, Any]:
        self.host.rules.clear_forced()
        self.host.rules.pause(False)
        return {"cleared": True, "paused": False}

    def _diag(self, req: dict[str, Any]) -> dict[str, Any]:
        reset = req.get("reset", False)
        if not isinstance(reset, bool):
            raise ControlError(f"reset must be true or false, not {reset!r}")
        snap = self.host.stalls.snapshot()
        if reset:
            self.host.stalls.reset()
        return snap

    def _journal(self, req: dict[str, Any]) -> list[dict[str, Any]]:
        limit = req.get("limit")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ControlError(f"limit {limit!r} must be a positive integer")
        rows = self.host.journal.export(masked=True)
        return rows[-limit:] if limit else rows

    def _reconcile(self, req: dict[str, Any]) -> dict[str, Any]:
        from rig.evidence.redact import redact_value
        from rig.host.reconcile import batch_report

        terminal, batch = _batch_key(req.get("terminal"), req.get("batch"))
        entries = self.host.journal.entries(terminal_id=terminal, batch=batch)
        return redact_value(batch_report(terminal, batch, entries))


def _batch_key(terminal: Any, batch: Any) -> tuple[str, str]:
    """(DE41 terminal id, 6-digit DE60 batch) from a `reconcile` command; ControlError if bad."""
    if not isinstance(terminal, str) or len(terminal) != 8 or not terminal.isprintable():
        raise ControlError(f"terminal {terminal!r} must be the 8-character DE41 terminal id")
    text = str(batch) if isinstance(batch, int) and not isinstance(batch, bool) else batch
    if not (isinstance(text, str) and text.isdecimal() and text.isascii() and len(text) <= 6):
        raise ControlError(f"batch {batch!r} must be the DE60 batch number, 1-6 digits (000007)")
    return terminal, text.zfill(6)


class HostControl:
    """Blocking Python client of a host's control endpoint ('HOST:PORT')."""

    def __init__(self, address: str, timeout: float = 5.0) -> None:
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ControlError(f"control address {address!r} is not HOST:PORT")
        self.address = (host, int(port))
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: Any = None

    def _connect(self) -> None:
        try:
            self._sock = socket.create_connection(self.address, timeout=self.timeout)
        except OSError as e:
            raise ControlError(
                f"cannot reach the host control endpoint {self.address[0]}:{self.address[1]} "
                f"({e}); is `rig host serve` running?"
            ) from None
        self._file = self._sock.makefile("rwb")

    def call(self, cmd: str, **args: Any) -> Any:
        """Send one command; the result, or ControlError with the host's message."""
        if self._sock is None:
            self._connect()
        try:
            self._file.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
            self._file.flush()
            line = self._file.readline()
        except OSError as e:
            self.close()
            raise ControlError(f"control connection failed: {e}") from None
        if not line:
            self.close()
            raise ControlError("the host closed the control connection")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise ControlError(reply.get("error", "command refused"))
        return reply["result"]

    def status(self) -> dict[str, Any]:
        return self.call("status")

    def force(
        self,
        rc: str | None = None,
        *,
        delay_ms: int = 0,
        no_answer: bool = False,
        drop_connection: bool = False,
        malformed: bool = False,
        count: int = 1,
        mti: str | None = None,
    ) -> dict[str, Any]:
        """Force the next `count` responses (of MTI `mti` when given): code and/or behaviour."""
        return self.call(
            "force",
            mti=mti,
            rc=rc,
            delay_ms=delay_ms,
            no_answer=no_answer,
            drop_connection=drop_connection,
            malformed=malformed,
            count=count,
        )

    def pause(self) -> dict[str, Any]:
        return self.call("pause")

    def resume(self) -> dict[str, Any]:
        return self.call("resume")

    def clear(self) -> dict[str, Any]:
        return self.call("clear")

    def diag(self, reset: bool = False) -> dict[str, Any]:
        """Stall diagnostics since the last reset (GC, loop lag, commits, checkpoints)."""
        return self.call("diag", reset=reset)

    def journal(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Journal rows, PANs masked (newest last)."""
        return self.call("journal", limit=limit)

    def reconcile(self, terminal: str, batch: str | int) -> dict[str, Any]:
        """A terminal batch: host totals, the terminal's last 0500 totals, `in_balance` (None
        before any 0500) and the differences with the transactions that explain them."""
        return self.call("reconcile", terminal=terminal, batch=batch)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self._file is not None:
                self._file.close()
            if self._sock is not None:
                self._sock.close()
        self._sock = None
        self._file = None

    def __enter__(self) -> HostControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HostProcess:
    """A host started as its own process (`python -m rig.host.cli serve ... --json`).

    Reads the readiness line; `stop()` sends SIGTERM, `kill()` SIGKILL. Used by tests and the
    benchmark so the host never shares a process (or a core's event loop) with its clients.
    """

    def __init__(
        self,
        data: str | os.PathLike[str],
        *args: str,
        timeout: float = 20.0,
        command: list[str] | None = None,
    ) -> None:
        # `command` replaces `python -m rig.host.cli`: benchmarks/host_ablation.py uses it.
        head = command if command is not None else [sys.executable, "-m", "rig.host.cli"]
        argv = [*head, "serve", "--data", str(data), "--json"]
        self.proc = subprocess.Popen(
            [*argv, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = _readline(self.proc, timeout)
        try:
            info = json.loads(line)
        except ValueError:
            info = {}
        if not info.get("ready"):
            err = info.get("error") or self._stderr()
            self.kill()
            raise ControlError(f"host did not start: {err or line!r}")
        self.pid: int = info["pid"]
        self.endpoints: dict[str, Any] = info["endpoints"]
        self.address: str = self.endpoints["listen"]
        self.control_address: str = self.endpoints["control"]

    def _stderr(self) -> str:
        with contextlib.suppress(Exception):
            self.proc.wait(2)
            return (self.proc.stderr.read() or "").strip()  # type: ignore[union-attr]
        return ""

    def listener(self, framing: str, tls: bool = False) -> tuple[str, int]:
        """(host, port) of the listener with this framing and TLS setting."""
        for item in self.endpoints["listeners"]:
            if item["framing"] == framing and item["tls"] == tls:
                host, _, port = item["address"].rpartition(":")
                return host, int(port)
        raise ControlError(f"no {framing} listener with tls={tls}")

    def control(self) -> HostControl:
        return HostControl(self.control_address)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; SIGKILL when it does not stop in time. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_pipes()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL (a power cut for the host) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(Exception):
                pipe.close()  # type: ignore[union-attr]

    def __enter__(self) -> HostProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
    try:
        if not sel.select(timeout):
            return ""
        return proc.stdout.readline()  # type: ignore[union-attr]
    finally:
        sel.close()
