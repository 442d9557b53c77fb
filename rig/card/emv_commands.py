"""Pure building blocks of the EMV card: status words, command names, the card verification
results (CVR) and issuer application data (IAD) per CVN, PIN blocks and issuer-script secure
messaging. No state here; `rig.card.emv_app` holds the card.

IAD (9F10) layouts the simulated card emits (DKI = derivation key index, always 01):

| CVN | IAD bytes | layout |
| --- | --- | --- |
| visa-10, visa-18 | 7 | `06` length, DKI, CVN (`0A` / `12`), CVR (4: `03` + 3 bytes, VIS 1.5) |
| visa-22 | 32 | `1F` length, CVN `22`, DKI, CVR (4, as above), 25 zero bytes (issuer data) |
| mc-16, mc-20 | 18 | DKI, CVN (`10` / `14`), CVR (6, M/Chip 4), DAC/IDN `0000`, counters 8x`00` |
| pboc-01 | 8 | `07` length, DKI, CVN `01`, CVR (4, as Visa), algorithm `01` (TDES) |

The CVR offsets match `rig.crypto.arqc.CVNS` (Visa and PBOC 9F10[3:7], M/Chip 9F10[2:8]).

Visa / PBOC CVR (after VIS 1.5): byte 1 = `03` (length). Byte 2: b8-7 AC of the second GENERATE
AC (00 AAC, 01 TC, 10 not requested), b6-5 AC of the first (00 AAC, 01 TC, 10 ARQC), b4 issuer
authentication performed and failed, b3 offline PIN performed, b2 offline PIN failed, b1 unable
to go online. Byte 3: b8 last online transaction not completed, b7 PIN try limit exceeded,
b4 issuer authentication failed on the last online transaction, b2 application blocked because
the PIN try limit was exceeded. Byte 4: b8-5 issuer script commands processed (mod 16), b4
issuer script failed, b2 DDA performed (INTERNAL AUTHENTICATE or CDA).

M/Chip CVR (after M/Chip 4): byte 1: b8-7 AC of the second GENERATE AC, b6-5 AC of the first
(codes as above), b3 offline PIN performed, b2 offline enciphered PIN performed, b1 offline PIN
successful. Byte 2: b8 DDA returned, b7 CDA in the first GENERATE AC, b6 CDA in the second,
b5 issuer authentication performed. Byte 3: b8-5 script counter, b4-1 PIN try counter (low
nibbles). Byte 4: b8 last online transaction not completed, b7 unable to go online, b6 offline
PIN not performed, b5 offline PIN failed, b4 PIN try limit exceeded, b3 international, b2
domestic (terminal country 9F1A vs. the application's country). Byte 5: b8 lower / b7 upper
consecutive offline limit exceeded, b3 issuer authentication failed, b2 script received, b1
script failed. Byte 6: 00.

Secure messaging per CVN (what `pyemv.cvn` does, so the card and an independent issuer agree):

| CVN | SM session keys | MAC R | encipherment | PIN block |
| --- | --- | --- | --- | --- |
| visa-10, visa-18 | Visa: MK xor ATC | - | Visa (length byte, pad 2, ECB) | VIS |
| visa-22 | EMV common, R = AC | AC | Visa | ISO format 2 (P2=02), VIS + current PIN (P2=01) |
| mc-16, mc-20 | EMV common, R = AC + n | AC + n | Mastercard (CBC) | ISO format 2 |
| pboc-01 | EMV common, R = AC | AC | Mastercard (CBC) | ISO format 2 |

AC is the cryptogram of the first GENERATE AC (or qVSDC GPO) of the session, whatever its type,
so an application blocked (answering AAC) can still be unblocked by script; n counts the
script commands already received in the session (M/Chip increments the AC per command). The
command MAC is 8 bytes over CLA INS P1 P2 Lc || ATC || AC || command data (Book 2 §9.2.3).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from rig.card.application import Command
from rig.card.emv_state import AppState, CardState
from rig.crypto.arqc import TAG_LENGTHS, generate_arpc, get_cvn
from rig.crypto.emv_keys import common_session_key
from rig.crypto.primitives import CryptoError, xor
from rig.crypto.secure_messaging import (
    command_mac,
    decrypt_command_data,
    sm_session_key,
    visa_sm_session_key,
)
from rig.emv.dol import fit_value
from rig.emv.tlv import encode, tag_to_hex
from rig.profiles.model import Application

AAC, TC, ARQC = 0x00, 0x40, 0x80
AC_NAMES = {AAC: "AAC", TC: "TC", ARQC: "ARQC"}
MAC_LENGTH = 8
DKI = 0x01

SW_OK = 0x9000
SW_SELECTED_BLOCKED = 0x6283
SW_ISSUER_AUTH_FAILED = 0x6300
SW_WRONG_LENGTH = 0x6700
SW_PIN_BLOCKED = 0x6983
SW_DATA_INVALID = 0x6984
SW_CONDITIONS = 0x6985
SW_SM_INCORRECT = 0x6988
SW_WRONG_DATA = 0x6A80
SW_FUNCTION = 0x6A81
SW_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_P1P2 = 0x6A86
SW_REF_NOT_FOUND = 0x6A88
SW_INS = 0x6D00
SW_CLA = 0x6E00
SW_INTERNAL = 0x6F00

STATUS_MEANINGS: dict[int, str] = {
    SW_OK: "success",
    SW_SELECTED_BLOCKED: "selected file invalidated (application blocked)",
    SW_ISSUER_AUTH_FAILED: "issuer authentication failed",
    SW_WRONG_LENGTH: "wrong length",
    SW_PIN_BLOCKED: "PIN blocked (try limit exceeded)",
    SW_DATA_INVALID: "referenced data invalidated",
    SW_CONDITIONS: "conditions of use not satisfied",
    SW_SM_INCORRECT: "secure messaging data objects incorrect (MAC)",
    SW_WRONG_DATA: "incorrect data field",
    SW_FUNCTION: "function not supported (card blocked / no such method)",
    SW_NOT_FOUND: "application or file not found",
    SW_RECORD_NOT_FOUND: "record not found",
    SW_P1P2: "incorrect P1 P2",
    SW_REF_NOT_FOUND: "referenced data not found",
    SW_INS: "instruction not supported",
    SW_CLA: "class not supported",
    SW_INTERNAL: "internal error",
}
"""Every status word the EMV card answers (63Cx: wrong PIN, x tries left, besides)."""

COMMAND_NAMES: dict[tuple[int, int], str] = {
    (0x00, 0xA4): "SELECT",
    (0x80, 0xA8): "GET_PROCESSING_OPTIONS",
    (0x00, 0xB2): "READ_RECORD",
    (0x80, 0xCA): "GET_DATA",
    (0x00, 0x20): "VERIFY",
    (0x00, 0x84): "GET_CHALLENGE",
    (0x00, 0x88): "INTERNAL_AUTHENTICATE",
    (0x80, 0xAE): "GENERATE_AC",
    (0x00, 0x82): "EXTERNAL_AUTHENTICATE",
    (0x84, 0x24): "PIN_CHANGE_UNBLOCK",
    (0x84, 0x1E): "APPLICATION_BLOCK",
    (0x84, 0x18): "APPLICATION_UNBLOCK",
    (0x84, 0x16): "CARD_BLOCK",
    (0x04, 0xDA): "PUT_DATA",
    (0x84, 0xDA): "PUT_DATA",
}
"""(CLA, INS) -> command name, as fault rules and traces spell it."""


def command_name(apdu: bytes) -> str:
    """The EMV command an APDU carries ("UNKNOWN" when not one of ours)."""
    if len(apdu) < 2:
        return "UNKNOWN"
    return COMMAND_NAMES.get((apdu[0], apdu[1]), "UNKNOWN")


@dataclass
class CvrFacts:
    """What the card knows about the current and last transactions, for the CVR."""

    first_ac: int | None = None
    second_ac: int | None = None
    offline_pin_performed: bool = False
    offline_pin_failed: bool = False
    offline_pin_ok: bool = False
    enciphered_pin: bool = False
    unable_online: bool = False
    last_online_not_completed: bool = False
    pin_try_limit_exceeded: bool = False
    issuer_auth_performed: bool = False
    issuer_auth_failed: bool = False
    issuer_auth_failed_last: bool = False
    dda_performed: bool = False
    cda_first: bool = False
    cda_second: bool = False
    script_counter: int = 0
    script_failed: bool = False
    script_received: bool = False
    pin_try_counter: int = 0
    lower_limit_exceeded: bool = False
    upper_limit_exceeded: bool = False
    domestic: bool = True


def _ac_code(ac: int | None, default: int) -> int:
    return {AAC: 0b00, TC: 0b01, ARQC: 0b10}.get(ac, default) if ac is not None else default


def _bits(*pairs: tuple[bool, int]) -> int:
    return sum(mask for flag, mask in pairs if flag)


def visa_cvr(f: CvrFacts) -> bytes:
    """4-byte Visa / PBOC CVR (layout in the module docstring)."""
    b2 = (_ac_code(f.second_ac, 0b10) << 6) | (_ac_code(f.first_ac, 0b10) << 4)
    b2 |= _bits(
        (f.issuer_auth_failed, 0x08),
        (f.offline_pin_performed, 0x04),
        (f.offline_pin_failed, 0x02),
        (f.unable_online, 0x01),
    )
    b3 = _bits(
        (f.last_online_not_completed, 0x80),
        (f.pin_try_limit_exceeded, 0x40),
        (f.issuer_auth_failed_last, 0x08),
        (f.pin_try_limit_exceeded, 0x02),
    )
    b4 = ((f.script_counter & 0x0F) << 4) | _bits((f.script_failed, 0x08), (f.dda_performed, 0x02))
    return bytes((0x03, b2, b3, b4))


def mc_cvr(f: CvrFacts) -> bytes:
    """6-byte M/Chip CVR (layout in the module docstring)."""
    b1 = (_ac_code(f.second_ac, 0b10) << 6) | (_ac_code(f.first_ac, 0b10) << 4)
    b1 |= _bits(
        (f.offline_pin_performed, 0x04),
        (f.enciphered_pin, 0x02),
        (f.offline_pin_ok, 0x01),
    )
    b2 = _bits(
        (f.dda_performed and not (f.cda_first or f.cda_second), 0x80),
        (f.cda_first, 0x40),
        (f.cda_second, 0x20),
        (f.issuer_auth_performed, 0x10),
    )
    b3 = ((f.script_counter & 0x0F) << 4) | (f.pin_try_counter & 0x0F)
    b4 = _bits(
        (f.last_online_not_completed, 0x80),
        (f.unable_online, 0x40),
        (not f.offline_pin_performed, 0x20),
        (f.offline_pin_failed, 0x10),
        (f.pin_try_limit_exceeded, 0x08),
        (not f.domestic, 0x04),
        (f.domestic, 0x02),
    )
    b5 = _bits(
        (f.lower_limit_exceeded, 0x80),
        (f.upper_limit_exceeded, 0x40),
        (f.issuer_auth_failed, 0x04),
        (f.script_received, 0x02),
        (f.script_failed, 0x01),
    )
    return bytes((b1, b2, b3, b4, b5, 0x00))


def build_iad(cvn: str, facts: CvrFacts) -> bytes:
    """Issuer application data (9F10) for the CVN with the CVR of these facts."""
    if cvn in ("visa-10", "visa-18"):
        number = 0x0A if cvn == "visa-10" else 0x12
        return bytes((0x06, DKI, number)) + visa_cvr(facts)
    if cvn == "visa-22":
        return bytes((0x1F, 0x22, DKI)) + visa_cvr(facts) + bytes(25)
    if cvn in ("mc-16", "mc-20"):
        number = 0x10 if cvn == "mc-16" else 0x14
        return bytes((DKI, number)) + mc_cvr(facts) + bytes(10)
    if cvn == "pboc-01":
        return bytes((0x07, DKI, 0x01)) + visa_cvr(facts) + b"\x01"
    raise CryptoError(f"no IAD layout for CVN {cvn!r}")


# ---- PIN blocks --------------------------------------------------------------------------------


def parse_format2_pin_block(block: bytes) -> str | None:
    """PIN digits of an ISO 9564-1 format 2 block (`2N PIN F...`), None when malformed."""
    text = bytes(block).hex().upper()
    if len(block) != 8 or text[0] != "2":
        return None
    n = int(text[1], 16)
    pin, fill = text[2 : 2 + n], text[2 + n :]
    if not 4 <= n <= 12 or not pin.isdigit() or fill != "F" * len(fill):
        return None
    return pin


def parse_vis_pin_block(block: bytes, icc_mk_ac: bytes, current_pin: str | None) -> str | None:
    """New PIN of a VIS PIN block (see `rig.crypto.secure_messaging.vis_pin_block`)."""
    if len(block) != 8:
        return None
    plain = xor(bytes(block), bytes(4) + icc_mk_ac[4:8])
    if current_pin is not None:
        plain = xor(plain, bytes.fromhex(current_pin.ljust(16, "0")))
    n, text = plain[0], plain[1:].hex().upper()
    pin, fill = text[:n], text[n:]
    if not 4 <= n <= 12 or not pin.isdigit() or fill != "F" * len(fill):
        return None
    return pin


def recover_enciphered_pin(
    modulus: int, private_exponent: int, data: bytes, challenge: bytes
) -> str | None:
    """Offline enciphered PIN (Book 2 §7.1): RSA-decipher `7F || PIN block || ICC UN || pad`,
    check the header and the GET CHALLENGE number; the PIN digits, None when a check fails."""
    size = (modulus.bit_length() + 7) // 8
    value = int.from_bytes(data, "big")
    if len(data) != size or value >= modulus:
        return None
    plain = pow(value, private_exponent, modulus).to_bytes(size, "big")
    if plain[0] != 0x7F or plain[9:17] != challenge:
        return None
    return parse_format2_pin_block(plain[1:9])


# ---- issuer script secure messaging ------------------------------------------------------------


@dataclass(frozen=True)
class SmScheme:
    """How one CVN's issuer scripts are protected (table in the module docstring)."""

    keys: str
    encipherment: str
    ac_increment: bool
    pin_block: str


