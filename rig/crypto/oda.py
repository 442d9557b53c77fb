"""EMV Book 2 offline data authentication with RSA: issuer and ICC public-key certificates
(formats '02', '04'), SDA signed static data ('03'), DDA and CDA signed dynamic data ('05').

Signing and recovery are the raw RSA operations on integers (Book 2 A2.1, no padding beyond the
recovered-data framing 6A ... BC); the hash is SHA-1 (hash algorithm indicator '01'). Every
verification failure raises `OdaError` whose ``check`` names the Book 2 step that failed:
length, trailer, header, format, algorithm, hash, pan, expiry, cid, transaction_hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date

from cryptography.hazmat.primitives.asymmetric import rsa

from rig.crypto.primitives import CryptoError

__all__ = [
    "CdaResult",
    "IccKey",
    "IssuerKey",
    "OdaError",
    "PublicKeyCertificate",
    "RsaKeyPair",
    "RsaPublicKey",
    "build_icc_certificate",
    "build_issuer_certificate",
    "cda_dynamic_data",
    "dda_dynamic_data",
    "generate_rsa_key",
    "make_ca_key",
    "recover_icc_key",
    "recover_issuer_key",
    "sign_cda",
    "sign_dynamic_data",
    "sign_static_data",
    "transaction_data_hash",
    "verify_cda",
    "verify_dynamic_data",
    "verify_static_data",
]

HEADER = 0x6A
TRAILER = 0xBC
SHA1 = 0x01
RSA_ALG = 0x01
PAD = 0xBB


class OdaError(CryptoError):
    """Offline data authentication failed; ``check`` names the failing Book 2 check."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check


@dataclass(frozen=True)
class RsaPublicKey:
    """RSA public key as EMV carries it: modulus and exponent."""

    modulus: int
    exponent: int

    @property
    def size(self) -> int:
        """Modulus length in bytes (N_CA, N_I or N_IC)."""
        return (self.modulus.bit_length() + 7) // 8

    @property
    def modulus_bytes(self) -> bytes:
        return self.modulus.to_bytes(self.size, "big")

    @property
    def exponent_bytes(self) -> bytes:
        """Exponent as stored on the card: 1 byte for 3, 3 bytes for 65537."""
        return self.exponent.to_bytes(1 if self.exponent < 256 else 3, "big")


@dataclass(frozen=True)
class RsaKeyPair:
    """Test RSA key pair: the public key and the private exponent."""

    public: RsaPublicKey
    private_exponent: int = field(repr=False)

    @classmethod
    def from_cryptography(cls, key: rsa.RSAPrivateKey) -> RsaKeyPair:
        numbers = key.private_numbers()
        pub = numbers.public_numbers
        return cls(RsaPublicKey(pub.n, pub.e), numbers.d)


@dataclass(frozen=True)
class IssuerKey(RsaPublicKey):
    """Issuer public key recovered from its certificate, with the certificate's fields."""

    issuer_id: str
    expiry: str
    serial: bytes


@dataclass(frozen=True)
class IccKey(RsaPublicKey):
    """ICC public key recovered from its certificate, with the certificate's fields."""

    pan: str
    expiry: str
    serial: bytes


@dataclass(frozen=True)
class PublicKeyCertificate:
    """Certificate (tag 90 / 9F46), key remainder (92 / 9F48) and exponent (9F32 / 9F47)."""

    certificate: bytes
    remainder: bytes
    exponent: bytes


@dataclass(frozen=True)
class CdaResult:
    """What a verified CDA signature vouches for."""

    dynamic_number: bytes
    cid: int
    ac: bytes


def generate_rsa_key(bits: int = 1024, exponent: int = 3) -> RsaKeyPair:
    """A new test RSA key (bits a multiple of 8, 1024 to 1984; exponent 3 or 65537)."""
    if exponent not in (3, 65537):
        raise CryptoError(f"RSA exponent: EMV allows 3 or 65537, got {exponent}")
    if bits % 8 or not 1024 <= bits <= 1984:
        raise CryptoError(f"RSA key size: multiple of 8 from 1024 to 1984 bits, got {bits}")
    return RsaKeyPair.from_cryptography(rsa.generate_private_key(exponent, bits))


