"""The EMV tag dictionary (data in tags.yaml) and human-readable rendering of decoded TLVs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from rig.emv import bits
from rig.emv.tlv import Tlv, TlvError, read_tag, tag_to_hex

DATA_FILE = Path(__file__).with_name("tags.yaml")
FORMATS = frozenset({"b", "n", "an", "ans", "cn", "var"})
SOURCES = frozenset({"ICC", "terminal", "issuer"})
SHOWS = frozenset(
    {"date", "time", "amount", "binamount", "currency", "country", "bits", "dol", "afl"}
    | {"cvmlist", "tags", "iad", "ascii"}
)
_KEYS = frozenset(
    {"name", "format", "length", "source", "template", "show", "sensitive", "kernel", "variants"}
)


class DictionaryError(ValueError):
    """tags.yaml holds an entry that breaks the schema: names the tag and the field."""


@dataclass(frozen=True)
class TagInfo:
    tag: int
    name: str
    format: str
    min_length: int
    max_length: int
    source: str
    templates: tuple[int, ...] = ()
    show: str | None = None
    sensitive: bool = False
    kernel: str | None = None
    variants: tuple[TagInfo, ...] = ()

    @property
    def tag_hex(self) -> str:
        return tag_to_hex(self.tag)

    def length_ok(self, n: int) -> bool:
        return self.min_length <= n <= self.max_length


def _entry(tag: int, raw: Any, where: str, kernel: str | None = None) -> TagInfo:
    if not isinstance(raw, dict):
        raise DictionaryError(f"{where}: entry must be a mapping")
    unknown = set(raw) - _KEYS
    if unknown:
        raise DictionaryError(
            f"{where}: unknown key(s) {sorted(map(str, unknown))}; quote names holding commas"
        )

    def need(key: str, allowed: frozenset[str] | None = None) -> Any:
        if key not in raw:
            raise DictionaryError(f"{where}: missing '{key}'")
        if allowed is not None and raw[key] not in allowed:
            raise DictionaryError(f"{where}: '{key}' is {raw[key]!r}; use one of {sorted(allowed)}")
        return raw[key]

    length = need("length")
    if isinstance(length, int):
        lo = hi = length
    elif isinstance(length, list) and len(length) == 2 and all(isinstance(v, int) for v in length):
        lo, hi = length
    else:
        raise DictionaryError(f"{where}: 'length' must be N or [min, max], not {length!r}")
    show = raw.get("show")
    if show is not None and show not in SHOWS:
        raise DictionaryError(f"{where}: 'show' is {show!r}; use one of {sorted(SHOWS)}")
    variants = tuple(
        _entry(tag, v, f"{where} variant {i}", v.get("kernel") if isinstance(v, dict) else None)
        for i, v in enumerate(raw.get("variants", []))
    )
    return TagInfo(
        tag=tag,
        name=str(need("name")),
        format=need("format", FORMATS),
        min_length=lo,
        max_length=hi,
        source=need("source", SOURCES),
        templates=tuple(int(str(t), 16) for t in raw.get("template", [])),
        show=show,
        sensitive=bool(raw.get("sensitive", False)),
        kernel=kernel,
        variants=variants,
    )


@cache
def load(path: Path = DATA_FILE) -> dict[int, TagInfo]:
    """Parse and validate the dictionary once; later calls reuse it."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("tags"), dict):
        raise DictionaryError(f"{path}: expected a top-level 'tags' mapping")
    out: dict[int, TagInfo] = {}
    for key, raw in doc["tags"].items():
        try:
            tag = int(str(key), 16)
        except ValueError:
            raise DictionaryError(f"{path}: key {key!r} is not a hex tag") from None
        out[tag] = _entry(tag, raw, f"{path} tag {key}")
    return out


def lookup(tag: int, *, kernel: str | None = None) -> TagInfo | None:
    """What the dictionary knows of `tag`; `kernel` (e.g. 'mastercard') picks a variant meaning."""
    info = load().get(tag)
    if info is not None and kernel is not None:
        for v in info.variants:
            if v.kernel == kernel:
                return v
    return info


def mask_pan(digits: str) -> str:
    """First six and last four digits kept, the rest as '*'."""
    if len(digits) <= 10:
        return "*" * len(digits)
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def _bcd(value: bytes) -> str | None:
    digits = value.hex().upper()
    return digits if digits.isdigit() else None


def _cn(value: bytes) -> str | None:
    digits = value.hex().upper().rstrip("F")
    return digits if digits.isdigit() else None


def _date(value: bytes) -> str:
    d = _bcd(value)
    if d is None or len(d) != 6:
        raise ValueError("not a BCD YYMMDD date")
    yy, mm, dd = int(d[:2]), int(d[2:4]), int(d[4:])
    year = 2000 + yy if yy < 50 else 1900 + yy
    return date(year, mm, dd).isoformat()


def _time(value: bytes) -> str:
    d = _bcd(value)
    if d is None or len(d) != 6 or int(d[:2]) > 23 or int(d[2:4]) > 59 or int(d[4:]) > 59:
        raise ValueError("not a BCD HHMMSS time")
    return f"{d[:2]}:{d[2:4]}:{d[4:]}"


def _amount(minor: int, exponent: int | None) -> str:
    if not exponent:
        return str(minor)
    whole, frac = divmod(minor, 10**exponent)
    return f"{whole}.{frac:0{exponent}d}"


def _tag_list(value: bytes) -> list[str]:
    out, pos = [], 0
    while pos < len(value):
        tag, pos = read_tag(value, pos)
        info = lookup(tag)
        out.append(f"{tag_to_hex(tag)} {info.name if info else '(unknown)'}")
    return out


