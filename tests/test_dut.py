"""The placeholder DUT on three null-modem cables: ECR through PosrigEcrLink, scanner, printer."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from simproc import spawn, stop

from drivers.ecr import EcrTimeout
from drivers.ecr import messages as m
from drivers.ecr.posrig_link import PosrigEcrLink

ONLINE = 0x12
PAPER_END = 0x72
OFFLINE = 0x1A
COVER_OPEN_CAUSE = 0x16


class Bench:
    def __init__(self, root: Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ends: dict[str, str] = {}
        for cable in ("ecr", "printer", "scanner"):
            proc, ends = spawn(
                "nullmodem", "--a", str(root / cable), "--b", str(root / f"dut-{cable}")
            )
            self.procs.append(proc)
            self.ends[cable] = ends["a"]
            self.ends[f"dut-{cable}"] = ends["b"]
        self.state = root / "state"
        self.dut, self.dut_endpoints = spawn(
            "dut",
            "--ecr",
            self.ends["dut-ecr"],
            "--printer",
            self.ends["dut-printer"],
            "--scanner",
            self.ends["dut-scanner"],
            "--state-dir",
            str(self.state),
            "--name",
            "DUT-T1",
        )
        self.printer = _open_raw(self.ends["printer"])
        self.scanner = _open_raw(self.ends["scanner"])
        self.link = PosrigEcrLink(self.ends["ecr"], ack_timeout=0.5, response_timeout=5)
        self.link.open()

    def close(self) -> None:
        self.link.close()
        for fd in (self.printer, self.scanner):
            os.close(fd)
        for proc in [self.dut, *self.procs]:
            stop(proc)


def _open_raw(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    return fd


def read_for(fd: int, seconds: float, until: bytes | None = None) -> bytes:
    data = b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if until is not None and until in data:
            break
        if select.select([fd], [], [], left)[0]:
            data += os.read(fd, 4096)
    return data


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    b = Bench(tmp_path_factory.mktemp("dut"))
    try:
        yield b
    finally:
        b.close()


def test_ping_and_pid_file(bench: Bench) -> None:
    pong = bench.link.request(m.request("ping"))
    assert pong["result"] == "00" and pong["name"] == "DUT-T1"
    assert pong["firmware"] == "posrig-dut-0.1"
    assert (bench.state / "dut.pid").read_text().strip() == str(bench.dut.pid)
    assert bench.dut_endpoints["ecr"] == bench.ends["dut-ecr"]


@pytest.mark.parametrize("ending", [b"\r", b"\n", b"\r\n"])
def test_scanner_payload_shows_in_status(bench: Bench, ending: bytes) -> None:
    payload = f"0002010102112650QR-{ending.hex()}"
    os.write(bench.scanner, payload.encode() + ending)
    for _ in range(20):
        status = bench.link.request(m.request("status"))
        if status["last_qr"] == payload:
            break
        time.sleep(0.05)
    assert status["last_qr"] == payload
    assert status["display"] == "READY" and status["uptime_s"] >= 0


def test_scanned_pan_is_masked_in_status(bench: Bench) -> None:
    # 4761739001010010: Visa test card PAN (test data), as if a card number were scanned
    os.write(bench.scanner, b"4761739001010010\r")
    for _ in range(20):
        status = bench.link.request(m.request("status"))
        if status["last_qr"].startswith("476173"):
            break
        time.sleep(0.05)
    assert status["last_qr"] == "476173******0010"


def run_printer(bench: Bench, answers: dict[int, int | None]) -> tuple[dict[str, Any], bytes]:
    """Answer the DUT's DLE EOT n queries from `answers` while a reprint runs; return both ends."""
    read_for(bench.printer, 0.05)
    seen = bytearray()
    result: dict[str, Any] = {}

    def ecr() -> None:
        result.update(bench.link.request(m.request("reprint", receipt="sample")))

    worker = threading.Thread(target=ecr)
    worker.start()
    deadline = time.monotonic() + 5
    while worker.is_alive() and time.monotonic() < deadline:
        data = read_for(bench.printer, 0.05)
        seen += data
        for n, answer in answers.items():
            query = bytes([0x10, 0x04, n])
            if query in data and answer is not None:
                os.write(bench.printer, bytes([answer]))
    worker.join(5)
    seen += read_for(bench.printer, 0.1)
    return result, bytes(seen)


def test_reprint_asks_status_then_prints_escpos(bench: Bench) -> None:
    result, printed = run_printer(bench, {1: ONLINE, 4: ONLINE})
    assert result["result"] == "00"
    assert printed.startswith(bytes.fromhex("10 04 01 10 04 04 1B 40"))
    receipt = printed[6:]
    for command in (
        "1B 61 01",
        "1B 45 01",
        "1D 21 11",
        "1B 2D 01",
        "1D 28 6B 04 00 31 41",
        "1D 28 6B 03 00 31 43",
        "1D 28 6B 03 00 31 45",
        "1D 28 6B 03 00 31 51 30",
        "1D 6B 49",
        "1D 76 30 00 04 00 10 00",
    ):
        assert bytes.fromhex(command) in receipt, command
    assert b"\x1d\x28\x6b" in receipt and b"\x31\x50\x30posrig:DUT-T1:SAMPLE" in receipt
    assert b"CARD 476173******0010" in receipt
    assert receipt.endswith(bytes.fromhex("1D 56 42 00"))
    assert bench.link.request(m.request("status"))["printer"] == "ok"


@pytest.mark.parametrize(
    ("answers", "code", "queries"),
    [
        ({1: ONLINE, 4: PAPER_END}, m.Result.PRINTER_PAPER_OUT, "10 04 01 10 04 04"),
        ({1: OFFLINE, 2: COVER_OPEN_CAUSE}, m.Result.PRINTER_COVER_OPEN, "10 04 01 10 04 02"),
        ({1: None}, m.Result.PRINTER_NOT_RESPONDING, "10 04 01"),
    ],
    ids=["paper-out", "cover-open", "no-answer"],
)
def test_printer_fault_gives_printer_error(bench: Bench, answers, code, queries) -> None:
    result, printed = run_printer(bench, answers)
    assert result["result"] == code
    assert printed == bytes.fromhex(queries), "the DUT printed despite the fault"


def test_dut_stops_on_sigterm(tmp_path: Path) -> None:
    b = Bench(tmp_path)
    try:
        assert b.link.request(m.request("ping"))["result"] == "00"
        b.dut.send_signal(signal.SIGTERM)
        assert b.dut.wait(5) == 0
    finally:
        b.close()


def test_power_cut_then_restart_on_the_same_cables(tmp_path: Path) -> None:
    b = Bench(tmp_path)
    try:
        b.dut.kill()
        b.dut.wait(5)
        start = time.monotonic()
        with pytest.raises(EcrTimeout):
            b.link.request(m.request("ping"), timeout=0.5)
        assert time.monotonic() - start < 5
        b.dut, _ = spawn(
            "dut",
            "--ecr",
            b.ends["dut-ecr"],
            "--printer",
            b.ends["dut-printer"],
            "--scanner",
            b.ends["dut-scanner"],
            "--name",
            "DUT-T2",
        )
        assert b.link.request(m.request("ping"))["name"] == "DUT-T2"
    finally:
        b.close()
