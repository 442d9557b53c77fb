"""TR-31 (ANSI X9.143) key blocks, versions B (TDES derivation) and D (AES derivation)."""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from rig.crypto.mac import aes_cmac, tdes_cmac
from rig.crypto.primitives import (
    CryptoError,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    tdes_cbc_decrypt,
    tdes_cbc_encrypt,
)

__all__ = [
    "ALGORITHMS",
    "EXPORTABILITY",
    "KEY_USAGES",
    "MODES_OF_USE",
    "Header",
    "Tr31Error",
    "parse_header",
    "unwrap",
    "wrap",
]

KEY_USAGES = {
    "B0": "BDK base derivation key",
    "B1": "initial DUKPT key",
    "B2": "base key variant key",
    "C0": "card verification key",
    "D0": "symmetric data encryption key",
    "D1": "asymmetric data encryption key",
    "D2": "data encryption key for decimalisation table",
    "E0": "EMV/chip issuer master key: application cryptograms",
    "E1": "EMV/chip issuer master key: secure messaging confidentiality",
    "E2": "EMV/chip issuer master key: secure messaging integrity",
    "E3": "EMV/chip issuer master key: data authentication code",
    "E4": "EMV/chip issuer master key: dynamic numbers",
    "E5": "EMV/chip issuer master key: card personalisation",
    "E6": "EMV/chip issuer master key: other",
    "I0": "initialisation vector",
    "K0": "key encryption or wrapping key",
    "K1": "TR-31 key block protection key",
    "K2": "TR-34 asymmetric key",
    "K3": "asymmetric key for key agreement / wrapping",
    "M0": "ISO 16609 MAC algorithm 1 (TDES)",
    "M1": "ISO 9797-1 MAC algorithm 1",
    "M2": "ISO 9797-1 MAC algorithm 2",
    "M3": "ISO 9797-1 MAC algorithm 3",
    "M4": "ISO 9797-1 MAC algorithm 4",
    "M5": "ISO 9797-1:1999 MAC algorithm 5",
    "M6": "ISO 9797-1:2011 MAC algorithm 5 / CMAC",
    "M7": "HMAC",
    "M8": "ISO 9797-1:2011 MAC algorithm 6",
    "P0": "PIN encryption key",
    "S0": "asymmetric key pair for digital signature",
    "S1": "asymmetric key pair, CA key",
    "S2": "asymmetric key pair, non-X9.24 key",
    "V0": "PIN verification, KPV, other algorithm",
    "V1": "PIN verification, IBM 3624",
    "V2": "PIN verification, VISA PVV",
    "V3": "PIN verification, X9.132 algorithm 1",
    "V4": "PIN verification, X9.132 algorithm 2",
}
ALGORITHMS = {
    "A": "AES",
    "D": "DEA",
    "E": "elliptic curve",
    "H": "HMAC",
    "R": "RSA",
    "S": "DSA",
    "T": "triple DEA",
}
MODES_OF_USE = {
    "B": "encrypt/wrap and decrypt/unwrap",
    "C": "generate and verify (MAC, PIN)",
    "D": "decrypt/unwrap only",
    "E": "encrypt/wrap only",
    "G": "generate only",
    "N": "no special restrictions",
    "S": "signature only",
    "T": "sign and decrypt",
    "V": "verify only",
    "X": "key derivation",
    "Y": "create key variants",
}
EXPORTABILITY = {
    "E": "exportable under a trusted key",
    "N": "non-exportable",
    "S": "sensitive, exportable under an untrusted key",
}

_BLOCK_SIZE = {"B": 8, "D": 16}
_MAC_LEN = {"B": 8, "D": 16}


class Tr31Error(CryptoError):
    """A TR-31 key block or header is malformed, unsupported or fails authentication."""


def _alnum(value: str, what: str, size: int) -> str:
    if not (isinstance(value, str) and len(value) == size and value.isascii() and value.isalnum()):
        raise Tr31Error(f"header {what} must be {size} ASCII letters/digits, got {value!r}")
    return value


