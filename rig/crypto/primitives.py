"""Block-cipher primitives (DES, TDES, AES in ECB/CBC) and key helpers, on `cryptography` only."""

from __future__ import annotations

import binascii
from collections.abc import Iterable

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "CryptoError",
    "adjust_parity",
    "aes_cbc_decrypt",
    "aes_cbc_encrypt",
    "aes_ecb_decrypt",
    "aes_ecb_encrypt",
    "des_decrypt",
    "des_encrypt",
    "expand_tdes_key",
    "has_odd_parity",
    "parse_hex",
    "tdes_cbc_decrypt",
    "tdes_cbc_encrypt",
    "tdes_ecb_decrypt",
    "tdes_ecb_encrypt",
    "xor",
]


class CryptoError(ValueError):
    """Bad key, data or parameter given to a payment-crypto function."""


def xor(a: bytes, b: bytes) -> bytes:
    """XOR two byte strings of equal length."""
    if len(a) != len(b):
        raise CryptoError(f"xor: lengths differ ({len(a)} and {len(b)} bytes)")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _check_blocks(data: bytes, block: int, what: str) -> None:
    if len(data) % block:
        raise CryptoError(
            f"{what}: data length {len(data)} is not a multiple of the {block}-byte block"
        )


def expand_tdes_key(key: bytes, what: str = "TDES") -> bytes:
    """Return the 24-byte K1||K2||K3 form of an 8-, 16- or 24-byte TDES key."""
    if len(key) not in (8, 16, 24):
        raise CryptoError(f"{what}: TDES key must be 8, 16 or 24 bytes, got {len(key)}")
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    return key


def _aes_key(key: bytes, what: str) -> bytes:
    if len(key) not in (16, 24, 32):
        raise CryptoError(f"{what}: AES key must be 16, 24 or 32 bytes, got {len(key)}")
    return key


def _run(algorithm: object, mode: object, data: bytes, encrypt: bool) -> bytes:
    cipher = Cipher(algorithm, mode)  # type: ignore[arg-type]
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(data) + ctx.finalize()


def des_encrypt(key8: bytes, block: bytes) -> bytes:
    """Single-DES encrypt (TDES with K1=K2=K3) of whole 8-byte blocks in ECB."""
    if len(key8) != 8:
        raise CryptoError(f"des_encrypt: DES key must be 8 bytes, got {len(key8)}")
    _check_blocks(block, 8, "des_encrypt")
    return _run(TripleDES(key8 * 3), modes.ECB(), block, True)


def des_decrypt(key8: bytes, block: bytes) -> bytes:
    """Single-DES decrypt (TDES with K1=K2=K3) of whole 8-byte blocks in ECB."""
    if len(key8) != 8:
        raise CryptoError(f"des_decrypt: DES key must be 8 bytes, got {len(key8)}")
    _check_blocks(block, 8, "des_decrypt")
    return _run(TripleDES(key8 * 3), modes.ECB(), block, False)


def tdes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """TDES-ECB encrypt; key of 16 (2-key) or 24 (3-key) bytes, 8 also accepted (single DES)."""
    _check_blocks(data, 8, "tdes_ecb_encrypt")
    return _run(TripleDES(expand_tdes_key(key, "tdes_ecb_encrypt")), modes.ECB(), data, True)


def tdes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    """TDES-ECB decrypt; key of 16 or 24 bytes (8 also accepted)."""
    _check_blocks(data, 8, "tdes_ecb_decrypt")
    return _run(TripleDES(expand_tdes_key(key, "tdes_ecb_decrypt")), modes.ECB(), data, False)


def _iv(iv: bytes, size: int, what: str) -> bytes:
    if len(iv) != size:
        raise CryptoError(f"{what}: IV must be {size} bytes, got {len(iv)}")
    return iv


def tdes_cbc_encrypt(key: bytes, data: bytes, iv: bytes = bytes(8)) -> bytes:
    """TDES-CBC encrypt without padding."""
    _check_blocks(data, 8, "tdes_cbc_encrypt")
    key = expand_tdes_key(key, "tdes_cbc_encrypt")
    return _run(TripleDES(key), modes.CBC(_iv(iv, 8, "tdes_cbc_encrypt")), data, True)


def tdes_cbc_decrypt(key: bytes, data: bytes, iv: bytes = bytes(8)) -> bytes:
    """TDES-CBC decrypt without padding."""
    _check_blocks(data, 8, "tdes_cbc_decrypt")
    key = expand_tdes_key(key, "tdes_cbc_decrypt")
    return _run(TripleDES(key), modes.CBC(_iv(iv, 8, "tdes_cbc_decrypt")), data, False)


def aes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """AES-ECB encrypt of whole 16-byte blocks."""
    _check_blocks(data, 16, "aes_ecb_encrypt")
    return _run(algorithms.AES(_aes_key(key, "aes_ecb_encrypt")), modes.ECB(), data, True)


def aes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    """AES-ECB decrypt of whole 16-byte blocks."""
    _check_blocks(data, 16, "aes_ecb_decrypt")
    return _run(algorithms.AES(_aes_key(key, "aes_ecb_decrypt")), modes.ECB(), data, False)


def aes_cbc_encrypt(key: bytes, data: bytes, iv: bytes = bytes(16)) -> bytes:
    """AES-CBC encrypt without padding."""
    _check_blocks(data, 16, "aes_cbc_encrypt")
    key = _aes_key(key, "aes_cbc_encrypt")
    return _run(algorithms.AES(key), modes.CBC(_iv(iv, 16, "aes_cbc_encrypt")), data, True)


def aes_cbc_decrypt(key: bytes, data: bytes, iv: bytes = bytes(16)) -> bytes:
    """AES-CBC decrypt without padding."""
    _check_blocks(data, 16, "aes_cbc_decrypt")
    key = _aes_key(key, "aes_cbc_decrypt")
    return _run(algorithms.AES(key), modes.CBC(_iv(iv, 16, "aes_cbc_decrypt")), data, False)


def adjust_parity(key: bytes) -> bytes:
    """Set the low bit of every byte so each byte has odd parity (DES convention)."""
    out = bytearray()
    for b in key:
        high = b & 0xFE
        out.append(high | (0 if bin(high).count("1") % 2 else 1))
    return bytes(out)


def has_odd_parity(key: bytes) -> bool:
    """True when every byte of the key has an odd number of one-bits."""
    return all(bin(b).count("1") % 2 == 1 for b in key)


def parse_hex(text: str, what: str, lengths: Iterable[int] | None = None) -> bytes:
    """Parse hex (spaces allowed); raise CryptoError naming `what` and the expected byte lengths."""
    allowed = sorted(set(lengths)) if lengths is not None else None
    expect = f" (expected {' or '.join(str(n) for n in allowed)} bytes)" if allowed else ""
    if not isinstance(text, str):
        raise CryptoError(f"{what}: expected a hex string{expect}")
    clean = "".join(text.split())
    if len(clean) % 2:
        raise CryptoError(f"{what}: odd number of hex digits ({len(clean)}){expect}")
    try:
        value = binascii.unhexlify(clean)
    except (binascii.Error, ValueError):
        bad = next((i for i, c in enumerate(clean) if c not in "0123456789abcdefABCDEF"), 0)
        raise CryptoError(f"{what}: not hex at character {bad}{expect}") from None
    if allowed and len(value) not in allowed:
        raise CryptoError(f"{what}: {len(value)} bytes given{expect}")
    return value
