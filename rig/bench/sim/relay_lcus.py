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

import argparse
import os
import signal
import sys

from rig.bench.sim.common import PtyLink, announce_failure, announce_ready, exit_on_sigterm
from rig.bench.sim.rail import RailError, RailFeed, install_reaper, load_config

START = 0xA0
STATUS_QUERY = 0xFF


class LcusBoard:
    """The board's relays and its reaction to each complete command."""

    def __init__(
        self,
        channels: int,
        feed: RailFeed | None = None,
        feeds: int = 1,
        corrupt_after: int = -1,
        die_after: int = -1,
        silent: bool = False,
    ) -> None:
        self.relays = [False] * (channels + 1)
        self.channels = channels
        self.feed = feed
        self.feeds = feeds
        self.corrupt_after = corrupt_after
        self.die_after = die_after
        self.silent = silent
        self.answers = 0
        self.commands = 0
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

    def _count_command(self) -> None:
        if 0 <= self.die_after <= self.commands:
            os.kill(os.getpid(), signal.SIGKILL)
        self.commands += 1

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

    def _switch(self, channel: int, on: bool) -> None:
        self.relays[channel] = on
        if self.feed is not None and channel == self.feeds:
            self.feed.set(on)

    def _status(self) -> bytes:
        return b"".join(
            f"CH{n}:{'ON' if self.relays[n] else 'OFF'} \r\n".encode("ascii")
            for n in range(1, self.channels + 1)
        )

    def _answer(self, data: bytes) -> bytes:
        if self.silent:
            return b""
        self.answers += 1
        if 0 <= self.corrupt_after < self.answers:
            if data[0] == START:
                return data[:3] + bytes(((data[3] ^ 0x5A),))
            return data.replace(b"ON", b"0N").replace(b"OFF", b"0FF")
        return data


def serve(link: PtyLink, board: LcusBoard) -> None:
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
    parser.add_argument("--link", required=True, help="symlink path of the board's serial port")
    parser.add_argument("--channels", type=int, default=4, choices=range(1, 9), metavar="1..8")
    parser.add_argument("--rail-dir", help="power-rail folder shared with the other sources")
    parser.add_argument("--rail-source", help="this board's source name in rail.json (relay:N)")
    parser.add_argument("--feeds", type=int, default=1, help="channel that feeds the DUT")
    parser.add_argument("--corrupt-after", type=int, default=-1, metavar="N")
    parser.add_argument("--die-after", type=int, default=-1, metavar="N")
    parser.add_argument("--silent", action="store_true")
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
    board = LcusBoard(
        args.channels, feed, args.feeds, args.corrupt_after, args.die_after, args.silent
    )
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
