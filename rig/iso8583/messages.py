"""Encode, decode, build and mask messages of the posrig ISO 8583 dialect.

Documents are pyiso8583 dicts: field number strings to str values ('t' is the MTI, binary
fields are upper-case hex). `encode`/`decode` stay a thin layer over pyiso8583 so the host's hot
path pays little for the friendlier errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import iso8583

from rig.emv import tlv
from rig.iso8583.spec import (
    DATA_FIELDS,
    NUMERIC_FIELDS,
    SENSITIVE_FIELDS,
    SPEC,
    TRACK2_FIELD,
    field_key,
    field_name,
)

Doc = dict[str, str]

_DEFINED = frozenset(k for k in SPEC if k.isdigit())
_NUMERIC = tuple(k for k in NUMERIC_FIELDS if k != "t")
_TRACK2_CHARS = frozenset("0123456789D")


class Iso8583Error(ValueError):
    """A message that cannot be encoded or decoded: `field`, byte `position` (decode) and a fix."""

    def __init__(
        self, message: str, *, field: str | None = None, position: int | None = None, fix: str = ""
    ) -> None:
        self.field = field
        self.position = position
        self.reason = message
        self.fix = fix
        where = []
        if field is not None:
            where.append(f"field {field} ({field_name(field)})" if field.isdigit() else field)
        if position is not None:
            where.append(f"byte {position}")
        text = message + (f" at {', '.join(where)}" if where else "")
        super().__init__(text + (f"; {fix}" if fix else ""))


def _fix_for(field: str) -> str:
    spec = SPEC.get(field)
    if spec is None:
        return "the posrig dialect has no such field; see docs/iso8583.md"
    return f"the dialect wants {spec.get('fmt', '?')} for {spec['desc']} (docs/iso8583.md)"


def encode(doc: Mapping[str, str]) -> bytes:
    """Serialise a message document to bytes (bitmaps computed); Iso8583Error names the field."""
    try:
        raw, _ = iso8583.encode(dict(doc), SPEC)
    except iso8583.EncodeError as e:
        raise Iso8583Error(e.msg, field=e.field, fix=_fix_for(e.field)) from None
    except (KeyError, TypeError, AttributeError, UnboundLocalError, ValueError):
        raise _explain_encode(doc) from None
    return bytes(raw)


def _explain_encode(doc: Mapping[str, Any]) -> Iso8583Error:
    if not isinstance(doc, Mapping):
        return Iso8583Error(f"a message must be a dict, not {type(doc).__name__}")
    for key, value in doc.items():
        if not isinstance(key, str):
            return Iso8583Error(f"field key {key!r} is not a string", fix="use '2', '39', 't'")
        if key.isdigit() and key not in _DEFINED:
            return Iso8583Error("field not defined", field=key, fix=_fix_for(key))
        if not isinstance(value, str):
            return Iso8583Error(
                f"value is {type(value).__name__}, not str",
                field=key,
                fix="pass every value as a string (binary fields as hex)",
            )
    return Iso8583Error("message cannot be encoded", fix="check it against docs/iso8583.md")


def decode(raw: bytes) -> Doc:
    """Parse bytes into a message document; Iso8583Error names the field and byte position."""
    try:
        doc, _ = iso8583.decode(raw, SPEC)
    except iso8583.DecodeError as e:
        raise Iso8583Error(e.msg, field=e.field, position=e.pos, fix=_fix_for(e.field)) from None
    except KeyError as e:
        raise _undefined_field(raw, str(e.args[0])) from None
    except TypeError:
        raise Iso8583Error(f"expected bytes, got {type(raw).__name__}") from None
    if not doc["t"].isdigit():
        raise Iso8583Error("MTI is not BCD digits", field="t", position=0, fix="MTI is n4 BCD")
    if len(doc.get("1", "")) > 16:
        raise Iso8583Error(
            "secondary bitmap has bit 65 set (tertiary bitmap)",
            field="1",
            position=10,
            fix="the posrig dialect has fields 1-128 only; clear bit 65",
        )
    for key in _NUMERIC:
        value = doc.get(key)
        if value is not None and not value.isdigit() and value:
            raise Iso8583Error("non-decimal BCD digits", field=key, fix=_fix_for(key))
    track2 = doc.get(TRACK2_FIELD)
    if track2 and not _TRACK2_CHARS.issuperset(track2):
        raise Iso8583Error("track 2 has nibbles other than 0-9 and D", field="35")
    return doc


def _undefined_field(raw: bytes, key: str) -> Iso8583Error:
    """Where the bytes name a field the dialect lacks: decode again to find its position."""
    spec = dict(SPEC)
    stub = {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 0}
    for n in range(2, 193):
        spec.setdefault(str(n), stub)
    position = None
    try:
        _, enc = iso8583.decode(raw, spec)
    except iso8583.DecodeError as e:
        enc = e.doc_enc
    order = ["t", "p", "1", *sorted((k for k in enc if k.isdigit() and k != "1"), key=int)]
    position = 0
    for k in order:
        if k == key:
            break
        if k in enc:
            position += len(enc[k]["len"]) + len(enc[k]["data"])
    return Iso8583Error(
        "bitmap announces a field the posrig dialect does not define",
        field=key,
        position=position,
        fix="clear that bitmap bit or add the field to rig/iso8583/spec.py",
    )


# ---- DE55 and private subfields -------------------------------------------------------------


def de55_encode(tags: Mapping[int, bytes]) -> str:
    """BER-TLV of EMV tags as the hex string DE55 carries (order kept)."""
    try:
        return tlv.encode_many(tags.items()).hex().upper()
    except tlv.TlvError as e:
        raise Iso8583Error(f"DE55 tag cannot be encoded: {e}", field="55") from None


def de55_decode(value: str | bytes) -> dict[int, bytes]:
    """Tag -> value of the top-level TLVs in DE55 (hex string or bytes)."""
    try:
        data = bytes.fromhex(value) if isinstance(value, str) else bytes(value)
    except ValueError:
        raise Iso8583Error("DE55 is not hex", field="55", fix="binary fields are hex") from None
    try:
        return {t.tag: t.value for t in tlv.decode(data, recurse=False)}
    except tlv.TlvError as e:
        raise Iso8583Error(
            f"DE55 is not BER-TLV: {e.reason}", field="55", position=e.offset, fix=str(e)
        ) from None


def private_encode(subfields: Mapping[str, str]) -> str:
    """The TLV-ish layout of DE48/DE62: 2-char id, 3-digit length, value; repeated."""
    parts = []
    for sid, value in subfields.items():
        if len(sid) != 2 or not sid.isalnum() or len(value) > 999:
            raise Iso8583Error(
                f"bad private subfield {sid!r}", fix="ids are 2 letters/digits, values <= 999 chars"
            )
        parts.append(f"{sid}{len(value):03d}{value}")
    return "".join(parts)


def private_decode(value: str, field: str = "48") -> dict[str, str]:
    """Parse DE48/DE62 subfields; Iso8583Error gives the character offset of the fault."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(value):
        head = value[pos : pos + 5]
        if len(head) < 5 or not head[2:].isdigit():
            raise Iso8583Error(
                f"subfield header {head!r} is not id(2) + length(3 digits)",
                field=field,
                position=pos,
                fix="private subfields are IIlllvalue",
            )
        end = pos + 5 + int(head[2:])
        if end > len(value):
            raise Iso8583Error(
                f"subfield {head[:2]} runs past the end ({end} > {len(value)})",
                field=field,
                position=pos,
            )
        out[head[:2]] = value[pos + 5 : end]
        pos = end
    return out


