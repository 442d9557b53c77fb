"""The EMV tag dictionary (tags.yaml) and the human-readable rendering built on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rig.emv import dictionary
from rig.emv.dictionary import DictionaryError, describe, load, lookup, render_tree
from rig.emv.tlv import decode, encode, encode_many


def test_at_least_150_tags_all_valid() -> None:
    tags = load()
    assert len(tags) >= 150
    for info in tags.values():
        assert info.format in dictionary.FORMATS
        assert info.source in dictionary.SOURCES
        assert 0 <= info.min_length <= info.max_length


@pytest.mark.parametrize(
    ("tag", "name_part", "fmt", "length", "source"),
    [
        (0x9F02, "Amount, Authorised (Numeric)", "n", 6, "terminal"),
        (0x5A, "Primary Account Number", "cn", (1, 10), "ICC"),
        (0x95, "Terminal Verification Results", "b", 5, "terminal"),
        (0x82, "Application Interchange Profile", "b", 2, "ICC"),
        (0x5F24, "Expiration Date", "n", 3, "ICC"),
        (0x50, "Application Label", "ans", (1, 16), "ICC"),
        (0x8A, "Authorisation Response Code", "an", 2, "issuer"),
        (0x9F66, "Terminal Transaction Qualifiers", "b", 4, "terminal"),
        (0x9F6C, "Card Transaction Qualifiers", "b", 2, "ICC"),
        (0x9F6E, "Form Factor Indicator", "b", 4, "ICC"),
        (0xDF8101, "DS Summary 2", "b", (8, 16), "ICC"),
        (0xDF8124, "Reader Contactless Transaction Limit", "n", 6, "terminal"),
        (0x9F79, "Electronic Cash Balance", "n", 6, "ICC"),
        (0x9F63, "Card Product Identification", "b", 16, "ICC"),
        (0x9F74, "Electronic Cash Issuer Authorisation Code", "an", 6, "ICC"),
        (0xDF4F, "Load Log Format", "b", (1, 255), "ICC"),
        (0x9F5D, "Available Offline Spending Amount", "n", 6, "ICC"),
        (0xDF69, "SM Algorithm", "b", 1, "ICC"),
    ],
)
def test_well_known_tags(tag: int, name_part: str, fmt: str, length, source: str) -> None:
    info = lookup(tag)
    assert info is not None
    assert name_part in info.name
    assert info.format == fmt
    lo, hi = (length, length) if isinstance(length, int) else length
    assert (info.min_length, info.max_length) == (lo, hi)
    assert info.source == source


def test_kernel_variants() -> None:
    assert "Terminal Transaction Qualifiers" in lookup(0x9F66).name
    assert lookup(0x9F66, kernel="mastercard").name == "PUNATC(Track2)"
    assert lookup(0x9F63, kernel="mastercard").name == "PUNATC(Track1)"
    assert lookup(0x9F02, kernel="mastercard").name.startswith("Amount")
    assert lookup(0x9FFF) is None


def test_templates_parsed() -> None:
    assert lookup(0x9F38).templates == (0xA5,)
    assert 0x77 in lookup(0x9F26).templates


def test_bad_dictionary_names_tag_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "tags.yaml"
    bad.write_text('tags:\n  "9F02": {name: x, format: q, length: 6, source: terminal}\n')
    with pytest.raises(DictionaryError, match=r"tag 9F02.*'format'"):
        load(bad)
    bad.write_text('tags:\n  "81": {name: Amount, Authorised, format: b, length: 4, source: ICC}\n')
    with pytest.raises(DictionaryError, match="unknown key"):
        load(bad)


def _record() -> bytes:
    # A READ RECORD response built for the test; the PAN is a test PAN.
    return encode(
        0x70,
        encode_many(
            [
                (0x5A, bytes.fromhex("5413330089600010")),
                (0x57, bytes.fromhex("5413330089600010D25122011234567890")),
                (0x5F24, bytes.fromhex("251231")),
                (0x5F28, bytes.fromhex("0840")),
                (0x9F07, bytes.fromhex("FF00")),
                (0x8E, bytes.fromhex("000000000000000042031E031F00")),
                (0x8C, bytes.fromhex("9F02069F1A0295055F2A029A039C019F3704")),
                (0x9F21, bytes.fromhex("235959")),
                (0x9A, bytes.fromhex("251332")),
            ]
        ),
    )


def test_describe_interprets_by_format() -> None:
    items = decode(_record() + encode(0x9F02, bytes.fromhex("000000012345")) + b"\x5f\x36\x01\x02")
    [rec, amount, _] = describe(items)
    kids = {d["tag"]: d for d in rec["children"]}
    assert kids["5F24"]["text"] == "2025-12-31"
    assert kids["5F28"]["text"] == "840"
    assert kids["9F21"]["text"] == "23:59:59"
    assert "Valid at ATMs" in kids["9F07"]["details"]
    assert kids["8E"]["details"][0].startswith("Enciphered PIN verified online")
    assert kids["8C"]["text"] == "7 entries, 23 bytes"
    assert amount["text"] == "123.45"
    assert any("month" in w for w in kids["9A"]["warnings"])


def test_describe_masks_pan_and_track2() -> None:
    [rec] = describe(decode(_record()))
    kids = {d["tag"]: d for d in rec["children"]}
    assert kids["5A"]["value"] == "541333******0010"
    assert "1234567890" not in kids["57"]["value"]
    [rec] = describe(decode(_record()), reveal=True)
    assert rec["children"][0]["value"] == "5413330089600010"


def test_describe_warns_on_length() -> None:
    [d] = describe(decode(encode(0x9F02, b"\x01")))
    assert d["warnings"] == ["length 1 outside 6..6"]


def test_render_tree() -> None:
    text = render_tree(decode(_record()))
    lines = text.splitlines()
    assert lines[0].startswith("70 READ RECORD Response Message Template")
    assert any(
        ln.startswith("  5F24 Application Expiration Date [3] 251231 = 2025-12-31") for ln in lines
    )
    assert "5413330089600010" not in text