def make_ca_key(bits: int = 1024, exponent: int = 3) -> RsaKeyPair:
    """A new test certification authority key (labelled test-only; never a scheme CA key)."""
    return generate_rsa_key(bits, exponent)


def _sign(key: RsaKeyPair, block: bytes) -> bytes:
    n = key.public.modulus
    if len(block) != key.public.size:
        raise CryptoError(f"block is {len(block)} bytes, the key needs {key.public.size}")
    return pow(int.from_bytes(block, "big"), key.private_exponent, n).to_bytes(len(block), "big")


def _recover(modulus: int, exponent: int, data: bytes, what: str) -> bytes:
    """Raw RSA public operation, then the trailer and header checks (Book 2 5.3 steps 1-3)."""
    size = (modulus.bit_length() + 7) // 8
    if modulus <= 0 or exponent <= 0:
        raise OdaError("length", f"{what}: unusable public key")
    if len(data) != size:
        raise OdaError("length", f"{what} is {len(data)} bytes, the key modulus is {size}")
    value = int.from_bytes(data, "big")
    if value >= modulus:
        raise OdaError("length", f"{what} is not below the key modulus")
    x = pow(value, exponent, modulus).to_bytes(size, "big")
    if x[-1] != TRAILER:
        raise OdaError("trailer", f"{what}: recovered trailer is {x[-1]:02X}, expected BC")
    if x[0] != HEADER:
        raise OdaError("header", f"{what}: recovered header is {x[0]:02X}, expected 6A")
    return x


def _check_format(x: bytes, expected: int, what: str) -> None:
    if x[1] != expected:
        raise OdaError("format", f"{what}: format is {x[1]:02X}, expected {expected:02X}")


def _check_hash(x: bytes, covered: bytes, what: str) -> None:
    if hashlib.sha1(covered).digest() != x[-21:-1]:
        raise OdaError("hash", f"{what}: hash result does not match the data")


def _digits_field(digits: str, size: int, what: str, lo: int, hi: int) -> bytes:
    if not digits.isascii() or not digits.isdigit() or not lo <= len(digits) <= hi:
        raise CryptoError(f"{what}: must be {lo} to {hi} decimal digits, got {digits!r}")
    return bytes.fromhex(digits.ljust(size * 2, "F"))


def _expiry_field(expiry: str) -> bytes:
    if len(expiry) != 4 or not expiry.isdigit() or not 1 <= int(expiry[:2]) <= 12:
        raise CryptoError(f"certificate expiry: must be MMYY, got {expiry!r}")
    return bytes.fromhex(expiry)


def _check_expiry(raw: bytes, today: date | None, what: str) -> str:
    text = raw.hex()
    if not text.isdigit() or not 1 <= int(text[:2]) <= 12:
        raise OdaError("expiry", f"{what}: expiry {text.upper()} is not a valid MMYY date")
    month, yy = int(text[:2]), int(text[2:])
    year = 2000 + yy if yy < 50 else 1900 + yy
    now = today or date.today()
    if (year, month) < (now.year, now.month):
        raise OdaError("expiry", f"{what}: expired at the end of {text[:2]}/{year}")
    return text


def _unpad_digits(raw: bytes) -> str:
    return raw.hex().upper().rstrip("F")


def _key_field(key: RsaPublicKey, room: int) -> tuple[bytes, bytes]:
    mod = key.modulus_bytes
    if len(mod) > 248:
        raise CryptoError(f"certified key: at most 248 bytes (1984 bits), got {len(mod)}")
    if len(mod) <= room:
        return mod + bytes([PAD]) * (room - len(mod)), b""
    return mod[:room], mod[room:]


