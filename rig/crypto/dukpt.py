"""DUKPT key derivation: TDES per ANSI X9.24-1:2009 and AES per ANSI X9.24-3:2017 (host side)."""

from __future__ import annotations

from rig.crypto.primitives import (
    CryptoError,
    aes_ecb_encrypt,
    des_encrypt,
    tdes_ecb_encrypt,
    xor,
)

__all__ = [
    "AES_KEY_TYPES",
    "AES_USAGES",
    "DukptError",
    "aes_derivation_key",
    "aes_initial_key",
    "aes_ksn_is_valid",
    "aes_next_ksn",
    "aes_working_key",
    "aes_working_keys",
    "tdes_ipek",
    "tdes_ksn_is_valid",
    "tdes_next_ksn",
    "tdes_transaction_key",
    "tdes_variant",
    "tdes_working_keys",
]


class DukptError(CryptoError):
    """Invalid BDK, KSN, counter or key usage for DUKPT."""


# ---------------------------------------------------------------- TDES DUKPT (X9.24-1:2009)

TDES_COUNTER_BITS = 21
TDES_COUNTER_MASK = (1 << TDES_COUNTER_BITS) - 1
TDES_MAX_ONE_BITS = 10
_KEY_MASK = bytes.fromhex("C0C0C0C000000000C0C0C0C000000000")

# Variant masks of X9.24-1:2009 A.4.1 table A-1 (XORed into both halves of the key).
_TDES_VARIANTS = {
    "pin": bytes.fromhex("00000000000000FF00000000000000FF"),
    "mac": bytes.fromhex("000000000000FF00000000000000FF00"),
    "mac_response": bytes.fromhex("00000000FF00000000000000FF000000"),
    "data": bytes.fromhex("0000000000FF00000000000000FF0000"),
    "data_response": bytes.fromhex("000000FF00000000000000FF00000000"),
}


def _tdes_ksn(ksn: bytes) -> int:
    if len(ksn) != 10:
        raise DukptError(f"TDES KSN must be 10 bytes, got {len(ksn)}")
    return int.from_bytes(ksn, "big")


def _check_bdk16(bdk: bytes) -> None:
    if len(bdk) != 16:
        raise DukptError(f"TDES BDK / IPEK must be 16 bytes (2-key TDES), got {len(bdk)}")


def tdes_ksn_is_valid(ksn: bytes) -> bool:
    """True when the 21-bit counter is non-zero and has at most 10 one-bits."""
    counter = _tdes_ksn(ksn) & TDES_COUNTER_MASK
    return counter != 0 and counter.bit_count() <= TDES_MAX_ONE_BITS


def tdes_next_ksn(ksn: bytes) -> bytes:
    """The next usable KSN (X9.24-1 counter rules); DukptError when the counter is exhausted."""
    value = _tdes_ksn(ksn)
    counter = value & TDES_COUNTER_MASK
    if counter.bit_count() > TDES_MAX_ONE_BITS:
        raise DukptError(f"KSN counter {counter:#x} has more than 10 one-bits")
    step = 1 if counter.bit_count() < TDES_MAX_ONE_BITS else counter & -counter
    counter += step
    if counter > TDES_COUNTER_MASK:
        raise DukptError("KSN counter overflow: the device has used all 21-bit counter values")
    return ((value & ~TDES_COUNTER_MASK) | counter).to_bytes(10, "big")


def tdes_ipek(bdk: bytes, ksn: bytes) -> bytes:
    """Initial PIN Encryption Key (IPEK) from the BDK and any KSN of the device."""
    _check_bdk16(bdk)
    initial = (_tdes_ksn(ksn) & ~TDES_COUNTER_MASK).to_bytes(10, "big")[:8]
    return tdes_ecb_encrypt(bdk, initial) + tdes_ecb_encrypt(xor(bdk, _KEY_MASK), initial)


def _nrkgp(key: bytes, reg: bytes) -> bytes:
    """Non-reversible key generation process of X9.24-1 (one future-key step)."""

    def half(k: bytes) -> bytes:
        return xor(des_encrypt(k[:8], xor(reg, k[8:])), k[8:])

    return half(xor(key, _KEY_MASK)) + half(key)


