"""Masking of journal documents: one cheap pass per document, same result as the generic path.

An ISO 8583 document (all values strings) gets `messages.mask` semantics — DE35/45/52/64/128
dropped, DE2 first 6 / last 4, DE55 without tags 56/57/5A/9F6B, DE48 token removed — and then
the evidence redactor. DE48 and DE62 are redacted subfield by subfield (a whole-string pass
would miss a PAN right after a numeric subfield header, the run being longer than 19 digits, and
could mask a run that spans two subfields, breaking the layout); DE62 subfields that have their
documented format (purse serial, counters, balance, MACs, date-time) are kept as they are.
Anything that is not a flat string document goes through the generic redactor.

The fast path for the host's documents (dicts of dialect keys to `str`) does the redactor's
work only where it could change something: every pattern of `redact_text` needs 12 digits in a
row, and its digit rule only touches a maximal run of 13-19 digits that starts with 1-9 and
passes Luhn, so one byte-class scan of a request's and its response's values decides whether
any needs it; the same scan tells whether their JSON needs escaping, and when it does not the
JSON is filled into a template cached per key order. DE55 is decoded and re-encoded (exactly as
`mask` does) only when it is not canonical upper-case BER-TLV or carries a sensitive tag; the
TLV layouts seen are learnt as regular expressions, so a value with a known layout is checked
by one match instead of a tag-by-tag scan.

The one deliberate exception to `mask`: DE48 subfield K2 of a key-exchange response is a TR-31
key block, i.e. the new key *encrypted* under the zone master key with an authenticated header.
It is kept verbatim (no clear key enters the journal) so that a duplicate key exchange is
answered with the original block, which the terminal can unwrap to the key the host stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rig.evidence.redact import luhn_ok, redact_text, redact_value
from rig.iso8583.messages import (
    Iso8583Error,
    de55_decode,
    de55_encode,
    mask,
    mask_pan,
    private_decode,
    private_encode,
)
from rig.iso8583.spec import SENSITIVE_FIELDS

__all__ = [
    "ICC_SENSITIVE_TAGS",
    "dumps",
    "is_tr31_block",
    "mask_document",
    "mask_pair_json",
    "redact",
    "scrub_icc",
]

ICC_SENSITIVE_TAGS = frozenset({0x56, 0x57, 0x5A, 0x9F6B})
"""DE55 tags that carry the PAN or track data (removed, as `messages.mask` does)."""

_REDACT_MIN = 13
_ISO_KEYS = frozenset({"t", "p"})
_DIALECT_KEYS = frozenset({"t", "p", *map(str, range(1, 193))})
_STR = frozenset({str})
_RUN12 = re.compile(r"[0-9]{12}")
_TR31 = re.compile(r"[A-DR][0-9]{4}[0-9A-Z]{11}[0-9A-Z]*")

# Byte classes of the one-pass scan: a digit is '0'; a track 2 separator ('=', 'D') is 'D'; a
# track 1 separator '^' or a character JSON escapes is '!'; anything else '.'.
_CLASSES = bytes(
    0x30 if 0x30 <= c <= 0x39 else
    0x44 if c in b"=D" else
    0x21 if c < 0x20 or c in b'^"\\' else
    0x2E
    for c in range(256)
)  # fmt: skip
_DIGITS13 = b"0" * 13
_TRACK2_CUE = re.compile(rb"D(?<=0{12}D)")
_PLANS: dict[tuple[str, ...], Any] = {}
_PLANS_MAX = 1024
_UNPLANNED = object()

# Learnt DE55 layouts (tag and length bytes fixed, values any upper-case hex) by value length; a
# value matching one has the very TLV structure of a value `_icc_layout` found clean. Compiles
# are rationed (so many one-off layouts cost a scan each, never a compile each).
_SHAPES: dict[int, tuple[Callable[[str], Any], ...]] = {}
_SHAPES_PER_LENGTH = 4
_SHAPES_MAX = 256
_COMPILES_PER_PERIOD = 64
_MISSES_PER_PERIOD = 1 << 16
_shape_budget = [_COMPILES_PER_PERIOD, _MISSES_PER_PERIOD]

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
dumps = _encoder.encode
"""Compact JSON for journal rows (one shared encoder)."""


def redact(value: str) -> str:
    """`redact_text`, skipped where it provably changes nothing (short or long digit runs)."""
    if len(value) < _REDACT_MIN or (len(value) > 19 and value.isdigit()):
        return value
    if _RUN12.search(value) is None:  # every pattern of redact_text needs 12+ digits in a row
        return value
    return redact_text(value)


def _icc_clean(value: str) -> bool:
    """True when `mask` would give DE55 `value` back unchanged (see `_icc_layout`)."""
    shapes = _SHAPES.get(len(value))
    if shapes is not None:
        for fullmatch in shapes:
            if fullmatch(value) is not None:
                return True
    marks = _icc_layout(value)
    if marks is None:
        return False
    if marks:
        _learn(value, marks)
    return True


def _learn(value: str, marks: list[int]) -> None:
    """Remember the layout of clean DE55 `value` (body start, end, ... in bytes)."""
    budget = _shape_budget
    budget[1] -= 1
    if budget[1] <= 0:
        budget[:] = [_COMPILES_PER_PERIOD, _MISSES_PER_PERIOD]
    if budget[0] <= 0:
        return
    budget[0] -= 1
    parts, head = [], 0
    for body, end in zip(marks[::2], marks[1::2], strict=True):
        parts.append(f"{value[2 * head : 2 * body]}[0-9A-F]{{{2 * (end - body)}}}")
        head = end
    if len(_SHAPES) >= _SHAPES_MAX:
        _SHAPES.clear()
    known = _SHAPES.get(len(value), ())
    _SHAPES[len(value)] = (*known, re.compile("".join(parts)).fullmatch)[-_SHAPES_PER_LENGTH:]


def _icc_layout(value: str) -> list[int] | None:
    """Where the TLV bodies of DE55 `value` start and end (bytes), when `mask` would give it
    back unchanged: upper-case hex of canonical BER-TLV (no padding, minimal lengths, tags of at
    most 4 bytes, no repeats) without the sensitive tags; else None (the generic path)."""
    if not value:
        return []
    try:
        data = bytes.fromhex(value)
    except ValueError:
        return None
    n = len(data)
    if 2 * n != len(value) or not (value.isupper() or value.isdigit()):
        return None  # whitespace or lower case: the re-encoding differs
    seen: set[int] = set()
    marks: list[int] = []
    i = 0
    while i < n:
        tag = data[i]
        if tag == 0 or tag == 0xFF:
            return None
        i += 1
        if tag & 0x1F == 0x1F:
            start = i - 1
            while True:
                if i >= n or i - start >= 4:
                    return None
                b = data[i]
                i += 1
                tag = (tag << 8) | b
                if not b & 0x80:
                    break
        if i >= n:
            return None
        length = data[i]
        i += 1
        if length & 0x80:
            size = length & 0x7F
            if size == 0 or size > 3 or i + size > n:
                return None
            length = int.from_bytes(data[i : i + size], "big")
            if length < 0x80 or not length >> (8 * size - 8):
                return None
            i += size
        marks.append(i)
        i += length
        if i > n or tag in seen:
            return None
        seen.add(tag)
        marks.append(i)
    return marks if seen.isdisjoint(ICC_SENSITIVE_TAGS) else None


def scrub_icc(value: str) -> str:
    """DE55 as `messages.mask` leaves it; the very same string when that changes nothing."""
    return value if _icc_clean(value) else _scrub_icc(value)


def _scrub_icc(value: str) -> str:
    try:
        decoded = de55_decode(value)
    except Iso8583Error:
        return "[unparsed ICC data removed]"
    for tag in ICC_SENSITIVE_TAGS:
        decoded.pop(tag, None)
    return de55_encode(decoded)


def is_tr31_block(value: str) -> bool:
    """True for a TR-31 key block (version letter, 4-digit length matching, header, body)."""
    return bool(_TR31.fullmatch(value)) and value[1:5].isdigit() and int(value[1:5]) == len(value)


def _scrub_private(value: str, *, keep_key_block: bool) -> str:
    try:
        sub = private_decode(value)
    except Iso8583Error:
        return "[unparsed private data removed]"
    for sid, item in sub.items():
        if sid == "02":
            sub[sid] = "[removed]"
        elif sid == "K2":
            sub[sid] = item if keep_key_block and is_tr31_block(item) else "[removed]"
        else:
            sub[sid] = redact(item)
    return private_encode(sub)


_PREPAID_FORMATS = {
    sid: re.compile(pattern)
    for sid, pattern in {
        "01": "[0-9A-Fa-f]{1,32}",
        "02": "[0-9A-Fa-f]{4}",
        "03": "-?[0-9]{11,12}",
        "04": "[A-Z]{1,16}",
        "05": "[0-9A-Fa-f]{8}",
        "06": "[0-9A-Fa-f]{8}",
        "07": "[0-9A-Fa-f]{8}",
        "08": "[0-9A-Fa-f]{8}",
        "09": "[0-9A-Fa-f]{8}",
        "10": "[0-9A-Fa-f]{12}",
        "11": "[0-9]{14}",
    }.items()
}
"""DE62 subfields (docs/iso8583.md) kept as they are when they have their documented format: a
purse serial, counters, balances, MACs and a date-time are not card data, and the restore and
reconciliation read them back; any other subfield is redacted on its own."""


def _scrub_prepaid(value: str) -> str:
    """DE62 subfield by subfield, so no digit run spans two subfields and the layout survives."""
    try:
        sub = private_decode(value, "62")
    except Iso8583Error:
        return "[unparsed private data removed]"
    for sid, item in sub.items():
        shape = _PREPAID_FORMATS.get(sid)
        if shape is None or shape.fullmatch(item) is None:
            sub[sid] = redact(item)
    return private_encode(sub)


def _mask_iso(doc: Mapping[str, str], response: bool) -> dict[str, str]:
    """Masked copy of an ISO document, field by field (what `_strip` + `_finish` do at once)."""
    out: dict[str, str] = {}
    for key, value in doc.items():
        if key in SENSITIVE_FIELDS:
            continue
        if key == "55":
            out[key] = redact(scrub_icc(value))
        elif key == "48":
            out[key] = _scrub_private(value, keep_key_block=response)
        elif key == "62":
            out[key] = _scrub_prepaid(value)
        elif key == "2":
            out[key] = redact(mask_pan(value))
        else:
            out[key] = redact(value)
    return out


def _plain(values: Iterable[str], more: Iterable[str] = ()) -> bool:
    """True when `redact_text` changes none of the strings in `values` and `more`, and none
    needs JSON escaping; False means "do it the generic way", never a wrong answer."""
    text = f",{','.join(values)},{','.join(more)}"
    if not text.isascii():
        return False
    raw = text.encode("ascii")
    classes = raw.translate(_CLASSES)
    if 0x21 in classes or _TRACK2_CUE.search(classes) is not None:
        return False
    at = classes.find(_DIGITS13)
    while at >= 0:  # 13 digits from `at`; a PAN candidate only where a run starts with 1-9
        if raw[at] != 0x30 and classes[at - 1] != 0x30:
            end = at + 13
            while end < len(raw) and classes[end] == 0x30 and end - at <= 19:
                end += 1
            if end - at <= 19 and luhn_ok(text[at:end]):
                return False
            at = classes.find(_DIGITS13, end)
        else:
            at = classes.find(_DIGITS13, at + 13)
    return True


def _plan(keys: tuple[str, ...]) -> tuple[str, tuple[str, ...], bool, bool, bool, bool] | None:
    """How to mask documents with these keys in this order: (JSON template of the masked copy,
    sensitive keys to drop, has DE2, has DE55, has DE48, has DE62); None unless all are dialect
    keys."""
    if not (_STR.issuperset(map(type, keys)) and _DIALECT_KEYS.issuperset(keys)):
        return None
    kept = [k for k in keys if k not in SENSITIVE_FIELDS]
    template = "{" + ",".join(dumps(k).replace("%", "%%") + ':"%s"' for k in kept) + "}"
    drop = tuple(k for k in keys if k in SENSITIVE_FIELDS)
    return template, drop, "2" in keys, "55" in keys, "48" in keys, "62" in keys


def _strip(
    doc: Any, response: bool, pan: tuple[str, str] | None = None
) -> tuple[dict[str, str], str] | None:
    """`messages.mask` of a dict of dialect keys to exact `str` values, with the JSON template
    of the result (redaction still to do, see `_finish`); None for any other document. `pan`:
    a DE2 value and its masked form, reused when `doc` holds that very string."""
    if type(doc) is not dict:
        return None
    keys = tuple(doc)
    plan = _PLANS.get(keys, _UNPLANNED)
    if plan is _UNPLANNED:
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        plan = _PLANS[keys] = _plan(keys)
    if plan is None or not _STR.issuperset(map(type, doc.values())):
        return None
    template, drop, has_pan, has_icc, has_private, has_prepaid = plan
    out = doc.copy()
    for key in drop:
        del out[key]
    if has_pan:
        value = out["2"]
        out["2"] = pan[1] if pan is not None and pan[0] is value else mask_pan(value)
    if has_icc:
        value = out["55"]
        if not _icc_clean(value):
            out["55"] = _scrub_icc(value)
    if has_private:
        out["48"] = _scrub_private(out["48"], keep_key_block=response)
    if has_prepaid:
        out["62"] = _scrub_prepaid(out["62"])
    return out, template


def _finish(
    out: dict[str, str], template: str, plain: bool = False, values: tuple[str, ...] = ()
) -> tuple[dict[str, str], str | None]:
    """Redact a `_strip` result: (masked document, its JSON or None to encode generically).
    `plain`: `_plain` already holds for `values`, the document's values."""
    if plain:
        return out, template % values
    values = tuple(out.values())
    if _plain(values):
        return out, template % values
    for key, value in list(out.items()):
        if key != "48" and key != "62":
            out[key] = redact(value)
    return out, None


