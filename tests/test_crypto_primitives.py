"""Block-cipher primitives, parity, hex parsing and key check values (rig.crypto.primitives/keys).

All keys here are published test keys, never live keys.
"""

from __future__ import annotations

import warnings

import psec
import pyemv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.crypto.keys import (
    combine_components,
    kcv,
    kcv_aes_cmac,
    kcv_aes_ecb,
    kcv_tdes,
)
from rig.crypto.primitives import (
    CryptoError,
    adjust_parity,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    aes_ecb_decrypt,
    aes_ecb_encrypt,
    des_decrypt,
    des_encrypt,
    has_odd_parity,
    parse_hex,
    tdes_cbc_decrypt,
    tdes_cbc_encrypt,
    tdes_ecb_decrypt,
    tdes_ecb_encrypt,
    xor,
)

h = bytes.fromhex
TEST_TDES_KEY = h("0123456789ABCDEFFEDCBA9876543210")  # ANSI X9.24-1 Annex A test BDK


def quiet(fn, *args):
    """Call psec/pyemv, which use the deprecated TripleDES import path of `cryptography`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def test_des_textbook_vector():
    # Source: FIPS 46 worked example widely reproduced (key 133457799BBCDFF1).
    assert des_encrypt(h("133457799BBCDFF1"), h("0123456789ABCDEF")) == h("85E813540F0AB405")
    assert des_decrypt(h("133457799BBCDFF1"), h("85E813540F0AB405")) == h("0123456789ABCDEF")


def test_aes_fips197_vector():
    # Source: FIPS 197 Appendix C.1 (AES-128).
    key = h("000102030405060708090a0b0c0d0e0f")
    ct = h("69c4e0d86a7b0430d8cdb78070b4c55a")
    assert aes_ecb_encrypt(key, h("00112233445566778899aabbccddeeff")) == ct
    assert aes_ecb_decrypt(key, ct) == h("00112233445566778899aabbccddeeff")


def test_aes_cbc_sp800_38a_vector():
    # Source: NIST SP 800-38A F.2.1 CBC-AES128.Encrypt, first two blocks.
    key = h("2b7e151628aed2a6abf7158809cf4f3c")
    iv = h("000102030405060708090a0b0c0d0e0f")
    pt = h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
    ct = h("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2")
    assert aes_cbc_encrypt(key, pt, iv) == ct
    assert aes_cbc_decrypt(key, ct, iv) == pt


def test_tdes_ecb_and_kcv_known_value():
    # Source: ANSI X9.24-1 test BDK; its KCV 08D7B4 is published with the Annex A examples.
    assert tdes_ecb_encrypt(TEST_TDES_KEY, bytes(8)) == h("08D7B4FB629D0885")
    assert kcv_tdes(TEST_TDES_KEY) == h("08D7B4")


def test_tr31_published_kcvs():
    # Source: ASC X9 TR-31:2018 A.7.2.2 / A.7.4 key 3F419E1C... with KCVs 57C409 (TDES)
    # and 08793E (AES, CMAC convention).
    key = h("3F419E1CB7079442AA37474C2EFBF8B8")
    assert kcv_tdes(key) == h("57C409")
    assert kcv_aes_cmac(key)[:3] == h("08793E")
    assert len(kcv_aes_cmac(key)) == 5
    assert kcv(key, "aes") == kcv_aes_cmac(key)
    assert kcv(key, "aes-ecb") == aes_ecb_encrypt(key, bytes(16))[:3] == kcv_aes_ecb(key)
    assert kcv(key, "tdes") == h("57C409")
    with pytest.raises(CryptoError, match="algorithm"):
        kcv(key, "rsa")


@settings(max_examples=40)
@given(st.sampled_from([8, 16, 24]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_kcv_tdes_matches_psec_and_pyemv(key):
    assert kcv_tdes(key) == quiet(psec.des.generate_kcv, key, 3)
    assert kcv_tdes(key) == quiet(pyemv.tools.key_check_digits, key, 3)


@settings(max_examples=40)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=1, max_size=5).map(lambda b: b * 8))
def test_tdes_cbc_matches_psec(key, data):
    iv = bytes(range(8))
    assert tdes_cbc_encrypt(key, data, iv) == quiet(psec.des.encrypt_tdes_cbc, key, iv, data)
    assert tdes_cbc_decrypt(key, tdes_cbc_encrypt(key, data, iv), iv) == data
    assert tdes_ecb_decrypt(key, tdes_ecb_encrypt(key, data)) == data


def test_parity():
    assert adjust_parity(h("0000000000000000")) == h("0101010101010101")
    assert adjust_parity(h("FEFEFEFEFEFEFEFE")) == h("FEFEFEFEFEFEFEFE")
    assert has_odd_parity(TEST_TDES_KEY)
    assert not has_odd_parity(h("0000000000000000"))


@given(st.binary(min_size=1, max_size=32))
def test_parity_properties(key):
    fixed = adjust_parity(key)
    assert has_odd_parity(fixed)
    assert all((a ^ b) in (0, 1) for a, b in zip(key, fixed, strict=True))
    assert fixed == quiet(psec.des.adjust_key_parity, key)


def test_xor_and_components():
    assert xor(h("F0F0"), h("0FF0")) == h("FF00")
    with pytest.raises(CryptoError, match="lengths differ"):
        xor(b"\x00", b"\x00\x00")
    a, b, c = h("11" * 16), h("22" * 16), h("44" * 16)
    assert combine_components(a, b, c) == h("77" * 16)
    with pytest.raises(CryptoError, match="at least two"):
        combine_components(a)
    with pytest.raises(CryptoError, match="differ in length"):
        combine_components(a, h("00"))


def test_parse_hex_errors_name_the_field():
    assert parse_hex("01 23 45 67 89 AB CD EF", "key", [8]) == h("0123456789ABCDEF")
    with pytest.raises(CryptoError, match=r"--bdk: 4 bytes given \(expected 16 bytes\)"):
        parse_hex("00112233", "--bdk", [16])
    with pytest.raises(CryptoError, match="key: odd number of hex digits"):
        parse_hex("123", "key")
    with pytest.raises(CryptoError, match="KSN: not hex at character 2"):
        parse_hex("12ZZ", "KSN")
    with pytest.raises(CryptoError, match="not hex"):
        parse_hex("é1", "x")


def test_bad_lengths_raise_crypto_error():
    with pytest.raises(CryptoError, match="TDES key must be 8, 16 or 24 bytes"):
        tdes_ecb_encrypt(bytes(15), bytes(8))
    with pytest.raises(CryptoError, match="multiple of the 8-byte block"):
        tdes_ecb_encrypt(bytes(16), bytes(7))
    with pytest.raises(CryptoError, match="AES key must be 16, 24 or 32"):
        aes_ecb_encrypt(bytes(8), bytes(16))
    with pytest.raises(CryptoError, match="IV must be 16 bytes"):
        aes_cbc_encrypt(bytes(16), bytes(16), bytes(8))
    with pytest.raises(CryptoError, match="DES key must be 8 bytes"):
        des_encrypt(bytes(16), bytes(8))


def test_no_deprecation_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tdes_ecb_encrypt(TEST_TDES_KEY, bytes(8))
        tdes_cbc_encrypt(TEST_TDES_KEY, bytes(16))
        des_encrypt(TEST_TDES_KEY[:8], bytes(8))