QR_SUBFIELDS = {
    "01": "qr_mode",
    "02": "cpm_token",
    "03": "order_id",
    "04": "order_status",
    "05": "wallet",
}
"""DE48 subfields for QR payments (docs/iso8583.md)."""

KEY_SUBFIELDS = {"K1": "key_type", "K2": "key_under_kek", "K3": "kcv"}
"""DE48 subfields for key exchange (0800/0810 with DE70=161)."""

PREPAID_SUBFIELDS = {
    "01": "purse_id",
    "02": "txn_counter",
    "03": "balance",
    "04": "txn_type",
    "05": "mac1",
    "06": "mac2",
    "07": "tac",
    "08": "terminal_txn_no",
}
"""DE62 subfields for prepaid / stored-value cards."""


# ---- builders ------------------------------------------------------------------------------


def _fields(doc: Doc, extra: Mapping[str, Any]) -> Doc:
    for name, value in extra.items():
        if value is not None:
            doc[field_key(name)] = str(value)
    return doc


def _stamp(now: datetime | None) -> tuple[str, str, str]:
    now = now or datetime.now(UTC)
    return now.strftime("%m%d%H%M%S"), now.strftime("%H%M%S"), now.strftime("%m%d")


def _base(mti: str, stan: int | str, terminal_id: str, now: datetime | None) -> Doc:
    de7, de12, de13 = _stamp(now)
    return {
        "t": mti,
        "7": de7,
        "11": f"{int(stan):06d}",
        "12": de12,
        "13": de13,
        "41": terminal_id,
    }


def network_management(
    code: str,
    *,
    stan: int | str,
    terminal_id: str,
    merchant_id: str | None = None,
    now: datetime | None = None,
    **fields: Any,
) -> Doc:
    """0800 with DE70 `code` (001 sign-on, 301 echo, 161 key exchange)."""
    doc = _base("0800", stan, terminal_id, now)
    doc["70"] = code
    return _fields(doc, {"merchant_id": merchant_id, **fields})


