"""The posrig ISO 8583:1987 dialect as a pyiso8583 spec: binary bitmaps, BCD numerics, ASCII text.

Numeric fields (n) are packed BCD; variable lengths are BCD; text fields are ASCII; binary fields
(b) are raw bytes shown as upper-case hex. `fmt` and `usage` are ours (docs and checks);
pyiso8583 ignores them. The full table with MTIs is in docs/iso8583.md.
"""

from __future__ import annotations

from typing import Any

FieldSpec = dict[str, Any]


def _n(max_len: int, desc: str, *, var: int = 0, pad: str = "0") -> FieldSpec:
    """Numeric BCD: fixed (odd lengths left-padded with 0) or LL/LLL with a BCD digit count."""
    spec: FieldSpec = {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": var,
        "max_len": max_len,
        "len_count": "nibbles",
        "desc": desc,
        "fmt": f"n{'.' * (var + 1) if var else ''}{max_len}",
    }
    if var:
        spec["right_pad"] = "F"
    else:
        spec["left_pad"] = pad
    return spec


def _z(max_len: int, desc: str) -> FieldSpec:
    """Track 2 style digits with a 'D' separator, BCD packed, LLVAR digit count, F right pad."""
    spec = _n(max_len, desc, var=1)
    spec["fmt"] = f"z..{max_len}"
    return spec


def _text(max_len: int, desc: str, *, var: int = 0, kind: str = "ans") -> FieldSpec:
    """ASCII text: fixed, or LL/LLL with a BCD byte count (1 or 2 length bytes)."""
    return {
        "data_enc": "ascii",
        "len_enc": "bcd",
        "len_type": var,
        "max_len": max_len,
        "desc": desc,
        "fmt": f"{kind}{'.' * (var + 1) if var else ''}{max_len}",
    }


def _b(max_len: int, desc: str, *, var: int = 0) -> FieldSpec:
    """Binary bytes, fixed or with a BCD byte count; pyiso8583 shows them as upper-case hex."""
    return {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": var,
        "max_len": max_len,
        "desc": desc,
        "fmt": f"b{'.' * (var + 1) if var else ''}{max_len}",
    }


SPEC: dict[str, FieldSpec] = {
    "h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0, "desc": "Header"},
    "t": {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": 0,
        "max_len": 2,
        "desc": "Message Type Indicator",
        "fmt": "n4",
    },
    "p": {**_b(8, "Bitmap, Primary"), "len_enc": "b"},
    "1": {**_b(8, "Bitmap, Secondary"), "len_enc": "b"},
    "2": _n(19, "Primary Account Number (PAN)", var=1),
    "3": _n(6, "Processing Code"),
    "4": _n(12, "Amount, Transaction"),
    "7": _n(10, "Transmission Date and Time (MMDDhhmmss)"),
    "11": _n(6, "System Trace Audit Number (STAN)"),
    "12": _n(6, "Time, Local Transaction (hhmmss)"),
    "13": _n(4, "Date, Local Transaction (MMDD)"),
    "14": _n(4, "Date, Expiration (YYMM)"),
    "18": _n(4, "Merchant Category Code"),
    "22": _n(3, "POS Entry Mode"),
    "23": _n(3, "Card Sequence Number"),
    "24": _n(3, "Network International Identifier (NII)"),
    "25": _n(2, "POS Condition Code"),
    "32": _n(11, "Acquiring Institution Identification Code", var=1),
    "35": _z(37, "Track 2 Data"),
    "37": _text(12, "Retrieval Reference Number", kind="an"),
    "38": _text(6, "Authorization Identification Response", kind="an"),
    "39": _text(2, "Response Code", kind="an"),
    "41": _text(8, "Card Acceptor Terminal Identification"),
    "42": _text(15, "Card Acceptor Identification Code"),
    "43": _text(40, "Card Acceptor Name/Location"),
    "45": _text(76, "Track 1 Data", var=1),
    "48": _text(999, "Additional Data - Private (QR, key exchange subfields)", var=2),
    "49": _n(3, "Currency Code, Transaction"),
    "52": _b(16, "PIN Block (8 bytes ISO 0-3, 16 bytes ISO 4 / AES)", var=1),
    "53": _b(48, "Security Related Control Information (DUKPT KSN)", var=1),
    "54": _text(120, "Additional Amounts", var=2, kind="an"),
    "55": _b(999, "ICC Data (BER-TLV)", var=2),
    "60": _text(999, "Private - Batch Number and Reason", var=2),
    "61": _text(999, "Private - Original Transaction Data", var=2),
    "62": _text(999, "Private - Prepaid (Stored Value) Subfields", var=2),
    "63": _text(999, "Private - Reconciliation Totals", var=2),
    "64": _b(8, "Message Authentication Code (MAC)"),
    "70": _n(3, "Network Management Information Code"),
    "90": _n(42, "Original Data Elements"),
    "128": _b(8, "Message Authentication Code (MAC), secondary"),
}
"""pyiso8583 spec of the posrig dialect; keys are field numbers as strings, plus h/t/p."""

DATA_FIELDS: tuple[str, ...] = tuple(k for k in SPEC if k.isdigit() and k != "1")
"""Field numbers carrying data (bitmaps excluded), in numeric order."""

NUMERIC_FIELDS: tuple[str, ...] = tuple(k for k in DATA_FIELDS if SPEC[k]["fmt"].startswith("n"))
"""BCD fields whose decoded value must be decimal digits."""

TRACK2_FIELD = "35"
SENSITIVE_FIELDS: frozenset[str] = frozenset({"35", "45", "52", "64", "128"})
"""Fields removed by `messages.mask` (track data, PIN block, MACs)."""

NAMES: dict[str, str] = {
    "pan": "2",
    "processing_code": "3",
    "amount": "4",
    "transmission_time": "7",
    "stan": "11",
    "local_time": "12",
    "local_date": "13",
    "expiry": "14",
    "mcc": "18",
    "entry_mode": "22",
    "card_seq": "23",
    "nii": "24",
    "condition_code": "25",
    "acquirer_id": "32",
    "track2": "35",
    "rrn": "37",
    "auth_id": "38",
    "rc": "39",
    "terminal_id": "41",
    "merchant_id": "42",
    "acceptor_name": "43",
    "track1": "45",
    "additional_data": "48",
    "currency": "49",
    "pin_block": "52",
    "ksn": "53",
    "additional_amounts": "54",
    "icc": "55",
    "batch": "60",
    "original_txn": "61",
    "prepaid": "62",
    "totals": "63",
    "mac": "64",
    "network_code": "70",
    "original_data": "90",
    "mac2": "128",
}
"""Keyword aliases accepted by the builders and `response_to` (also `deNN`)."""

FIELD_ALIASES: dict[str, str] = {v: k for k, v in NAMES.items()}


def field_name(key: str) -> str:
    """Human name of a field key ('2' -> 'Primary Account Number (PAN)')."""
    spec = SPEC.get(key)
    return spec["desc"] if spec else f"field {key} (not in the posrig dialect)"


def field_key(name: str) -> str:
    """Map an alias ('pan', 'de2', '2') to the field key '2'; ValueError naming valid aliases."""
    if name in NAMES:
        return NAMES[name]
    key = name[2:] if name.lower().startswith("de") else name
    if key in SPEC and key.isdigit():
        return key
    raise ValueError(
        f"unknown ISO 8583 field name {name!r}; use a field number ('de38'), or one of "
        + ", ".join(sorted(NAMES))
    )
