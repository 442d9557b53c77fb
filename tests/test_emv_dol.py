"""DOL parsing and DOL-related data (Book 3 §5.4), the AFL (Book 3 §10.2), AIP and AUC bits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.emv.dol import (
    AflEntry,
    AflError,
    DolEntry,
    DolError,
    build_dol_data,
    decode_aip,
    decode_auc,
    dol_length,
    encode_afl,
    encode_dol,
    fit_value,
    parse_afl,
    parse_dol,
    split_dol_data,
)

# A typical CDOL1: amount, other amount, terminal country, TVR, currency, date, type, UN.
CDOL1 = bytes.fromhex("9F02069F03069F1A0295055F2A029A039C019F3704")


def test_parse_cdol1() -> None:
    entries = parse_dol(CDOL1)
    assert [(e.tag_hex, e.length) for e in entries] == [
        ("9F02", 6),
        ("9F03", 6),
        ("9F1A", 2),
        ("95", 5),
        ("5F2A", 2),
        ("9A", 3),
        ("9C", 1),
        ("9F37", 4),
    ]
    assert dol_length(CDOL1) == 29
    assert encode_dol(entries) == CDOL1


def test_three_byte_tag_in_dol() -> None:
    assert parse_dol(bytes.fromhex("DF810C019F6604")) == [
        DolEntry(0xDF810C, 1),
        DolEntry(0x9F66, 4),
    ]


@pytest.mark.parametrize(("hexdol", "offset"), [("9F02", 2), ("9F", 0), ("9F0206DF81", 3)])
def test_bad_dol(hexdol: str, offset: int) -> None:
    with pytest.raises(DolError) as e:
        parse_dol(bytes.fromhex(hexdol))
    assert e.value.offset == offset


def test_build_cdol1_data() -> None:
    values = {
        0x9F02: bytes.fromhex("000000001000"),
        0x9F1A: bytes.fromhex("0840"),
        0x95: bytes.fromhex("0000008000"),
        0x5F2A: bytes.fromhex("0840"),
        0x9A: bytes.fromhex("250115"),
        0x9C: b"\x00",
        0x9F37: bytes.fromhex("CAFEBABE"),
    }
    data = build_dol_data(CDOL1, values)
    assert data.hex().upper() == ("00000000100000000000000008400000008000084025011500CAFEBABE")
    assert split_dol_data(CDOL1, data)[0x9F37] == bytes.fromhex("CAFEBABE")


@pytest.mark.parametrize(
    ("tag", "value", "length", "expected"),
    [
        (0x9F02, "000000001000", 4, "00001000"),  # n: leftmost bytes dropped
        (0x9F02, "1000", 6, "000000001000"),  # n: leading zeros
        (0x5A, "5413330089600010", 10, "5413330089600010FFFF"),  # cn: trailing FF
        (0x5A, "5413330089600010", 4, "54133300"),  # cn: rightmost dropped
        (0x9F1C, b"TID1".hex(), 8, b"TID1".hex() + "00000000"),  # an: trailing zeros
        (0x9F1C, b"TERMINAL".hex(), 3, b"TER".hex()),  # an: rightmost dropped
        (0x9F37, "CAFEBABE", 2, "CAFE"),  # b: rightmost dropped
        (0x9F37, "CAFE", 4, "CAFE0000"),  # b: trailing zeros
        (0x9F3F, "0102", 3, "010200"),  # unknown tag: treated as binary
    ],
)
def test_padding_and_truncation_by_format(tag: int, value: str, length: int, expected: str) -> None:
    dol = encode_dol([(tag, length)])
    assert build_dol_data(dol, {tag: bytes.fromhex(value)}).hex().upper() == expected.upper()


def test_missing_and_constructed_tags_give_zeros() -> None:
    dol = encode_dol([(0x9F37, 4), (0x70, 3)])
    assert build_dol_data(dol, {0x70: b"\x01\x02\x03"}) == bytes(7)


def test_kernel_variant_format_is_used() -> None:
    # 9F6D is numeric electronic-cash data by default, binary under kernel 2.
    dol = encode_dol([(0x9F6D, 3)])
    assert build_dol_data(dol, {0x9F6D: b"\x12\x34"}) == b"\x00\x12\x34"
    assert build_dol_data(dol, {0x9F6D: b"\x12\x34"}, kernel="mastercard") == b"\x12\x34\x00"


def test_split_rejects_wrong_length() -> None:
    with pytest.raises(DolError, match="asks for 29"):
        split_dol_data(CDOL1, bytes(28))


@given(st.binary(max_size=20), st.integers(0, 24), st.sampled_from(["n", "cn", "an", "b"]))
def test_fit_value_always_exact_length(value: bytes, length: int, fmt: str) -> None:
    out = fit_value(value, length, fmt)
    assert len(out) == length
    keep = min(len(value), length)
    if fmt == "n":
        assert out[length - keep :] == value[len(value) - keep :]
    else:
        assert out[:keep] == value[:keep]


@given(st.binary(max_size=64))
def test_fuzz_parse_dol(data: bytes) -> None:
    try:
        entries = parse_dol(data)
    except DolError as e:
        assert 0 <= e.offset <= len(data)
    else:
        assert encode_dol(entries) == data


def test_parse_afl() -> None:
    afl = parse_afl(bytes.fromhex("080101001001030218010201"))
    assert afl == [AflEntry(1, 1, 1, 0), AflEntry(2, 1, 3, 2), AflEntry(3, 1, 2, 1)]
    assert afl[1].records() == [1, 2, 3]
    assert afl[1].oda_records() == [1, 2]
    assert encode_afl(afl) == bytes.fromhex("080101001001030218010201")


@pytest.mark.parametrize(
    ("hexafl", "offset", "words"),
    [
        ("", 0, "multiple of 4"),
        ("080101", 0, "multiple of 4"),
        ("0801010010", 4, "multiple of 4"),
        ("09010100", 0, "SFI"),
        ("00010100", 0, "SFI"),
        ("F8010100", 0, "SFI"),
        ("08000100", 1, "first record"),
        ("08030200", 2, "before first"),
        ("08010203", 3, "for ODA"),
        ("0801010008010100" + "10000100", 9, "first record"),
    ],
)
def test_bad_afl(hexafl: str, offset: int, words: str) -> None:
    with pytest.raises(AflError) as e:
        parse_afl(bytes.fromhex(hexafl))
    assert e.value.offset == offset
    assert words in str(e.value)


@given(st.binary(max_size=40))
def test_fuzz_parse_afl(data: bytes) -> None:
    try:
        afl = parse_afl(data)
    except AflError:
        return
    assert encode_afl(afl) == data


def test_aip_and_auc_bits() -> None:
    # 1980: SDA, CV supported, TRM, plus byte 2 EMV mode; 3C00 AUC: goods and services only.
    assert decode_aip(bytes.fromhex("1980")) == [
        "cv_supported",
        "trm_required",
        "cda_supported",
        "emv_mode_supported",
    ]
    assert decode_aip(bytes.fromhex("5800")) == ["sda_supported", "cv_supported", "trm_required"]
    assert decode_auc(bytes.fromhex("3D00")) == [
        "domestic_goods",
        "international_goods",
        "domestic_services",
        "international_services",
        "non_atm",
    ]