def sign_on(**kw: Any) -> Doc:
    """0800 sign-on (DE70 001)."""
    return network_management("001", **kw)


def echo_test(**kw: Any) -> Doc:
    """0800 echo / line test (DE70 301)."""
    return network_management("301", **kw)


def key_exchange(*, key_type: str = "PIN", **kw: Any) -> Doc:
    """0800 key exchange request (DE70 161); DE48 K1 names the key wanted (PIN, MAC, DATA)."""
    return network_management("161", additional_data=private_encode({"K1": key_type}), **kw)


def _card(
    mti: str,
    processing_code: str,
    *,
    amount: int | None,
    stan: int | str,
    terminal_id: str,
    merchant_id: str,
    pan: str | None = None,
    currency: str = "156",
    entry_mode: str = "051",
    condition_code: str = "00",
    now: datetime | None = None,
    icc: Mapping[int, bytes] | str | None = None,
    **fields: Any,
) -> Doc:
    doc = _base(mti, stan, terminal_id, now)
    doc["3"] = processing_code
    if amount is not None:
        doc["4"] = f"{amount:012d}"
    doc["22"] = entry_mode
    doc["25"] = condition_code
    doc["42"] = merchant_id
    doc["49"] = currency
    if pan is not None:
        doc["2"] = pan
    if icc is not None:
        doc["55"] = icc if isinstance(icc, str) else de55_encode(icc)
    return _fields(doc, fields)


def authorization(*, amount: int, **kw: Any) -> Doc:
    """0100 authorisation request (processing code 000000); amount in minor units."""
    return _card("0100", "000000", amount=amount, **kw)


def pre_authorization(*, amount: int, **kw: Any) -> Doc:
    """0100 pre-authorisation: processing code 030000, POS condition code 06."""
    kw.setdefault("condition_code", "06")
    return _card("0100", "030000", amount=amount, **kw)


def purchase(*, amount: int, **kw: Any) -> Doc:
    """0200 financial request for a purchase (processing code 000000)."""
    return _card("0200", "000000", amount=amount, **kw)


def refund(*, amount: int, **kw: Any) -> Doc:
    """0200 refund (processing code 200000); DE61 may reference the original sale."""
    return _card("0200", "200000", amount=amount, **kw)


def balance_inquiry(**kw: Any) -> Doc:
    """0200 balance inquiry (processing code 310000, no amount)."""
    return _card("0200", "310000", amount=None, **kw)


def advice(*, amount: int, processing_code: str = "000000", **kw: Any) -> Doc:
    """0220 financial advice (offline approval or completion); pass auth_id when known."""
    return _card("0220", processing_code, amount=amount, **kw)


_REVERSAL_COPY = ("2", "3", "4", "14", "22", "23", "24", "25", "32", "41", "42", "49", "55")


def reversal(
    original: Mapping[str, str],
    *,
    stan: int | str | None = None,
    now: datetime | None = None,
    reason: str | None = None,
    **fields: Any,
) -> Doc:
    """0400 reversing `original`: its card and amount fields, DE90 pointing at it, DE39 reason."""
    try:
        orig_stan = original["11"]
        doc = _base("0400", stan if stan is not None else orig_stan, original["41"], now)
        de90 = (
            original["t"]
            + orig_stan
            + original.get("7", "0" * 10)
            + original.get("32", "").rjust(11, "0")
            + "0" * 11
        )
    except KeyError as e:
        raise Iso8583Error(
            "original message lacks a field a reversal needs", field=str(e.args[0])
        ) from None
    for key in _REVERSAL_COPY:
        if key in original:
            doc[key] = original[key]
    doc["90"] = de90
    if reason is not None:
        doc["39"] = reason
    return _fields(doc, fields)


def reversal_repeat(reversal_doc: Mapping[str, str]) -> Doc:
    """0401: the same reversal sent again after no answer."""
    doc = dict(reversal_doc)
    doc["t"] = "0401"
    return doc


@dataclass(frozen=True)
class Totals:
    """Batch totals for reconciliation: counts and amounts in minor units."""

    sale_count: int = 0
    sale_amount: int = 0
    refund_count: int = 0
    refund_amount: int = 0

    def encode(self) -> str:
        """DE63 layout: n4 sale count, n12 sale amount, n4 refund count, n12 refund amount."""
        return (
            f"{self.sale_count:04d}{self.sale_amount:012d}"
            f"{self.refund_count:04d}{self.refund_amount:012d}"
        )

    @classmethod
    def decode(cls, value: str) -> Totals:
        """Parse DE63; Iso8583Error names the fault."""
        if len(value) != 32 or not value.isdigit():
            raise Iso8583Error(
                f"totals are {len(value)} chars", field="63", fix="DE63 is 32 digits (4+12+4+12)"
            )
        return cls(int(value[:4]), int(value[4:16]), int(value[16:20]), int(value[20:]))


