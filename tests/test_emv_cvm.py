"""CVM List parsing and CVM selection (EMV 4.3 Book 3 §10.5, Book 4 §6.3.4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.emv.cvm import (
    CvmContext,
    CvmError,
    CvmList,
    CvRule,
    Outcome,
    encode_cvm_list,
    parse_cvm_list,
    select_cvm,
)

ALL_CVMS = bytes.fromhex("E0F8C8")  # terminal supports every CVM
NO_PIN = bytes.fromhex("E02888")  # signature and no CVM only
# Online PIN if supported (next on fail), signature if supported (next), no CVM always.
TYPICAL = bytes.fromhex("000000000000000042035E031F00")


def test_parse_cvm_list() -> None:
    cvm = parse_cvm_list(bytes.fromhex("000003E80000271041060203"))
    assert (cvm.x, cvm.y) == (1000, 10000)
    assert cvm.rules == (CvRule(0x41, 0x06), CvRule(0x02, 0x03))
    assert cvm.rules[0].apply_next and not cvm.rules[1].apply_next
    assert cvm.rules[0].method_name == "plaintext_pin_icc"
    assert cvm.rules[0].condition_name == "under_x"
    assert encode_cvm_list(cvm) == bytes.fromhex("000003E80000271041060203")


@pytest.mark.parametrize(("hexdata", "offset"), [("0000", 2), ("000000000000000042", 8)])
def test_bad_cvm_list(hexdata: str, offset: int) -> None:
    with pytest.raises(CvmError) as e:
        parse_cvm_list(bytes.fromhex(hexdata))
    assert e.value.offset == offset


@given(st.binary(max_size=40))
def test_fuzz_parse(data: bytes) -> None:
    try:
        cvm = parse_cvm_list(data)
    except CvmError:
        assert len(data) < 8 or len(data) % 2
    else:
        assert encode_cvm_list(cvm) == data


def test_online_pin_selected() -> None:
    sel = select_cvm(TYPICAL, CvmContext(ALL_CVMS, amount=5000))
    assert sel.rule == CvRule(0x42, 0x03)
    assert sel.cvm_results == bytes.fromhex("420300")
    assert sel.tvr_bits == {"online_pin_entered"}
    assert sel.tsi_bits == {"cv_performed"}


def test_condition_terminal_supports_skips_to_signature() -> None:
    sel = select_cvm(TYPICAL, CvmContext(NO_PIN))
    assert sel.rule == CvRule(0x5E, 0x03)
    assert sel.cvm_results == bytes.fromhex("5E0300")  # signature: result unknown
    assert sel.tvr_bits == frozenset()


def test_pin_bypass_then_next_rule() -> None:
    ctx = CvmContext(ALL_CVMS, outcomes={0x02: Outcome.PIN_BYPASSED})
    sel = select_cvm(TYPICAL, ctx)
    assert sel.rule == CvRule(0x5E, 0x03)
    assert "pin_not_entered" in sel.tvr_bits


def test_offline_pin_fails_without_apply_next() -> None:
    cvm = bytes.fromhex("000000000000000001001F00")
    ctx = CvmContext(ALL_CVMS, outcomes={0x01: Outcome.PIN_TRY_LIMIT_EXCEEDED})
    sel = select_cvm(cvm, ctx)
    assert sel.rule is None and not sel.successful
    assert sel.tvr_bits == {"pin_try_limit_exceeded", "cv_not_successful"}
    assert sel.cvm_results == bytes.fromhex("010001")


def test_pin_pad_broken() -> None:
    cvm = bytes.fromhex("000000000000000041001E00")
    sel = select_cvm(cvm, CvmContext(ALL_CVMS, pin_pad_working=False))
    assert sel.rule == CvRule(0x1E, 0x00)
    assert "pin_pad_missing" in sel.tvr_bits


def test_unrecognised_cvm() -> None:
    cvm = bytes.fromhex("00000000000000004A001F00")
    sel = select_cvm(cvm, CvmContext(ALL_CVMS))
    assert sel.rule == CvRule(0x1F, 0x00)
    assert sel.cvm_results == bytes.fromhex("1F0002")
    assert sel.tvr_bits == {"unrecognised_cvm"}


def test_fail_cvm_rule() -> None:
    sel = select_cvm(bytes.fromhex("00000000000000000000"), CvmContext(ALL_CVMS))
    assert sel.cvm_results == bytes.fromhex("000001")
    assert sel.tvr_bits == {"cv_not_successful"}


@pytest.mark.parametrize(
    ("amount", "tx_cur", "expected"),
    [
        (999, 978, CvRule(0x1F, 0x06)),  # under X (1000) in application currency: no CVM
        (1000, 978, CvRule(0x42, 0x00)),  # not under X
        (999, 840, CvRule(0x42, 0x00)),  # other currency: amount conditions never apply
        (20001, 978, CvRule(0x5E, 0x09)),  # over Y (20000): signature first
    ],
)
def test_amount_conditions(amount: int, tx_cur: int, expected: CvRule) -> None:
    cvm = CvmList(1000, 20000, (CvRule(0x5E, 0x09), CvRule(0x1F, 0x06), CvRule(0x42, 0x00)))
    ctx = CvmContext(ALL_CVMS, amount=amount, transaction_currency=tx_cur, application_currency=978)
    assert select_cvm(cvm, ctx).rule == expected


@pytest.mark.parametrize(
    ("cash", "cashback", "unattended", "expected"),
    [
        (True, False, True, 0x01),
        (True, False, False, 0x04),
        (False, True, False, 0x05),
        (False, False, False, 0x02),
    ],
)
def test_transaction_kind_conditions(
    cash: bool, cashback: bool, unattended: bool, expected: int
) -> None:
    rules = tuple(CvRule(0x1F, c) for c in (0x01, 0x04, 0x05, 0x02))
    ctx = CvmContext(ALL_CVMS, cash=cash, cashback=cashback, unattended=unattended)
    assert select_cvm(CvmList(0, 0, rules), ctx).rule.condition == expected


def test_no_condition_satisfied() -> None:
    cvm = CvmList(0, 0, (CvRule(0x1F, 0x01),))
    sel = select_cvm(cvm, CvmContext(ALL_CVMS))
    assert sel.cvm_results == bytes.fromhex("3F0001")
    assert sel.tvr_bits == {"cv_not_successful"}


def test_missing_list_and_aip_without_cv() -> None:
    sel = select_cvm(None, CvmContext(ALL_CVMS))
    assert sel.cvm_results == bytes.fromhex("3F0000")
    assert sel.tvr_bits == {"icc_data_missing"} and sel.tsi_bits == frozenset()
    sel = select_cvm(TYPICAL, CvmContext(ALL_CVMS), aip_cv_supported=False)
    assert sel.cvm_results == bytes.fromhex("3F0000") and sel.tvr_bits == frozenset()


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), max_size=6), st.data())
def test_selection_always_consistent(rules: list[tuple[int, int]], data: st.DataObject) -> None:
    cvm = CvmList(100, 1000, tuple(CvRule(a, b) for a, b in rules))
    ctx = CvmContext(
        data.draw(st.binary(min_size=3, max_size=3)),
        amount=data.draw(st.integers(0, 5000)),
        transaction_currency=978,
        application_currency=978,
        cash=data.draw(st.booleans()),
        outcomes={m: data.draw(st.sampled_from(list(Outcome))) for m in (1, 2, 4)},
    )
    sel = select_cvm(cvm, ctx)
    assert len(sel.cvm_results) == 3
    assert sel.successful == ("cv_not_successful" not in sel.tvr_bits)
    if sel.rule is not None:
        assert sel.cvm_results[:2] == bytes([sel.rule.code, sel.rule.condition])
