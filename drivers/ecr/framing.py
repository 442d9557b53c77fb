"""The rig's reference ECR framing: STX payload ETX LRC, acknowledged by ACK or NAK.

LRC is the XOR of every byte after STX up to and including ETX. There is no DLE stuffing: a
payload is text (bytes 0x20..0xFF, i.e. printable ASCII or UTF-8), so STX, ETX, ACK, NAK and
every other control byte can never occur inside it; `encode_frame` refuses one with the offset.
Pure codec, no I/O: `FrameDecoder` turns a received byte stream into events, one per frame,
control byte or run of garbage, and never raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from drivers.ecr import EcrFrameError

STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15
DEFAULT_MAX_PAYLOAD = 4096
"""Largest payload in bytes (configurable per link); larger frames are NAKed."""


def lrc(data: bytes) -> int:
    """XOR of all bytes of `data` (payload followed by ETX)."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def check_payload(payload: bytes, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
    """Raise EcrFrameError naming the offset when `payload` cannot be framed."""
    if not isinstance(payload, (bytes, bytearray)):
        raise EcrFrameError(f"payload must be bytes, not {type(payload).__name__}", 0)
    if len(payload) > max_payload:
        raise EcrFrameError(
            f"payload is {len(payload)} bytes, more than the maximum {max_payload}; "
            "split the data (e.g. smaller firmware chunks) or raise max_payload on both ends",
            max_payload,
        )
    for offset, byte in enumerate(payload):
        if byte < 0x20:
            raise EcrFrameError(
                f"control byte 0x{byte:02X} inside the payload; payloads are text "
                "(0x20..0xFF) and carry binary data as base64",
                offset,
            )


def encode_frame(payload: bytes, max_payload: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """Frame one payload: STX payload ETX LRC."""
    check_payload(payload, max_payload)
    body = bytes(payload) + bytes((ETX,))
    return bytes((STX,)) + body + bytes((lrc(body),))


class EventKind(StrEnum):
    """What the decoder found in the stream."""

    FRAME = "frame"
    ACK = "ack"
    NAK = "nak"
    BAD_LRC = "bad-lrc"
    BAD_BYTE = "bad-byte"
    OVERSIZE = "oversize"
    GARBAGE = "garbage"
    TRUNCATED = "truncated"


NAK_KINDS = frozenset(
    {EventKind.BAD_LRC, EventKind.BAD_BYTE, EventKind.OVERSIZE, EventKind.TRUNCATED}
)
"""Events the receiver answers with NAK (the sender is waiting for ACK/NAK)."""


@dataclass(frozen=True, slots=True)
class FrameEvent:
    """One decoded item: `size` bytes consumed from stream offset `offset`.

    `raw` holds those bytes, except for an oversize frame where it keeps only the first
    max_payload + 3 of them; `payload` is set for FRAME (and the corrupt payload of BAD_LRC).
    """

    kind: EventKind
    offset: int
    size: int
    raw: bytes
    payload: bytes = b""
    reason: str = ""


_IDLE, _PAYLOAD, _LRC = 0, 1, 2


class FrameDecoder:
    """Incremental decoder of a received stream; call `timeout()` when the inter-character
    timeout expires so a half-received frame is reported as TRUNCATED."""

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self.offset = 0
        self._state = _IDLE
        self._garbage = bytearray()
        self._garbage_at = 0
        self._start = 0
        self._raw = bytearray()
        self._size = 0
        self._bad_byte: tuple[int, int] | None = None

    @property
    def in_frame(self) -> bool:
        """True while a frame has started (STX seen) but not ended."""
        return self._state != _IDLE

    @property
    def pending(self) -> int:
        """Bytes fed but not yet reported in an event."""
        return len(self._garbage) + (self._size if self._state != _IDLE else 0)

    def feed(self, data: bytes) -> list[FrameEvent]:
        """Consume `data` and return the events it completed (garbage is reported per call)."""
        events: list[FrameEvent] = []
        for byte in data:
            self._byte(byte, events)
            self.offset += 1
        self._flush_garbage(events)
        return events

    def timeout(self) -> list[FrameEvent]:
        """Report a started frame as TRUNCATED (no byte within the inter-character timeout)."""
        events: list[FrameEvent] = []
        self._flush_garbage(events)
        if self._state != _IDLE:
            self._abandon(events, "no byte within the inter-character timeout")
        return events

    def _byte(self, byte: int, events: list[FrameEvent]) -> None:
        if self._state == _IDLE:
            if byte == STX:
                self._flush_garbage(events)
                self._begin()
            elif byte in (ACK, NAK):
                self._flush_garbage(events)
                kind = EventKind.ACK if byte == ACK else EventKind.NAK
                events.append(FrameEvent(kind, self.offset, 1, bytes((byte,))))
            else:
                if not self._garbage:
                    self._garbage_at = self.offset
                self._garbage.append(byte)
            return
        if self._state == _LRC:
            self._keep(byte)
            self._finish(byte, events)
            return
        if byte == STX:
            self._abandon(events, "STX inside a frame: the sender restarted")
            self._begin()
            return
        self._keep(byte)
        if byte == ETX:
            self._state = _LRC
        elif byte < 0x20 and self._bad_byte is None:
            self._bad_byte = (self.offset, byte)

    def _begin(self) -> None:
        self._state = _PAYLOAD
        self._start = self.offset
        self._raw = bytearray((STX,))
        self._size = 1
        self._bad_byte = None

    def _keep(self, byte: int) -> None:
        self._size += 1
        if len(self._raw) < self.max_payload + 3:
            self._raw.append(byte)

    def _finish(self, received_lrc: int, events: list[FrameEvent]) -> None:
        self._state = _IDLE
        raw = bytes(self._raw)
        length = self._size - 3
        if length > self.max_payload:
            events.append(
                FrameEvent(
                    EventKind.OVERSIZE,
                    self._start,
                    self._size,
                    raw,
                    reason=f"payload of {length} bytes exceeds the maximum {self.max_payload}",
                )
            )
            return
        payload = raw[1:-2]
        expected = lrc(raw[1:-1])
        if expected != received_lrc:
            reason = f"LRC 0x{received_lrc:02X} received, 0x{expected:02X} computed"
            events.append(
                FrameEvent(EventKind.BAD_LRC, self._start, self._size, raw, payload, reason)
            )
        elif self._bad_byte is not None:
            at, value = self._bad_byte
            reason = f"control byte 0x{value:02X} inside the payload at stream offset {at}"
            events.append(FrameEvent(EventKind.BAD_BYTE, self._start, self._size, raw, b"", reason))
        else:
            events.append(FrameEvent(EventKind.FRAME, self._start, self._size, raw, payload))

    def _abandon(self, events: list[FrameEvent], reason: str) -> None:
        events.append(
            FrameEvent(
                EventKind.TRUNCATED, self._start, self._size, bytes(self._raw), reason=reason
            )
        )
        self._state = _IDLE

    def _flush_garbage(self, events: list[FrameEvent]) -> None:
        if self._garbage:
            raw = bytes(self._garbage)
            events.append(
                FrameEvent(
                    EventKind.GARBAGE,
                    self._garbage_at,
                    len(raw),
                    raw,
                    reason=f"{len(raw)} bytes outside a frame skipped",
                )
            )
            self._garbage.clear()
