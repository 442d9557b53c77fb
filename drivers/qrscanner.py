"""The terminal's QR/barcode scanner, played by the rig on a serial port.

A real scanner in serial (or keyboard-wedge) mode sends each decoded symbol as text followed by
a configured suffix, usually CR. `SerialQrScanner.scan()` does exactly that on the port the
terminal reads its scanner from.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

import serial

from rig.evidence import Direction, Transcript, null_transcript

SUFFIXES = {"cr": "\r", "crlf": "\r\n", "lf": "\n", "tab": "\t", "none": ""}
"""Named suffixes as scanner configuration sheets call them."""


class QrScannerError(RuntimeError):
    """The scanner port could not be opened or written."""


class QrScanner(Protocol):
    """A scanner as the rig sees it: present a symbol to the terminal."""

    def scan(self, payload: str) -> bytes: ...

    def close(self) -> None: ...


class SerialQrScanner:
    """Sends prefix + payload (UTF-8) + suffix on `port` for each scan."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        prefix: str = "",
        suffix: str = "\r",
        transcript: Transcript | None = None,
    ) -> None:
        self.port = port
        self.prefix = prefix
        self.suffix = SUFFIXES.get(suffix, suffix)
        self.transcript = transcript or null_transcript("qrscanner")
        try:
            self._serial = serial.serial_for_url(port, baudrate=baudrate, write_timeout=2)
        except (serial.SerialException, OSError, ValueError) as exc:
            self.transcript.record(Direction.EVENT, None, {"open": port}, error=str(exc))
            raise QrScannerError(
                f"scanner port {port}: cannot open ({exc}); check the bench cabling"
            ) from exc
        self.transcript.record(
            Direction.EVENT, None, {"open": port, "prefix": prefix, "suffix": self.suffix}
        )

    def scan(self, payload: str) -> bytes:
        """Present `payload` as one scanned symbol; returns the bytes sent."""
        frame = (self.prefix + payload + self.suffix).encode("utf-8")
        try:
            self._serial.write(frame)
            self._serial.flush()
        except (serial.SerialException, OSError) as exc:
            self.transcript.record(Direction.TX, frame, {"scan": payload}, error=str(exc))
            raise QrScannerError(
                f"scanner port {self.port}: write failed ({exc}); is the terminal link up?"
            ) from exc
        self.transcript.record(Direction.TX, frame, {"scan": payload})
        return frame

    def close(self) -> None:
        with contextlib.suppress(serial.SerialException, OSError):
            self._serial.close()
        self.transcript.record(Direction.EVENT, None, {"close": self.port})

    def __enter__(self) -> SerialQrScanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