def _key_from_fields(
    n_len: int, e_len: int, field_: bytes, remainder: bytes, exponent: bytes, what: str
) -> tuple[int, int]:
    if e_len != len(exponent) or e_len not in (1, 3):
        raise OdaError(
            "length", f"{what}: exponent length {e_len} but {len(exponent)} exponent bytes given"
        )
    if n_len <= len(field_):
        if remainder:
            raise OdaError("length", f"{what}: key fits the certificate, remainder must be empty")
        mod = field_[:n_len]
    else:
        if len(remainder) != n_len - len(field_):
            raise OdaError(
                "length",
                f"{what}: key length {n_len} needs a {n_len - len(field_)}-byte remainder, "
                f"got {len(remainder)}",
            )
        mod = field_ + remainder
    modulus, exp = int.from_bytes(mod, "big"), int.from_bytes(exponent, "big")
    if modulus.bit_length() != n_len * 8 or exp < 3 or exp % 2 == 0:
        raise OdaError("length", f"{what}: recovered key is not a {n_len}-byte RSA key")
    return modulus, exp


def build_issuer_certificate(
    ca: RsaKeyPair, issuer: RsaPublicKey, issuer_id: str, expiry: str, serial: bytes
) -> PublicKeyCertificate:
    """Issuer public-key certificate, format '02' (Book 2 Table 6), signed by the CA key."""
    if len(serial) != 3:
        raise CryptoError(f"certificate serial number: must be 3 bytes, got {len(serial)}")
    field_, remainder = _key_field(issuer, ca.public.size - 36)
    body = (
        b"\x02"
        + _digits_field(issuer_id, 4, "issuer identifier", 3, 8)
        + _expiry_field(expiry)
        + bytes(serial)
        + bytes([SHA1, RSA_ALG, issuer.size, len(issuer.exponent_bytes)])
        + field_
    )
    digest = hashlib.sha1(body + remainder + issuer.exponent_bytes).digest()
    cert = _sign(ca, bytes([HEADER]) + body + digest + bytes([TRAILER]))
    return PublicKeyCertificate(cert, remainder, issuer.exponent_bytes)


def recover_issuer_key(
    ca_modulus: int,
    ca_exponent: int,
    cert: bytes,
    remainder: bytes,
    exponent: bytes,
    *,
    pan: str | None = None,
    today: date | None = None,
) -> IssuerKey:
    """Recover and check the issuer public key (Book 2 5.3 / 6.3); pan checks the issuer id."""
    what = "issuer certificate"
    x = _recover(ca_modulus, ca_exponent, bytes(cert), what)
    _check_format(x, 0x02, what)
    if x[11] != SHA1:
        raise OdaError("algorithm", f"{what}: hash algorithm {x[11]:02X}, expected 01")
    _check_hash(x, x[1:-21] + bytes(remainder) + bytes(exponent), what)
    issuer_id = _unpad_digits(x[2:6])
    if pan is not None and not pan.startswith(issuer_id):
        raise OdaError("pan", f"{what}: issuer identifier {issuer_id} does not begin the PAN")
    expiry = _check_expiry(x[6:8], today, what)
    if x[12] != RSA_ALG:
        raise OdaError("algorithm", f"{what}: public key algorithm {x[12]:02X}, expected 01")
    modulus, exp = _key_from_fields(x[13], x[14], x[15:-21], bytes(remainder), exponent, what)
    return IssuerKey(modulus, exp, issuer_id, expiry, x[8:11])


def build_icc_certificate(
    issuer: RsaKeyPair,
    icc: RsaPublicKey,
    pan: str,
    expiry: str,
    serial: bytes,
    static_data: bytes,
) -> PublicKeyCertificate:
    """ICC public-key certificate, format '04' (Book 2 Table 14), over the static data."""
    if len(serial) != 3:
        raise CryptoError(f"certificate serial number: must be 3 bytes, got {len(serial)}")
    field_, remainder = _key_field(icc, issuer.public.size - 42)
    body = (
        b"\x04"
        + _digits_field(pan, 10, "application PAN", 12, 19)
        + _expiry_field(expiry)
        + bytes(serial)
        + bytes([SHA1, RSA_ALG, icc.size, len(icc.exponent_bytes)])
        + field_
    )
    digest = hashlib.sha1(body + remainder + icc.exponent_bytes + bytes(static_data)).digest()
    cert = _sign(issuer, bytes([HEADER]) + body + digest + bytes([TRAILER]))
    return PublicKeyCertificate(cert, remainder, icc.exponent_bytes)


