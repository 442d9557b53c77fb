"""What an EMV card remembers between sessions: counters, PIN, blocking, script results, log.

`CardState` is plain data saved as JSON at a path after every change (an atomic replace), so a
card served again later (another `rig card serve`, another test) continues where it stopped.
Without a path it lives in memory only. The file holds the card's TEST PIN when an issuer script
changed it (test material, like the profile it comes from); never a key.

File layout (version 1):
`{"version": 1, "profile": id, "pin_try_counter": n, "pin": "1234" | null,
"card_blocked": bool, "apps": {AID hex: AppState fields}}`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rig.card.state_file import CardStateError, read_state, write_state
from rig.profiles.model import CardProfile

__all__ = ["AppState", "CardState", "CardStateError", "Session", "log_record"]

VERSION = 1
_FIX = "delete it to start from the profile"
LOG_RECORDS = 10


@dataclass
class AppState:
    """Per-application counters (EMV keeps the ATC and its risk counters per application)."""

    atc: int = 0
    last_online_atc: int = 0
    blocked: bool = False
    script_counter: int = 0
    script_failed: bool = False
    offline_count: int = 0
    online_pending: bool = False
    issuer_auth_failed: bool = False
    data: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def add_log(self, record: bytes) -> None:
        """Put a transaction log record first (newest first), keeping LOG_RECORDS."""
        self.log = [record.hex().upper(), *self.log][:LOG_RECORDS]


_INT_FIELDS = {"atc": 0xFFFF, "last_online_atc": 0xFFFF, "script_counter": 0xFFFF}
_INT_FIELDS |= {"offline_count": 0xFFFF}


def _app_from_json(raw: object, where: str) -> AppState:
    if not isinstance(raw, dict):
        raise CardStateError(f"{where}: must be a mapping of the application's counters")
    known = {f.name for f in fields(AppState)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise CardStateError(f"{where}: unknown keys {unknown}; valid keys are {sorted(known)}")
    app = AppState()
    for name, value in raw.items():
        default = getattr(app, name)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            limit = _INT_FIELDS[name]
            ok = type(value) is int and 0 <= value <= limit
        elif isinstance(default, dict):
            ok = isinstance(value, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            )
        else:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if not ok:
            raise CardStateError(
                f"{where}.{name}: {value!r} has the wrong type; delete the file to start afresh"
            )
        setattr(app, name, value)
    return app


@dataclass
class CardState:
    """The card's persistent state; `save()` writes it when a path is set."""

    profile_id: str
    pin_try_counter: int
    pin: str | None = None
    card_blocked: bool = False
    apps: dict[str, AppState] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def fresh(cls, profile: CardProfile, path: str | Path | None = None) -> CardState:
        """The state a newly personalised card starts with (profile `risk` section)."""
        risk = profile.risk
        apps = {
            a.aid: AppState(atc=risk.atc, blocked=risk.application_blocked)
            for a in profile.applications
        }
        return cls(
            profile.id,
            risk.pin_try_counter,
            risk.pin,
            False,
            apps,
            Path(path) if path is not None else None,
        )

    @classmethod
    def load(cls, path: str | Path, profile: CardProfile) -> CardState:
        """Read the state at `path`, or a fresh one (saved there on its first change)."""
        p = Path(path)
        raw = read_state(p, "card state", profile_id=profile.id, version=VERSION, fix=_FIX)
        return cls.fresh(profile, p) if raw is None else cls._from_json(raw, profile, p)

    @classmethod
    def _from_json(cls, raw: dict[str, Any], profile: CardProfile, p: Path) -> CardState:
        ptc = raw.get("pin_try_counter")
        if type(ptc) is not int or not 0 <= ptc <= profile.risk.pin_try_limit:
            raise CardStateError(
                f"{p}: pin_try_counter: {ptc!r} must be 0..{profile.risk.pin_try_limit}"
            )
        pin = raw.get("pin")
        if pin is not None and not (
            isinstance(pin, str) and pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12
        ):
            raise CardStateError(f"{p}: pin: must be null or 4 to 12 digits")
        blocked = raw.get("card_blocked", False)
        if not isinstance(blocked, bool):
            raise CardStateError(f"{p}: card_blocked: must be true or false")
        state = cls.fresh(profile, p)
        state.pin_try_counter, state.pin, state.card_blocked = ptc, pin, blocked
        apps = raw.get("apps", {})
        if not isinstance(apps, dict):
            raise CardStateError(f"{p}: apps: must be a mapping AID -> counters")
        for aid, app in apps.items():
            if aid in state.apps:
                state.apps[aid] = _app_from_json(app, f"{p}: apps.{aid}")
        return state

    def app(self, aid: str) -> AppState:
        """The state of one application (created on first use)."""
        return self.apps.setdefault(aid, AppState())

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "profile": self.profile_id,
            "pin_try_counter": self.pin_try_counter,
            "pin": self.pin,
            "card_blocked": self.card_blocked,
            "apps": {aid: asdict(app) for aid, app in self.apps.items()},
        }

    def save(self) -> None:
        """Write the state to its path (no-op in memory); atomic and durable."""
        if self.path is None:
            return
        write_state(self.path, self.to_json(), "card state")


@dataclass
class Session:
    """Volatile transaction data, forgotten at SELECT and reset."""

    gpo_done: bool = False
    pdol_data: bytes = b""
    cdol1_data: bytes = b""
    terminal: dict[int, bytes] = field(default_factory=dict)
    generated: int = 0
    arqc: bytes | None = None
    first_cryptogram: bytes | None = None
    first_ac: int | None = None
    second_ac: int | None = None
    issuer_auth: bool | None = None
    pin_performed: bool = False
    pin_failed: bool = False
    pin_ok: bool = False
    enciphered: bool = False
    dda: bool = False
    cda_first: bool = False
    cda_second: bool = False
    scripts: int = 0
    last_online_not_completed: bool = False
    issuer_auth_failed_last: bool = False
    script_failed_last: bool = False


def log_record(terminal: dict[int, bytes], atc: int, cid: int) -> bytes:
    """A transaction log record in the 9F4F order: amount, currency, date, type, ATC, CID."""
    out = b""
    for tag, size in ((0x9F02, 6), (0x5F2A, 2), (0x9A, 3), (0x9C, 1)):
        out += terminal.get(tag, bytes(size))[:size].rjust(size, b"\x00")
    return out + atc.to_bytes(2, "big") + bytes((cid,))
