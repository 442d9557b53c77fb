"""The journal's one-pass masking: same result as `messages.mask` + the evidence redactor on
ISO documents, PAN/track never kept, TR-31 key blocks kept only in responses. TEST PANs only."""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rig.emv import tlv
from rig.evidence.redact import redact_text, redact_value
from rig.host.journal_mask import (
    _plain,
    is_tr31_block,
    mask_document,
    mask_pair_json,
    scrub_icc,
)
from rig.iso8583 import messages as m
from rig.iso8583.spec import SPEC

PAN = "4761739001010010"  # TEST PAN (Visa test card range)


def _old(doc):
    return redact_value(dict(m.mask(doc)))


def test_chip_request_matches_the_old_two_pass_masking():
    icc = m.de55_encode({0x5A: bytes.fromhex(PAN), 0x57: bytes.fromhex(PAN + "D2512201"),
                         0x9F26: bytes(8), 0x9F36: b"\x00\x01"})  # fmt: skip
    doc = {"t": "0200", "2": PAN, "4": "000000001000", "35": PAN + "D2512201", "52": "00" * 8,
           "43": f"SHOP {PAN} TOWN", "55": icc, "90": "0" * 42}  # fmt: skip
    out = mask_document(doc)
    assert out == _old(doc)
    text = repr(out)
    assert PAN not in text and "35" not in out and "52" not in out