def _tdes_key_from_ipek(ipek: bytes, ksn: bytes) -> bytes:
    value = _tdes_ksn(ksn)
    counter = value & TDES_COUNTER_MASK
    if counter == 0:
        raise DukptError("KSN counter is 0: that is the initial KSN, not a transaction KSN")
    if counter.bit_count() > TDES_MAX_ONE_BITS:
        raise DukptError(f"KSN counter {counter:#x} has more than 10 one-bits (invalid KSN)")
    reg = value & 0xFFFFFFFFFFFFFFFF & ~TDES_COUNTER_MASK
    key = ipek
    bit = 1 << (TDES_COUNTER_BITS - 1)
    while bit:
        if counter & bit:
            reg |= bit
            key = _nrkgp(key, reg.to_bytes(8, "big"))
        bit >>= 1
    return key


def tdes_transaction_key(bdk: bytes, ksn: bytes) -> bytes:
    """The transaction (future) key for a KSN, before any variant is applied."""
    return _tdes_key_from_ipek(tdes_ipek(bdk, ksn), ksn)


def tdes_variant(transaction_key: bytes, usage: str) -> bytes:
    """Apply an X9.24-1 variant: pin, mac, mac_response, data, data_response."""
    _check_bdk16(transaction_key)
    if usage not in _TDES_VARIANTS:
        raise DukptError(f"TDES DUKPT usage must be one of {', '.join(_TDES_VARIANTS)}")
    key = xor(transaction_key, _TDES_VARIANTS[usage])
    if usage.startswith("data"):
        key = tdes_ecb_encrypt(key, key[:8]) + tdes_ecb_encrypt(key, key[8:])
    return key


def tdes_working_keys(bdk: bytes, ksn: bytes) -> dict[str, bytes]:
    """All working keys of one transaction: pin, mac, mac_response, data, data_response."""
    txn = tdes_transaction_key(bdk, ksn)
    return {usage: tdes_variant(txn, usage) for usage in _TDES_VARIANTS}


# ---------------------------------------------------------------- AES DUKPT (X9.24-3:2017)

AES_COUNTER_BITS = 32
AES_MAX_ONE_BITS = 16

# Key type -> (algorithm indicator, key length in bits) from X9.24-3:2017 section 6.3.
AES_KEY_TYPES = {
    "TDES2": (0x0000, 128),
    "TDES3": (0x0001, 192),
    "AES128": (0x0002, 128),
    "AES192": (0x0003, 192),
    "AES256": (0x0004, 256),
}

# Key usage indicators from X9.24-3:2017 section 6.3.2.
AES_USAGES = {
    "kek": 0x0002,
    "pin": 0x1000,
    "mac_generate": 0x2000,
    "mac_verify": 0x2001,
    "mac": 0x2002,
    "data_encrypt": 0x3000,
    "data_decrypt": 0x3001,
    "data": 0x3002,
    "derivation": 0x8000,
    "initial": 0x8001,
}
_AES_BY_LEN = {16: "AES128", 24: "AES192", 32: "AES256"}


def _aes_ksn(ksn: bytes) -> tuple[bytes, int]:
    if len(ksn) != 12:
        raise DukptError(
            f"AES DUKPT KSN must be 12 bytes (initial key ID 8 + counter 4), got {len(ksn)}"
        )
    return ksn[:8], int.from_bytes(ksn[8:], "big")


def _aes_bdk_type(key: bytes, what: str) -> str:
    if len(key) not in _AES_BY_LEN:
        raise DukptError(f"AES DUKPT {what} must be 16, 24 or 32 bytes, got {len(key)}")
    return _AES_BY_LEN[len(key)]


