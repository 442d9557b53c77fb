"""TR-31 key blocks, versions B and D (rig.crypto.tr31). KBPKs and keys are published test keys."""

from __future__ import annotations

import warnings

import psec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.crypto import tr31
from rig.crypto.keys import kcv_aes_cmac, kcv_tdes
from rig.crypto.primitives import aes_cbc_decrypt, tdes_cbc_decrypt
from rig.crypto.tr31 import Header, Tr31Error

h = bytes.fromhex

# ASC X9 TR-31:2018 Annex A worked examples (A.7.2.2 version B, A.7.3.2 version B with a KS
# optional block, A.7.4 version D): (KBPK, key block, clear key, KCV).
PUBLISHED = [
    (
        "DD7515F2BFC17F85CE48F3CA25CB21F6",
        "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E",
        "3F419E1CB7079442AA37474C2EFBF8B8",
        "57C409",
    ),
    (
        "1D22BF32387C600AD97F9B97A51311AC",
        "B0104B0TX12S0100KS1800604B120F9292800000BB68BE8680A400D9191AD4ECE45B6E6C0D21C4738A52190E"
        "248719E24B433627",
        "E8BC63E5479455E26577F715D587FE68",
        "9A4212",
    ),
    (
        "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6",
        "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA"
        "05F7425509593D03A457DC34",
        "3F419E1CB7079442AA37474C2EFBF8B8",
        "08793E",
    ),
]


def unwrap_or_error(kbpk: bytes, text: str) -> tuple[Header, bytes] | Tr31Error:
    """Only Tr31Error may escape the parser; anything else fails the fuzz test."""
    try:
        return tr31.unwrap(kbpk, text)
    except Tr31Error as exc:
        return exc


def quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


@pytest.mark.parametrize(("kbpk", "block", "key", "kcv"), PUBLISHED)
def test_unwrap_published_tr31_2018_examples(kbpk, block, key, kcv):
    # Source: ASC X9 TR-31:2018 Annex A.7.2.2, A.7.3.2 and A.7.4.
    header, clear = tr31.unwrap(h(kbpk), block)
    assert clear == h(key)
    check = kcv_aes_cmac(clear)[:3] if header.algorithm == "A" else kcv_tdes(clear)
    assert check == h(kcv)
    assert header.version_id == block[0]


def test_published_header_fields():
    # Source: ASC X9 TR-31:2018 A.7.3.2 (BDK with key set identifier optional block).
    header, _ = tr31.unwrap(h(PUBLISHED[1][0]), PUBLISHED[1][1])
    assert (header.key_usage, header.algorithm, header.mode_of_use) == ("B0", "T", "X")
    assert (header.key_version, header.exportability) == ("12", "S")
    assert header.blocks == {"KS": "00604B120F9292800000"}
    assert "BDK" in header.describe()["key_usage"]


@pytest.mark.parametrize(("kbpk", "block", "key", "kcv"), PUBLISHED)
def test_rewrap_reproduces_published_block(kbpk, block, key, kcv):
    # Wrapping with the padding recovered from the published block must give the same block.
    header, _ = tr31.parse_header(block)
    version = block[0]
    bs = 8 if version == "B" else 16
    kbek, _ = tr31._derive(version, h(kbpk))
    header_len = tr31.parse_header(block)[1]
    mac_hex = block[-(16 if version == "B" else 32) :]
    enc = h(block[header_len : len(block) - len(mac_hex)])
    decrypt = tdes_cbc_decrypt if version == "B" else aes_cbc_decrypt
    payload = decrypt(kbek, enc, h(mac_hex))
    padding = payload[2 + len(h(key)) :]
    assert len(payload) % bs == 0
    again = tr31.wrap(h(kbpk), header, h(key), random_bytes=lambda n: padding[:n])
    assert again == block


def test_wrap_fixed_random_and_psec_unwraps_it():
    kbpk = h("89E88CF7931444F334BD7547FC3F380C")  # TR-31:2018 A.7 test KBPK
    header = Header("B", "P0", "T", "E", "00", "E", (("KS", "00604B120F9292800000"),))
    block = tr31.wrap(kbpk, header, h("F039121BEC83D26B169BDCD5B22AAF8F"), random_bytes=bytes)
    assert block.startswith("B0104P0TE00E0100KS1800604B120F9292800000")
    assert len(block) == 104  # 40 header + 2 x 24 key data + 16 MAC
    their_header, key = quiet(psec.tr31.unwrap, kbpk, block)
    assert key == h("F039121BEC83D26B169BDCD5B22AAF8F")
    assert their_header.blocks["KS"] == "00604B120F9292800000"


