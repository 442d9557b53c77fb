"""Numato Lab USB relay modules (USB CDC serial, 1..32 relays): a human-readable command line.

Wire facts (Numato Lab sample code, numato/samplecode relayread.py and NumatoLab/NumatoIO_Python
usb_relay/usbrelay_8.py; Numato 16-channel module documentation):
- commands end with CR: `relay on N`, `relay off N`, `relay read N`, `ver`, `id get`, `reset`;
- the board echoes what it receives, ends the echoed line with LF CR, prints any answer followed
  by LF CR, then the prompt `>`; so `relay read 4\\r` gives `relay read 4\\n\\ron\\n\\r>`;
- relays are numbered from 0 on the wire, 10 and above as upper-case letters (10 = A, 11 = B, ...);
  this driver's channels are 1-based like every RelayBoard, so channel 1 is wire relay 0;
- `reset` turns every relay off.
The driver reads up to the first prompt that follows some text (a lone stale prompt is skipped),
drops the echo if present and checks the answer.
"""

from __future__ import annotations

import serial

from drivers.relay import (
    PORT_ERRORS,
    RelayError,
    RelayPortGone,
    RelayTimeout,
    check_channel,
    open_serial,
)
from rig.evidence import Direction, Transcript, null_transcript

PROMPT = b">"
EOL = b"\r"


def relay_index(channel: int) -> str:
    """Wire name of a 1-based channel: 1 -> '0', 10 -> '9', 11 -> 'A', 32 -> 'V'."""
    index = channel - 1
    if not 0 <= index < 36:
        raise RelayError(f"Numato relay channel {channel} out of range 1..36")
    return str(index) if index < 10 else chr(ord("A") + index - 10)


def parse_reply(command: str, raw: bytes, port: str = "?") -> list[str]:
    """Split a reply into answer lines, dropping the echo of `command`, blank lines and prompts."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise RelayError(
            f"Numato board on {port}: reply to {command!r} is not ASCII ({raw!r}, byte "
            f"{exc.start}); check the port belongs to a Numato module"
        ) from exc
    lines = [line.strip() for line in text.replace("\r", "\n").split("\n")]
    lines = [line.lstrip(">").strip() for line in lines]
    lines = [line for line in lines if line]
    if lines and lines[0] == command:
        lines = lines[1:]
    return lines


class NumatoRelay:
    """A Numato Lab USB relay module on a serial port (a pty path in simulation, /dev/ttyACMn)."""

    def __init__(
        self,
        port: str,
        channels: int = 4,
        *,
        baudrate: int = 19200,
        timeout: float = 0.5,
        transcript: Transcript | None = None,
    ) -> None:
        if not 1 <= channels <= 32:
            raise RelayError(f"Numato board on {port}: {channels} channels; modules have 1..32")
        self.port = port
        self.channels = channels
        self._transcript = transcript or null_transcript(f"relay:{port}")
        self._serial = open_serial(port, baudrate, timeout)

    def set(self, channel: int, on: bool) -> None:
        """Switch one relay with `relay on|off N`; any answer besides the echo is an error."""
        check_channel(channel, self.channels, self.port)
        command = f"relay {'on' if on else 'off'} {relay_index(channel)}"
        answer = self._command(command)
        if answer:
            self._reject(command, answer, "no answer besides the echo")

    def get(self, channel: int) -> bool:
        """Read one relay with `relay read N`; the board answers `on` or `off`."""
        check_channel(channel, self.channels, self.port)
        command = f"relay read {relay_index(channel)}"
        answer = self._command(command)
        if answer == ["on"]:
            return True
        if answer == ["off"]:
            return False
        self._reject(command, answer, "'on' or 'off'")
        return False

    def version(self) -> str:
        """Firmware version string (`ver`)."""
        answer = self._command("ver")
        if len(answer) != 1:
            self._reject("ver", answer, "one version line")
        return answer[0]

    def reset(self) -> None:
        """Turn every relay off (`reset`)."""
        answer = self._command("reset")
        if answer:
            self._reject("reset", answer, "no answer besides the echo")

    def close(self) -> None:
        """Release the port; the relays keep their state."""
        self._serial.close()

    def __enter__(self) -> NumatoRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reject(self, command: str, answer: list[str], expected: str) -> None:
        msg = f"Numato board on {self.port}: {command!r} answered {answer!r}, expected {expected}"
        self._transcript.record(Direction.EVENT, None, {"cmd": command}, error=msg)
        raise RelayError(msg)

    def _command(self, command: str) -> list[str]:
        frame = command.encode("ascii") + EOL
        try:
            self._serial.reset_input_buffer()
            self._serial.write(frame)
            self._serial.flush()
        except serial.SerialTimeoutException as exc:
            msg = f"Numato board on {self.port}: write of {command!r} timed out ({exc})"
            self._transcript.record(Direction.TX, frame, {"cmd": command}, error=msg)
            raise RelayTimeout(msg) from exc
        except PORT_ERRORS as exc:
            msg = f"Numato board on {self.port}: port gone while writing ({exc}); check the cable"
            self._transcript.record(Direction.TX, frame, {"cmd": command}, error=msg)
            raise RelayPortGone(msg) from exc
        self._transcript.record(Direction.TX, frame, {"cmd": command})
        raw = self._read_to_prompt(command)
        try:
            answer = parse_reply(command, raw, self.port)
        except RelayError as exc:
            self._transcript.record(Direction.RX, raw, None, error=str(exc))
            raise
        self._transcript.record(Direction.RX, raw, {"answer": answer})
        return answer

    def _read_to_prompt(self, command: str) -> bytes:
        raw = b""
        while True:
            try:
                chunk = self._serial.read_until(PROMPT)
            except PORT_ERRORS as exc:
                msg = (
                    f"Numato board on {self.port}: port gone while reading ({exc}); check the cable"
                )
                self._transcript.record(Direction.RX, raw or None, None, error=msg)
                raise RelayPortGone(msg) from exc
            raw += chunk
            if not chunk.endswith(PROMPT):
                msg = (
                    f"Numato board on {self.port}: no prompt after {command!r} within "
                    f"{self._serial.timeout} s (got {raw!r}); check the port and that it is a "
                    "Numato module"
                )
                self._transcript.record(Direction.RX, raw or None, None, error=msg)
                raise RelayTimeout(msg)
            if raw.replace(PROMPT, b"").strip():
                return raw
