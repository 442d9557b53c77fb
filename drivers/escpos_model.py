"""ESC/POS receipt model: what a decoded print stream holds (lines, symbols, images, cuts).

Data only, shared by the decoder (`drivers.escpos`) and the stream builder (`drivers.escpos_build`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

ESC, GS, FS, DLE, EOT, LF, NUL = 0x1B, 0x1D, 0x1C, 0x10, 0x04, 0x0A, 0x00

SYMBOLOGIES = {
    0: "UPC-A", 1: "UPC-E", 2: "EAN13", 3: "EAN8", 4: "CODE39", 5: "ITF", 6: "CODABAR",
    65: "UPC-A", 66: "UPC-E", 67: "EAN13", 68: "EAN8", 69: "CODE39", 70: "ITF", 71: "CODABAR",
    72: "CODE93", 73: "CODE128", 74: "GS1-128", 75: "GS1 DataBar Omnidirectional",
    76: "GS1 DataBar Truncated", 77: "GS1 DataBar Limited", 78: "GS1 DataBar Expanded",
    79: "CODE128 auto",
}  # fmt: skip
"""GS k m -> symbology: m 0..6 take NUL-terminated data, m 65..79 a length byte."""

QR_LEVELS = {48: "L", 49: "M", 50: "Q", 51: "H"}
INVERT_BITS = bytes(255 - i for i in range(256))
"""bytes.translate table that inverts every bit (ESC/POS 1 = black, PIL mode "1" 1 = white)."""


class EscPosError(ValueError):
    """A malformed command: `offset` is where it starts in the stream, `events` what came before."""

    def __init__(self, message: str, offset: int, events: list[Any] | None = None) -> None:
        super().__init__(f"ESC/POS offset {offset}: {message}")
        self.offset = offset
        self.events = events or []


@dataclass(frozen=True)
class Style:
    """Print modes in effect for a run of text."""

    bold: bool = False
    underline: int = 0
    width: int = 1
    height: int = 1
    font: int = 0


@dataclass
class Span:
    text: str
    style: Style


@dataclass
class ReceiptLine:
    """One printed line: styled spans and the alignment in effect when the line began."""

    spans: list[Span] = field(default_factory=list)
    align: str = "left"

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.spans)

    def _inked(self) -> list[Span]:
        return [s for s in self.spans if s.text.strip()] or self.spans

    @property
    def bold(self) -> bool:
        """True when every non-blank character is emphasised."""
        return bool(self.spans) and all(s.style.bold for s in self._inked())

    @property
    def underline(self) -> bool:
        return bool(self.spans) and all(s.style.underline for s in self._inked())

    @property
    def width(self) -> int:
        return max((s.style.width for s in self._inked()), default=1)

    @property
    def height(self) -> int:
        return max((s.style.height for s in self._inked()), default=1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "align": self.align,
            "bold": self.bold,
            "underline": self.underline,
            "width": self.width,
            "height": self.height,
        }


@dataclass
class QrCode:
    payload: str
    data: bytes
    model: str
    module_size: int
    error_level: str
    line_index: int
    offset: int


@dataclass
class Barcode:
    symbology: str
    m: int
    data: bytes
    text: str
    hri_position: int
    height: int
    module_width: int
    line_index: int
    offset: int


@dataclass
class RasterImage:
    """A printed image, rows packed MSB first with 1 = black dot."""

    kind: str
    width: int
    height: int
    rows: bytes
    line_index: int
    offset: int

    def pixel(self, x: int, y: int) -> bool:
        """True when the dot at (x, y) is black."""
        stride = (self.width + 7) // 8
        return bool(self.rows[y * stride + x // 8] & (0x80 >> (x % 8)))

    def png(self) -> bytes:
        """The image as PNG bytes (black dots on white)."""
        from PIL import Image

        img = Image.frombytes("1", (self.width, self.height), self.rows.translate(INVERT_BITS))
        out = io.BytesIO()
        img.save(out, format="PNG")
        return out.getvalue()


@dataclass
class Cut:
    kind: str
    feed: int
    offset: int


@dataclass
class Note:
    offset: int
    message: str


@dataclass
class Receipt:
    """Everything printed between two cuts."""

    lines: list[ReceiptLine] = field(default_factory=list)
    qr_codes: list[QrCode] = field(default_factory=list)
    barcodes: list[Barcode] = field(default_factory=list)
    images: list[RasterImage] = field(default_factory=list)
    cuts: list[Cut] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    feed_lines: int = 0
    feed_dots: int = 0
    code_page: str = "cp437"
    start_offset: int = 0
    end_offset: int = 0

    def text(self) -> str:
        """Plain text of the printed lines, one per line."""
        return "\n".join(line.text for line in self.lines)

    @property
    def empty(self) -> bool:
        return not (self.lines or self.qr_codes or self.barcodes or self.images or self.cuts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": [line.to_dict() for line in self.lines],
            "qr_codes": [{k: v for k, v in vars(q).items() if k != "data"} for q in self.qr_codes],
            "barcodes": [{k: v for k, v in vars(b).items() if k != "data"} for b in self.barcodes],
            "images": [
                {"kind": i.kind, "width": i.width, "height": i.height, "line_index": i.line_index}
                for i in self.images
            ],
            "cuts": [vars(c) for c in self.cuts],
            "notes": [vars(n) for n in self.notes],
            "feed_lines": self.feed_lines,
            "feed_dots": self.feed_dots,
            "code_page": self.code_page,
            "start_offset": self.start_offset,
            "end_offset": self.end_offset,
        }


@dataclass(frozen=True)
class StatusRequest:
    """DLE EOT n: the printer must answer with one status byte now (n = 1..4)."""

    n: int
    offset: int


@dataclass(frozen=True)
class ReceiptDone:
    receipt: Receipt


Event = StatusRequest | ReceiptDone


def code128_text(data: bytes) -> str:
    """Human-readable text of ESC/POS CODE128 data ({A/{B/{C code sets, {{ literal, {1 FNC1)."""
    out, code_c, i = [], False, 0
    while i < len(data):
        b = data[i]
        if b == 0x7B and i + 1 < len(data):
            sel = chr(data[i + 1])
            i += 2
            if sel in "AB":
                code_c = False
            elif sel == "C":
                code_c = True
            elif sel == "{":
                out.append("{")
            elif sel in "1234S":
                out.append(f"<FNC{sel}>" if sel != "S" else "<SHIFT>")
            continue
        out.append(f"{b:02d}" if code_c and b < 100 else chr(b))
        i += 1
    return "".join(out)
