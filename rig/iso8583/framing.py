"""Length-prefix framings for ISO 8583 over TCP, with incremental readers for partial reads.

Each framing frames a payload and reads frames back from a byte stream fed in arbitrary chunks.
Zero-length frames are keep-alives: readers skip and count them. A frame longer than the
reader's limit raises `FramingError` (the stream is then out of step and the reader stays failed).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

DEFAULT_MAX_LEN = 8192
"""Default longest payload accepted by a reader (bytes, TPDU included for len2-tpdu)."""

TPDU_ID = 0x60


class FramingError(ValueError):
    """Bad frame header or length: `length` and `limit` if a limit was broken, stream `offset`."""

    def __init__(
        self, message: str, *, length: int | None = None, limit: int | None = None, offset: int = 0
    ) -> None:
        self.length = length
        self.limit = limit
        self.offset = offset
        super().__init__(f"{message} (stream offset {offset})")


class StreamClosed(FramingError):
    """The peer closed the stream; `partial` when it closed in the middle of a frame."""

    def __init__(self, message: str, *, partial: bool, offset: int = 0) -> None:
        self.partial = partial
        super().__init__(message, offset=offset)


@dataclass(frozen=True)
class Tpdu:
    """Transport PDU `60 DDDD SSSS`: destination and source addresses (NII-style)."""

    destination: int
    source: int
    id: int = TPDU_ID

    def to_bytes(self) -> bytes:
        return (
            bytes([self.id]) + self.destination.to_bytes(2, "big") + self.source.to_bytes(2, "big")
        )

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> Tpdu:
        if len(data) != 5:
            raise FramingError(f"TPDU is {len(data)} bytes, expected 5", offset=offset)
        if data[0] != TPDU_ID:
            raise FramingError(
                f"TPDU id is {data[0]:02X}, expected 60; is the peer using another framing?",
                offset=offset,
            )
        return cls(int.from_bytes(data[1:3], "big"), int.from_bytes(data[3:5], "big"), data[0])

    def swapped(self) -> Tpdu:
        """The TPDU for the response: destination and source exchanged."""
        return Tpdu(self.source, self.destination, self.id)

    def __str__(self) -> str:
        return self.to_bytes().hex().upper()


@dataclass(frozen=True)
class Frame:
    """One frame's payload (the ISO 8583 message) and its TPDU when the framing has one."""

    payload: bytes
    tpdu: Tpdu | None = None


@dataclass(frozen=True)
class Framing(ABC):
    """A named length-prefix scheme; `max_len` bounds accepted payloads."""

    name: str
    header_len: int
    max_len: int = DEFAULT_MAX_LEN

    @property
    @abstractmethod
    def ceiling(self) -> int:
        """Longest length the header can express."""

    @abstractmethod
    def _encode_len(self, n: int) -> bytes: ...

    @abstractmethod
    def _decode_len(self, header: bytes, offset: int) -> int: ...

    def with_max(self, max_len: int) -> Framing:
        """This framing with another payload limit."""
        return replace(self, max_len=max_len)

    def frame(self, payload: bytes, tpdu: Tpdu | None = None) -> bytes:
        """Length header + payload; FramingError when it exceeds the header's range."""
        if tpdu is not None:
            raise FramingError(f"framing {self.name} carries no TPDU; use len2-tpdu")
        return self._header(len(payload)) + bytes(payload)

    def _header(self, n: int) -> bytes:
        limit = min(self.ceiling, self.max_len)
        if n > limit:
            raise FramingError(
                f"frame length {n} exceeds the limit {limit} of {self.name}", length=n, limit=limit
            )
        return self._encode_len(n)

    def reader(self) -> FrameReader:
        """A fresh incremental reader for one stream."""
        return FrameReader(self)

    def _split(self, body: bytes, offset: int) -> Frame:
        return Frame(body)

    def _check(self, n: int, offset: int) -> None:
        if n > self.max_len:
            raise FramingError(
                f"frame length {n} exceeds the limit {self.max_len} ({self.name}); raise max_len "
                "or check the peer uses this framing",
                length=n,
                limit=self.max_len,
                offset=offset,
            )


@dataclass(frozen=True)
class _BinaryLen(Framing):
    @property
    def ceiling(self) -> int:
        return (1 << (8 * self.header_len)) - 1

    def _encode_len(self, n: int) -> bytes:
        return n.to_bytes(self.header_len, "big")

    def _decode_len(self, header: bytes, offset: int) -> int:
        return int.from_bytes(header, "big")


@dataclass(frozen=True)
class _AsciiLen(Framing):
    @property
    def ceiling(self) -> int:
        return 10**self.header_len - 1

    def _encode_len(self, n: int) -> bytes:
        return f"{n:0{self.header_len}d}".encode()

    def _decode_len(self, header: bytes, offset: int) -> int:
        if not all(0x30 <= b <= 0x39 for b in header):
            raise FramingError(
                f"length header {header.hex().upper()} is not {self.header_len} ASCII digits "
                f"({self.name})",
                offset=offset,
            )
        return int(header)


