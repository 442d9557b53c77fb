"""Messages of the posrig dialect: encode/decode, builders, responses, DE55, masking, fuzzing.

Test PANs are the public EMVCo/Visa test card 4761739001010010 (test data only).
"""

from __future__ import annotations

import contextlib
from datetime import datetime

import iso8583
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.iso8583 import messages as m
from rig.iso8583.spec import DATA_FIELDS, SPEC

TEST_PAN = "4761739001010010"  # test card, not a real account
NOW = datetime(2024, 3, 5, 14, 30, 15)
CARD = {"stan": 42, "terminal_id": "TERM0001", "merchant_id": "MERCHANT0000001", "now": NOW}


def _value(key: str) -> st.SearchStrategy[str]:
    spec = SPEC[key]
    fmt, n, var = spec["fmt"], spec["max_len"], spec["len_type"]
    if fmt[0] in "nz":
        alphabet = "0123456789" + ("D" if fmt[0] == "z" else "")
        return st.text(alphabet, min_size=0 if var else n, max_size=n)
    if fmt[0] == "b":
        size = st.integers(0, min(n, 40)) if var else st.just(n)
        return size.flatmap(lambda k: st.binary(min_size=k, max_size=k)).map(
            lambda b: b.hex().upper()
        )
    top = min(n, 60) if var else n
    return st.text(
        st.characters(min_codepoint=32, max_codepoint=126), min_size=0 if var else n, max_size=top
    )


docs = st.fixed_dictionaries(
    {"t": st.sampled_from(["0100", "0200", "0210", "0400", "0800", "0810"])},
    optional={k: _value(k) for k in DATA_FIELDS},
)


def _strip(doc):
    return {k: v for k, v in doc.items() if k not in ("p", "1")}


@given(docs)
def test_round_trip_any_document(doc):
    assert _strip(m.decode(m.encode(doc))) == doc


@given(st.binary(max_size=300))
def test_decode_fuzz_raises_only_iso8583error(data):
    try:
        doc = m.decode(data)
    except m.Iso8583Error as e:
        assert e.field is not None or e.position is not None or str(e)
    else:
        assert m.decode(m.encode(doc)) == doc


@given(docs, st.data())
def test_decode_fuzz_mutated_messages(doc, data):
    raw = bytearray(m.encode(doc))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    with contextlib.suppress(m.Iso8583Error):
        m.decode(bytes(raw[:cut]))


def test_encode_does_not_mutate_and_equals_raw_pyiso8583():
    doc = m.purchase(amount=1234, pan=TEST_PAN, **CARD)
    before = dict(doc)
    raw = m.encode(doc)
    assert doc == before
    assert raw == bytes(iso8583.encode(dict(doc), SPEC)[0])


def test_encode_errors_name_the_field():
    with pytest.raises(m.Iso8583Error, match=r"field 4 \(Amount, Transaction\)") as e:
        m.encode({"t": "0200", "4": "123"})
    assert e.value.field == "4"
    assert "n12" in str(e.value)
    with pytest.raises(m.Iso8583Error, match="field 5"):
        m.encode({"t": "0200", "5": "1"})
    with pytest.raises(m.Iso8583Error, match="not str"):
        m.encode({"t": "0200", "4": 1234})


def test_decode_errors_name_field_and_position():
    raw = m.encode(m.purchase(amount=1, pan=TEST_PAN, **CARD))
    with pytest.raises(m.Iso8583Error) as e:
        m.decode(raw[:-1])
    assert e.value.field == "49" and e.value.position == len(raw) - 2
    undefined = bytes.fromhex("0200") + bytes.fromhex("0800000000000000") + b"\x01"
    with pytest.raises(m.Iso8583Error, match="does not define") as e:
        m.decode(undefined)
    assert e.value.field == "5" and e.value.position == 10
    with pytest.raises(m.Iso8583Error, match="non-decimal"):
        m.decode(bytes.fromhex("0200") + bytes.fromhex("2000000000000000") + b"\x00\x0a\x00")


def test_builders_mti_and_processing_codes():
    assert m.sign_on(**CARD)["70"] == "001"
    assert m.echo_test(**CARD)["t"] == "0800"
    kx = m.key_exchange(**CARD)
    assert kx["70"] == "161" and m.private_decode(kx["48"]) == {"K1": "PIN"}
    assert (m.authorization(amount=5, **CARD)["t"], m.authorization(amount=5, **CARD)["3"]) == (
        "0100",
        "000000",
    )
    pre = m.pre_authorization(amount=5, **CARD)
    assert (pre["t"], pre["3"], pre["25"]) == ("0100", "030000", "06")
    assert m.purchase(amount=5, **CARD)["3"] == "000000"
    assert m.refund(amount=5, **CARD)["3"] == "200000"
    bal = m.balance_inquiry(**CARD)
    assert bal["3"] == "310000" and "4" not in bal
    assert m.advice(amount=5, auth_id="A1B2C3", **CARD)["38"] == "A1B2C3"
    p = m.purchase(amount=1234, **CARD)
    assert (p["4"], p["7"], p["11"], p["12"], p["13"]) == (
        "000000001234",
        "0305143015",
        "000042",
        "143015",
        "0305",
    )
    for doc in (m.sign_on(**CARD), p, pre, bal, kx):
        assert _strip(m.decode(m.encode(doc))) == doc


