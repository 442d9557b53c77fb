"""The host's fast ISO 8583 path agrees with rig.iso8583.messages on every input (hypothesis)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rig.emv.tlv import tag_to_hex
from rig.host.codec import fast_decode, fast_encode
from rig.host.flows_card import icc_tags
from rig.host.loadgen import DEFAULT_PROFILE, chip_authorization
from rig.iso8583.messages import Iso8583Error, de55_decode, decode, encode, response_to
from rig.iso8583.spec import SPEC
from rig.profiles import load_all

ROOT = Path(__file__).resolve().parent.parent
FIELDS = sorted((k for k in SPEC if k.isdigit() and k != "1"), key=int)


def _outcome(fn, arg):
    try:
        return ("ok", fn(arg))
    except Iso8583Error as e:
        return ("error", str(e), e.field, e.position)


def _same(fast, slow, arg) -> None:
    a, b = _outcome(fast, arg), _outcome(slow, arg)
    assert a == b
    if a[0] == "ok" and isinstance(a[1], dict):
        assert list(a[1]) == list(b[1])  # same key order: the journal's JSON depends on it


def _value(key: str) -> st.SearchStrategy[str]:
    spec = SPEC[key]
    top = spec["max_len"]
    if spec.get("len_count") == "nibbles":
        alphabet = "0123456789D" if key == "35" else "0123456789"
        exact = st.text(alphabet, min_size=top, max_size=top)
        return exact if not spec["len_type"] else st.text(alphabet, max_size=top)
    if spec["data_enc"] == "b":
        size = st.integers(0 if spec["len_type"] else top, top)
        return size.flatmap(lambda n: st.binary(min_size=n, max_size=n)).map(
            lambda b: b.hex().upper()
        )
    alphabet = st.characters(min_codepoint=32, max_codepoint=126)
    if spec["len_type"]:
        return st.text(alphabet, max_size=min(top, 60))
    return st.text(alphabet, min_size=top, max_size=top)


_docs = st.builds(
    lambda mti, fields: {"t": mti, **fields},
    st.sampled_from(["0100", "0110", "0200", "0210", "0400", "0410", "0800", "0810"]),
    st.dictionaries(st.sampled_from(FIELDS), st.just(None), max_size=12),
).flatmap(
    lambda d: st.fixed_dictionaries({"t": st.just(d["t"]), **{k: _value(k) for k in d if k != "t"}})
)
_noise = st.text(alphabet="0123456789ABCDEFabcdefGD \u00e9", max_size=12)


def _chip_doc() -> dict[str, str]:
    profiles = load_all(ROOT / "cardprofiles")
    return chip_authorization(profiles[DEFAULT_PROFILE], stan=42, terminal_id="TERM0001")


def test_chip_request_and_response_match_the_core() -> None:
    """The load generator's request and a full response: same document, key order and bytes."""
    doc = _chip_doc()
    raw = encode(doc)
    assert fast_encode(doc) == raw
    _same(fast_decode, decode, raw)
    resp = response_to(decode(raw), "00", **{"38": "123456", "37": "612318000042"})
    resp["55"] = "910A0011223344556677883030"
    resp["90"] = "0" * 42  # secondary bitmap
    assert fast_encode(resp) == encode(resp)
    _same(fast_decode, decode, encode(resp))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_docs)
def test_valid_documents_round_trip_identically(doc: dict[str, str]) -> None:
    _same(fast_encode, encode, doc)
    try:
        raw = encode(doc)
    except Iso8583Error:
        return
    _same(fast_decode, decode, raw)


@settings(max_examples=400, deadline=None)
@given(_docs, st.sampled_from([*FIELDS, "t", "p", "1", "65", "h", "x"]), _noise)
def test_bad_values_give_the_same_error(doc: dict[str, str], key: str, value: str) -> None:
    doc = dict(doc)
    doc[key] = value
    _same(fast_encode, encode, doc)


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_mutated_bytes_give_the_same_document_or_error(data: st.DataObject) -> None:
    raw = bytearray(encode(_CHIP))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw) + 3))
    frame = bytes(raw[:cut]) + data.draw(st.binary(max_size=3))
    _same(fast_decode, decode, frame)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_give_the_same_document_or_error(raw: bytes) -> None:
    _same(fast_decode, decode, raw)


_CHIP = _chip_doc()


def _core_icc(de55: str):
    try:
        return ("ok", {tag_to_hex(t): v for t, v in de55_decode(de55).items()})
    except Iso8583Error as e:
        return ("error", str(e))


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_icc_fast_path_matches_the_core_decoder(data: st.DataObject) -> None:
    raw = bytearray(bytes.fromhex(_CHIP["55"]))
    for _ in range(data.draw(st.integers(0, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    de55 = bytes(raw[: data.draw(st.integers(0, len(raw)))]).hex().upper()
    try:
        got = ("ok", icc_tags(de55))
    except Iso8583Error as e:
        got = ("error", str(e))
    assert got == _core_icc(de55)
