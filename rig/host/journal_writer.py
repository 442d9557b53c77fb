"""The journal's writer thread: group commit of queued rows into SQLite (WAL, synchronous=FULL).

Appends are queued as `Op`s; one thread takes whatever is queued (waiting at most
`group_window` for more, up to `max_batch`) and commits it in one transaction, so a batch costs
one fsync. A batch that fails is retried row by row so one bad row never fails its neighbours.
Each op's future is settled on the appender's event loop (`call_soon_threadsafe`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["INSERT", "SCHEMA", "STOP", "GroupCommitWriter", "Op", "upgrade"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    terminal_id TEXT NOT NULL,
    stan TEXT NOT NULL,
    transmission TEXT NOT NULL,
    mti TEXT NOT NULL,
    mti_class TEXT NOT NULL,
    processing_code TEXT,
    amount INTEGER,
    currency TEXT,
    rc TEXT NOT NULL,
    auth_id TEXT,
    rrn TEXT,
    batch TEXT,
    pan_masked TEXT,
    kind TEXT NOT NULL,
    original_id INTEGER,
    reversed INTEGER NOT NULL DEFAULT 0,
    reversed_by INTEGER,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    notes TEXT
);
CREATE INDEX IF NOT EXISTS entries_key ON entries (terminal_id, stan, transmission, mti_class);
DROP INDEX IF EXISTS entries_batch;
CREATE INDEX IF NOT EXISTS entries_in_batch ON entries (terminal_id, batch) WHERE batch IS NOT NULL;
"""
_ADDED_COLUMNS = (("notes", "TEXT"),)
"""Columns added after the first release: `upgrade` adds them to older journals."""


def upgrade(conn: sqlite3.Connection) -> None:
    """Add the columns an older journal lacks (existing rows get NULL)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
    for name, kind in _ADDED_COLUMNS:
        if name not in have:
            conn.execute(f"ALTER TABLE entries ADD COLUMN {name} {kind}")


_INSERT_HEAD = (
    "INSERT INTO entries (id, received_at, terminal_id, stan, transmission, mti, mti_class, "
    "processing_code, amount, currency, rc, auth_id, rrn, batch, pan_masked, kind, "
    "original_id, reversed, reversed_by, request, response, notes) VALUES "
)
_ROW_PARAMS = "(" + ",".join("?" * 22) + ")"
INSERT = _INSERT_HEAD + _ROW_PARAMS
CHUNK = 64
"""Rows per multi-row INSERT: one statement (one sqlite3 call, one GIL hand-over) per chunk."""
_INSERTS = [""] + [_INSERT_HEAD + ",".join([_ROW_PARAMS] * n) for n in range(1, CHUNK + 1)]
_REVERSE = "UPDATE entries SET reversed = 1, reversed_by = ? WHERE id = ?"
CHECKPOINT_PERIOD = 0.5
"""Seconds between WAL checkpoints, made by their own thread and connection."""
STOP = object()
"""Queue sentinel: commit what is queued, then end the thread."""


@dataclass
class Op:
    """One queued append: the entry, its row, the future to settle and where."""

    entry: Any
    row: tuple[Any, ...]
    future: asyncio.Future[int] | concurrent.futures.Future[int]
    loop: asyncio.AbstractEventLoop | None
    reverses: int | None = None
    error: str | None = None


def connect(path: Any) -> sqlite3.Connection:
    """A journal connection: autocommit mode (explicit BEGIN), WAL, synchronous=FULL."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=CHUNK + 64
    )
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


