"""APDU trace decoding for the card host: command names, status word meanings and TLV trees.

The card host records every APDU with `Transcript.record(...)`; decoding costs nothing on the
APDU path because the decoded form is a `LazyDecoded` dict that only runs its decoder when the
transcript's background writer redacts it (`redact_value` reads `.items()`); decoded forms are
memoised per distinct APDU (shared dicts: read-only). Redaction (PAN
first 6 / last 4, track 2 dropped) is the transcript's; VERIFY and PIN-change commands are
recorded `sensitive` so their PIN blocks never reach evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from drivers.iso7816 import describe_command, sw_meaning
from rig.card import purse_app
from rig.emv.dictionary import describe, lookup
from rig.emv.tlv import TlvError, decode

SENSITIVE_INS = frozenset({0x20, 0x21, 0x24, 0x2C})
"""VERIFY, CHANGE REFERENCE DATA (PIN change), RESET RETRY COUNTER (PIN unblock): PIN inside."""
TLV_INS = frozenset({0xA4, 0xA8, 0xAE, 0xB2, 0xCA, 0xCB, 0x88, 0xC0})
"""Commands whose answer is BER-TLV (SELECT FCI, GPO, GENERATE AC, records, GET DATA, DDA)."""
PPSE = b"2PAY.SYS.DDF01"
PSE = b"1PAY.SYS.DDF01"

EMV_NAMES: dict[tuple[int, int], str] = {
    (0x80, 0xA8): "GET PROCESSING OPTIONS",
    (0x80, 0xAE): "GENERATE AC",
    (0x80, 0xCA): "GET DATA",
    (0x00, 0x88): "INTERNAL AUTHENTICATE",
    (0x00, 0x82): "EXTERNAL AUTHENTICATE",
    (0x00, 0x84): "GET CHALLENGE",
    (0x84, 0x24): "PIN CHANGE/UNBLOCK",
    (0x84, 0x1E): "APPLICATION BLOCK",
    (0x84, 0x18): "APPLICATION UNBLOCK",
    (0x84, 0x16): "CARD BLOCK",
    (0x04, 0xDA): "PUT DATA",
    (0x84, 0xDA): "PUT DATA",
}
"""(CLA, INS) -> EMV command name (EMV Book 3 §6.5 and issuer script commands)."""
_REQUESTED = {0x00: "AAC", 0x40: "TC", 0x80: "ARQC", 0xC0: "RFU"}


class LazyDecoded(dict):  # type: ignore[type-arg]
    """A dict filled by `fn(*args)` the first time it is read (by the transcript writer)."""

    __slots__ = ("_args", "_fn")

    def __init__(self, fn: Callable[..., dict[str, Any]], *args: Any) -> None:
        super().__init__()
        self._fn: Callable[..., dict[str, Any]] | None = fn
        self._args = args

    def _fill(self) -> None:
        fn = self._fn
        if fn is not None:
            self._fn = None
            try:
                dict.update(self, fn(*self._args))
            except Exception as exc:
                dict.update(self, {"decode_error": repr(exc)})

    def items(self):  # type: ignore[no-untyped-def,override]
        self._fill()
        return dict.items(self)

    def keys(self):  # type: ignore[no-untyped-def,override]
        self._fill()
        return dict.keys(self)

    def __iter__(self) -> Iterator[Any]:
        self._fill()
        return dict.__iter__(self)

    def __getitem__(self, key: Any) -> Any:
        self._fill()
        return dict.__getitem__(self, key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._fill()
        return dict.get(self, key, default)

    def __len__(self) -> int:
        self._fill()
        return dict.__len__(self)

    def __eq__(self, other: object) -> bool:
        self._fill()
        return dict.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        self._fill()
        return dict.__repr__(self)


def command_name(apdu: bytes) -> str:
    """The most specific name of a command: EMV or purse name, else the ISO 7816-4 one."""
    if len(apdu) < 4:
        return "MALFORMED"
    cla, ins = apdu[0], apdu[1]
    if cla == 0x80 and ins in (0x50, 0x52, 0x54, 0x5A, 0x5C):
        return purse_app.command_name(apdu)
    name = EMV_NAMES.get((cla, ins))
    if name is not None:
        return name
    if ins in (0x20, 0x21):
        return {0x80: "VERIFY (plaintext PIN)", 0x88: "VERIFY (enciphered PIN)"}.get(
            apdu[3], "VERIFY"
        )
    return describe_command(apdu)["ins"] or "MALFORMED"


@lru_cache(maxsize=4096)
def decode_command(apdu: bytes) -> dict[str, Any]:
    """Decoded command: {"ins", "command", and the parameters that matter for that command}."""
    out: dict[str, Any] = dict(describe_command(apdu))
    if len(apdu) < 4:
        return out
    out["command"] = command_name(apdu)
    cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
    data = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
    if ins == 0xA4 and p1 == 0x04:
        out["aid"] = data.hex().upper()
        if data in (PPSE, PSE):
            out["name"] = "PPSE" if data == PPSE else "PSE"
    elif ins == 0xB2:
        out["record"] = p1
        if p2 & 0x07 == 0x04:
            out["sfi"] = p2 >> 3
    elif ins in (0xCA, 0xCB) and cla & 0xF0 == 0x80:
        tag = (p1 << 8) | p2
        info = lookup(tag) or lookup(p2)
        out["tag"] = f"{tag:04X}" if p1 else f"{p2:02X}"
        out["tag_name"] = info.name if info else "unknown"
    elif ins == 0xAE:
        out["requested"] = _REQUESTED[p1 & 0xC0]
        out["cda"] = bool(p1 & 0x10)
    elif ins == 0xA8 and data[:1] == b"\x83":
        out["pdol_data_length"] = len(data) - 2
    return out


@lru_cache(maxsize=4096)
def decode_response(apdu: bytes, resp: bytes) -> dict[str, Any]:
    """Decoded response: {"sw", "meaning"} and, for TLV answers, {"tlv": [...]} (PAN masked)."""
    sw = (resp[-2] << 8) | resp[-1] if len(resp) >= 2 else -1
    if sw < 0:
        return {"sw": None, "meaning": "no status word"}
    meaning = sw_meaning(sw)
    if meaning in ("error", "application-specific status", "unknown status word"):
        meaning = purse_app.STATUS_MEANINGS.get(sw, meaning)
    out: dict[str, Any] = {"sw": f"{sw:04X}", "meaning": meaning}
    data = resp[:-2]
    if data and len(apdu) >= 2 and apdu[1] in TLV_INS and data[0] not in (0x00, 0xFF):
        try:
            out["tlv"] = describe(decode(data))
        except TlvError as exc:
            out["tlv_error"] = str(exc)
    return out


def command_entry(apdu: bytes) -> LazyDecoded:
    """The decoded form the card host records for a command APDU (decoded when written)."""
    return LazyDecoded(decode_command, apdu)


def response_entry(apdu: bytes, resp: bytes) -> LazyDecoded:
    """The decoded form the card host records for a response APDU (decoded when written)."""
    return LazyDecoded(decode_response, apdu, resp)


def is_sensitive(apdu: bytes) -> bool:
    """True for commands carrying a PIN (recorded as a length only)."""
    return len(apdu) > 1 and apdu[1] in SENSITIVE_INS
