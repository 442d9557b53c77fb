"""ICC master key and session key derivation (EMV Book 2 A1.3, A1.4), cross-checked with pyemv.

All keys and PANs here are test values.
"""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import kd

from rig.crypto.emv_keys import (
    ac_session_key,
    common_session_key,
    derive_icc_mk,
    icc_mk_option_a,
    icc_mk_option_b,
    mastercard_session_key,
    pboc_session_key,
)
from rig.crypto.primitives import CryptoError, has_odd_parity, tdes_ecb_encrypt

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

TEST_IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # test key

keys16 = st.binary(min_size=16, max_size=16)
pans = st.text("0123456789", min_size=12, max_size=19)
psns = st.text("0123456789", min_size=2, max_size=2)


@settings(max_examples=40)
@given(imk=keys16, pan=pans, psn=psns)
def test_option_a_matches_pyemv(imk: bytes, pan: str, psn: str) -> None:
    assert icc_mk_option_a(imk, pan, psn) == kd.derive_icc_mk_a(imk, pan, psn)


@settings(max_examples=40)
@given(imk=keys16, pan=pans, psn=psns)
def test_option_b_matches_pyemv(imk: bytes, pan: str, psn: str) -> None:
    assert icc_mk_option_b(imk, pan, psn) == kd.derive_icc_mk_b(imk, pan, psn)


@settings(max_examples=40)
@given(mk=keys16, r=st.binary(min_size=8, max_size=8))
def test_common_session_key_matches_pyemv(mk: bytes, r: bytes) -> None:
    assert common_session_key(mk, r) == kd.derive_common_sk(mk, r)


@settings(max_examples=40)
@given(mk=keys16, atc=st.binary(min_size=2, max_size=2), un=st.binary(min_size=4, max_size=4))
def test_mastercard_skd_matches_pyemv(mk: bytes, atc: bytes, un: bytes) -> None:
    assert mastercard_session_key(mk, atc, un) == kd.derive_common_sk(mk, atc + b"\0\0" + un)
    assert ac_session_key("mastercard", mk, atc, un) == mastercard_session_key(mk, atc, un)


def test_option_a_follows_book2_a141_layout() -> None:
    """Book 2 A1.4.1: Y = rightmost 16 digits of PAN||PSN; MK = E(Y) || E(Y xor FF..FF)."""
    mk = icc_mk_option_a(TEST_IMK, "5413330089020011", "01")
    y = bytes.fromhex("1333008902001101")
    expected = tdes_ecb_encrypt(TEST_IMK, y + bytes(b ^ 0xFF for b in y))
    assert all((a ^ b) & 0xFE == 0 for a, b in zip(mk, expected, strict=True))
    assert has_odd_parity(mk)


def test_option_a_short_pan_psn_is_zero_padded_left() -> None:
    """Book 2 A1.4.1: fewer than 16 digits are padded to the left with zeros."""
    assert icc_mk_option_a(TEST_IMK, "123456789012", "01") == icc_mk_option_a(
        TEST_IMK, "000123456789012", "1"
    )


def test_option_b_equals_option_a_up_to_16_digits() -> None:
    """Book 2 A1.4.2: Option B applies only to PANs longer than 16 digits."""
    assert icc_mk_option_b(TEST_IMK, "4761739001010010", "00") == icc_mk_option_a(
        TEST_IMK, "4761739001010010", "00"
    )
    assert icc_mk_option_b(TEST_IMK, "4761739001010010123", "00") != icc_mk_option_a(
        TEST_IMK, "4761739001010010123", "00"
    )


def test_option_b_decimalisation_of_the_sha1() -> None:
    """Book 2 A1.4.2: Y = first 16 decimal digits of SHA-1(PAN||PSN), then Option A on Y."""
    pan, psn = "12345678901234567", "01"
    digest = hashlib.sha1(bytes.fromhex("0" + pan + psn)).hexdigest()
    digits = "".join(c for c in digest if c.isdigit())
    assert len(digits) >= 16  # this test PAN needs no letter substitution
    y = digits[:16]
    assert icc_mk_option_b(TEST_IMK, pan, psn) == icc_mk_option_a(TEST_IMK, y[:-2], y[-2:])


def test_common_session_key_diversification_bytes() -> None:
    """Book 2 A1.3.1: byte 3 of R becomes F0 for the left half and 0F for the right half."""
    r = bytes.fromhex("001C000000000000")
    sk = common_session_key(TEST_IMK, r)
    left = tdes_ecb_encrypt(TEST_IMK, bytes.fromhex("001CF00000000000"))
    right = tdes_ecb_encrypt(TEST_IMK, bytes.fromhex("001C0F0000000000"))
    assert all((a ^ b) & 0xFE == 0 for a, b in zip(sk, left + right, strict=True))
    assert ac_session_key("emv_csk", TEST_IMK, bytes.fromhex("001C")) == sk


def test_pboc_session_key_layout_and_udk_method() -> None:
    """PBOC 2.0: SK = TDES(MK)[00*6 || ATC || 00*6 || ~ATC]; Visa CVN 10 uses the UDK itself."""
    atc = bytes.fromhex("0240")
    block = bytes.fromhex("0000000000000240000000000000FDBF")
    assert pboc_session_key(TEST_IMK, atc) == tdes_ecb_encrypt(TEST_IMK, block)
    assert ac_session_key("pboc", TEST_IMK, atc) == tdes_ecb_encrypt(TEST_IMK, block)
    assert ac_session_key("none", TEST_IMK, atc) == TEST_IMK


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: icc_mk_option_a(TEST_IMK[:8], "5413330089020011"), "issuer master key"),
        (lambda: icc_mk_option_a(TEST_IMK, "54133300X9020011"), "PAN"),
        (lambda: icc_mk_option_a(TEST_IMK, "54133"), "PAN"),
        (lambda: icc_mk_option_a(TEST_IMK, "5413330089020011", "123"), "PSN"),
        (lambda: derive_icc_mk(TEST_IMK, "5413330089020011", "00", "C"), "option"),
        (lambda: common_session_key(TEST_IMK, b"\0" * 7), "diversification"),
        (lambda: mastercard_session_key(TEST_IMK, b"\0\1", b"\0"), "9F37"),
        (lambda: ac_session_key("mastercard", TEST_IMK, b"\0\1"), "9F37"),
        (lambda: ac_session_key("tree", TEST_IMK, b"\0\1"), "session key method"),
        (lambda: pboc_session_key(TEST_IMK, b"\0"), "ATC"),
    ],
)
def test_bad_input_names_the_field(call, fragment: str) -> None:
    with pytest.raises(CryptoError, match=fragment):
        call()


@given(pan=st.text(max_size=25), psn=st.text(max_size=4), key=st.binary(max_size=20))
def test_fuzz_master_key_inputs_only_raise_crypto_error(pan: str, psn: str, key: bytes) -> None:
    for option in ("A", "B"):
        with contextlib.suppress(CryptoError):
            assert len(derive_icc_mk(key, pan, psn, option)) == 16
