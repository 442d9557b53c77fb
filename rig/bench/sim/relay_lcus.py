"""Simulated LCUS relay board (CH340 type) behind a pty, optionally a power source of the DUT rail.

Speaks the binary protocol documented in drivers/relay_lcus.py: `A0 ch op sum` frames (op 0/1
switch silently, op 2/3 switch and answer `A0 ch state sum`, op 4 toggles and answers, op 5
answers the state) and the FF status query answered with `CHn:ON ` / `CHn:OFF ` lines. A frame
with a wrong checksum is ignored, as real boards do. Test hooks:
  --corrupt-after N   the first N answers are good, later ones are corrupted (answer frames get a
                      wrong checksum, status lines a garbled state) to exercise the driver's checks;
  --die-after N       after N commands the board SIGKILLs itself on the next one, before answering;
  --silent            never answer (a board without read-back).
Usage:
    python -m rig.bench.sim.relay_lcus --link PATH --channels 4 \\
        [--rail-dir DIR --rail-source relay:1 --feeds 1]
Readiness endpoints: port=PATH.
"""

from __future__ import annotations

from rig.bench.sim.rail import RailFeed
from rig.bench.sim.serial_device import SimulatedRelayBoard, relay_parser, run

START = 0xA0
STATUS_QUERY = 0xFF


class LcusBoard(SimulatedRelayBoard):
    """The board's relays (numbered from 1) and its reaction to each complete command."""

    def __init__(
        self,
        channels: int,
        feed: RailFeed | None = None,
        feeds: int = 1,
        corrupt_after: int = -1,
        die_after: int = -1,
        silent: bool = False,
    ) -> None:
        super().__init__(channels + 1, feed, feeds, corrupt_after, die_after)
        self.channels = channels
        self.silent = silent
        self.buffer = bytearray()

    def feed_bytes(self, data: bytes) -> bytes:
        """Consume received bytes; return what the board sends back."""
        self.buffer += data
        out = bytearray()
        while self.buffer:
            head = self.buffer[0]
            if head == STATUS_QUERY:
                del self.buffer[0]
                self._count_command()
                out += self._answer(self._status())
            elif head == START:
                if len(self.buffer) < 4:
                    break
                frame = bytes(self.buffer[:4])
                del self.buffer[:4]
                self._count_command()
                out += self._frame(frame)
            else:
                del self.buffer[0]
        return bytes(out)

    def _frame(self, frame: bytes) -> bytes:
        _, channel, op, check = frame
        if check != (START + channel + op) & 0xFF or not 1 <= channel <= self.channels:
            return b""
        if op in (0, 2):
            self._switch(channel, False)
        elif op in (1, 3):
            self._switch(channel, True)
        elif op == 4:
            self._switch(channel, not self.relays[channel])
        elif op != 5:
            return b""
        if op in (0, 1):
            return b""
        state = int(self.relays[channel])
        return self._answer(bytes((START, channel, state, (START + channel + state) & 0xFF)))

    def _status(self) -> bytes:
        return b"".join(
            f"CH{n}:{'ON' if self.relays[n] else 'OFF'} \r\n".encode("ascii")
            for n in range(1, self.channels + 1)
        )

    def _answer(self, data: bytes) -> bytes:
        if self.silent:
            return b""
        if self._corrupt_answer():
            if data[0] == START:
                return data[:3] + bytes(((data[3] ^ 0x5A),))
            return data.replace(b"ON", b"0N").replace(b"OFF", b"0FF")
        return data


def main(argv: list[str] | None = None) -> None:
    parser = relay_parser(__doc__, "board", 8, "channel that feeds the DUT")
    parser.add_argument("--silent", action="store_true")
    args = parser.parse_args(argv)

    def board(feed: RailFeed | None) -> LcusBoard:
        return LcusBoard(
            args.channels, feed, args.feeds, args.corrupt_after, args.die_after, args.silent
        )

    run(args, board)


if __name__ == "__main__":
    main()
