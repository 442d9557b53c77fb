"""Issuer script secure messaging (EMV Book 2 section 9): MAC and encryption session keys, the
command MAC, and the enciphered PIN block of PIN CHANGE/UNBLOCK.

Session keys: ``sm_session_key`` is the EMV common derivation with R = the AC (Book 2 9.2.1 and
A1.3, used by M/Chip and Visa CVN 22); ``visa_sm_session_key`` is the Visa (VIS CVN 10/18)
method, MK xor (00*6 || ATC) and MK xor (00*6 || ~ATC).
Command MAC (Book 2 9.2.3): MAC algorithm 3, padding method 2, over
header (CLA INS P1 P2 Lc) || ATC || AC || command data, 4 to 8 bytes.
Encryption (Book 2 9.3): TDES under the ENC session key, ECB or CBC (zero IV); ``emv`` always
pads with method 2, ``mastercard`` pads only when not a multiple of 8, ``visa`` prefixes the
length byte, pads with method 2 and uses ECB.
"""

from __future__ import annotations

from typing import Literal

from rig.crypto.emv_keys import common_session_key
from rig.crypto.mac import mac_alg3, pad_method2
from rig.crypto.primitives import (
    CryptoError,
    adjust_parity,
    tdes_cbc_decrypt,
    tdes_cbc_encrypt,
    tdes_ecb_decrypt,
    tdes_ecb_encrypt,
    xor,
)

__all__ = [
    "command_mac",
    "decrypt_command_data",
    "encrypt_command_data",
    "iso9564_format2_pin_block",
    "pin_change_command",
    "sm_session_key",
    "vis_pin_block",
    "visa_sm_session_key",
]

EncScheme = Literal["emv", "mastercard", "visa"]


def _need(value: bytes, size: int, what: str) -> bytes:
    if len(value) != size:
        raise CryptoError(f"{what}: must be {size} bytes, got {len(value)}")
    return bytes(value)


def sm_session_key(icc_mk_sm: bytes, ac: bytes) -> bytes:
    """EMV common SM session key (MAC or ENC) with R = the 8-byte application cryptogram."""
    return common_session_key(icc_mk_sm, _need(ac, 8, "application cryptogram (9F26)"))


def visa_sm_session_key(icc_mk_sm: bytes, atc: bytes) -> bytes:
    """Visa SM session key: MK_L xor (00*6 || ATC) || MK_R xor (00*6 || ATC xor FFFF)."""
    mk = _need(icc_mk_sm, 16, "ICC SM master key")
    atc = _need(atc, 2, "ATC (9F36)")
    return adjust_parity(
        xor(mk[:8], bytes(6) + atc) + xor(mk[8:], bytes(6) + xor(atc, b"\xff\xff"))
    )


def command_mac(
    sk_mac: bytes,
    header: bytes,
    atc: bytes = b"",
    ac: bytes = b"",
    data: bytes = b"",
    length: int = 8,
) -> bytes:
    """Script command MAC over header || ATC || AC || data (ATC and AC are MACed, not sent)."""
    _need(sk_mac, 16, "MAC session key")
    _need(header, 5, "command header (CLA INS P1 P2 Lc)")
    if atc:
        _need(atc, 2, "ATC (9F36)")
    if ac:
        _need(ac, 8, "application cryptogram (9F26)")
    if not 4 <= length <= 8:
        raise CryptoError(f"MAC length: must be 4 to 8 bytes, got {length}")
    return mac_alg3(sk_mac, bytes(header) + bytes(atc) + bytes(ac) + bytes(data), 2)[:length]


def encrypt_command_data(
    sk_enc: bytes, data: bytes, scheme: EncScheme = "emv", mode: Literal["cbc", "ecb"] = "cbc"
) -> bytes:
    """Encipher script command data; ``visa`` always uses ECB (see module docstring)."""
    _need(sk_enc, 16, "ENC session key")
    if scheme == "visa":
        if len(data) > 255:
            raise CryptoError(f"command data: at most 255 bytes, got {len(data)}")
        return tdes_ecb_encrypt(sk_enc, pad_method2(bytes([len(data)]) + bytes(data)))
    if scheme == "emv":
        plain = pad_method2(bytes(data))
    elif scheme == "mastercard":
        plain = bytes(data) if data and len(data) % 8 == 0 else pad_method2(bytes(data))
    else:
        raise CryptoError(f"encryption scheme must be emv, mastercard or visa, got {scheme!r}")
    if mode == "cbc":
        return tdes_cbc_encrypt(sk_enc, plain)
    if mode == "ecb":
        return tdes_ecb_encrypt(sk_enc, plain)
    raise CryptoError(f"encryption mode must be 'cbc' or 'ecb', got {mode!r}")


def decrypt_command_data(sk_enc: bytes, data: bytes, mode: Literal["cbc", "ecb"] = "cbc") -> bytes:
    """Decipher script command data (padding left in place: the card strips what it expects)."""
    _need(sk_enc, 16, "ENC session key")
    if mode == "cbc":
        return tdes_cbc_decrypt(sk_enc, bytes(data))
    if mode == "ecb":
        return tdes_ecb_decrypt(sk_enc, bytes(data))
    raise CryptoError(f"encryption mode must be 'cbc' or 'ecb', got {mode!r}")


def _pin_digits(pin: str, what: str) -> str:
    if not isinstance(pin, str) or not pin.isascii() or not pin.isdigit():
        raise CryptoError(f"{what}: must be decimal digits")
    if not 4 <= len(pin) <= 12:
        raise CryptoError(f"{what}: must be 4 to 12 digits, got {len(pin)}")
    return pin


def iso9564_format2_pin_block(pin: str) -> bytes:
    """ISO 9564-1 format 2 PIN block (2, length, PIN, F fill), as EMV PIN CHANGE carries."""
    pin = _pin_digits(pin, "new PIN")
    return bytes.fromhex(f"2{len(pin):X}{pin}".ljust(16, "F"))


def vis_pin_block(icc_mk_ac: bytes, pin: str, current_pin: str | None = None) -> bytes:
    """VIS PIN block: (00*4 || MK_AC bytes 5-8) xor (length || PIN, F fill), optionally xor the
    current PIN (0 fill)."""
    mk = _need(icc_mk_ac, 16, "ICC AC master key")
    pin = _pin_digits(pin, "new PIN")
    block = xor(bytes(4) + mk[4:8], bytes([len(pin)]) + bytes.fromhex(pin.ljust(14, "F")))
    if current_pin is not None:
        current = _pin_digits(current_pin, "current PIN")
        block = xor(block, bytes.fromhex(current.ljust(16, "0")))
    return block


def pin_change_command(
    sk_mac: bytes,
    sk_enc: bytes,
    pin_block: bytes,
    atc: bytes,
    ac: bytes,
    *,
    scheme: EncScheme = "mastercard",
    with_current_pin: bool = False,
    mac_length: int = 8,
) -> bytes:
    """PIN CHANGE/UNBLOCK APDU (CLA 84, INS 24): enciphered PIN block then the command MAC."""
    enc = encrypt_command_data(sk_enc, pin_block, scheme)
    p2 = 0x01 if with_current_pin else 0x02
    header = bytes([0x84, 0x24, 0x00, p2, len(enc) + mac_length])
    return header + enc + command_mac(sk_mac, header, atc, ac, enc, mac_length)
