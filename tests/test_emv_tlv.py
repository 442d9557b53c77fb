"""BER-TLV decoding and encoding (EMV 4.3 Book 3 Annex B) on real-looking card responses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.emv.tlv import (
    Tlv,
    TlvError,
    decode,
    decode_flat,
    encode,
    encode_length,
    encode_many,
    find,
    read_tag,
    tag_to_hex,
)

# Response to SELECT '1PAY.SYS.DDF01' (contact PSE): DF name, SFI 1 of the directory, language 'en'.
PSE_FCI = bytes.fromhex("6F1A840E315041592E5359532E4444463031A5088801015F2D02656E")
# Response to SELECT '2PAY.SYS.DDF01' (PPSE) listing one Visa application, hand-assembled.
PPSE_FCI = bytes.fromhex(
    "6F2F840E325041592E5359532E4444463031A51DBF0C1A6118"
    "4F07A0000000031010500A56495341204445424954870101"
)
# GET PROCESSING OPTIONS responses: format 1 (tag 80: AIP || AFL) and format 2 (tag 77 template).
GPO_FORMAT1 = bytes.fromhex("800A19800801010010010301")
GPO_FORMAT2 = bytes.fromhex(
    "772C82021980940808010100100103019F360200019F260811223344556677889F2701809F100706010A03A00000"
)


def test_pse_fci_structure() -> None:
    [fci] = decode(PSE_FCI)
    assert fci.tag == 0x6F and fci.constructed and fci.offset == 0
    assert [c.tag for c in fci.children] == [0x84, 0xA5]
    assert fci.children[0].value == b"1PAY.SYS.DDF01"
    a5 = fci.children[1]
    assert a5.offset == 18
    assert [(c.tag_hex, c.value, c.offset) for c in a5.children] == [
        ("88", b"\x01", 20),
        ("5F2D", b"en", 23),
    ]
    assert fci.find(0x88).value == b"\x01"
    assert fci.find(0x9F38) is None


def test_ppse_fci_directory_entry() -> None:
    [fci] = decode(PPSE_FCI)
    entry = fci.find(0x61)
    assert entry is not None and entry.constructed
    assert entry.find(0x4F).value == bytes.fromhex("A0000000031010")
    assert entry.find(0x50).value == b"VISA DEBIT"
    assert fci.find(0xBF0C).tag_hex == "BF0C"
    assert encode_many([fci]) == PPSE_FCI


def test_gpo_format1_is_primitive() -> None:
    [r] = decode(GPO_FORMAT1)
    assert r.tag == 0x80 and not r.constructed and r.children is None
    assert r.value[:2] == bytes.fromhex("1980") and len(r.value[2:]) == 8


def test_gpo_format2_flat() -> None:
    flat = decode_flat(GPO_FORMAT2)
    assert flat[0x82] == bytes.fromhex("1980")
    assert flat[0x94] == bytes.fromhex("0801010010010301")
    assert flat[0x9F36] == b"\x00\x01"
    assert flat[0x9F26] == bytes.fromhex("1122334455667788")
    assert flat[0x9F27] == b"\x80"
    assert 0x77 in flat


def test_three_byte_tag_and_first_occurrence() -> None:
    data = encode(0xDF8101, b"\x01" * 8) + encode(0x9F02, b"\x00" * 6) + encode(0x9F02, b"\x11")
    assert data[:4] == bytes.fromhex("DF810108")
    items = decode(data)
    assert [t.tag for t in items] == [0xDF8101, 0x9F02, 0x9F02]
    assert decode_flat(data)[0x9F02] == b"\x00" * 6
    assert read_tag(data, 0) == (0xDF8101, 3)


@pytest.mark.parametrize(
    ("n", "wire"),
    [(0, "00"), (127, "7F"), (128, "8180"), (255, "81FF"), (256, "820100"), (65536, "83010000")],
)
def test_length_forms(n: int, wire: str) -> None:
    assert encode_length(n).hex().upper() == wire
    [t] = decode(bytes.fromhex("90" + wire) + bytes(n))
    assert len(t.value) == n


def test_long_form_certificate_length() -> None:
    cert = bytes(range(144))
    data = bytes.fromhex("908190") + cert
    assert decode(data)[0].value == cert
    assert encode(0x90, cert) == data


def test_padding_skipped_between_objects() -> None:
    data = bytes.fromhex("00 00 5F2A020978 FF FF 9F1A020250 00")
    items = decode(data)
    assert [(t.tag, t.offset) for t in items] == [(0x5F2A, 2), (0x9F1A, 9)]
    with pytest.raises(TlvError) as e:
        decode(data, allow_padding=False)
    assert e.value.offset == 0


def test_recurse_false_keeps_template_raw() -> None:
    [fci] = decode(PSE_FCI, recurse=False)
    assert fci.children is None and fci.value == PSE_FCI[2:]


@pytest.mark.parametrize(
    ("hexdata", "offset", "tag", "words"),
    [
        ("9F", 0, "9F", "truncated multi-byte tag"),
        ("5A085413", 0, "5A", "runs past the end"),
        ("9F02", 2, "9F02", "truncated length"),
        ("9F0280", 2, "9F02", "indefinite length"),
        ("908401000000", 1, "90", "at most 83"),
        ("9082", 1, "90", "truncated length"),
        ("DF8181818101", 0, "DF81818181", "longer than 4"),
        ("5F2A0209786F0184", 8, "84", "truncated length"),
    ],
)
def test_errors_name_offset_and_tag(hexdata: str, offset: int, tag: str, words: str) -> None:
    with pytest.raises(TlvError) as e:
        decode(bytes.fromhex(hexdata))
    assert e.value.offset == offset
    assert e.value.tag == tag
    assert words in str(e.value)
    assert f"offset {offset}" in str(e.value)


def test_error_inside_template_has_absolute_offset() -> None:
    data = bytes.fromhex("6F05" + "8404A00000")
    with pytest.raises(TlvError) as e:
        decode(data)
    assert (e.value.offset, e.value.tag) == (2, "84")


def test_nesting_depth_limited() -> None:
    data = encode(0x9F02, b"\x00")
    for _ in range(40):
        data = encode(0xE1, data)
    with pytest.raises(TlvError, match="nested deeper"):
        decode(data)
    assert decode(data, recurse=False)[0].tag == 0xE1


@pytest.mark.parametrize("tag", [0x00, 0x1F, 0x9F, 0x9F81, 0xFF01, 0x9F8101FF01])
def test_encode_rejects_malformed_tags(tag: int) -> None:
    with pytest.raises(TlvError):
        encode(tag, b"")


def test_to_dict_and_module_find() -> None:
    items = decode(PSE_FCI)
    d = items[0].to_dict()
    assert d["tag"] == "6F" and d["children"][0]["value"] == b"1PAY.SYS.DDF01".hex().upper()
    assert find(items, 0x5F2D).value == b"en"
    assert find(items, 0x57) is None


def test_encode_many_rebuilds_constructed_from_children() -> None:
    inner = Tlv(0x9F02, b"\x00\x00\x00\x00\x01\x00")
    outer = Tlv(0x70, b"stale", [inner])
    assert encode_many([outer, (0x95, bytes(5))]) == bytes.fromhex(
        "70099F0206000000000100" + "95050000000000"
    )


# --- properties -------------------------------------------------------------------------------

_one_byte = st.integers(0x01, 0xFE).filter(lambda b: b & 0x1F != 0x1F and not b & 0x20)
_two_byte = st.tuples(st.sampled_from([0x1F, 0x5F, 0x9F, 0xDF]), st.integers(0x01, 0x7F)).map(
    lambda t: t[0] << 8 | t[1]
)
_three_byte = st.tuples(
    st.sampled_from([0x9F, 0xDF]), st.integers(0x81, 0xFF), st.integers(0x00, 0x7F)
).map(lambda t: t[0] << 16 | t[1] << 8 | t[2])
primitive_tags = st.one_of(_one_byte, _two_byte, _three_byte)


@given(st.lists(st.tuples(primitive_tags, st.binary(max_size=300)), max_size=8))
def test_round_trip_primitives(items: list[tuple[int, bytes]]) -> None:
    data = encode_many(items)
    decoded = decode(data, allow_padding=False)
    assert [(t.tag, t.value) for t in decoded] == items


@given(st.lists(st.tuples(primitive_tags, st.binary(max_size=40)), min_size=1, max_size=5))
def test_round_trip_inside_template(items: list[tuple[int, bytes]]) -> None:
    data = encode(0x70, encode_many(items))
    [t] = decode(data)
    assert [(c.tag, c.value) for c in t.children] == items
    assert encode_many([t]) == data


@given(st.binary(max_size=400))
def test_fuzz_only_tlverror_escapes(data: bytes) -> None:
    try:
        items = decode(data)
    except TlvError as e:
        assert 0 <= e.offset <= len(data)
        return
    for top in items:
        for t in top.walk():
            assert t.offset < len(data)


# --- cross-check with an independent BER-TLV implementation (pyemv.tlv) ------------------------


def _as_pyemv(items: list[Tlv]) -> dict:
    return {t.tag_hex: _as_pyemv(t.children) if t.children is not None else t.value for t in items}


def test_pyemv_reads_the_same_fci() -> None:
    from pyemv import tlv as pyemv_tlv

    for data in (PSE_FCI, PPSE_FCI, GPO_FORMAT2):
        assert pyemv_tlv.decode(data) == _as_pyemv(decode(data))


@given(st.dictionaries(primitive_tags, st.binary(max_size=300), max_size=8))
def test_pyemv_cross_check(values: dict[int, bytes]) -> None:
    from pyemv import tlv as pyemv_tlv

    ours = encode_many(values.items())
    theirs = pyemv_tlv.encode({tag_to_hex(t): v for t, v in values.items()})
    assert ours == theirs
    assert pyemv_tlv.decode(ours) == _as_pyemv(decode(ours))