def recover_icc_key(
    issuer_key: RsaPublicKey,
    cert: bytes,
    remainder: bytes,
    exponent: bytes,
    static_data: bytes,
    *,
    pan: str | None = None,
    today: date | None = None,
) -> IccKey:
    """Recover and check the ICC public key (Book 2 6.4); pan is the card's 5A to compare."""
    what = "ICC certificate"
    x = _recover(issuer_key.modulus, issuer_key.exponent, bytes(cert), what)
    _check_format(x, 0x04, what)
    if x[17] != SHA1:
        raise OdaError("algorithm", f"{what}: hash algorithm {x[17]:02X}, expected 01")
    covered = x[1:-21] + bytes(remainder) + bytes(exponent) + bytes(static_data)
    _check_hash(x, covered, what)
    cert_pan = _unpad_digits(x[2:12])
    if pan is not None and cert_pan != pan:
        raise OdaError("pan", f"{what}: PAN in the certificate differs from the card's PAN")
    expiry = _check_expiry(x[12:14], today, what)
    if x[18] != RSA_ALG:
        raise OdaError("algorithm", f"{what}: public key algorithm {x[18]:02X}, expected 01")
    modulus, exp = _key_from_fields(x[19], x[20], x[21:-21], bytes(remainder), exponent, what)
    return IccKey(modulus, exp, cert_pan, expiry, x[14:17])


def sign_static_data(issuer: RsaKeyPair, static_data: bytes, dac: bytes = b"\xda\xc0") -> bytes:
    """Signed static application data, format '03' (Book 2 Table 7), for SDA."""
    if len(dac) != 2:
        raise CryptoError(f"data authentication code: must be 2 bytes, got {len(dac)}")
    body = bytes([0x03, SHA1]) + bytes(dac) + bytes([PAD]) * (issuer.public.size - 26)
    digest = hashlib.sha1(body + bytes(static_data)).digest()
    return _sign(issuer, bytes([HEADER]) + body + digest + bytes([TRAILER]))


def verify_static_data(issuer_key: RsaPublicKey, ssad: bytes, static_data: bytes) -> bytes:
    """Check signed static application data (Book 2 5.4); return the data authentication code."""
    what = "signed static application data"
    x = _recover(issuer_key.modulus, issuer_key.exponent, bytes(ssad), what)
    _check_format(x, 0x03, what)
    if x[2] != SHA1:
        raise OdaError("algorithm", f"{what}: hash algorithm {x[2]:02X}, expected 01")
    _check_hash(x, x[1:-21] + bytes(static_data), what)
    return x[3:5]


def dda_dynamic_data(dynamic_number: bytes) -> bytes:
    """ICC dynamic data for DDA: length || ICC dynamic number (2 to 8 bytes)."""
    if not 2 <= len(dynamic_number) <= 8:
        raise CryptoError(f"ICC dynamic number: 2 to 8 bytes, got {len(dynamic_number)}")
    return bytes([len(dynamic_number)]) + bytes(dynamic_number)


def sign_dynamic_data(icc: RsaKeyPair, icc_dynamic_data: bytes, terminal_data: bytes) -> bytes:
    """Signed dynamic application data, format '05' (Book 2 Table 17), over the DDOL data."""
    room = icc.public.size - 25
    if len(icc_dynamic_data) > room:
        raise CryptoError(f"ICC dynamic data: at most {room} bytes, got {len(icc_dynamic_data)}")
    body = (
        bytes([0x05, SHA1, len(icc_dynamic_data)])
        + bytes(icc_dynamic_data)
        + bytes([PAD]) * (room - len(icc_dynamic_data))
    )
    digest = hashlib.sha1(body + bytes(terminal_data)).digest()
    return _sign(icc, bytes([HEADER]) + body + digest + bytes([TRAILER]))


