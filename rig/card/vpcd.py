"""The card side of the vsmartcard vpcd protocol: one TCP link to pcscd's vpcd driver.

vpcd listens (35963 for reader "... 00 00", 35964 for "... 00 01"); the card connects, and the
card is present while the link is open. Every message is a 2-byte big-endian length and a
payload. A 1-byte payload from vpcd is a control code (00 power off, 01 power on, 02 reset,
04 get ATR, answered with the ATR as a normal message); a longer payload is a command APDU,
answered with the response APDU. The card ACKs at once (TCP_QUICKACK before every read): without
it every command waited ~44 ms for a delayed ACK against vpcd's Nagle-enabled socket (measured
with Debian vsmartcard-vpcd 3.3). The card also sets TCP_NODELAY and answers in one write.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable

from rig.card.application import CardApplication

CTRL_OFF = 0x00
CTRL_ON = 0x01
CTRL_RESET = 0x02
CTRL_ATR = 0x04
CONTROL_NAMES = {
    CTRL_OFF: "power off",
    CTRL_ON: "power on",
    CTRL_RESET: "reset",
    CTRL_ATR: "get ATR",
}

CLOSED = "closed"
DROPPED = "dropped"

_SW_INTERNAL = b"\x6f\x00"
_TCP = socket.IPPROTO_TCP
_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)
_WAITALL = socket.MSG_WAITALL
_ABORT = struct.pack("ii", 1, 0)
"""SO_LINGER on, 0 s: closing resets the connection, so vpcd's next read fails at once."""


class VpcdError(ConnectionError):
    """vpcd could not be reached, or the link broke in a way the caller must report."""


class VpcdLink:
    """One open link to vpcd; `serve` answers vpcd until the link closes or the gate drops it."""

    def __init__(self, sock: socket.socket, endpoint: str) -> None:
        self.endpoint = endpoint
        self._sock = sock
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def connect(
        cls, host: str, port: int, *, timeout: float = 5.0, interval: float = 0.05
    ) -> VpcdLink:
        """Connect to vpcd, retrying until `timeout` (pcscd may still be starting)."""
        deadline = time.monotonic() + timeout
        last: OSError | None = None
        while True:
            try:
                sock = socket.create_connection((host, port), timeout=max(interval, 1.0))
            except OSError as exc:
                last = exc
                if time.monotonic() >= deadline:
                    break
                time.sleep(interval)
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return cls(sock, f"{host}:{port}")
        raise VpcdError(
            f"cannot reach vpcd at {host}:{port} within {timeout:g} s ({last}): "
            "start pcscd with the vsmartcard-vpcd driver (rig.bench.pcscd.ensure_pcscd)"
        )

    def serve(
        self,
        app: CardApplication,
        *,
        gate: Callable[[bytes], bool] | None = None,
        on_control: Callable[[int], None] | None = None,
        on_exchange: Callable[[bytes, bytes], None] | None = None,
        on_error: Callable[[bytes, Exception], None] | None = None,
    ) -> str:
        """Answer vpcd until the link closes (CLOSED) or `gate(apdu)` refuses a command (DROPPED).

        `gate` may block (a mute card); an application that raises answers 6F00 and is reported
        to `on_error`.
        """
        sock = self._sock
        recv = sock.recv
        send = sock.sendall
        process = app.process

        def read(n: int) -> bytes:
            sock.setsockopt(_TCP, _QUICKACK, 1)
            data = recv(n, _WAITALL)
            while 0 < len(data) < n:
                more = recv(n - len(data), _WAITALL)
                if not more:
                    break
                data += more
            return data

        try:
            while True:
                head = read(2)
                if len(head) < 2:
                    return CLOSED
                n = (head[0] << 8) | head[1]
                msg = read(n) if n else b""
                if len(msg) < n:
                    return CLOSED
                if n == 1:
                    code = msg[0]
                    if code == CTRL_ATR:
                        atr = app.atr
                        send(len(atr).to_bytes(2, "big") + atr)
                    elif code in (CTRL_ON, CTRL_OFF, CTRL_RESET):
                        app.reset()
                    if on_control is not None:
                        on_control(code)
                    continue
                if n == 0:
                    continue
                if gate is not None and not gate(msg):
                    return DROPPED
                try:
                    resp = process(msg)
                except Exception as exc:
                    resp = _SW_INTERNAL
                    if on_error is not None:
                        on_error(msg, exc)
                send(len(resp).to_bytes(2, "big") + resp)
                if on_exchange is not None:
                    on_exchange(msg, resp)
        except (OSError, ValueError):
            return CLOSED

    def close(self) -> None:
        """Close the link (from any thread): vpcd sees the card removed on its next poll."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)
            self._sock.shutdown(socket.SHUT_RD)
        with contextlib.suppress(OSError):
            self._sock.close()

    @property
    def closed(self) -> bool:
        return self._closed
