"""Placeholder device under test: a minimal terminal on three serial ports (the reference terminal
replaces it later).

    python -m rig.bench.sim.dut --ecr PATH --printer PATH --scanner PATH
        [--state-dir DIR] [--name NAME]

The paths are the device ends of null-modem cables (`rig.bench.sim.nullmodem`). It speaks the
terminal side of the rig's ECR protocol (canned answers from `ecr_peer.TerminalModel`), reports
the last QR code read on the scanner port (lines ended by CR, LF or CRLF) in `status`, and on
`reprint` asks the printer for its real-time status (DLE EOT 1, then 4, or 2 when offline) and
prints a sample ESC/POS receipt, or answers a printer error code. It is normally started by the
power-rail simulator, which SIGKILLs it on a power cut, so it keeps no state that needs cleanup;
it writes its pid to DIR/dut.pid and still prints the usual readiness line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import sys
import time
import tty
from pathlib import Path

from drivers.ecr import EcrMessageError, Message
from drivers.ecr import messages as msgs
from drivers.ecr.messages import Result
from rig.bench.sim.common import announce_failure, announce_ready, exit_on_sigterm
from rig.bench.sim.ecr_peer import (
    TEST_MASKED_PAN,
    TerminalEndpoint,
    TerminalModel,
    error_response,
)

PRINTER_STATUS_TIMEOUT = 0.5
"""Seconds the DUT waits for each real-time status byte before calling the printer silent."""

ESC, GS, DLE, EOT = 0x1B, 0x1D, 0x10, 0x04
STATUS_FIXED_MASK, STATUS_FIXED_BITS = 0x93, 0x12
"""ESC/POS real-time status bytes have bits 0 and 7 clear and bits 1 and 4 set."""
OFFLINE = 0x08  # n=1: printer offline
COVER_OPEN = 0x04  # n=2: cover is open
PAPER_STOP = 0x20  # n=2: printing stopped by paper end
PAPER_END = 0x60  # n=4: roll paper end sensor


def _logo(width: int = 32, height: int = 16) -> bytes:
    """A small raster logo: a frame with a diagonal, 1 bit per dot, MSB first."""
    rows = []
    for y in range(height):
        bits = 0
        for x in range(width):
            on = y in (0, height - 1) or x in (0, width - 1) or x // 2 == y
            bits = (bits << 1) | on
        rows.append(bits.to_bytes(width // 8, "big"))
    return b"".join(rows)


def sample_receipt(merchant: str, terminal: str, reference: str = "SAMPLE") -> bytes:
    """ESC/POS bytes of the sample receipt (test PAN, masked)."""
    qr = f"posrig:{terminal}:{reference}".encode("ascii")
    store = len(qr) + 3
    barcode = b"{B" + reference.encode("ascii")
    logo = _logo()
    out = bytearray()
    out += bytes((ESC, 0x40))
    out += bytes((ESC, 0x61, 1, ESC, 0x45, 1, GS, 0x21, 0x11))
    out += merchant.encode("ascii") + b"\n"
    out += bytes((GS, 0x21, 0x00, ESC, 0x45, 0, ESC, 0x61, 0))
    out += f"TERMINAL {terminal}\n".encode("ascii")
    out += time.strftime("DATE %Y-%m-%d %H:%M\n").encode("ascii")
    out += bytes((ESC, 0x2D, 1)) + b"SALE - TEST RECEIPT\n" + bytes((ESC, 0x2D, 0))
    out += f"CARD {TEST_MASKED_PAN}\n".encode("ascii")
    out += b"AMOUNT      EUR 12.34\n"
    out += f"REF {reference}\n".encode("ascii")
    out += bytes((ESC, 0x61, 1))
    out += bytes((GS, 0x28, 0x6B, 4, 0, 0x31, 0x41, 0x32, 0x00))  # fn 165: model 2
    out += bytes((GS, 0x28, 0x6B, 3, 0, 0x31, 0x43, 6))  # fn 167: module size 6
    out += bytes((GS, 0x28, 0x6B, 3, 0, 0x31, 0x45, 0x31))  # fn 169: error level M
    out += bytes((GS, 0x28, 0x6B, store & 0xFF, store >> 8, 0x31, 0x50, 0x30)) + qr  # fn 180
    out += bytes((GS, 0x28, 0x6B, 3, 0, 0x31, 0x51, 0x30))  # fn 181: print
    out += bytes((GS, 0x68, 60, GS, 0x48, 2))  # barcode height, HRI below
    out += bytes((GS, 0x6B, 73, len(barcode))) + barcode
    out += bytes((GS, 0x76, 0x30, 0, 4, 0, 16, 0)) + logo
    out += bytes((ESC, 0x61, 0, ESC, 0x64, 3))
    out += bytes((GS, 0x56, 66, 0))
    return bytes(out)


class Dut(TerminalModel):
    """The placeholder terminal: canned ECR answers plus a real printer and scanner port."""

    firmware = "posrig-dut-0.1"

    def __init__(self, name: str, printer_fd: int, scanner_fd: int) -> None:
        super().__init__(name)
        self.printer_fd = printer_fd
        self.scanner_fd = scanner_fd
        self.last_qr = ""
        self.printer = "unknown"
        self._scan_buf = b""

    def read_scanner(self) -> None:
        """Take whatever the scanner sent; each CR/LF-ended line is a payload, last one kept."""
        while _readable(self.scanner_fd, 0):
            data = _read(self.scanner_fd)
            if not data:
                break
            self._scan_buf += data
        lines = self._scan_buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        self._scan_buf = lines.pop()[-4096:]
        for line in lines:
            if line:
                decoded = line.decode("utf-8", errors="replace")
                text = "".join(c if c.isprintable() else "?" for c in decoded)
                self.last_qr = msgs.mask_clear_pans(text)[:512]

    def do_status(self, msg: Message) -> Message:
        self.read_scanner()
        return msgs.response(
            msg,
            Result.OK,
            name=self.name,
            firmware=self.firmware,
            state="idle",
            display=self.display,
            last_qr=self.last_qr,
            uptime_s=self.uptime(),
            printer=self.printer,
            handled=self.handled,
        )

    def do_reprint(self, msg: Message) -> Message:
        problem = self.check_printer()
        if problem is not None:
            result, text = problem
            return msgs.response(msg, result, text=text)
        self.display = "PRINTING"
        try:
            _write_all(self.printer_fd, sample_receipt("POSRIG TEST SHOP", self.name))
        except OSError as exc:
            self.printer = "no-answer"
            return msgs.response(msg, Result.PRINTER_NOT_RESPONDING, text=f"write failed: {exc}")
        finally:
            self.display = "READY"
        return msgs.response(msg, Result.OK)

    def check_printer(self) -> tuple[Result, str] | None:
        """Ask DLE EOT 1 (and 2 or 4); None when the printer can print."""
        first = self._status(1)
        if first is None:
            self.printer = "no-answer"
            return Result.PRINTER_NOT_RESPONDING, "no answer to DLE EOT 1"
        if first & OFFLINE:
            cause = self._status(2)
            if cause is not None and cause & COVER_OPEN:
                self.printer = "cover-open"
                return Result.PRINTER_COVER_OPEN, "printer cover open"
            if cause is not None and cause & PAPER_STOP:
                self.printer = "paper-out"
                return Result.PRINTER_PAPER_OUT, "printer out of paper"
            self.printer = "offline"
            return Result.PRINTER_NOT_RESPONDING, "printer offline"
        paper = self._status(4)
        if paper is None:
            self.printer = "no-answer"
            return Result.PRINTER_NOT_RESPONDING, "no answer to DLE EOT 4"
        if paper & PAPER_END:
            self.printer = "paper-out"
            return Result.PRINTER_PAPER_OUT, "printer out of paper"
        self.printer = "ok"
        return None

    def _status(self, n: int) -> int | None:
        while _readable(self.printer_fd, 0) and _read(self.printer_fd):
            pass
        _write_all(self.printer_fd, bytes((DLE, EOT, n)))
        deadline = time.monotonic() + PRINTER_STATUS_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            if _readable(self.printer_fd, left):
                data = _read(self.printer_fd)
                if data:
                    byte = data[-1]
                    ok = byte & STATUS_FIXED_MASK == STATUS_FIXED_BITS
                    return byte if ok else None
        return None


def _readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except (BlockingIOError, InterruptedError):
        return b""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        select.select([], [fd], [], 1.0)
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue


def _open_port(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    with contextlib.suppress(OSError):
        tty.setraw(fd)
    return fd


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ecr", required=True, help="device end of the ECR cable")
    parser.add_argument("--printer", required=True, help="device end of the printer cable")
    parser.add_argument("--scanner", required=True, help="device end of the scanner cable")
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--name", default="DUT-1")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    fds: list[int] = []
    try:
        for path in (args.ecr, args.printer, args.scanner):
            fds.append(_open_port(path))
    except OSError as exc:
        announce_failure(f"dut cannot open {exc.filename}: {exc.strerror}; start the cables first")
        sys.exit(2)
    if args.state_dir is not None:
        args.state_dir.mkdir(parents=True, exist_ok=True)
        (args.state_dir / "dut.pid").write_text(f"{os.getpid()}\n")
    ecr_fd, printer_fd, scanner_fd = fds
    dut = Dut(args.name, printer_fd, scanner_fd)
    endpoint = TerminalEndpoint(ecr_fd)
    announce_ready(ecr=args.ecr, printer=args.printer, scanner=args.scanner)
    try:
        while True:
            for item in endpoint.poll(0.05):
                if isinstance(item, EcrMessageError):
                    endpoint.send(error_response(item))
                elif "cmd" in item:
                    endpoint.send(dut.handle(item))
            dut.read_scanner()
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


if __name__ == "__main__":
    main()
