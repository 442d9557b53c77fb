"""Data Object Lists (PDOL, CDOL1/2, DDOL, TDOL, UDOL), the AFL, and AIP/AUC as named bits.

DOL data is built per EMV 4.3 Book 3 §5.4; the AFL layout is Book 3 §10.2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rig.emv import bits
from rig.emv.tlv import TlvError, is_constructed, read_tag, tag_to_hex


class DolError(ValueError):
    """A malformed DOL or DOL-related data: `offset` into the list and the `tag` concerned."""

    def __init__(self, message: str, *, offset: int, tag: str | None = None) -> None:
        self.offset = offset
        self.tag = tag
        super().__init__(f"{message} at offset {offset}" + (f" (tag {tag})" if tag else ""))


class AflError(ValueError):
    """A malformed Application File Locator: `offset` of the bad byte or entry."""

    def __init__(self, message: str, *, offset: int) -> None:
        self.offset = offset
        super().__init__(f"AFL: {message} at offset {offset}")


@dataclass(frozen=True)
class DolEntry:
    tag: int
    length: int

    @property
    def tag_hex(self) -> str:
        return tag_to_hex(self.tag)


def parse_dol(data: bytes) -> list[DolEntry]:
    """Split a DOL into (tag, length) entries; each length is a single byte (Book 3 §5.4)."""
    data = bytes(data)
    out: list[DolEntry] = []
    pos = 0
    while pos < len(data):
        try:
            tag, after = read_tag(data, pos)
        except TlvError as e:
            raise DolError(
                f"bad tag in DOL: {e.reason}; the DOL must be tag/length pairs", offset=e.offset
            ) from None
        if after >= len(data):
            raise DolError(
                "DOL ends after a tag without its length byte; add the length",
                offset=after,
                tag=tag_to_hex(tag),
            )
        out.append(DolEntry(tag, data[after]))
        pos = after + 1
    return out


def encode_dol(entries: Sequence[DolEntry | tuple[int, int]]) -> bytes:
    """The wire form of a DOL from (tag, length) entries."""
    out = bytearray()
    for e in entries:
        tag, length = (e.tag, e.length) if isinstance(e, DolEntry) else e
        if not 0 <= length <= 255:
            raise DolError(f"DOL length {length} outside 0..255", offset=len(out))
        out += bytes.fromhex(tag_to_hex(tag)) + bytes([length])
    return bytes(out)


def dol_length(dol: bytes | Sequence[DolEntry]) -> int:
    """Total length of the data a DOL asks for."""
    entries = parse_dol(dol) if isinstance(dol, bytes | bytearray) else dol
    return sum(e.length for e in entries)


def _format_of(tag: int, kernel: str | None) -> str:
    from rig.emv.dictionary import lookup

    info = lookup(tag, kernel=kernel)
    return info.format if info else "b"


def fit_value(value: bytes, length: int, fmt: str) -> bytes:
    """Pad or truncate one value to `length` by format, per Book 3 §5.4."""
    if len(value) == length:
        return bytes(value)
    if len(value) > length:
        return bytes(value[len(value) - length :]) if fmt == "n" else bytes(value[:length])
    pad = length - len(value)
    if fmt == "n":
        return bytes(pad) + bytes(value)
    if fmt == "cn":
        return bytes(value) + b"\xff" * pad
    return bytes(value) + bytes(pad)


def build_dol_data(
    dol: bytes | Sequence[DolEntry], values: Mapping[int, bytes], *, kernel: str | None = None
) -> bytes:
    """Concatenate the values a DOL names; missing or constructed tags give zeros (Book 3 §5.4)."""
    entries = parse_dol(dol) if isinstance(dol, bytes | bytearray) else dol
    out = bytearray()
    for e in entries:
        value = values.get(e.tag)
        if value is None or is_constructed(e.tag):
            out += bytes(e.length)
        else:
            out += fit_value(value, e.length, _format_of(e.tag, kernel))
    return bytes(out)


def split_dol_data(dol: bytes | Sequence[DolEntry], data: bytes) -> dict[int, bytes]:
    """Cut DOL-related data (e.g. a GPO or GENERATE AC command body) back into its values."""
    entries = parse_dol(dol) if isinstance(dol, bytes | bytearray) else dol
    need = sum(e.length for e in entries)
    if len(data) != need:
        raise DolError(
            f"DOL-related data is {len(data)} bytes but the DOL asks for {need}",
            offset=min(len(data), need),
        )
    out: dict[int, bytes] = {}
    pos = 0
    for e in entries:
        out.setdefault(e.tag, bytes(data[pos : pos + e.length]))
        pos += e.length
    return out


@dataclass(frozen=True)
class AflEntry:
    sfi: int
    first: int
    last: int
    oda_count: int

    def records(self) -> list[int]:
        return list(range(self.first, self.last + 1))

    def oda_records(self) -> list[int]:
        """Records whose data takes part in offline data authentication."""
        return list(range(self.first, self.first + self.oda_count))


def parse_afl(data: bytes) -> list[AflEntry]:
    """Split an AFL (tag 94) into 4-byte entries and validate each (Book 3 §10.2)."""
    data = bytes(data)
    if not data or len(data) % 4:
        raise AflError(
            f"length {len(data)} is not a positive multiple of 4; each entry is 4 bytes",
            offset=len(data) - len(data) % 4,
        )
    out: list[AflEntry] = []
    for pos in range(0, len(data), 4):
        b1, first, last, oda = data[pos : pos + 4]
        sfi = b1 >> 3
        if b1 & 0x07 or not 1 <= sfi <= 30:
            raise AflError(
                f"byte {b1:02X} must hold an SFI 1..30 in bits 8-4 with bits 3-1 zero",
                offset=pos,
            )
        if first == 0:
            raise AflError("first record number is 0; records count from 1", offset=pos + 1)
        if last < first:
            raise AflError(f"last record {last} is before first record {first}", offset=pos + 2)
        if oda > last - first + 1:
            raise AflError(
                f"{oda} records for ODA but the entry covers only {last - first + 1}",
                offset=pos + 3,
            )
        out.append(AflEntry(sfi, first, last, oda))
    return out


def encode_afl(entries: Sequence[AflEntry]) -> bytes:
    """The wire form of an AFL."""
    return b"".join(bytes([e.sfi << 3, e.first, e.last, e.oda_count]) for e in entries)


def decode_aip(value: bytes) -> list[str]:
    """Named capabilities set in an Application Interchange Profile (82)."""
    return bits.decode(0x82, value)


def decode_auc(value: bytes) -> list[str]:
    """Named permissions set in an Application Usage Control (9F07)."""
    return bits.decode(0x9F07, value)
