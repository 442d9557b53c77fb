"""Named bit tables for EMV bitmap data elements, and decoders/builders over them.

Bytes count from 1 and bits from 8 (most significant) to 1, as the EMV books number them.
Sources: EMV 4.3 Book 3 Annex C (AIP, AUC, TVR, TSI, CID, CVM, CCD CVR), Book 4 Annex A
(terminal capabilities), Book C-3 (TTQ, CTQ), Visa VIS public IAD layout (Visa CVR).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


class BitsError(ValueError):
    """A bitmap value of the wrong length, an unknown tag, or an unknown bit name."""

    def __init__(self, message: str, *, tag: int | None = None) -> None:
        self.tag = tag
        super().__init__(message)


@dataclass(frozen=True)
class Bit:
    byte: int
    bit: int
    name: str
    label: str


@dataclass(frozen=True)
class Field:
    """A multi-bit field: `width` bits ending at bit `high` of `byte`."""

    byte: int
    high: int
    width: int
    name: str
    label: str
    values: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BitTable:
    title: str
    length: int
    entries: tuple[Bit | Field, ...]

    def bit(self, name: str) -> Bit:
        for e in self.entries:
            if isinstance(e, Bit) and e.name == name:
                return e
        known = ", ".join(e.name for e in self.entries if isinstance(e, Bit))
        raise BitsError(f"{self.title} has no bit named {name!r}; known: {known}")


def _bits(rows: Iterable[tuple[int, int, str, str]]) -> tuple[Bit, ...]:
    return tuple(Bit(*r) for r in rows)


TVR = BitTable(
    "Terminal Verification Results",
    5,
    _bits(
        [
            (1, 8, "oda_not_performed", "Offline data authentication was not performed"),
            (1, 7, "sda_failed", "SDA failed"),
            (1, 6, "icc_data_missing", "ICC data missing"),
            (1, 5, "card_on_exception_file", "Card appears on terminal exception file"),
            (1, 4, "dda_failed", "DDA failed"),
            (1, 3, "cda_failed", "CDA failed"),
            (1, 2, "sda_selected", "SDA selected"),
            (
                2,
                8,
                "different_app_versions",
                "ICC and terminal have different application versions",
            ),
            (2, 7, "expired_application", "Expired application"),
            (2, 6, "application_not_yet_effective", "Application not yet effective"),
            (2, 5, "service_not_allowed", "Requested service not allowed for card product"),
            (2, 4, "new_card", "New card"),
            (3, 8, "cv_not_successful", "Cardholder verification was not successful"),
            (3, 7, "unrecognised_cvm", "Unrecognised CVM"),
            (3, 6, "pin_try_limit_exceeded", "PIN Try Limit exceeded"),
            (3, 5, "pin_pad_missing", "PIN entry required and PIN pad not present or not working"),
            (
                3,
                4,
                "pin_not_entered",
                "PIN entry required, PIN pad present, but PIN was not entered",
            ),
            (3, 3, "online_pin_entered", "Online PIN entered"),
            (4, 8, "floor_limit_exceeded", "Transaction exceeds floor limit"),
            (4, 7, "lower_offline_limit_exceeded", "Lower consecutive offline limit exceeded"),
            (4, 6, "upper_offline_limit_exceeded", "Upper consecutive offline limit exceeded"),
            (4, 5, "random_online", "Transaction selected randomly for online processing"),
            (4, 4, "merchant_forced_online", "Merchant forced transaction online"),
            (5, 8, "default_tdol_used", "Default TDOL used"),
            (5, 7, "issuer_auth_failed", "Issuer authentication failed"),
            (
                5,
                6,
                "script_failed_before_final_gen_ac",
                "Script processing failed before final GENERATE AC",
            ),
            (
                5,
                5,
                "script_failed_after_final_gen_ac",
                "Script processing failed after final GENERATE AC",
            ),
        ]
    ),
)

TSI = BitTable(
    "Transaction Status Information",
    2,
    _bits(
        [
            (1, 8, "oda_performed", "Offline data authentication was performed"),
            (1, 7, "cv_performed", "Cardholder verification was performed"),
            (1, 6, "card_risk_management_performed", "Card risk management was performed"),
            (1, 5, "issuer_auth_performed", "Issuer authentication was performed"),
            (1, 4, "terminal_risk_management_performed", "Terminal risk management was performed"),
            (1, 3, "script_processing_performed", "Script processing was performed"),
        ]
    ),
)

AIP = BitTable(
    "Application Interchange Profile",
    2,
    _bits(
        [
            (1, 7, "sda_supported", "SDA supported"),
            (1, 6, "dda_supported", "DDA supported"),
            (1, 5, "cv_supported", "Cardholder verification is supported"),
            (1, 4, "trm_required", "Terminal risk management is to be performed"),
            (1, 3, "issuer_auth_supported", "Issuer authentication is supported"),
            (1, 2, "on_device_cvm_supported", "On-device cardholder verification supported (C-2)"),
            (1, 1, "cda_supported", "CDA supported"),
            (2, 8, "emv_mode_supported", "EMV mode supported (contactless)"),
            (2, 7, "mobile_supported", "Mobile functionality supported (C-2)"),
            (2, 1, "rrp_supported", "Relay resistance protocol supported (C-2)"),
        ]
    ),
)

AUC = BitTable(
    "Application Usage Control",
    2,
    _bits(
        [
            (1, 8, "domestic_cash", "Valid for domestic cash transactions"),
            (1, 7, "international_cash", "Valid for international cash transactions"),
            (1, 6, "domestic_goods", "Valid for domestic goods"),
            (1, 5, "international_goods", "Valid for international goods"),
            (1, 4, "domestic_services", "Valid for domestic services"),
            (1, 3, "international_services", "Valid for international services"),
            (1, 2, "atm", "Valid at ATMs"),
            (1, 1, "non_atm", "Valid at terminals other than ATMs"),
            (2, 8, "domestic_cashback", "Domestic cashback allowed"),
            (2, 7, "international_cashback", "International cashback allowed"),
        ]
    ),
)

TERMINAL_CAPABILITIES = BitTable(
    "Terminal Capabilities",
    3,
    _bits(
        [
            (1, 8, "manual_key_entry", "Manual key entry"),
            (1, 7, "magnetic_stripe", "Magnetic stripe"),
            (1, 6, "ic_with_contacts", "IC with contacts"),
            (2, 8, "plaintext_pin_icc", "Plaintext PIN for ICC verification"),
            (2, 7, "enciphered_pin_online", "Enciphered PIN for online verification"),
            (2, 6, "signature", "Signature (paper)"),
            (2, 5, "enciphered_pin_icc", "Enciphered PIN for offline verification"),
            (2, 4, "no_cvm", "No CVM required"),
            (3, 8, "sda", "SDA"),
            (3, 7, "dda", "DDA"),
            (3, 6, "card_capture", "Card capture"),
            (3, 4, "cda", "CDA"),
        ]
    ),
)

_TX_TYPES = ["cash", "goods", "services", "cashback", "inquiry", "transfer", "payment", "admin"]
ADDITIONAL_TERMINAL_CAPABILITIES = BitTable(
    "Additional Terminal Capabilities",
    5,
    _bits(
        [(1, 8 - i, n, n.capitalize()) for i, n in enumerate(_TX_TYPES)]
        + [
            (2, 8, "cash_deposit", "Cash deposit"),
            (3, 8, "numeric_keys", "Numeric keys"),
            (3, 7, "alpha_special_keys", "Alphabetic and special characters keys"),
            (3, 6, "command_keys", "Command keys"),
            (3, 5, "function_keys", "Function keys"),
            (4, 8, "print_attendant", "Print, attendant"),
            (4, 7, "print_cardholder", "Print, cardholder"),
            (4, 6, "display_attendant", "Display, attendant"),
            (4, 5, "display_cardholder", "Display, cardholder"),
            (4, 2, "code_table_10", "Code table 10"),
            (4, 1, "code_table_9", "Code table 9"),
        ]
        + [(5, b, f"code_table_{b}", f"Code table {b}") for b in range(8, 0, -1)]
    ),
)

TTQ = BitTable(
    "Terminal Transaction Qualifiers",
    4,
    _bits(
        [
            (1, 8, "msd_supported", "Mag-stripe mode supported"),
            (1, 6, "emv_mode_supported", "EMV mode supported"),
            (1, 5, "contact_chip_supported", "EMV contact chip supported"),
            (1, 4, "offline_only_reader", "Offline-only reader"),
            (1, 3, "online_pin_supported", "Online PIN supported"),
            (1, 2, "signature_supported", "Signature supported"),
            (1, 1, "oda_for_online_supported", "Offline data authentication for online auth"),
            (2, 8, "online_cryptogram_required", "Online cryptogram required"),
            (2, 7, "cvm_required", "CVM required"),
            (2, 6, "contact_offline_pin_supported", "(Contact chip) offline PIN supported"),
            (3, 8, "issuer_update_supported", "Issuer update processing supported"),
            (3, 7, "cdcvm_supported", "Consumer device CVM supported"),
        ]
    ),
)

CTQ = BitTable(
    "Card Transaction Qualifiers",
    2,
    _bits(
        [
            (1, 8, "online_pin_required", "Online PIN required"),
            (1, 7, "signature_required", "Signature required"),
            (1, 6, "online_if_oda_fails", "Go online if ODA fails and reader is online capable"),
            (1, 5, "switch_if_oda_fails", "Switch interface if ODA fails and reader has contact"),
            (1, 4, "online_if_expired", "Go online if application expired"),
            (1, 3, "switch_for_cash", "Switch interface for cash transactions"),
            (1, 2, "switch_for_cashback", "Switch interface for cashback transactions"),
            (2, 8, "cdcvm_performed", "Consumer device CVM performed"),
            (2, 7, "issuer_update_supported", "Card supports issuer update processing at the POS"),
        ]
    ),
)

_AC = {0: "aac", 1: "tc", 2: "arqc", 3: "rfu"}
CID = BitTable(
    "Cryptogram Information Data",
    1,
    (
        Field(1, 8, 2, "cryptogram", "Cryptogram type", _AC),
        Bit(1, 4, "advice_required", "Advice required"),
        Field(
            1,
            3,
            3,
            "reason",
            "Reason/advice code",
            {
                0: "none",
                1: "service_not_allowed",
                2: "pin_try_limit_exceeded",
                3: "issuer_auth_failed",
            },
        ),
    ),
)

_GEN2 = {0: "aac", 1: "tc", 2: "not_requested", 3: "rfu"}
CVR_VISA = BitTable(
    "Card Verification Results (Visa VIS; byte 1 is the length)",
    4,
    (
        Field(2, 8, 2, "second_gen_ac", "Second GENERATE AC", _GEN2),
        Field(2, 6, 2, "first_gen_ac", "First GENERATE AC", _AC),
        Bit(2, 4, "issuer_auth_failed", "Issuer authentication performed and failed"),
        Bit(2, 3, "offline_pin_performed", "Offline PIN verification performed"),
        Bit(2, 2, "offline_pin_failed", "Offline PIN verification failed"),
        Bit(2, 1, "unable_to_go_online", "Unable to go online"),
        Bit(3, 8, "last_online_not_completed", "Last online transaction not completed"),
        Bit(3, 7, "pin_try_limit_exceeded", "PIN try limit exceeded"),
        Bit(3, 6, "velocity_exceeded", "Exceeded velocity checking counters"),
        Bit(3, 5, "new_card", "New card"),
        Bit(3, 4, "issuer_auth_failed_last", "Issuer authentication failure on last online"),
        Bit(3, 3, "issuer_auth_not_performed", "Issuer authentication not performed after online"),
        Bit(3, 2, "blocked_pin_try_limit", "Application blocked: PIN try limit exceeded"),
        Bit(3, 1, "sda_failed_last", "Offline SDA failed on last transaction, declined offline"),
        Field(4, 8, 4, "scripts_processed", "Issuer script commands with SM processed"),
        Bit(4, 4, "script_failed", "Issuer script processing failed"),
        Bit(4, 3, "dda_failed_last", "Offline DDA failed on last transaction, declined offline"),
        Bit(4, 2, "dda_performed", "Offline DDA performed"),
    ),
)

CVR_CCD = BitTable(
    "Card Verification Results (EMV Common Core Definitions)",
    5,
    (
        Field(1, 8, 2, "second_gen_ac", "AC returned in second GENERATE AC", _GEN2),
        Field(1, 6, 2, "first_gen_ac", "AC returned in first GENERATE AC", _AC),
        Bit(1, 4, "cda_performed", "CDA performed"),
        Bit(1, 3, "dda_performed", "Offline DDA performed"),
        Bit(1, 2, "issuer_auth_not_performed", "Issuer authentication not performed"),
        Bit(1, 1, "issuer_auth_failed", "Issuer authentication failed"),
        Field(2, 8, 4, "pin_try_counter", "Low order nibble of PIN try counter"),
        Bit(2, 4, "offline_pin_performed", "Offline PIN verification performed"),
        Bit(2, 3, "offline_pin_failed", "Offline PIN performed and PIN not successfully verified"),
        Bit(2, 2, "pin_try_limit_exceeded", "PIN try limit exceeded"),
        Bit(2, 1, "last_online_not_completed", "Last online transaction not completed"),
        Bit(3, 8, "lower_count_exceeded", "Lower offline transaction count limit exceeded"),
        Bit(3, 7, "upper_count_exceeded", "Upper offline transaction count limit exceeded"),
        Bit(3, 6, "lower_amount_exceeded", "Lower cumulative offline amount limit exceeded"),
        Bit(3, 5, "upper_amount_exceeded", "Upper cumulative offline amount limit exceeded"),
        Bit(3, 4, "issuer_discretionary_1", "Issuer-discretionary bit 1"),
        Bit(3, 3, "issuer_discretionary_2", "Issuer-discretionary bit 2"),
        Bit(3, 2, "issuer_discretionary_3", "Issuer-discretionary bit 3"),
        Bit(3, 1, "issuer_discretionary_4", "Issuer-discretionary bit 4"),
        Field(4, 8, 4, "scripts_processed", "Issuer script commands with SM processed"),
        Bit(4, 4, "script_failed", "Issuer script processing failed on last transaction"),
        Bit(4, 3, "oda_failed_previous", "Offline data authentication failed on previous txn"),
        Bit(4, 2, "go_online_next", "Go online on next transaction was set"),
        Bit(4, 1, "unable_to_go_online", "Unable to go online"),
    ),
)

# CVM codes (byte 1, bits 6-1) and condition codes of a CV Rule, Book 3 Annex C3.
CVM_METHODS: dict[int, tuple[str, str]] = {
    0x00: ("fail_cvm", "Fail CVM processing"),
    0x01: ("plaintext_pin_icc", "Plaintext PIN verification performed by ICC"),
    0x02: ("enciphered_pin_online", "Enciphered PIN verified online"),
    0x03: ("plaintext_pin_icc_and_signature", "Plaintext PIN by ICC and signature (paper)"),
    0x04: ("enciphered_pin_icc", "Enciphered PIN verification performed by ICC"),
    0x05: ("enciphered_pin_icc_and_signature", "Enciphered PIN by ICC and signature (paper)"),
    0x1E: ("signature", "Signature (paper)"),
    0x1F: ("no_cvm_required", "No CVM required"),
    0x3F: ("no_cvm_performed", "No CVM performed"),
}
CVM_CONDITIONS: dict[int, tuple[str, str]] = {
    0x00: ("always", "Always"),
    0x01: ("unattended_cash", "If unattended cash"),
    0x02: ("not_cash_or_cashback", "If not unattended cash, not manual cash, not cashback"),
    0x03: ("terminal_supports", "If terminal supports the CVM"),
    0x04: ("manual_cash", "If manual cash"),
    0x05: ("cashback", "If purchase with cashback"),
    0x06: ("under_x", "If in application currency and under X"),
    0x07: ("over_x", "If in application currency and over X"),
    0x08: ("under_y", "If in application currency and under Y"),
    0x09: ("over_y", "If in application currency and over Y"),
}
CVM_RESULTS: dict[int, str] = {0: "unknown", 1: "failed", 2: "successful"}

TABLES: dict[int, BitTable] = {
    0x82: AIP,
    0x95: TVR,
    0x9B: TSI,
    0x9F07: AUC,
    0x9F27: CID,
    0x9F33: TERMINAL_CAPABILITIES,
    0x9F40: ADDITIONAL_TERMINAL_CAPABILITIES,
    0x9F66: TTQ,
    0x9F6C: CTQ,
    # Action codes share the TVR layout.
    0x9F0D: TVR,
    0x9F0E: TVR,
    0x9F0F: TVR,
    0xDF8120: TVR,
    0xDF8121: TVR,
    0xDF8122: TVR,
}


def _field_value(value: bytes, f: Field) -> int:
    return (value[f.byte - 1] >> (f.high - f.width)) & ((1 << f.width) - 1)


def _is_set(value: bytes, b: Bit) -> bool:
    return bool(value[b.byte - 1] & (1 << (b.bit - 1)))


def _checked(table: BitTable, value: bytes, tag: int | None) -> bytes:
    value = bytes(value)
    if len(value) != table.length:
        raise BitsError(
            f"{table.title} must be {table.length} byte(s), "
            f"got {len(value)} ({value.hex().upper()})",
            tag=tag,
        )
    return value


def decode_table(table: BitTable, value: bytes, *, labels: bool = False) -> list[str]:
    """Set bits of `value` as names (or labels); fields as 'name=value'."""
    value = _checked(table, value, None)
    out: list[str] = []
    for e in table.entries:
        if isinstance(e, Bit):
            if _is_set(value, e):
                out.append(e.label if labels else e.name)
        else:
            v = _field_value(value, e)
            shown = e.values.get(v, str(v)) if e.values else str(v)
            out.append(f"{e.label}: {shown}" if labels else f"{e.name}={shown}")
    return out


def decode_cvm_results(value: bytes, *, labels: bool = False) -> list[str]:
    """CVM Results (9F34): method performed, its condition and the result."""
    if len(value) != 3:
        raise BitsError(f"CVM Results must be 3 bytes, got {len(value)}", tag=0x9F34)
    method = CVM_METHODS.get(value[0] & 0x3F, (f"cvm_{value[0] & 0x3F:02x}", "Unknown CVM"))
    cond = CVM_CONDITIONS.get(value[1], (f"condition_{value[1]:02x}", "Unknown condition"))
    result = CVM_RESULTS.get(value[2], f"result_{value[2]:02x}")
    if labels:
        return [method[1], cond[1], f"Result: {result}"]
    return [f"method={method[0]}", f"condition={cond[0]}", f"result={result}"]


def split_iad(iad: bytes) -> tuple[str, BitTable, bytes]:
    """Find the CVR inside Issuer Application Data (9F10): (format, table, cvr bytes)."""
    iad = bytes(iad)
    if len(iad) == 32 and iad[0] == 0x0F and iad[1] >> 4 == 0xA:
        return "ccd", CVR_CCD, iad[3:8]
    if len(iad) >= 7 and iad[0] == 0x06 and iad[3] == 0x03:
        return "visa", CVR_VISA, iad[3:7]
    raise BitsError(
        f"Issuer Application Data {iad.hex().upper()} is neither Visa VIS (06 DKI CVN 03 CVR...) "
        "nor EMV CCD (0F CCI ... 32 bytes); decode the CVR with decode_table directly",
        tag=0x9F10,
    )


def decode(tag: int, value: bytes, *, labels: bool = False) -> list[str]:
    """Names of the set bits of a known bitmap tag (95, 9B, 82, 9F07, 9F33, 9F40, 9F66, ...)."""
    if tag == 0x9F34:
        return decode_cvm_results(value, labels=labels)
    if tag == 0x9F10:
        kind, table, cvr = split_iad(value)
        return [f"format={kind}", *decode_table(table, cvr, labels=labels)]
    table = TABLES.get(tag)
    if table is None:
        known = " ".join(f"{t:02X}" for t in (*TABLES, 0x9F34, 0x9F10))
        raise BitsError(f"no bit table for tag {tag:02X}; known: {known}", tag=tag)
    try:
        return decode_table(table, value, labels=labels)
    except BitsError as e:
        raise BitsError(str(e), tag=tag) from None


def _table_for(tag: int) -> BitTable:
    table = TABLES.get(tag)
    if table is None:
        raise BitsError(f"no bit table for tag {tag:02X}", tag=tag)
    return table


def is_set(value: bytes, name: str, *, tag: int = 0x95) -> bool:
    """True when the named bit is set in `value` (the TVR unless `tag` says otherwise)."""
    table = _table_for(tag)
    return _is_set(_checked(table, value, tag), table.bit(name))


def set_bit(value: bytes, name: str, *, tag: int = 0x95) -> bytes:
    """`value` with the named bit set (the TVR unless `tag` says otherwise)."""
    table = _table_for(tag)
    out = bytearray(_checked(table, value, tag))
    b = table.bit(name)
    out[b.byte - 1] |= 1 << (b.bit - 1)
    return bytes(out)


def clear_bit(value: bytes, name: str, *, tag: int = 0x95) -> bytes:
    """`value` with the named bit cleared."""
    table = _table_for(tag)
    out = bytearray(_checked(table, value, tag))
    b = table.bit(name)
    out[b.byte - 1] &= ~(1 << (b.bit - 1)) & 0xFF
    return bytes(out)


def build(names: Iterable[str], *, tag: int = 0x95) -> bytes:
    """A bitmap with exactly the named bits set."""
    value = bytes(_table_for(tag).length)
    for n in names:
        value = set_bit(value, n, tag=tag)
    return value
