"""ISO 9564-1 PIN blocks, formats 0-4 (rig.crypto.pinblock). Test PINs, PANs and keys only."""

from __future__ import annotations

import warnings

import psec
import pyemv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.crypto import pinblock
from rig.crypto.pinblock import PinBlockError
from rig.crypto.primitives import tdes_ecb_encrypt

h = bytes.fromhex
TEST_PAN = "4012345678909"  # ANSI X9.24-1 Annex A test PAN
AES_TEST_PAN = "4111111111111111"  # ANSI X9.24-3 supplement test PAN

pins = st.text("0123456789", min_size=4, max_size=12)
pans = st.text("0123456789", min_size=13, max_size=19)
keys16 = st.binary(min_size=16, max_size=16)


def quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def fixed(value: int):
    """Deterministic random_bytes for tests."""
    return lambda n: bytes([value]) * n


def test_format0_x9_24_annex_a_example():
    # Source: ANSI X9.24-1:2009 A.4: PIN 1234, PAN 4012345678909 -> format 0 block 041274EDCBA9876F.
    block = pinblock.encode(0, "1234", TEST_PAN)
    assert block == h("041274EDCBA9876F")
    assert pinblock.decode(0, block, TEST_PAN) == "1234"


def test_format2_layout():
    # ISO 9564-1 format 2: control 2, length, PIN, F fill, no PAN.
    assert pinblock.encode(2, "1234") == h("241234FFFFFFFFFF")
    assert pinblock.encode(2, "123456789012") == h("2C123456789012FF")
    assert pinblock.encode(2, "1234") == quiet(pyemv.sm.format_iso9564_2_pin_block, "1234")


def test_format1_and_3_use_random_fill():
    b1 = pinblock.encode(1, "1234", random_bytes=fixed(0x0B))
    assert b1 == h("141234BBBBBBBBBB")
    # Format 3 fill digits are A-F: byte 0x00 maps to A.
    b3 = pinblock.encode(3, "1234", TEST_PAN, random_bytes=fixed(0x00))
    field = h("341234AAAAAAAAAA")
    pan_block = h("0000" + TEST_PAN[-13:-1])
    assert b3 == bytes(a ^ b for a, b in zip(field, pan_block, strict=True))
    assert pinblock.decode(3, b3, TEST_PAN) == "1234"
    assert pinblock.decode(1, b1) == "1234"


def test_format4_fields_x9_24_3_example():
    # Source: ANSI X9.24-3:2017 supplement, "Calculation of AES PIN Block Format 4":
    # PIN 1234, PAN 4111111111111111, fill 2F69ADDE2E9E7ACE.
    rnd = h("2F69ADDE2E9E7ACE")
    field = pinblock.encode_format4_pin_field("1234", lambda n: rnd[:n])
    assert field == h("441234AAAAAAAAAA2F69ADDE2E9E7ACE")
    assert pinblock.encode_format4_pan_field(AES_TEST_PAN) == h("44111111111111111000000000000000")
    assert pinblock.decode(4, field) == "1234"


def test_format4_pan_field_short_and_long_pan():
    # ISO 9564-1 format 4 PAN field: length-12 nibble; PANs under 12 digits are left-padded.
    assert pinblock.encode_format4_pan_field("12345") == h("00000000123450000000000000000000")
    assert pinblock.encode_format4_pan_field("1" * 19) == h("71111111111111111111000000000000")


def test_format4_encrypted_x9_24_3_example():
    # Source: ANSI X9.24-3:2017 supplement: PIN key for KSN 123456789012345600000001 and the
    # resulting encrypted format 4 PIN block.
    key = h("AF8CB133A78F8DC2D1359F18527593FB")
    rnd = h("2F69ADDE2E9E7ACE")
    block = pinblock.encrypt_pin(4, "1234", AES_TEST_PAN, key, lambda n: rnd[:n])
    assert block == h("A912150391AB65A67E52883D81CE2D15")
    assert pinblock.decrypt_pin(4, block, AES_TEST_PAN, key) == "1234"


