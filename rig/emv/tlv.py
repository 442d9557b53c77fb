"""BER-TLV as EMV uses it (EMV Book 3 Annex B): decode, encode, and look up data objects.

Pure functions on bytes; every malformed input raises `TlvError` carrying the byte offset and tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

MAX_TAG_BYTES = 4
MAX_DEPTH = 32
PADDING = (0x00, 0xFF)


class TlvError(ValueError):
    """Malformed BER-TLV: `offset` is the byte where it went wrong, `tag` the object being read."""

    def __init__(self, message: str, *, offset: int, tag: str | None = None, fix: str = "") -> None:
        self.offset = offset
        self.tag = tag
        self.reason = message
        where = f"at offset {offset}" + (f" (tag {tag})" if tag else "")
        text = f"{message} {where}"
        if fix:
            text += f"; {fix}"
        super().__init__(text)


def tag_to_hex(tag: int) -> str:
    """Upper-case hex of a tag number as it appears on the wire (0x9F02 -> '9F02')."""
    return tag_bytes(tag).hex().upper()


def tag_bytes(tag: int) -> bytes:
    """The wire bytes of a tag number."""
    if tag < 0:
        raise TlvError(f"negative tag number {tag}", offset=0, fix="tags are positive integers")
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def is_constructed(tag: int) -> bool:
    """True when bit 6 of the first tag byte is set (a template holding further TLVs)."""
    return bool(tag_bytes(tag)[0] & 0x20)


@dataclass
class Tlv:
    """One decoded data object; `children` is set for parsed constructed templates."""

    tag: int
    value: bytes
    children: list[Tlv] | None = None
    offset: int = 0

    @property
    def tag_hex(self) -> str:
        return tag_to_hex(self.tag)

    @property
    def constructed(self) -> bool:
        return is_constructed(self.tag)

    def walk(self) -> Iterator[Tlv]:
        """This object and every descendant, depth-first."""
        yield self
        for child in self.children or ():
            yield from child.walk()

    def find(self, tag: int) -> Tlv | None:
        """First object with `tag`, depth-first, starting with this one."""
        return next((t for t in self.walk() if t.tag == tag), None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tag": self.tag_hex,
            "offset": self.offset,
            "length": len(self.value),
        }
        if self.children is not None:
            out["children"] = [c.to_dict() for c in self.children]
        else:
            out["value"] = self.value.hex().upper()
        return out


def find(tlvs: Iterable[Tlv], tag: int) -> Tlv | None:
    """First object with `tag` in a decoded list, depth-first."""
    for t in tlvs:
        hit = t.find(tag)
        if hit is not None:
            return hit
    return None


def _read_tag(data: bytes, pos: int, end: int) -> tuple[int, int]:
    start = pos
    first = data[pos]
    pos += 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= end:
                raise TlvError(
                    "truncated multi-byte tag",
                    offset=start,
                    tag=data[start:pos].hex().upper(),
                    fix="a tag byte with b8 set must be followed by another tag byte",
                )
            b = data[pos]
            pos += 1
            if pos - start > MAX_TAG_BYTES:
                raise TlvError(
                    f"tag longer than {MAX_TAG_BYTES} bytes",
                    offset=start,
                    tag=data[start:pos].hex().upper(),
                    fix="check the data is BER-TLV and not shifted",
                )
            if not b & 0x80:
                break
    return int.from_bytes(data[start:pos], "big"), pos


def read_tag(data: bytes, pos: int = 0) -> tuple[int, int]:
    """Read one tag starting at `pos`: (tag number, position after the tag)."""
    if pos >= len(data):
        raise TlvError("no tag: data ends", offset=pos, fix="supply a tag byte")
    return _read_tag(bytes(data), pos, len(data))


def _read_length(data: bytes, pos: int, end: int, tag_hex: str) -> tuple[int, int]:
    if pos >= end:
        raise TlvError(
            "truncated length: tag is the last byte",
            offset=pos,
            tag=tag_hex,
            fix="a length byte must follow the tag",
        )
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    if first == 0x80:
        raise TlvError(
            "indefinite length (80) is not allowed in EMV",
            offset=pos,
            tag=tag_hex,
            fix="use a definite length (short form or 81/82/83)",
        )
    count = first & 0x7F
    if count > 3:
        raise TlvError(
            f"length form {first:02X} uses {count} bytes; EMV allows at most 83",
            offset=pos,
            tag=tag_hex,
            fix="use 81, 82 or 83 followed by 1-3 length bytes",
        )
    if pos + 1 + count > end:
        raise TlvError(
            f"truncated length: form {first:02X} needs {count} more byte(s)",
            offset=pos,
            tag=tag_hex,
            fix="supply the full long-form length",
        )
    return int.from_bytes(data[pos + 1 : pos + 1 + count], "big"), pos + 1 + count


def _decode(
    data: bytes, start: int, end: int, recurse: bool, allow_padding: bool, depth: int
) -> list[Tlv]:
    if depth > MAX_DEPTH:
        raise TlvError(
            f"templates nested deeper than {MAX_DEPTH}",
            offset=start,
            fix="check the data is BER-TLV; pass recurse=False to keep templates unparsed",
        )
    out: list[Tlv] = []
    pos = start
    while pos < end:
        if data[pos] in PADDING:
            if allow_padding:
                pos += 1
                continue
            raise TlvError(
                f"padding byte {data[pos]:02X} where a tag was expected",
                offset=pos,
                fix="strip the padding or decode with allow_padding=True",
            )
        at = pos
        tag, pos = _read_tag(data, pos, end)
        tag_hex = tag_to_hex(tag)
        length, pos = _read_length(data, pos, end, tag_hex)
        if pos + length > end:
            raise TlvError(
                f"length {length} runs past the end of the data ({end - pos} byte(s) left)",
                offset=at,
                tag=tag_hex,
                fix="the data is truncated or the length is wrong",
            )
        value = bytes(data[pos : pos + length])
        children = None
        if recurse and is_constructed(tag):
            children = _decode(data, pos, pos + length, recurse, allow_padding, depth + 1)
        out.append(Tlv(tag, value, children, at))
        pos += length
    return out


def decode(data: bytes, *, recurse: bool = True, allow_padding: bool = True) -> list[Tlv]:
    """Decode a sequence of BER-TLV objects; constructed templates are parsed into `children`."""
    data = bytes(data)
    return _decode(data, 0, len(data), recurse, allow_padding, 0)


def decode_flat(data: bytes) -> dict[int, bytes]:
    """Tag -> value of the first occurrence of every tag, templates included and recursed into."""
    out: dict[int, bytes] = {}
    for top in decode(data):
        for t in top.walk():
            out.setdefault(t.tag, t.value)
    return out


def _check_tag(tag: int) -> bytes:
    raw = tag_bytes(tag)
    multi = raw[0] & 0x1F == 0x1F
    ok = (
        raw[0] not in PADDING
        and len(raw) <= MAX_TAG_BYTES
        and (len(raw) == 1) != multi
        and all(b & 0x80 for b in raw[1:-1])
        and (len(raw) == 1 or not raw[-1] & 0x80)
    )
    if not ok:
        raise TlvError(
            f"{raw.hex().upper()} is not a well-formed BER tag",
            offset=0,
            tag=raw.hex().upper(),
            fix="low bits 11111 announce more tag bytes; inner bytes set b8, the last clears it",
        )
    return raw


def encode_length(n: int) -> bytes:
    """The BER length field for `n` bytes (short form below 128, else 81/82/83)."""
    if n < 0 or n > 0xFFFFFF:
        raise TlvError(
            f"length {n} cannot be encoded", offset=0, fix="EMV lengths are 0..16777215 bytes"
        )
    if n < 0x80:
        return bytes([n])
    size = (n.bit_length() + 7) // 8
    return bytes([0x80 | size]) + n.to_bytes(size, "big")


def encode(tag: int, value: bytes) -> bytes:
    """One TLV object: tag, length, value."""
    return _check_tag(tag) + encode_length(len(value)) + bytes(value)


def encode_many(items: Iterable[tuple[int, bytes] | Tlv]) -> bytes:
    """Concatenate objects; a `Tlv` with children is re-encoded from its children."""
    parts: list[bytes] = []
    for item in items:
        if isinstance(item, Tlv):
            value = encode_many(item.children) if item.children is not None else item.value
            parts.append(encode(item.tag, value))
        else:
            tag, value = item
            parts.append(encode(tag, value))
    return b"".join(parts)
