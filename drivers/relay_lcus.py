"""LCUS-type USB relay boards (CH340 USB-serial, 1/2/4/8 channels), 9600 8N1.

Wire protocol (facts from the LC Technology product notes reproduced by many sellers, and from
public drivers named below): a command is four bytes `A0 <channel> <op> <checksum>`, channel
1-based, checksum = (0xA0 + channel + op) & 0xFF; e.g. relay 1 on = A0 01 01 A2, off = A0 01 00 A1.
A frame with a wrong checksum is ignored by the board. Read-back differs between makers, so it
is chosen per board with `readback` (data in `READBACK_MODES`):

- "status" (LC Technology / "EC Buying" LCUS-1..8): the single byte FF asks for the state of
  every relay; the board answers one ASCII line per channel, `CH1:OFF \\r\\n` / `CH2:ON \\r\\n`
  (format reported by the AscomSwitchDriver README and by Pebble94464/lcus-usb-relay-module-
  controller, demo1.py, which parses one line per relay).
- "feedback" (SAMIROB variant, Pebble94464/lcus-usb-relay-module-controller, DeviceB.py): op 2/3
  switch off/on and answer a 4-byte frame `A0 <channel> <state> <checksum>`; op 5 queries one
  channel with the same answer. A bad answer checksum raises RelayChecksumError.
- "none": boards that never answer; `get()` returns the driver's shadow of what it last set,
  which is not proof of the relay's real state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import serial

from drivers.relay import (
    PORT_ERRORS,
    RelayChecksumError,
    RelayError,
    RelayPortGone,
    RelayTimeout,
    check_channel,
    open_serial,
)
from rig.evidence import Direction, Transcript, null_transcript

START = 0xA0
STATUS_QUERY = b"\xff"
_STATUS_LINE = re.compile(r"^CH(\d+)\s*:\s*(ON|OFF)\s*$")


@dataclass(frozen=True)
class ReadbackMode:
    """How one LCUS maker's firmware switches relays and reports their state."""

    op_off: int
    op_on: int
    op_query: int | None
    answers_set: bool
    status_query: bool


READBACK_MODES: dict[str, ReadbackMode] = {
    "status": ReadbackMode(op_off=0, op_on=1, op_query=None, answers_set=False, status_query=True),
    "feedback": ReadbackMode(op_off=2, op_on=3, op_query=5, answers_set=True, status_query=False),
    "none": ReadbackMode(op_off=0, op_on=1, op_query=None, answers_set=False, status_query=False),
}


def checksum(channel: int, op: int) -> int:
    """The LCUS check byte: (0xA0 + channel + op) & 0xFF."""
    return (START + channel + op) & 0xFF


def encode_frame(channel: int, op: int) -> bytes:
    """Build the 4-byte command `A0 channel op checksum`."""
    if not 0 <= channel <= 0xFF or not 0 <= op <= 0xFF:
        raise RelayError(f"LCUS frame: channel {channel} and op {op} must each fit in one byte")
    return bytes((START, channel, op, checksum(channel, op)))


def decode_feedback(frame: bytes, port: str = "?") -> tuple[int, bool]:
    """Parse a 4-byte answer frame into (channel, on); raise RelayChecksumError or RelayError."""
    if len(frame) != 4:
        raise RelayError(
            f"LCUS board on {port}: answer frame {frame.hex(' ')!r} has {len(frame)} bytes, "
            "expected 4 (A0 channel state checksum)"
        )
    start, channel, state, check = frame
    if start != START:
        raise RelayError(
            f"LCUS board on {port}: answer frame {frame.hex(' ')} starts with {start:02X}, "
            "expected A0; is readback='feedback' right for this board?"
        )
    if check != checksum(channel, state):
        raise RelayChecksumError(
            f"LCUS board on {port}: answer frame {frame.hex(' ')} has checksum {check:02X}, "
            f"expected {checksum(channel, state):02X}; check the cable and baud rate"
        )
    if state not in (0, 1):
        raise RelayError(
            f"LCUS board on {port}: answer frame {frame.hex(' ')} carries state {state:02X}, "
            "expected 00 or 01"
        )
    return channel, bool(state)


