"""Card simulator process: a card application served to pcscd through vpcd, plus a control port.

    python -m rig.bench.sim.cardsim --vpcd 127.0.0.1:35963 --control 127.0.0.1:0 \
        [--app iso7816 | --profile PATH [--state-dir DIR] [--interface contact]] [--absent] \
        [--mute-timeout 1.0] [--insert-wait 5] [--transcript PATH]

Readiness: {"reader": "Virtual PCD 00 00", "vpcd": "127.0.0.1:35963", "control": "host:port"}
(+ "profile": id with --profile; port 35963 is reader index 0, 35964 index 1). `--profile`
serves a card profile (or a capture draft) through `rig.card.host` (T=0 rules, faults, a trace
with decoded APDUs). The control port takes JSON lines:
  {"cmd": "insert"}   connect to vpcd: the card is present (waits until pcscd powers it)
  {"cmd": "remove"}   close the link: the card is absent (answers after one pcscd poll, 0.45 s)
  {"cmd": "mute", "on": true, "timeout": 1.0}   hold every command APDU unanswered; after
      `timeout` s the simulated reader gives up (the link is re-made, the card stays present and
      pcscd reports a failed transmission); unmuting in time answers the held command late
  {"cmd": "fault", "kind": K, ...}   arm a run-time fault (rig.card.faults): kind "mute"
      (timeout), "delay" (ms, ins, once), "sw" (ins, sw, once), "corrupt_cryptogram" (once),
      "remove_at" (n: the card leaves during the nth command from now)
  {"cmd": "clear_faults"}   disarm every fault and unmute
  {"cmd": "swap", "profile": PATH, "insert": true, "interface": "contact"}   pull the card,
      load another profile as a new card (fresh state unless --state-dir; its start-up faults
      replace the armed ones; interface defaults to the current one), insert it unless
      "insert" is false
  {"cmd": "status"}
and answers one line {"ok": true, "status": {...}} or {"ok": false, "error": "..."}.
The APDU path is a blocking loop in its own thread; control runs in other threads.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.iso7816 import describe_command, describe_sw
from rig.bench.pcscd import DEFAULT_VPCD_PORT, VPCD_SLOTS, vpcd_port, vpcd_reader_name
from rig.bench.sim.common import (
    announce_failure,
    announce_ready,
    exit_on_sigterm,
    read_readiness,
)
from rig.card import trace
from rig.card.application import CardApplication
from rig.card.faults import FaultError, FaultyCard
from rig.card.host import CardHostError, ServedCard, build
from rig.card.iso7816_app import Iso7816DemoCard
from rig.card.vpcd import CONTROL_NAMES, CTRL_ATR, CTRL_OFF, DROPPED, VpcdError, VpcdLink
from rig.evidence import Direction, Transcript, null_transcript

APPS: dict[str, Callable[[], CardApplication]] = {"iso7816": Iso7816DemoCard}
INSERT_WAIT = 5.0
"""Seconds `insert` may take until pcscd powers the new card (it polls readers every 0.4 s)."""
POWER_ON_WAIT = 1.5
"""Seconds after connecting by which pcscd powers a card it has seen inserted."""
SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the GIL: short, so the transcript writer never delays an APDU."""
REMOVAL_SETTLE = 0.45
"""One pcscd poll period (0.4 s) and a margin: long enough for pcscd to see the reader empty."""


class ControlError(Exception):
    """A control request that cannot be carried out; the message goes back to the client."""


