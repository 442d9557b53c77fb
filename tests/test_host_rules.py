"""Host rule files: validation errors name file, rule index and key path; matching; overrides."""

from __future__ import annotations

import pytest

from rig.host.rules import Action, RuleError, RuleSet, load_default
from rig.iso8583 import messages as m

TID, MID = "TERM0001", "MERCHANT0000001"
PAN = "4761739001010010"  # TEST PAN (cardprofiles/visa-credit-online-pin-dda.yaml)


def _purchase(amount: int, **kw: object) -> dict[str, str]:
    return m.purchase(amount=amount, stan=1, terminal_id=TID, merchant_id=MID, pan=PAN, **kw)


def test_default_rules_amount_triggers() -> None:
    rules = load_default()
    assert rules.match(_purchase(1251), None) == Action(rc="51")
    assert rules.match(_purchase(1261), None) == Action(rc="61")
    assert rules.match(_purchase(1200), None) is None
    refund = m.refund(amount=1251, stan=2, terminal_id=TID, merchant_id=MID, pan=PAN)
    assert rules.match(refund, None) is None, "triggers apply to purchases and authorisations"
    assert rules.match(_purchase(9998), None) == Action(no_answer=True)
    assert rules.match(_purchase(9999), None) == Action(drop_connection=True)
    assert rules.match(_purchase(9997), None) == Action(malformed=True)
    assert rules.match(_purchase(8888), None) == Action(delay_ms=3000)


def test_match_criteria() -> None:
    rules = RuleSet.from_text(
        """
rules:
  - name: visa prefix big amounts
    match: {pan_prefix: ['4761', '5413'], amount_min: 5000, amount_max: 6000}
    action: {rc: '05'}
  - match: {profile: mc-debit-cda}
    action: {rc: 57}
  - match: {mti: '0100', processing_code: '03'}
    action: {delay_ms: 10}
  - match: {terminal_id: TERM0009, amount: 100}
    action: {rc: '91'}
"""
    )
    assert rules.match(_purchase(5500), None) == Action(rc="05")
    assert rules.match(_purchase(6001), None) is None
    track = {k: v for k, v in _purchase(5500).items() if k != "2"} | {"35": PAN + "D3112201"}
    assert rules.match(track, None) == Action(rc="05"), "PAN prefix also read from track 2"
    assert rules.match(_purchase(10), "mc-debit-cda") == Action(rc="57"), "int rc 57 -> '57'"
    pre = m.pre_authorization(amount=10, stan=1, terminal_id=TID, merchant_id=MID, pan=PAN)
    assert rules.match(pre, None) == Action(delay_ms=10)
    other = m.purchase(amount=100, stan=1, terminal_id="TERM0009", merchant_id=MID, pan="1")
    assert rules.match(other, None) == Action(rc="91")
    assert (
        rules.match(m.balance_inquiry(stan=1, terminal_id="TERM0009", merchant_id=MID), None)
        is None
    )


def test_force_next_and_pause() -> None:
    rules = RuleSet()
    rules.force_next(Action(rc="96"), count=2)
    rules.force_next(Action(no_answer=True), mti="0800")
    echo = m.echo_test(stan=1, terminal_id=TID)
    assert rules.match(echo, None) == Action(rc="96")
    assert rules.match(_purchase(1), None) == Action(rc="96")
    assert rules.forced_pending == 1
    assert rules.match(_purchase(1), None) is None, "the 0800-only action waits for an 0800"
    assert rules.match(echo, None) == Action(no_answer=True)
    rules.force_next(Action(rc="05"))
    rules.clear_forced()
    assert rules.match(_purchase(1), None) is None
    assert not rules.paused
    rules.pause(True)
    assert rules.paused
    rules.pause(False)
    assert not rules.paused
    with pytest.raises(ValueError, match="count"):
        rules.force_next(Action(rc="05"), count=0)


BAD = [
    ("rules: [{match: {mti: 200}, action: {rc: '05'}}]", 0, "match.mti", "quoted string"),
    ("rules: [{match: {mti: '02000'}, action: {rc: '05'}}]", 0, "match.mti", "4 digits"),
    (
        "rules:\n - {action: {rc: '05'}}\n - {match: {amout: 5}, action: {rc: '05'}}",
        1,
        "match.amout",
        "unknown match key",
    ),
    ("rules: [{match: {}, action: {rc: 'ABC'}}]", 0, "action.rc", "response code"),
    ("rules: [{match: {}, action: {}}]", 0, "action", "non-empty"),
    ("rules: [{match: {}}]", 0, "action", "missing"),
    ("rules: [{match: {}, action: {delay_ms: -1}}]", 0, "action.delay_ms", "out of range"),
    ("rules: [{match: {}, action: {no_answer: 'yes'}}]", 0, "action.no_answer", "true/false"),
    ("rules: [{match: {}, action: {reply: '00'}}]", 0, "action.reply", "unknown action key"),
    (
        "rules: [{match: {amount_min: 9, amount_max: 1}, action: {rc: '05'}}]",
        0,
        "match.amount_min",
        "swap",
    ),
    ("rules: [{match: {amount: 1.5}, action: {rc: '05'}}]", 0, "match.amount", "minor units"),
    (
        "rules: [{match: {pan_prefix: ['4', 47]}, action: {rc: '05'}}]",
        0,
        "match.pan_prefix[1]",
        "quoted",
    ),
    ("rules: [{match: {}, action: {rc: '05'}, when: now}]", 0, "when", "unknown rule key"),
    ("rules: [7]", 0, "", "mapping"),
]


@pytest.mark.parametrize(("text", "index", "key", "problem"), BAD)
def test_rule_errors_name_index_and_key_path(text: str, index: int, key: str, problem: str) -> None:
    with pytest.raises(RuleError) as info:
        RuleSet.from_text(text, "bench-rules.yaml")
    err = info.value
    assert err.file == "bench-rules.yaml"
    assert err.index == index
    assert err.key == key
    assert problem in str(err)
    assert f"rules[{index}]" in str(err) and err.fix


def test_file_level_errors(tmp_path) -> None:
    with pytest.raises(RuleError, match="cannot read"):
        RuleSet.from_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n")
    with pytest.raises(RuleError, match=r"bad\.yaml: line \d+ column \d+: not valid YAML"):
        RuleSet.from_yaml(bad)
    with pytest.raises(RuleError, match="unknown top-level key"):
        RuleSet.from_text("rule: []")
    with pytest.raises(RuleError, match="version"):
        RuleSet.from_text("version: 2\nrules: []")
    with pytest.raises(RuleError, match="must be a list"):
        RuleSet.from_text("rules: {a: 1}")
    assert RuleSet.from_text("").rules == []
