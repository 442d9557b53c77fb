"""EMV Book 2 offline data authentication: CA -> issuer -> ICC chain, SDA, DDA, CDA.

Keys are test keys generated here with `cryptography`; the PAN is a test PAN.
"""

from __future__ import annotations

import hashlib
from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.crypto import oda
from rig.crypto.primitives import CryptoError

PAN = "5413330089020011"  # test PAN
STATIC = bytes.fromhex("5A0854133300890200115F24032512318200" + "7C00")  # test static data
UN = bytes.fromhex("A1B2C3D4")
TODAY = date(2026, 1, 15)


@pytest.fixture(scope="module")
def keys() -> dict[str, oda.RsaKeyPair]:
    raw = rsa.generate_private_key(3, 1024)
    return {
        "ca_raw": raw,  # type: ignore[dict-item]
        "ca": oda.RsaKeyPair.from_cryptography(raw),
        "ca_big": oda.make_ca_key(1408, 3),
        "issuer": oda.generate_rsa_key(1152, 65537),
        "issuer_small": oda.generate_rsa_key(1024, 3),
        "icc": oda.generate_rsa_key(1024, 3),
    }


@pytest.fixture(scope="module")
def chain(keys):
    """Issuer key certified by a 1024-bit CA (with remainder), ICC key by the issuer."""
    cert = oda.build_issuer_certificate(
        keys["ca"], keys["issuer"].public, "541333", "1230", b"\0\0\7"
    )
    icc_cert = oda.build_icc_certificate(
        keys["issuer"], keys["icc"].public, PAN, "1230", b"\0\1\2", STATIC
    )
    return cert, icc_cert


def _resign(
    key: oda.RsaKeyPair, signed: bytes, index: int, value: int, rehash: bytes | None = None
) -> bytes:
    """Recover a signed block, set one byte (and with `rehash`, the tail hashed after the block,
    recompute the SHA-1), sign it again: a well-formed block with one chosen fault."""
    n, e, d = key.public.modulus, key.public.exponent, key.private_exponent
    block = bytearray(pow(int.from_bytes(signed, "big"), e, n).to_bytes(len(signed), "big"))
    block[index] = value
    if rehash is not None:
        block[-21:-1] = hashlib.sha1(bytes(block[1:-21]) + rehash).digest()
    return pow(int.from_bytes(block, "big"), d, n).to_bytes(len(signed), "big")


def _issuer(keys, cert: oda.PublicKeyCertificate, **kw) -> oda.IssuerKey:
    ca = keys["ca"].public
    kw.setdefault("today", TODAY)
    return oda.recover_issuer_key(
        ca.modulus, ca.exponent, cert.certificate, cert.remainder, cert.exponent, **kw
    )


def test_issuer_certificate_round_trip_with_remainder(keys, chain) -> None:
    cert, _ = chain
    assert len(cert.certificate) == 128
    assert len(cert.remainder) == 144 - (128 - 36)
    assert cert.exponent == b"\x01\x00\x01"
    key = _issuer(keys, cert, pan=PAN)
    assert (key.modulus, key.exponent) == (keys["issuer"].public.modulus, 65537)
    assert (key.issuer_id, key.expiry, key.serial) == ("541333", "1230", b"\0\0\7")


def test_issuer_key_that_fits_is_padded_with_bb(keys) -> None:
    ca = keys["ca_big"]
    cert = oda.build_issuer_certificate(ca, keys["issuer_small"].public, "5413", "0199", b"\0\0\1")
    assert cert.remainder == b""
    block = pow(int.from_bytes(cert.certificate, "big"), 3, ca.public.modulus).to_bytes(176, "big")
    assert block[15 + 128 : -21] == b"\xbb" * (176 - 36 - 128)
    key = oda.recover_issuer_key(
        ca.public.modulus, 3, cert.certificate, b"", b"\x03", today=date(1999, 1, 31)
    )
    assert key.modulus == keys["issuer_small"].public.modulus


def test_largest_ca_key_1984_bits() -> None:
    ca = oda.make_ca_key(1984, 3)
    issuer = oda.generate_rsa_key(1024, 3)
    cert = oda.build_issuer_certificate(ca, issuer.public, "12345678", "1249", b"\0\0\1")
    assert len(cert.certificate) == 248
    key = oda.recover_issuer_key(ca.public.modulus, 3, cert.certificate, b"", b"\x03", today=TODAY)
    assert key.modulus == issuer.public.modulus and key.issuer_id == "12345678"