SM_SCHEMES: dict[str, SmScheme] = {
    "visa-10": SmScheme("visa", "visa", False, "vis"),
    "visa-18": SmScheme("visa", "visa", False, "vis"),
    "visa-22": SmScheme("common", "visa", False, "iso2"),
    "mc-16": SmScheme("common", "mastercard", True, "iso2"),
    "mc-20": SmScheme("common", "mastercard", True, "iso2"),
    "pboc-01": SmScheme("common", "mastercard", False, "iso2"),
}


def script_ac(cvn: str, arqc: bytes, index: int) -> bytes:
    """The AC a script command is MACed with: the ARQC, plus `index` for M/Chip."""
    if not SM_SCHEMES[cvn].ac_increment:
        return arqc
    return ((int.from_bytes(arqc, "big") + index) % (1 << 64)).to_bytes(8, "big")


def sm_key(cvn: str, icc_mk: bytes, atc: bytes, ac: bytes) -> bytes:
    """SM session key (MAC or ENC, by the master key given) for the CVN."""
    if SM_SCHEMES[cvn].keys == "visa":
        return visa_sm_session_key(icc_mk, atc)
    return sm_session_key(icc_mk, ac) if len(ac) == 8 else common_session_key(icc_mk, ac)


def check_script_mac(
    cvn: str, icc_mk_smi: bytes, header: bytes, atc: bytes, ac: bytes, body: bytes
) -> bytes | None:
    """Split `body` into data and its 8-byte MAC; the data when the MAC verifies, else None."""
    if len(body) < MAC_LENGTH:
        return None
    data, mac = body[:-MAC_LENGTH], body[-MAC_LENGTH:]
    key = sm_key(cvn, icc_mk_smi, atc, ac)
    return data if command_mac(key, header, atc, ac, data, MAC_LENGTH) == mac else None


