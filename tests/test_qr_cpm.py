"""EMVCo consumer-presented QR: the published example, round trips, errors, fuzzing."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.qr import cpm

# EMV QRCPS Consumer-Presented Mode example payload (two application templates and a common
# data template with a transparent template), as reproduced in the test suites of
# mvallim/emv-qrcode (Java) and dongri/emv-qrcode (Go); hex form from the same source.
SPEC_EXAMPLE = (
    "hQVDUFYwMWETTwegAAAAVVVVUAhQcm9kdWN0MWETTwegAAAAZmZmUAhQcm9kdWN0MmJJWggSNFZ4kBI0WF8gDkNB"
    "UkRIT0xERVIvRU1WXy0IcnVlc2RlZW5kIZ8QBwYBCgMAAACfJghYT9OF+iNLzJ82AgABnzcEbVjvEw=="
)
SPEC_HEX = (
    "8505435056303161134F07A0000000555555500850726F647563743161134F07A00000006666665008"
    "50726F647563743262495A0812345678901234585F200E43415244484F4C4445522F454D565F2D0872"
    "7565736465656E64219F100706010A030000009F2608584FD385FA234BCC9F360200019F37046D58EF13"
)
# mvallim/emv-qrcode DecoderCpmTest: application template with track 2 equivalent data (57).
TRACK2_EXAMPLE = "hQVDUFYwMWEaTwegAAAAVVVVVw8SNFZ4kBI0WNGRIgESNF8="

APPS = [
    {0x4F: bytes.fromhex("A0000000555555"), 0x50: b"Product1"},
    {0x4F: bytes.fromhex("A0000000666666"), 0x50: b"Product2"},
]
COMMON = {
    0x5A: bytes.fromhex("1234567890123458"),
    0x5F20: b"CARDHOLDER/EMV",
    0x5F2D: b"ruesdeen",
    0x64: {
        0x9F10: bytes.fromhex("06010A03000000"),
        0x9F26: bytes.fromhex("584FD385FA234BCC"),
        0x9F36: bytes.fromhex("0001"),
        0x9F37: bytes.fromhex("6D58EF13"),
    },
}


def test_example_decodes():
    assert base64.b64decode(SPEC_EXAMPLE).hex().upper() == SPEC_HEX
    p = cpm.decode(SPEC_EXAMPLE)
    assert p.format_indicator == b"CPV01"
    assert p.applications == APPS
    assert p.common == COMMON


def test_example_encodes_byte_exact():
    assert cpm.encode(APPS, COMMON) == SPEC_EXAMPLE
    assert cpm.encode_bytes(APPS, COMMON).hex().upper() == SPEC_HEX


def test_track2_example_and_masking():
    p = cpm.decode(TRACK2_EXAMPLE)
    assert p.applications[0][0x57] == bytes.fromhex("1234567890123458D191220112345F")
    view = cpm.to_dict(p)
    assert view["applications"][0]["57"] == "[redacted]"
    full = cpm.to_dict(cpm.decode(SPEC_EXAMPLE))
    assert full["common"]["5A"] == "123456******3458"
    assert full["applications"][0]["50"] == "Product1"
    assert cpm.to_dict(p, masked=False)["applications"][0]["57"].startswith("1234567890123458D")


def test_detection():
    assert cpm.looks_like_cpm(SPEC_EXAMPLE)
    assert not cpm.looks_like_cpm("000201010211")
    assert not cpm.looks_like_cpm("not base64!")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not base64!", "not base64"),
        (
            base64.b64encode(bytes.fromhex("840543505630316100")).decode(),
            "does not start with tag 85",
        ),
        (base64.b64encode(bytes.fromhex("850543505630326100")).decode(), "format indicator"),
        (base64.b64encode(bytes.fromhex("8505435056303162024F00")).decode(), "no application"),
        (base64.b64encode(bytes.fromhex("850543505630316102")).decode(), "not BER-TLV"),
        (base64.b64encode(bytes.fromhex("85054350563031610070009000")).decode(), "unexpected"),
    ],
)
def test_errors(payload, message):
    with pytest.raises(cpm.CpmError, match=message):
        cpm.decode(payload)


tag_values = st.binary(min_size=1, max_size=30)
app_st = st.fixed_dictionaries(
    {0x4F: st.binary(min_size=5, max_size=16)},
    optional={
        0x50: tag_values,
        0x57: tag_values,
        0x9F08: tag_values,
        0x63: st.dictionaries(st.sampled_from([0x9F26, 0x9F27, 0x9F36]), tag_values),
    },
)


@given(
    st.lists(app_st, min_size=1, max_size=3),
    st.one_of(st.none(), st.dictionaries(st.sampled_from([0x5A, 0x5F20, 0x9F25]), tag_values)),
)
def test_round_trip(apps, common):
    p = cpm.decode(cpm.encode(apps, common))
    assert p.applications == apps
    assert p.common == common


@given(st.binary(max_size=120))
def test_decode_bytes_fuzz(data):
    with contextlib.suppress(cpm.CpmError):
        cpm.decode_bytes(data)


@given(st.text(max_size=80))
def test_decode_text_fuzz(text):
    with contextlib.suppress(cpm.CpmError):
        cpm.decode(text)
