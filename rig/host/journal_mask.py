"""Masking of journal documents: one cheap pass per document, same guarantees as `mask`.

An ISO 8583 document (all values strings) gets `messages.mask` semantics — DE35/45/52/64/128
dropped, DE2 first 6 / last 4, DE55 without tags 56/57/5A/9F6B, DE48 token removed — and then
the evidence redactor, but only on values the redactor could change: it only ever touches a run
of 13 or more characters, so short values and long pure digit runs (DE90) are skipped. DE55 is
scanned once; it is re-encoded only when it carries a sensitive tag. Anything that is not a flat
string document goes through the generic redactor.

The one deliberate exception to `mask`: DE48 subfield K2 of a key-exchange response is a TR-31
key block, i.e. the new key *encrypted* under the zone master key with an authenticated header.
It is kept verbatim (no clear key enters the journal) so that a duplicate key exchange is
answered with the original block, which the terminal can unwrap to the key the host stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from rig.evidence.redact import redact_text, redact_value
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
    "mask_pair",
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

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
dumps = _encoder.encode
"""Compact JSON for journal rows (one shared encoder)."""


def _redact(value: str) -> str:
    """`redact_text`, skipped where it provably changes nothing (short or long digit runs)."""
    if len(value) < _REDACT_MIN or (len(value) > 19 and value.isdigit()):
        return value
    if _RUN12.search(value) is None:  # every pattern of redact_text needs 12+ digits in a row
        return value
    return redact_text(value)


def _icc_tags(data: bytes) -> list[int] | None:
    """Top-level tags of BER-TLV `data`, or None when it does not parse as definite-length TLV."""
    tags = []
    i, n = 0, len(data)
    while i < n:
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            while True:
                if i >= n:
                    return None
                b = data[i]
                tag = (tag << 8) | b
                i += 1
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
            i += size
        i += length
        if i > n:
            return None
        tags.append(tag)
    return tags


def scrub_icc(value: str) -> str:
    """DE55 without PAN/track tags; unchanged (no re-encoding) when it carries none."""
    try:
        tags = _icc_tags(bytes.fromhex(value))
    except ValueError:
        tags = None
    if tags is not None and ICC_SENSITIVE_TAGS.isdisjoint(tags):
        return value
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
            sub[sid] = _redact(item)
    return private_encode(sub)


def _mask_iso(
    doc: Mapping[str, str], response: bool, done: Mapping[str, tuple[str, str]] | None = None
) -> dict[str, str]:
    """Masked copy; `done` maps keys to (value, masked value) already worked out (a request's
    fields echoed in its response), reused when the value is the very same string object."""
    out: dict[str, str] = {}
    for key, value in doc.items():
        if key in SENSITIVE_FIELDS:
            continue
        if done is not None:
            hit = done.get(key)
            if hit is not None and hit[0] is value and key != "48":
                out[key] = hit[1]
                continue
        if key == "55":
            out[key] = _redact(scrub_icc(value))
        elif key == "48":
            out[key] = _scrub_private(value, keep_key_block=response)
        elif key == "2":
            out[key] = _redact(mask_pan(value))
        else:
            out[key] = _redact(value)
    return out


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
    if not isinstance(doc, Mapping):
        raise TypeError("request/response must be a dict (a decoded ISO 8583 document)")
    if _iso_doc(doc):
        return _mask_iso(doc, response)
    if all(isinstance(v, str) for v in doc.values()):
        doc = mask(doc)
    return redact_value(dict(doc))


def mask_pair(request: Any, response: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """`mask_document` of a request and of its response; the response's echoed fields (the same
    string objects as in the request) are masked once, not twice."""
    if not (isinstance(request, Mapping) and isinstance(response, Mapping)):
        return mask_document(request), mask_document(response, response=True)
    if not (_iso_doc(request) and _iso_doc(response)):
        return mask_document(request), mask_document(response, response=True)
    masked = _mask_iso(request, False)
    done = {k: (v, masked[k]) for k, v in request.items() if k in masked}
    return masked, _mask_iso(response, True, done)
