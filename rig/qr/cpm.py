"""EMVCo consumer-presented QR (EMV QRCPS Consumer-Presented Mode): base64 of BER-TLV.

The payload is tag 85 "CPV01", one or more application templates (61), and an optional common
data template (62); templates may hold the transparent templates 63 / 64 with EMV data.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from rig.emv import tlv

FORMAT_INDICATOR = b"CPV01"
TAG_FORMAT = 0x85
TAG_APPLICATION = 0x61
TAG_COMMON = 0x62
TRANSPARENT = (0x63, 0x64)
SENSITIVE_TAGS = frozenset({0x57, 0x56, 0x9F6B})
"""Track data tags hidden when a payload is shown."""
TEXT_TAGS = frozenset({0x50, 0x5F20, 0x5F2D, 0x5F50, 0x9F12})
"""Tags shown as text rather than hex."""

TAG_NAMES = {
    0x4F: "Application Definition File Name (AID)",
    0x50: "Application Label",
    0x57: "Track 2 Equivalent Data",
    0x5A: "Application PAN",
    0x5F20: "Cardholder Name",
    0x5F2D: "Language Preference",
    0x5F50: "Issuer URL",
    0x9F08: "Application Version Number",
    0x9F19: "Token Requestor ID",
    0x9F24: "Payment Account Reference",
    0x9F25: "Last 4 Digits of PAN",
    0x9F10: "Issuer Application Data",
    0x9F26: "Application Cryptogram",
    0x9F27: "Cryptogram Information Data",
    0x9F36: "Application Transaction Counter",
    0x9F37: "Unpredictable Number",
    0x82: "Application Interchange Profile",
    0x63: "Application Specific Transparent Template",
    0x64: "Common Data Transparent Template",
}


class CpmError(ValueError):
    """Undecodable CPM payload: `offset` (byte in the decoded data, or base64 char) and `tag`."""

    def __init__(
        self, message: str, *, offset: int = 0, tag: str | None = None, fix: str = ""
    ) -> None:
        self.offset = offset
        self.tag = tag
        self.fix = fix
        where = f"at offset {offset}" + (f" (tag {tag})" if tag else "")
        super().__init__(f"{message} {where}" + (f"; {fix}" if fix else ""))


Template = dict[int, Union[bytes, "Template"]]


@dataclass
class CpmPayload:
    """Decoded CPM: the application templates and the common data template, as tag dicts."""

    applications: list[Template] = field(default_factory=list)
    common: Template | None = None
    format_indicator: bytes = FORMAT_INDICATOR


def _to_template(items: list[tlv.Tlv], where: int) -> Template:
    out: Template = {}
    for t in items:
        if t.tag in out:
            raise CpmError("duplicate tag in template", offset=t.offset, tag=t.tag_hex)
        if t.tag in TRANSPARENT:
            out[t.tag] = _to_template(t.children or [], t.offset)
        elif t.constructed:
            raise CpmError(
                "unexpected template",
                offset=t.offset,
                tag=t.tag_hex,
                fix="only 63 and 64 templates may be nested",
            )
        else:
            out[t.tag] = t.value
    return out


def decode_bytes(data: bytes) -> CpmPayload:
    """Decode the BER-TLV bytes of a CPM payload."""
    try:
        objs = tlv.decode(data, allow_padding=False)
    except tlv.TlvError as e:
        raise CpmError(f"not BER-TLV: {e.reason}", offset=e.offset, tag=e.tag) from None
    if not objs or objs[0].tag != TAG_FORMAT:
        raise CpmError(
            "payload does not start with tag 85",
            offset=0,
            fix="a CPM payload starts with 85 05 'CPV01'",
        )
    if objs[0].value != FORMAT_INDICATOR:
        raise CpmError(
            f"payload format indicator {objs[0].value!r}", offset=0, tag="85", fix="use 'CPV01'"
        )
    out = CpmPayload(format_indicator=objs[0].value)
    for t in objs[1:]:
        if t.tag == TAG_APPLICATION:
            if out.common is not None:
                raise CpmError("application template after common data", offset=t.offset, tag="61")
            out.applications.append(_to_template(t.children or [], t.offset))
        elif t.tag == TAG_COMMON and out.common is None:
            out.common = _to_template(t.children or [], t.offset)
        else:
            raise CpmError(
                "unexpected top-level tag",
                offset=t.offset,
                tag=t.tag_hex,
                fix="after 85 come 61 application templates and at most one 62",
            )
    if not out.applications:
        raise CpmError("no application template (61)", offset=len(data), fix="add a 61 template")
    return out


def decode(payload: str) -> CpmPayload:
    """Decode the base64 text read from a consumer's QR code."""
    if not isinstance(payload, str):
        raise CpmError(f"payload is {type(payload).__name__}, not text")
    try:
        data = base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CpmError("payload is not base64", fix="CPM payloads are base64 text") from None
    return decode_bytes(data)


def looks_like_cpm(payload: str) -> bool:
    """True when `payload` is base64 whose bytes start with tag 85."""
    try:
        return base64.b64decode(payload.strip(), validate=True)[:1] == b"\x85"
    except (binascii.Error, ValueError, AttributeError):
        return False


def _encode_template(tags: Mapping[int, Any]) -> bytes:
    items = []
    for tag, value in tags.items():
        items.append((tag, _encode_template(value) if isinstance(value, Mapping) else bytes(value)))
    try:
        return tlv.encode_many(items)
    except tlv.TlvError as e:
        raise CpmError(f"cannot encode: {e.reason}", tag=e.tag) from None


def encode_bytes(
    applications: list[Mapping[int, Any]], common: Mapping[int, Any] | None = None
) -> bytes:
    """BER-TLV of a CPM payload; nested mappings become templates (63 / 64)."""
    if not applications:
        raise CpmError("a CPM payload needs at least one application template")
    parts = [tlv.encode(TAG_FORMAT, FORMAT_INDICATOR)]
    parts += [tlv.encode(TAG_APPLICATION, _encode_template(a)) for a in applications]
    if common is not None:
        parts.append(tlv.encode(TAG_COMMON, _encode_template(common)))
    return b"".join(parts)


def encode(applications: list[Mapping[int, Any]], common: Mapping[int, Any] | None = None) -> str:
    """Base64 text of a CPM payload, ready to render as a QR code."""
    return base64.b64encode(encode_bytes(applications, common)).decode("ascii")


def to_dict(payload: CpmPayload, *, masked: bool = True) -> dict[str, Any]:
    """JSON-ready view; with `masked`, track data hidden and the PAN shown first 6 / last 4."""

    def conv(t: Template) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for tag, value in t.items():
            key = tlv.tag_to_hex(tag)
            if isinstance(value, dict):
                out[key] = conv(value)
            elif masked and tag in SENSITIVE_TAGS:
                out[key] = "[redacted]"
            elif masked and tag == 0x5A:
                digits = value.hex().upper().rstrip("F")
                out[key] = digits[:6] + "*" * max(0, len(digits) - 10) + digits[-4:]
            elif tag in TEXT_TAGS:
                out[key] = value.decode("latin-1")
            else:
                out[key] = value.hex().upper()
        return out

    return {
        "format_indicator": payload.format_indicator.decode("ascii", "replace"),
        "applications": [conv(a) for a in payload.applications],
        "common": conv(payload.common) if payload.common is not None else None,
    }
