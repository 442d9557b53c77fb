"""The ECR message set: compact ASCII JSON objects, validated against the tables below.

A request is {"cmd": NAME, "seq": N, ...fields}; its response {"rsp": NAME, "seq": N,
"result": CODE, ...fields}. JSON because several fields are structured (key lists, parameter
sets) or binary (base64 firmware chunks, PNG screenshots) and every message is then readable in a
trace as it is; `ensure_ascii` keeps every payload byte in 0x20..0x7E, so the framing needs no
stuffing. The tables are the spec's data; docs/ecr-protocol.md explains each field. Nothing on
this link may carry a PAN in clear, a PIN or track data: such fields are refused by name, and so
is any text field holding a PAN-like run (13-19 digits, not starting with 0, Luhn-valid); a sale
answers with `masked_pan` only.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from drivers.ecr import EcrMessageError, Message

SEQ_MAX = 9999
"""Sequence numbers run 1..SEQ_MAX and wrap; a response echoes its request's number."""


class Result(StrEnum):
    """Result codes carried in every response's "result" field."""

    OK = "00"
    DECLINED = "05"
    INVALID_TRANSACTION = "12"
    FORMAT_ERROR = "30"
    UNKNOWN_COMMAND = "31"
    BUSY = "40"
    CANCELLED = "41"
    CARD_TIMEOUT = "42"
    PRINTER_PAPER_OUT = "50"
    PRINTER_COVER_OPEN = "51"
    PRINTER_NOT_RESPONDING = "52"
    FW_CHECKSUM = "60"
    FW_SEQUENCE = "61"
    FW_REJECTED = "62"
    FW_NOT_STARTED = "63"
    HOST_UNREACHABLE = "70"
    SYSTEM_ERROR = "96"


KEY_NAMES = frozenset(
    [str(d) for d in range(10)]
    + ["00", "DOT", "STAR", "HASH", "ENTER", "CANCEL", "CLEAR", "BACKSPACE", "MENU", "UP", "DOWN"]
    + ["F1", "F2", "F3", "F4", "POWER"]
)
"""Key names the test port's key_inject accepts."""

FORBIDDEN_FIELDS = frozenset(
    {"pan", "pin", "pin_block", "pinblock", "track1", "track2", "track3", "cvv", "cvc", "expiry"}
)
"""Field names that never cross the ECR link."""

_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]*")
"""Text fields: any Unicode without control characters; on the wire JSON escapes non-ASCII."""
_DIGITS = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")
_MASKED_PAN = re.compile(r"[0-9]{6}\*{3,9}[0-9]{4}")
_HEX8 = re.compile(r"[0-9A-F]{8}")
_CURRENCY = re.compile(r"[0-9]{3}")
_SIM_MODES = ("normal", "nak-storm", "lose-ack", "garble", "truncate", "silent")


