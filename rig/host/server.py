"""The reference acquirer host's asyncio TCP server: framing, decoding, journal, issuer, actions.

One `HostServer` owns its listeners (each with its own framing and optional TLS), the journal,
the key store, the issuer and the rules. Per request: decode once, reject what cannot be read
(format error RC 30, or a clean close when not even the MTI is readable), answer a duplicate
with the original response, let the issuer decide, make the journal entry durable, and only
then write the response. A broken connection only ever closes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import iso8583

from rig.host import tls
from rig.host.codec import fast_decode, fast_encode
from rig.host.connection import TerminalConnection
from rig.host.diag import Stalls, loop_lag_ticker
from rig.iso8583.framing import Frame, FramingError, get_framing
from rig.iso8583.messages import Iso8583Error, encode, mask, mask_pan, response_to
from rig.iso8583.spec import SPEC

log = logging.getLogger("rig.host")

MASTER_KEY_FILE = "master.key"
KEYSTORE_FILE = "keys.store"
TLS_DIR = "tls"
LOG_FILE = "host.log"
STATE_FILE = "host.json"
PROFILE_ENV = "POSRIG_HOST_PROFILE"

RESPONSE_MTI = {
    "0100": "0110",
    "0200": "0210",
    "0220": "0230",
    "0400": "0410",
    "0401": "0410",
    "0500": "0510",
    "0800": "0810",
}
_REVERSALS = frozenset({"0400", "0401"})


class HostError(RuntimeError):
    """The host cannot start or run as configured; the message names the place and the fix."""


@dataclass(frozen=True)
class Listener:
    """One listening endpoint: address, framing name and whether it speaks TLS."""

    host: str = "127.0.0.1"
    port: int = 0
    framing: str = "len2"
    tls: bool = False

    @classmethod
    def parse(cls, text: str, framing: str = "len2", use_tls: bool = False) -> Listener:
        """From 'HOST:PORT[/FRAMING][/tls]' (port 0: any free port); HostError names the fault."""
        address, *opts = text.split("/")
        for opt in opts:
            if opt == "tls":
                use_tls = True
            elif opt:
                framing = opt
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise HostError(
                f"listen address {text!r} is not HOST:PORT[/FRAMING][/tls] (e.g. 127.0.0.1:8583)"
            )
        try:
            get_framing(framing)
        except FramingError as e:
            raise HostError(str(e)) from None
        return cls(host.strip("[]"), int(port), framing, use_tls)


@dataclass
class HostConfig:
    """Everything a host needs: data folder, listeners, limits, card profiles and rules."""

    data: Path
    listeners: list[Listener] = field(default_factory=lambda: [Listener()])
    max_frame: int = 8192
    idle_timeout: float = 300.0
    echo_keepalive: bool = False
    profiles: Path = Path("cardprofiles")
    rules: Path | None = None
    control: tuple[str, int] | None = ("127.0.0.1", 0)
    master_key_file: Path | None = None
    group_window: float = 0.0
    log_messages: bool = False


class HostServer:
    """The reference acquirer host: listeners, journal, key store, issuer, rules and counters."""

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.counters: Counter[str] = Counter()
        self.rc_counts: Counter[str] = Counter()
        self.addresses: list[dict[str, Any]] = []
        self.control_address: str | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._conns: set[TerminalConnection] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.stalls = Stalls()
        self._control: Any = None
        self._loop: asyncio.AbstractEventLoop
        self.journal: Any = None
        self.keystore: Any = None
        self.issuer: Any = None
        self.rules: Any = None
        self.profiles: dict[str, Any] = {}

    # ---- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the data folder, load profiles, keys and rules, then listen; HostError on fault."""
        from rig.host.issuer import Issuer
        from rig.host.issuer_restore import restore
        from rig.host.journal import Journal, JournalError
        from rig.host.keystore import KeyStore, KeyStoreError, load_master_key
        from rig.host.rules import DEFAULT_RULES, RuleError, RuleSet
        from rig.profiles import ProfileError, load_all

        cfg = self.config
        self._loop = asyncio.get_running_loop()
        data = Path(cfg.data)
        if not (data / KEYSTORE_FILE).is_file():
            raise HostError(
                f"{data} is not an initialised host data folder (no {KEYSTORE_FILE}); "
                f"run `rig host init --data {data}` first"
            )
        _setup_log(data / LOG_FILE, cfg.log_messages)
        key_file = cfg.master_key_file or data / MASTER_KEY_FILE
        try:
            master = load_master_key(key_file if key_file.is_file() else None)
            self.keystore = KeyStore.open(data / KEYSTORE_FILE, master)
        except KeyStoreError as e:
            raise HostError(f"key store: {e}") from None
        try:
            self.profiles = load_all(cfg.profiles)
        except ProfileError as e:
            raise HostError(f"card profiles: {e}") from None
        try:
            self.rules = RuleSet.from_yaml(cfg.rules or DEFAULT_RULES)
        except RuleError as e:
            raise HostError(str(e)) from None
        self.issuer = Issuer(self.profiles, self.keystore, self.rules)
        self.journal = Journal.in_folder(data, group_window=cfg.group_window, stalls=self.stalls)
        try:
            self.journal.open()
        except JournalError as e:
            raise HostError(f"journal: {e}") from None
        try:
            restored = restore(self.issuer, self.journal)
        except JournalError as e:
            self.journal.close()
            raise HostError(f"journal: issuer state not restored ({e})") from None
        log.info("issuer state restored from the journal: %s", restored.as_dict())
        for spec in cfg.listeners:
            await self._listen(spec, data)
        if cfg.control is not None:
            from rig.host.control import ControlServer

            self._control = ControlServer(self)
            self.control_address = await self._control.start(*cfg.control)
        self._sweeper = self._loop.create_task(self._sweep())
        gc.collect()
        gc.freeze()  # start-up objects (profiles, keys, modules) leave the gen-2 scan: ~20-30 ms
        self.stalls.watch_gc()
        self._ticker = self._loop.create_task(loop_lag_ticker(self.stalls))
        state = {"pid": os.getpid(), "listeners": self.addresses, "control": self.control_address}
        (data / STATE_FILE).write_text(json.dumps(state) + "\n")
        log.info("host up: %s control %s", self.addresses, self.control_address)

    async def _listen(self, spec: Listener, data: Path) -> None:
        framing = get_framing(spec.framing, max_len=self.config.max_frame)
        ctx = tls.server_context(data / TLS_DIR) if spec.tls else None
        name = f"{spec.framing}{'+tls' if spec.tls else ''}"
        try:
            server = await self._loop.create_server(
                lambda: TerminalConnection(self, framing, name),
                spec.host,
                spec.port,
                ssl=ctx,
                backlog=512,
            )
        except OSError as e:
            raise HostError(f"cannot listen on {spec.host}:{spec.port}: {e.strerror}") from None
        host, port = server.sockets[0].getsockname()[:2]
        self._servers.append(server)
        self.addresses.append(
            {"address": f"{host}:{port}", "framing": spec.framing, "tls": spec.tls}
        )

    async def stop(self) -> None:
        """Stop listening, finish in-flight requests (journal first), close connections."""
        for server in self._servers:
            server.close()
        if self._control is not None:
            await self._control.stop()
        for task in (self._sweeper, self._ticker):
            if task is not None:
                task.cancel()
        self.stalls.unwatch_gc()
        tasks = [c.task for c in self._conns if c.task is not None]
        tasks += [asyncio.ensure_future(c._drain()) for c in self._conns if c.inflight]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for conn in list(self._conns):
            conn.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        if self.journal is not None:
            self.journal.close()
        log.info("host stopped: %s", dict(self.counters))

    async def _sweep(self) -> None:
        idle = self.config.idle_timeout
        period = max(0.05, min(1.0, idle / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self._conns):
                if now - conn.last > idle and conn.task is None:
                    self.counters["closed_idle"] += 1
                    log.info("%s %s: idle for %.1f s; closing", conn.name, conn.peer, idle)
                    conn.close()

    # ---- connection events ---------------------------------------------------------------

    def _opened(self, conn: TerminalConnection) -> None:
        self._conns.add(conn)
        self.counters["connections"] += 1
        log.debug("%s %s: connected", conn.name, conn.peer)

    def _lost(self, conn: TerminalConnection) -> None:
        self._conns.discard(conn)
        log.debug("%s %s: closed", conn.name, conn.peer)

    def _keepalives(self, conn: TerminalConnection, n: int) -> None:
        self.counters["keepalives"] += n
        if self.config.echo_keepalive:
            for _ in range(n):
                conn.transport.write(conn.framing._header(0))  # type: ignore[union-attr]

    def _bad_frame(self, conn: TerminalConnection, err: FramingError) -> None:
        self.counters["closed_bad_frame"] += 1
        log.warning("%s %s: %s; closing this connection", conn.name, conn.peer, err)
        conn.pending.clear()
        conn.close()

    # ---- one request ---------------------------------------------------------------------

    def _process(
        self, conn: TerminalConnection, frame: Frame, arrived: float
    ) -> Coroutine[Any, Any, None] | None:
        """Handle one request as far as it goes without waiting; the rest (if any) to await.

        The usual request ends here: its journal entry is queued and its response is written
        by the commit callback (`_committed`), once the entry is durable. Duplicates, reversals
        and requests a rule acts on return a coroutine that finishes them.
        """
        self.counters["requests"] += 1
        try:
            doc = fast_decode(frame.payload)
        except Iso8583Error as e:
            self._format_error(conn, frame, str(e))
            return None
        mti = doc["t"]
        tid = doc.get("41")
        stan = doc.get("11")
        if mti not in RESPONSE_MTI or tid is None or stan is None:
            self._format_error(
                conn, frame, f"MTI {mti} without DE11/DE41 or not a request", doc=doc
            )
            return None
        if self.config.log_messages:
            log.debug("%s %s: rx %s", conn.name, conn.peer, mask(doc))
        if self.rules.paused:
            self.counters["paused_unanswered"] += 1
            return None
        if mti in _REVERSALS:  # looks its duplicate up itself, in its turn
            return self._reversal(conn, frame, doc, arrived)
        journal = self.journal
        dup = journal.find_duplicate(tid, stan, doc.get("7", ""), mti[:2])
        if dup is not None:
            return self._replay(conn, frame, doc, dup, arrived)
        kw: dict[str, Any] = {}
        if mti == "0500":
            kw["reconciliation"] = self._compare(doc)
        decision = self.issuer.decide(doc, **kw)
        resp = self._response(doc, decision)
        future = journal.submit(self._entry(doc, resp, decision, None), checked=True)
        if decision.action is not None:
            return self._finish(conn, frame, resp, decision, future, arrived)
        conn.inflight += 1
        future.add_done_callback(
            partial(self._committed, conn, frame, resp, time.perf_counter(), arrived)
        )
        return None

    @staticmethod
    def _response(doc: dict[str, str], decision: Any) -> dict[str, str]:
        resp = response_to(doc, decision.rc)
        resp.update(decision.fields)
        resp["39"] = decision.rc
        return resp

    async def _reversal(
        self, conn: TerminalConnection, frame: Frame, doc: dict[str, str], arrived: float
    ) -> None:
        """0400/0401: find the original, decide, and post the reversal with the original's flag
        in one transaction (idempotent: a second reversal of the same original posts nothing)."""
        journal = self.journal
        dup = journal.find_duplicate(doc["41"], doc["11"], doc.get("7", ""), doc["t"][:2])
        if dup is not None:  # the same reversal arrived again while this one waited its turn
            await self._replay(conn, frame, doc, dup, arrived)
            return
        de90 = doc.get("90", "")
        original = None
        if len(de90) >= 20:
            original = journal.find_original(doc["41"], de90[4:10], de90[10:20])
        decision = self.issuer.decide(doc, original=original)
        resp = self._response(doc, decision)
        entry = self._entry(doc, resp, decision, original)
        if original is not None and decision.rc == "00":
            posted: Awaitable[int] = journal.mark_reversed(original.id, entry)
        else:
            posted = journal.submit(entry, checked=True)
        await self._finish(conn, frame, resp, decision, posted, arrived)

    def _committed(
        self,
        conn: TerminalConnection,
        frame: Frame,
        resp: dict[str, str],
        queued: float,
        arrived: float,
        future: asyncio.Future[int],
    ) -> None:
        """The journal made a request's entry durable (or failed): answer, or close on failure."""
        try:
            now = time.perf_counter()
            if future.cancelled() or future.exception() is not None:
                self.counters["internal_errors"] += 1
                log.error(
                    "%s %s: journal append failed (%s); closing this connection only",
                    conn.name,
                    conn.peer,
                    "cancelled" if future.cancelled() else future.exception(),
                )
                conn.close()
                return
            self.stalls.record("journal_wait", (now - queued) * 1e3)
            self.rc_counts[resp["39"]] += 1
            self._send(conn, frame, resp)
            self.stalls.record("request", (now - arrived) * 1e3)
        finally:
            conn.answered()

    async def _finish(
        self,
        conn: TerminalConnection,
        frame: Frame,
        resp: dict[str, str],
        decision: Any,
        journaled: Awaitable[int],
        arrived: float,
    ) -> None:
        """Answer once the entry is durable, applying the rule action (delay, no answer …)."""
        t0 = time.perf_counter()
        await journaled
        self.stalls.record("journal_wait", (time.perf_counter() - t0) * 1e3)
        self.rc_counts[decision.rc] += 1
        action = decision.action
        if action is None or not await self._act(conn, frame, resp, action):
            self._send(conn, frame, resp)
        self.stalls.record("request", (time.perf_counter() - arrived) * 1e3)

    def _compare(self, doc: dict[str, str]) -> Any:
        from rig.iso8583.messages import Totals

        try:
            totals = Totals.decode(doc.get("63", ""))
        except Iso8583Error:
            return None
        batch = doc.get("60", "")[:6]
        return self.journal.compare(doc["41"], batch, totals)

    async def _act(
        self, conn: TerminalConnection, frame: Frame, resp: dict[str, str], action: Any
    ) -> bool:
        """Apply a rule's action; True when the normal response must not be written."""
        if action.delay_ms:
            await asyncio.sleep(action.delay_ms / 1000)
        if action.no_answer:
            self.counters["no_answer"] += 1
            return True
        if action.drop_connection:
            self.counters["dropped"] += 1
            conn.close()
            return True
        if action.malformed:
            self.counters["malformed_sent"] += 1
            raw = encode(resp)
            conn.write(raw[: max(3, len(raw) // 2)] + b"\xff\xff", frame.tpdu)
            return True
        return False

    def _send(self, conn: TerminalConnection, frame: Frame, resp: dict[str, str]) -> None:
        raw = fast_encode(resp)
        if self.config.log_messages:
            log.debug("%s %s: tx %s", conn.name, conn.peer, mask(resp))
        conn.write(raw, frame.tpdu)
        self.counters["responses"] += 1

    async def _replay(
        self, conn: TerminalConnection, frame: Frame, doc: dict[str, str], dup: Any, arrived: float
    ) -> None:
        """A duplicate: the original response again (nothing posted), once it is durable."""
        self.counters["duplicates"] += 1
        if dup.id is not None:
            await self.journal.wait_committed(dup.id)
        resp = response_to(doc, dup.rc)
        for key, value in (dup.response or {}).items():
            if key not in resp and key.isdigit() and key not in ("2", "35", "45", "52"):
                resp[key] = value
        finish = getattr(self.issuer, "finish_response", None)
        if finish is not None:
            resp = finish(doc, resp)
        self._send(conn, frame, resp)
        self.stalls.record("request", (time.perf_counter() - arrived) * 1e3)

    def _entry(
        self, doc: dict[str, str], resp: dict[str, str], decision: Any, original: Any
    ) -> Any:
        """The journal entry, with the issuer's notes; the journal masks it on the way in."""
        from rig.host.journal import JournalEntry

        amount = doc.get("4")
        pan = doc.get("2") or doc.get("35", "").split("D", 1)[0]
        batch = doc.get("60")
        return JournalEntry(
            terminal_id=doc["41"],
            stan=doc["11"],
            transmission=doc.get("7", ""),
            mti=doc["t"],
            processing_code=doc.get("3"),
            amount=int(amount) if amount else None,
            currency=doc.get("49"),
            rc=resp["39"],
            auth_id=resp.get("38"),
            rrn=resp.get("37"),
            batch=batch[:6] if batch else None,
            pan_masked=mask_pan(pan) if pan else None,
            kind=decision.kind,
            original_id=original.id if original is not None else None,
            request=doc,
            response=resp,
            notes="; ".join(decision.notes) or None,
        )

    def _format_error(
        self, conn: TerminalConnection, frame: Frame, why: str, doc: dict[str, str] | None = None
    ) -> None:
        """RC 30 when the MTI is a readable request, otherwise close this connection only."""
        self.counters["format_errors"] += 1
        partial = doc if doc is not None else _partial(frame.payload)
        mti = partial.get("t", "")
        if mti in RESPONSE_MTI:
            resp = {"t": RESPONSE_MTI[mti], "39": "30"}
            for key in ("7", "11", "41"):
                value = partial.get(key)
                if isinstance(value, str) and _fits(key, value):
                    resp[key] = value
            try:
                raw = encode(resp)
            except Iso8583Error:
                raw = b""
            if raw:
                log.info("%s %s: format error (%s); answered RC 30", conn.name, conn.peer, why)
                conn.write(raw, frame.tpdu)
                self.rc_counts["30"] += 1
                return
        self.counters["closed_unreadable"] += 1
        log.info("%s %s: unreadable message (%s); closing", conn.name, conn.peer, why)
        conn.pending.clear()
        conn.close()

    # ---- control ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Addresses, open connections, pause state and counters (JSON-able)."""
        return {
            "pid": os.getpid(),
            "listeners": self.addresses,
            "control": self.control_address,
            "connections_open": len(self._conns),
            "paused": bool(self.rules.paused),
            "counters": dict(self.counters),
            "response_codes": dict(self.rc_counts),
            "journal_entries": self.journal.count(),
            "diagnostics": self.stalls.snapshot(),
        }


def _partial(payload: bytes) -> dict[str, Any]:
    """Whatever pyiso8583 could decode before it failed (for a format-error response)."""
    try:
        doc, _ = iso8583.decode(payload, SPEC)
    except iso8583.DecodeError as e:
        return e.doc_dec or {}
    except Exception:
        return {}
    return doc


def _fits(key: str, value: str) -> bool:
    if key == "41":
        return len(value) == 8 and value.isprintable() and value.isascii()
    return value.isdigit() and len(value) == (10 if key == "7" else 6)


def _setup_log(path: Path, verbose: bool) -> None:
    """One log file per data folder; message bodies (masked) only when `verbose`."""
    for handler in list(log.handlers):
        if getattr(handler, "_posrig", False):
            log.removeHandler(handler)
            handler.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler._posrig = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


async def serve_forever(config: HostConfig, ready: Any = None) -> None:
    """Start a host, call `ready(server)`, run until cancelled or SIGTERM, then stop cleanly."""
    import signal

    profiler = _start_profiler()
    server = HostServer(config)
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    if ready is not None:
        ready(server)
    try:
        await stopping.wait()
    finally:
        await server.stop()
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(os.environ[PROFILE_ENV])


def _start_profiler() -> Any:
    """cProfile of the event loop thread when POSRIG_HOST_PROFILE names a stats file (dev aid)."""
    if not os.environ.get(PROFILE_ENV):
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler
