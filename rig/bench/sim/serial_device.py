"""What the simulated relay boards share: relays feeding the DUT rail, test hooks, process main.

Each board module keeps only its wire protocol (`feed_bytes`) and its own options.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable

from rig.bench.sim.common import PtyLink, announce_failure, announce_ready, exit_on_sigterm
from rig.bench.sim.rail import RailError, RailFeed, install_reaper, load_config


class SimulatedRelayBoard:
    """Relay states, the relay that powers the DUT rail, and the --corrupt/--die-after hooks."""

    def __init__(
        self,
        slots: int,
        feed: RailFeed | None,
        feed_relay: int,
        corrupt_after: int = -1,
        die_after: int = -1,
    ) -> None:
        self.relays = [False] * slots
        self.feed = feed
        self.feed_relay = feed_relay
        self.corrupt_after = corrupt_after
        self.die_after = die_after
        self.answers = 0
        self.commands = 0

    def feed_bytes(self, data: bytes) -> bytes:
        """Consume received bytes; return what the board sends back."""
        raise NotImplementedError

    def _count_command(self) -> None:
        if 0 <= self.die_after <= self.commands:
            os.kill(os.getpid(), signal.SIGKILL)
        self.commands += 1

    def _corrupt_answer(self) -> bool:
        """Count one answer; True once more than --corrupt-after answers have gone out."""
        self.answers += 1
        return 0 <= self.corrupt_after < self.answers

    def _switch(self, relay: int, on: bool) -> None:
        self.relays[relay] = on
        if self.feed is not None and relay == self.feed_relay:
            self.feed.set(on)


def serve(link: PtyLink, board: SimulatedRelayBoard) -> None:
    """Answer commands on the pty until terminated."""
    while True:
        try:
            data = os.read(link.master, 256)
        except OSError:
            continue
        reply = board.feed_bytes(data)
        if reply:
            os.write(link.master, reply)


def relay_parser(
    doc: str, what: str, max_channels: int, feeds_help: str
) -> argparse.ArgumentParser:
    """The options every relay simulator takes; the caller adds its own."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--link", required=True, help=f"symlink path of the {what}'s serial port")
    parser.add_argument(
        "--channels",
        type=int,
        default=4,
        choices=range(1, max_channels + 1),
        metavar=f"1..{max_channels}",
    )
    parser.add_argument("--rail-dir", help="power-rail folder shared with the other sources")
    parser.add_argument("--rail-source", help="this board's source name in rail.json (relay:N)")
    parser.add_argument("--feeds", type=int, default=1, help=feeds_help)
    parser.add_argument("--corrupt-after", type=int, default=-1, metavar="N")
    parser.add_argument("--die-after", type=int, default=-1, metavar="N")
    return parser


def run(
    args: argparse.Namespace, make_board: Callable[[RailFeed | None], SimulatedRelayBoard]
) -> None:
    """Join the rail (failing readiness on a bad rail file), open the pty, announce it, serve."""
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
    board = make_board(feed)
    link = PtyLink(args.link)
    try:
        announce_ready(port=str(link.link))
        serve(link, board)
    finally:
        link.close()
        if feed is not None:
            feed.set(False)