def _int(lo: int, hi: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            return f"must be an integer {lo}..{hi}"
        return None

    return check


def _text(lo: int, hi: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if not isinstance(v, str) or not lo <= len(v) <= hi or not _PRINTABLE.fullmatch(v):
            return f"must be printable text (no control characters) of {lo}..{hi} characters"
        return None

    return check


def _pattern(rx: re.Pattern[str], what: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if isinstance(v, str) and rx.fullmatch(v) else f"must be {what}"

    return check


def _choice(*values: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in values else f"must be one of {', '.join(values)}"

    return check


def _b64(v: Any) -> str | None:
    if not isinstance(v, str):
        return "must be base64 text"
    try:
        base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        return "must be valid base64 (RFC 4648, with padding)"
    return None


def _keys(v: Any) -> str | None:
    if not isinstance(v, list) or not 1 <= len(v) <= 64:
        return "must be a list of 1..64 key names"
    bad = [k for k in v if not isinstance(k, str) or k not in KEY_NAMES]
    return f"unknown key names {bad!r}; use {sorted(KEY_NAMES)}" if bad else None


def _params(v: Any) -> str | None:
    if not isinstance(v, dict) or len(v) > 64:
        return "must be an object of at most 64 name: value pairs"
    for name, value in v.items():
        if _text(1, 32)(name) or (_text(0, 128)(value) and _int(0, 2**31)(value)):
            return f"parameter {name!r}: names are text, values text or integers"
    return None


_AMOUNT = _int(0, 999_999_999_999)
FIELDS: dict[str, Callable[[Any], str | None]] = {
    "amount": _AMOUNT,
    "tip": _AMOUNT,
    "total": _AMOUNT,
    "balance": _AMOUNT,
    "currency": _pattern(_CURRENCY, "an ISO 4217 numeric code such as '978'"),
    "reference": _text(1, 32),
    "original_reference": _text(1, 32),
    "masked_pan": _pattern(
        _MASKED_PAN, "a masked PAN, first 6 and last 4 digits, e.g. 476173******0010"
    ),
    "auth_code": _text(1, 6),
    "stan": _int(0, 999_999),
    "scheme": _text(1, 16),
    "entry_mode": _choice("chip", "contactless", "magstripe", "qr", "manual"),
    "count": _int(0, 999_999),
    "batch": _int(0, 999_999),
    "receipt": _choice("last", "sample"),
    "version": _text(1, 32),
    "size": _int(0, 2**31),
    "crc32": _pattern(_HEX8, "8 upper-case hex digits (CRC-32, IEEE 802.3)"),
    "chunk_size": _int(1, 2048),
    "index": _int(0, 2**20),
    "length": _int(0, 2048),
    "received": _int(0, 2**31),
    "data": _b64,
    "params": _params,
    "source": _choice("host", "inline"),
    "keys": _keys,
    "name": _text(1, 32),
    "firmware": _text(1, 32),
    "state": _text(1, 32),
    "display": _text(0, 256),
    "last_qr": _text(0, 512),
    "uptime_s": _int(0, 2**31),
    "handled": _int(0, 2**31),
    "printer": _text(1, 32),
    "png": _b64,
    "width": _int(1, 4096),
    "height": _int(1, 4096),
    "mode": _choice(*_SIM_MODES),
    "text": _text(0, 256),
}
"""Every field name and its check (returns None when valid, else what is expected)."""

BINARY_FIELDS = frozenset({"data", "png"})

_TX = ("amount", "currency", "reference")
_TX_RSP = ("masked_pan", "auth_code", "stan", "amount", "currency", "reference", "scheme")
COMMANDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    # name: (required request fields, optional request fields, response fields)
    "ping": ((), (), ("name", "firmware", "handled")),
    "status": (
        (),
        (),
        ("name", "firmware", "state", "display", "last_qr", "uptime_s", "printer", "handled"),
    ),
    "sale": (_TX, ("tip",), (*_TX_RSP, "entry_mode")),
    "refund": (_TX, ("original_reference",), _TX_RSP),
    "void": (("reference", "original_reference"), (), ("stan", "reference", "amount")),
    "preauth": (_TX, (), (*_TX_RSP, "entry_mode")),
    "balance": ((), ("reference",), ("masked_pan", "balance", "currency")),
    "topup": (_TX, (), ("masked_pan", "balance", "currency", "stan", "reference")),
    "settlement": ((), (), ("count", "total", "currency", "batch")),
    "reprint": ((), ("receipt",), ()),
    "fw_begin": (("version", "size", "crc32", "chunk_size"), (), ("chunk_size",)),
    "fw_chunk": (("index", "length", "crc32", "data"), (), ("index", "received")),
    "fw_end": ((), (), ("version", "size")),
    "fw_abort": ((), (), ()),
    "param_download": ((), ("params", "source"), ("count",)),
    "reboot": ((), (), ()),
    "key_inject": (("keys",), (), ("display",)),
    "display_read": ((), (), ("display",)),
    "display_shot": ((), (), ("png", "width", "height")),
    "simctl": (("mode",), ("count",), ("mode", "count")),
    "error": ((), (), ()),
}
"""Per command: required and optional request fields, and the fields its response may carry
(every response may also carry "text", a human-readable reason). "error" is response-only: the
answer to a payload that is not a valid request. "simctl" is for the rig's peer simulator."""

_HEAD = ("cmd", "rsp", "seq", "result")
_RESULTS = frozenset(r.value for r in Result)


def validate(message: Mapping[str, Any]) -> Message:
    """Check a request or response against the tables; return it with the header keys first."""
    if not isinstance(message, Mapping):
        raise EcrMessageError(f"a message is a JSON object, not {type(message).__name__}")
    is_rsp = "rsp" in message
    kind = "rsp" if is_rsp else "cmd"
    if is_rsp == ("cmd" in message):
        raise EcrMessageError("a message has exactly one of 'cmd' (request) or 'rsp' (response)")
    name = message[kind]
    if not isinstance(name, str) or name not in COMMANDS or (name == "error" and not is_rsp):
        raise EcrMessageError(f"unknown command {name!r}; known: {sorted(COMMANDS)}", kind)
    if _int(0, SEQ_MAX)(message.get("seq")):
        raise EcrMessageError(f"'seq' must be an integer 0..{SEQ_MAX}", "seq")
    required, optional, response_fields = COMMANDS[name]
    if is_rsp:
        result = message.get("result")
        if not isinstance(result, str) or result not in _RESULTS:
            raise EcrMessageError(f"result must be one of {[r.value for r in Result]}", "result")
        required, allowed = (), {*response_fields, "text"}
    else:
        allowed = {*required, *optional}
    for field in required:
        if field not in message:
            raise EcrMessageError(f"'{name}' requires field {field!r}", field)
    for field, value in message.items():
        if field in _HEAD:
            continue
        if not isinstance(field, str) or field.lower() in FORBIDDEN_FIELDS:
            raise EcrMessageError(
                "PAN, PIN, track data and card security codes never cross the ECR link; "
                "send masked_pan (first 6 / last 4) instead",
                str(field),
            )
        if field not in allowed:
            raise EcrMessageError(
                f"not a field of '{name}' {kind}; allowed: {sorted(allowed)}", field
            )
        problem = FIELDS[field](value)
        if problem:
            raise EcrMessageError(problem, field)
        if field not in BINARY_FIELDS:
            _refuse_clear_pan(field, value)
    ordered = {k: message[k] for k in _HEAD if k in message}
    ordered.update((k, v) for k, v in message.items() if k not in _HEAD)
    return ordered


def _pan_like(digits: str) -> bool:
    return digits[0] != "0" and _luhn(digits)


def mask_clear_pans(text: str) -> str:
    """Mask every PAN-like run (13-19 digits, not starting with 0, Luhn-valid) to first 6 /
    last 4, for a terminal that must report text it did not produce (e.g. a scanned code)."""

    def mask(match: re.Match[str]) -> str:
        run = match.group(0)
        return run[:6] + "*" * (len(run) - 10) + run[-4:] if _pan_like(run) else run

    return _DIGITS.sub(mask, text)


def _refuse_clear_pan(field: str, value: Any) -> None:
    texts = [value] if isinstance(value, str) else []
    if isinstance(value, dict):
        texts = [str(v) for v in value.values()]
    for text in texts:
        for match in _DIGITS.finditer(text):
            if _pan_like(match.group(0)):
                raise EcrMessageError(
                    "holds a Luhn-valid 13-19 digit number, i.e. what looks like a PAN in "
                    "clear; the ECR link carries only masked PANs",
                    field,
                )


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def encode(message: Mapping[str, Any]) -> bytes:
    """Validate a message and serialise it as compact ASCII JSON (the frame payload)."""
    checked = validate(message)
    return json.dumps(checked, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise EcrMessageError("appears twice in one object", key)
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise EcrMessageError(f"{name} is not a valid JSON number here")


def decode(payload: bytes) -> Message:
    """Parse and validate one frame payload; only EcrMessageError escapes."""
    try:
        text = bytes(payload).decode("ascii")
    except UnicodeDecodeError as exc:
        raise EcrMessageError("payload must be ASCII JSON", offset=exc.start) from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise EcrMessageError(f"not JSON: {exc.msg}", offset=exc.pos) from None
    except RecursionError:
        raise EcrMessageError("JSON nested too deeply") from None
    return validate(value)


def request(cmd: str, seq: int = 0, **fields: Any) -> Message:
    """Build and validate a request (seq is normally filled in by the link)."""
    return validate({"cmd": cmd, "seq": seq, **fields})


def response(req: Mapping[str, Any], result: Result | str, **fields: Any) -> Message:
    """Build and validate the response to `req`, echoing its command and sequence number."""
    return validate(
        {
            "rsp": req.get("cmd", "error"),
            "seq": req.get("seq", 0),
            "result": str(Result(result)),
            **fields,
        }
    )


def crc32_hex(data: bytes) -> str:
    """CRC-32 (IEEE 802.3, as zlib) as 8 upper-case hex digits."""
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08X}"


def firmware_requests(image: bytes, version: str, chunk_size: int = 512) -> list[Message]:
    """The requests of a complete upgrade: fw_begin, one fw_chunk per chunk_size bytes, fw_end."""
    msgs = [
        request(
            "fw_begin",
            version=version,
            size=len(image),
            crc32=crc32_hex(image),
            chunk_size=chunk_size,
        )
    ]
    for index, start in enumerate(range(0, len(image), chunk_size)):
        chunk = image[start : start + chunk_size]
        msgs.append(
            request(
                "fw_chunk",
                index=index,
                length=len(chunk),
                crc32=crc32_hex(chunk),
                data=base64.b64encode(chunk).decode("ascii"),
            )
        )
    msgs.append(request("fw_end"))
    return msgs