def decipher_pin_block(cvn: str, icc_mk_smc: bytes, atc: bytes, ac: bytes, data: bytes) -> bytes:
    """The plaintext PIN block of a PIN CHANGE command's enciphered data."""
    key = sm_key(cvn, icc_mk_smc, atc, ac)
    if not data or len(data) % 8:
        raise CryptoError(f"enciphered PIN block: {len(data)} bytes, not a multiple of 8")
    if SM_SCHEMES[cvn].encipherment == "visa":
        plain = decrypt_command_data(key, data, "ecb")
        n = plain[0]
        if n + 1 > len(plain):
            raise CryptoError("enciphered PIN block: length byte overruns the data")
        return plain[1 : 1 + n]
    return decrypt_command_data(key, data, "cbc")[:8]


def new_pin_from_block(
    cvn: str, block: bytes, p2: int, icc_mk_ac: bytes, current_pin: str | None
) -> str | None:
    """The new PIN a deciphered PIN CHANGE block carries (P2=01 with, 02 without current PIN)."""
    if SM_SCHEMES[cvn].pin_block == "vis" or p2 == 0x01:
        if p2 == 0x01 and current_pin is None:
            return None
        return parse_vis_pin_block(block, icc_mk_ac, current_pin if p2 == 0x01 else None)
    return parse_format2_pin_block(block)


