"""Receipt printer emulator through a real pty null-modem: status replies, receipts, lost port."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from simproc import spawn, stop

from drivers.escpos import EscPosBuilder
from drivers.printer import PrinterError, PrinterState, SerialPrinterEmulator
from rig.evidence import Transcript, read_transcript


@pytest.fixture
def cable(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    proc, ends = spawn("nullmodem", "--a", str(tmp_path / "A"), "--b", str(tmp_path / "B"))
    try:
        yield proc, ends["a"], ends["b"]
    finally:
        stop(proc)


@pytest.fixture
def rig(
    cable: tuple[subprocess.Popen[bytes], str, str], tmp_path: Path
) -> Iterator[tuple[SerialPrinterEmulator, serial.Serial, Transcript]]:
    _, a, b = cable
    transcript = Transcript(tmp_path / "printer.jsonl", "printer")
    printer = SerialPrinterEmulator(a, transcript=transcript, evidence_dir=tmp_path / "evidence")
    terminal = serial.Serial(b, 115200, timeout=2)
    try:
        yield printer, terminal, transcript
    finally:
        terminal.close()
        printer.close()
        transcript.close()


def ask(terminal: serial.Serial, n: int) -> int:
    terminal.write(bytes([0x10, 0x04, n]))
    reply = terminal.read(1)
    assert len(reply) == 1, f"no reply to DLE EOT {n}"
    return reply[0]


def test_status_table_matches_reference() -> None:
    assert [PrinterState().status_byte(n) for n in (1, 2, 3, 4)] == [0x12] * 4
    out = PrinterState(paper_out=True)
    assert [out.status_byte(n) for n in (1, 2, 3, 4)] == [0x1A, 0x32, 0x12, 0x72]
    near = PrinterState(paper_near_end=True)
    assert near.status_byte(4) == 0x1E and near.status_byte(1) == 0x12


def test_dle_eot_normal_paper_out_cover_open(rig) -> None:
    printer, terminal, _ = rig
    assert [ask(terminal, n) for n in (1, 2, 3, 4)] == [0x12, 0x12, 0x12, 0x12]
    printer.set_paper_out(True)
    assert ask(terminal, 4) == 0x72
    assert ask(terminal, 1) == 0x1A
    assert ask(terminal, 2) == 0x32
    printer.set_paper_out(False)
    printer.set_cover_open(True)
    assert ask(terminal, 2) == 0x16
    assert ask(terminal, 1) == 0x1A
    assert ask(terminal, 4) == 0x12


def test_receipt_decoded_and_image_written(rig, tmp_path: Path) -> None:
    printer, terminal, transcript = rig
    stream = (
        EscPosBuilder()
        .text("ACME STORE", bold=True, align="center")
        .text("SALE 12.34 EUR")
        .raster(1, bytes([0xAA, 0x55]))
        .qr("00020101021253039785802FR6304ABCD")
        .cut()
        .build()
    )
    terminal.write(stream)
    receipt = printer.wait_for_receipt(timeout=5)
    assert receipt.text() == "ACME STORE\nSALE 12.34 EUR"
    assert receipt.lines[0].bold and receipt.lines[0].align == "center"
    assert receipt.qr_codes[0].payload.endswith("6304ABCD")
    assert (tmp_path / "evidence" / "receipt-000-image-0.png").read_bytes()[:4] == b"\x89PNG"
    transcript.flush()
    entries = read_transcript(tmp_path / "printer.jsonl")
    assert any(e["dir"] == "rx" for e in entries)
    assert any(e.get("decoded", {}).get("text") == receipt.text() for e in entries)


def test_receipt_held_while_paper_out(rig) -> None:
    printer, terminal, _ = rig
    printer.set_paper_out(True)
    terminal.write(EscPosBuilder().text("held").cut().build())
    assert ask(terminal, 4) == 0x72  # the stream is decoded past the cut
    with pytest.raises(PrinterError, match="1 held while offline"):
        printer.wait_for_receipt(timeout=0.3)
    printer.set_paper_out(False)
    assert printer.wait_for_receipt(timeout=2).text() == "held"


def test_wait_times_out_with_clear_error(rig) -> None:
    printer, _, _ = rig
    with pytest.raises(PrinterError, match=r"no receipt within 0\.2 s"):
        printer.wait_for_receipt(timeout=0.2)


def test_port_vanishing_surfaces_error(cable, tmp_path: Path) -> None:
    proc, a, _ = cable
    printer = SerialPrinterEmulator(a)
    try:
        proc.terminate()
        proc.wait(timeout=5)
        with pytest.raises(PrinterError, match="vanished"):
            printer.wait_for_receipt(timeout=5)
        with pytest.raises(PrinterError, match="vanished"):
            printer.set_paper_out(True)
        deadline = time.monotonic() + 2
        while printer.alive and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not printer.alive
    finally:
        printer.close()


def test_open_missing_port_is_clear(tmp_path: Path) -> None:
    with pytest.raises(PrinterError, match="cannot open"):
        SerialPrinterEmulator(str(tmp_path / "nope"))
