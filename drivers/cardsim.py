"""Control client for the card simulator's control port: insert, remove, mute, faults, swap.

The simulator (`python -m rig.bench.sim.cardsim`) answers JSON lines over TCP; on a lab bench
the same calls drive a robotic card inserter's driver. Every request and reply is recorded.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from rig.evidence import Direction, Transcript, null_transcript


class CardSimulatorError(Exception):
    """The simulator refused a request, or cannot be reached; `endpoint` names it."""

    def __init__(self, message: str, *, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class CardSimulatorControl:
    """Client of one card simulator's control endpoint ("host:port")."""

    def __init__(
        self, endpoint: str, *, timeout: float = 10.0, transcript: Transcript | None = None
    ) -> None:
        host, sep, port = endpoint.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise CardSimulatorError(
                f"control endpoint {endpoint!r}: expected host:port, e.g. 127.0.0.1:40123",
                endpoint=endpoint,
            )
        self.endpoint = endpoint
        self._address = (host, int(port))
        self._timeout = timeout
        self._transcript = transcript if transcript is not None else null_transcript("cardsim")
        self._sock: socket.socket | None = None
        self._rfile: Any = None

    def _connect(self) -> None:
        try:
            sock = socket.create_connection(self._address, timeout=self._timeout)
        except OSError as exc:
            raise CardSimulatorError(
                f"card simulator at {self.endpoint} is not reachable ({exc}): "
                "is `python -m rig.bench.sim.cardsim` running?",
                endpoint=self.endpoint,
            ) from exc
        self._sock = sock
        self._rfile = sock.makefile("rb")

    def request(self, cmd: str, **params: Any) -> dict[str, Any]:
        """Send one request; the simulator's status after it. CardSimulatorError on refusal."""
        line = json.dumps({"cmd": cmd, **params}).encode() + b"\n"
        self._transcript.record(Direction.TX, line, {"cmd": cmd, **params})
        reply_line = b""
        for attempt in (1, 2):
            if self._sock is None:
                self._connect()
            assert self._sock is not None
            problem = "closed the connection: has it exited?"
            try:
                self._sock.sendall(line)
                reply_line = self._rfile.readline()
            except OSError as exc:
                problem = f"dropped the connection ({exc})"
            if reply_line:
                break
            self.close()
            if attempt == 2:
                err = f"card simulator at {self.endpoint} {problem}"
                self._transcript.record(Direction.RX, None, None, error=err)
                raise CardSimulatorError(err, endpoint=self.endpoint)
        try:
            reply = json.loads(reply_line)
        except json.JSONDecodeError as exc:
            err = f"card simulator at {self.endpoint} sent a line that is not JSON: {exc.msg}"
            self._transcript.record(Direction.RX, reply_line, None, error=err)
            raise CardSimulatorError(err, endpoint=self.endpoint) from exc
        self._transcript.record(Direction.RX, reply_line, reply)
        if not isinstance(reply, dict) or not reply.get("ok"):
            err = reply.get("error") if isinstance(reply, dict) else None
            raise CardSimulatorError(
                f"card simulator at {self.endpoint} refused {cmd}: {err or reply!r}",
                endpoint=self.endpoint,
            )
        status = reply.get("status")
        return status if isinstance(status, dict) else {}

    def insert(self) -> dict[str, Any]:
        """Insert the card (returns once the reader has powered it)."""
        return self.request("insert")

    def remove(self) -> dict[str, Any]:
        """Pull the card."""
        return self.request("remove")

    def mute(self, on: bool, timeout: float | None = None) -> dict[str, Any]:
        """Make the card stop (or resume) answering; `timeout`: the reader's waiting time, s."""
        params: dict[str, Any] = {"on": on}
        if timeout is not None:
            params["timeout"] = timeout
        return self.request("mute", **params)

    def status(self) -> dict[str, Any]:
        """present, powered, muted, held, apdus, reader, vpcd, app, profile, faults, injected."""
        return self.request("status")

    def fault(self, kind: str, **params: Any) -> dict[str, Any]:
        """Arm a run-time fault: mute (timeout), delay (ms, ins, once), sw (ins, sw, once),
        corrupt_cryptogram (once), remove_at (n). See `rig.card.faults`."""
        return self.request("fault", kind=kind, **params)

    def clear_faults(self) -> dict[str, Any]:
        """Disarm every fault and unmute the card."""
        return self.request("clear_faults")

    def swap(
        self, profile: str, *, insert: bool = True, interface: str | None = None
    ) -> dict[str, Any]:
        """Pull the card and put the card of another profile (a file path) in the reader."""
        params: dict[str, Any] = {"profile": str(profile), "insert": insert}
        if interface is not None:
            params["interface"] = interface
        return self.request("swap", **params)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                self._rfile.close()
            finally:
                sock.close()

    def __enter__(self) -> CardSimulatorControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
