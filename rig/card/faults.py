"""Run-time card faults as a wrapper around any `CardApplication`, and the T=0 transport layer.

`FaultyCard(app)` answers like `app` until a fault is armed (by the simulator's control port or a
profile's `faults` section):

- delay: every command (or only commands with one INS) is answered after `ms` milliseconds;
  `once` limits it to the next such command.
- sw: commands with INS `ins` are answered with status word `sw` and no data, without reaching
  the application (its state does not change); `once` limits it to the next such command.
- corrupt_cryptogram: the next answer holding an application cryptogram (GENERATE AC, or a
  contactless GPO that returns one) has one byte of 9F26 flipped (the last byte, XOR 0x01); a
  format 1 answer (tag 80) has the cryptogram at its fixed place; a CDA answer without 9F26 in
  the clear has the last byte of its signed dynamic data 9F4B flipped instead.
- remove_at: during the `n`th command from now (1 = the next) the card leaves the reader: the
  `remove` hook runs and the command gets no answer.
Mute is not a wrapper fault: the card host holds the command at the vpcd link (`CardSlot.mute`).

`T0Transport(app)` is what the card host puts outermost: it applies the T=0 case rules a real
T=0 card follows, whichever protocol the reader chose (vpcd does not tell the card):
- a command without Le whose answer carries data (case 4 sent as case 3, as T=0 readers do) is
  answered `61 xx` and the data waits for GET RESPONSE;
- a command with Le shorter than the data: case 2 (no command data) answers `6C xx` (xx = the
  exact length) so the reader re-issues it; case 4 answers `61 xx`;
- GET RESPONSE (INS C0) hands the waiting data out in pieces of at most Le, each ending `61 xx`
  until the last ends with the application's status word; Le larger than the rest answers the
  rest. Any other command discards waiting data. GET RESPONSE with nothing waiting goes to the
  application.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.iso7816 import INS_NAMES
from rig.card.application import CardApplication

FAULT_KINDS = ("delay", "sw", "corrupt_cryptogram", "remove_at")
INS_ALIASES = {
    "GENERATE AC": 0xAE,
    "GENERATE APPLICATION CRYPTOGRAM": 0xAE,
    "GPO": 0xA8,
    "GET PROCESSING OPTIONS": 0xA8,
    "READ RECORD": 0xB2,
    "GET DATA": 0xCA,
    "VERIFY": 0x20,
    "SELECT": 0xA4,
    "INTERNAL AUTHENTICATE": 0x88,
    "EXTERNAL AUTHENTICATE": 0x82,
    "GET CHALLENGE": 0x84,
    "GET RESPONSE": 0xC0,
    "PIN CHANGE UNBLOCK": 0x24,
    "APPLICATION BLOCK": 0x1E,
    "APPLICATION UNBLOCK": 0x18,
    "CARD BLOCK": 0x16,
    "PUT DATA": 0xDA,
    "INITIALIZE": 0x50,
    "CREDIT FOR LOAD": 0x52,
    "DEBIT FOR PURCHASE": 0x54,
    "GET BALANCE": 0x5C,
    "GET TRANSACTION PROVE": 0x5A,
}
"""Command names a fault may name instead of an INS byte (case and '_' / '-' folded)."""


class FaultError(ValueError):
    """A fault request with a missing or bad parameter; the message names it and the fix."""


def parse_ins(value: Any) -> int:
    """INS from an int, a hex string ("AE") or a command name ("GENERATE_AC"); FaultError else."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 0xFF:
            return value
        raise FaultError(f"ins {value}: an INS is one byte, 0 to 255")
    if not isinstance(value, str) or not value.strip():
        raise FaultError("ins: give an INS byte (0xAE, 'AE') or a command name ('GENERATE_AC')")
    text = value.strip().upper().replace("_", " ").replace("-", " ")
    if text in INS_ALIASES:
        return INS_ALIASES[text]
    for ins, name in INS_NAMES.items():
        if name == text:
            return ins
    hexpart = text[2:] if text.startswith("0X") else text
    if len(hexpart) in (1, 2) and all(c in "0123456789ABCDEF" for c in hexpart):
        return int(hexpart, 16)
    raise FaultError(f"ins {value!r}: not an INS byte in hex nor a known command name")


