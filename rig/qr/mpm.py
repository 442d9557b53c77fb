"""EMVCo merchant-presented QR (EMV QRCPS Merchant-Presented Mode v1.1): parse, build, validate.

A payload is a run of data objects `IIllvalue` (2-digit id, 2-digit length in characters); some
ids are templates holding the same structure. The CRC (ID 63) is CRC-16/CCITT-FALSE over the
UTF-8 bytes of everything up to and including "6304", in upper-case hex. Positions are character
offsets in the payload.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MANDATORY = ("00", "52", "53", "58", "59", "60", "63")
ACCOUNT_IDS = frozenset(f"{i:02d}" for i in range(2, 52))
TEMPLATE_IDS = frozenset(
    [f"{i:02d}" for i in range(26, 52)] + ["62", "64"] + [f"{i:02d}" for i in range(80, 100)]
)
"""Ids whose value is itself a list of data objects."""

NAMES = {
    "00": "Payload Format Indicator",
    "01": "Point of Initiation Method",
    "52": "Merchant Category Code",
    "53": "Transaction Currency",
    "54": "Transaction Amount",
    "55": "Tip or Convenience Indicator",
    "56": "Value of Convenience Fee Fixed",
    "57": "Value of Convenience Fee Percentage",
    "58": "Country Code",
    "59": "Merchant Name",
    "60": "Merchant City",
    "61": "Postal Code",
    "62": "Additional Data Field Template",
    "63": "CRC",
    "64": "Merchant Information - Language Template",
}
ADDITIONAL_NAMES = {
    "01": "Bill Number",
    "02": "Mobile Number",
    "03": "Store Label",
    "04": "Loyalty Number",
    "05": "Reference Label",
    "06": "Customer Label",
    "07": "Terminal Label",
    "08": "Purpose of Transaction",
    "09": "Additional Consumer Data Request",
}
MAX_LEN = {"59": 25, "60": 15, "61": 10, "54": 13, "56": 13, "57": 5, "01": 2, "00": 2}

_AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?\Z")
_PERCENT = re.compile(r"[0-9]{1,2}(\.[0-9]{1,2})?\Z|100(\.0{1,2})?\Z")


class MpmError(ValueError):
    """Unparseable payload: `position` (character offset), `id` of the object, and the fix."""

    def __init__(
        self, message: str, *, position: int, id: str | None = None, fix: str = ""
    ) -> None:
        self.position = position
        self.id = id
        self.fix = fix
        self.reason = message
        where = f"at position {position}" + (f" (ID {id})" if id else "")
        super().__init__(f"{message} {where}" + (f"; {fix}" if fix else ""))


@dataclass(frozen=True)
class Problem:
    """One validation finding: where (character offset, id path), what, and how to fix it."""

    position: int
    id: str | None
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"position {self.position}" + (f", ID {self.id}" if self.id else "")
        return f"{where}: {self.message} ({self.fix})"


@dataclass
class DataObject:
    """One parsed `IIllvalue` object; `children` set for templates that parsed."""

    id: str
    value: str
    position: int
    children: list[DataObject] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "position": self.position}
        if self.children is not None:
            out["children"] = [c.to_dict() for c in self.children]
        else:
            out["value"] = self.value
        return out


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def crc_of(text_through_6304: str) -> str:
    """Upper-case 4-hex CRC of a payload prefix ending in '6304'."""
    return f"{crc16_ccitt_false(text_through_6304.encode('utf-8')):04X}"


def _scan(
    text: str, base: int, path: str, problems: list[Problem]
) -> tuple[list[DataObject], bool]:
    """Split `text` into objects; on a structural fault record it and stop (False)."""
    objs: list[DataObject] = []
    pos = 0
    while pos < len(text):
        at = base + pos
        head = text[pos : pos + 4]
        if len(head) < 4:
            problems.append(
                Problem(
                    at,
                    path or None,
                    f"{len(head)} stray characters {head!r} at the end",
                    "each object needs a 2-digit ID and a 2-digit length",
                )
            )
            return objs, False
        oid, olen = head[:2], head[2:]
        full = f"{path}.{oid}" if path else oid
        if not (oid.isascii() and oid.isdigit()):
            problems.append(
                Problem(
                    at,
                    path or None,
                    f"ID {oid!r} is not two digits",
                    "IDs are 00-99; check the preceding object's length",
                )
            )
            return objs, False
        if not (olen.isascii() and olen.isdigit()):
            problems.append(
                Problem(
                    at + 2,
                    full,
                    f"length {olen!r} is not two digits",
                    "lengths are 01-99 characters",
                )
            )
            return objs, False
        n = int(olen)
        value = text[pos + 4 : pos + 4 + n]
        if len(value) < n:
            problems.append(
                Problem(
                    at + 2,
                    full,
                    f"length {n} runs past the end ({len(value)} characters left)",
                    "the length counts characters of the value",
                )
            )
            return objs, False
        obj = DataObject(oid, value, at)
        if oid in TEMPLATE_IDS and not path:
            sub_problems: list[Problem] = []
            children, ok = _scan(value, at + 4, full, sub_problems)
            if ok:
                obj.children = children
            problems.extend(sub_problems)
        objs.append(obj)
        pos += 4 + n
    return objs, True


def parse(payload: str) -> list[DataObject]:
    """Parse a payload into data objects (templates with children); MpmError if unparseable."""
    if not isinstance(payload, str):
        raise MpmError(f"payload is {type(payload).__name__}, not text", position=0)
    problems: list[Problem] = []
    objs, _ = _scan(payload, 0, "", problems)
    if problems:
        p = problems[0]
        raise MpmError(p.message, position=p.position, id=p.id, fix=p.fix)
    if not objs:
        raise MpmError("empty payload", position=0, fix="a payload starts with 000201")
    return objs


def to_dict(objs: Sequence[DataObject]) -> dict[str, Any]:
    """id -> value, templates as nested dicts (first occurrence of each id)."""
    out: dict[str, Any] = {}
    for o in objs:
        out.setdefault(o.id, to_dict(o.children) if o.children is not None else o.value)
    return out


FieldValue = str | Mapping[str, "FieldValue"]


def _emit(fields: Mapping[str, FieldValue], path: str) -> str:
    parts = []
    for oid, value in fields.items():
        full = f"{path}.{oid}" if path else oid
        if not (isinstance(oid, str) and len(oid) == 2 and oid.isdigit()):
            raise MpmError(f"ID {oid!r} is not two digits", position=0, id=full)
        text = _emit(value, full) if isinstance(value, Mapping) else value
        if not isinstance(text, str) or not 0 < len(text) <= 99:
            raise MpmError(
                "value must be 1-99 characters of text",
                position=0,
                id=full,
                fix="shorten it or split it over sub-IDs",
            )
        parts.append(f"{oid}{len(text):02d}{text}")
    return "".join(parts)


def build(fields: Mapping[str, FieldValue]) -> str:
    """Payload from id -> value (mappings for templates): 00 first, CRC (63) appended last."""
    body = {k: v for k, v in fields.items() if k not in ("00", "63")}
    text = _emit({"00": fields.get("00", "01"), **body}, "") + "6304"
    return text + crc_of(text)


def merchant_payload(
    *,
    merchant_name: str,
    city: str,
    mcc: str,
    currency: str,
    country: str = "CN",
    amount: str | None = None,
    account_gui: str | None = None,
    account_id: str | None = None,
    account_tag: str = "26",
    reference: str | None = None,
) -> str:
    """A typical MPM payload: static without amount, dynamic (01=12) with one."""
    fields: dict[str, FieldValue] = {"00": "01", "01": "12" if amount else "11"}
    if account_gui or account_id:
        account: dict[str, FieldValue] = {"00": account_gui or ""}
        if account_id:
            account["01"] = account_id
        fields[account_tag] = account
    fields |= {"52": mcc, "53": currency}
    if amount:
        fields["54"] = amount
    fields |= {"58": country, "59": merchant_name, "60": city}
    if reference:
        fields["62"] = {"05": reference}
    return build(fields)


def _check_template(o: DataObject, out: list[Problem]) -> None:
    seen: set[str] = set()
    for c in o.children or ():
        if c.id in seen:
            out.append(
                Problem(
                    c.position,
                    f"{o.id}.{c.id}",
                    "duplicate sub-ID",
                    "each sub-ID appears once in a template",
                )
            )
        seen.add(c.id)
    ids = {c.id: c for c in o.children or ()}
    if o.id in ACCOUNT_IDS or "80" <= o.id <= "99":
        if "00" not in ids:
            out.append(
                Problem(
                    o.position,
                    o.id,
                    "template lacks sub-ID 00 (globally unique ID)",
                    "put the GUID, AID or reverse domain name in sub-ID 00",
                )
            )
    elif o.id == "62":
        for c in o.children or ():
            if "01" <= c.id <= "09" and len(c.value) > 25:
                out.append(
                    Problem(
                        c.position,
                        f"62.{c.id}",
                        "value longer than 25 characters",
                        "additional data values are 1-25 characters",
                    )
                )
    elif o.id == "64":
        for sid, what in (("00", "language preference"), ("01", "alternate merchant name")):
            if sid not in ids:
                out.append(
                    Problem(
                        o.position,
                        "64",
                        f"language template lacks {sid} ({what})",
                        "64 needs 00 (ISO 639 two letters) and 01",
                    )
                )
        lang = ids.get("00")
        if lang is not None and not (len(lang.value) == 2 and lang.value.isalpha()):
            out.append(
                Problem(
                    lang.position,
                    "64.00",
                    "language is not two letters",
                    "use an ISO 639-1 code such as ZH",
                )
            )


def validate(payload: str) -> list[Problem]:
    """Every problem found in `payload` (empty list when it is valid); never raises."""
    if not isinstance(payload, str):
        return [Problem(0, None, f"payload is {type(payload).__name__}", "pass the QR text")]
    if not payload:
        return [Problem(0, None, "empty payload", "a payload starts with 000201")]
    problems: list[Problem] = []
    objs, complete = _scan(payload, 0, "", problems)
    ids: dict[str, DataObject] = {}
    for o in objs:
        if o.id in ids:
            problems.append(Problem(o.position, o.id, "duplicate ID", "each ID appears once"))
        ids.setdefault(o.id, o)
        if o.children is not None:
            _check_template(o, problems)
    if not objs or objs[0].id != "00":
        problems.append(
            Problem(
                0,
                "00",
                "payload does not start with ID 00",
                "the payload format indicator 000201 comes first",
            )
        )
    if "00" in ids and ids["00"].value != "01":
        problems.append(
            Problem(
                ids["00"].position,
                "00",
                f"format indicator {ids['00'].value!r}",
                "ID 00 must be '01'",
            )
        )
    for mid in MANDATORY:
        if mid not in ids and complete:
            problems.append(
                Problem(
                    len(payload), mid, f"mandatory ID {mid} ({NAMES[mid]}) missing", f"add ID {mid}"
                )
            )
    if complete and not any(i in ACCOUNT_IDS for i in ids):
        problems.append(
            Problem(
                0,
                None,
                "no merchant account information (IDs 02-51)",
                "add at least one merchant account information object",
            )
        )
    _check_values(ids, problems)
    _check_crc(payload, objs, ids, complete, problems)
    return sorted(problems, key=lambda p: p.position)


def _check_values(ids: dict[str, DataObject], out: list[Problem]) -> None:
    def bad(oid: str, message: str, fix: str) -> None:
        out.append(Problem(ids[oid].position, oid, message, fix))

    def val(oid: str) -> str | None:
        return ids[oid].value if oid in ids else None

    for oid, limit in MAX_LEN.items():
        v = val(oid)
        if v is not None and len(v) > limit:
            bad(oid, f"{NAMES[oid]} is {len(v)} characters", f"at most {limit}")
    if (v := val("01")) is not None and v not in ("11", "12"):
        bad("01", f"point of initiation {v!r}", "use 11 (static) or 12 (dynamic)")
    if (v := val("52")) is not None and not (len(v) == 4 and v.isascii() and v.isdigit()):
        bad("52", f"merchant category code {v!r}", "ISO 18245 MCC: 4 digits")
    if (v := val("53")) is not None and not (len(v) == 3 and v.isascii() and v.isdigit()):
        bad("53", f"currency {v!r} is not ISO 4217 numeric", "3 digits, e.g. 156 for CNY")
    if (v := val("54")) is not None and not (_AMOUNT.match(v) and v.isascii()):
        bad("54", f"amount {v!r}", "digits with an optional '.' and decimals, e.g. 23.72")
    tip = val("55")
    if tip is not None and tip not in ("01", "02", "03"):
        bad("55", f"tip indicator {tip!r}", "use 01 (prompt), 02 (fixed fee) or 03 (percentage)")
    if (v := val("56")) is not None:
        if tip != "02":
            bad("56", "fixed fee present without 55=02", "set 55 to 02 or remove 56")
        if not _AMOUNT.match(v):
            bad("56", f"fee {v!r}", "an amount such as 1.00")
    elif tip == "02":
        bad("55", "55=02 without 56", "add 56 with the fixed fee")
    if (v := val("57")) is not None:
        if tip != "03":
            bad("57", "percentage fee present without 55=03", "set 55 to 03 or remove 57")
        if not _PERCENT.match(v):
            bad("57", f"percentage {v!r}", "a value from 00.01 to 99.99")
    elif tip == "03":
        bad("55", "55=03 without 57", "add 57 with the percentage")
    v = val("58")
    if v is not None and not (len(v) == 2 and v.isascii() and v.isalpha() and v.isupper()):
        bad("58", f"country code {v!r}", "ISO 3166-1 alpha-2 in capitals, e.g. CN")


def _check_crc(
    payload: str,
    objs: list[DataObject],
    ids: dict[str, DataObject],
    complete: bool,
    out: list[Problem],
) -> None:
    crc = ids.get("63")
    if crc is None:
        return
    if crc is not objs[-1] or not complete:
        out.append(
            Problem(
                crc.position, "63", "CRC is not the last object", "put 6304 and the CRC at the end"
            )
        )
    if len(crc.value) != 4:
        out.append(Problem(crc.position, "63", f"CRC length {len(crc.value)}", "ID 63 is 6304XXXX"))
        return
    expected = crc_of(payload[: crc.position + 4])
    if crc.value != expected:
        if crc.value.upper() == expected:
            out.append(
                Problem(
                    crc.position + 4,
                    "63",
                    "CRC in lower case",
                    f"write it in upper case: {expected}",
                )
            )
        else:
            out.append(
                Problem(
                    crc.position + 4,
                    "63",
                    f"CRC {crc.value!r} does not match",
                    f"the CRC of this payload is {expected}",
                )
            )


def crc_ok(payload: str) -> bool:
    """True when the payload ends in 6304 + the correct upper-case CRC."""
    return (
        isinstance(payload, str)
        and len(payload) >= 8
        and payload[-8:-4] == "6304"
        and crc_of(payload[:-4]) == payload[-4:]
    )