def decode_status(raw: bytes, port: str = "?") -> dict[int, bool]:
    """Parse the ASCII answer to the FF status query (`CHn:ON|OFF` per line) into {channel: on}."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise RelayError(
            f"LCUS board on {port}: status answer {raw!r} is not ASCII (byte {exc.start}); "
            "check the baud rate (9600)"
        ) from exc
    states: dict[int, bool] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _STATUS_LINE.match(line.strip())
        if match is None:
            raise RelayError(
                f"LCUS board on {port}: status line {number} is {line!r}, expected 'CHn:ON' or "
                "'CHn:OFF'; if the board has no status query use readback='none'"
            )
        states[int(match.group(1))] = match.group(2) == "ON"
    if not states:
        raise RelayError(f"LCUS board on {port}: empty status answer {raw!r}")
    return states


class LcusRelay:
    """An LCUS relay board on a serial port (a pty path in simulation, /dev/ttyUSBn on a bench)."""

    def __init__(
        self,
        port: str,
        channels: int = 4,
        *,
        readback: str = "status",
        baudrate: int = 9600,
        timeout: float = 0.5,
        transcript: Transcript | None = None,
    ) -> None:
        if readback not in READBACK_MODES:
            raise RelayError(
                f"LCUS board on {port}: readback {readback!r} unknown; "
                f"use one of {', '.join(READBACK_MODES)}"
            )
        if not 1 <= channels <= 8:
            raise RelayError(f"LCUS board on {port}: {channels} channels; LCUS boards have 1..8")
        self.port = port
        self.channels = channels
        self.readback = readback
        self._mode = READBACK_MODES[readback]
        self._transcript = transcript or null_transcript(f"relay:{port}")
        self._shadow = [False] * (channels + 1)
        self._serial = open_serial(port, baudrate, timeout)

    def set(self, channel: int, on: bool) -> None:
        """Switch one relay; feedback boards' answer is checked, other boards give no ack.

        Without an ack, `set()` returns once the frame is written; read back with `get()`.
        """
        check_channel(channel, self.channels, self.port)
        op = self._mode.op_on if on else self._mode.op_off
        frame = encode_frame(channel, op)
        self._write(frame, {"cmd": "set", "channel": channel, "on": bool(on)})
        self._shadow[channel] = bool(on)
        if self._mode.answers_set:
            got = self._read_feedback(channel)
            if got != bool(on):
                msg = (
                    f"LCUS board on {self.port}: relay {channel} reports "
                    f"{'on' if got else 'off'} after being switched {'on' if on else 'off'}"
                )
                self._transcript.record(Direction.EVENT, None, None, error=msg)
                raise RelayError(msg)

    def get(self, channel: int) -> bool:
        """Read one relay's state from the board (or the shadow, for readback='none')."""
        check_channel(channel, self.channels, self.port)
        if self._mode.op_query is not None:
            self._write(
                encode_frame(channel, self._mode.op_query), {"cmd": "query", "channel": channel}
            )
            return self._read_feedback(channel)
        if self._mode.status_query:
            states = self.status()
            if channel not in states:
                msg = f"LCUS board on {self.port}: status answer has no line for CH{channel}"
                self._transcript.record(Direction.EVENT, None, None, error=msg)
                raise RelayError(msg)
            return states[channel]
        return self._shadow[channel]

    def status(self) -> dict[int, bool]:
        """Ask every relay's state with the FF query (readback='status' boards only)."""
        if not self._mode.status_query:
            raise RelayError(
                f"LCUS board on {self.port}: readback={self.readback!r} has no status query"
            )
        self._write(STATUS_QUERY, {"cmd": "status"})
        raw = bytearray()
        for _ in range(self.channels):
            line = self._read_line()
            raw += line
            if not line.endswith(b"\n"):
                break
        if not raw:
            self._fail_timeout("status answer", bytes(raw))
        if not raw.endswith(b"\n"):
            msg = f"LCUS board on {self.port}: status answer {bytes(raw)!r} ends mid-line"
            self._transcript.record(Direction.RX, bytes(raw), None, error=msg)
            raise RelayError(msg)
        try:
            states = decode_status(bytes(raw), self.port)
        except RelayError as exc:
            self._transcript.record(Direction.RX, bytes(raw), None, error=str(exc))
            raise
        self._transcript.record(Direction.RX, bytes(raw), {"status": states})
        for number, on in states.items():
            if 1 <= number <= self.channels:
                self._shadow[number] = on
        return states

    def close(self) -> None:
        """Release the port; the relays keep their state."""
        self._serial.close()

    def __enter__(self) -> LcusRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, frame: bytes, decoded: dict[str, object]) -> None:
        try:
            self._serial.reset_input_buffer()
            self._serial.write(frame)
            self._serial.flush()
        except serial.SerialTimeoutException as exc:
            msg = f"LCUS board on {self.port}: write timed out ({exc}); is the port blocked?"
            self._transcript.record(Direction.TX, frame, decoded, error=msg)
            raise RelayTimeout(msg) from exc
        except PORT_ERRORS as exc:
            msg = f"LCUS board on {self.port}: port gone while writing ({exc}); check the cable"
            self._transcript.record(Direction.TX, frame, decoded, error=msg)
            raise RelayPortGone(msg) from exc
        self._transcript.record(Direction.TX, frame, decoded)

    def _read(self, size: int) -> bytes:
        try:
            return self._serial.read(size)
        except PORT_ERRORS as exc:
            msg = f"LCUS board on {self.port}: port gone while reading ({exc}); check the cable"
            self._transcript.record(Direction.RX, None, None, error=msg)
            raise RelayPortGone(msg) from exc

    def _read_line(self) -> bytes:
        try:
            return self._serial.readline()
        except PORT_ERRORS as exc:
            msg = f"LCUS board on {self.port}: port gone while reading ({exc}); check the cable"
            self._transcript.record(Direction.RX, None, None, error=msg)
            raise RelayPortGone(msg) from exc

    def _fail_timeout(self, what: str, partial: bytes) -> None:
        msg = (
            f"LCUS board on {self.port}: no {what} within {self._serial.timeout} s "
            f"(got {partial!r}); check the port, 9600 baud, and the board's readback mode"
        )
        self._transcript.record(Direction.RX, partial, None, error=msg)
        raise RelayTimeout(msg)

    def _read_feedback(self, channel: int) -> bool:
        raw = self._read(4)
        if len(raw) < 4:
            self._fail_timeout("4-byte answer frame", raw)
        try:
            got_channel, on = decode_feedback(raw, self.port)
            if got_channel != channel:
                raise RelayError(
                    f"LCUS board on {self.port}: answer {raw.hex(' ')} is for channel "
                    f"{got_channel}, asked about {channel}"
                )
        except RelayError as exc:
            self._transcript.record(Direction.RX, raw, None, error=str(exc))
            raise
        self._transcript.record(Direction.RX, raw, {"channel": channel, "on": on})
        self._shadow[channel] = on
        return on