# ---- selection data and AC input ---------------------------------------------------------------

PSE_NAME = b"1PAY.SYS.DDF01"
PPSE_NAME = b"2PAY.SYS.DDF01"
PSE_SFI = 1
LOG_SFI = 11
LOG_FORMAT = bytes.fromhex("9F02065F2A029A039C019F36029F2701")
"""9F4F: amount, currency, date, type, ATC, CID — each log record is these values in order."""


def app_entry(app: Application, *, kernel: int | None = None) -> bytes:
    """A directory entry 61 { 4F AID, 50 label, 9F12 preferred name, 87 priority, 9F2A }."""
    body = encode(0x4F, bytes.fromhex(app.aid)) + encode(0x50, _text(app.label))
    if app.preferred_name:
        body += encode(0x9F12, _text(app.preferred_name))
    if app.priority:
        body += encode(0x87, bytes((app.priority,)))
    if kernel is not None:
        body += encode(0x9F2A, bytes((kernel,)))
    return encode(0x61, body)


def pse_fci() -> bytes:
    """FCI of the PSE: 6F { 84 name, A5 { 88 SFI of the directory, 5F2D 'en' } }."""
    a5 = encode(0x88, bytes((PSE_SFI,))) + encode(0x5F2D, b"en")
    return encode(0x6F, encode(0x84, PSE_NAME) + encode(0xA5, a5))


