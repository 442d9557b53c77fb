"""What a purse card remembers between serves: balance, counters, log, PIN tries, last proof.

`PurseState` is plain data saved as JSON at a path after every state-changing command (an atomic
replace), so a purse served again later continues where it stopped, as a real card's EEPROM
would. Never written: keys, session keys, a started but unfinished load or purchase (a torn
transaction is abandoned, like a real card losing power), the PIN (it comes from the profile).

File layout (version 1):
`{"version": 1, "profile": id, "balance": n, "online_counter": n, "offline_counter": n,
"pin_tries_left": n, "log": [record, ...], "proof": proof | null}` where the log is newest
first (READ RECORD order, at most LOG_RECORDS), a record is `{"counter": n, "amount": n,
"type": 2 | 6, "terminal_id": hex 6, "date": hex 4, "time": hex 3}` and the proof (GET
TRANSACTION PROVE) is `{"type": 2 | 6, "counter": n, "mac": hex 4, "tac": hex 4}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.card.purse_app import LOG_RECORDS, PurseCardApplication, TransactionProof
from rig.card.state_file import CardStateError, read_state, write_state
from rig.prepaid.purse import TYPE_LOAD, TYPE_PURCHASE, PurseRecord
from rig.profiles.model import CardProfile

__all__ = ["CardStateError", "PurseState", "persist"]

VERSION = 1
_FIX = "delete the file to start from the profile"
_KEYS = ("version", "profile", "balance", "online_counter", "offline_counter")
_KEYS += ("pin_tries_left", "log", "proof")
_RECORD_KEYS = ("counter", "amount", "type", "terminal_id", "date", "time")
_PROOF_KEYS = ("type", "counter", "mac", "tac")


@dataclass
class PurseState:
    """The purse card's persistent state; `save()` writes it when a path is set."""

    profile_id: str
    balance: int
    online_counter: int
    offline_counter: int
    pin_tries_left: int
    log: list[PurseRecord] = field(default_factory=list)
    proof: TransactionProof | None = None
    path: Path | None = None

    @classmethod
    def fresh(cls, profile: CardProfile, path: str | Path | None = None) -> PurseState:
        """The state a newly personalised purse starts with (profile `purse` and `risk`)."""
        section = _section(profile)
        return cls(
            profile.id,
            section.initial_balance,
            section.online_counter,
            section.offline_counter,
            profile.risk.pin_try_limit,
            path=Path(path) if path is not None else None,
        )

    @classmethod
    def load(cls, path: str | Path, profile: CardProfile) -> PurseState:
        """Read the state at `path`, or a fresh one (saved there on its first change)."""
        p = Path(path)
        raw = read_state(p, "purse state", profile_id=profile.id, version=VERSION, fix=_FIX)
        return cls.fresh(profile, p) if raw is None else cls._from_json(raw, profile, p)

    @classmethod
    def _from_json(cls, raw: dict[str, Any], profile: CardProfile, p: Path) -> PurseState:
        unknown = sorted(set(raw) - set(_KEYS))
        if unknown:
            raise CardStateError(
                f"{p}: unknown keys {unknown}; valid keys are {list(_KEYS)}; {_FIX}"
            )
        section = _section(profile)
        limit = profile.risk.pin_try_limit
        state = cls(
            profile.id,
            _int(raw, "balance", section.max_balance, f"{p}: "),
            _int(raw, "online_counter", 0xFFFF, f"{p}: "),
            _int(raw, "offline_counter", 0xFFFF, f"{p}: "),
            _int(raw, "pin_tries_left", limit, f"{p}: "),
            path=p,
        )
        log = raw.get("log")
        if not isinstance(log, list) or len(log) > LOG_RECORDS:
            raise CardStateError(f"{p}: log: must be a list of at most {LOG_RECORDS}; {_FIX}")
        state.log = [_record(r, f"{p}: log[{i}]") for i, r in reversed(list(enumerate(log)))]
        proof = raw.get("proof")
        state.proof = None if proof is None else _proof(proof, f"{p}: proof")
        return state

    @classmethod
    def of(cls, app: PurseCardApplication, profile_id: str, path: Path | None) -> PurseState:
        """The persistent part of a running purse card (its newest LOG_RECORDS log entries)."""
        purse = app.purse
        return cls(
            profile_id,
            purse.balance,
            purse.online_counter,
            purse.offline_counter,
            app.pin_tries_left,
            list(purse.log[-LOG_RECORDS:]),
            app.last_proof,
            path,
        )

    def restore(self, app: PurseCardApplication) -> None:
        """Put this state into a freshly built purse card (nothing pending, PIN not verified)."""
        purse = app.purse
        purse.abandon()
        purse.balance = self.balance
        purse.online_counter = self.online_counter
        purse.offline_counter = self.offline_counter
        purse.log = list(self.log)
        app.pin_tries_left = self.pin_tries_left
        app.last_proof = self.proof

    def to_json(self) -> dict[str, Any]:
        """The file content (log newest first, as READ RECORD numbers it)."""
        proof = self.proof
        return {
            "version": VERSION,
            "profile": self.profile_id,
            "balance": self.balance,
            "online_counter": self.online_counter,
            "offline_counter": self.offline_counter,
            "pin_tries_left": self.pin_tries_left,
            "log": [
                {
                    "counter": r.counter,
                    "amount": r.amount,
                    "type": r.kind,
                    "terminal_id": r.terminal_id.hex().upper(),
                    "date": r.date.hex().upper(),
                    "time": r.time.hex().upper(),
                }
                for r in reversed(self.log)
            ],
            "proof": None
            if proof is None
            else {
                "type": proof.kind,
                "counter": proof.counter,
                "mac": proof.mac.hex().upper(),
                "tac": proof.tac.hex().upper(),
            },
        }

    def save(self) -> None:
        """Write the state to its path (no-op in memory): temp file, fsync, atomic replace."""
        if self.path is None:
            return
        write_state(self.path, self.to_json(), "purse state")


