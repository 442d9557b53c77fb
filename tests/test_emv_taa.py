"""Terminal action analysis (EMV 4.3 Book 3 §10.7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.emv.bits import build
from rig.emv.taa import ActionCodes, Decision, TaaError, default_action, terminal_action_analysis

ZERO = bytes(5)
# Common terminal action codes: deny nothing, go online on most faults, decline offline faults.
TAC = ActionCodes(
    denial=ZERO,
    online=bytes.fromhex("FC50BCF800"),
    default=bytes.fromhex("FC50BCA000"),
)


def test_clean_tvr_online_terminal_gets_tc() -> None:
    r = terminal_action_analysis(ZERO, TAC, ActionCodes(ZERO, ZERO, ZERO))
    assert (r.decision, r.step, r.matched) == (Decision.TC, "online", ())


def test_floor_limit_goes_online() -> None:
    tvr = build(["floor_limit_exceeded"])
    r = terminal_action_analysis(tvr, TAC, ActionCodes(ZERO, ZERO, ZERO))
    assert r.decision is Decision.ARQC and r.matched == ("floor_limit_exceeded",)


def test_iac_denial_wins() -> None:
    tvr = build(["expired_application", "floor_limit_exceeded"])
    iac = ActionCodes(denial=build(["expired_application"]), online=ZERO, default=ZERO)
    r = terminal_action_analysis(tvr, TAC, iac)
    assert (r.decision, r.step, r.matched) == (Decision.AAC, "denial", ("expired_application",))


def test_absent_iacs_use_spec_defaults() -> None:
    # Absent IAC-Online is all ones: any TVR bit sends an online-capable terminal online.
    tvr = build(["new_card"])
    r = terminal_action_analysis(tvr, ActionCodes(), None)
    assert r.decision is Decision.ARQC
    # Absent IAC-Denial is all zeros: nothing is declined on it.
    assert r.step == "online"
    # Absent IAC-Default is all ones: offline-only terminal declines any TVR bit.
    r = terminal_action_analysis(tvr, ActionCodes(), None, online_capable=False)
    assert (r.decision, r.step) == (Decision.AAC, "default")
    r = terminal_action_analysis(ZERO, ActionCodes(), None, online_capable=False)
    assert r.decision is Decision.TC


def test_offline_only_uses_default_codes() -> None:
    tvr = build(["floor_limit_exceeded"])  # byte 4 b8: set in TAC-Default byte 4 (A0)
    r = terminal_action_analysis(tvr, TAC, ActionCodes(ZERO, ZERO, ZERO), online_capable=False)
    assert (r.decision, r.step) == (Decision.AAC, "default")
    tvr = build(["random_online"])  # byte 4 b5: in TAC-Online F8, not in TAC-Default A0
    r = terminal_action_analysis(tvr, TAC, ActionCodes(ZERO, ZERO, ZERO), online_capable=False)
    assert r.decision is Decision.TC


def test_unable_to_go_online_default_path() -> None:
    tvr = build(["random_online"])
    iac = ActionCodes(ZERO, ZERO, ZERO)
    assert terminal_action_analysis(tvr, TAC, iac).decision is Decision.ARQC
    r = terminal_action_analysis(tvr, TAC, iac, unable_to_go_online=True)
    assert (r.decision, r.step) == (Decision.TC, "default")
    r = default_action(build(["oda_not_performed"]), TAC, iac)
    assert (r.decision, r.matched) == (Decision.AAC, ("oda_not_performed",))


def test_bad_lengths() -> None:
    with pytest.raises(TaaError, match="TAC-Online must be 5 bytes"):
        terminal_action_analysis(ZERO, ActionCodes(online=b"\xff"))
    with pytest.raises(TaaError, match="TVR"):
        terminal_action_analysis(b"\x00", TAC)


codes = st.binary(min_size=5, max_size=5)


@given(codes, codes, codes, codes, codes, codes, codes, st.booleans())
def test_decision_rules_hold(tvr, td, to, tf, i_d, i_o, i_f, online) -> None:
    def hit(a: bytes, b: bytes) -> bool:
        return any(t & (x | y) for t, x, y in zip(tvr, a, b, strict=True))

    r = terminal_action_analysis(
        tvr, ActionCodes(td, to, tf), ActionCodes(i_d, i_o, i_f), online_capable=online
    )
    if hit(td, i_d):
        assert r.decision is Decision.AAC
    elif online:
        assert r.decision is (Decision.ARQC if hit(to, i_o) else Decision.TC)
    else:
        assert r.decision is (Decision.AAC if hit(tf, i_f) else Decision.TC)
