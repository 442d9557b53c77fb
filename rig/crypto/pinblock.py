"""ISO 9564-1 PIN blocks: formats 0, 1, 2, 3 (8-byte, TDES) and 4 (16-byte, AES)."""

from __future__ import annotations

import os
from collections.abc import Callable

from rig.crypto.primitives import (
    CryptoError,
    aes_ecb_decrypt,
    aes_ecb_encrypt,
    tdes_ecb_decrypt,
    tdes_ecb_encrypt,
    xor,
)

__all__ = [
    "FORMATS",
    "PinBlockError",
    "decode",
    "decode_format4_pin_field",
    "decrypt_pin",
    "encode",
    "encode_format4_pan_field",
    "encode_format4_pin_field",
    "encrypt_pin",
    "format4_decipher",
    "format4_encipher",
]

FORMATS = (0, 1, 2, 3, 4)
RandomBytes = Callable[[int], bytes]


class PinBlockError(CryptoError):
    """A PIN, PAN or PIN block does not fit the ISO 9564-1 format."""


def _check_format(fmt: int) -> None:
    if fmt not in FORMATS:
        raise PinBlockError(f"PIN block format must be one of 0, 1, 2, 3, 4; got {fmt!r}")


def _check_pin(pin: str) -> None:
    if not (isinstance(pin, str) and pin.isascii() and pin.isdigit()):
        raise PinBlockError("PIN must contain decimal digits only")
    if not 4 <= len(pin) <= 12:
        raise PinBlockError(f"PIN length {len(pin)} is outside 4..12 digits")


def _check_pan(pan: str | None, minimum: int) -> str:
    if pan is None:
        raise PinBlockError("this PIN block format needs the PAN")
    if not (isinstance(pan, str) and pan.isascii() and pan.isdigit()):
        raise PinBlockError("PAN must contain decimal digits only")
    if len(pan) < minimum:
        raise PinBlockError(f"PAN too short: {len(pan)} digits, at least {minimum} needed")
    if len(pan) > 19:
        raise PinBlockError(f"PAN too long: {len(pan)} digits, at most 19 allowed")
    return pan


def _pan_block(pan: str | None) -> bytes:
    """Formats 0 and 3 PAN block: 0000 and the 12 rightmost PAN digits before the check digit."""
    pan = _check_pan(pan, 13)
    return bytes.fromhex("0000" + pan[-13:-1])


def _nibbles(count: int, random_bytes: RandomBytes, alphabet: str) -> str:
    data = random_bytes(count)
    if len(data) < count:
        raise PinBlockError(f"random_bytes returned {len(data)} bytes, {count} needed")
    return "".join(alphabet[b % len(alphabet)] for b in data[:count])


def encode(
    fmt: int,
    pin: str,
    pan: str | None = None,
    random_bytes: RandomBytes = os.urandom,
) -> bytes:
    """Clear PIN block for formats 0-3 (8 bytes); for format 4 the clear PIN field (16 bytes)."""
    _check_format(fmt)
    _check_pin(pin)
    if fmt == 4:
        return encode_format4_pin_field(pin, random_bytes)
    fill_len = 14 - len(pin)
    if fmt in (0, 2):
        fill = "F" * fill_len
    elif fmt == 1:
        fill = _nibbles(fill_len, random_bytes, "0123456789ABCDEF")
    else:
        fill = _nibbles(fill_len, random_bytes, "ABCDEF")
    field = bytes.fromhex(f"{fmt}{len(pin):X}{pin}{fill}")
    if fmt in (0, 3):
        return xor(field, _pan_block(pan))
    return field


def _parse_pin_field(fmt: int, text: str) -> str:
    """Read control, length, PIN digits and check the fill of a clear PIN field (hex text)."""
    if text[0] != str(fmt):
        raise PinBlockError(f"format nibble is {text[0]}, expected {fmt}")
    length = int(text[1], 16)
    if not 4 <= length <= 12:
        raise PinBlockError(f"PIN length nibble is {length}, outside 4..12")
    pin = text[2 : 2 + length]
    bad = next((i for i, c in enumerate(pin) if c not in "0123456789"), None)
    if bad is not None:
        raise PinBlockError(f"PIN digit at nibble {2 + bad} is {pin[bad]}, not a decimal digit")
    fill = text[2 + length : 16]
    allowed = {0: "F", 1: "0123456789ABCDEF", 2: "F", 3: "ABCDEF", 4: "A"}[fmt]
    bad = next((i for i, c in enumerate(fill) if c not in allowed), None)
    if bad is not None:
        raise PinBlockError(
            f"wrong filler at nibble {2 + length + bad}: {fill[bad]} (format {fmt} fills with "
            f"{'/'.join(allowed) if len(allowed) < 7 else 'any hex digit'})"
        )
    return pin


