"""The terminal's receipt printer, played by the rig on a serial port (ESC/POS).

`SerialPrinterEmulator` opens the port the terminal prints to, decodes the stream in a reader
thread, answers real-time status requests (DLE EOT n) at once from a settable paper/cover
state, and collects the receipts. A vanished port ends the thread; the next call raises
`PrinterError` naming the port.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import serial

from drivers.escpos import EscPosDecoder, EscPosError, Receipt, ReceiptDone, StatusRequest
from rig.evidence import Direction, Transcript, null_transcript

FIXED_BITS = 0x12
"""Bits 1 and 4 are fixed on in every DLE EOT reply; bits 0 and 7 fixed off."""

STATUS_BITS: dict[int, dict[str, int]] = {
    1: {"drawer_pin3_high": 0x04, "offline": 0x08, "feed_button": 0x40},
    2: {"cover_open": 0x04, "feed_button": 0x08, "paper_end_stop": 0x20, "error": 0x40},
    3: {"autocutter_error": 0x08, "unrecoverable_error": 0x20, "auto_recoverable_error": 0x40},
    4: {"paper_near_end": 0x0C, "paper_end": 0x60},
}
"""DLE EOT n reply bits, from the ESC/POS command reference ("Transmit real-time status"):
n=1 printer status, n=2 offline cause, n=3 error cause, n=4 roll paper sensor (two bits each)."""


@dataclass
class PrinterState:
    """What a test can set on the emulated printer."""

    paper_out: bool = False
    paper_near_end: bool = False
    cover_open: bool = False
    cutter_error: bool = False

    @property
    def online(self) -> bool:
        return not (self.paper_out or self.cover_open or self.cutter_error)

    def flags(self, n: int) -> set[str]:
        """Names of the STATUS_BITS set for DLE EOT n in this state."""
        on = {
            1: {"offline": not self.online},
            2: {
                "cover_open": self.cover_open,
                "paper_end_stop": self.paper_out,
                "error": self.cutter_error,
            },
            3: {"autocutter_error": self.cutter_error},
            4: {"paper_near_end": self.paper_near_end, "paper_end": self.paper_out},
        }[n]
        return {name for name, value in on.items() if value}

    def status_byte(self, n: int) -> int:
        """The reply to DLE EOT n (1..4)."""
        value = FIXED_BITS
        for name in self.flags(n):
            value |= STATUS_BITS[n][name]
        return value


class PrinterError(RuntimeError):
    """The printer port failed or no receipt came in time."""


class ReceiptPrinter(Protocol):
    """A receipt printer as the rig sees it: state to set, receipts to collect."""

    @property
    def receipts(self) -> list[Receipt]: ...

    def wait_for_receipt(self, timeout: float = 5.0) -> Receipt: ...

    def set_paper_out(self, value: bool) -> None: ...

    def set_cover_open(self, value: bool) -> None: ...

    def close(self) -> None: ...


class SerialPrinterEmulator:
    """Plays the terminal's ESC/POS printer on `port` (any pyserial URL or device path).

    While offline (paper out, cover open, cutter error) completed receipts are held, as a real
    printer holds its buffer, and come out when it is back online.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 115200,
        transcript: Transcript | None = None,
        evidence_dir: Path | str | None = None,
    ) -> None:
        self.port = port
        self.transcript = transcript or null_transcript("printer")
        self.evidence_dir = Path(evidence_dir) if evidence_dir is not None else None
        self.state = PrinterState()
        self._receipts: list[Receipt] = []
        self._held: list[Receipt] = []
        self._taken = 0
        self._cond = threading.Condition()
        self._error: str | None = None
        self._stop = threading.Event()
        self._decoder = EscPosDecoder()
        try:
            self._serial = serial.serial_for_url(port, baudrate=baudrate, timeout=0.05)
        except (serial.SerialException, OSError, ValueError) as exc:
            self.transcript.record(Direction.EVENT, None, {"open": port}, error=str(exc))
            raise PrinterError(
                f"printer port {port}: cannot open ({exc}); check the bench cabling"
            ) from exc
        self.transcript.record(Direction.EVENT, None, {"open": port, "baudrate": baudrate})
        self._thread = threading.Thread(target=self._run, name=f"printer:{port}", daemon=True)
        self._thread.start()

    # -- test-facing API --------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        """True while the reader thread runs (it stops on close or when the port vanishes)."""
        return self._thread.is_alive()

    @property
    def receipts(self) -> list[Receipt]:
        """Receipts printed so far (a copy)."""
        self._check()
        with self._cond:
            return list(self._receipts)

    def wait_for_receipt(self, timeout: float = 5.0) -> Receipt:
        """The next receipt not yet returned by this method; PrinterError after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._taken >= len(self._receipts):
                self._check()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PrinterError(
                        f"printer port {self.port}: no receipt within {timeout:g} s "
                        f"({len(self._held)} held while offline)"
                    )
                self._cond.wait(min(left, 0.1))
            self._taken += 1
            return self._receipts[self._taken - 1]

    def set_paper_out(self, value: bool) -> None:
        self._set(paper_out=value)

    def set_paper_near_end(self, value: bool) -> None:
        self._set(paper_near_end=value)

    def set_cover_open(self, value: bool) -> None:
        self._set(cover_open=value)

    def set_cutter_error(self, value: bool) -> None:
        self._set(cutter_error=value)

    def close(self) -> None:
        """Stop the reader thread and close the port."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)
        with contextlib.suppress(serial.SerialException, OSError):
            self._serial.close()
        self.transcript.record(Direction.EVENT, None, {"close": self.port})

    def __enter__(self) -> SerialPrinterEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------
    def _check(self) -> None:
        if self._error is not None:
            raise PrinterError(self._error)

    def _set(self, **changes: bool) -> None:
        self._check()
        with self._cond:
            for name, value in changes.items():
                setattr(self.state, name, value)
            if self.state.online and self._held:
                self._receipts.extend(self._held)
                self._held.clear()
                self._cond.notify_all()
        self.transcript.record(Direction.EVENT, None, {"state": vars(self.state).copy()})

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._serial.read(4096)
            except (serial.SerialException, OSError, TypeError) as exc:
                if self._stop.is_set():
                    break
                self._fail(f"printer port {self.port} vanished ({exc}); the terminal link is gone")
                return
            if data:
                self.transcript.record(Direction.RX, data)
                self._decode(data)

    def _decode(self, data: bytes) -> None:
        while True:
            try:
                events = self._decoder.feed(data)
            except EscPosError as exc:
                self.transcript.record(Direction.EVENT, None, None, error=str(exc))
                self._handle(exc.events)
                data = b""
                continue
            self._handle(events)
            return

    def _handle(self, events: list[StatusRequest | ReceiptDone]) -> None:
        for event in events:
            if isinstance(event, StatusRequest):
                self._answer(event.n)
            else:
                self._collect(event.receipt)

    def _answer(self, n: int) -> None:
        reply = bytes([self.state.status_byte(n)])
        try:
            self._serial.write(reply)
        except (serial.SerialException, OSError) as exc:
            self.transcript.record(Direction.TX, reply, {"dle_eot": n}, error=str(exc))
            return
        decoded = {"dle_eot": n, "flags": sorted(self.state.flags(n))}
        self.transcript.record(Direction.TX, reply, decoded)

    def _collect(self, receipt: Receipt) -> None:
        with self._cond:
            index = len(self._receipts) + len(self._held)
            online = self.state.online
        summary = {
            "receipt": index,
            "held_offline": not online,
            "lines": len(receipt.lines),
            "qr_codes": len(receipt.qr_codes),
            "barcodes": len(receipt.barcodes),
            "images": len(receipt.images),
            "notes": [n.message for n in receipt.notes],
            "text": receipt.text(),
        }
        self.transcript.record(Direction.EVENT, None, summary)
        if self.evidence_dir is not None:
            self._write_images(index, receipt)
        with self._cond:
            (self._receipts if self.state.online else self._held).append(receipt)
            self._cond.notify_all()

    def _write_images(self, index: int, receipt: Receipt) -> None:
        assert self.evidence_dir is not None
        try:
            self.evidence_dir.mkdir(parents=True, exist_ok=True)
            for j, image in enumerate(receipt.images):
                path = self.evidence_dir / f"receipt-{index:03d}-image-{j}.png"
                path.write_bytes(image.png())
        except OSError as exc:
            self.transcript.record(Direction.EVENT, None, {"receipt": index}, error=str(exc))

    def _fail(self, message: str) -> None:
        with self._cond:
            self._error = message
            self._cond.notify_all()
        self.transcript.record(Direction.EVENT, None, {"port": self.port}, error=message)