def ppse_fci(entries: list[bytes]) -> bytes:
    """FCI of the PPSE: 6F { 84 name, A5 { BF0C { 61 entries } } }."""
    a5 = encode(0xBF0C, b"".join(entries))
    return encode(0x6F, encode(0x84, PPSE_NAME) + encode(0xA5, a5))


def app_fci(app: Application, pdol: str) -> bytes:
    """FCI of an application: 84 AID, A5 { 50, 87, 9F38 PDOL, 5F2D, 9F12, BF0C { 9F4D } }."""
    a5 = encode(0x50, _text(app.label))
    if app.priority:
        a5 += encode(0x87, bytes((app.priority,)))
    if pdol:
        a5 += encode(0x9F38, bytes.fromhex(pdol))
    a5 += encode(0x5F2D, b"en")
    if app.preferred_name:
        a5 += encode(0x9F11, b"\x01") + encode(0x9F12, _text(app.preferred_name))
    a5 += encode(0xBF0C, encode(0x9F4D, bytes((LOG_SFI, 10))))
    return encode(0x6F, encode(0x84, bytes.fromhex(app.aid)) + encode(0xA5, a5))


def _text(value: str) -> bytes:
    return value.encode("ascii", "replace")[:16]


def ac_tags(
    cvn: str, terminal: dict[int, bytes], aip: bytes, atc: int, iad: bytes
) -> dict[str, bytes]:
    """The tag -> value map `rig.crypto.arqc.generate_ac` needs: terminal data (zeros when the
    terminal did not send a tag), the AIP given at GPO, the ATC and the IAD."""
    out: dict[str, bytes] = {"82": aip, "9F36": atc.to_bytes(2, "big"), "9F10": iad}
    for element in get_cvn(cvn).elements:
        if element in out or element == "CVR":
            continue
        size = TAG_LENGTHS[element]
        value = terminal.get(int(element, 16), bytes(size))
        out[element] = fit_value(value, size, "b")
    return out