def _iso_doc(doc: Mapping[Any, Any]) -> bool:
    if _DIALECT_KEYS.issuperset(doc.keys()) and set(map(type, doc.values())) <= _STR:
        return True
    for key, value in doc.items():
        if not (isinstance(value, str) and isinstance(key, str)):
            return False
        if not (key in _ISO_KEYS or key.isdigit()):
            return False
    return True


def mask_document(doc: Any, *, response: bool = False) -> dict[str, Any]:
    """The journal's copy of a request or response document (see the module docstring)."""
    stripped = _strip(doc, response)
    if stripped is not None:
        return _finish(*stripped)[0]
    if not isinstance(doc, Mapping):
        raise TypeError("request/response must be a dict (a decoded ISO 8583 document)")
    if _iso_doc(doc):
        return _mask_iso(doc, response)
    if all(isinstance(v, str) for v in doc.values()):
        doc = mask(doc)
    return redact_value(dict(doc))


def mask_pair_json(
    request: Any, response: Any
) -> tuple[dict[str, Any], dict[str, Any], str | None, str | None]:
    """`mask_document` of a request and of its response, plus each one's compact JSON
    (`dumps`), or None where the caller has to encode it (documents that are not flat strings,
    or that need escaping)."""
    req = _strip(request, False)
    if req is None:
        masked_request = mask_document(request)
        resp = _strip(response, True)
        if resp is None:
            return masked_request, mask_document(response, response=True), None, None
        masked_response, response_json = _finish(*resp)
        return masked_request, masked_response, None, response_json
    out, template = req
    resp = _strip(response, True, (request["2"], out["2"]) if "2" in out else None)
    if resp is None:
        masked_request, request_json = _finish(out, template)
        return masked_request, mask_document(response, response=True), request_json, None
    values, resp_values = tuple(out.values()), tuple(resp[0].values())
    plain = _plain(values, resp_values)
    masked_request, request_json = _finish(out, template, plain, values)
    masked_response, response_json = _finish(*resp, plain, resp_values)
    return masked_request, masked_response, request_json, response_json