def parse_sw(value: Any) -> int:
    """A status word from "6985" or an int; FaultError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFF:
        sw = value
    elif isinstance(value, str) and len(value.strip()) == 4:
        try:
            sw = int(value.strip(), 16)
        except ValueError:
            raise FaultError(f"sw {value!r}: four hex digits, e.g. '6985'") from None
    else:
        raise FaultError(f"sw {value!r}: four hex digits, e.g. '6985'")
    if not (0x62 <= sw >> 8 <= 0x6F or 0x90 <= sw >> 8 <= 0x9F):
        raise FaultError(f"sw {value!r}: SW1 must be 62-6F or 90-9F")
    return sw


def _positive(params: dict[str, Any], key: str, *, maximum: int) -> int:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise FaultError(f"{key} {value!r}: give a whole number from 1 to {maximum}")
    return value


def _flag(params: dict[str, Any], key: str, default: bool) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise FaultError(f"{key} {value!r}: true or false")
    return value


@dataclass
class _Delay:
    ms: int
    ins: int | None
    once: bool


@dataclass
class _Sw:
    ins: int
    sw: int
    once: bool


def corrupt_cryptogram(resp: bytes, *, format1: bool = True) -> bytes | None:
    """`resp` (data + SW) with one byte of its cryptogram flipped; None when it carries none.

    `format1`: the answer may be a GENERATE AC format 1 (80 CID ATC AC IAD); a GPO's 80 answer
    is AIP + AFL and holds no cryptogram."""
    data = bytearray(resp[:-2])
    if format1 and len(data) >= 13 and data[0] == 0x80 and data[1] == len(data) - 2:
        data[2 + 1 + 2 + 7] ^= 0x01
        return bytes(data) + resp[-2:]
    for tag in (b"\x9f\x26", b"\x9f\x4b"):
        at = _find_primitive(data, tag)
        if at is not None:
            start, length = at
            if length:
                data[start + length - 1] ^= 0x01
                return bytes(data) + resp[-2:]
    return None


def _find_primitive(data: bytearray, tag: bytes) -> tuple[int, int] | None:
    """(value offset, length) of `tag` inside a 77 template or at top level; None if absent."""
    pos, end = 0, len(data)
    if end >= 2 and data[0] == 0x77:
        pos, end = _header(data, 1)
        if pos < 0:
            return None
        end = min(end + pos, len(data))
    while pos < end:
        t_start = pos
        pos += 1
        if data[t_start] & 0x1F == 0x1F:
            while pos < end and data[pos] & 0x80:
                pos += 1
            pos += 1
        value_at, length = _header(data, pos)
        if value_at < 0 or value_at + length > len(data):
            return None
        if bytes(data[t_start:pos]) == tag:
            return value_at, length
        pos = value_at + length
    return None


def _header(data: bytearray, pos: int) -> tuple[int, int]:
    """(value offset, length) for the BER length at `pos`; (-1, 0) when it is cut short."""
    if pos >= len(data):
        return -1, 0
    first = data[pos]
    if first < 0x80:
        return pos + 1, first
    n = first & 0x7F
    if n == 0 or n > 2 or pos + 1 + n > len(data):
        return -1, 0
    return pos + 1 + n, int.from_bytes(data[pos + 1 : pos + 1 + n], "big")


class FaultyCard:
    """A `CardApplication` wrapper injecting run-time faults (see the module docstring)."""

    def __init__(self, app: CardApplication, *, remove: Callable[[], None] | None = None) -> None:
        self.app = app
        self.atr = app.atr
        self.remove_hook = remove
        self._lock = threading.Lock()
        self._delays: list[_Delay] = []
        self._sws: list[_Sw] = []
        self._corrupt = 0
        """0: off; 1: the next cryptogram only; 2: every cryptogram (profile start-up fault)."""
        self._remove_in: int | None = None
        self.injected: dict[str, int] = {k: 0 for k in FAULT_KINDS}

    def reset(self) -> None:
        self.app.reset()

    def arm(self, kind: str, **params: Any) -> dict[str, Any]:
        """Arm one fault; returns its normalised description. FaultError on bad parameters."""
        with self._lock:
            if kind == "delay":
                ms = _positive(params, "ms", maximum=60_000)
                ins = parse_ins(params["ins"]) if params.get("ins") is not None else None
                self._delays.append(_Delay(ms, ins, _flag(params, "once", False)))
                return {"kind": kind, "ms": ms, "ins": ins, "once": self._delays[-1].once}
            if kind == "sw":
                if "ins" not in params or "sw" not in params:
                    raise FaultError("sw fault needs ins and sw, e.g. ins 'AE', sw '6985'")
                fault = _Sw(parse_ins(params["ins"]), parse_sw(params["sw"]), False)
                fault.once = _flag(params, "once", False)
                self._sws = [s for s in self._sws if s.ins != fault.ins] + [fault]
                return {"kind": kind, "ins": fault.ins, "sw": f"{fault.sw:04X}", "once": fault.once}
            if kind == "corrupt_cryptogram":
                self._corrupt = 1 if _flag(params, "once", True) else 2
                return {"kind": kind, "once": self._corrupt == 1}
            if kind == "remove_at":
                n = _positive(params, "n", maximum=100_000)
                if self.remove_hook is None:
                    raise FaultError("remove_at needs a card host that can remove the card")
                self._remove_in = n
                return {"kind": kind, "n": n}
        raise FaultError(f"unknown fault {kind!r}: use mute, {', '.join(FAULT_KINDS)}")

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._delays.clear()
            self._sws.clear()
            self._corrupt = 0
            self._remove_in = None

    def armed(self) -> dict[str, Any]:
        """The faults armed now, for the control port's status."""
        return {
            "delay": [d.__dict__ for d in self._delays],
            "sw": [{"ins": s.ins, "sw": f"{s.sw:04X}", "once": s.once} for s in self._sws],
            "corrupt_cryptogram": ("off", "once", "always")[self._corrupt],
            "remove_at": self._remove_in,
        }

    def process(self, apdu: bytes) -> bytes:
        if not (self._delays or self._sws or self._corrupt or self._remove_in is not None):
            return self.app.process(apdu)
        return self._faulty(apdu)

    def _faulty(self, apdu: bytes) -> bytes:
        ins = apdu[1] if len(apdu) > 1 else -1
        with self._lock:
            if self._remove_in is not None:
                self._remove_in -= 1
                pull = self._remove_in == 0
                if pull:
                    self._remove_in = None
            else:
                pull = False
            delay = next((d for d in self._delays if d.ins is None or d.ins == ins), None)
            if delay is not None and delay.once:
                self._delays.remove(delay)
            sw = next((s for s in self._sws if s.ins == ins), None)
            if sw is not None and sw.once:
                self._sws.remove(sw)
        if pull:
            self.injected["remove_at"] += 1
            assert self.remove_hook is not None
            self.remove_hook()
            return b""
        if delay is not None:
            self.injected["delay"] += 1
            time.sleep(delay.ms / 1000)
        if sw is not None:
            self.injected["sw"] += 1
            return bytes((sw.sw >> 8, sw.sw & 0xFF))
        resp = self.app.process(apdu)
        if self._corrupt and ins in (0xAE, 0xA8) and len(resp) > 2:
            bad = corrupt_cryptogram(resp, format1=ins == 0xAE)
            if bad is not None:
                with self._lock:
                    if self._corrupt == 1:
                        self._corrupt = 0
                self.injected["corrupt_cryptogram"] += 1
                return bad
        return resp


