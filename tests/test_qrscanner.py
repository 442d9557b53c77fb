"""QR scanner played by the rig, read by a plain serial 'terminal' through a pty null-modem."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from simproc import spawn, stop

from drivers.qrscanner import QrScannerError, SerialQrScanner
from rig.evidence import Transcript, read_transcript

# EMVCo merchant-presented QR example: ID 00 "01", 01 "12", ..., ending in 63 04 + CRC
# (EMV QRCPS Merchant-Presented Mode v1.1, section 4.7.3: CRC-16/CCITT-FALSE over the data
# including "6304"). Test data only.
EMVCO_QR = (
    "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678"
    "52044111530315654031005802CN5914BEST TRANSPORT6007BEIJING6304"
)


def crc16_ccitt_false(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = (crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


@pytest.fixture
def ends(tmp_path: Path) -> Iterator[tuple[str, str]]:
    proc, cable = spawn("nullmodem", "--a", str(tmp_path / "A"), "--b", str(tmp_path / "B"))
    try:
        yield cable["a"], cable["b"]
    finally:
        stop(proc)


def read_until(port: serial.Serial, terminator: bytes) -> bytes:
    data = port.read_until(terminator)
    assert data.endswith(terminator), data
    return data


def test_scan_with_default_cr_suffix(ends, tmp_path: Path) -> None:
    a, b = ends
    transcript = Transcript(tmp_path / "scanner.jsonl", "qrscanner")
    with (
        serial.Serial(b, 9600, timeout=2) as terminal,
        SerialQrScanner(a, transcript=transcript) as scanner,
    ):
        sent = scanner.scan("ORDER-42")
        assert sent == b"ORDER-42\r"
        assert read_until(terminal, b"\r") == b"ORDER-42\r"
    transcript.close()
    entries = read_transcript(tmp_path / "scanner.jsonl")
    assert [e["decoded"] for e in entries if e["dir"] == "tx"] == [{"scan": "ORDER-42"}]


@pytest.mark.parametrize(
    ("suffix", "wire"), [("\r\n", b"\r\n"), ("tab", b"\t"), ("none", b""), ("crlf", b"\r\n")]
)
def test_configurable_suffix_and_prefix(ends, suffix: str, wire: bytes) -> None:
    a, b = ends
    with (
        serial.Serial(b, 9600, timeout=0.5) as terminal,
        SerialQrScanner(a, prefix="]Q1", suffix=suffix) as scanner,
    ):
        scanner.scan("X1")
        expected = b"]Q1X1" + wire
        assert terminal.read(len(expected) + 4) == expected


def test_utf8_payload(ends) -> None:
    a, b = ends
    payload = "付款码 Zahlung €5"
    with serial.Serial(b, 9600, timeout=2) as terminal, SerialQrScanner(a) as scanner:
        scanner.scan(payload)
        assert read_until(terminal, b"\r")[:-1].decode("utf-8") == payload


def test_emvco_payload_with_crc_arrives_intact(ends) -> None:
    a, b = ends
    payload = EMVCO_QR + f"{crc16_ccitt_false(EMVCO_QR.encode()):04X}"
    with serial.Serial(b, 9600, timeout=2) as terminal, SerialQrScanner(a) as scanner:
        scanner.scan(payload)
        got = read_until(terminal, b"\r")[:-1].decode("ascii")
    assert got == payload
    body, crc = got[:-4], got[-4:]
    assert body.endswith("6304")
    assert int(crc, 16) == crc16_ccitt_false(body.encode())


def test_crc_helper_check_value() -> None:
    # CRC-16/CCITT-FALSE check value for "123456789" is 0x29B1 (RevEng CRC catalogue).
    assert crc16_ccitt_false(b"123456789") == 0x29B1


def test_missing_port_is_clear(tmp_path: Path) -> None:
    with pytest.raises(QrScannerError, match="cannot open"):
        SerialQrScanner(str(tmp_path / "absent"))
