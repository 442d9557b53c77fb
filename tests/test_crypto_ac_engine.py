"""rig.crypto.ac_engine against the reference functions of rig.crypto.arqc / emv_keys / mac:
same MACs, session keys, ACs and ARPCs for every CVN on random inputs, the PBOC published
example, and the same CryptoError for bad input. All keys and PANs here are test values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.crypto import arqc
from rig.crypto.ac_engine import Alg3Key, CardAcEngine, ac_plan
from rig.crypto.emv_keys import ac_session_key
from rig.crypto.mac import mac_alg3
from rig.crypto.primitives import CryptoError

keys16 = st.binary(min_size=16, max_size=16)
cvns = st.sampled_from(sorted(arqc.CVNS))


def _fixed(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


@st.composite
def cvn_and_tags(draw: st.DrawFn) -> tuple[str, dict[str, bytes]]:
    """A CVN and a valid tag set for it (9F10 long enough for the CVR, at most 32 bytes)."""
    name = draw(cvns)
    spec = arqc.get_cvn(name)
    shortest = spec.cvr[1] if spec.cvr else 1
    tags = {tag: draw(_fixed(size)) for tag, size in arqc.TAG_LENGTHS.items()}
    tags["9F10"] = draw(st.binary(min_size=shortest, max_size=32))
    return name, tags


def _error(fn, *args, **kw) -> str:
    with pytest.raises(CryptoError) as info:
        fn(*args, **kw)
    return str(info.value)


def _outcome(fn, *args, **kw) -> tuple[str, object]:
    """('ok', result) or ('error', CryptoError message): to compare fast and reference."""
    try:
        return "ok", fn(*args, **kw)
    except CryptoError as exc:
        return "error", str(exc)


# ---- MAC algorithm 3 -------------------------------------------------------------------------


@settings(max_examples=300)
@given(key=keys16, data=st.binary(max_size=200), padding=st.sampled_from([1, 2]))
def test_mac_alg3_matches_reference(key: bytes, data: bytes, padding: int) -> None:
    assert Alg3Key(key).mac(data, padding) == mac_alg3(key, data, padding)


@pytest.mark.parametrize(
    ("data", "padding", "expected"),
    [
        (b"Now is the time for all ", 1, "A1C72E74EA3FA9B6"),
        (b"Now is the time for all ", 2, "E9086230CA3BE796"),
        (b"Now is the time for it", 1, "2E2B1428CC78254F"),
    ],
)
def test_mac_alg3_iso9797_1_annex_b(data: bytes, padding: int, expected: str) -> None:
    # Source: ISO/IEC 9797-1:2011 Annex B.4 (MAC algorithm 3), as in tests/test_crypto_mac.py.
    key = Alg3Key(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"))
    assert key.mac(data, padding) == bytes.fromhex(expected)


def test_one_key_serves_many_messages_in_any_order() -> None:
    """The kept contexts carry no state from one message (or one ECB call) to the next."""
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    fast = Alg3Key(key)
    messages = [bytes([n]) * n for n in range(0, 40, 3)]
    first = [fast.mac(d, 2) for d in messages]
    assert fast.encrypt(bytes(16)) == fast.encrypt(bytes(16))
    assert [fast.mac(d, 2) for d in reversed(messages)] == first[::-1]
    assert first == [mac_alg3(key, d, 2) for d in messages]


def test_mac_bad_key_padding_and_block_errors() -> None:
    assert _error(Alg3Key, bytes(8)) == _error(mac_alg3, bytes(8), b"x")
    assert _error(Alg3Key(bytes(16)).mac, b"x", 3) == _error(mac_alg3, bytes(16), b"x", 3)
    with pytest.raises(CryptoError, match="not a multiple of the 8-byte block"):
        Alg3Key(bytes(16)).encrypt(bytes(7))


# ---- session keys, AC and ARPC for every CVN --------------------------------------------------


@settings(max_examples=300)
@given(
    case=cvn_and_tags(),
    mk=keys16,
    arc=_fixed(2),
    csu=_fixed(4),
    prop=st.binary(max_size=8),
    flip=st.integers(0, 63),
)
def test_engine_matches_reference_for_every_cvn(
    case: tuple[str, dict[str, bytes]], mk: bytes, arc: bytes, csu: bytes, prop: bytes, flip: int
) -> None:
    name, tags = case
    engine = CardAcEngine(name, mk)
    atc, un = tags["9F36"], tags["9F37"]
    assert engine.icc_mk == mk
    assert engine.session_key(atc, un) == arqc.session_key(name, mk, atc, un)
    data, got_atc, got_un = engine.ac_input(tags)
    assert data == arqc.build_ac_data(name, tags)
    assert got_atc == atc
    assert got_un == (un if arqc.get_cvn(name).session == "mastercard" else None)
    ac = engine.generate_ac(tags)
    assert ac == arqc.generate_ac(name, mk, tags)
    assert engine.verify_arqc(tags, ac) and arqc.verify_arqc(name, mk, tags, ac)
    bad = bytearray(ac)
    bad[flip // 8] ^= 1 << (flip % 8)
    assert not engine.verify_arqc(tags, bytes(bad))
    kw = {"un": un, "arc": arc, "csu": csu, "proprietary": prop}
    arpc = engine.generate_arpc(ac, atc, **kw)
    assert arpc == arqc.generate_arpc(name, mk, ac, atc, **kw)
    key = engine.arpc_key(engine.session(atc, un))
    assert engine.arpc(key, ac, arc=arc, csu=csu, proprietary=prop) == arpc


@settings(max_examples=100)
@given(
    mk=keys16,
    atc=_fixed(2),
    un=_fixed(4),
    method=st.sampled_from(["none", "emv_csk", "mastercard", "pboc"]),
)
def test_every_session_method_matches_emv_keys(
    mk: bytes, atc: bytes, un: bytes, method: str
) -> None:
    name = next(c.name for c in arqc.CVNS.values() if c.session == method)
    assert CardAcEngine(name, mk).session_key(atc, un) == ac_session_key(method, mk, atc, un)


@settings(max_examples=60)
@given(
    cvn=cvns,
    imk=keys16,
    pan=st.text("0123456789", min_size=12, max_size=19),
    psn=st.one_of(st.none(), st.text("0123456789", min_size=1, max_size=2)),
)
def test_derive_matches_icc_master_key(cvn: str, imk: bytes, pan: str, psn: str | None) -> None:
    want = arqc.icc_master_key(cvn, imk, pan, psn)
    assert CardAcEngine.derive(cvn, imk, pan, psn).icc_mk == want
    assert CardAcEngine.derive(cvn, imk.hex().upper(), pan, psn).icc_mk == want


def test_every_registry_cvn_has_a_plan() -> None:
    for name, spec in arqc.CVNS.items():
        plan = ac_plan(name)
        assert plan.spec is spec and plan.size == len(spec.elements)
        assert ac_plan(spec.number) is plan


# Published worked example of PBOC 2.0 (China UnionPay) ARQC/ARPC, "Financial IC card ARQC and
# ARPC calculation methods and examples" (金融IC卡ARQC和ARPC计算方法和实例), republished e.g. on
# topic.alibabacloud.com and uzzz.org; the same vector as tests/test_crypto_arqc.py.
PBOC_IMK_AC = bytes.fromhex("F0C34A8124CEE0A91A0B034AA97D6EAC")
PBOC_TAGS = {
    k: bytes.fromhex(v)
    for k, v in {
        "9F02": "000000000001",
        "9F03": "000000000000",
        "9F1A": "0156",
        "95": "0080046000",
        "5F2A": "0156",
        "9A": "140701",
        "9C": "00",
        "9F37": "1E78EEBC",
        "82": "7D00",
        "9F36": "0240",
        "9F10": "07000103A04002010A010000001000D1F61152",
    }.items()
}


def test_pboc_published_example_through_the_engine() -> None:
    engine = CardAcEngine.derive("pboc", PBOC_IMK_AC, "6228000100001", "01")
    data, atc, _ = engine.ac_input(PBOC_TAGS)
    assert data.hex().upper() == (
        "000000000001000000000000015600800460000156140701001E78EEBC7D00024003A04002"
    )
    ac = engine.generate_ac(PBOC_TAGS)
    assert ac.hex().upper() == "5D016C91005E7CC2"
    assert engine.verify_arqc(PBOC_TAGS, bytes.fromhex("5D016C91005E7CC2"))
    assert not engine.verify_arqc(PBOC_TAGS, bytes.fromhex("5D016C91005E7CC3"))
    key = engine.arpc_key(engine.session(atc))
    assert engine.arpc(key, ac, arc=b"01").hex().upper() == "21415243527CE78F"
    assert engine.generate_arpc(ac, atc, arc=b"01").hex().upper() == "21415243527CE78F"


# ---- bad input: the reference's CryptoError ---------------------------------------------------


def _reference_input_error(name: str, tags: dict[str, bytes]) -> str:
    return _error(arqc.generate_ac, name, bytes(16), tags)


@pytest.mark.parametrize("name", sorted(arqc.CVNS))
def test_missing_tag_and_wrong_length_errors(name: str) -> None:
    engine = CardAcEngine(name, bytes(16))
    tags = dict(PBOC_TAGS)
    for tag in tags:
        missing = {k: v for k, v in tags.items() if k != tag}
        msg = _error(engine.generate_ac, missing)
        assert msg == _reference_input_error(name, missing)
        assert tag in msg and "missing" in msg
        for size in (0, len(tags[tag]) - 1, len(tags[tag]) + 1, 33):
            odd = tags | {tag: bytes(size)}
            try:
                want = arqc.generate_ac(name, bytes(16), odd)
            except CryptoError as exc:
                assert _error(engine.generate_ac, odd) == str(exc)
                assert _error(engine.ac_input, odd) == str(exc)
            else:
                assert engine.generate_ac(odd) == want, "a 9F10 length the CVN accepts"


@pytest.mark.parametrize("name", sorted(arqc.CVNS))
def test_short_empty_or_long_iad(name: str) -> None:
    engine = CardAcEngine(name, bytes(16))
    spec = arqc.get_cvn(name)
    for size in (0, 1, 3, 6, 7, 8, 32, 33):
        tags = PBOC_TAGS | {"9F10": bytes(range(size))}
        got = _outcome(engine.generate_ac, tags)
        assert got == _outcome(arqc.generate_ac, name, bytes(16), tags)
        valid = size >= spec.cvr[1] if spec.cvr else 1 <= size <= 32
        assert got[0] == ("ok" if valid else "error"), (size, got)


def test_odd_mappings_and_value_types_behave_as_reference() -> None:
    """Off the plain path (not a dict, lower-case tags, bytearray, non-bytes) the engine answers
    exactly as build_ac_data does."""
    mk = bytes(range(16))
    for name in sorted(arqc.CVNS):
        engine = CardAcEngine(name, mk)
        want = arqc.generate_ac(name, mk, PBOC_TAGS)
        lower = {k.lower(): v for k, v in PBOC_TAGS.items()}
        assert engine.generate_ac(lower) == want == arqc.generate_ac(name, mk, lower)
        as_bytearray = {k: bytearray(v) for k, v in PBOC_TAGS.items()}
        assert engine.generate_ac(as_bytearray) == want
        mapping = type("M", (dict,), {})(PBOC_TAGS)
        assert engine.generate_ac(mapping) == want
        for value in (memoryview(PBOC_TAGS["9A"]), "140701", None):
            odd = PBOC_TAGS | {"9A": value}
            assert _error(engine.generate_ac, odd) == _reference_input_error(name, odd)


def test_session_and_arpc_input_errors_match_reference() -> None:
    mk = bytes(range(16))
    for name in sorted(arqc.CVNS):
        engine = CardAcEngine(name, mk)
        method = arqc.get_cvn(name).session
        for atc, un in ((b"\x01", b"1234"), (b"\x00\x01", b"123"), (b"\x00\x01", None)):
            try:
                want = arqc.session_key(name, mk, atc, un)
            except CryptoError as exc:
                assert _error(engine.session_key, atc, un) == str(exc)
            else:
                assert engine.session_key(atc, un) == want, method
        assert engine.session_key(bytearray(b"\x00\x07"), bytearray(b"1234")) == (
            arqc.session_key(name, mk, b"\x00\x07", b"1234")
        )
        ac = bytes(8)
        for kw in (
            {},
            {"arc": b"0", "csu": b"123"},
            {"arc": b"00", "csu": b"1234", "proprietary": bytes(9)},
        ):
            args = (ac, b"\x00\x01")
            got = _outcome(engine.generate_arpc, *args, un=b"1234", **kw)
            assert got == _outcome(arqc.generate_arpc, name, mk, *args, un=b"1234", **kw)
            assert got[0] == "error" or kw.get("proprietary"), (name, kw)
        args = (bytes(7), b"\x00\x01")
        assert _error(engine.generate_arpc, *args, arc=b"00", csu=bytes(4)) == (
            _error(arqc.generate_arpc, name, mk, *args, arc=b"00", csu=bytes(4))
        )


def test_unknown_cvn_and_bad_master_key() -> None:
    assert _error(CardAcEngine, 99, bytes(16)) == _error(arqc.get_cvn, 99)
    assert "ICC master key" in _error(CardAcEngine, "visa-10", bytes(8))
    assert _error(CardAcEngine.derive, "visa-10", bytes(16), "12AB", "00") == _error(
        arqc.icc_master_key, "visa-10", bytes(16), "12AB", "00"
    )
