"""A small ISO 7816-4 card proving the PC/SC path end to end (no payment data, test content only).

ATR `3B 8A 80 01 50 4F 53 52 49 47 20 53 49 4D 6C`: direct convention (TS=3B), T0=8A (TD1
follows, 10 historical bytes), TD1=80 (TD2 follows, T=0), TD2=01 (T=1), historical bytes
"POSRIG SIM", TCK=6C (XOR of T0..last historical byte). The card offers T=0 and T=1.

Rules (CLA must be 00, else 6E00; unknown INS 6D00; bad length 6700):
- SELECT by AID (00 A4 04 00/0C Lc AID [Le]):
  `F0 50 4F 53 52 49 47 01` ("T=1 style") answers its FCI directly with 9000;
  `F0 50 4F 53 52 49 47 02` ("T=0 style") answers `61 10`: the FCI waits in the card and is
  handed out by GET RESPONSE in chunks of at most 16 bytes, each chunk ending `61 xx` (xx = size
  of the next chunk) until the last ends 9000. P2=0C (no FCI) answers 9000 alone.
  An unknown AID answers 6A82; other P1/P2 6A86.
- GET RESPONSE (00 C0 00 00 Le): the next chunk; Le larger than the chunk answers 6Cxx,
  nothing pending answers 6985.
- READ BINARY (00 B0 P1 P2 Le) on the selected application's 64-byte transparent file, offset
  P1P2 (15 bits): Le larger than the bytes left answers `6C xx` (xx = bytes left), so a reader
  re-issues with the right Le; no Le 6700; offset past the end 6B00; no application 6986.
"""

from __future__ import annotations

from rig.card.application import ApduFormatError, parse_command, sw_bytes

ATR = bytes.fromhex("3B8A8001504F535249472053494D6C")
AID_DIRECT = bytes.fromhex("F0504F5352494701")
AID_CHAINED = bytes.fromhex("F0504F5352494702")
CHUNK = 16
FILE_CONTENT = (b"POSRIG ISO7816 DEMO EF. " * 3)[:64]
"""The transparent file's 64 bytes (readable text, so transcripts are easy to check)."""

SW_OK = sw_bytes(0x9000)
_SW_WRONG_LENGTH = sw_bytes(0x6700)
_SW_CLA = sw_bytes(0x6E00)
_SW_INS = sw_bytes(0x6D00)
_SW_P1P2 = sw_bytes(0x6A86)
_SW_NOT_FOUND = sw_bytes(0x6A82)
_SW_OFFSET = sw_bytes(0x6B00)
_SW_NO_EF = sw_bytes(0x6986)
_SW_CONDITIONS = sw_bytes(0x6985)


def fci(aid: bytes, label: bytes) -> bytes:
    """File control information template: 6F { 84 DF name, A5 { 50 application label } }."""
    a5 = b"\x50" + bytes((len(label),)) + label
    body = b"\x84" + bytes((len(aid),)) + aid + b"\xa5" + bytes((len(a5),)) + a5
    return b"\x6f" + bytes((len(body),)) + body


FCI_DIRECT = fci(AID_DIRECT, b"POSRIG DEMO T1")
FCI_CHAINED = fci(AID_CHAINED, b"POSRIG DEMO T0 CHAINED")


class Iso7816DemoCard:
    """The ISO 7816 demo card (implements `CardApplication`)."""

    atr = ATR

    def __init__(self) -> None:
        self.selected: bytes | None = None
        self._pending = b""

    def reset(self) -> None:
        self.selected = None
        self._pending = b""

    def process(self, apdu: bytes) -> bytes:
        try:
            cmd = parse_command(apdu)
        except ApduFormatError:
            return _SW_WRONG_LENGTH
        if cmd.cla != 0x00:
            return _SW_CLA
        if cmd.ins == 0xC0:
            return self._get_response(cmd.p1, cmd.p2, cmd.le)
        self._pending = b""
        if cmd.ins == 0xA4:
            return self._select(cmd.p1, cmd.p2, cmd.data)
        if cmd.ins == 0xB0:
            return self._read_binary(cmd.p1, cmd.p2, cmd.le)
        return _SW_INS

    def _select(self, p1: int, p2: int, aid: bytes) -> bytes:
        if p1 != 0x04 or p2 not in (0x00, 0x0C):
            return _SW_P1P2
        if aid == AID_DIRECT:
            self.selected = aid
            return SW_OK if p2 == 0x0C else FCI_DIRECT + SW_OK
        if aid == AID_CHAINED:
            self.selected = aid
            if p2 == 0x0C:
                return SW_OK
            self._pending = FCI_CHAINED
            return bytes((0x61, min(CHUNK, len(FCI_CHAINED))))
        return _SW_NOT_FOUND

    def _get_response(self, p1: int, p2: int, le: int | None) -> bytes:
        if p1 or p2:
            return _SW_P1P2
        if not self._pending:
            return _SW_CONDITIONS
        chunk = min(CHUNK, len(self._pending))
        if le is None:
            return _SW_WRONG_LENGTH
        if le > chunk:
            return bytes((0x6C, chunk))
        out, self._pending = self._pending[:le], self._pending[le:]
        if self._pending:
            return out + bytes((0x61, min(CHUNK, len(self._pending))))
        return out + SW_OK

    def _read_binary(self, p1: int, p2: int, le: int | None) -> bytes:
        if p1 & 0x80:
            return _SW_P1P2
        if self.selected is None:
            return _SW_NO_EF
        if le is None:
            return _SW_WRONG_LENGTH
        offset = (p1 << 8) | p2
        if offset >= len(FILE_CONTENT):
            return _SW_OFFSET
        left = len(FILE_CONTENT) - offset
        if le > left:
            return bytes((0x6C, left & 0xFF))
        return FILE_CONTENT[offset : offset + le] + SW_OK
