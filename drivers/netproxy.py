"""Client for the network fault proxy's control port (JSON lines over TCP).

Each method sends one command and returns the proxy's reply (which carries its counters);
a refused command raises `FaultProxyError` with the proxy's reason.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from rig.evidence import Direction, Transcript, null_transcript


class FaultProxyError(RuntimeError):
    """The control port is unreachable or the proxy refused a command."""


class FaultProxyControl:
    """Sets faults on a running `rig.bench.sim.faultproxy` via its control address 'host:port'."""

    def __init__(
        self, address: str, *, timeout: float = 5.0, transcript: Transcript | None = None
    ) -> None:
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise FaultProxyError(f"control address {address!r} is not HOST:PORT")
        self.address = address
        self._target = (host, int(port))
        self.timeout = timeout
        self.transcript = transcript or null_transcript("faultproxy")
        self._sock: socket.socket | None = None
        self._file: Any = None

    def _connect(self) -> None:
        try:
            self._sock = socket.create_connection(self._target, timeout=self.timeout)
        except OSError as exc:
            raise FaultProxyError(
                f"fault proxy control {self.address}: cannot connect ({exc}); is the proxy up?"
            ) from exc
        self._file = self._sock.makefile("rb")

    def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Send one command object and return the reply."""
        try:
            if self._sock is None:
                self._connect()
            assert self._sock is not None
            self._sock.sendall(json.dumps(cmd).encode() + b"\n")
            line = self._file.readline()
            if not line:
                raise OSError("control connection closed by the proxy")
            reply = json.loads(line)
        except (OSError, ValueError) as exc:
            self.close()
            message = f"fault proxy control {self.address}: {cmd.get('cmd')} failed ({exc})"
            self.transcript.record(Direction.EVENT, None, cmd, error=message)
            raise FaultProxyError(message) from exc
        if not reply.get("ok"):
            message = f"fault proxy refused {cmd}: {reply.get('error')}"
            self.transcript.record(Direction.EVENT, None, cmd, error=message)
            raise FaultProxyError(message)
        self.transcript.record(Direction.EVENT, None, cmd)
        return reply

    def delay(self, ms: int, direction: str = "both") -> dict[str, Any]:
        return self.command({"cmd": "delay", "ms": ms, "direction": direction})

    def drop(self, when: str = "now", direction: str = "both") -> dict[str, Any]:
        """Close terminal connections now, or the one carrying the next frame ('next_frame')."""
        return self.command({"cmd": "drop", "when": when, "direction": direction})

    def blackhole(self, on: bool = True, direction: str = "both") -> dict[str, Any]:
        return self.command({"cmd": "blackhole", "on": on, "direction": direction})

    def truncate_next(self, k: int, direction: str = "to_host") -> dict[str, Any]:
        return self.command({"cmd": "truncate_next", "k": k, "direction": direction})

    def corrupt_next(
        self, direction: str = "to_host", *, offset: int = -1, xor: int = 0xFF
    ) -> dict[str, Any]:
        return self.command(
            {"cmd": "corrupt_next", "direction": direction, "offset": offset, "xor": xor}
        )

    def clear(self) -> dict[str, Any]:
        return self.command({"cmd": "clear"})

    def status(self) -> dict[str, Any]:
        return self.command({"cmd": "status"})

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._file.close()
                self._sock.close()
            except OSError:
                pass
        self._sock = self._file = None

    def __enter__(self) -> FaultProxyControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
