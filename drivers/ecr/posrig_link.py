"""The rig's reference ECR link on a serial port: framed JSON messages, stop-and-wait with ACK/NAK.

Opened with `serial.serial_for_url`, so a device path, a pty link, `rfc2217://` or `socket://`
all work. Each frame sent waits for ACK; a NAK or no answer within `ack_timeout` causes a
retransmission, at most `max_retransmissions` times. Received frames are ACKed when sound and
NAKed when their LRC is wrong, they hold a control byte, exceed `max_payload` or stop for longer
than `inter_char_timeout`. A frame byte-identical to the last one delivered within
`duplicate_window` seconds is the peer's retransmission after a lost ACK: it is ACKed again and
not delivered twice (every message carries a fresh sequence number, so real repeats differ).
Everything that crosses the port, and every failure, goes to the transcript.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import serial

from drivers.ecr import (
    EcrError,
    EcrMessageError,
    EcrNakLimit,
    EcrPortGone,
    EcrTimeout,
    Message,
)
from drivers.ecr import messages as msgs
from drivers.ecr.framing import (
    ACK,
    DEFAULT_MAX_PAYLOAD,
    NAK,
    NAK_KINDS,
    EventKind,
    FrameDecoder,
    FrameEvent,
    encode_frame,
)
from rig.evidence import Direction, Transcript, null_transcript

DEFAULT_ACK_TIMEOUT = 1.0
DEFAULT_INTER_CHAR_TIMEOUT = 0.2
DEFAULT_RESPONSE_TIMEOUT = 60.0
DEFAULT_MAX_RETRANSMISSIONS = 3
DEFAULT_DUPLICATE_WINDOW = 10.0
_CONTROL_NAMES = {ACK: "ACK", NAK: "NAK"}


class PosrigEcrLink:
    """`EcrLink` speaking the rig's reference protocol (docs/ecr-protocol.md) over pyserial."""

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        inter_char_timeout: float = DEFAULT_INTER_CHAR_TIMEOUT,
        response_timeout: float = DEFAULT_RESPONSE_TIMEOUT,
        max_retransmissions: int = DEFAULT_MAX_RETRANSMISSIONS,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        duplicate_window: float = DEFAULT_DUPLICATE_WINDOW,
        transcript: Transcript | None = None,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.ack_timeout = ack_timeout
        self.inter_char_timeout = inter_char_timeout
        self.response_timeout = response_timeout
        self.max_retransmissions = max_retransmissions
        self.max_payload = max_payload
        self.duplicate_window = duplicate_window
        self.transcript = transcript if transcript is not None else null_transcript("ecr")
        self.stats = {
            "retransmissions": 0,
            "naks_sent": 0,
            "naks_received": 0,
            "garbage_bytes": 0,
            "duplicates": 0,
        }
        self._ser: serial.SerialBase | None = None
        self._decoder = FrameDecoder(max_payload)
        self._inbox: deque[Message | EcrMessageError] = deque()
        self._held: deque[Message] = deque()
        self._last: tuple[bytes, float] | None = None
        self._last_rx = 0.0
        self._read_any = False
        self._seq = 1 + secrets.randbelow(msgs.SEQ_MAX)

    def open(self) -> None:
        """Open the port 8N1; raises EcrPortGone naming the port when it cannot be opened."""
        if self._ser is not None:
            return
        try:
            self._ser = serial.serial_for_url(
                self.url,
                baudrate=self.baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=0,
                write_timeout=max(1.0, self.ack_timeout),
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            self.transcript.record(Direction.EVENT, None, {"open": self.url}, error=str(exc))
            raise EcrPortGone(self.url, f"cannot open: {exc}") from exc
        self._decoder = FrameDecoder(self.max_payload)
        self.transcript.record(Direction.EVENT, None, {"open": self.url, "baudrate": self.baudrate})

    def close(self) -> None:
        """Release the port; safe to call twice."""
        if self._ser is not None:
            ser, self._ser = self._ser, None
            with contextlib.suppress(serial.SerialException, OSError):
                ser.close()
            self.transcript.record(Direction.EVENT, None, {"close": self.url})

    def __enter__(self) -> PosrigEcrLink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, message: Mapping[str, Any], timeout: float | None = None) -> Message:
        """Send a request under a fresh sequence number and return the response echoing it.

        Other responses (stale sequence numbers) are recorded and dropped; requests the terminal
        sends meanwhile are kept for `receive()`.
        """
        req = dict(message)
        req["seq"] = self._next_seq()
        self.send(req)
        limit = self.response_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            try:
                got = self._next_message(deadline)
            except EcrTimeout:
                error = f"no response to {req.get('cmd')!r} (seq {req['seq']}) within {limit} s"
                self.transcript.record(Direction.EVENT, None, {"request": req}, error=error)
                raise EcrTimeout(
                    f"ECR {self.url}: {error}; check the terminal is in ECR mode and awake"
                ) from None
            if "cmd" in got:
                self._held.append(got)
            elif got.get("seq") == req["seq"] and got.get("rsp") in (req.get("cmd"), "error"):
                return got
            else:
                self.transcript.record(
                    Direction.EVENT,
                    None,
                    got,
                    error=f"response does not match request seq {req['seq']}; dropped",
                )

    def send(self, message: Mapping[str, Any]) -> None:
        """Frame one message (a sequence number is added if missing) and wait for its ACK."""
        ser = self._port()
        msg = dict(message)
        if "seq" not in msg:
            msg["seq"] = self._next_seq()
        try:
            frame = encode_frame(msgs.encode(msg), self.max_payload)
        except EcrError as exc:
            self.transcript.record(Direction.EVENT, None, {"send": str(msg)[:200]}, error=str(exc))
            raise
        self._drain()
        outcome = "timeout"
        for attempt in range(self.max_retransmissions + 1):
            if attempt:
                self.stats["retransmissions"] += 1
                self.transcript.record(
                    Direction.EVENT, None, {"retransmission": attempt, "after": outcome}
                )
            self._write(ser, frame, msg)
            outcome = self._await_control(time.monotonic() + self.ack_timeout)
            if outcome == "ack":
                return
        tries = self.max_retransmissions + 1
        if outcome == "nak":
            error = f"frame NAKed {tries} times (last attempt NAKed)"
            self.transcript.record(Direction.EVENT, None, msg, error=error)
            raise EcrNakLimit(
                f"ECR {self.url}: {msg.get('cmd') or msg.get('rsp')!r} {error}; the terminal "
                "rejects the frames: check the line (noise, baud rate) and the maximum payload"
            )
        error = f"no ACK within {self.ack_timeout} s on any of {tries} attempts"
        self.transcript.record(Direction.EVENT, None, msg, error=error)
        raise EcrTimeout(
            f"ECR {self.url}: {error}; check the cable and that the terminal is powered"
        )

    def receive(self, timeout: float | None = None) -> Message:
        """Return the next message from the terminal; EcrTimeout when none within `timeout`."""
        self._port()
        if self._held:
            return self._held.popleft()
        limit = self.response_timeout if timeout is None else timeout
        try:
            return self._next_message(time.monotonic() + limit)
        except EcrTimeout:
            raise EcrTimeout(f"ECR {self.url}: no message within {limit} s") from None

    def _next_message(self, deadline: float) -> Message:
        while not self._inbox:
            if time.monotonic() >= deadline and not self._decoder.in_frame:
                raise EcrTimeout(f"ECR {self.url}: timeout")
            self._pump(deadline)
        item = self._inbox.popleft()
        if isinstance(item, EcrMessageError):
            raise item
        return item

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = seq % msgs.SEQ_MAX + 1
        return seq

    def _port(self) -> serial.SerialBase:
        if self._ser is None:
            raise EcrError(f"ECR {self.url}: the link is not open; call open() first")
        return self._ser

    def _drain(self) -> None:
        """Handle what is already waiting (stale ACKs, frames) before a new frame goes out."""
        self._pump(time.monotonic(), quick=True)
        while self._read_any:
            self._pump(time.monotonic(), quick=True)

    def _await_control(self, deadline: float) -> str:
        while True:
            for kind in self._pump(deadline):
                if kind == EventKind.ACK:
                    return "ack"
                if kind == EventKind.NAK:
                    return "nak"
            if time.monotonic() >= deadline:
                return "timeout"

    def _pump(self, deadline: float, quick: bool = False) -> list[EventKind]:
        """Read once (up to the deadline or the inter-character timeout, or not at all with
        `quick`), handle the events and return the ACK/NAK kinds seen."""
        ser = self._port()
        now = time.monotonic()
        wait = 0.0 if quick else max(0.0, deadline - now)
        if self._decoder.in_frame:
            wait = min(wait, max(0.0, self._last_rx + self.inter_char_timeout - now))
        try:
            ser.timeout = wait
            data = ser.read(max(1, ser.in_waiting))
        except (serial.SerialException, OSError) as exc:
            self.transcript.record(Direction.EVENT, None, {"read": self.url}, error=str(exc))
            raise EcrPortGone(self.url, f"read failed: {exc}") from exc
        now = time.monotonic()
        self._read_any = bool(data)
        if data:
            self._last_rx = now
            events = self._decoder.feed(data)
        elif self._decoder.in_frame and now - self._last_rx >= self.inter_char_timeout:
            events = self._decoder.timeout()
        else:
            events = []
        return [k for ev in events if (k := self._handle(ser, ev)) is not None]

    def _handle(self, ser: serial.SerialBase, ev: FrameEvent) -> EventKind | None:
        if ev.kind in (EventKind.ACK, EventKind.NAK):
            if ev.kind == EventKind.NAK:
                self.stats["naks_received"] += 1
            self.transcript.record(Direction.RX, ev.raw, {"control": _CONTROL_NAMES[ev.raw[0]]})
            return ev.kind
        if ev.kind == EventKind.GARBAGE:
            self.stats["garbage_bytes"] += ev.size
            self.transcript.record(Direction.RX, ev.raw, None, error=ev.reason)
            return None
        if ev.kind in NAK_KINDS:
            self.stats["naks_sent"] += 1
            self.transcript.record(Direction.RX, ev.raw, {"frame": ev.kind.value}, error=ev.reason)
            self._write(ser, bytes((NAK,)), {"control": "NAK"})
            return None
        now = time.monotonic()
        duplicate = (
            self._last is not None
            and self._last[0] == ev.payload
            and now - self._last[1] <= self.duplicate_window
        )
        self._last = (ev.payload, now)
        try:
            decoded: Message | EcrMessageError = msgs.decode(ev.payload)
        except EcrMessageError as exc:
            decoded = exc
        if isinstance(decoded, EcrMessageError):
            self.transcript.record(Direction.RX, ev.raw, None, error=str(decoded))
        else:
            self.transcript.record(Direction.RX, ev.raw, decoded)
        self._write(ser, bytes((ACK,)), {"control": "ACK"})
        if duplicate:
            self.stats["duplicates"] += 1
            self.transcript.record(
                Direction.EVENT,
                None,
                {"duplicate": True},
                error="repeated frame (our ACK was lost): acknowledged again, not delivered",
            )
        else:
            self._inbox.append(decoded)
        return None

    def _write(self, ser: serial.SerialBase, data: bytes, decoded: Any) -> None:
        try:
            ser.write(data)
            ser.flush()
        except (serial.SerialException, OSError) as exc:
            self.transcript.record(Direction.TX, data, decoded, error=str(exc))
            raise EcrPortGone(self.url, f"write failed: {exc}") from exc
        self.transcript.record(Direction.TX, data, decoded)
