"""The posrig ISO 8583 dialect: field formats on the wire, through pyiso8583."""

from __future__ import annotations

import iso8583
import pytest

from rig.iso8583.spec import DATA_FIELDS, NAMES, NUMERIC_FIELDS, SPEC, field_key, field_name

REQUIRED = {2, 3, 4, 7, 11, 12, 13, 14, 18, 22, 23, 24, 25, 32, 35, 37, 38, 39, 41, 42, 43}
REQUIRED |= {45, 48, 49, 52, 53, 54, 55, 60, 61, 62, 63, 64, 70, 90, 128}


def test_every_brief_field_is_defined_with_a_format():
    assert {int(k) for k in DATA_FIELDS} == REQUIRED
    for key in DATA_FIELDS:
        assert SPEC[key]["fmt"][0] in "nzab", key
        assert SPEC[key]["desc"]


def test_binary_bitmaps_and_bcd_mti():
    raw, _ = iso8583.encode({"t": "0800", "11": "000001", "70": "301"}, SPEC)
    assert raw[:2] == b"\x08\x00"
    assert raw[2:10] == bytes.fromhex("8020000000000000")
    assert raw[10:18] == bytes.fromhex("0400000000000000")
    assert raw[18:] == bytes.fromhex("000001") + bytes.fromhex("0301")


@pytest.mark.parametrize(
    ("key", "value", "wire"),
    [
        ("2", "4761739001010010", "164761739001010010"),
        ("2", "476173900101001", "15476173900101001F"),
        ("4", "000000001234", "000000001234"),
        ("22", "051", "0051"),
        ("35", "4761739001010010D2212", "214761739001010010D2212F"),
        ("39", "00", "3030"),
        ("41", "TERM0001", "5445524D30303031"),
        ("52", "0123456789ABCDEF", "080123456789ABCDEF"),
        ("52", "00112233445566778899AABBCCDDEEFF", "1600112233445566778899AABBCCDDEEFF"),
        ("55", "9F0206000000001000", "00099F0206000000001000"),
        ("60", "000001", "0006303030303031"),
    ],
)
def test_field_wire_formats(key, value, wire):
    raw, enc = iso8583.encode({"t": "0200", key: value}, SPEC)
    assert (enc[key]["len"] + enc[key]["data"]).hex().upper() == wire
    assert iso8583.decode(raw, SPEC)[0][key] == value


def test_numeric_fields_are_bcd():
    assert "4" in NUMERIC_FIELDS and "37" not in NUMERIC_FIELDS and "55" not in NUMERIC_FIELDS


def test_aliases():
    assert field_key("pan") == "2"
    assert field_key("de38") == "38"
    assert field_key("39") == "39"
    assert NAMES["icc"] == "55"
    assert "PAN" in field_name("2")
    assert "not in the posrig dialect" in field_name("5")
    with pytest.raises(ValueError, match="unknown ISO 8583 field name 'colour'"):
        field_key("colour")