def persist(app: PurseCardApplication, profile: CardProfile, path: str | Path) -> PurseState:
    """Load the state at `path` into `app` and save it there after every change of the card."""
    state = PurseState.load(path, profile)
    state.restore(app)
    target = state.path

    def save() -> None:
        PurseState.of(app, profile.id, target).save()

    app.on_change = save
    return state


def _section(profile: CardProfile) -> Any:
    if profile.purse is None:
        raise CardStateError(f"profile {profile.id}: kind purse needs a purse section")
    return profile.purse


def _int(raw: dict[str, Any], key: str, limit: int, where: str) -> int:
    value = raw.get(key)
    if type(value) is not int or not 0 <= value <= limit:
        raise CardStateError(f"{where}{key}: {value!r} must be an integer 0..{limit}; {_FIX}")
    return value


def _hex(raw: dict[str, Any], key: str, size: int, where: str) -> bytes:
    value = raw.get(key)
    try:
        data = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        data = None
    if data is None or len(data) != size:
        raise CardStateError(f"{where}.{key}: {value!r} must be {size} bytes in hex; {_FIX}")
    return data


def _kind(raw: dict[str, Any], where: str) -> int:
    kind = raw.get("type")
    if type(kind) is not int or kind not in (TYPE_LOAD, TYPE_PURCHASE):
        raise CardStateError(f"{where}.type: {kind!r} must be 2 (load) or 6 (purchase); {_FIX}")
    return kind


def _fields(raw: Any, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or set(raw) != set(keys):
        raise CardStateError(f"{where}: must be a mapping with the keys {list(keys)}; {_FIX}")
    return raw


def _record(raw: Any, where: str) -> PurseRecord:
    r = _fields(raw, _RECORD_KEYS, where)
    return PurseRecord(
        _int(r, "counter", 0xFFFF, f"{where}."),
        _int(r, "amount", 0xFFFFFFFF, f"{where}."),
        _kind(r, where),
        _hex(r, "terminal_id", 6, where),
        _hex(r, "date", 4, where),
        _hex(r, "time", 3, where),
    )


def _proof(raw: Any, where: str) -> TransactionProof:
    r = _fields(raw, _PROOF_KEYS, where)
    return TransactionProof(
        _kind(r, where),
        _int(r, "counter", 0xFFFF, f"{where}."),
        _hex(r, "mac", 4, where),
        _hex(r, "tac", 4, where),
    )
