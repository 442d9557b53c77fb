"""Relay boards: the protocol every relay driver implements, its errors, and shared serial helpers.

Channels are numbered from 1 on every board, whatever the board's own wire numbering (the
Numato family counts relays from 0 on the wire; its driver converts). A bench file therefore
says `channel: 1` for the first relay of any board.
"""

from __future__ import annotations

import termios
from typing import Protocol, runtime_checkable

import serial

PORT_ERRORS = (serial.SerialException, OSError, termios.error)
"""What pyserial raises when a port vanishes (termios.error is not an OSError)."""


class RelayError(Exception):
    """A relay board did not do or say what was expected; the message names the port and fix."""


class RelayChecksumError(RelayError):
    """An answer frame from the board failed its checksum."""


class RelayTimeout(RelayError):
    """The board did not answer in time (wrong port, wrong baud rate, board without read-back)."""


class RelayPortGone(RelayError):
    """The serial port could not be opened or vanished mid-exchange (unplugged, simulator died)."""


@runtime_checkable
class RelayBoard(Protocol):
    """A board of numbered relays (1-based) that can be switched and, where possible, read back."""

    channels: int

    def set(self, channel: int, on: bool) -> None:
        """Switch one relay on (closed) or off (open)."""
        ...

    def get(self, channel: int) -> bool:
        """Report whether one relay is on."""
        ...

    def close(self) -> None:
        """Release the port; the relays keep their state."""
        ...


def check_channel(channel: int, channels: int, port: str) -> None:
    """Refuse a channel number outside 1..channels with a message naming the board."""
    if isinstance(channel, bool) or not isinstance(channel, int) or not 1 <= channel <= channels:
        raise RelayError(
            f"relay board on {port}: channel {channel!r} does not exist; "
            f"use 1..{channels} (channels are numbered from 1)"
        )


def open_serial(port: str, baudrate: int, timeout: float) -> serial.SerialBase:
    """Open a port (path or pyserial URL) 8N1, or raise RelayPortGone saying what to check."""
    try:
        return serial.serial_for_url(
            port,
            baudrate=baudrate,
            bytesize=serial.EIGHTBITS,
            parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE,
            timeout=timeout,
            write_timeout=timeout,
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        raise RelayPortGone(
            f"relay board port {port} cannot be opened ({exc}); check the cable, the device "
            "path in the bench file and that you may open it (dialout group)"
        ) from exc
