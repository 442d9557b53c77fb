"""Simulated programmable power supply: SCPI over a raw TCP socket, like a LAN PSU on port 5025.

Newline-terminated commands, several per line with `;`, several per connection, several
connections at once; one instrument-wide state and error queue. Headers take short or long form
(`VOLT` / `VOLTage`, optional `SOURce:` and `:LEVel`). Commands: *IDN?, *RST, *CLS, *OPC?,
VOLT <v> / VOLT?, CURR <a> / CURR?, OUTP ON|OFF|1|0 / OUTP?, MEAS:VOLT?, MEAS:CURR?,
INST:NSEL <n> / INST:NSEL? (selects the output the others act on), SYST:ERR?. Errors:
-113 Undefined header, -109 Missing parameter, -104 Data type error, -222 Data out of range,
-350 Queue overflow.

With --rail-dir the output given by --feeds (default 1) is a power source of the DUT rail (named
by --rail-source, default psu:1): it is on while that output is on at a non-zero voltage. The
measured current follows the rail: DUT running -> rail.json's current_a with a little noise;
output on but DUT off -> about 2 mA; output off -> 0 V and 0 A.
Usage:
    python -m rig.bench.sim.psu_scpi --listen 127.0.0.1:0 [--outputs 2] [--rail-dir DIR]
Readiness endpoints: visa="TCPIP::HOST::PORT::SOCKET", address="HOST:PORT".
"""

from __future__ import annotations

import argparse
import random
import socketserver
import sys
import threading
from dataclasses import dataclass

from rig.bench.sim.common import announce_failure, announce_ready, exit_on_sigterm
from rig.bench.sim.rail import RailError, RailFeed, install_reaper, load_config

IDN = "posrig,SIM-PSU,0001,1.0"
MAX_VOLT = 30.0
MAX_CURR = 5.0
DEFAULT_LIMIT = 1.0
IDLE_CURRENT = 0.002
QUEUE_MAX = 10

_LONG = {
    "VOLTAGE": "VOLT",
    "CURRENT": "CURR",
    "OUTPUT": "OUTP",
    "STATE": "STAT",
    "MEASURE": "MEAS",
    "SYSTEM": "SYST",
    "ERROR": "ERR",
    "INSTRUMENT": "INST",
    "NSELECT": "NSEL",
    "SOURCE": "SOUR",
    "LEVEL": "LEV",
    "IMMEDIATE": "IMM",
    "AMPLITUDE": "AMPL",
    "SCALAR": "SCAL",
}
_OPTIONAL = {"SOUR", "LEV", "IMM", "AMPL", "SCAL", "STAT", "NEXT", "DC"}


