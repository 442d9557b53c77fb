"""EMV card keys: ICC master key derivation (Book 2 A1.4) and AC session keys (Book 2 A1.3 and
scheme variants). Pure functions over bytes; bad input raises `CryptoError` naming the field.

Session key methods, by name:
- ``none``: the ICC master key (UDK) is used directly (Visa CVN 10).
- ``emv_csk``: EMV common session key derivation, Book 2 A1.3.1, R = ATC || 00*6 (Visa CVN 18/22,
  Mastercard CVN 20/21).
- ``mastercard``: Mastercard SKD, R = ATC || 00 00 || UN, i.e. the CSK blocks become
  ATC || F0 || 00 || UN and ATC || 0F || 00 || UN (M/Chip CVN 16/17).
- ``pboc``: PBOC 2.0 / UICS, TDES(MK)[00*6 || ATC || 00*6 || ~ATC].
"""

from __future__ import annotations

import hashlib
from typing import Literal

from rig.crypto.primitives import CryptoError, adjust_parity, tdes_ecb_encrypt, xor

__all__ = [
    "SESSION_METHODS",
    "SessionMethod",
    "ac_session_key",
    "common_session_key",
    "derive_icc_mk",
    "icc_mk_option_a",
    "icc_mk_option_b",
    "mastercard_session_key",
    "pboc_session_key",
]

SessionMethod = Literal["none", "emv_csk", "mastercard", "pboc"]
SESSION_METHODS: tuple[str, ...] = ("none", "emv_csk", "mastercard", "pboc")

_FF8 = b"\xff" * 8


def _key16(key: bytes, what: str) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) != 16:
        size = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
        raise CryptoError(f"{what}: must be a 16-byte double-length TDES key, got {size}")
    return bytes(key)


def _fixed(value: bytes, size: int, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != size:
        got = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise CryptoError(f"{what}: must be {size} bytes, got {got}")
    return bytes(value)


def _digits(text: str, what: str, lo: int, hi: int) -> str:
    if not isinstance(text, str) or not text.isascii() or not text.isdigit():
        raise CryptoError(f"{what}: must be decimal digits, got {text!r}")
    if not lo <= len(text) <= hi:
        raise CryptoError(f"{what}: must be {lo} to {hi} digits, got {len(text)}")
    return text


def _pan_psn(pan: str, psn: str | None) -> tuple[str, str]:
    pan = _digits(pan, "PAN", 12, 19)
    psn = _digits("00" if psn is None else psn, "PSN (5F34)", 1, 2).zfill(2)
    return pan, psn


def _from_block(imk: bytes, y: bytes) -> bytes:
    return adjust_parity(tdes_ecb_encrypt(imk, y + xor(y, _FF8)))


def icc_mk_option_a(imk: bytes, pan: str, psn: str | None = "00") -> bytes:
    """ICC master key, Book 2 A1.4.1 Option A: Y = rightmost 16 digits of PAN||PSN (zero-padded
    left); MK = TDES(IMK)[Y] || TDES(IMK)[Y xor FF..FF], odd parity."""
    imk = _key16(imk, "issuer master key")
    pan, psn = _pan_psn(pan, psn)
    return _from_block(imk, bytes.fromhex((pan + psn)[-16:].zfill(16)))


def _decimalise(digest_hex: str) -> str:
    digits = [c for c in digest_hex if c.isdigit()]
    if len(digits) < 16:
        letters = [str("abcdef".index(c)) for c in digest_hex if not c.isdigit()]
        digits += letters[: 16 - len(digits)]
    return "".join(digits[:16])


def icc_mk_option_b(imk: bytes, pan: str, psn: str | None = "00") -> bytes:
    """ICC master key, Book 2 A1.4.2 Option B: for PANs over 16 digits, SHA-1 of PAN||PSN (left
    zero-padded to even length) decimalised to 16 digits, then as Option A; else Option A."""
    imk = _key16(imk, "issuer master key")
    pan, psn = _pan_psn(pan, psn)
    if len(pan) <= 16:
        return icc_mk_option_a(imk, pan, psn)
    x = pan + psn
    if len(x) % 2:
        x = "0" + x
    y = _decimalise(hashlib.sha1(bytes.fromhex(x)).hexdigest())
    return _from_block(imk, bytes.fromhex(y))


def derive_icc_mk(imk: bytes, pan: str, psn: str | None = "00", option: str = "A") -> bytes:
    """ICC master key by Book 2 option 'A' or 'B'."""
    if option.upper() == "A":
        return icc_mk_option_a(imk, pan, psn)
    if option.upper() == "B":
        return icc_mk_option_b(imk, pan, psn)
    raise CryptoError(f"master key derivation option must be 'A' or 'B', got {option!r}")


def common_session_key(icc_mk: bytes, r: bytes) -> bytes:
    """EMV common session key derivation, Book 2 A1.3.1: TDES(MK) over R with byte 3 set to F0
    (left half) and to 0F (right half); odd parity."""
    icc_mk = _key16(icc_mk, "ICC master key")
    r = _fixed(r, 8, "diversification value R")
    left = r[:2] + b"\xf0" + r[3:]
    right = r[:2] + b"\x0f" + r[3:]
    return adjust_parity(tdes_ecb_encrypt(icc_mk, left + right))


def mastercard_session_key(icc_mk: bytes, atc: bytes, un: bytes) -> bytes:
    """Mastercard SKD (M/Chip): common derivation with R = ATC || 00 00 || UN."""
    atc = _fixed(atc, 2, "ATC (9F36)")
    un = _fixed(un, 4, "unpredictable number (9F37)")
    return common_session_key(icc_mk, atc + b"\x00\x00" + un)


def pboc_session_key(icc_mk: bytes, atc: bytes) -> bytes:
    """PBOC 2.0 / UICS AC session key: TDES(MK)[00*6 || ATC || 00*6 || (ATC xor FFFF)]."""
    icc_mk = _key16(icc_mk, "ICC master key")
    atc = _fixed(atc, 2, "ATC (9F36)")
    return tdes_ecb_encrypt(icc_mk, bytes(6) + atc + bytes(6) + xor(atc, b"\xff\xff"))


def ac_session_key(method: str, icc_mk: bytes, atc: bytes, un: bytes | None = None) -> bytes:
    """AC session key by method name (see module docstring)."""
    if method == "none":
        return _key16(icc_mk, "ICC master key")
    if method == "emv_csk":
        return common_session_key(icc_mk, _fixed(atc, 2, "ATC (9F36)") + bytes(6))
    if method == "mastercard":
        if un is None:
            raise CryptoError("Mastercard session key needs the unpredictable number (9F37)")
        return mastercard_session_key(icc_mk, atc, un)
    if method == "pboc":
        return pboc_session_key(icc_mk, atc)
    raise CryptoError(f"session key method must be one of {', '.join(SESSION_METHODS)}")
