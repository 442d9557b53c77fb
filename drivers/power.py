"""Power switching of the device under test, whatever does it: a relay channel or a PSU output.

Shaped after labgrid's PowerProtocol (on / off / cycle / get); the bench binds a name in the
bench file to one of these.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

from drivers.psu import PowerSupply
from drivers.relay import RelayBoard


@runtime_checkable
class PowerSwitch(Protocol):
    """Something that powers the DUT on and off."""

    def on(self) -> None: ...

    def off(self) -> None: ...

    def cycle(self, off_time: float = 1.0) -> None: ...

    def state(self) -> bool: ...


class _Switch(ABC):
    """What every switch shares: `cycle()` built from `off()` and `on()`."""

    @abstractmethod
    def on(self) -> None: ...

    @abstractmethod
    def off(self) -> None: ...

    def cycle(self, off_time: float = 1.0) -> None:
        """Off, wait `off_time` seconds so the DUT really loses power, on."""
        if off_time < 0:
            raise ValueError(f"power cycle off_time {off_time} s must not be negative")
        self.off()
        time.sleep(off_time)
        self.on()


class RelayPowerSwitch(_Switch):
    """The DUT's supply runs through one relay channel (normally open: relay on = powered)."""

    def __init__(self, board: RelayBoard, channel: int) -> None:
        self.board = board
        self.channel = channel

    def on(self) -> None:
        """Close the relay: power on."""
        self.board.set(self.channel, True)

    def off(self) -> None:
        """Open the relay: power off."""
        self.board.set(self.channel, False)

    def state(self) -> bool:
        """True when the relay is on (read back from the board where it can)."""
        return self.board.get(self.channel)


class PsuPowerSwitch(_Switch):
    """The DUT is fed by one output of a programmable supply; set its voltage before `on()`."""

    def __init__(self, psu: PowerSupply, output: int = 1) -> None:
        self.psu = psu
        self.output_number = output

    def on(self) -> None:
        """Switch the output on."""
        self.psu.output(True, self.output_number)

    def off(self) -> None:
        """Switch the output off."""
        self.psu.output(False, self.output_number)

    def state(self) -> bool:
        """True when the output is on (`OUTP?`)."""
        return self.psu.output_state(self.output_number)