@settings(max_examples=60)
@given(pins, pans, st.sampled_from([0, 1, 2, 3]), keys16, st.binary(min_size=10, max_size=10))
def test_roundtrip_formats_0_to_3(pin, pan, fmt, key, rnd):
    clear = pinblock.encode(fmt, pin, pan, lambda n: rnd[:n])
    assert pinblock.decode(fmt, clear, pan) == pin
    enc = pinblock.encrypt_pin(fmt, pin, pan, key, lambda n: rnd[:n])
    assert enc == tdes_ecb_encrypt(key, clear)
    assert pinblock.decrypt_pin(fmt, enc, pan, key) == pin


@settings(max_examples=60)
@given(pins, st.text("0123456789", min_size=1, max_size=19), keys16, st.binary(min_size=8))
def test_roundtrip_format4(pin, pan, key, rnd):
    enc = pinblock.encrypt_pin(4, pin, pan, key, lambda n: rnd[:n])
    assert pinblock.decrypt_pin(4, enc, pan, key) == pin


@settings(max_examples=50)
@given(pins, pans)
def test_format0_matches_psec(pin, pan):
    ours = pinblock.encode(0, pin, pan)
    assert ours == psec.pinblock.encode_pinblock_iso_0(pin, pan)
    assert psec.pinblock.decode_pinblock_iso_0(ours, pan) == pin


@settings(max_examples=50)
@given(pins, pans, st.binary(min_size=10, max_size=10))
def test_format2_and_3_decode_like_psec(pin, pan, rnd):
    assert pinblock.encode(2, pin) == psec.pinblock.encode_pinblock_iso_2(pin)
    theirs = psec.pinblock.encode_pinblock_iso_3(pin, pan)
    assert pinblock.decode(3, theirs, pan) == pin
    ours = pinblock.encode(3, pin, pan, lambda n: rnd[:n])
    assert psec.pinblock.decode_pinblock_iso_3(ours, pan) == pin


@settings(max_examples=50)
@given(pins, st.text("0123456789", min_size=1, max_size=19), keys16)
def test_format4_cross_check_psec(pin, pan, key):
    theirs = psec.pinblock.encipher_pinblock_iso_4(key, pin, pan)
    assert pinblock.decrypt_pin(4, theirs, pan, key) == pin
    ours = pinblock.encrypt_pin(4, pin, pan, key)
    assert psec.pinblock.decipher_pinblock_iso_4(key, ours, pan) == pin
    assert pinblock.encode_format4_pan_field(pan) == psec.pinblock.encode_pan_field_iso_4(pan)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: pinblock.encode(0, "123", TEST_PAN), "PIN length 3 is outside 4..12"),
        (lambda: pinblock.encode(0, "1234567890123", TEST_PAN), "PIN length 13"),
        (lambda: pinblock.encode(0, "12a4", TEST_PAN), "decimal digits only"),
        (lambda: pinblock.encode(0, "1234", "401234567890"), "PAN too short: 12 digits"),
        (lambda: pinblock.encode(3, "1234"), "needs the PAN"),
        (lambda: pinblock.encode(0, "1234", "4" * 20), "PAN too long"),
        (lambda: pinblock.encode(5, "1234"), "format must be one of"),
        (lambda: pinblock.decode(0, h("141274EDCBA9876F"), TEST_PAN), "format nibble is 1"),
        (lambda: pinblock.decode(2, h("24123FFFFFFFFFFF"), None), "digit at nibble 5 is F"),
        (lambda: pinblock.decode(2, h("241234FFFFFFFFF0"), None), "wrong filler at nibble 15"),
        (lambda: pinblock.decode(2, h("231234FFFFFFFFFF"), None), "length nibble is 3"),
        (lambda: pinblock.decode(2, h("241234"), None), "must be 8 bytes"),
        (lambda: pinblock.decode(4, h("441234AAAAAAAAAB") + bytes(8)), "wrong filler"),
        (lambda: pinblock.decrypt_pin(4, bytes(8), "41", bytes(16)), "must be 16 bytes"),
    ],
)
def test_errors_name_the_problem(call, message):
    with pytest.raises(PinBlockError, match=message):
        call()


@given(st.binary(min_size=8, max_size=8), st.sampled_from([0, 1, 2, 3]))
def test_decode_garbage_only_raises_pinblock_error(block, fmt):
    try:
        pin = pinblock.decode(fmt, block, TEST_PAN)
    except PinBlockError:
        return
    assert 4 <= len(pin) <= 12 and pin.isdigit()
