"""What a simulated card is to the vpcd host: an ATR, a reset, and command APDU in, response out.

Every card application (the ISO 7816 demo here, the EMV and purse cards later) implements
`CardApplication`; `parse_command` splits a short command APDU for them (ISO/IEC 7816-3 cases 1-4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@runtime_checkable
class CardApplication(Protocol):
    """A card behind the vpcd protocol: `process` returns the response data followed by SW1 SW2."""

    atr: bytes

    def reset(self) -> None:
        """Forget volatile state, as after a cold or warm reset."""

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU with response data + SW1 SW2 (never raises on bad input)."""


class ApduFormatError(ValueError):
    """A command APDU whose length bytes do not match its size; `sw` is what a card answers."""

    sw = 0x6700

    def __init__(self, apdu: bytes, reason: str) -> None:
        super().__init__(f"malformed command APDU {apdu.hex().upper()}: {reason}")
        self.apdu = apdu
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed short command APDU; `le` is None when absent, 256 for an Le byte of 00."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None


def parse_command(apdu: bytes) -> Command:
    """Split a short command APDU (cases 1-4); extended lengths are refused with ApduFormatError."""
    n = len(apdu)
    if n < 4:
        raise ApduFormatError(apdu, f"{n} bytes, a command has at least CLA INS P1 P2")
    cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
    if n == 4:
        return Command(cla, ins, p1, p2, b"", None)
    if n == 5:
        return Command(cla, ins, p1, p2, b"", apdu[4] or 256)
    lc = apdu[4]
    if lc == 0:
        raise ApduFormatError(apdu, "extended length (Lc=00) is not supported")
    if n == 5 + lc:
        return Command(cla, ins, p1, p2, bytes(apdu[5:]), None)
    if n == 6 + lc:
        return Command(cla, ins, p1, p2, bytes(apdu[5:-1]), apdu[-1] or 256)
    raise ApduFormatError(apdu, f"Lc={lc} but {n - 5} bytes follow the header")


def sw_bytes(sw: int) -> bytes:
    """SW1 SW2 as two bytes."""
    return bytes((sw >> 8, sw & 0xFF))