def test_recovery_cross_checked_with_cryptography_numbers(keys, chain) -> None:
    """Signature equals the CRT private operation from cryptography's numbers, and recovering it
    with cryptography's public numbers gives the Book 2 Table 6 layout with a correct SHA-1."""
    raw: rsa.RSAPrivateKey = keys["ca_raw"]
    priv = raw.private_numbers()
    cert, _ = chain
    pub = raw.public_key().public_numbers()
    block_int = pow(int.from_bytes(cert.certificate, "big"), pub.e, pub.n)
    block = block_int.to_bytes(128, "big")
    m1, m2 = pow(block_int, priv.dmp1, priv.p), pow(block_int, priv.dmq1, priv.q)
    crt = m2 + priv.q * ((priv.iqmp * (m1 - m2)) % priv.p)
    assert crt.to_bytes(128, "big") == cert.certificate
    assert block[0] == 0x6A and block[1] == 0x02 and block[-1] == 0xBC
    assert block[2:6] == bytes.fromhex("541333FF") and block[6:8] == bytes.fromhex("1230")
    assert block[11:15] == bytes([1, 1, 144, 3])
    issuer_mod = keys["issuer"].public.modulus.to_bytes(144, "big")
    assert block[15:-21] + cert.remainder == issuer_mod
    assert block[-21:-1] == hashlib.sha1(block[1:-21] + cert.remainder + cert.exponent).digest()


def test_icc_certificate_round_trip(keys, chain) -> None:
    cert, icc_cert = chain
    issuer = _issuer(keys, cert)
    icc = oda.recover_icc_key(
        issuer, icc_cert.certificate, icc_cert.remainder, icc_cert.exponent, STATIC,
        pan=PAN, today=TODAY,
    )  # fmt: skip
    assert (icc.modulus, icc.exponent) == (keys["icc"].public.modulus, 3)
    assert (icc.pan, icc.expiry, icc.serial) == (PAN, "1230", b"\0\1\2")
    assert len(icc_cert.remainder) == 128 - (144 - 42)


@pytest.mark.parametrize(
    ("index", "value", "rehash", "check"),
    [(-1, 0xBD, False, "trailer"), (0, 0x6B, False, "header"), (1, 0x04, False, "format"),
     (11, 0x02, False, "algorithm"), (20, 0x00, False, "hash"), (-2, 0x00, False, "hash"),
     (12, 0x02, True, "algorithm"), (6, 0x13, True, "expiry"), (7, 0x1A, True, "expiry"),
     (14, 0x01, True, "length"), (13, 0x8F, True, "length"), (2, 0x99, True, "pan")],
)  # fmt: skip
def test_issuer_certificate_faults_name_the_check(keys, chain, index, value, rehash, check):
    cert, _ = chain
    tail = cert.remainder + cert.exponent if rehash else None
    faulty = _resign(keys["ca"], cert.certificate, index, value, tail)
    with pytest.raises(oda.OdaError) as err:
        _issuer(keys, oda.PublicKeyCertificate(faulty, cert.remainder, cert.exponent), pan=PAN)
    assert err.value.check == check


def test_issuer_certificate_other_checks(keys, chain) -> None:
    cert, _ = chain
    cases = {
        "length": oda.PublicKeyCertificate(cert.certificate[:-1], cert.remainder, cert.exponent),
        "hash": oda.PublicKeyCertificate(cert.certificate, cert.remainder[:-1] + b"\0", b"\x03"),
    }
    for check, bad in cases.items():
        with pytest.raises(oda.OdaError) as err:
            _issuer(keys, bad)
        assert err.value.check == check
    with pytest.raises(oda.OdaError) as err:
        _issuer(keys, cert, pan="4111111111111111")
    assert err.value.check == "pan"
    with pytest.raises(oda.OdaError) as err:
        _issuer(keys, cert, today=date(2031, 1, 1))
    assert err.value.check == "expiry"
    assert _issuer(keys, cert, today=date(2030, 12, 31)).expiry == "1230"


def test_one_byte_tamper_of_each_signed_object_fails(keys, chain) -> None:
    cert, icc_cert = chain
    issuer = _issuer(keys, cert)
    icc = keys["icc"]
    sdad = oda.sign_dynamic_data(icc, oda.dda_dynamic_data(b"\x12\x34"), UN)
    ssad = oda.sign_static_data(keys["issuer"], STATIC)
    for position in (5, 64, 127):
        bad = bytearray(cert.certificate)
        bad[position] ^= 0x01
        with pytest.raises(oda.OdaError):
            _issuer(keys, oda.PublicKeyCertificate(bytes(bad), cert.remainder, cert.exponent))
        bad = bytearray(sdad)
        bad[position] ^= 0x01
        with pytest.raises(oda.OdaError):
            oda.verify_dynamic_data(icc.public, bytes(bad), UN)
    for position in (5, 143):
        bad = bytearray(icc_cert.certificate)
        bad[position] ^= 0x01
        with pytest.raises(oda.OdaError):
            oda.recover_icc_key(issuer, bytes(bad), icc_cert.remainder, b"\x03", STATIC)
        bad = bytearray(ssad)
        bad[position] ^= 0x01
        with pytest.raises(oda.OdaError):
            oda.verify_static_data(issuer, bytes(bad), STATIC)


def test_icc_certificate_checks(keys, chain) -> None:
    cert, icc_cert = chain
    issuer = _issuer(keys, cert)

    def recover(certificate=icc_cert.certificate, static=STATIC, **kw):
        kw.setdefault("today", TODAY)
        return oda.recover_icc_key(
            issuer, certificate, icc_cert.remainder, icc_cert.exponent, static, **kw
        )

    for kwargs, check in [
        ({"static": STATIC + b"\x00"}, "hash"),
        ({"pan": "5413330089020012"}, "pan"),
        ({"today": date(2031, 1, 1)}, "expiry"),
        ({"certificate": _resign(keys["issuer"], icc_cert.certificate, 1, 0x02)}, "format"),
        ({"certificate": _resign(keys["issuer"], icc_cert.certificate, -1, 0x00)}, "trailer"),
    ]:
        with pytest.raises(oda.OdaError) as err:
            recover(**kwargs)
        assert err.value.check == check, kwargs


