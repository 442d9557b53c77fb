"""Issuer script secure messaging (EMV Book 2 section 9), cross-checked with pyemv.

All keys here are test values.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import cvn as pyemv_cvn
from pyemv import kd, sm

from rig.crypto import secure_messaging as smx
from rig.crypto.emv_keys import icc_mk_option_a
from rig.crypto.mac import mac_alg3
from rig.crypto.primitives import CryptoError

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

keys16 = st.binary(min_size=16, max_size=16)
atcs = st.binary(min_size=2, max_size=2)
acs = st.binary(min_size=8, max_size=8)
pins = st.text("0123456789", min_size=4, max_size=12)

TEST_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # test key


@settings(max_examples=30)
@given(mk=keys16, ac=acs, atc=atcs)
def test_session_keys_match_pyemv(mk, ac, atc) -> None:
    assert smx.sm_session_key(mk, ac) == kd.derive_common_sk(mk, ac)
    assert smx.visa_sm_session_key(mk, atc) == kd.derive_visa_sm_sk(mk, atc)


@settings(max_examples=30)
@given(sk=keys16, atc=atcs, ac=acs, data=st.binary(max_size=40), length=st.integers(4, 8))
def test_command_mac_matches_pyemv(sk, atc, ac, data, length) -> None:
    header = bytes.fromhex("84DA9F5808")
    mine = smx.command_mac(sk, header, atc, ac, data, length)
    assert mine == sm.generate_command_mac(sk, header + atc + ac + data, length)


@settings(max_examples=30)
@given(sk=keys16, data=st.binary(min_size=1, max_size=40))
def test_encryption_matches_pyemv(sk, data) -> None:
    kinds = {"emv": sm.EncryptionType.EMV, "mastercard": sm.EncryptionType.MASTERCARD}
    kinds["visa"] = sm.EncryptionType.VISA
    for name, kind in kinds.items():
        assert smx.encrypt_command_data(sk, data, name) == sm.encrypt_command_data(sk, data, kind)


@settings(max_examples=30)
@given(mk=keys16, pin=pins, current=st.none() | pins)
def test_pin_blocks_match_pyemv(mk, pin, current) -> None:
    assert smx.iso9564_format2_pin_block(pin) == sm.format_iso9564_2_pin_block(pin)
    assert smx.vis_pin_block(mk, pin, current) == sm.format_vis_pin_block(mk, pin, current)


@settings(max_examples=20)
@given(imk=keys16, ac=acs, atc=atcs, pin=pins)
def test_mastercard_pin_change_command_matches_pyemv(imk, ac, atc, pin) -> None:
    pan, psn = "5413330089020011", "01"  # test PAN
    ref = pyemv_cvn.MasterCardCVN16(imk, imk, imk, pan, psn)
    mk = icc_mk_option_a(imk, pan, psn)
    sk = smx.sm_session_key(mk, ac)
    command = smx.pin_change_command(sk, sk, smx.iso9564_format2_pin_block(pin), atc, ac)
    assert command == ref.generate_pin_change_command(pin, ac, atc)


@settings(max_examples=20)
@given(imk=keys16, ac=acs, atc=atcs, pin=pins)
def test_visa_pin_change_command_matches_pyemv(imk, ac, atc, pin) -> None:
    pan, psn = "4761739001010010", "01"  # test PAN
    ref = pyemv_cvn.VisaCVN10(imk, imk, imk, pan, psn)
    mk = icc_mk_option_a(imk, pan, psn)
    sk = smx.visa_sm_session_key(mk, atc)
    block = smx.vis_pin_block(mk, pin)
    command = smx.pin_change_command(sk, sk, block, atc, ac, scheme="visa")
    assert command == ref.generate_pin_change_command(pin, ac, atc)


def test_command_mac_is_book2_mac_over_header_atc_ac_data() -> None:
    """Book 2 9.2.3: ISO 9797-1 MAC algorithm 3, padding method 2, leftmost bytes."""
    header, atc, ac = bytes.fromhex("8418000008"), b"\x00\x1c", bytes.fromhex("1234567890ABCDEF")
    full = mac_alg3(TEST_KEY, header + atc + ac, 2)
    assert smx.command_mac(TEST_KEY, header, atc, ac) == full
    assert smx.command_mac(TEST_KEY, header, atc, ac, length=4) == full[:4]
    assert smx.command_mac(TEST_KEY, header, atc, bytes(8)) != full


@pytest.mark.parametrize("mode", ["cbc", "ecb"])
def test_encrypt_then_decrypt_round_trip(mode: str) -> None:
    block = smx.iso9564_format2_pin_block("1234")
    assert block.hex().upper() == "241234FFFFFFFFFF"
    enc = smx.encrypt_command_data(TEST_KEY, block, "mastercard", mode)  # type: ignore[arg-type]
    assert enc != block
    assert smx.decrypt_command_data(TEST_KEY, enc, mode) == block  # type: ignore[arg-type]
    emv = smx.encrypt_command_data(TEST_KEY, block, "emv", mode)  # type: ignore[arg-type]
    assert smx.decrypt_command_data(TEST_KEY, emv, mode) == block + bytes.fromhex("80" + "00" * 7)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: smx.sm_session_key(TEST_KEY, bytes(7)), "9F26"),
        (lambda: smx.visa_sm_session_key(TEST_KEY[:8], b"\0\1"), "master key"),
        (lambda: smx.command_mac(TEST_KEY, bytes(4)), "header"),
        (lambda: smx.command_mac(TEST_KEY, bytes(5), length=9), "MAC length"),
        (lambda: smx.encrypt_command_data(TEST_KEY, b"x", "amex"), "scheme"),  # type: ignore[arg-type]
        (lambda: smx.iso9564_format2_pin_block("12a4"), "PIN"),
        (lambda: smx.iso9564_format2_pin_block("123"), "PIN"),
        (lambda: smx.vis_pin_block(TEST_KEY, "1234", "12"), "current PIN"),
    ],
)
def test_bad_input_names_the_field(call, fragment: str) -> None:
    with pytest.raises(CryptoError, match=fragment):
        call()
