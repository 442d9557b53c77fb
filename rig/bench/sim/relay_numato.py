"""Simulated Numato Lab USB relay module behind a pty, optionally a power source of the DUT rail.

Speaks the command line documented in drivers/relay_numato.py: every received character is
echoed; CR ends a command; the board then sends LF CR, any answer followed by LF CR, and the
prompt `>`. Commands: `relay on|off|read N` (N = 0-9, then A, B, ...), `relay readall`, `reset`,
`ver`, `id get`; anything else just gets a fresh prompt. Test hooks:
  --corrupt-after N   the first N answers are good, later `relay read` answers are garbled;
  --die-after N       after N commands the board SIGKILLs itself on the next one, before answering.
Usage:
    python -m rig.bench.sim.relay_numato --link PATH --channels 8 \\
        [--rail-dir DIR --rail-source relay:1 --feeds 1]
(`--feeds` is the 1-based channel, i.e. wire relay N-1.) Readiness endpoints: port=PATH.
"""

from __future__ import annotations

from rig.bench.sim.rail import RailFeed
from rig.bench.sim.serial_device import SimulatedRelayBoard, relay_parser, run

VERSION = "00000008"
BOARD_ID = "00000000"


def wire_index(name: str) -> int | None:
    """Relay number for a wire name ('0'-'9', 'A'...), None when it is not one."""
    if len(name) != 1:
        return None
    if name.isdigit():
        return int(name)
    if "A" <= name <= "Z":
        return ord(name) - ord("A") + 10
    return None


class NumatoBoard(SimulatedRelayBoard):
    """The module's relays and its command line."""

    def __init__(
        self,
        channels: int,
        feed: RailFeed | None = None,
        feeds: int = 1,
        corrupt_after: int = -1,
        die_after: int = -1,
    ) -> None:
        super().__init__(channels, feed, feeds - 1, corrupt_after, die_after)
        self.channels = channels
        self.line = bytearray()

    def feed_bytes(self, data: bytes) -> bytes:
        """Consume received bytes; return the echo, answers and prompts."""
        out = bytearray()
        for byte in data:
            if byte == 0x0D:
                out += b"\n\r"
                out += self._execute(self.line.decode("ascii", errors="replace").strip())
                out += b">"
                self.line.clear()
            elif byte == 0x0A:
                continue
            else:
                self.line.append(byte)
                out.append(byte)
        return bytes(out)

    def _execute(self, command: str) -> bytes:
        if not command:
            return b""
        self._count_command()
        words = command.split()
        answer: str | None = None
        if words == ["ver"]:
            answer = VERSION
        elif words == ["id", "get"]:
            answer = BOARD_ID
        elif words == ["reset"]:
            for index in range(self.channels):
                self._switch(index, False)
        elif words == ["relay", "readall"]:
            bits = sum(1 << i for i, on in enumerate(self.relays) if on)
            answer = f"{bits:0{max(1, self.channels // 4)}x}"
        elif len(words) == 3 and words[0] == "relay":
            index = wire_index(words[2])
            if index is None or index >= self.channels:
                return b""
            if words[1] == "on":
                self._switch(index, True)
            elif words[1] == "off":
                self._switch(index, False)
            elif words[1] == "read":
                answer = self._maybe_corrupt("on" if self.relays[index] else "off")
        if answer is None:
            return b""
        return answer.encode("ascii") + b"\n\r"

    def _maybe_corrupt(self, answer: str) -> str:
        if self._corrupt_answer():
            return answer[:-1] + "#"
        return answer


def main(argv: list[str] | None = None) -> None:
    parser = relay_parser(__doc__, "module", 32, "1-based channel that feeds the DUT")
    args = parser.parse_args(argv)

    def board(feed: RailFeed | None) -> NumatoBoard:
        return NumatoBoard(args.channels, feed, args.feeds, args.corrupt_after, args.die_after)

    run(args, board)


if __name__ == "__main__":
    main()
