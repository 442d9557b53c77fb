"""ARQC/ARPC per CVN: published vectors (sources named per test) and pyemv cross-checks.

All keys and PANs here are test values.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import cvn as pyemv_cvn

from rig.crypto import arqc
from rig.crypto.mac import pad_method1, pad_method2
from rig.crypto.primitives import CryptoError

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


def _hex_tags(**values: str) -> dict[str, bytes]:
    return {k.upper().lstrip("T"): bytes.fromhex(v) for k, v in values.items()}


# Published worked example of PBOC 2.0 (China UnionPay) ARQC/ARPC, "Financial IC card ARQC and
# ARPC calculation methods and examples" (金融IC卡ARQC和ARPC计算方法和实例), republished e.g. on
# topic.alibabacloud.com and uzzz.org. Test issuer key PBOC_IMK_AC, test PAN 6228000100001, PSN 01.
PBOC_IMK_AC = bytes.fromhex("F0C34A8124CEE0A91A0B034AA97D6EAC")
PBOC_TAGS = _hex_tags(
    t9F02="000000000001",
    t9F03="000000000000",
    t9F1A="0156",
    t95="0080046000",
    t5F2A="0156",
    t9A="140701",
    t9C="00",
    t9F37="1E78EEBC",
    t82="7D00",
    t9F36="0240",
    t9F10="07000103A04002010A010000001000D1F61152",
)


def test_pboc_published_example_arqc_and_arpc() -> None:
    """Option A UDK, PBOC session key, MAC alg 3 padding 2, ARPC method 1 (ARC = ASCII '01')."""
    mk = arqc.icc_master_key("pboc", PBOC_IMK_AC, "6228000100001", "01")
    data = arqc.build_ac_data("pboc", PBOC_TAGS)
    assert data.hex().upper() == (
        "000000000001000000000000015600800460000156140701001E78EEBC7D00024003A04002"
    )
    ac = arqc.generate_ac("pboc", mk, PBOC_TAGS)
    assert ac.hex().upper() == "5D016C91005E7CC2"
    assert arqc.verify_arqc("pboc", mk, PBOC_TAGS, bytes.fromhex("5D016C91005E7CC2"))
    assert not arqc.verify_arqc("pboc", mk, PBOC_TAGS, bytes.fromhex("5D016C91005E7CC3"))
    arpc = arqc.generate_arpc("pboc", mk, ac, PBOC_TAGS["9F36"], arc=b"01")
    assert arpc.hex().upper() == "21415243527CE78F"


# Visa Smart Debit/Credit (VSDC) Contact & Contactless Issuer Implementation Guide, October 2018,
# Appendix H.1 Example 1 (AC input data for CVN 10, 18 and '22'), as transcribed in jPOS's
# CVN10/18/22DataBuilderTest.
VISA_H1 = _hex_tags(
    t9F02="000000000100",
    t9F03="000000000000",
    t9F1A="0840",
    t95="0000000000",
    t5F2A="0840",
    t9A="181231",
    t9C="01",
    t9F37="ABCDEF10",
    t82="1800",
)
VISA_H1_BASE = "00000000010000000000000008400000000000084018123101ABCDEF101800"


def test_visa_h1_example_cvn10_data_and_padding() -> None:
    tags = VISA_H1 | _hex_tags(t9F36="0002", t9F10="06010A03000000")
    data = arqc.build_ac_data(10, tags)
    assert data.hex().upper() == VISA_H1_BASE + "000203000000"
    assert pad_method1(data).hex().upper() == VISA_H1_BASE + "000203000000000000"
    assert arqc.get_cvn(10).padding == 1


def test_visa_h1_example_cvn18_data_and_padding() -> None:
    tags = VISA_H1 | _hex_tags(t9F36="0001", t9F10="06011203000000")
    data = arqc.build_ac_data(18, tags)
    assert data.hex().upper() == VISA_H1_BASE + "000106011203000000"
    assert pad_method2(data).hex().upper() == VISA_H1_BASE + "0001060112030000008000000000000000"
    assert arqc.get_cvn(18).padding == 2


def test_visa_h1_example_cvn22_data() -> None:
    iad = "1F220103" + "00" * 28
    tags = VISA_H1 | _hex_tags(t9F36="0001", t9F10=iad)
    assert arqc.build_ac_data(22, tags).hex().upper() == VISA_H1_BASE + "0001" + iad


def test_each_cvn_names_its_data_list() -> None:
    base = ("9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C", "9F37", "82", "9F36")
    assert arqc.cvn_data_elements(10) == (*base, "CVR")
    assert arqc.cvn_data_elements("visa-18") == (*base, "9F10")
    assert arqc.cvn_data_elements(16) == (*base, "CVR")
    assert arqc.get_cvn(16).session == "mastercard"
    assert arqc.get_cvn(20).session == "emv_csk"
    assert arqc.get_cvn(10).session == "none"


# --- cross-checks against pyemv on random inputs ----------------------------------------------

keys16 = st.binary(min_size=16, max_size=16)


def _fixed(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


tag_sets = st.fixed_dictionaries(
    {tag: _fixed(size) for tag, size in arqc.TAG_LENGTHS.items()}
    | {"9F10": st.binary(min_size=8, max_size=32)}
)
pans = st.text("0123456789", min_size=12, max_size=19)
psns = st.text("0123456789", min_size=2, max_size=2)


def _pyemv_args(tags: dict[str, bytes]) -> dict[str, bytes]:
    return {f"tag_{k.lower()}": v for k, v in tags.items() if k != "9F10"}


@settings(max_examples=25)
@given(imk=keys16, pan=pans, psn=psns, tags=tag_sets, arc=_fixed(2))
def test_visa_cvn10_matches_pyemv(imk, pan, psn, tags, arc) -> None:
    ref = pyemv_cvn.VisaCVN10(imk, imk, imk, pan, psn)
    mk = arqc.icc_master_key(10, imk, pan, psn)
    assert mk == ref.icc_mk_ac
    ac = arqc.generate_ac(10, mk, tags)
    assert ac == ref.generate_ac(**_pyemv_args(tags), cvr=tags["9F10"][3:7])
    assert arqc.generate_arpc(10, mk, ac, tags["9F36"], arc=arc) == ref.generate_arpc(ac, arc)


@settings(max_examples=25)
@given(imk=keys16, pan=pans, psn=psns, tags=tag_sets, csu=_fixed(4), prop=st.binary(max_size=8))
def test_visa_cvn18_and_22_match_pyemv(imk, pan, psn, tags, csu, prop) -> None:
    for number, cls in ((18, pyemv_cvn.VisaCVN18), (22, pyemv_cvn.VisaCVN22)):
        ref = cls(imk, imk, imk, pan, psn)
        mk = arqc.icc_master_key(number, imk, pan, psn)
        assert mk == ref.icc_mk_ac
        ac = arqc.generate_ac(number, mk, tags)
        assert ac == ref.generate_ac(**_pyemv_args(tags), tag_9f10=tags["9F10"])
        mine = arqc.generate_arpc(number, mk, ac, tags["9F36"], csu=csu, proprietary=prop)
        assert mine == ref.generate_arpc(ac, tags["9F36"], csu, prop)


@settings(max_examples=25)
@given(imk=keys16, pan=pans, psn=psns, tags=tag_sets, arc=_fixed(2))
def test_mastercard_cvn16_and_20_match_pyemv(imk, pan, psn, tags, arc) -> None:
    cvr = tags["9F10"][2:8]
    ref16 = pyemv_cvn.MasterCardCVN16(imk, imk, imk, pan, psn)
    mk = arqc.icc_master_key(16, imk, pan, psn)
    ac = arqc.generate_ac(16, mk, tags)
    assert ac == ref16.generate_ac(**_pyemv_args(tags), cvr=cvr)
    assert arqc.generate_arpc(16, mk, ac, tags["9F36"], arc=arc) == ref16.generate_arpc(ac, arc)
    ref20 = pyemv_cvn.MasterCardCVN20(imk, imk, imk, pan, psn)
    ac = arqc.generate_ac(20, mk, tags)
    assert ac == ref20.generate_ac(**_pyemv_args(tags), cvr=cvr)
    mine = arqc.generate_arpc(20, mk, ac, tags["9F36"], arc=arc)
    assert mine == ref20.generate_arpc(ac, tags["9F36"], arc)


@settings(max_examples=25)
@given(mk=keys16, tags=tag_sets, flip=st.integers(0, 63))
def test_verify_rejects_any_flipped_bit(mk, tags, flip) -> None:
    ac = arqc.generate_ac(18, mk, tags)
    assert arqc.verify_arqc(18, mk, tags, ac)
    bad = bytearray(ac)
    bad[flip // 8] ^= 1 << (flip % 8)
    assert not arqc.verify_arqc(18, mk, tags, bytes(bad))


# --- bad input --------------------------------------------------------------------------------


def test_missing_tag_is_named() -> None:
    tags = dict(PBOC_TAGS)
    del tags["9F37"]
    with pytest.raises(CryptoError, match="9F37"):
        arqc.build_ac_data(18, tags)


def test_wrong_length_is_named() -> None:
    with pytest.raises(CryptoError, match=r"tag 9A: must be 3 bytes"):
        arqc.build_ac_data(18, PBOC_TAGS | {"9A": b"\x01"})


def test_short_iad_is_named() -> None:
    with pytest.raises(CryptoError, match="9F10"):
        arqc.build_ac_data(16, PBOC_TAGS | {"9F10": b"\x01\x02\x03"})


def test_unknown_cvn_and_missing_arpc_inputs() -> None:
    with pytest.raises(CryptoError, match="unknown CVN"):
        arqc.get_cvn(99)
    mk = bytes(16)
    with pytest.raises(CryptoError, match="CSU"):
        arqc.generate_arpc(18, mk, bytes(8), b"\0\1")
    with pytest.raises(CryptoError, match="ARC"):
        arqc.generate_arpc(10, mk, bytes(8), b"\0\1")
    with pytest.raises(CryptoError, match="ARQC"):
        arqc.arpc_method1(mk, bytes(7), b"00")
    with pytest.raises(CryptoError, match="proprietary"):
        arqc.arpc_method2(mk, bytes(8), bytes(4), bytes(9))


@given(
    tags=st.dictionaries(
        st.sampled_from([*arqc.TAG_LENGTHS, "9F10", "9f02", "XX"]), st.binary(max_size=40)
    ),
    cvn=st.sampled_from(sorted(arqc.CVNS)),
)
def test_fuzz_build_only_raises_crypto_error(tags, cvn) -> None:
    try:
        data = arqc.build_ac_data(cvn, tags)
    except CryptoError:
        return
    assert len(data) >= 37