def reconciliation(
    *,
    stan: int | str,
    terminal_id: str,
    merchant_id: str,
    batch: int,
    totals: Totals,
    currency: str = "156",
    now: datetime | None = None,
    **fields: Any,
) -> Doc:
    """0500 batch upload / settlement request with DE60 batch number and DE63 totals."""
    doc = _base("0500", stan, terminal_id, now)
    doc.update({"42": merchant_id, "49": currency, "60": f"{batch:06d}", "63": totals.encode()})
    return _fields(doc, fields)


ECHOED = ("2", "3", "4", "7", "11", "12", "13", "22", "24", "25", "32", "37", "41", "42", "49")
ECHOED += ("60", "61", "70", "90")
"""Request fields a response copies back (ISO practice plus this dialect's private fields)."""

_RESPONSE_MTI = {"0100": "0110", "0200": "0210", "0220": "0230", "0400": "0410"}
_RESPONSE_MTI |= {"0401": "0410", "0500": "0510", "0800": "0810"}


def response_to(request: Mapping[str, str], rc: str, **fields: Any) -> Doc:
    """The response to `request` with response code `rc`, echoed fields, and `fields` added."""
    mti = request.get("t")
    if mti not in _RESPONSE_MTI:
        raise Iso8583Error(
            f"no response defined for MTI {mti!r}",
            field="t",
            fix="requests are " + ", ".join(sorted(_RESPONSE_MTI)),
        )
    doc: Doc = {"t": _RESPONSE_MTI[mti]}
    for key in ECHOED:
        if key in request:
            doc[key] = request[key]
    doc["39"] = rc
    return _fields(doc, fields)


RESPONSE_CODES: dict[str, str] = {
    "00": "Approved",
    "05": "Do not honour",
    "12": "Invalid transaction",
    "13": "Invalid amount",
    "14": "Invalid card number",
    "30": "Format error",
    "51": "Insufficient funds",
    "54": "Expired card",
    "55": "Incorrect PIN",
    "57": "Transaction not permitted to cardholder",
    "61": "Exceeds withdrawal amount limit",
    "63": "Security violation (MAC failure)",
    "75": "Allowable number of PIN tries exceeded",
    "91": "Issuer or switch inoperative",
    "94": "Duplicate transmission",
    "95": "Reconciliation error (totals out of balance)",
    "96": "System malfunction",
}
"""DE39 values the reference host answers with."""


# ---- masking -------------------------------------------------------------------------------


def mask_pan(pan: str) -> str:
    """First 6 / last 4 kept, the rest '*'; short values fully starred."""
    if len(pan) < 11:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def mask(doc: Mapping[str, str]) -> Doc:
    """Copy for logs: PAN masked; track data, PIN block, MACs, DE55 PAN/track, DE48 token gone."""
    out = {k: v for k, v in doc.items() if k not in SENSITIVE_FIELDS}
    if "2" in out:
        out["2"] = mask_pan(out["2"])
    if "55" in out:
        try:
            tags = de55_decode(out["55"])
        except Iso8583Error:
            out["55"] = "[unparsed ICC data removed]"
        else:
            for tag in (0x56, 0x57, 0x5A, 0x9F6B):
                tags.pop(tag, None)
            out["55"] = de55_encode(tags)
    if "48" in out:
        try:
            sub = private_decode(out["48"])
        except Iso8583Error:
            out["48"] = "[unparsed private data removed]"
        else:
            for sid in ("02", "K2"):
                if sid in sub:
                    sub[sid] = "[removed]"
            out["48"] = private_encode(sub)
    return out


def describe(doc: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(field, name, value) rows in wire order for display; values as held in `doc`."""
    keys = [k for k in ("t", "p", "1") if k in doc]
    keys += sorted((k for k in doc if k.isdigit() and k != "1"), key=int)
    return [(k, field_name(k), doc[k]) for k in keys]


__all__ = [
    "DATA_FIELDS",
    "ECHOED",
    "RESPONSE_CODES",
    "Iso8583Error",
    "Totals",
    "advice",
    "authorization",
    "balance_inquiry",
    "de55_decode",
    "de55_encode",
    "decode",
    "describe",
    "echo_test",
    "encode",
    "key_exchange",
    "mask",
    "mask_pan",
    "network_management",
    "pre_authorization",
    "private_decode",
    "private_encode",
    "purchase",
    "reconciliation",
    "refund",
    "response_to",
    "reversal",
    "reversal_repeat",
    "sign_on",
]
