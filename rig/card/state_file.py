"""The file side of a card's saved state (EMV and purse cards alike): read the JSON, check that
it is this profile's and this version's, and write it atomically (temporary file, fsync,
replace) so neither a kill nor a power cut leaves half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["CardStateError", "read_state", "write_state"]


class CardStateError(ValueError):
    """A card state file that cannot be used; the message names the file, the key and the fix."""


def read_state(path: Path, what: str, *, profile_id: str, version: int, fix: str) -> Any:
    """The saved mapping at `path` after the version and profile checks; None when absent.

    Raises `CardStateError` naming the file, the key and `fix`.
    """
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CardStateError(f"{path}: cannot read ({exc.strerror}); check it") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CardStateError(f"{path}: not a JSON {what} ({exc}); {fix}") from None
    if not isinstance(raw, dict) or raw.get("version") != version:
        got = raw.get("version") if isinstance(raw, dict) else raw
        raise CardStateError(f"{path}: version: {got!r}, expected {version}; {fix}")
    if raw.get("profile") != profile_id:
        raise CardStateError(
            f"{path}: profile: the state belongs to {raw.get('profile')!r}, not {profile_id!r}; "
            "give each profile its own state file (or delete this one)"
        )
    return raw


def write_state(path: Path, data: dict[str, Any], what: str) -> None:
    """Write `data` as JSON to `path` atomically and durably."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=1))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise CardStateError(f"{path}: cannot save the {what} ({exc.strerror})") from None