def split_endpoint(text: str, what: str) -> tuple[str, int]:
    """Split "host:port" into (host, port); ControlError naming the option otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ControlError(f"{what} {text!r}: expected host:port, e.g. 127.0.0.1:35963")
    return host, int(port)


class CardSlot:
    """The card's presence at one vpcd reader: insert, remove, mute, and the APDU thread."""

    def __init__(
        self,
        app: CardApplication,
        host: str,
        port: int,
        *,
        transcript: Transcript | None = None,
        mute_timeout: float = 1.0,
        detailed_trace: bool = False,
    ) -> None:
        self.app = app
        self.detailed_trace = detailed_trace
        self.host, self.port = host, port
        self.transcript = transcript if transcript is not None else null_transcript("cardsim")
        self.mute_timeout = mute_timeout
        self._cond = threading.Condition()
        self._link: VpcdLink | None = None
        self._thread: threading.Thread | None = None
        self._muted = False
        self._held = 0
        self._powered = False
        self._taken = threading.Event()
        self._seen = False
        self.apdus = 0
        self.mute_drops = 0

    @property
    def present(self) -> bool:
        return self._link is not None

    def insert(self, wait: float = INSERT_WAIT) -> None:
        """Connect to vpcd and serve; returns once pcscd has powered the card.

        pcscd notices a removal only if one of its presence polls finds no card; when a new link
        was already waiting (the previous card was dropped outside a poll), it sees one card all
        along and never powers the new one. The slot then drops the link for a poll and retries.
        """
        deadline = time.monotonic() + wait
        for attempt in (1, 2):
            link = self._attach(max(0.1, deadline - time.monotonic()))
            if attempt == 1:
                self.transcript.record(
                    Direction.EVENT, None, {"event": "insert", "vpcd": link.endpoint}
                )
            first = min(POWER_ON_WAIT, max(0.0, deadline - time.monotonic()))
            if self._taken.wait(first):
                return
            if not self._seen:
                break
            self._detach(settle=True)
        left = max(0.0, deadline - time.monotonic())
        if self._taken.wait(left) or self._seen:
            return
        self._detach(settle=False)
        raise ControlError(
            f"vpcd at {self.host}:{self.port} did not take the card within {wait:g} s: "
            "is another card simulator attached to this reader?"
        )

    def _attach(self, timeout: float) -> VpcdLink:
        with self._cond:
            if self._link is not None:
                return self._link
            try:
                link = VpcdLink.connect(self.host, self.port, timeout=timeout)
            except VpcdError as exc:
                raise ControlError(str(exc)) from exc
            self._link = link
            self._taken.clear()
            self._seen = False
            self._thread = threading.Thread(target=self._run, args=(link,), daemon=True)
            self._thread.start()
            return link

    def _detach(self, *, settle: bool) -> bool:
        with self._cond:
            link, self._link = self._link, None
            self._powered = False
            self._cond.notify_all()
            if link is None:
                return False
            link.close()
            if settle:
                time.sleep(REMOVAL_SETTLE)
        return True

    def remove(self) -> None:
        """Pull the card; returns after one pcscd poll period, when the reader reads empty."""
        if self._detach(settle=True):
            self.transcript.record(Direction.EVENT, None, {"event": "remove"})

    def pull(self) -> None:
        """Pull the card now, from the APDU thread, in the middle of a command (remove_at)."""
        if self._detach(settle=False):
            self.transcript.record(Direction.EVENT, None, {"event": "remove during a command"})

    def mute(self, on: bool, timeout: float | None = None) -> None:
        """Stop (or resume) answering command APDUs; `timeout` is the reader's waiting time."""
        with self._cond:
            self._muted = on
            if timeout is not None:
                self.mute_timeout = timeout
            self._cond.notify_all()
        self.transcript.record(
            Direction.EVENT, None, {"event": "mute", "on": on, "timeout": self.mute_timeout}
        )

    def status(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "powered": self._powered,
            "muted": self._muted,
            "mute_timeout": self.mute_timeout,
            "held": self._held,
            "apdus": self.apdus,
            "mute_drops": self.mute_drops,
            "vpcd": f"{self.host}:{self.port}",
        }

    def close(self) -> None:
        self.remove()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=2)

    # -- APDU thread ---------------------------------------------------------------------

    def _gate(self, apdu: bytes) -> bool:
        """Pass a command unless muted; a muted command waits for unmute, removal or timeout."""
        if not self._muted:
            return True
        with self._cond:
            self._held += 1
            self.transcript.record(
                Direction.RX,
                apdu,
                describe_command(apdu),
                error="held: mute",
                sensitive=trace.is_sensitive(apdu),
            )
            try:
                answered = self._cond.wait_for(
                    lambda: not self._muted or self._link is None, self.mute_timeout
                )
            finally:
                self._held -= 1
            return answered and self._link is not None

    def _on_control(self, code: int) -> None:
        if code == CTRL_ATR:
            self._seen = True
            if self._powered:
                self._taken.set()
            return
        self._powered = code != CTRL_OFF
        self.transcript.record(
            Direction.EVENT, bytes((code,)), {"vpcd": CONTROL_NAMES.get(code, "unknown")}
        )

    def _on_exchange(self, apdu: bytes, resp: bytes) -> None:
        self.apdus += 1
        record = self.transcript.record
        if self.detailed_trace:
            record(
                Direction.RX,
                apdu,
                trace.command_entry(apdu),
                sensitive=trace.is_sensitive(apdu),
            )
            record(Direction.TX, resp, trace.response_entry(apdu, resp))
            return
        record(Direction.RX, apdu, describe_command(apdu), sensitive=trace.is_sensitive(apdu))
        if len(resp) < 2:
            record(Direction.TX, resp, None, error="no answer")
            return
        record(Direction.TX, resp, describe_sw((resp[-2] << 8) | resp[-1]))

    def _on_count(self, apdu: bytes, resp: bytes) -> None:
        self.apdus += 1

    def _on_error(self, apdu: bytes, exc: Exception) -> None:
        self.transcript.record(
            Direction.RX,
            apdu,
            describe_command(apdu),
            error=f"application failed: {exc!r}",
            sensitive=trace.is_sensitive(apdu),
        )

    def _run(self, link: VpcdLink) -> None:
        on_exchange = self._on_exchange if self.transcript.enabled else self._on_count
        while True:
            reason = link.serve(
                self.app,
                gate=self._gate,
                on_control=self._on_control,
                on_exchange=on_exchange,
                on_error=self._on_error,
            )
            with self._cond:
                if reason != DROPPED or self._link is not link:
                    if self._link is link:
                        self._link = None
                        self._powered = False
                    link.close()
                    return
                self.mute_drops += 1
                # The simulated reader gives up on a mute card: connect again before closing the
                # old link, so vpcd finds the card at once and pcscd never sees the reader empty.
                try:
                    fresh = VpcdLink.connect(self.host, self.port, timeout=2.0)
                except VpcdError:
                    self._link = None
                    link.close()
                    return
                self._link = fresh
            self.transcript.record(
                Direction.EVENT, None, {"event": "mute timeout: reader gave up, link re-made"}
            )
            link.close()
            link = fresh