class ScpiError(Exception):
    """One SCPI error, queued as `code,"message"`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f'{code},"{message}"')
        self.code = code


@dataclass
class Output:
    voltage: float = 0.0
    limit: float = DEFAULT_LIMIT
    on: bool = False


def normalize(header: str) -> str:
    """Canonical short header: `:SOURce:VOLTage:LEVel?` -> `VOLT?`."""
    query = header.endswith("?")
    tokens = [t for t in header.rstrip("?").upper().lstrip(":").split(":") if t]
    tokens = [_LONG.get(t, t) for t in tokens]
    kept = [t for t in tokens if t not in _OPTIONAL]
    return ":".join(kept) + ("?" if query else "")


class PowerSupply:
    """The instrument: outputs, selection, error queue, and the rail it feeds."""

    def __init__(self, outputs: int, feed: RailFeed | None = None, feeds: int = 1) -> None:
        self.outputs = [Output() for _ in range(outputs)]
        self.selected = 0
        self.errors: list[str] = []
        self.feed = feed
        self.feeds = feeds - 1
        self.lock = threading.Lock()
        self._fed = False

    def execute_line(self, line: str) -> str | None:
        """Run every command of one line; return the joined query answers, if any."""
        answers = []
        with self.lock:
            for command in (c.strip() for c in line.split(";")):
                if not command:
                    continue
                try:
                    answer = self._execute(command)
                except ScpiError as exc:
                    self._queue(str(exc))
                    continue
                if answer is not None:
                    answers.append(answer)
            self._update_rail()
        return ";".join(answers) if answers else None

    def _queue(self, error: str) -> None:
        if len(self.errors) < QUEUE_MAX:
            self.errors.append(error)
        else:
            self.errors[-1] = '-350,"Queue overflow"'

    def _execute(self, command: str) -> str | None:
        header, _, arg = command.partition(" ")
        arg = arg.strip()
        head = normalize(header)
        out = self.outputs[self.selected]
        if head == "*IDN?":
            return IDN
        if head == "*RST":
            self.outputs = [Output() for _ in self.outputs]
            self.selected = 0
            return None
        if head == "*CLS":
            self.errors.clear()
            return None
        if head == "*OPC?":
            return "1"
        if head == "SYST:ERR?":
            return self.errors.pop(0) if self.errors else '0,"No error"'
        if head == "VOLT":
            out.voltage = _number(arg, 0.0, MAX_VOLT)
            return None
        if head == "VOLT?":
            return f"{out.voltage:.3f}"
        if head == "CURR":
            out.limit = _number(arg, 0.0, MAX_CURR)
            return None
        if head == "CURR?":
            return f"{out.limit:.3f}"
        if head == "OUTP":
            out.on = _boolean(arg)
            return None
        if head == "OUTP?":
            return "1" if out.on else "0"
        if head == "INST:NSEL":
            self.selected = int(_number(arg, 1, len(self.outputs))) - 1
            return None
        if head == "INST:NSEL?":
            return str(self.selected + 1)
        if head == "MEAS:VOLT?":
            return f"{self._measure(self.selected)[0]:.4f}"
        if head == "MEAS:CURR?":
            return f"{self._measure(self.selected)[1]:.4f}"
        raise ScpiError(-113, "Undefined header")

    def _measure(self, index: int) -> tuple[float, float]:
        out = self.outputs[index]
        if not out.on:
            return 0.0, 0.0
        load = 0.0
        if self.feed is not None and index == self.feeds:
            if self.feed.powered():
                load = self.feed.current_a() * (1 + random.uniform(-0.02, 0.02))
            else:
                load = IDLE_CURRENT * (1 + random.uniform(-0.1, 0.1))
        voltage = out.voltage
        if load > out.limit > 0:
            voltage *= out.limit / load
            load = out.limit
        voltage = max(0.0, voltage + random.uniform(-0.0005, 0.0005)) if voltage else 0.0
        return voltage, load

    def _update_rail(self) -> None:
        if self.feed is None:
            return
        out = self.outputs[self.feeds]
        fed = out.on and out.voltage > 0
        if fed != self._fed:
            self._fed = fed
            self.feed.set(fed)


def _number(arg: str, low: float, high: float) -> float:
    if not arg:
        raise ScpiError(-109, "Missing parameter")
    word = arg.upper()
    if word in ("MIN", "MINIMUM"):
        return low
    if word in ("MAX", "MAXIMUM"):
        return high
    try:
        value = float(arg)
    except ValueError:
        raise ScpiError(-104, "Data type error") from None
    if not low <= value <= high:
        raise ScpiError(-222, "Data out of range")
    return value


def _boolean(arg: str) -> bool:
    word = arg.upper()
    if word in ("ON", "1"):
        return True
    if word in ("OFF", "0"):
        return False
    if not word:
        raise ScpiError(-109, "Missing parameter")
    raise ScpiError(-104, "Data type error")


def make_server(host: str, port: int, psu: PowerSupply) -> socketserver.ThreadingTCPServer:
    """A TCP server that feeds each received line to `psu` and writes back any answer."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                try:
                    raw = self.rfile.readline()
                except OSError:
                    return
                if not raw:
                    return
                answer = psu.execute_line(raw.decode("ascii", errors="replace").strip())
                if answer is not None:
                    try:
                        self.wfile.write(answer.encode("ascii") + b"\n")
                        self.wfile.flush()
                    except OSError:
                        return

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    return Server((host, port), Handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0 = any free)")
    parser.add_argument("--outputs", type=int, default=1, choices=range(1, 5), metavar="1..4")
    parser.add_argument("--rail-dir", help="power-rail folder shared with the other sources")
    parser.add_argument("--rail-source", default="psu:1", help="this output's name in rail.json")
    parser.add_argument("--feeds", type=int, default=1, help="output that feeds the DUT")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    host, _, port_text = args.listen.rpartition(":")
    if not host or not port_text.isdigit():
        announce_failure(f"--listen {args.listen!r}: use HOST:PORT, e.g. 127.0.0.1:0")
        sys.exit(2)
    if not 1 <= args.feeds <= args.outputs:
        announce_failure(f"--feeds {args.feeds}: this supply has outputs 1..{args.outputs}")
        sys.exit(2)
    feed = None
    if args.rail_dir:
        try:
            load_config(args.rail_dir)
            feed = RailFeed(args.rail_dir, args.rail_source)
        except RailError as exc:
            announce_failure(str(exc))
            sys.exit(2)
        install_reaper()
        feed.set(False)
    psu = PowerSupply(args.outputs, feed, args.feeds)
    try:
        server = make_server(host, int(port_text), psu)
    except OSError as exc:
        announce_failure(f"cannot listen on {args.listen}: {exc}")
        sys.exit(2)
    bound_host, bound_port = server.server_address[:2]
    try:
        announce_ready(
            visa=f"TCPIP::{bound_host}::{bound_port}::SOCKET", address=f"{bound_host}:{bound_port}"
        )
        server.serve_forever()
    finally:
        server.server_close()
        if feed is not None:
            feed.set(False)


if __name__ == "__main__":
    main()