def _ascii(value: bytes) -> str | None:
    return value.decode("ascii") if all(0x20 <= b < 0x7F for b in value) else None


def _interpret(info: TagInfo, value: bytes, exponent: int | None) -> tuple[str, list[str]]:
    """A one-line reading of the value and, for structured values, detail lines."""
    from rig.emv import cvm, dol

    show = info.show
    if show == "date":
        return _date(value), []
    if show == "time":
        return _time(value), []
    if show in ("amount", "currency", "country"):
        d = _bcd(value)
        if d is None:
            raise ValueError("not BCD")
        return (_amount(int(d), exponent) if show == "amount" else d.lstrip("0") or "0"), []
    if show == "binamount":
        return _amount(int.from_bytes(value, "big"), exponent), []
    if show in ("bits", "iad"):
        names = bits.decode(info.tag, value, labels=True)
        return f"{len(names)} item(s)", names
    if show == "dol":
        entries = dol.parse_dol(value)
        lines = []
        for e in entries:
            known = lookup(e.tag)
            lines.append(f"{e.tag_hex} [{e.length}] {known.name if known else '(unknown)'}")
        return f"{len(entries)} entries, {sum(e.length for e in entries)} bytes", lines
    if show == "afl":
        afl = dol.parse_afl(value)
        lines = [f"SFI {a.sfi}: records {a.first}-{a.last}, {a.oda_count} for ODA" for a in afl]
        return f"{len(afl)} entries", lines
    if show == "cvmlist":
        c = cvm.parse_cvm_list(value)
        return f"X={c.x} Y={c.y}, {len(c.rules)} rule(s)", [r.describe() for r in c.rules]
    if show == "tags":
        lines = _tag_list(value)
        return f"{len(lines)} tag(s)", lines
    if info.format == "n":
        d = _bcd(value)
        if d is None:
            raise ValueError("not BCD")
        return d, []
    if info.format == "cn":
        d = _cn(value)
        if d is None:
            raise ValueError("not compressed numeric")
        return d, []
    if show == "ascii":
        text = _ascii(value)
        return (repr(text) if text else ""), []
    if info.format in ("an", "ans"):
        text = _ascii(value)
        if text is None:
            raise ValueError("not printable ASCII")
        return repr(text), []
    return "", []


def _masked(info: TagInfo, value: bytes) -> tuple[str, str]:
    """(value shown, reading) for a sensitive tag: PANs as first6/last4, the rest withheld."""
    if info.tag == 0x5A:
        digits = _cn(value) or ""
        return mask_pan(digits), mask_pan(digits)
    if info.tag in (0x57, 0x9F6B) and info.format == "b":
        pan = value.hex().upper().split("D", 1)[0]
        return f"{mask_pan(pan)}D...", f"PAN {mask_pan(pan)}, rest withheld"
    return f"<{len(value)} bytes withheld>", "withheld"


def _exponent(tlvs: Iterable[Tlv]) -> int | None:
    for top in tlvs:
        hit = top.find(0x5F36)
        if hit is not None and len(hit.value) == 1 and _bcd(hit.value):
            return int(hit.value.hex())
    return None


def describe(
    tlvs: Iterable[Tlv], *, kernel: str | None = None, reveal: bool = False
) -> list[dict[str, Any]]:
    """Decoded TLVs as dicts with names and readings; PAN and track data masked unless `reveal`."""
    tlvs = list(tlvs)
    exponent = _exponent(tlvs)

    def one(t: Tlv) -> dict[str, Any]:
        info = lookup(t.tag, kernel=kernel)
        out: dict[str, Any] = {
            "tag": t.tag_hex,
            "name": info.name if info else "Unknown tag",
            "offset": t.offset,
            "length": len(t.value),
        }
        warnings: list[str] = []
        if info is not None:
            out["format"] = info.format
            out["source"] = info.source
            if not info.length_ok(len(t.value)):
                warnings.append(
                    f"length {len(t.value)} outside {info.min_length}..{info.max_length}"
                )
        if t.children is not None:
            out["children"] = [one(c) for c in t.children]
        elif info is not None and info.sensitive and not reveal:
            out["value"], out["text"] = _masked(info, t.value)
        else:
            out["value"] = t.value.hex().upper()
            if info is not None:
                try:
                    text, details = _interpret(info, t.value, exponent)
                except (ValueError, TlvError) as e:
                    warnings.append(f"cannot interpret as {info.show or info.format}: {e}")
                else:
                    if text:
                        out["text"] = text
                    if details:
                        out["details"] = details
        if warnings:
            out["warnings"] = warnings
        return out

    return [one(t) for t in tlvs]


def render_tree(tlvs: Iterable[Tlv], *, kernel: str | None = None, reveal: bool = False) -> str:
    """An indented text tree of `describe` output for the terminal."""
    lines: list[str] = []

    def walk(items: list[dict[str, Any]], depth: int) -> None:
        pad = "  " * depth
        for d in items:
            head = f"{pad}{d['tag']} {d['name']} [{d['length']}]"
            if "children" in d:
                lines.append(head)
                walk(d["children"], depth + 1)
                continue
            value = d.get("value", "")
            text = d.get("text")
            lines.append(f"{head} {value}" + (f" = {text}" if text and text != value else ""))
            lines.extend(f"{pad}    - {x}" for x in d.get("details", []))
            lines.extend(f"{pad}    ! {w}" for w in d.get("warnings", []))

    walk(describe(tlvs, kernel=kernel, reveal=reveal), 0)
    return "\n".join(lines)