@dataclass(frozen=True)
class Header:
    """TR-31 header fields; optional blocks are (id, data) pairs in block order."""

    version_id: str = "B"
    key_usage: str = "P0"
    algorithm: str = "T"
    mode_of_use: str = "E"
    key_version: str = "00"
    exportability: str = "N"
    optional_blocks: tuple[tuple[str, str], ...] = field(default=())
    reserved: str = "00"

    def __post_init__(self) -> None:
        _alnum(self.version_id, "version ID", 1)
        _alnum(self.key_usage, "key usage", 2)
        _alnum(self.algorithm, "algorithm", 1)
        _alnum(self.mode_of_use, "mode of use", 1)
        _alnum(self.key_version, "key version number", 2)
        _alnum(self.exportability, "exportability", 1)
        _alnum(self.reserved, "reserved field", 2)
        if len(self.optional_blocks) > 99:
            raise Tr31Error("header has more than 99 optional blocks")
        for block_id, data in self.optional_blocks:
            _alnum(block_id, "optional block ID", 2)
            if not (isinstance(data, str) and data.isascii() and data.isprintable()):
                raise Tr31Error(f"optional block {block_id} data must be printable ASCII")

    @property
    def blocks(self) -> dict[str, str]:
        """Optional blocks as a dict (last one wins if an ID repeats)."""
        return dict(self.optional_blocks)

    def render(self, length: int) -> str:
        """Header text with the given total key block length."""
        if not 0 <= length <= 9999:
            raise Tr31Error(f"key block length {length} does not fit the 4-digit length field")
        fixed = (
            f"{self.version_id}{length:04d}{self.key_usage}{self.algorithm}{self.mode_of_use}"
            f"{self.key_version}{self.exportability}{len(self.optional_blocks):02d}{self.reserved}"
        )
        return fixed + "".join(_render_block(i, d) for i, d in self.optional_blocks)

    def describe(self) -> dict[str, str]:
        """Field values with their meanings, for display."""
        return {
            "version_id": self.version_id,
            "key_usage": f"{self.key_usage} ({KEY_USAGES.get(self.key_usage, 'unknown')})",
            "algorithm": f"{self.algorithm} ({ALGORITHMS.get(self.algorithm, 'unknown')})",
            "mode_of_use": f"{self.mode_of_use} ({MODES_OF_USE.get(self.mode_of_use, 'unknown')})",
            "key_version": self.key_version,
            "exportability": (
                f"{self.exportability} ({EXPORTABILITY.get(self.exportability, 'unknown')})"
            ),
            "optional_blocks": ", ".join(f"{i}={d}" for i, d in self.optional_blocks) or "none",
        }


def _render_block(block_id: str, data: str) -> str:
    size = 4 + len(data)
    if size <= 255:
        return f"{block_id}{size:02X}{data}"
    for digits in (4, 6, 8):
        total = 2 + 2 + 2 + digits + len(data)
        if total < 16**digits:
            return f"{block_id}00{digits:02X}{total:0{digits}X}{data}"
    raise Tr31Error(f"optional block {block_id} is too long")


def _hex_int(text: str, offset: int, what: str) -> int:
    if len(text) == 0 or any(c not in "0123456789ABCDEFabcdef" for c in text):
        raise Tr31Error(f"{what} at offset {offset} is not hex: {text!r}")
    return int(text, 16)


def parse_header(text: str) -> tuple[Header, int]:
    """Parse the header at the start of a key block; returns the header and its length."""
    if not isinstance(text, str) or not text.isascii() or not text.isprintable():
        raise Tr31Error("key block must be printable ASCII text")
    if len(text) < 16:
        raise Tr31Error(f"key block too short for a header: {len(text)} characters, 16 needed")
    count_text = text[12:14]
    if not count_text.isdigit():
        raise Tr31Error(f"number of optional blocks at offset 12 is not decimal: {count_text!r}")
    pos, blocks = 16, []
    for n in range(int(count_text)):
        if pos + 4 > len(text):
            raise Tr31Error(f"optional block {n + 1} at offset {pos} runs past the key block")
        block_id = text[pos : pos + 2]
        size = _hex_int(text[pos + 2 : pos + 4], pos + 2, f"optional block {block_id} length")
        data_start = pos + 4
        if size == 0:
            digits = _hex_int(text[pos + 4 : pos + 6], pos + 4, f"block {block_id} length size")
            if digits == 0:
                raise Tr31Error(f"optional block {block_id} at offset {pos}: zero length size")
            size_text = text[pos + 6 : pos + 6 + digits]
            if len(size_text) < digits:
                raise Tr31Error(f"optional block {block_id} at offset {pos} runs past the block")
            size = _hex_int(size_text, pos + 6, f"optional block {block_id} extended length")
            data_start = pos + 6 + digits
        if size < data_start - pos or pos + size > len(text):
            raise Tr31Error(f"optional block {block_id} at offset {pos} has bad length {size}")
        blocks.append((block_id, text[data_start : pos + size]))
        pos += size
    header = Header(
        version_id=text[0],
        key_usage=text[5:7],
        algorithm=text[7],
        mode_of_use=text[8],
        key_version=text[9:11],
        exportability=text[11],
        optional_blocks=tuple(blocks),
        reserved=text[14:16],
    )
    return header, pos


