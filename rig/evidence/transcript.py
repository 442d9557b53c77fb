"""Per-instrument transcript: time, direction, raw bytes and decoded form of every exchange.

Drivers call `record()` on every send and receive, and also when an exchange fails. Recording
only appends to a buffer (it must cost well under a microsecond on an APDU path); a background
writer redacts the entries and writes them as JSON lines every `WRITER_PERIOD` seconds, and
`flush()`, `close()` and interpreter exit write what is left. A SIGKILL loses at most the last
period's entries.
"""

from __future__ import annotations

import atexit
import json
import threading
import time
import weakref
from enum import StrEnum
from pathlib import Path
from typing import Any

from rig.evidence.redact import DROPPED, redact_bytes, redact_text, redact_value


class Direction(StrEnum):
    """Which way an entry crossed the interface, seen from the rig."""

    TX = "tx"
    RX = "rx"
    EVENT = "event"


_open: weakref.WeakSet[Transcript] = weakref.WeakSet()
_writer_lock = threading.Lock()
_writer: threading.Thread | None = None
WRITER_PERIOD = 0.2
"""Seconds between background flushes: redaction and JSON run off the driver's hot path."""
RENDER_SLICE = 16
"""Entries rendered between GIL releases, so a driver waiting on the GIL waits ~0.3 ms, not 5 ms."""


def _writer_loop() -> None:
    while True:
        time.sleep(WRITER_PERIOD)
        for transcript in list(_open):
            transcript.flush()


def _ensure_writer() -> None:
    global _writer
    with _writer_lock:
        if _writer is None or not _writer.is_alive():
            _writer = threading.Thread(target=_writer_loop, name="transcript-writer", daemon=True)
            _writer.start()


@atexit.register
def _flush_all() -> None:
    for transcript in list(_open):
        transcript.close()


class Transcript:
    """Append-only JSON-lines record of one instrument's interface, redacted when written."""

    def __init__(
        self,
        path: Path | str | None,
        instrument: str,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.instrument = instrument
        self._instrument_json = _dumps(instrument)
        self._buffer: list[tuple[float, str, bytes | None, Any, str | None, bool]] = []
        self._lock = threading.Lock()
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
            _open.add(self)
            _ensure_writer()

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def record(
        self,
        direction: Direction,
        raw: bytes | None = None,
        decoded: Any = None,
        *,
        error: str | None = None,
        sensitive: bool = False,
    ) -> None:
        """Note one crossing; `sensitive=True` keeps only the length of `raw` (PIN blocks, keys)."""
        if self._file is None:
            return
        self._buffer.append((time.time(), direction, raw, decoded, error, sensitive))

    def flush(self) -> None:
        """Redact and write every buffered entry."""
        if self._file is None:
            return
        with self._lock:
            entries, self._buffer = self._buffer, []
            if not entries or self._file is None:
                return
            lines = []
            for start in range(0, len(entries), RENDER_SLICE):
                lines.extend(self._render(*e) for e in entries[start : start + RENDER_SLICE])
                time.sleep(0)  # let a driver thread back in: its I/O returns within microseconds
            self._file.write("".join(lines))
            self._file.flush()

    def _render(
        self,
        ts: float,
        direction: Direction,
        raw: bytes | None,
        decoded: Any,
        error: str | None,
        sensitive: bool,
    ) -> str:
        parts = [f'{{"t": {ts:.6f}, "instrument": {self._instrument_json}, "dir": "{direction}"']
        if raw is not None:
            shown = f"{DROPPED} {len(raw)} bytes" if sensitive else redact_bytes(raw)
            parts.append(f', "len": {len(raw)}, "raw": "{shown}"')
        if decoded is not None:
            parts.append(', "decoded": ' + _dumps(redact_value(decoded)))
        if error is not None:
            parts.append(', "error": ' + _dumps(redact_text(error)))
        parts.append("}\n")
        return "".join(parts)

    def close(self) -> None:
        """Flush and close the file; later records are ignored."""
        if self._file is None:
            return
        self.flush()
        with self._lock:
            self._file.close()
            self._file = None
        _open.discard(self)

    def __enter__(self) -> Transcript:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def null_transcript(instrument: str = "") -> Transcript:
    """A transcript that records nothing, for drivers used outside a run."""
    return Transcript(None, instrument)


def read_transcript(path: Path | str) -> list[dict[str, Any]]:
    """Load a transcript file back as a list of entries (for reports and tests)."""
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
