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

import argparse
import os
import signal
import sys

from rig.bench.sim.common import PtyLink, announce_failure, announce_ready, exit_on_sigterm
from rig.bench.sim.rail import RailError, RailFeed, install_reaper, load_config

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


class NumatoBoard:
    """The module's relays and its command line."""

    def __init__(
        self,
        channels: int,
        feed: RailFeed | None = None,
        feeds: int = 1,
        corrupt_after: int = -1,
        die_after: int = -1,
    ) -> None:
        self.channels = channels
        self.relays = [False] * channels
        self.feed = feed
        self.feed_index = feeds - 1
        self.corrupt_after = corrupt_after
        self.die_after = die_after
        self.answers = 0
        self.commands = 0
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
        if 0 <= self.die_after <= self.commands:
            os.kill(os.getpid(), signal.SIGKILL)
        self.commands += 1
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
        self.answers += 1
        if 0 <= self.corrupt_after < self.answers:
            return answer[:-1] + "#"
        return answer

    def _switch(self, index: int, on: bool) -> None:
        self.relays[index] = on
        if self.feed is not None and index == self.feed_index:
            self.feed.set(on)


def serve(link: PtyLink, board: NumatoBoard) -> None:
    """Answer commands on the pty until terminated."""
    while True:
        try:
            data = os.read(link.master, 256)
        except OSError:
            continue
        reply = board.feed_bytes(data)
        if reply:
            os.write(link.master, reply)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--link", required=True, help="symlink path of the module's serial port")
    parser.add_argument("--channels", type=int, default=4, choices=range(1, 33), metavar="1..32")
    parser.add_argument("--rail-dir", help="power-rail folder shared with the other sources")
    parser.add_argument("--rail-source", help="this board's source name in rail.json (relay:N)")
    parser.add_argument("--feeds", type=int, default=1, help="1-based channel that feeds the DUT")
    parser.add_argument("--corrupt-after", type=int, default=-1, metavar="N")
    parser.add_argument("--die-after", type=int, default=-1, metavar="N")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    feed = None
    if args.rail_dir:
        try:
            load_config(args.rail_dir)
            feed = RailFeed(args.rail_dir, args.rail_source or f"relay:{args.feeds}")
        except RailError as exc:
            announce_failure(str(exc))
            sys.exit(2)
        install_reaper()
        feed.set(False)
    board = NumatoBoard(args.channels, feed, args.feeds, args.corrupt_after, args.die_after)
    link = PtyLink(args.link)
    try:
        announce_ready(port=str(link.link))
        serve(link, board)
    finally:
        link.close()
        if feed is not None:
            feed.set(False)


if __name__ == "__main__":
    main()