def test_reversal_points_at_the_original():
    orig = m.purchase(amount=999, pan=TEST_PAN, acquirer_id="12345", **CARD)
    rev = m.reversal(orig, reason="98", now=NOW)
    assert rev["t"] == "0400"
    assert rev["90"] == "0200" + "000042" + "0305143015" + "00000012345" + "0" * 11
    assert (rev["2"], rev["4"], rev["39"]) == (TEST_PAN, "000000000999", "98")
    rep = m.reversal_repeat(rev)
    assert rep["t"] == "0401" and rev["t"] == "0400"
    assert m.response_to(rep, "00")["t"] == "0410"
    with pytest.raises(m.Iso8583Error, match="field 11"):
        m.reversal({"t": "0200", "41": "T"})


def test_reconciliation_totals():
    totals = m.Totals(sale_count=3, sale_amount=4500, refund_count=1, refund_amount=100)
    rec = m.reconciliation(batch=7, totals=totals, **CARD)
    assert rec["t"] == "0500" and rec["60"] == "000007"
    assert rec["63"] == "0003000000004500" + "0001000000000100"
    assert m.Totals.decode(m.decode(m.encode(rec))["63"]) == totals
    with pytest.raises(m.Iso8583Error, match="32 digits"):
        m.Totals.decode("12")


@pytest.mark.parametrize(
    ("mti", "resp"),
    [
        ("0100", "0110"),
        ("0200", "0210"),
        ("0220", "0230"),
        ("0400", "0410"),
        ("0500", "0510"),
        ("0800", "0810"),
    ],
)
def test_response_mti(mti, resp):
    req = {**m.purchase(amount=10, pan=TEST_PAN, **CARD), "t": mti}
    r = m.response_to(req, "00", auth_id="123456", rrn="000000000042")
    assert r["t"] == resp and r["39"] == "00" and r["38"] == "123456"
    for key in ("2", "3", "4", "7", "11", "12", "13", "41", "42", "49"):
        assert r[key] == req[key]
    assert "22" in r and "55" not in r
    assert m.decode(m.encode(r))["39"] == "00"


def test_response_to_rejects_responses():
    with pytest.raises(m.Iso8583Error, match="no response defined for MTI '0210'"):
        m.response_to({"t": "0210"}, "00")


def test_response_codes_table():
    for rc in (
        "00",
        "05",
        "12",
        "13",
        "14",
        "30",
        "51",
        "54",
        "55",
        "57",
        "61",
        "63",
        "75",
        "91",
        "94",
        "96",
    ):
        assert m.RESPONSE_CODES[rc]


def test_de55_round_trip_and_errors():
    tags = {0x9F26: bytes.fromhex("1122334455667788"), 0x9F27: b"\x80", 0x95: bytes(5)}
    hexed = m.de55_encode(tags)
    assert hexed.startswith("9F26081122334455667788")
    assert m.de55_decode(hexed) == tags
    assert m.de55_decode(bytes.fromhex(hexed)) == tags
    with pytest.raises(m.Iso8583Error, match="DE55 is not BER-TLV") as e:
        m.de55_decode("9F2608112233")
    assert e.value.field == "55" and e.value.position is not None


def test_private_subfields():
    text = m.private_encode({"01": "CPM", "03": "ORDER-1"})
    assert text == "01003CPM03007ORDER-1"
    assert m.private_decode(text) == {"01": "CPM", "03": "ORDER-1"}
    with pytest.raises(m.Iso8583Error, match="runs past the end") as e:
        m.private_decode("01009CPM")
    assert e.value.position == 0


@given(st.text(max_size=40))
def test_private_decode_fuzz(text):
    with contextlib.suppress(m.Iso8583Error):
        m.private_decode(text)


def test_mask_removes_sensitive_data():
    doc = m.purchase(
        amount=5,
        pan=TEST_PAN,
        track2=TEST_PAN + "D2212201",
        track1="B4761739001010010^TEST/CARD^2212201",
        pin_block="0123456789ABCDEF",
        mac="0011223344556677",
        icc={
            0x57: bytes.fromhex("4761739001010010D2212F"),
            0x5A: bytes.fromhex(TEST_PAN),
            0x9F26: bytes(8),
        },
        additional_data=m.private_encode({"01": "CPM", "02": "hQVDUFYwMQ=="}),
        **CARD,
    )
    masked = m.mask(doc)
    assert masked["2"] == "476173******0010"
    for key in ("35", "45", "52", "64"):
        assert key not in masked
    assert m.de55_decode(masked["55"]) == {0x9F26: bytes(8)}
    assert m.private_decode(masked["48"])["02"] == "[removed]"
    assert doc["2"] == TEST_PAN
    assert m.mask({"t": "0200", "55": "ZZ"})["55"].startswith("[unparsed")
