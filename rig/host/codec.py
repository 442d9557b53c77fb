"""The host's fast path for `messages.decode` / `messages.encode`: same documents, same bytes.

pyiso8583 interprets the field spec generically for every field of every message; the host
decodes and encodes thousands of messages a second in the posrig dialect only. These functions
walk a table compiled once from `rig.iso8583.spec.SPEC` and handle the regular case: fields the
dialect defines, well-formed values. Anything else — an unknown field, a bad length, a non-hex or
non-ASCII value, trailing bytes, a secondary bitmap with bit 65 — goes to the core functions,
so every error (Iso8583Error with field and position) comes from exactly the same place as
before. tests/test_host_codec.py checks with hypothesis that both paths agree.
"""

from __future__ import annotations

from binascii import a2b_hex
from collections.abc import Mapping

from rig.iso8583.messages import Doc, decode, encode
from rig.iso8583.spec import NUMERIC_FIELDS, SPEC, TRACK2_FIELD

__all__ = ["fast_decode", "fast_encode"]

# kinds: 0 binary (hex), 1 BCD nibbles with pad, 2 ASCII text
_Field = tuple[str, int, int, int, str]  # key, kind, len_type, max_len, pad ('' / 'L' / 'R')


def _compile() -> dict[int, _Field]:
    table: dict[int, _Field] = {}
    for key, spec in SPEC.items():
        if not key.isdigit() or key == "1":
            continue
        nibbles = spec.get("len_count") == "nibbles"
        kind = 2 if spec["data_enc"] == "ascii" else 1 if nibbles else 0
        pad = "L" if spec.get("left_pad") else "R" if spec.get("right_pad") else ""
        if nibbles and (spec.get("left_pad", "0")[:1] != "0" or spec.get("right_pad", "F") != "F"):
            continue
        if spec["len_enc"] != "bcd" and spec["len_type"]:
            continue
        table[int(key)] = (key, kind, spec["len_type"], spec["max_len"], pad)
    return table


_TABLE = _compile()
_DIGITS_ONLY = frozenset(k for k in NUMERIC_FIELDS if k != "t")
_TRACK2_CHARS = frozenset("0123456789D")
_layouts: dict[bytes, tuple[_Field, ...] | None] = {}


def _layout(bitmap: bytes) -> tuple[_Field, ...] | None:
    """Fields a (primary + secondary) bitmap announces, in wire order; None if any is unknown."""
    found = _layouts.get(bitmap)
    if found is not None or bitmap in _layouts:
        return found
    bits = int.from_bytes(bitmap, "big")
    width = len(bitmap) * 8
    out: list[_Field] = []
    layout: tuple[_Field, ...] | None
    for n in range(2, width + 1):
        if bits >> (width - n) & 1:
            if n == 65 or n not in _TABLE:
                out = []
                layout = None
                break
            out.append(_TABLE[n])
    else:
        layout = tuple(out)
    if len(_layouts) < 1024:
        _layouts[bitmap] = layout
    return layout


def _decode_fields(raw: bytes) -> Doc | None:
    n = len(raw)
    if n < 10:
        return None
    mti = raw[:2].hex()
    if not mti.isdigit():
        return None
    primary = raw[2:10]
    doc: Doc = {"t": mti, "p": primary.hex().upper()}
    i = 10
    if primary[0] & 0x80:
        if n < 18:
            return None
        bitmap = raw[2:18]
        doc["1"] = raw[10:18].hex().upper()
        i = 18
    else:
        bitmap = primary
    layout = _layout(bitmap)
    if layout is None:
        return None
    for key, kind, len_type, max_len, pad in layout:
        if len_type:
            text = raw[i : i + len_type].hex()
            if len(text) != 2 * len_type or not text.isdigit():
                return None
            size = int(text)
            if size > max_len:
                return None
            i += len_type
            if size == 0:
                doc[key] = ""
                continue
        else:
            size = max_len
        nbytes = (size + 1) >> 1 if kind == 1 else size
        end = i + nbytes
        if end > n:
            return None
        chunk = raw[i:end]
        i = end
        if kind == 2:
            try:
                doc[key] = chunk.decode("ascii")
            except UnicodeDecodeError:
                return None
            continue
        value = chunk.hex().upper()
        if kind == 1 and size & 1:
            if pad == "L" and value[0] == "0":
                value = value[1:]
            elif pad == "R" and value[-1] == "F":
                value = value[:-1]
            else:
                return None
        if key in _DIGITS_ONLY and not value.isdigit():
            return None
        if key == TRACK2_FIELD and not _TRACK2_CHARS.issuperset(value):
            return None
        doc[key] = value
    return doc if i == n else None


def fast_decode(raw: bytes) -> Doc:
    """`messages.decode(raw)`, faster for well-formed dialect messages; same errors otherwise."""
    doc = _decode_fields(raw) if type(raw) is bytes else None
    return doc if doc is not None else decode(raw)


_Enc = tuple[
    int, int, int, int, int, str, "list[bytes]"
]  # n, bit, kind, len_type, max, pad, prefixes


def _encoders() -> dict[str, _Enc]:
    """Field key -> what encoding needs, with every length prefix the field can take pre-made."""
    out: dict[str, _Enc] = {}
    for n, (key, kind, len_type, max_len, pad) in _TABLE.items():
        sizes = min(max_len + 1, 10 ** (2 * len_type)) if len_type else 0
        prefixes = [a2b_hex(f"{size:0{2 * len_type}d}") for size in range(sizes)]
        out[key] = (n, 1 << (128 - n), kind, len_type, max_len, pad, prefixes)
    return out


_ENCODERS = _encoders()


def _encode_fields(doc: Mapping[str, str]) -> bytes | None:
    mti = doc.get("t")
    if type(mti) is not str or len(mti) != 4:
        return None
    fields: list[tuple[_Enc, str]] = []
    bits = 0
    for key, value in doc.items():
        enc = _ENCODERS.get(key)
        if enc is None:
            if key == "t" or key == "p":
                continue
            return None
        if type(value) is not str:
            return None
        bits |= enc[1]
        fields.append((enc, value))
    fields.sort()
    secondary = bits & ((1 << 64) - 1)
    if secondary:
        bits |= 1 << 127
    try:
        parts = [a2b_hex(mti), (bits >> 64).to_bytes(8, "big")]
        if secondary:
            parts.append(secondary.to_bytes(8, "big"))
        for (_, _, kind, len_type, max_len, pad, prefixes), value in fields:
            if kind == 2:
                data = value.encode("ascii")
                size = len(data)
            elif kind == 1:
                size = len(value)
                if size & 1:
                    value = "0" + value if pad == "L" else value + "F" if pad == "R" else value
                data = a2b_hex(value)
            else:
                data = a2b_hex(value)
                size = len(data)
            if len_type:
                if size > max_len or size >= len(prefixes):
                    return None
                parts.append(prefixes[size])
            elif size != max_len:
                return None
            parts.append(data)
    except (ValueError, UnicodeEncodeError):
        return None
    return b"".join(parts)


def fast_encode(doc: Mapping[str, str]) -> bytes:
    """`messages.encode(doc)`, faster for well-formed dialect documents; same errors otherwise."""
    raw = _encode_fields(doc) if isinstance(doc, Mapping) else None
    return raw if raw is not None else encode(doc)