@dataclass(frozen=True)
class _BcdLen(Framing):
    @property
    def ceiling(self) -> int:
        return 10 ** (2 * self.header_len) - 1

    def _encode_len(self, n: int) -> bytes:
        return bytes.fromhex(f"{n:0{2 * self.header_len}d}")

    def _decode_len(self, header: bytes, offset: int) -> int:
        text = header.hex()
        if not text.isdigit():
            raise FramingError(
                f"length header {text.upper()} is not BCD ({self.name})", offset=offset
            )
        return int(text)


@dataclass(frozen=True)
class _TpduLen(_BinaryLen):
    """2-byte binary length covering TPDU + message, then the 5-byte TPDU."""

    def frame(self, payload: bytes, tpdu: Tpdu | None = None) -> bytes:
        if tpdu is None:
            raise FramingError("framing len2-tpdu needs a TPDU; pass tpdu=Tpdu(dest, src)")
        return self._header(5 + len(payload)) + tpdu.to_bytes() + bytes(payload)

    def _check(self, n: int, offset: int) -> None:
        super()._check(n, offset)
        if 0 < n < 5:
            raise FramingError(
                f"frame length {n} is shorter than the 5-byte TPDU", length=n, offset=offset
            )

    def _split(self, body: bytes, offset: int) -> Frame:
        return Frame(body[5:], Tpdu.from_bytes(body[:5], offset))


class FrameReader:
    """Incremental reader: `feed(chunk)` returns the frames completed so far."""

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self.keepalives = 0
        self.offset = 0
        self._buf = bytearray()
        self._need: int | None = None
        self._failed: FramingError | None = None

    @property
    def pending(self) -> int:
        """Bytes buffered past the last complete frame and header (0 at a frame boundary)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes from the stream; complete frames come back, keep-alives are counted."""
        if self._failed is not None:
            raise self._failed
        self._buf += data
        frames: list[Frame] = []
        fr = self.framing
        try:
            while True:
                if self._need is None:
                    if len(self._buf) < fr.header_len:
                        break
                    header = bytes(self._buf[: fr.header_len])
                    n = fr._decode_len(header, self.offset)
                    fr._check(n, self.offset)
                    del self._buf[: fr.header_len]
                    self.offset += fr.header_len
                    if n == 0:
                        self.keepalives += 1
                        continue
                    self._need = n
                if len(self._buf) < self._need:
                    break
                body = bytes(self._buf[: self._need])
                frames.append(fr._split(body, self.offset))
                del self._buf[: self._need]
                self.offset += self._need
                self._need = None
        except FramingError as e:
            self._failed = e
            raise
        return frames


FRAMINGS: dict[str, Framing] = {
    "len2": _BinaryLen("len2", 2),
    "len2-tpdu": _TpduLen("len2-tpdu", 2),
    "ascii4": _AsciiLen("ascii4", 4),
    "bcd2": _BcdLen("bcd2", 2),
    "len4": _BinaryLen("len4", 4),
}
"""Named framings: 2-byte binary, 2-byte binary + TPDU, 4 ASCII digits, 2-byte BCD, 4-byte."""


def get_framing(name: str, max_len: int | None = None) -> Framing:
    """The framing called `name` (optionally with another limit); ValueError lists valid names."""
    try:
        framing = FRAMINGS[name]
    except (KeyError, TypeError):
        raise FramingError(
            f"unknown framing {name!r}; valid framings: {', '.join(FRAMINGS)}"
        ) from None
    return framing if max_len is None else framing.with_max(max_len)


async def read_framed(reader: asyncio.StreamReader, framing: Framing) -> Frame:
    """Read the next non-keep-alive frame; StreamClosed at EOF, FramingError on a bad header."""
    while True:
        try:
            header = await reader.readexactly(framing.header_len)
        except asyncio.IncompleteReadError as e:
            raise StreamClosed(
                "peer closed the connection"
                + (f" inside a length header ({len(e.partial)} bytes)" if e.partial else ""),
                partial=bool(e.partial),
            ) from None
        n = framing._decode_len(header, 0)
        framing._check(n, 0)
        if n == 0:
            continue
        try:
            body = await reader.readexactly(n)
        except asyncio.IncompleteReadError as e:
            raise StreamClosed(
                f"peer closed the connection after {len(e.partial)} of {n} frame bytes",
                partial=True,
            ) from None
        return framing._split(body, 0)


async def read_frame(reader: asyncio.StreamReader, framing: Framing) -> bytes:
    """Payload of the next non-keep-alive frame (use `read_framed` to see the TPDU)."""
    return (await read_framed(reader, framing)).payload
