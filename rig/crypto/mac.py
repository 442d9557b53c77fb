"""Message authentication codes: ISO 9797-1 algorithms 1 and 3 (retail MAC), AES- and TDES-CMAC."""

from __future__ import annotations

from typing import Literal

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

from rig.crypto.primitives import (
    CryptoError,
    des_decrypt,
    des_encrypt,
    expand_tdes_key,
    tdes_cbc_encrypt,
)

__all__ = [
    "aes_cmac",
    "mac_alg1",
    "mac_alg3",
    "pad_method1",
    "pad_method2",
    "tdes_cmac",
]


def pad_method1(data: bytes, block: int = 8) -> bytes:
    """ISO 9797-1 padding method 1: zero bytes up to a positive multiple of the block."""
    if not data:
        return bytes(block)
    return data + bytes(-len(data) % block)


def pad_method2(data: bytes, block: int = 8) -> bytes:
    """ISO 9797-1 padding method 2: one 0x80 byte then zero bytes up to a multiple of the block."""
    data = data + b"\x80"
    return data + bytes(-len(data) % block)


def _pad(data: bytes, padding: int) -> bytes:
    if padding == 1:
        return pad_method1(data)
    if padding == 2:
        return pad_method2(data)
    raise CryptoError(f"padding must be 1 or 2 (ISO 9797-1 padding method), got {padding!r}")


def mac_alg1(
    key: bytes,
    data: bytes,
    padding: int = 1,
    block: Literal["tdes", "des"] = "tdes",
) -> bytes:
    """ISO 9797-1 MAC algorithm 1 (CBC-MAC) with TDES or single DES; returns the full 8-byte MAC."""
    padded = _pad(data, padding)
    if block == "tdes":
        if len(key) not in (16, 24):
            raise CryptoError(f"mac_alg1: TDES key must be 16 or 24 bytes, got {len(key)}")
        return tdes_cbc_encrypt(key, padded)[-8:]
    if block == "des":
        if len(key) != 8:
            raise CryptoError(f"mac_alg1: DES key must be 8 bytes, got {len(key)}")
        return tdes_cbc_encrypt(key, padded)[-8:]
    raise CryptoError(f"mac_alg1: block must be 'tdes' or 'des', got {block!r}")


def mac_alg3(key16: bytes, data: bytes, padding: int = 1) -> bytes:
    """ISO 9797-1 MAC algorithm 3 (retail MAC, X9.19): DES-CBC under K1, then D(K2), E(K1)."""
    if len(key16) != 16:
        raise CryptoError(f"mac_alg3: key must be 16 bytes (K1||K2), got {len(key16)}")
    k1, k2 = key16[:8], key16[8:]
    last = tdes_cbc_encrypt(k1, _pad(data, padding))[-8:]
    return des_encrypt(k1, des_decrypt(k2, last))


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B), full 16-byte tag."""
    if len(key) not in (16, 24, 32):
        raise CryptoError(f"aes_cmac: AES key must be 16, 24 or 32 bytes, got {len(key)}")
    c = cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def tdes_cmac(key: bytes, data: bytes) -> bytes:
    """TDES-CMAC (NIST SP 800-38B with the 64-bit block), full 8-byte tag."""
    if len(key) not in (8, 16, 24):
        raise CryptoError(f"tdes_cmac: TDES key must be 8, 16 or 24 bytes, got {len(key)}")
    c = cmac.CMAC(TripleDES(expand_tdes_key(key)))
    c.update(data)
    return c.finalize()