def test_icc_without_sensitive_tags_is_kept_as_is():
    icc = m.de55_encode({0x9F26: bytes(8), 0x91: bytes(10)})
    assert scrub_icc(icc) is icc
    assert scrub_icc("5A08") == "[unparsed ICC data removed]"


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([0x5A, 0x57, 0x56, 0x9F6B, 0x9F26, 0x9F36, 0x82, 0x95, 0x9F10, 0xDF8101]),
        st.binary(max_size=140),
        max_size=6,
    )
)
def test_icc_scrub_equals_mask_on_valid_tlv(tags):
    value = tlv.encode_many(tags.items()).hex().upper()
    assert scrub_icc(value) == m.mask({"55": value})["55"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_icc_scrub_never_keeps_a_pan_tag(raw):
    out = scrub_icc(raw.hex().upper())
    if out != "[unparsed ICC data removed]":
        tags = m.de55_decode(out) if out else {}
        assert not {0x5A, 0x57, 0x56, 0x9F6B} & set(tags)


def test_k2_kept_only_when_a_tr31_block_in_a_response():
    block = "B0080P0TE00N0000" + "AB" * 32
    assert is_tr31_block(block)
    resp = {"t": "0810", "39": "00", "48": m.private_encode({"K1": "PIN", "K2": block})}
    kept = m.private_decode(mask_document(resp, response=True)["48"])
    assert kept["K2"] == block
    assert m.private_decode(mask_document(resp)["48"])["K2"] == "[removed]"
    clear = {"t": "0810", "48": m.private_encode({"K2": "00112233445566778899AABBCCDDEEFF"})}
    assert m.private_decode(mask_document(clear, response=True)["48"])["K2"] == "[removed]"


def test_non_iso_documents_use_the_generic_redactor():
    out = mask_document({"pin": "1234", "note": f"card {PAN}"})
    assert out["pin"] == "[redacted]" and PAN not in out["note"]


# ---- the fast path against the generic one ---------------------------------------------------
# Reference: `messages.mask`, then the evidence redactor on every value, except DE48, which is
# redacted subfield by subfield (a whole-string pass misses a PAN right after a numeric subfield
# header: "01016" + PAN is a 21-digit run), and keeps a TR-31 K2 block in responses.


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str(-total % 10)


_pans = st.builds(_luhn_complete, st.from_regex(r"[1-9][0-9]{11,17}", fullmatch=True))
_card_digits = st.one_of(_pans, st.from_regex(r"[0-9]{12,19}", fullmatch=True))  # any Luhn
_track2 = st.builds(
    lambda p, sep, rest: f";{p}{sep}{rest}?",
    _card_digits,
    st.sampled_from("=D"),
    st.from_regex(r"[0-9]{4,12}", fullmatch=True),
)
_piece = st.one_of(
    _pans,
    _track2,
    _card_digits.map(lambda p: f"%B{p}^TEST/CARD^2512201000?"),
    st.from_regex(r"[0-9]{1,24}", fullmatch=True),
    st.text(alphabet='0123456789ABCDEFDdB=^;%?* ,"\\\n\té', max_size=12),
    st.sampled_from(["000000000100", "0" * 30, "4" * 19, "B0080P0TE00N0000" + "AB" * 32]),
)
_text = st.lists(_piece, max_size=4).map("".join)
_TR31 = "B0080P0TE00N0000" + "AB" * 32
_ICC_TAGS = [0x5A, 0x57, 0x56, 0x9F6B, 0x9F26, 0x9F36, 0x82, 0x95, 0x9F10, 0xDF8101, 0x5F34, 0x70]
_BAD_ICC = ["00", "FF", "0000", "FF00", "9F0281050000000000", "1F808080800100", "9F02", "820100"]


@st.composite
def _icc(draw):
    """DE55: canonical TLV with and without PAN/track tags, and the non-canonical kinds."""
    value = st.one_of(
        st.binary(max_size=20),
        _pans.map(lambda p: bytes.fromhex(p + "F" * (len(p) % 2))),
        st.binary(min_size=128, max_size=260),
    )
    items = draw(st.lists(st.tuples(st.sampled_from(_ICC_TAGS), value), max_size=6))
    parts = [tlv.encode(t, v).hex().upper() for t, v in items]
    kind = draw(st.integers(0, 7))
    if kind == 1:
        parts.insert(draw(st.integers(0, len(parts))), draw(st.sampled_from(_BAD_ICC)))
    elif kind == 2 and parts:
        parts.append(parts[0])  # a repeated tag
    text = "".join(parts)
    if kind == 3:
        return text.lower()
    if kind == 4:
        return " ".join(text[i : i + 2] for i in range(0, len(text), 2))
    return draw(_text) if kind == 5 else text


@st.composite
def _private(draw):
    ids = st.sampled_from(["01", "02", "03", "K1", "K2", "K3", "9Z"])
    value = st.one_of(_text, _pans, st.just(_TR31), st.just("B0080P0TE00N0000" + "12" * 32))
    sub = draw(st.dictionaries(ids, value.map(lambda v: v[:999]), max_size=4))
    kind = draw(st.integers(0, 7))
    return draw(_text) if kind == 1 else "!!003abc" if kind == 2 else m.private_encode(sub)


# DE62 subfield shapes as docs/iso8583.md lists them (written out here, apart from the code).
_PREPAID_SHAPES = {
    "01": r"[0-9A-Fa-f]{1,32}", "02": r"[0-9A-Fa-f]{4}", "03": r"-?[0-9]{11,12}",
    "04": r"[A-Z]{1,16}", "05": r"[0-9A-Fa-f]{8}", "06": r"[0-9A-Fa-f]{8}",
    "07": r"[0-9A-Fa-f]{8}", "08": r"[0-9A-Fa-f]{8}", "09": r"[0-9A-Fa-f]{8}",
    "10": r"[0-9A-Fa-f]{12}", "11": r"[0-9]{14}",
}  # fmt: skip
_hexes = st.text("0123456789ABCDEF", min_size=1, max_size=16)


@st.composite
def _prepaid(draw):
    """DE62: well-formed subfields (digit runs that cross subfields and may pass Luhn), PANs in
    odd subfields, and unparsable text."""
    ids = st.sampled_from([*_PREPAID_SHAPES, "12", "ZZ"])
    value = st.one_of(_hexes, _pans, st.from_regex(r"[0-9]{14}", fullmatch=True), _text)
    sub = draw(st.dictionaries(ids, value.map(lambda v: v[:999]), max_size=6))
    kind = draw(st.integers(0, 7))
    return draw(_text) if kind == 1 else "01!abc" if kind == 2 else m.private_encode(sub)


_FIELDS = [k for k in SPEC if k not in ("h",)]


@st.composite
def _iso_doc(draw, keys=_FIELDS):
    doc = {}
    for key in draw(st.lists(st.sampled_from(keys), unique=True, max_size=14)):
        value = {"55": _icc(), "48": _private(), "62": _prepaid()}.get(key, _text)
        doc[key] = draw(value)
    return doc


_other_doc = st.one_of(
    st.dictionaries(
        st.sampled_from(["2", "55", "pin", "note", "999", "t"]),
        st.one_of(_text, st.integers(), st.none(), st.binary(max_size=10)),
        max_size=5,
    ),
    st.dictionaries(st.sampled_from(["pin", "note", "2", "48", "Key", "7"]), _text, max_size=5),
)


def _reference_private(original: str, masked: str, response: bool) -> str:
    if masked.startswith("[unparsed"):
        return masked
    sub = m.private_decode(masked)
    block = m.private_decode(original).get("K2", "")
    for sid, item in sub.items():
        keep = sid == "K2" and response and is_tr31_block(block)
        sub[sid] = block if keep else redact_text(item)
    return m.private_encode(sub)


def _reference_prepaid(masked: str) -> str:
    try:
        sub = m.private_decode(masked, "62")
    except m.Iso8583Error:
        return "[unparsed private data removed]"
    for sid, item in sub.items():
        shape = _PREPAID_SHAPES.get(sid)
        if shape is None or not re.fullmatch(shape, item):
            sub[sid] = redact_text(item)
    return m.private_encode(sub)


def _reference(doc, response=False):
    """The generic, obviously-correct journal copy of `doc` (see the comment above)."""
    if not all(isinstance(v, str) for v in doc.values()):
        return redact_value(dict(doc))
    masked = m.mask(doc)
    if not all(k in ("t", "p") or k.isdigit() for k in doc):
        return redact_value(dict(masked))
    return {
        k: _reference_private(doc[k], v, response)
        if k == "48"
        else _reference_prepaid(v)
        if k == "62"
        else redact_text(v)
        for k, v in masked.items()
    }


def _outcome(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except Exception as e:  # both paths must fail the same way
        return type(e).__name__


def _json(doc):
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_iso_doc(), _iso_doc(["2", "55", "48", "62", "43", "35"]), _other_doc),
       st.booleans())  # fmt: skip