def decode(fmt: int, block: bytes, pan: str | None = None) -> str:
    """Recover the PIN from a clear PIN block (formats 0-3) or clear PIN field (format 4)."""
    _check_format(fmt)
    size = 16 if fmt == 4 else 8
    if len(block) != size:
        raise PinBlockError(f"format {fmt} clear block must be {size} bytes, got {len(block)}")
    if fmt == 4:
        return decode_format4_pin_field(block)
    field = xor(block, _pan_block(pan)) if fmt in (0, 3) else block
    return _parse_pin_field(fmt, field.hex().upper())


def encode_format4_pin_field(pin: str, random_bytes: RandomBytes = os.urandom) -> bytes:
    """Format 4 plain-text PIN field: 4, length, PIN, 'A' fill to 8 bytes, then 8 random bytes."""
    _check_pin(pin)
    rnd = random_bytes(8)
    if len(rnd) < 8:
        raise PinBlockError(f"random_bytes returned {len(rnd)} bytes, 8 needed")
    return bytes.fromhex(f"4{len(pin):X}{pin}" + "A" * (14 - len(pin))) + rnd[:8]


def decode_format4_pin_field(field: bytes) -> str:
    """Read the PIN from a format 4 plain-text PIN field (16 bytes)."""
    if len(field) != 16:
        raise PinBlockError(f"format 4 PIN field must be 16 bytes, got {len(field)}")
    return _parse_pin_field(4, field[:8].hex().upper())


def encode_format4_pan_field(pan: str | None) -> bytes:
    """Format 4 plain-text PAN field: length-12 nibble, PAN (left-padded to 12), zero fill."""
    pan = _check_pan(pan, 1)
    text = f"{max(0, len(pan) - 12)}{pan.rjust(12, '0')}"
    return bytes.fromhex(text.ljust(32, "0"))


def format4_encipher(key: bytes, pin_field: bytes, pan_field: bytes) -> bytes:
    """ISO 9564-1 format 4 encipherment: E(K, E(K, PIN field) XOR PAN field)."""
    return aes_ecb_encrypt(key, xor(aes_ecb_encrypt(key, pin_field), pan_field))


def format4_decipher(key: bytes, block: bytes, pan_field: bytes) -> bytes:
    """Inverse of format4_encipher: returns the plain-text PIN field."""
    return aes_ecb_decrypt(key, xor(aes_ecb_decrypt(key, block), pan_field))


def encrypt_pin(
    fmt: int,
    pin: str,
    pan: str | None,
    key: bytes,
    random_bytes: RandomBytes = os.urandom,
) -> bytes:
    """Build and encrypt a PIN block: TDES-ECB for formats 0-3, AES format 4 procedure for 4."""
    _check_format(fmt)
    if fmt == 4:
        pan_field = encode_format4_pan_field(_check_pan(pan, 1))
        return format4_encipher(key, encode_format4_pin_field(pin, random_bytes), pan_field)
    return tdes_ecb_encrypt(key, encode(fmt, pin, pan, random_bytes))


def decrypt_pin(fmt: int, block: bytes, pan: str | None, key: bytes) -> str:
    """Decrypt an encrypted PIN block and return the PIN (test keys only: the PIN is in clear)."""
    _check_format(fmt)
    size = 16 if fmt == 4 else 8
    if len(block) != size:
        raise PinBlockError(f"format {fmt} encrypted block must be {size} bytes, got {len(block)}")
    if fmt == 4:
        pan_field = encode_format4_pan_field(_check_pan(pan, 1))
        return decode_format4_pin_field(format4_decipher(key, block, pan_field))
    return decode(fmt, tdes_ecb_decrypt(key, block), pan)