def test_sda_sign_and_verify(keys, chain) -> None:
    issuer = _issuer(keys, chain[0])
    ssad = oda.sign_static_data(keys["issuer"], STATIC, dac=b"\xca\xfe")
    assert len(ssad) == 144
    assert oda.verify_static_data(issuer, ssad, STATIC) == b"\xca\xfe"
    with pytest.raises(oda.OdaError) as err:
        oda.verify_static_data(issuer, ssad, STATIC[:-1] + b"\x01")
    assert err.value.check == "hash"
    with pytest.raises(oda.OdaError) as err:
        oda.verify_static_data(issuer, _resign(keys["issuer"], ssad, 1, 0x05), STATIC)
    assert err.value.check == "format"


def test_dda_sign_and_verify(keys) -> None:
    icc = keys["icc"]
    idd = oda.dda_dynamic_data(bytes.fromhex("0123456789"))
    sdad = oda.sign_dynamic_data(icc, idd, UN)
    assert oda.verify_dynamic_data(icc.public, sdad, UN) == idd
    with pytest.raises(oda.OdaError) as err:
        oda.verify_dynamic_data(icc.public, sdad, bytes.fromhex("A1B2C3D5"))
    assert err.value.check == "hash"
    with pytest.raises(oda.OdaError) as err:
        oda.verify_dynamic_data(icc.public, _resign(icc, sdad, 2, 0x02), UN)
    assert err.value.check == "algorithm"


def test_cda_generate_and_verify(keys) -> None:
    icc = keys["icc"]
    pdol, cdol1 = bytes.fromhex("8000"), bytes.fromhex("000000001000" + "0840" + "A1B2C3D4")
    response = bytes.fromhex("9F2701809F3602001C9F2608") + bytes(8)
    tdhc = oda.transaction_data_hash(pdol, cdol1, response_tlv=response)
    assert tdhc == hashlib.sha1(pdol + cdol1 + response).digest()
    ac = bytes.fromhex("1122334455667788")
    sdad = oda.sign_cda(icc, b"\xde\xad\xbe\xef", 0x80, ac, tdhc, UN)
    result = oda.verify_cda(icc.public, sdad, UN, 0x80, tdhc)
    assert result == oda.CdaResult(b"\xde\xad\xbe\xef", 0x80, ac)
    for args, check in [
        ((UN, 0x40, tdhc), "cid"),
        ((UN, 0x80, bytes(20)), "transaction_hash"),
        ((bytes(4), 0x80, tdhc), "hash"),
    ]:
        with pytest.raises(oda.OdaError) as err:
            oda.verify_cda(icc.public, sdad, *args)
        assert err.value.check == check


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: oda.generate_rsa_key(1000), "key size"),
        (lambda: oda.generate_rsa_key(1024, 5), "exponent"),
        (lambda: oda.dda_dynamic_data(b"\x01"), "dynamic number"),
        (lambda: oda.cda_dynamic_data(b"\1\2", 0x80, bytes(7), bytes(20)), "cryptogram"),
    ],
)
def test_bad_build_input_names_the_field(call, fragment: str) -> None:
    with pytest.raises(CryptoError, match=fragment):
        call()


def test_bad_certificate_fields_are_named(keys) -> None:
    ca, issuer = keys["ca"], keys["issuer"].public
    with pytest.raises(CryptoError, match="issuer identifier"):
        oda.build_issuer_certificate(ca, issuer, "54", "1230", b"\0\0\1")
    with pytest.raises(CryptoError, match="expiry"):
        oda.build_issuer_certificate(ca, issuer, "541333", "1330", b"\0\0\1")
    with pytest.raises(CryptoError, match="serial"):
        oda.build_issuer_certificate(ca, issuer, "541333", "1230", b"\0\1")


@settings(max_examples=60)
@given(
    data=st.binary(min_size=0, max_size=160) | st.binary(min_size=128, max_size=128),
    extra=st.binary(max_size=40),
    exponent=st.binary(max_size=4),
)
def test_fuzz_recovery_only_raises_oda_error(keys, data, extra, exponent) -> None:
    ca, icc = keys["ca"].public, keys["icc"].public
    calls = [
        lambda: oda.recover_issuer_key(ca.modulus, ca.exponent, data, extra, exponent, pan=PAN),
        lambda: oda.recover_icc_key(icc, data, extra, exponent, extra, pan=PAN),
        lambda: oda.verify_static_data(icc, data, extra),
        lambda: oda.verify_dynamic_data(icc, data, extra),
        lambda: oda.verify_cda(icc, data, extra[:4], 0x80, extra),
    ]
    for call in calls:
        with pytest.raises(oda.OdaError):
            call()