class T0Transport:
    """Outermost wrapper of a served card: T=0 61xx / 6Cxx rules (see the module docstring)."""

    def __init__(self, app: CardApplication) -> None:
        self.app = app
        self.atr = app.atr
        self._pending = b""
        self._pending_sw = b"\x90\x00"

    def reset(self) -> None:
        self._pending = b""
        self.app.reset()

    def process(self, apdu: bytes) -> bytes:
        n = len(apdu)
        if n >= 4 and apdu[1] == 0xC0 and self._pending:
            return self._get_response(apdu)
        self._pending = b""
        resp = self.app.process(apdu)
        size = len(resp) - 2
        if size <= 0:
            return resp
        if n == 4 or (n > 5 and n == 5 + apdu[4]):
            le = 0
        elif n == 5:
            le = apdu[4] or 256
            if size > le and size <= 256:
                return bytes((0x6C, size & 0xFF))
        else:
            le = apdu[-1] or 256
        if size <= le:
            return resp
        return self._hold(resp)

    def _hold(self, resp: bytes) -> bytes:
        self._pending, self._pending_sw = resp[:-2], resp[-2:]
        return bytes((0x61, min(len(self._pending), 256) & 0xFF))

    def _get_response(self, apdu: bytes) -> bytes:
        if len(apdu) != 5 or apdu[2] or apdu[3]:
            self._pending = b""
            return b"\x67\x00" if len(apdu) != 5 else b"\x6a\x86"
        le = apdu[4] or 256
        out, rest = self._pending[:le], self._pending[le:]
        self._pending = rest
        if rest:
            return out + bytes((0x61, min(len(rest), 256) & 0xFF))
        return out + self._pending_sw