class _ControlHandler(socketserver.StreamRequestHandler):
    server: _ControlServer

    def handle(self) -> None:
        for line in self.rfile:
            if not line.strip():
                continue
            reply = self.server.dispatch(line)
            self.wfile.write((json.dumps(reply) + "\n").encode())
            self.wfile.flush()


class _ControlServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        slot: CardSlot,
        extra: dict[str, Any],
        *,
        faults: FaultyCard,
        served: ServedCard | None = None,
        state_dir: Path | None = None,
        interface: str = "contact",
    ) -> None:
        super().__init__(address, _ControlHandler)
        self.slot = slot
        self.extra = extra
        self.faults = faults
        self.served = served
        self.state_dir = state_dir
        self.interface = interface
        self._swap_lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        return {
            **self.extra,
            **self.slot.status(),
            "faults": self.faults.armed(),
            "injected": dict(self.faults.injected),
        }

    def dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ControlError('a request is a JSON object like {"cmd": "status"}')
            cmd = request.get("cmd")
            if cmd == "insert":
                self.slot.insert()
            elif cmd == "remove":
                self.slot.remove()
            elif cmd == "mute":
                on = request.get("on", True)
                if not isinstance(on, bool):
                    raise ControlError("mute: 'on' must be true or false")
                self.slot.mute(on, _timeout(request, "mute"))
            elif cmd == "fault":
                self._fault(request)
            elif cmd == "clear_faults":
                self.faults.clear()
                self.slot.mute(False)
                self.slot.transcript.record(Direction.EVENT, None, {"event": "faults cleared"})
            elif cmd == "swap":
                self._swap(request)
            elif cmd != "status":
                raise ControlError(
                    f"unknown command {cmd!r}: use insert, remove, mute, fault, clear_faults, "
                    "swap or status"
                )
            return {"ok": True, "status": self.status()}
        except json.JSONDecodeError as exc:
            return {"ok": False, "error": f"request is not JSON ({exc.msg} at {exc.pos})"}
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}

    def _fault(self, request: dict[str, Any]) -> None:
        kind = request.get("kind")
        params = {k: v for k, v in request.items() if k not in ("cmd", "kind")}
        if kind == "mute":
            self.slot.mute(True, _timeout(request, "fault mute"))
            return
        try:
            armed = self.faults.arm(str(kind), **params)
        except FaultError as exc:
            raise ControlError(f"fault {kind}: {exc}") from None
        self.slot.transcript.record(Direction.EVENT, None, {"event": "fault armed", **armed})

    def _swap(self, request: dict[str, Any]) -> None:
        path = request.get("profile")
        if not isinstance(path, str) or not path:
            raise ControlError('swap needs "profile": the path of a card profile YAML file')
        insert = request.get("insert", True)
        if not isinstance(insert, bool):
            raise ControlError("swap: 'insert' must be true or false")
        interface = request.get("interface", self.interface)
        with self._swap_lock:
            try:
                served = build(
                    path,
                    state_dir=self.state_dir,
                    interface=str(interface),
                    remove=self.slot.pull,
                )
            except CardHostError as exc:
                raise ControlError(f"swap: {exc}") from None
            self.slot.remove()
            self.slot.mute(any(f["kind"] == "mute" for f in served.startup_faults))
            self.slot.app = served.app
            self.faults = served.faults
            self.served = served
            self.interface = str(interface)
            self.extra["profile"] = served.profile.id
            self.extra["app"] = served.profile.kind
            self.extra["interface"] = self.interface
            self.slot.transcript.record(
                Direction.EVENT, None, {"event": "swap", "profile": served.profile.id}
            )
            if insert:
                self.slot.insert()