def _derive(version: str, kbpk: bytes) -> tuple[bytes, bytes]:
    """KBEK and KBAK by the CMAC key derivation of TR-31 (versions B and D)."""
    if version == "B":
        if len(kbpk) not in (16, 24):
            raise Tr31Error(f"version B needs a 16- or 24-byte TDES KBPK, got {len(kbpk)} bytes")
        algorithm, bits, prf = (0x0000, 128, tdes_cmac) if len(kbpk) == 16 else (1, 192, tdes_cmac)
    else:
        if len(kbpk) not in (16, 24, 32):
            raise Tr31Error(f"version D needs a 16-, 24- or 32-byte AES KBPK, got {len(kbpk)}")
        algorithm, bits, prf = {16: (2, 128, aes_cmac), 24: (3, 192, aes_cmac)}.get(
            len(kbpk), (4, 256, aes_cmac)
        )
    keys = []
    for usage in (0x0000, 0x0001):
        out, counter = b"", 1
        while len(out) * 8 < bits:
            data = bytes([counter]) + usage.to_bytes(2, "big") + b"\x00"
            out += prf(kbpk, data + algorithm.to_bytes(2, "big") + bits.to_bytes(2, "big"))
            counter += 1
        keys.append(out[: bits // 8])
    return keys[0], keys[1]


def _mac(version: str, kbak: bytes, data: bytes) -> bytes:
    return tdes_cmac(kbak, data) if version == "B" else aes_cmac(kbak, data)


def _pad_header(header: Header, block_size: int) -> Header:
    """Drop any PB block and add a fresh one when the header is not block aligned."""
    blocks = tuple(b for b in header.optional_blocks if b[0] != "PB")
    base = replace(header, optional_blocks=blocks)
    size = len(base.render(0))
    if size % block_size == 0:
        return base
    pad = (-(size + 4)) % block_size
    return replace(base, optional_blocks=(*blocks, ("PB", "0" * pad)))


def wrap(
    kbpk: bytes,
    header: Header | str,
    key: bytes,
    masked_key_len: int | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> str:
    """Wrap `key` in a version B or D key block under `kbpk` (header as Header or TR-31 text)."""
    if isinstance(header, str):
        header, _ = parse_header(header)
    version = header.version_id
    if version not in _BLOCK_SIZE:
        raise Tr31Error(f"unsupported key block version {version!r}: only B and D are supported")
    if not key:
        raise Tr31Error("key to wrap is empty")
    kbek, kbak = _derive(version, kbpk)
    bs = _BLOCK_SIZE[version]
    header = _pad_header(header, bs)
    masked = max(len(key), masked_key_len or 0)
    clear_len = 2 + masked
    clear_len += -clear_len % bs
    payload = (len(key) * 8).to_bytes(2, "big") + key
    padding = random_bytes(clear_len - len(payload))
    if len(padding) != clear_len - len(payload):
        raise Tr31Error("random_bytes returned the wrong number of bytes")
    payload += padding
    total = len(header.render(0)) + 2 * clear_len + 2 * _MAC_LEN[version]
    header_text = header.render(total)
    mac = _mac(version, kbak, header_text.encode("ascii") + payload)
    encrypt = tdes_cbc_encrypt if version == "B" else aes_cbc_encrypt
    encrypted = encrypt(kbek, payload, mac)
    return header_text + encrypted.hex().upper() + mac.hex().upper()


def unwrap(kbpk: bytes, block: str) -> tuple[Header, bytes]:
    """Authenticate and decrypt a version B or D key block; returns (header, key)."""
    if not isinstance(block, str):
        raise Tr31Error("key block must be text")
    block = block.strip()
    header, header_len = parse_header(block)
    version = header.version_id
    if version not in _BLOCK_SIZE:
        raise Tr31Error(f"unsupported key block version {version!r}: only B and D are supported")
    length_text = block[1:5]
    if not length_text.isdigit() or int(length_text) != len(block):
        raise Tr31Error(
            f"key block length field {length_text!r} does not match the {len(block)} characters"
        )
    bs, mac_len = _BLOCK_SIZE[version], _MAC_LEN[version]
    if header_len % bs:
        raise Tr31Error(f"header length {header_len} is not a multiple of the {bs}-byte block")
    body = block[header_len:]
    enc_hex, mac_hex = body[: -2 * mac_len], body[-2 * mac_len :]
    if len(body) <= 2 * mac_len or len(enc_hex) % (2 * bs):
        raise Tr31Error(
            f"encrypted key data at offset {header_len} has bad length {max(len(enc_hex), 0)}"
        )
    bad = next((i for i, c in enumerate(body) if c not in "0123456789ABCDEFabcdef"), None)
    if bad is not None:
        raise Tr31Error(f"key data / MAC is not hex at offset {header_len + bad}")
    encrypted, mac = bytes.fromhex(enc_hex), bytes.fromhex(mac_hex)
    kbek, kbak = _derive(version, kbpk)
    decrypt = tdes_cbc_decrypt if version == "B" else aes_cbc_decrypt
    payload = decrypt(kbek, encrypted, mac)
    expected = _mac(version, kbak, block[:header_len].encode("ascii") + payload)
    if not hmac.compare_digest(expected, mac):
        raise Tr31Error("key block MAC mismatch: wrong KBPK or the block was altered")
    bits = int.from_bytes(payload[:2], "big")
    if bits % 8 or bits == 0 or 2 + bits // 8 > len(payload):
        raise Tr31Error(f"key length field {bits} bits does not fit the key data")
    return header, payload[2 : 2 + bits // 8]
