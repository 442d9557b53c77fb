"""Pure, incremental ESC/POS decoder: the byte stream a terminal sends its printer, as receipts.

No I/O. `EscPosDecoder.feed()` takes bytes as they arrive and returns events: a completed
`Receipt` (a cut ends one) or a real-time `StatusRequest` (DLE EOT n) the printer must answer
at once. Unknown commands are skipped by their known parameter lengths and noted in the receipt
with their offset; malformed ones raise `EscPosError` after being skipped, so decoding can go on.
Command set after the published ESC/POS command reference (TM-series application notes).
"""

from __future__ import annotations

import re
from typing import Any

from drivers.escpos_build import EscPosBuilder
from drivers.escpos_model import (
    DLE,
    EOT,
    ESC,
    FS,
    GS,
    INVERT_BITS,
    LF,
    NUL,
    QR_LEVELS,
    SYMBOLOGIES,
    Barcode,
    Cut,
    EscPosError,
    Event,
    Note,
    QrCode,
    RasterImage,
    Receipt,
    ReceiptDone,
    ReceiptLine,
    Span,
    StatusRequest,
    Style,
    code128_text,
)

__all__ = [
    "CODE_PAGES",
    "DLE",
    "EOT",
    "ESC",
    "FS",
    "GS",
    "LF",
    "MAX_BIT_IMAGE_COLUMNS",
    "MAX_RASTER_ROWS",
    "MAX_RASTER_WIDTH_BYTES",
    "NUL",
    "QR_LEVELS",
    "QR_MODELS",
    "SYMBOLOGIES",
    "Barcode",
    "Cut",
    "EscPosBuilder",
    "EscPosDecoder",
    "EscPosError",
    "Event",
    "Note",
    "QrCode",
    "RasterImage",
    "Receipt",
    "ReceiptDone",
    "ReceiptLine",
    "Span",
    "StatusRequest",
    "Style",
    "code128_text",
    "decode_stream",
]

CODE_PAGES = {0: "cp437", 2: "cp850", 3: "cp860", 4: "cp863", 5: "cp865", 16: "cp1252",
              17: "cp866", 18: "cp852", 19: "cp858"}  # fmt: skip
"""ESC t n -> Python codec, for the pages Python ships; others fall back to CP437 with a note."""

QR_MODELS = {49: "1", 50: "2", 51: "micro"}
MAX_RASTER_WIDTH_BYTES = 1024
MAX_RASTER_ROWS = 4095
MAX_BIT_IMAGE_COLUMNS = 4096

# Fixed parameter counts of commands that only change state we do not model (or only note).
_ESC_FIXED = {
    ord(c): n
    for c, n in {
        "G": 1, "e": 1, "J": 1, "K": 1, "R": 1, "M": 1, "2": 0, "3": 1, " ": 1, "$": 2,
        "\\": 2, "{": 1, "V": 1, "r": 1, "p": 3, "=": 1, "c": 2, "B": 2, "L": 0, "S": 0,
        "T": 1, "W": 8, "\x0c": 0, "%": 1, "?": 1, "U": 1, "<": 0, "u": 1, "v": 0,
    }.items()
}  # fmt: skip
_GS_FIXED = {
    ord(c): n
    for c, n in {
        "B": 1, "b": 1, "L": 2, "W": 2, "P": 2, "$": 2, "\\": 2, "I": 1, "r": 1, "a": 1,
        "T": 1, "E": 1, ":": 0, "^": 3, "/": 1, "j": 1, "H": 1, "f": 1, "h": 1, "w": 1,
    }.items()
}  # fmt: skip
_FS_FIXED = {ord(c): n for c, n in {"&": 0, ".": 0, "!": 1, "-": 1, "C": 1, "S": 2, "W": 1,
                                    "p": 2}.items()}  # fmt: skip
_ESC_MODES = frozenset(b"!E-adt")
_TEXT_RUN = re.compile(rb"[\x20-\xff]+")


class _More(Exception):
    """The command at hand needs `need` bytes of buffer before it can be decoded."""

    def __init__(self, need: int) -> None:
        self.need = need


class _Bad(Exception):
    def __init__(self, message: str, start: int, skip_to: int) -> None:
        self.message, self.start, self.skip_to = message, start, skip_to