class GroupCommitWriter:
    """The writer thread; `settle(ops, notify)` is the journal's bookkeeping after a commit."""

    def __init__(
        self,
        path: Any,
        settle: Callable[[Iterable[Op], bool], None],
        stats: dict[str, int],
        *,
        group_window: float,
        max_batch: int,
        stalls: Any = None,
    ) -> None:
        self.path = path
        self.stalls = stalls
        self.settle = settle
        self.stats = stats
        self.group_window = group_window
        self.max_batch = max_batch
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        """Start the thread; raises (the journal's error) when it cannot open the database."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="journal-writer", daemon=True
        )
        self._thread.start()
        ready.result()
        self._stopping.clear()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="journal-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        """WAL checkpoints off the commit path: the writer never stalls a batch to copy pages."""
        try:
            conn = connect(self.path)
        except sqlite3.Error:
            return
        try:
            while not self._stopping.wait(CHECKPOINT_PERIOD):
                t0 = time.perf_counter()
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                if self.stalls is not None:
                    self.stalls.record("checkpoint", (time.perf_counter() - t0) * 1e3)
        finally:
            conn.close()

    def stop(self) -> None:
        """Commit everything queued, then end the thread."""
        self.queue.put(STOP)
        if self._thread is not None:
            self._thread.join()
        self._thread = None
        self._stopping.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        self._checkpointer = None

    def put(self, op: Op) -> None:
        self.queue.put(op)

    def put_many(self, ops: list[Op]) -> None:
        """Queue several ops as one item: one wake-up of the thread for all of them."""
        self.queue.put(ops)

    def _collect(self) -> list[Any]:
        """What is queued (up to about `max_batch` ops, waiting `group_window` for more); STOP,
        if it came, is last."""
        batch: list[Any] = []
        item = self.queue.get()
        deadline = time.monotonic() + self.group_window
        while True:
            if type(item) is list:
                batch += item
            else:
                batch.append(item)
                if item is STOP:
                    break
            if len(batch) >= self.max_batch:
                break
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self.queue.get(timeout=remaining)
                except queue.Empty:
                    break
        return batch

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        from rig.host.journal import JournalError

        try:
            conn = connect(self.path)
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error as e:
            ready.set_exception(JournalError(f"journal writer cannot open {self.path}: {e}"))
            return
        ready.set_result(None)
        stop = False
        while not stop:
            batch = self._collect()
            if batch[-1] is STOP:
                stop = True
                batch.pop()
            if batch:
                self._commit(conn, batch)
        conn.close()

    @staticmethod
    def _write(conn: sqlite3.Connection, ops: list[Op]) -> None:
        plain = all(op.reverses is None for op in ops)
        if plain and len(ops) <= CHUNK:
            # One statement is one transaction in autocommit mode: a single sqlite3 call, so
            # the thread takes the GIL back once, not once per row as executemany does.
            conn.execute(_INSERTS[len(ops)], [v for op in ops for v in op.row])
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            if plain:
                for i in range(0, len(ops), CHUNK):
                    chunk = ops[i : i + CHUNK]
                    conn.execute(_INSERTS[len(chunk)], [v for op in chunk for v in op.row])
            else:
                for op in ops:
                    conn.execute(INSERT, op.row)
                    if op.reverses is not None:
                        conn.execute(_REVERSE, (op.entry.id, op.reverses))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _commit(self, conn: sqlite3.Connection, ops: list[Op]) -> None:
        t0 = time.perf_counter()
        try:
            self._write(conn, ops)
            self.stats["commits"] += 1
        except sqlite3.Error:
            for op in ops:
                try:
                    self._write(conn, [op])
                    self.stats["commits"] += 1
                except sqlite3.Error as e:
                    op.error = f"journal commit failed for entry {op.entry.id}: {e}"
                    self.stats["failed"] += 1
        if self.stalls is not None:
            self.stalls.record("commit", (time.perf_counter() - t0) * 1e3)
        self.stats["rows"] += sum(op.error is None for op in ops)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(ops))
        by_loop: dict[asyncio.AbstractEventLoop | None, list[Op]] = {}
        for op in ops:
            by_loop.setdefault(op.loop, []).append(op)
        for loop, group in by_loop.items():
            if loop is None:
                self.settle(group, True)
                continue
            try:
                loop.call_soon_threadsafe(self.settle, group, True)
            except RuntimeError:  # the appender's loop is gone; nobody waits for these
                self.settle(group, False)
