"""The host's transaction journal: SQLite (WAL, synchronous=FULL) with group commit.

`await append(entry)` returns only once the row is committed and fsynced; appends arriving
together share one transaction, made by a single writer thread, so durability costs one fsync
per batch rather than per message. Entries appended but not yet committed stay in an in-memory
index, so duplicate and reversal look-ups see them too. Only masked data enters: every request
and response is masked once on the way in (`rig.host.journal_mask`); the writer thread and its
SQL live in `rig.host.journal_writer`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from rig.evidence.redact import redact_text, redact_value
from rig.host import reconcile
from rig.host.journal_entry import JournalEntry, mti_class
from rig.host.journal_keys import KeyFilter
from rig.host.journal_mask import dumps, mask_pair_json, redact
from rig.host.journal_writer import SCHEMA, GroupCommitWriter, Op, connect, upgrade
from rig.host.reconcile import APPROVED
from rig.iso8583.messages import Totals

__all__ = [
    "APPROVED",
    "JOURNAL_FILE",
    "DuplicateError",
    "Journal",
    "JournalEntry",
    "JournalError",
    "mti_class",
]

JOURNAL_FILE = "journal.sqlite3"
"""File name of the journal inside a host data folder."""


class JournalError(RuntimeError):
    """A journal problem (closed journal, bad entry, failed commit), naming the fix."""


class DuplicateError(JournalError):
    """An append whose (terminal, STAN, transmission, MTI class) is already journaled."""

    def __init__(self, original: JournalEntry) -> None:
        super().__init__(
            f"duplicate of journal entry {original.id} (terminal {original.terminal_id}, "
            f"STAN {original.stan}, DE7 {original.transmission}, MTI {original.mti}); "
            "answer with the original response instead of posting again"
        )
        self.original = original


_class_of = mti_class


_COLUMNS = [f.name for f in fields(JournalEntry)]
_STR_FIELDS = ("terminal_id", "stan", "transmission", "mti", "rc", "kind")
_SELECT = "SELECT " + ", ".join(_COLUMNS) + " FROM entries"
_KEYS_SQL = "SELECT terminal_id, stan, transmission, mti_class FROM entries"
_KEY_SQL = (
    "SELECT id FROM entries WHERE terminal_id = ? AND stan = ? AND transmission = ? "
    "AND mti_class = ? ORDER BY id LIMIT 1"
)
_HAS_DE54 = "instr({0}response, '\"54\":') > 0"  # compact JSON (`dumps`): only a key matches
_BALANCES_SQL = (
    "SELECT b.pan_masked, b.id, b.n, json_extract(e.response, '$.\"54\"') FROM "
    "(SELECT pan_masked, MAX(id) AS id, COUNT(*) AS n FROM entries "
    f"WHERE rc = '00' AND {_HAS_DE54.format('')} GROUP BY pan_masked) AS b "
    "JOIN entries e ON e.id = b.id"
)
_CARD_EVENTS_SQL = (
    # id, pan_masked, kind, amount, auth_id, carries DE54, request DE38 (advices), and for a
    # reversal its original's kind, amount, auth_id and whether this reversal undid it approved
    "SELECT e.id, e.pan_masked, e.kind, e.amount, e.auth_id, "
    f"{_HAS_DE54.format('e.')}, "
    "CASE e.kind WHEN 'advice' THEN json_extract(e.request, '$.\"38\"') END, "
    "o.kind, o.amount, o.auth_id, o.rc = '00' AND o.reversed_by = e.id "
    "FROM entries e LEFT JOIN entries o ON e.kind = 'reversal' AND o.id = e.original_id "
    "WHERE e.rc = '00' AND e.pan_masked IS NOT NULL "
    "AND e.kind IN ('preauth', 'advice', 'reversal') ORDER BY e.id"
)
_LAST_AUTH_ID_SQL = "SELECT auth_id FROM entries WHERE auth_id IS NOT NULL ORDER BY id DESC LIMIT 1"


def _json(doc: Any, what: str) -> str:
    try:
        return dumps(doc)
    except (TypeError, ValueError) as e:
        raise JournalError(f"{what} is not JSON-serialisable ({e}); pass decoded strings") from None


def _row_entry(row: sqlite3.Row | tuple[Any, ...]) -> JournalEntry:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["reversed"] = bool(values["reversed"])
    values["request"] = json.loads(values["request"])
    values["response"] = json.loads(values["response"])
    return JournalEntry(**values)


class Journal:
    """Durable, group-committed journal of the host's request/response pairs."""

    def __init__(
        self,
        path: str | Path,
        *,
        group_window: float = 0.002,
        max_batch: int = 512,
        stalls: Any = None,
    ) -> None:
        if group_window < 0 or max_batch < 1:
            raise JournalError("group_window must be >= 0 and max_batch >= 1")
        self.path = Path(path)
        self.group_window = group_window
        self.max_batch = max_batch
        self.stalls = stalls
        self.stats: dict[str, int] = {
            "appends": 0,
            "commits": 0,
            "rows": 0,
            "largest_batch": 0,
            "failed": 0,
        }
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._inflight: dict[tuple[str, str, str, str], JournalEntry] = {}
        self._pending: dict[int, Op] = {}
        self._outbox: dict[asyncio.AbstractEventLoop, list[Op]] = {}
        self._reversing: dict[int, int] = {}
        self._keys = KeyFilter()
        self._reader: sqlite3.Connection | None = None
        self._writer: GroupCommitWriter | None = None
        self._next_id = 1

    @classmethod
    def in_folder(cls, folder: str | Path, **kw: Any) -> Journal:
        """The journal of a host data folder (`folder/journal.sqlite3`)."""
        return cls(Path(folder) / JOURNAL_FILE, **kw)

    # ---- lifecycle ------------------------------------------------------------------------

    def open(self) -> Journal:
        """Create or open the database and start the writer thread."""
        if self._reader is not None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(self.path)
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                raise JournalError(f"journal {self.path}: WAL mode unavailable (got {mode})")
            conn.executescript(SCHEMA)
            upgrade(conn)
            self._next_id = (conn.execute("SELECT MAX(id) FROM entries").fetchone()[0] or 0) + 1
            self._keys = KeyFilter(max(1 << 16, 2 * self._next_id))
            self._keys.update(conn.execute(_KEYS_SQL))
        except sqlite3.Error as e:
            raise JournalError(
                f"journal {self.path} cannot be opened ({e}); check the data folder's "
                "permissions or move the damaged file aside"
            ) from None
        self._reader = conn
        self._writer = GroupCommitWriter(
            self.path,
            self._settle,
            self.stats,
            group_window=self.group_window,
            max_batch=self.max_batch,
            stalls=self.stalls,
        )
        self._writer.start()
        return self

    def close(self) -> None:
        """Commit everything queued, stop the writer thread and close the database."""
        if self._reader is None:
            return
        if self._writer is not None:
            self._flush_outbox()
            self._writer.stop()
        self._writer = None
        self._reader.close()
        self._reader = None

    def __enter__(self) -> Journal:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- appending ------------------------------------------------------------------------

    def _prepare(self, entry: JournalEntry) -> tuple[JournalEntry, str, str]:
        mti = entry.mti
        if not (
            isinstance(entry.terminal_id, str)
            and isinstance(entry.stan, str)
            and isinstance(entry.transmission, str)
            and isinstance(mti, str)
            and isinstance(entry.rc, str)
            and isinstance(entry.kind, str)
        ):
            for name in _STR_FIELDS:
                if not isinstance(getattr(entry, name), str):
                    raise JournalError(f"journal entry field {name!r} must be a string")
        if len(mti) != 4 or not mti.isdigit():
            raise JournalError(f"journal entry mti {mti!r} must be 4 digits, e.g. '0200'")
        pan = entry.pan_masked
        try:
            request, response, req_json, resp_json = mask_pair_json(entry.request, entry.response)
        except TypeError as e:
            raise JournalError(str(e)) from None
        if req_json is None:
            req_json = _json(request, "request")
        if resp_json is None:
            resp_json = _json(response, "response")
        if type(pan) is not str:
            pan = redact_text(pan) if pan else pan
        elif len(pan) > 12 and pan[6:-4].strip("*"):  # else first 6 / last 4: nothing to redact
            pan = redact(pan)
        # The caller's entry stays as it was; a shallow copy by hand costs a fraction of
        # dataclasses.replace, which re-runs __init__ (a few us per request on the host).
        values = entry.__dict__.copy()
        values["pan_masked"] = pan
        values["request"] = request
        values["response"] = response
        notes = entry.notes
        if notes is not None:
            if type(notes) is not str:
                raise JournalError("journal entry field 'notes' must be a string or None")
            values["notes"] = redact(notes)
        copy = object.__new__(entry.__class__)
        copy.__dict__ = values
        return copy, req_json, resp_json

    @staticmethod
    def _row(e: JournalEntry, request: str, response: str) -> tuple[Any, ...]:
        """The INSERT parameters of entry `e` (columns as in `journal_writer.INSERT`)."""
        return (
            e.id,
            e.received_at,
            e.terminal_id,
            e.stan,
            e.transmission,
            e.mti,
            e.mti[:2],
            e.processing_code,
            e.amount,
            e.currency,
            e.rc,
            e.auth_id,
            e.rrn,
            e.batch,
            e.pan_masked,
            e.kind,
            e.original_id,
            int(e.reversed),
            e.reversed_by,
            request,
            response,
            e.notes,
        )

    def _require_open(self) -> sqlite3.Connection:
        if self._reader is None:
            raise JournalError(f"journal {self.path} is not open; call open() first")
        return self._reader

    def _submit(
        self,
        entry: JournalEntry,
        loop: asyncio.AbstractEventLoop | None,
        *,
        unique: bool,
        reverses: int | None = None,
        checked: bool = False,
    ) -> Op:
        if self._reader is None:
            self._require_open()
        entry, req_json, resp_json = self._prepare(entry)
        fut: Any = loop.create_future() if loop is not None else concurrent.futures.Future()
        key = (entry.terminal_id, entry.stan, entry.transmission, entry.mti[:2])
        with self._lock:
            if unique:
                if checked:
                    hit = self._inflight.get(key)
                    dup = None if hit is None else self._with_reversal(hit)
                else:
                    dup = self._find_duplicate_locked(key)
                if dup is not None:
                    raise DuplicateError(dup)
            entry_id = entry.id = self._next_id
            self._next_id = entry_id + 1
            op = Op(entry, self._row(entry, req_json, resp_json), fut, loop, reverses)
            if unique:
                self._inflight[key] = entry
            self._pending[entry_id] = op
            self._keys.add(key)
            if reverses is not None:
                self._reversing[reverses] = entry_id
            self.stats["appends"] += 1
        assert self._writer is not None
        if loop is None:
            self._writer.put(op)
        else:
            self._hand_over(op, loop)
        return op

    def _hand_over(self, op: Op, loop: asyncio.AbstractEventLoop) -> None:
        """Queue `op` for the writer at the end of this pass of its event loop: what one pass
        handles reaches the writer thread together (one wake-up, one commit), not op by op."""
        with self._lock:
            box = self._outbox.get(loop)
            if box is None:
                box = self._outbox[loop] = []
            box.append(op)
            first = len(box) == 1
        if first:
            loop.call_soon(self._flush_outbox, loop)

    def _flush_outbox(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Give the writer what the loop's pass queued (every loop's when `loop` is None)."""
        with self._lock:
            if loop is None:
                boxes = list(self._outbox.values())
                self._outbox.clear()
            else:
                boxes = [self._outbox.pop(loop, [])]
        writer = self._writer
        for ops in boxes:
            if ops and writer is not None:
                writer.put_many(ops)

    async def append(
        self, entry: JournalEntry, *, unique: bool = True, checked: bool = False
    ) -> int:
        """Journal `entry`; returns its id once committed. DuplicateError when already there.

        `checked=True`: the caller ran `find_duplicate` for this key on this event loop with
        no await since, so only entries in flight are checked again (saves a database query).
        """
        op = self._submit(entry, asyncio.get_running_loop(), unique=unique, checked=checked)
        return await op.future  # type: ignore[misc]

    def submit(
        self, entry: JournalEntry, *, unique: bool = True, checked: bool = False
    ) -> asyncio.Future[int]:
        """`append` without awaiting: the future gets the id once the entry is committed.

        For a server that answers from a done-callback rather than a task per request.
        """
        op = self._submit(entry, asyncio.get_running_loop(), unique=unique, checked=checked)
        return op.future  # type: ignore[return-value]

    def append_sync(self, entry: JournalEntry, *, unique: bool = True) -> int:
        """Blocking `append` for code outside an event loop."""
        op = self._submit(entry, None, unique=unique)
        return op.future.result()  # type: ignore[return-value]

    async def mark_reversed(self, original_id: int, reversal_entry: JournalEntry) -> int:
        """Journal `reversal_entry` and flag the original reversed, in one transaction.

        Idempotent: when the original is already reversed nothing is posted and the id of the
        existing reversal is returned (after it is durable).
        """
        with self._lock:
            existing = self._reversing.get(original_id)
            if existing is None and original_id not in self._pending:
                rows = self._query(
                    "SELECT reversed, reversed_by FROM entries WHERE id = ?", (original_id,)
                )
                row = rows[0] if rows else None
                if row is None:
                    raise JournalError(
                        f"no journal entry {original_id} to reverse; find it with find_original()"
                    )
                if row[0]:
                    return int(row[1])
        if existing is not None:
            await self.wait_committed(existing)
            return existing
        entry = replace(reversal_entry, original_id=original_id)
        op = self._submit(entry, asyncio.get_running_loop(), unique=True, reverses=original_id)
        return await op.future  # type: ignore[misc]

    async def wait_committed(self, entry_id: int) -> None:
        """Return once entry `entry_id` (e.g. a duplicate's in-flight original) is committed."""
        with self._lock:
            op = self._pending.get(entry_id)
        if op is None:
            return
        fut = op.future
        if isinstance(fut, concurrent.futures.Future):
            await asyncio.wrap_future(fut)
        elif fut.get_loop() is asyncio.get_running_loop():
            await asyncio.shield(fut)
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_wait(fut), fut.get_loop()))

    async def flush(self) -> None:
        """Return once every entry appended so far is committed (or failed)."""
        with self._lock:
            ids = list(self._pending)
        for entry_id in ids:
            with contextlib.suppress(JournalError):
                await self.wait_committed(entry_id)

    # ---- after a commit (event loop thread) ---------------------------------------------

    def _settle(self, ops: Iterable[Op], notify: bool = True) -> None:
        with self._lock:
            for op in ops:
                entry = op.entry
                assert entry.id is not None
                if self._inflight.get(entry.key) is entry:
                    del self._inflight[entry.key]
                self._pending.pop(entry.id, None)
                if op.reverses is not None and self._reversing.get(op.reverses) == entry.id:
                    del self._reversing[op.reverses]
        if not notify:
            return
        for op in ops:
            if op.future.done():
                continue
            if op.error is None:
                op.future.set_result(op.entry.id)  # type: ignore[arg-type]
            else:
                op.future.set_exception(JournalError(op.error))

    # ---- look-ups -------------------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        reader = self._require_open()
        try:
            with self._read_lock:
                return reader.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise JournalError(f"journal {self.path} read failed: {e}") from None

    def _with_reversal(self, entry: JournalEntry) -> JournalEntry:
        rev = self._reversing.get(entry.id) if entry.id is not None else None
        if rev is not None:
            return replace(entry, reversed=True, reversed_by=rev)
        return replace(entry)

    def _find_duplicate_locked(
        self, key: tuple[str, str, str, str], *, inflight_only: bool = False
    ) -> JournalEntry | None:
        hit = self._inflight.get(key)
        if hit is not None:
            return self._with_reversal(hit)
        if inflight_only or key not in self._keys:
            return None
        rows = self._query(_KEY_SQL, key)
        if not rows:
            return None
        rows = self._query(_SELECT + " WHERE id = ?", (rows[0][0],))
        return self._with_reversal(_row_entry(rows[0])) if rows else None

    def find_duplicate(
        self, terminal_id: str, stan: str, transmission: str, mti_class: str
    ) -> JournalEntry | None:
        """The journaled (or in-flight) entry with this key; a full MTI or its class works."""
        with self._lock:
            return self._find_duplicate_locked(
                (terminal_id, stan, transmission, _class_of(mti_class))
            )

    def find_original(
        self, terminal_id: str, stan: str, transmission: str | None = None
    ) -> JournalEntry | None:
        """The latest authorisation/financial entry (MTI 01xx/02xx) a reversal's DE90 names."""
        sql = _SELECT + " WHERE terminal_id = ? AND stan = ? AND substr(mti, 2, 1) IN ('1', '2')"
        args: tuple[Any, ...] = (terminal_id, stan)
        if transmission is not None:
            sql += " AND transmission = ?"
            args += (transmission,)
        with self._lock:
            found = [
                e
                for e in (op.entry for op in self._pending.values())
                if e.terminal_id == terminal_id
                and e.stan == stan
                and e.mti[1] in "12"
                and (transmission is None or e.transmission == transmission)
            ]
            rows = self._query(sql + " ORDER BY id DESC LIMIT 1", args)
            found += [_row_entry(r) for r in rows]
            if not found:
                return None
            return self._with_reversal(max(found, key=lambda e: e.id or 0))

    def get(self, entry_id: int) -> JournalEntry | None:
        """The committed or in-flight entry with this id."""
        with self._lock:
            op = self._pending.get(entry_id)
            if op is not None:
                return self._with_reversal(op.entry)
            rows = self._query(_SELECT + " WHERE id = ?", (entry_id,))
            return self._with_reversal(_row_entry(rows[0])) if rows else None

    def count(self) -> int:
        """Number of committed entries."""
        return int(self._query("SELECT COUNT(*) FROM entries")[0][0])

    def export(
        self, masked: bool = True, *, terminal_id: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Committed entries as plain dicts, oldest first (what `rig host journal --json` shows).

        Entries are masked on the way in; `masked=True` runs the redactor over them once more.
        """
        sql, args = _SELECT, ()
        if terminal_id is not None:
            sql, args = sql + " WHERE terminal_id = ?", (terminal_id,)
        sql += " ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        out = [asdict(_row_entry(r)) for r in self._query(sql, args)]
        return [redact_value(d) for d in out] if masked else out

    def entries(self, *, kinds: Iterable[str] = (), **where: str) -> list[JournalEntry]:
        """Committed entries, oldest first: of these `kinds` (all when empty), with column
        values `where` (terminal_id=, batch=). Start-up restore and `ctl reconcile` read it."""
        kinds = list(kinds)
        bad = set(where) - {"terminal_id", "batch"}
        if bad:
            raise JournalError(f"entries() filters on terminal_id and batch, not {sorted(bad)}")
        tests = [f"kind IN ({', '.join('?' * len(kinds))})"] if kinds else []
        tests += [f"{column} = ?" for column in where]
        sql = _SELECT + (" WHERE " + " AND ".join(tests) if tests else "") + " ORDER BY id"
        return [_row_entry(r) for r in self._query(sql, (*kinds, *where.values()))]

    def card_history(self) -> dict[str, Any]:
        """What a restart needs to rebuild card accounts (`issuer_restore`), selected in SQL so
        a journal of millions of rows is read in two table scans, run side by side on two
        connections (start-up, nothing is appended meanwhile): `balances`: per pan_masked (NULL
        too), the id and DE54 of the latest approved answer carrying DE54, and how many approved
        answers carry it; `events`: approved pre-authorisations, advices and reversals with a
        PAN, oldest first (see `_CARD_EVENTS_SQL`); `auth_id`: the latest journaled DE38."""

        def balances() -> list[Any]:
            conn = sqlite3.connect(self.path, check_same_thread=False)
            try:
                return conn.execute(_BALANCES_SQL).fetchall()
            except sqlite3.Error as e:
                raise JournalError(f"journal {self.path} read failed: {e}") from None
            finally:
                conn.close()

        self._require_open()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            found = pool.submit(balances)
            events = self._query(_CARD_EVENTS_SQL)
            last = self._query(_LAST_AUTH_ID_SQL)
            return {
                "balances": found.result(),
                "events": events,
                "auth_id": last[0][0] if last else None,
            }

    # ---- reconciliation -------------------------------------------------------------------

    def totals(self, terminal_id: str, batch: str) -> dict[str, Any]:
        """Host totals of a terminal batch: approved, unreversed 02xx sales and refunds."""
        entries = self.entries(terminal_id=terminal_id, batch=batch)
        return reconcile.totals(terminal_id, batch, entries)

    def compare(
        self, terminal_id: str, batch: str, terminal_totals: Totals | Mapping[str, int]
    ) -> tuple[bool, list[dict[str, Any]]]:
        """(in balance, differences): see `rig.host.reconcile.compare`."""
        entries = self.entries(terminal_id=terminal_id, batch=batch)
        return reconcile.compare(terminal_id, batch, entries, terminal_totals)


async def _wait(fut: asyncio.Future[int]) -> None:
    await asyncio.shield(fut)
