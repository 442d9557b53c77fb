"""Key check values (KCV), DES parity and key-component combination."""

from __future__ import annotations

from functools import reduce

from rig.crypto.mac import aes_cmac
from rig.crypto.primitives import (
    CryptoError,
    adjust_parity,
    aes_ecb_encrypt,
    has_odd_parity,
    tdes_ecb_encrypt,
    xor,
)

__all__ = [
    "adjust_parity",
    "combine_components",
    "has_odd_parity",
    "kcv",
    "kcv_aes_cmac",
    "kcv_aes_ecb",
    "kcv_tdes",
]


def kcv_tdes(key: bytes, length: int = 3) -> bytes:
    """TDES (or DES) KCV: encrypt eight zero bytes, keep the first `length` (3) bytes."""
    if len(key) not in (8, 16, 24):
        raise CryptoError(f"kcv_tdes: key must be 8, 16 or 24 bytes, got {len(key)}")
    return tdes_ecb_encrypt(key, bytes(8))[:length]


def kcv_aes_cmac(key: bytes, length: int = 5) -> bytes:
    """AES KCV per X9.24-3 / TR-31 practice: AES-CMAC of sixteen zero bytes, first 5 bytes."""
    return aes_cmac(key, bytes(16))[:length]


def kcv_aes_ecb(key: bytes, length: int = 3) -> bytes:
    """Legacy AES KCV: AES-ECB of a zero block, first 3 bytes (older HSM convention)."""
    return aes_ecb_encrypt(key, bytes(16))[:length]


def kcv(key: bytes, algorithm: str = "tdes") -> bytes:
    """KCV by algorithm name: 'tdes', 'aes' (CMAC convention) or 'aes-ecb' (legacy)."""
    if algorithm == "tdes":
        return kcv_tdes(key)
    if algorithm in ("aes", "aes-cmac"):
        return kcv_aes_cmac(key)
    if algorithm == "aes-ecb":
        return kcv_aes_ecb(key)
    raise CryptoError(f"kcv: algorithm must be 'tdes', 'aes' or 'aes-ecb', got {algorithm!r}")


def combine_components(*components: bytes) -> bytes:
    """Combine clear key components by XOR (all components must have the same length)."""
    if len(components) < 2:
        raise CryptoError("combine_components: at least two components are needed")
    lengths = {len(c) for c in components}
    if len(lengths) != 1:
        raise CryptoError(f"combine_components: components differ in length {sorted(lengths)}")
    return reduce(xor, components)
