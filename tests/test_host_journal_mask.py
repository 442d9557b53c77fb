"""The journal's one-pass masking: same result as `messages.mask` + the evidence redactor on
ISO documents, PAN/track never kept, TR-31 key blocks kept only in responses. TEST PANs only."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rig.emv import tlv
from rig.evidence.redact import redact_value
from rig.host.journal_mask import is_tr31_block, mask_document, scrub_icc
from rig.iso8583 import messages as m

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