def verify_dynamic_data(icc_key: RsaPublicKey, sdad: bytes, terminal_data: bytes) -> bytes:
    """Check signed dynamic application data (Book 2 6.5.2); return the ICC dynamic data."""
    what = "signed dynamic application data"
    x = _recover(icc_key.modulus, icc_key.exponent, bytes(sdad), what)
    _check_format(x, 0x05, what)
    if x[2] != SHA1:
        raise OdaError("algorithm", f"{what}: hash algorithm {x[2]:02X}, expected 01")
    _check_hash(x, x[1:-21] + bytes(terminal_data), what)
    ldd = x[3]
    if ldd > len(x) - 25:
        raise OdaError("length", f"{what}: ICC dynamic data length {ldd} overruns the block")
    return x[4 : 4 + ldd]


def transaction_data_hash(
    pdol_data: bytes, cdol1_data: bytes, cdol2_data: bytes = b"", response_tlv: bytes = b""
) -> bytes:
    """CDA transaction data hash code (Book 2 6.6.1): SHA-1 of PDOL, CDOL1 (and CDOL2) data and
    the GENERATE AC response TLVs other than the signed dynamic application data."""
    return hashlib.sha1(
        bytes(pdol_data) + bytes(cdol1_data) + bytes(cdol2_data) + bytes(response_tlv)
    ).digest()


def cda_dynamic_data(dynamic_number: bytes, cid: int, ac: bytes, tdhc: bytes) -> bytes:
    """ICC dynamic data for CDA (Book 2 Table 19): number, CID, AC, transaction data hash."""
    if len(ac) != 8:
        raise CryptoError(f"application cryptogram: must be 8 bytes, got {len(ac)}")
    if len(tdhc) != 20:
        raise CryptoError(f"transaction data hash code: must be 20 bytes, got {len(tdhc)}")
    if not 0 <= cid <= 0xFF:
        raise CryptoError(f"cryptogram information data: one byte, got {cid}")
    return dda_dynamic_data(dynamic_number) + bytes([cid]) + bytes(ac) + bytes(tdhc)


def sign_cda(
    icc: RsaKeyPair, dynamic_number: bytes, cid: int, ac: bytes, tdhc: bytes, un: bytes
) -> bytes:
    """CDA signature (Book 2 6.6.1): format '05' over the CDA dynamic data and the terminal UN."""
    if len(un) != 4:
        raise CryptoError(f"unpredictable number (9F37): must be 4 bytes, got {len(un)}")
    return sign_dynamic_data(icc, cda_dynamic_data(dynamic_number, cid, ac, tdhc), un)


def verify_cda(icc_key: RsaPublicKey, sdad: bytes, un: bytes, cid: int, tdhc: bytes) -> CdaResult:
    """Check a CDA signature (Book 2 6.6.2): signature, CID match and transaction data hash."""
    idd = verify_dynamic_data(icc_key, sdad, un)
    what = "CDA dynamic data"
    if not idd or not 2 <= idd[0] <= 8 or len(idd) < idd[0] + 30:
        raise OdaError("length", f"{what}: {len(idd)} bytes do not hold number, CID, AC, hash")
    n = idd[0]
    number, got_cid = idd[1 : 1 + n], idd[1 + n]
    ac, got_hash = idd[2 + n : 10 + n], idd[10 + n : 30 + n]
    if got_cid != cid:
        raise OdaError(
            "cid", f"{what}: signed CID {got_cid:02X} differs from the response {cid:02X}"
        )
    if got_hash != bytes(tdhc):
        raise OdaError("transaction_hash", f"{what}: transaction data hash code differs")
    return CdaResult(number, got_cid, ac)
