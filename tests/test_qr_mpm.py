"""EMVCo merchant-presented QR: published vectors, build/parse round trips, validation, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.qr import mpm

# EMV QRCPS Merchant-Presented Mode v1.1, Annex (example payload), CRC A13A.
SPEC_EXAMPLE = (
    "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678"
    "520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京540523.72"
    "53031565502016233030412340603***0708A60086670902ME91320016A0112233449988770708"
    "123456786304A13A"
)
# Third-party example from the dongri/emv-qrcode README (github.com/dongri/emv-qrcode), CRC 3FE6.
DONGRI_EXAMPLE = (
    "0002010102121516ABCDEF123456789052045311530339254039995802JP5906DONGRI6005TOKYO"
    "62240104hoge0504fuga0704piyo63043FE6"
)


def test_crc16_ccitt_false_check_value():
    # CRC catalogue (reveng) CRC-16/IBM-3740 a.k.a. CCITT-FALSE: check("123456789") = 0x29B1.
    assert mpm.crc16_ccitt_false(b"123456789") == 0x29B1


def test_spec_example_crc_and_fields():
    assert mpm.crc_of(SPEC_EXAMPLE[:-4]) == "A13A"
    assert mpm.crc_ok(SPEC_EXAMPLE)
    assert mpm.validate(SPEC_EXAMPLE) == []
    d = mpm.to_dict(mpm.parse(SPEC_EXAMPLE))
    assert d["29"] == {"00": "D15600000000", "05": "A93FO3230Q"}
    assert d["64"] == {"00": "ZH", "01": "最佳运输", "02": "北京"}
    assert d["62"] == {"03": "1234", "06": "***", "07": "A6008667", "09": "ME"}
    assert (d["54"], d["53"], d["58"], d["59"], d["60"]) == (
        "23.72",
        "156",
        "CN",
        "BEST TRANSPORT",
        "BEIJING",
    )


def test_build_reproduces_spec_example_in_its_order():
    objs = mpm.parse(SPEC_EXAMPLE)
    fields = {o.id: (mpm.to_dict(o.children) if o.children else o.value) for o in objs}
    assert mpm.build(fields) == SPEC_EXAMPLE


def test_third_party_example():
    assert mpm.crc_ok(DONGRI_EXAMPLE)
    assert mpm.validate(DONGRI_EXAMPLE) == []


def _problems(payload):
    return {(p.id, p.message.split(" ")[0]) for p in mpm.validate(payload)}


def test_validate_reports_every_problem():
    body = mpm.build(
        {
            "01": "13",
            "26": {"01": "x"},
            "52": "41A1",
            "53": "RMB",
            "54": "1,00",
            "58": "cn",
            "59": "A" * 26,
        }
    )
    probs = mpm.validate(body)
    ids = [p.id for p in probs]
    for expected in ("01", "26", "52", "53", "54", "58", "59", "60"):
        assert expected in ids, (expected, probs)
    assert all(p.fix for p in probs)
    assert probs == sorted(probs, key=lambda p: p.position)


def test_validate_crc_and_order():
    wrong = SPEC_EXAMPLE[:-4] + "0000"
    (p,) = mpm.validate(wrong)
    assert p.id == "63" and "A13A" in p.fix and p.position == len(SPEC_EXAMPLE) - 4
    lower = mpm.build(
        {"26": {"00": "X"}, "52": "5411", "53": "156", "58": "CN", "59": "S", "60": "C"}
    )
    assert mpm.validate(lower[:-4] + lower[-4:].lower())[0].message.startswith("CRC in lower")
    not_last = SPEC_EXAMPLE + "0102AB"
    assert any("not the last" in p.message for p in mpm.validate(not_last))


def test_validate_structure_faults():
    assert mpm.validate("")[0].message == "empty payload"
    probs = mpm.validate("000201AB02xx")
    assert any("not two digits" in p.message and p.position == 6 for p in probs)
    probs = mpm.validate("0002015299")
    assert any("runs past the end" in p.message for p in probs)
    assert any(p.id == "00" and "format" in p.message for p in mpm.validate("000202"))
    dup = mpm.validate("00020100020101021101021152045411")
    assert any(p.message == "duplicate ID" for p in dup)


def test_tip_rules():
    base = {"26": {"00": "X"}, "52": "5411", "53": "156", "58": "CN", "59": "S", "60": "C"}
    assert _problems(mpm.build({**base, "55": "02"})) == {("55", "55=02")}
    assert _problems(mpm.build({**base, "55": "03", "57": "5.5"})) == set()
    assert _problems(mpm.build({**base, "56": "1.00"})) == {("56", "fixed")}


def test_parse_error_has_position():
    with pytest.raises(mpm.MpmError, match="position 6") as e:
        mpm.parse("000201XX")
    assert e.value.position == 6
    with pytest.raises(mpm.MpmError, match="empty"):
        mpm.parse("")


def test_build_rejects_bad_values():
    with pytest.raises(mpm.MpmError, match="1-99 characters"):
        mpm.build({"59": "x" * 100})
    with pytest.raises(mpm.MpmError, match="not two digits"):
        mpm.build({"5": "x"})


text_value = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20
)


@given(
    name=text_value,
    city=st.text(st.characters(min_codepoint=65, max_codepoint=90), min_size=1, max_size=15),
    amount=st.one_of(st.none(), st.decimals(min_value="0.01", max_value="999999", places=2)),
    mcc=st.from_regex(r"[0-9]{4}", fullmatch=True),
    extra=st.dictionaries(
        st.sampled_from(["80", "81", "99"]),
        st.dictionaries(st.sampled_from(["00", "01", "02"]), text_value, min_size=1),
        max_size=2,
    ),
)
def test_build_parse_round_trip(name, city, amount, mcc, extra):
    fields = {
        "01": "12" if amount else "11",
        "26": {"00": "A000000333", "01": "1"},
        "52": mcc,
        "53": "156",
        "58": "CN",
        "59": name,
        "60": city,
    }
    if amount:
        fields["54"] = str(amount)
    for k, v in extra.items():
        fields[k] = {"00": "GUID", **v}
    payload = mpm.build(fields)
    assert mpm.crc_ok(payload)
    parsed = mpm.to_dict(mpm.parse(payload))
    assert parsed == {"00": "01", **fields, "63": payload[-4:]}
    if len(name) <= 25:
        assert mpm.validate(payload) == []


@given(st.text(max_size=80))
def test_parse_and_validate_fuzz(text):
    try:
        mpm.parse(text)
    except mpm.MpmError as e:
        assert 0 <= e.position <= len(text)
    for p in mpm.validate(text):
        assert 0 <= p.position <= len(text) and p.fix


@given(st.data())
def test_mutated_example_fuzz(data):
    i = data.draw(st.integers(0, len(SPEC_EXAMPLE) - 1))
    ch = data.draw(st.characters(codec="utf-8"))
    text = SPEC_EXAMPLE[:i] + ch + SPEC_EXAMPLE[i + 1 :]
    problems = mpm.validate(text)
    if ch != SPEC_EXAMPLE[i]:
        assert problems
    with contextlib.suppress(mpm.MpmError):
        mpm.parse(text)