def arpc_ok(cvn: str, icc_mk_ac: bytes, arqc: bytes, atc: bytes, un: bytes, data: bytes) -> bool:
    """Check issuer authentication data (91): ARPC || ARC (method 1) or ARPC || CSU [prop] (2)."""
    if get_cvn(cvn).arpc_method == 1:
        if len(data) != 10:
            return False
        want = generate_arpc(cvn, icc_mk_ac, arqc, atc, un=un, arc=data[8:10])
        return hmac.compare_digest(want, data[:8])
    if not 8 <= len(data) <= 16:
        return False
    want = generate_arpc(cvn, icc_mk_ac, arqc, atc, un=un, csu=data[4:8], proprietary=data[8:])
    return hmac.compare_digest(want, data[:4])


def apply_script(
    state: CardState,
    app_state: AppState,
    pin_try_limit: int,
    cmd: Command,
    data: bytes,
    keys: tuple[bytes, bytes, bytes],
    cvn: str,
    atc_ac: tuple[bytes, bytes],
) -> int:
    """Carry out a script command whose MAC verified; the status word to answer."""
    if cmd.ins == 0xDA:
        if not data:
            return SW_WRONG_LENGTH
        tag = tag_to_hex((cmd.p1 << 8) | cmd.p2) if cmd.p1 else f"{cmd.p2:02X}"
        app_state.data[tag] = data.hex().upper()
        return SW_OK
    if cmd.p1 or (cmd.ins != 0x24 and cmd.p2):
        return SW_P1P2
    if cmd.ins in (0x1E, 0x18, 0x16):
        if data:
            return SW_WRONG_LENGTH
        if cmd.ins == 0x16:
            state.card_blocked = True
        else:
            app_state.blocked = cmd.ins == 0x1E
        return SW_OK
    if cmd.p2 not in (0x00, 0x01, 0x02):
        return SW_P1P2
    if cmd.p2 == 0x00:
        if data:
            return SW_WRONG_LENGTH
    else:
        mk_ac, _, mk_smc = keys
        block = decipher_pin_block(cvn, mk_smc, atc_ac[0], atc_ac[1], data)
        pin = new_pin_from_block(cvn, block, cmd.p2, mk_ac, state.pin)
        if pin is None:
            return SW_WRONG_DATA
        state.pin = pin
    state.pin_try_counter = pin_try_limit
    return SW_OK
