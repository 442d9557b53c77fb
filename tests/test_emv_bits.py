"""Named bit tables (Book 3 Annex C, Book 4 Annex A, Book C-3, Visa VIS / EMV CCD CVR)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.emv import bits
from rig.emv.bits import BitsError, build, clear_bit, decode, is_set, set_bit


@pytest.mark.parametrize(
    ("tvr", "names"),
    [
        ("8000000000", ["oda_not_performed"]),
        ("0000008000", ["floor_limit_exceeded"]),
        ("0040000000", ["expired_application"]),
        ("0000800000", ["cv_not_successful"]),
        ("0000000040", ["issuer_auth_failed"]),
        ("0000040000", ["online_pin_entered"]),
        ("0820000000", ["dda_failed", "application_not_yet_effective"]),
    ],
)
def test_tvr_positions(tvr: str, names: list[str]) -> None:
    assert decode(0x95, bytes.fromhex(tvr)) == names
    assert build(names).hex().upper() == tvr


def test_set_and_clear_tvr_bits() -> None:
    tvr = set_bit(bytes(5), "pin_try_limit_exceeded")
    assert tvr == bytes.fromhex("0000200000")
    tvr = set_bit(tvr, "random_online")
    assert tvr == bytes.fromhex("0000201000")
    assert is_set(tvr, "random_online")
    assert clear_bit(tvr, "pin_try_limit_exceeded") == bytes.fromhex("0000001000")
    with pytest.raises(BitsError, match="no bit named 'pin_typo'"):
        set_bit(tvr, "pin_typo")


def test_tsi_and_labels() -> None:
    assert decode(0x9B, bytes.fromhex("E800")) == [
        "oda_performed",
        "cv_performed",
        "card_risk_management_performed",
        "terminal_risk_management_performed",
    ]
    assert decode(0x9B, bytes.fromhex("8000"), labels=True) == [
        "Offline data authentication was performed"
    ]


def test_terminal_capabilities_e0f8c8() -> None:
    names = decode(0x9F33, bytes.fromhex("E0F8C8"))
    assert names == [
        "manual_key_entry",
        "magnetic_stripe",
        "ic_with_contacts",
        "plaintext_pin_icc",
        "enciphered_pin_online",
        "signature",
        "enciphered_pin_icc",
        "no_cvm",
        "sda",
        "dda",
        "cda",
    ]


def test_additional_terminal_capabilities() -> None:
    names = decode(0x9F40, bytes.fromhex("6000F0A001"))
    assert names[:2] == ["goods", "services"]
    assert "numeric_keys" in names and "function_keys" in names
    assert "print_attendant" in names and "display_attendant" in names
    assert names[-1] == "code_table_1"


def test_ttq_and_ctq() -> None:
    assert decode(0x9F66, bytes.fromhex("36004000")) == [
        "emv_mode_supported",
        "contact_chip_supported",
        "online_pin_supported",
        "signature_supported",
        "cdcvm_supported",
    ]
    assert decode(0x9F6C, bytes.fromhex("8000")) == ["online_pin_required"]


def test_cid_fields() -> None:
    assert decode(0x9F27, b"\x80") == ["cryptogram=arqc", "reason=none"]
    assert decode(0x9F27, b"\x0a") == [
        "cryptogram=aac",
        "advice_required",
        "reason=pin_try_limit_exceeded",
    ]


def test_cvm_results() -> None:
    assert decode(0x9F34, bytes.fromhex("420300")) == [
        "method=enciphered_pin_online",
        "condition=terminal_supports",
        "result=unknown",
    ]
    assert decode(0x9F34, bytes.fromhex("3F0001"))[0] == "method=no_cvm_performed"


def test_visa_iad_cvr() -> None:
    # Visa VIS IAD format: 06 DKI CVN then the CVR 03 xx xx xx; A0 = first GENERATE AC asked ARQC.
    names = decode(0x9F10, bytes.fromhex("06010A03A00000"))
    assert names[:3] == ["format=visa", "second_gen_ac=not_requested", "first_gen_ac=arqc"]
    names = decode(0x9F10, bytes.fromhex("06010A03541000"))
    assert "offline_pin_performed" in names and "new_card" in names
    assert "first_gen_ac=tc" in names and "second_gen_ac=tc" in names


def test_ccd_iad_cvr() -> None:
    iad = bytes.fromhex("0FA501A0B0" + "000000" + "00" * 8 + "0F" + "00" * 15)
    names = decode(0x9F10, iad)
    assert names[0] == "format=ccd"
    assert "first_gen_ac=arqc" in names
    assert "pin_try_counter=11" in names and "offline_pin_performed" not in names


def test_unknown_iad_format() -> None:
    with pytest.raises(BitsError, match="neither Visa VIS"):
        decode(0x9F10, bytes.fromhex("0110A00003220000"))


def test_wrong_length_and_unknown_tag() -> None:
    with pytest.raises(BitsError, match="must be 5 byte") as e:
        decode(0x95, bytes(3))
    assert e.value.tag == 0x95
    with pytest.raises(BitsError, match="no bit table for tag 9F02"):
        decode(0x9F02, bytes(6))


def test_action_codes_share_tvr_layout() -> None:
    assert decode(0x9F0E, bytes.fromhex("0020000000")) == ["application_not_yet_effective"]


@given(st.sampled_from(sorted(bits.TABLES)), st.data())
def test_build_decode_round_trip(tag: int, data: st.DataObject) -> None:
    table = bits.TABLES[tag]
    names = [e.name for e in table.entries if isinstance(e, bits.Bit)]
    chosen = data.draw(st.sets(st.sampled_from(names)))
    value = build(chosen, tag=tag)
    decoded = [n for n in decode(tag, value) if "=" not in n]
    assert set(decoded) == chosen
