"""ESC/POS stream builder: the bytes a terminal's print driver sends (for simulators and tests)."""

from __future__ import annotations

from drivers.escpos_model import DLE, EOT, ESC, GS, QR_LEVELS, SYMBOLOGIES


class EscPosBuilder:
    """Builds an ESC/POS stream, the way a terminal's print driver would (for sims and tests)."""

    def __init__(self) -> None:
        self._out = bytearray(b"\x1b@")

    def text(self, s: str, *, bold: bool = False, underline: int = 0, width: int = 1,
             height: int = 1, align: str = "left", codec: str = "cp437") -> EscPosBuilder:  # fmt: skip  # noqa: E501
        """One line of text in the given style, ended by LF."""
        a = {"left": 0, "center": 1, "right": 2}[align]
        self._out += bytes([ESC, 0x61, a, ESC, 0x45, int(bold), ESC, 0x2D, underline])
        self._out += bytes([GS, 0x21, (width - 1) << 4 | (height - 1)])
        self._out += s.encode(codec) + b"\n"
        return self

    def feed(self, n: int) -> EscPosBuilder:
        self._out += bytes([ESC, 0x64, n])
        return self

    def qr(self, payload: str, *, module_size: int = 4, level: str = "M") -> EscPosBuilder:
        data = payload.encode("utf-8")
        lv = {v: k for k, v in QR_LEVELS.items()}[level]
        k = len(data) + 3
        self._out += bytes([GS, 0x28, 0x6B, 4, 0, 49, 65, 50, 0])
        self._out += bytes([GS, 0x28, 0x6B, 3, 0, 49, 67, module_size])
        self._out += bytes([GS, 0x28, 0x6B, 3, 0, 49, 69, lv])
        self._out += bytes([GS, 0x28, 0x6B, k & 0xFF, k >> 8, 49, 80, 48]) + data
        self._out += bytes([GS, 0x28, 0x6B, 3, 0, 49, 81, 48])
        return self

    def barcode(self, symbology: str, data: bytes) -> EscPosBuilder:
        """GS k in the length-prefixed form (m 65..79)."""
        m = next(k for k, v in SYMBOLOGIES.items() if v == symbology and k >= 65)
        self._out += bytes([GS, 0x6B, m, len(data)]) + data
        return self

    def raster(self, width_bytes: int, rows: bytes) -> EscPosBuilder:
        height = len(rows) // width_bytes
        self._out += bytes([GS, 0x76, 0x30, 0, width_bytes & 0xFF, width_bytes >> 8])
        self._out += bytes([height & 0xFF, height >> 8]) + rows
        return self

    def status_request(self, n: int) -> EscPosBuilder:
        self._out += bytes([DLE, EOT, n])
        return self

    def cut(self, partial: bool = False, feed: int = 3) -> EscPosBuilder:
        self._out += bytes([GS, 0x56, 66 if partial else 65, feed])
        return self

    def build(self) -> bytes:
        return bytes(self._out)