def test_masking_equals_the_generic_path(doc, response):
    expected = _outcome(_reference, doc, response)
    got = _outcome(mask_document, doc, response=response)
    assert got == expected
    if isinstance(got, dict):
        assert list(got) == list(expected)
        assert "35" not in got and "52" not in got and "45" not in got


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_iso_doc(), _iso_doc(), st.lists(st.sampled_from(["2", "3", "4", "55", "48", "62", "43"])))
def test_pair_and_its_json_equal_the_generic_path(request, response, echoed):
    for key in echoed:  # a response echoes the request's very string objects
        if key in request:
            response[key] = request[key]
    outcome = _outcome(mask_pair_json, request, response)
    expected = _outcome(lambda: (_reference(request), _reference(response, True)))
    if isinstance(outcome, str):
        assert outcome == expected
        return
    masked_request, masked_response, request_json, response_json = outcome
    assert (masked_request, masked_response) == expected
    assert list(masked_request) == list(expected[0])
    assert list(masked_response) == list(expected[1])
    for doc, text in ((masked_request, request_json), (masked_response, response_json)):
        assert text is None or text == _json(doc)


def test_a_pan_after_a_numeric_subfield_header_is_masked():
    doc = {"t": "0200", "48": m.private_encode({"01": PAN})}
    assert PAN in redact_value(m.mask(doc))["48"]  # what a whole-string pass would keep
    assert m.private_decode(mask_document(doc)["48"])["01"] == "476173******0010"