class EscPosDecoder:
    """Incremental decoder: feed bytes, get `StatusRequest` and `ReceiptDone` events.

    After an `EscPosError` the offending command has been skipped; call `feed(b"")` to go on
    with the bytes already buffered.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0
        self._wait = 0
        self._events: list[Event] = []
        self._qr_data = b""
        self._reset_modes()
        self.current = Receipt()
        self._line = ReceiptLine(align=self._align)

    def _reset_modes(self) -> None:
        self._style = Style()
        self._align = "left"
        self._codec = "cp437"
        self._qr = {"model": "2", "module_size": 3, "error_level": "L"}
        self._hri = {"hri_position": 0, "height": 162, "module_width": 3}

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet decoded."""
        return self._base

    def feed(self, data: bytes) -> list[Event]:
        """Decode what `data` completes; incomplete commands wait for the next call."""
        self._buf += data
        if len(self._buf) < self._wait:
            return []
        self._wait = 0
        events: list[Event] = []
        self._events = events
        buf, pos = self._buf, 0
        try:
            while pos < len(buf):
                pos = self._command(buf, pos)
        except _More as more:
            self._wait = more.need - pos
        except _Bad as bad:
            pos = bad.skip_to
            raise EscPosError(bad.message, self._base + bad.start, events) from None
        finally:
            del buf[:pos]
            self._base += pos
        return events

    def flush(self) -> Receipt | None:
        """End the stream: return the receipt in progress (no cut) if anything was printed."""
        if self._buf:
            self._note(0, f"stream ended inside a command ({len(self._buf)} bytes left)")
            self._base += len(self._buf)
            self._buf.clear()
            self._wait = 0
        self._end_line(force=False)
        receipt = self._finish_receipt()
        return None if receipt.empty and not receipt.notes else receipt

    # -- receipt building -------------------------------------------------------------------
    def _note(self, at: int, message: str) -> None:
        self.current.notes.append(Note(self._base + at, message))

    def _text(self, text: str) -> None:
        spans = self._line.spans
        if spans and spans[-1].style == self._style:
            spans[-1].text += text
        else:
            spans.append(Span(text, self._style))

    def _end_line(self, force: bool = True) -> None:
        if self._line.spans or force:
            self.current.lines.append(self._line)
        self._line = ReceiptLine(align=self._align)

    def _flush_pending(self) -> int:
        if self._line.spans:
            self._end_line()
        return len(self.current.lines)

    def _finish_receipt(self) -> Receipt:
        receipt, self.current = self.current, Receipt(code_page=self._codec)
        receipt.end_offset = self._base
        self.current.start_offset = self._base
        return receipt

    # -- dispatch ---------------------------------------------------------------------------
    @staticmethod
    def _need(buf: bytearray, end: int) -> None:
        if len(buf) < end:
            raise _More(end)

    def _command(self, buf: bytearray, p: int) -> int:
        b = buf[p]
        if b >= 0x20:
            run = _TEXT_RUN.match(buf, p)
            assert run is not None
            self._text(bytes(run.group()).decode(self._codec, errors="replace"))
            return run.end()
        if b == LF:
            self.current.feed_lines += 1
            self._end_line()
            return p + 1
        if b == 0x0C:
            self._end_line(force=False)
            return p + 1
        if b == 0x09:
            self._text("\t")
            return p + 1
        if b in (NUL, 0x0D):
            return p + 1
        if b == ESC:
            return self._esc(buf, p)
        if b == GS:
            return self._gs(buf, p)
        if b == FS:
            return self._fs(buf, p)
        if b == DLE:
            return self._dle(buf, p)
        self._note(p, f"control byte 0x{b:02X} ignored")
        return p + 1

    def _esc(self, buf: bytearray, p: int) -> int:
        self._need(buf, p + 2)
        c = buf[p + 1]
        if c in _ESC_MODES:
            self._need(buf, p + 3)
            self._esc_mode(c, buf[p + 2], p)
            return p + 3
        if c == ord("@"):
            if self._line.spans:
                self._note(p, "ESC @ discarded unprinted text")
            self._reset_modes()
            self.current.code_page = self._codec
            self._line = ReceiptLine(align=self._align)
            return p + 2
        if c in (ord("i"), ord("m")):
            return self._cut("partial", 0, p, p + 2)
        if c == ord("*"):
            return self._esc_bit_image(buf, p)
        if c == ord("D"):
            stop = buf.find(NUL, p + 2, p + 35)
            if stop < 0:
                if len(buf) < p + 35:
                    raise _More(len(buf) + 1)
                raise _Bad("ESC D tab positions not NUL-terminated within 32 bytes", p, p + 2)
            return stop + 1
        if c == ord("&"):
            return self._esc_user_chars(buf, p)
        if c == ord("J"):
            self._need(buf, p + 3)
            self.current.feed_dots += buf[p + 2]
            return p + 3
        if c in _ESC_FIXED:
            end = p + 2 + _ESC_FIXED[c]
            self._need(buf, end)
            return end
        self._note(p, f"unknown command ESC 0x{c:02X} skipped")
        return p + 2

    def _esc_mode(self, c: int, n: int, p: int) -> None:
        st = self._style
        if c == ord("!"):
            self._style = Style(
                bold=bool(n & 0x08),
                underline=1 if n & 0x80 else 0,
                width=2 if n & 0x20 else 1,
                height=2 if n & 0x10 else 1,
                font=n & 0x01,
            )
        elif c == ord("E"):
            self._style = Style(bool(n & 1), st.underline, st.width, st.height, st.font)
        elif c == ord("-"):
            level = n - 48 if n >= 48 else n
            self._style = Style(st.bold, level if level in (0, 1, 2) else 0, st.width, st.height)
        elif c == ord("a"):
            self._align = {0: "left", 1: "center", 2: "right"}.get(n % 48, "left")
            if not self._line.spans:
                self._line.align = self._align
        elif c == ord("d"):
            pending = bool(self._line.spans)
            self.current.feed_lines += n
            for _ in range(n if not pending else max(n, 1)):
                self._end_line()
        elif c == ord("t"):
            codec = CODE_PAGES.get(n)
            if codec is None:
                self._note(p, f"ESC t {n}: code page not supported, {self._codec} kept")
            else:
                self._codec = self.current.code_page = codec

    def _gs(self, buf: bytearray, p: int) -> int:
        self._need(buf, p + 2)
        c = buf[p + 1]
        if c == ord("!"):
            self._need(buf, p + 3)
            n, st = buf[p + 2], self._style
            self._style = Style(st.bold, st.underline, (n >> 4 & 7) + 1, (n & 7) + 1, st.font)
            return p + 3
        if c == ord("V"):
            self._need(buf, p + 3)
            m = buf[p + 2]
            if m in (0, 48, 1, 49):
                return self._cut("full" if m in (0, 48) else "partial", 0, p, p + 3)
            if m in (65, 97, 103, 66, 98, 104):
                self._need(buf, p + 4)
                kind = "full" if m in (65, 97, 103) else "partial"
                return self._cut(kind, buf[p + 3], p, p + 4)
            self._note(p, f"GS V {m}: unknown cut mode skipped")
            return p + 3
        if c == ord("k"):
            return self._gs_barcode(buf, p)
        if c == ord("v"):
            return self._gs_raster(buf, p)
        if c == ord("("):
            return self._gs_paren(buf, p)
        if c == ord("8"):
            self._need(buf, p + 7)
            if buf[p + 2] != ord("L"):
                self._note(p, "unknown command GS 8 skipped")
                return p + 3
            end = self._skip(buf, p, p + 7 + int.from_bytes(buf[p + 3 : p + 7], "little"))
            self._note(p, "GS 8 L graphics data skipped")
            return end
        if c == ord("*"):
            self._need(buf, p + 4)
            end = self._skip(buf, p, p + 4 + buf[p + 2] * buf[p + 3] * 8)
            self._note(p, "GS * downloaded bit image definition skipped")
            return end
        if c in (ord("H"), ord("h"), ord("w")):
            self._need(buf, p + 3)
            key = {ord("H"): "hri_position", ord("h"): "height", ord("w"): "module_width"}[c]
            self._hri[key] = buf[p + 2] % 48 if key == "hri_position" else buf[p + 2]
            return p + 3
        if c in _GS_FIXED:
            end = p + 2 + _GS_FIXED[c]
            self._need(buf, end)
            if c in (ord("I"), ord("r")):
                self._note(p, f"GS {chr(c)} {buf[p + 2]}: transmit request not answered")
            return end
        self._note(p, f"unknown command GS 0x{c:02X} skipped")
        return p + 2

    def _fs(self, buf: bytearray, p: int) -> int:
        self._need(buf, p + 2)
        c = buf[p + 1]
        if c == ord("("):
            self._need(buf, p + 5)
            end = self._skip(buf, p, p + 5 + buf[p + 3] + 256 * buf[p + 4])
            self._note(p, f"FS ( {chr(buf[p + 2])!r} skipped")
            return end
        if c in _FS_FIXED:
            end = p + 2 + _FS_FIXED[c]
            self._need(buf, end)
            return end
        self._note(p, f"unknown command FS 0x{c:02X} skipped")
        return p + 2

    def _dle(self, buf: bytearray, p: int) -> int:
        self._need(buf, p + 2)
        c = buf[p + 1]
        if c == EOT:
            self._need(buf, p + 3)
            n = buf[p + 2]
            if 1 <= n <= 4:
                self._events.append(StatusRequest(n, self._base + p))
                return p + 3
            if n in (7, 8):
                self._need(buf, p + 4)
                self._note(p, f"DLE EOT {n} {buf[p + 3]}: status request not answered")
                return p + 4
            self._note(p, f"DLE EOT {n}: out of range 1..4, skipped")
            return p + 3
        if c == 0x05:
            self._need(buf, p + 3)
            self._note(p, f"DLE ENQ {buf[p + 2]} ignored")
            return p + 3
        if c == 0x14:
            self._need(buf, p + 3)
            end = p + 3 + (7 if buf[p + 2] == 8 else 2)
            self._need(buf, end)
            self._note(p, f"DLE DC4 {buf[p + 2]} ignored")
            return end
        self._note(p, "DLE not followed by EOT/ENQ/DC4, skipped")
        return p + 1

    def _skip(self, buf: bytearray, p: int, end: int) -> int:
        self._need(buf, end)
        return end

    def _cut(self, kind: str, feed: int, p: int, end: int) -> int:
        self._end_line(force=False)
        self.current.cuts.append(Cut(kind, feed, self._base + p))
        receipt = self.current
        receipt.end_offset = self._base + end
        self.current = Receipt(code_page=self._codec, start_offset=self._base + end)
        self._events.append(ReceiptDone(receipt))
        return end

    # -- variable-length commands -----------------------------------------------------------
    def _esc_user_chars(self, buf: bytearray, p: int) -> int:
        self._need(buf, p + 5)
        y, c1, c2 = buf[p + 2], buf[p + 3], buf[p + 4]
        if c2 < c1:
            raise _Bad(f"ESC & char range {c1}..{c2} is reversed", p, p + 5)
        q = p + 5
        for _ in range(c2 - c1 + 1):
            self._need(buf, q + 1)
            q += 1 + y * buf[q]
        self._need(buf, q)
        self._note(p, "ESC & user-defined characters skipped")
        return q

    def _esc_bit_image(self, buf: bytearray, p: int) -> int:
        self._need(buf, p + 5)
        m, cols = buf[p + 2], buf[p + 3] + 256 * buf[p + 4]
        if m not in (0, 1, 32, 33):
            raise _Bad(f"ESC * mode {m} is not 0, 1, 32 or 33", p, p + 5)
        if not 1 <= cols <= MAX_BIT_IMAGE_COLUMNS:
            raise _Bad(f"ESC * width {cols} outside 1..{MAX_BIT_IMAGE_COLUMNS}", p, p + 5)
        depth = 3 if m >= 32 else 1
        end = p + 5 + cols * depth
        self._need(buf, end)
        from PIL import Image

        columns = bytes(buf[p + 5 : end]).translate(INVERT_BITS)
        img = Image.frombytes("1", (8 * depth, cols), columns).transpose(Image.Transpose.TRANSPOSE)
        rows = img.tobytes().translate(INVERT_BITS)
        line = self._flush_pending()
        self.current.images.append(
            RasterImage("ESC *", cols, 8 * depth, rows, line, self._base + p)
        )
        return end

    def _gs_raster(self, buf: bytearray, p: int) -> int:
        self._need(buf, p + 8)
        if buf[p + 2] not in (0, 48):
            self._note(p, "unknown command GS v skipped")
            return p + 2
        m = buf[p + 3]
        x, y = buf[p + 4] + 256 * buf[p + 5], buf[p + 6] + 256 * buf[p + 7]
        if m not in (0, 1, 2, 3, 48, 49, 50, 51):
            raise _Bad(f"GS v 0 mode {m} is not 0..3 or 48..51", p, p + 8)
        if not (1 <= x <= MAX_RASTER_WIDTH_BYTES and 1 <= y <= MAX_RASTER_ROWS):
            raise _Bad(
                f"GS v 0 size {x} bytes x {y} rows outside 1..{MAX_RASTER_WIDTH_BYTES} x "
                f"1..{MAX_RASTER_ROWS}",
                p,
                p + 8,
            )
        end = p + 8 + x * y
        self._need(buf, end)
        line = self._flush_pending()
        self.current.images.append(
            RasterImage("GS v 0", x * 8, y, bytes(buf[p + 8 : end]), line, self._base + p)
        )
        return end

    def _gs_barcode(self, buf: bytearray, p: int) -> int:
        self._need(buf, p + 3)
        m = buf[p + 2]
        if m <= 6:
            stop = buf.find(NUL, p + 3, p + 3 + 256)
            if stop < 0:
                if len(buf) < p + 3 + 256:
                    raise _More(len(buf) + 1)
                raise _Bad(f"GS k {m} data not NUL-terminated within 255 bytes", p, p + 3)
            data, end = bytes(buf[p + 3 : stop]), stop + 1
        elif 65 <= m <= 79:
            self._need(buf, p + 4)
            end = p + 4 + buf[p + 3]
            self._need(buf, end)
            data = bytes(buf[p + 4 : end])
        else:
            self._note(p, f"GS k {m}: unknown symbology skipped")
            return p + 3
        symbology = SYMBOLOGIES[m]
        text = code128_text(data) if m == 73 else data.decode("latin-1")
        line = self._flush_pending()
        self.current.barcodes.append(
            Barcode(symbology, m, data, text, line_index=line, offset=self._base + p, **self._hri)
        )
        return end

    def _gs_paren(self, buf: bytearray, p: int) -> int:
        self._need(buf, p + 5)
        fn_letter, size = buf[p + 2], buf[p + 3] + 256 * buf[p + 4]
        end = p + 5 + size
        if fn_letter != ord("k"):
            self._skip(buf, p, end)
            self._note(p, f"GS ( {chr(fn_letter)!r} skipped")
            return end
        if size < 2:
            raise _Bad(f"GS ( k length {size} is below 2 (cn and fn are required)", p, p + 5)
        self._need(buf, end)
        cn, fn, args = buf[p + 5], buf[p + 6], bytes(buf[p + 7 : end])
        if cn != 49:
            self._note(p, f"GS ( k cn={cn} fn={fn}: 2D symbol other than QR not decoded")
            return end
        expected = {65: 2, 67: 1, 69: 1, 81: 1, 82: 1}
        if fn in expected and len(args) != expected[fn]:
            raise _Bad(
                f"GS ( k QR function {fn + 100} needs length {expected[fn] + 2}, got {size}",
                p,
                end,
            )
        if fn == 65:
            self._qr_set(p, "model", QR_MODELS.get(args[0]), args[0])
        elif fn == 67:
            self._qr_set(p, "module_size", args[0] if 1 <= args[0] <= 16 else None, args[0])
        elif fn == 69:
            self._qr_set(p, "error_level", QR_LEVELS.get(args[0]), args[0])
        elif fn == 80:
            if len(args) < 1:
                raise _Bad("GS ( k QR function 180 needs length >= 3", p, end)
            self._qr_data = args[1:]
        elif fn == 81:
            line = self._flush_pending()
            payload = _text_of(self._qr_data)
            self.current.qr_codes.append(
                QrCode(payload, self._qr_data, line_index=line, offset=self._base + p, **self._qr)
            )
        else:
            self._note(p, f"GS ( k QR function {fn + 100} ignored")
        return end

    def _qr_set(self, p: int, key: str, value: Any, raw: int) -> None:
        if value is None:
            self._note(p, f"QR {key} value {raw} out of range, ignored")
        else:
            self._qr[key] = value


def _text_of(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_stream(data: bytes) -> list[Receipt]:
    """Decode a whole captured stream into receipts (the last one may lack a cut)."""
    decoder = EscPosDecoder()
    receipts = [e.receipt for e in decoder.feed(data) if isinstance(e, ReceiptDone)]
    tail = decoder.flush()
    return [*receipts, tail] if tail is not None else receipts
