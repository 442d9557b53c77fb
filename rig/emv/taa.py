"""Terminal action analysis (EMV 4.3 Book 3 §10.7): TVR against action codes -> AAC, ARQC or TC."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rig.emv import bits

TVR_LEN = 5
_ZEROS = bytes(TVR_LEN)
_ONES = b"\xff" * TVR_LEN


class TaaError(ValueError):
    """An action code or TVR of the wrong length: names which one."""


class Decision(StrEnum):
    AAC = "AAC"
    ARQC = "ARQC"
    TC = "TC"


@dataclass(frozen=True)
class ActionCodes:
    """Denial / online / default codes (terminal's TAC or the card's IAC 9F0E/9F0F/9F0D)."""

    denial: bytes | None = None
    online: bytes | None = None
    default: bytes | None = None


@dataclass(frozen=True)
class TaaResult:
    decision: Decision
    step: str
    matched: tuple[str, ...]


def _code(value: bytes | None, absent: bytes, what: str) -> bytes:
    if value is None:
        return absent
    if len(value) != TVR_LEN:
        raise TaaError(f"{what} must be {TVR_LEN} bytes, got {len(value)} ({bytes(value).hex()})")
    return bytes(value)


def _match(tvr: bytes, tac: bytes, iac: bytes) -> tuple[str, ...]:
    hit = bytes(t & (a | b) for t, a, b in zip(tvr, tac, iac, strict=True))
    return tuple(bits.decode(0x95, hit))


def default_action(tvr: bytes, tac: ActionCodes, iac: ActionCodes | None = None) -> TaaResult:
    """The default check alone: offline-only terminals, or online ones that could not connect."""
    tvr = _code(tvr, _ZEROS, "TVR")
    iac = iac or ActionCodes()
    matched = _match(
        tvr,
        _code(tac.default, _ZEROS, "TAC-Default"),
        _code(iac.default, _ONES, "IAC-Default"),
    )
    return TaaResult(Decision.AAC if matched else Decision.TC, "default", matched)


def terminal_action_analysis(
    tvr: bytes,
    tac: ActionCodes,
    iac: ActionCodes | None = None,
    *,
    online_capable: bool = True,
    unable_to_go_online: bool = False,
) -> TaaResult:
    """Decide the first GENERATE AC request. Absent IACs: denial all 0, online/default all 1."""
    tvr = _code(tvr, _ZEROS, "TVR")
    iac = iac or ActionCodes()
    denied = _match(
        tvr, _code(tac.denial, _ZEROS, "TAC-Denial"), _code(iac.denial, _ZEROS, "IAC-Denial")
    )
    if denied:
        return TaaResult(Decision.AAC, "denial", denied)
    if online_capable and not unable_to_go_online:
        online = _match(
            tvr, _code(tac.online, _ZEROS, "TAC-Online"), _code(iac.online, _ONES, "IAC-Online")
        )
        if online:
            return TaaResult(Decision.ARQC, "online", online)
        return TaaResult(Decision.TC, "online", ())
    return default_action(tvr, tac, iac)