def test_pb_block_added_when_header_not_aligned():
    header = Header("D", "D0", "A", "E", "00", "N", (("KS", "00604B120F9292800000"),))
    block = tr31.wrap(h("AB" * 32), header, h("CD" * 16), random_bytes=bytes)
    parsed, header_len = tr31.parse_header(block)
    assert header_len % 16 == 0
    assert parsed.optional_blocks[-1][0] == "PB"
    assert tr31.unwrap(h("AB" * 32), block)[1] == h("CD" * 16)


@settings(max_examples=40)
@given(
    st.sampled_from(["B", "D"]),
    st.sampled_from([16, 24, 32]),
    st.sampled_from([8, 16, 24, 32]),
    st.data(),
)
def test_roundtrip_and_psec_cross_check(version, kbpk_len, key_len, data):
    if version == "B":
        kbpk_len = min(kbpk_len, 24)
    kbpk = data.draw(st.binary(min_size=kbpk_len, max_size=kbpk_len))
    key = data.draw(st.binary(min_size=key_len, max_size=key_len))
    header = Header(version, "D0", "A" if version == "D" else "T", "B", "01", "N")
    block = tr31.wrap(kbpk, header, key)
    parsed, clear = tr31.unwrap(kbpk, block)
    assert clear == key and parsed == header
    assert quiet(psec.tr31.unwrap, kbpk, block)[1] == key
    theirs = quiet(psec.tr31.wrap, kbpk, block[:16], key)
    assert tr31.unwrap(kbpk, theirs)[1] == key


def test_errors():
    kbpk, block = h(PUBLISHED[0][0]), PUBLISHED[0][1]
    tampered = block[:-1] + ("0" if block[-1] != "0" else "1")
    with pytest.raises(Tr31Error, match="MAC mismatch"):
        tr31.unwrap(kbpk, tampered)
    with pytest.raises(Tr31Error, match="MAC mismatch"):
        tr31.unwrap(h("00" * 16), block)
    with pytest.raises(Tr31Error, match="length field '0080' does not match"):
        tr31.unwrap(kbpk, block[:-2])
    with pytest.raises(Tr31Error, match="unsupported key block version 'A'"):
        tr31.unwrap(kbpk, "A" + block[1:])
    with pytest.raises(Tr31Error, match="too short"):
        tr31.unwrap(kbpk, "B0010")
    with pytest.raises(Tr31Error, match="version B needs a 16- or 24-byte"):
        tr31.unwrap(h("00" * 32), block)
    with pytest.raises(Tr31Error, match="not hex at offset 16"):
        tr31.unwrap(kbpk, block[:16] + "Z" + block[17:])
    with pytest.raises(Tr31Error, match="key usage"):
        Header("B", "P", "T", "E")
    with pytest.raises(Tr31Error, match="unsupported"):
        tr31.wrap(kbpk, Header("C"), h("00" * 16))


@settings(max_examples=300)
@given(st.text(max_size=140))
def test_fuzz_unwrap_only_raises_tr31_error(text):
    outcome = unwrap_or_error(h(PUBLISHED[0][0]), text)
    assert isinstance(outcome, Tr31Error) and str(outcome)


@settings(max_examples=300)
@given(
    st.sampled_from(["B", "D"]),
    st.text("0123456789ABCDEFKSPB", max_size=80),
    st.integers(min_value=0, max_value=5),
)
def test_fuzz_structured_headers(version, tail, count):
    text = f"{version}0000P0TE00N{count:02d}00{tail}"
    text = f"{version}{len(text):04d}{text[5:]}"
    outcome = unwrap_or_error(h("11" * 16), text)
    assert isinstance(outcome, Tr31Error) and str(outcome)


@settings(max_examples=300)
@given(st.data())
def test_fuzz_mutated_published_block(data):
    kbpk, block = h(PUBLISHED[1][0]), PUBLISHED[1][1]
    chars = list(block)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        pos = data.draw(st.integers(min_value=0, max_value=len(chars) - 1))
        chars[pos] = data.draw(st.sampled_from("0123456789ABCDEFKSPB \x7f"))
    cut = data.draw(st.integers(min_value=0, max_value=len(chars)))
    text = "".join(chars[:cut])
    outcome = unwrap_or_error(kbpk, text)
    if isinstance(outcome, tuple):
        assert text == block and outcome[1] == h(PUBLISHED[1][2])
    else:
        assert str(outcome)