@settings(max_examples=800, deadline=None)
@given(st.lists(st.one_of(_text, st.text(max_size=30)), max_size=6),
       st.lists(_text, max_size=3))  # fmt: skip
def test_plain_scan_never_skips_work(values, more):
    if _plain(values, more):
        for v in (*values, *more):
            assert redact_text(v) == v
            assert _json(v) == f'"{v}"'


def test_plain_scan_finds_each_kind_of_sensitive_text():
    for v in (PAN, f"x{PAN}y", f";{PAN}=2512", f"%B{PAN}^A/B^2512", "a\nb", 'a"b', "a\\b", "é"):
        assert not _plain([v]) and not _plain(["0" * 12, v])
    for v in ("0" + PAN[1:], PAN + "0" * 5, "000000000100", "476173******0010", PAN[:-1] + "1"):
        assert _plain([v]), v


@settings(max_examples=400, deadline=None)
@given(st.lists(_icc(), min_size=1, max_size=4))
def test_icc_layouts_learnt_never_change_the_result(values):
    for value in values * 2:  # the second round matches layouts learnt in the first
        assert _outcome(scrub_icc, value) == _outcome(lambda v=value: m.mask({"55": v})["55"])


def test_icc_that_mask_would_re_encode_is_re_encoded():
    ok = "9F36020001" + "9F2608" + "11" * 8
    for value in (
        "0000" + ok, ok + "00", "9F3602" + "0001" + "FF00" + "9F2608" + "11" * 8,  # padding
        "9F368102" + "0001", "9F36820002" + "0001",  # non-minimal lengths
        ok.lower(), "9F 36 02 00 01", ok + "9F36020002",  # case, blanks, a repeated tag
        "1F8080808001" + "00", "9F36800001", "9F3684000000020001",  # unparsable
        "5A08" + PAN + "9F36020001", "70" + "0A" + "5A08" + PAN,  # PAN tag, PAN in a template
    ):  # fmt: skip
        expected = _outcome(lambda v=value: m.mask({"55": v})["55"])
        assert _outcome(scrub_icc, value) == expected, value
        assert scrub_icc(value) != value or value == expected
    assert scrub_icc(ok) is ok and scrub_icc("") == ""


def test_response_pan_is_masked_from_its_own_value():
    other = "5413339000000028"  # TEST PAN (cardprofiles/mc-debit-cda.yaml)
    request = {"t": "0100", "2": PAN, "55": "9F360200019F2608" + "11" * 8}
    for pan in (PAN, other, "".join(PAN)):  # same object, another PAN, an equal copy
        response = {"t": "0110", "2": pan, "39": "00"}
        _, masked, _, text = mask_pair_json(request, response)
        assert masked["2"] == m.mask_pan(pan) and text == _json(masked)


def test_prepaid_subfields_keep_their_layout_and_pans_elsewhere_are_masked():
    # A purchase record whose TAC, the next subfield's header and value form a 15-digit run that
    # passes Luhn: a whole-string pass masked it across three subfields and broke the layout.
    record = "01016100000000000000104008PURCHASE070086F9DF567080080000000B100121122334455661101420261125115900"  # noqa: E501
    assert redact_text(record) != record, "the whole-string redactor does mask this run"
    doc = {"t": "0220", "62": record}
    assert mask_document(doc)["62"] == record
    subs = {"01": "1000000000000001", "04": PAN, "12": PAN, "11": "20261125115900"}
    masked = m.private_decode(mask_document({"t": "0200", "62": m.private_encode(subs)})["62"])
    assert masked["01"] == subs["01"] and masked["11"] == subs["11"]
    assert masked["04"] == masked["12"] == m.mask_pan(PAN)
    assert mask_document({"t": "0200", "62": "99x"})["62"] == "[unparsed private data removed]"