def _timeout(request: dict[str, Any], what: str) -> float | None:
    timeout = request.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise ControlError(f"{what}: 'timeout' must be a positive number of seconds")
    return timeout


def spawn(
    vpcd: str, *args: str, control: str = "127.0.0.1:0"
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start the simulator process; (process, readiness line). The caller terminates it."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rig.bench.sim.cardsim",
            "--vpcd",
            vpcd,
            "--control",
            control,
            *args,
        ],
        stdout=subprocess.PIPE,
    )
    ready = read_readiness(proc)
    return proc, ready


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vpcd", default=f"127.0.0.1:{DEFAULT_VPCD_PORT}", help="vpcd host:port")
    parser.add_argument("--control", default="127.0.0.1:0", help="control host:port (0: any)")
    parser.add_argument("--app", default="iso7816", choices=sorted(APPS), help="card application")
    parser.add_argument("--profile", help="serve this card profile (or capture draft) instead")
    parser.add_argument(
        "--state-dir", help="folder keeping each card's state (EMV counters, purse balance)"
    )
    parser.add_argument("--interface", default="contact", choices=("contact", "contactless"))
    parser.add_argument("--absent", action="store_true", help="start with the card removed")
    parser.add_argument("--mute-timeout", type=float, default=1.0, help="reader waiting time, s")
    parser.add_argument("--insert-wait", type=float, default=INSERT_WAIT, help="seconds")
    parser.add_argument("--transcript", help="JSON-lines transcript of every APDU")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    try:
        host, port = split_endpoint(args.vpcd, "--vpcd")
        chost, cport = split_endpoint(args.control, "--control")
    except ControlError as exc:
        announce_failure(str(exc))
        return 2
    return run(
        host,
        port,
        (chost, cport),
        app_name=args.app,
        profile=args.profile,
        state_dir=Path(args.state_dir) if args.state_dir else None,
        interface=args.interface,
        absent=args.absent,
        mute_timeout=args.mute_timeout,
        insert_wait=args.insert_wait,
        transcript_path=args.transcript,
    )


def run(
    host: str,
    port: int,
    control: tuple[str, int],
    *,
    app_name: str = "iso7816",
    profile: str | None = None,
    state_dir: Path | None = None,
    interface: str = "contact",
    absent: bool = False,
    mute_timeout: float = 1.0,
    insert_wait: float = INSERT_WAIT,
    transcript_path: str | None = None,
) -> int:
    """Serve one card at a vpcd reader with its control port; prints the readiness line."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    index = port - vpcd_port(0)
    reader = vpcd_reader_name(index) if 0 <= index < VPCD_SLOTS else f"vpcd port {port}"
    transcript = Transcript(transcript_path, "cardsim") if transcript_path else None
    slot = CardSlot(Iso7816DemoCard(), host, port, transcript=transcript, mute_timeout=mute_timeout)
    extra: dict[str, Any] = {"reader": reader, "app": app_name}
    served: ServedCard | None = None
    if profile is not None:
        try:
            served = build(profile, state_dir=state_dir, interface=interface, remove=slot.pull)
        except CardHostError as exc:
            announce_failure(str(exc))
            return 2
        slot.app = served.app
        slot.detailed_trace = True
        faults = served.faults
        extra = {
            "reader": reader,
            "app": served.profile.kind,
            "profile": served.profile.id,
            "interface": interface,
        }
        if any(f["kind"] == "mute" for f in served.startup_faults):
            slot.mute(True)
    else:
        faults = FaultyCard(APPS[app_name](), remove=slot.pull)
        slot.app = faults
    try:
        server = _ControlServer(
            control,
            slot,
            extra,
            faults=faults,
            served=served,
            state_dir=state_dir,
            interface=interface,
        )
    except OSError as exc:
        announce_failure(f"--control {control[0]}:{control[1]}: cannot listen ({exc})")
        return 1
    try:
        if not absent:
            try:
                slot.insert(insert_wait)
            except ControlError as exc:
                announce_failure(str(exc))
                return 1
        endpoints = {
            "reader": reader,
            "vpcd": f"{host}:{port}",
            "control": f"{control[0]}:{server.server_address[1]}",
        }
        if served is not None:
            endpoints["profile"] = served.profile.id
        announce_ready(**endpoints)
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        slot.close()
        if transcript is not None:
            transcript.close()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