def _aes_derive(key: bytes, usage: int, key_type: str, data8: bytes) -> bytes:
    """X9.24-3 derivation: AES-ECB of (version, block counter, usage, algorithm, length, data)."""
    algorithm, bits = AES_KEY_TYPES[key_type]
    out = b""
    for counter in range(1, (bits + 127) // 128 + 1):
        block = bytes([0x01, counter]) + usage.to_bytes(2, "big") + algorithm.to_bytes(2, "big")
        out += aes_ecb_encrypt(key, block + bits.to_bytes(2, "big") + data8)
    return out[: bits // 8]


def aes_ksn_is_valid(ksn: bytes) -> bool:
    """True when the 32-bit counter is non-zero and has at most 16 one-bits."""
    _, counter = _aes_ksn(ksn)
    return counter != 0 and counter.bit_count() <= AES_MAX_ONE_BITS


def aes_next_ksn(ksn: bytes) -> bytes:
    """The next usable AES KSN (counter with at most 16 one-bits); DukptError when exhausted."""
    ikid, counter = _aes_ksn(ksn)
    if counter.bit_count() > AES_MAX_ONE_BITS:
        raise DukptError(f"KSN counter {counter:#x} has more than 16 one-bits")
    counter += 1 if counter.bit_count() < AES_MAX_ONE_BITS else counter & -counter
    if counter >= 1 << AES_COUNTER_BITS:
        raise DukptError("KSN counter overflow: the device has used all 32-bit counter values")
    return ikid + counter.to_bytes(4, "big")


def aes_initial_key(bdk: bytes, initial_key_id: bytes, key_type: str | None = None) -> bytes:
    """Initial key from the BDK and the 8-byte initial key ID (type defaults to the BDK's)."""
    bdk_type = _aes_bdk_type(bdk, "BDK")
    if len(initial_key_id) != 8:
        raise DukptError(f"initial key ID must be 8 bytes, got {len(initial_key_id)}")
    key_type = key_type or bdk_type
    if key_type not in _AES_BY_LEN.values():
        raise DukptError(f"initial key type must be AES128, AES192 or AES256, got {key_type!r}")
    return _aes_derive(bdk, AES_USAGES["initial"], key_type, initial_key_id)


def aes_derivation_key(initial_key: bytes, ksn: bytes) -> bytes:
    """Transaction derivation key for a KSN, walking the counter bits from the top (X9.24-3)."""
    key_type = _aes_bdk_type(initial_key, "initial key")
    ikid, counter = _aes_ksn(ksn)
    if counter == 0:
        raise DukptError("KSN counter is 0: that is the initial KSN, not a transaction KSN")
    if counter.bit_count() > AES_MAX_ONE_BITS:
        raise DukptError(f"KSN counter {counter:#x} has more than 16 one-bits (invalid KSN)")
    key, base = initial_key, 0
    bit = 1 << (AES_COUNTER_BITS - 1)
    while bit:
        if counter & bit:
            base |= bit
            key = _aes_derive(
                key, AES_USAGES["derivation"], key_type, ikid[4:] + base.to_bytes(4, "big")
            )
        bit >>= 1
    return key


def aes_working_key(
    bdk: bytes,
    ksn: bytes,
    usage: str = "pin",
    key_type: str = "AES128",
) -> bytes:
    """Working key for one transaction: usage from AES_USAGES, key type from AES_KEY_TYPES."""
    if usage not in AES_USAGES or usage in ("derivation", "initial"):
        raise DukptError(
            f"AES DUKPT usage {usage!r} unknown; use one of pin, mac_generate, "
            "mac_verify, mac, data_encrypt, data_decrypt, data, kek"
        )
    if key_type not in AES_KEY_TYPES:
        raise DukptError(f"key type {key_type!r} unknown; use one of {', '.join(AES_KEY_TYPES)}")
    ikid, _ = _aes_ksn(ksn)
    derivation = aes_derivation_key(aes_initial_key(bdk, ikid), ksn)
    return _aes_working(derivation, ksn, usage, key_type)


def _aes_working(derivation: bytes, ksn: bytes, usage: str, key_type: str) -> bytes:
    if AES_KEY_TYPES[key_type][1] > len(derivation) * 8:
        raise DukptError(
            f"a {key_type} working key cannot be derived from a {len(derivation) * 8}-bit BDK"
        )
    return _aes_derive(derivation, AES_USAGES[usage], key_type, ksn[4:12])


def aes_working_keys(bdk: bytes, ksn: bytes, key_type: str = "AES128") -> dict[str, bytes]:
    """PIN, MAC generation/verification and data encrypt/decrypt keys of one transaction."""
    if key_type not in AES_KEY_TYPES:
        raise DukptError(f"key type {key_type!r} unknown; use one of {', '.join(AES_KEY_TYPES)}")
    derivation = aes_derivation_key(aes_initial_key(bdk, ksn[:8]), ksn)
    usages = ("pin", "mac_generate", "mac_verify", "data_encrypt", "data_decrypt")
    return {u: _aes_working(derivation, ksn, u, key_type) for u in usages}
