"""Host rule files: validation errors name file, rule index and key path; matching; overrides."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.host.rules import Action, Rule, RuleError, RuleSet, load_default
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


# ---- the rule index: same first match as a plain scan ---------------------------------------

_MTIS = ["0100", "0200", "0220", "0400", "0800"]
_PANS = ["4761739001010010", "5413339000000036", "4000000000000002", "6225269000000015"]


def _scan(rules: list[Rule], doc: dict[str, str], profile_id: str | None) -> Action | None:
    """Reference: the first rule in file order whose every criterion holds."""
    for rule in rules:
        if rule.matches(doc, profile_id):
            return rule.action
    return None


def _some(values: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | st.lists(values, min_size=1, max_size=3).map(tuple)


_suffix = st.text("0123456789", min_size=1, max_size=4) | st.sampled_from(
    ["51", "00", "1", "0000", "000000000051", "0000000000051", "5x", ""]
)
_amount = st.sampled_from([0, 1, 51, 100, 151, 1251, 8888, 9997, 10**11]) | st.integers(0, 10**6)


@st.composite
def _rules(draw: st.DrawFn) -> Rule:
    """A rule built directly (as code may): every criterion, some values no file would pass."""
    lo = draw(st.none() | _amount)
    hi = draw(st.none() | _amount)
    return Rule(
        name=f"r{draw(st.integers(0, 99))}",
        action=Action(rc=draw(st.sampled_from(["05", "51", "91"]))),
        pan_prefix=draw(_some(st.sampled_from(["4", "4761", "5413", "6", "9"]))),
        profile=draw(_some(st.sampled_from(["visa-signature", "mc-debit-cda"]))),
        mti=draw(_some(st.sampled_from(_MTIS))),
        processing_code=draw(_some(st.sampled_from(["00", "03", "20", "31", "0000"]))),
        terminal_id=draw(_some(st.sampled_from(["TERM0001", "TERM0009"]))),
        amount=draw(st.none() | _amount),
        amount_min=lo,
        amount_max=hi,
        amount_ends_with=draw(_some(_suffix) | st.sampled_from([None, "51"])),
    )


@st.composite
def _docs(draw: st.DrawFn) -> dict[str, str]:
    doc = {"t": draw(st.sampled_from([*_MTIS, "0110"]))}
    if draw(st.booleans()):
        doc["3"] = draw(st.sampled_from(["000000", "030000", "200000", "310000", ""]))
    if draw(st.booleans()):
        value = draw(_amount | st.integers(10**12, 10**13))
        doc["4"] = draw(st.sampled_from([f"{value:012d}", str(value), "12a4", "", "٥١"]))
    pan = draw(st.sampled_from(_PANS))
    where = draw(st.sampled_from(["2", "35", None]))
    if where == "2":
        doc["2"] = pan
    elif where == "35":
        doc["35"] = pan + "D3112201"
    if draw(st.booleans()):
        doc["41"] = draw(st.sampled_from(["TERM0001", "TERM0009 ", "TERM0002"]))
    if draw(st.booleans()):
        del doc["t"]
    return doc


@settings(max_examples=400, deadline=None)
@given(
    rules=st.lists(_rules(), max_size=12),
    docs=st.lists(
        st.tuples(_docs(), st.sampled_from([None, "visa-signature", "mc-debit-cda"])),
        min_size=1,
        max_size=8,
    ),
)
def test_indexed_match_is_the_first_match_of_a_plain_scan(rules, docs) -> None:
    rs = RuleSet(rules)
    for doc, profile_id in docs * 2:
        assert rs.match(doc, profile_id) is _scan(rules, doc, profile_id)


@settings(max_examples=200, deadline=None)
@given(
    first=st.lists(_rules(), max_size=8),
    more=st.lists(_rules(), min_size=1, max_size=4),
    docs=st.lists(_docs(), min_size=1, max_size=6),
    change=st.sampled_from(["append", "replace-list", "set-item", "delete", "reverse"]),
)
def test_index_follows_changes_to_the_rule_list(first, more, docs, change) -> None:
    rs = RuleSet(first)
    for doc in docs:
        rs.match(doc, None)
    if change == "append":
        rs.rules.extend(more)
    elif change == "replace-list":
        rs.rules = list(more)
    elif change == "set-item":
        rs.rules[:1] = more[:1] if rs.rules else more
    elif change == "delete" and rs.rules:
        del rs.rules[0]
    else:
        rs.rules.reverse()
    for doc in docs:
        assert rs.match(doc, "visa-signature") is _scan(rs.rules, doc, "visa-signature")


def test_index_picks_rules_by_amount_and_keeps_file_order() -> None:
    rules = RuleSet.from_text(
        """
rules:
  - match: {amount_ends_with: ['1', '0051']}
    action: {rc: '01'}
  - match: {amount: 151, mti: '0200'}
    action: {rc: '02'}
  - match: {amount_ends_with: '51'}
    action: {rc: '03'}
  - match: {amount_min: 100}
    action: {rc: '04'}
"""
    )
    assert rules.match(_purchase(151), None) == Action(rc="01")
    rules.rules.pop(0)
    assert rules.match(_purchase(151), None) == Action(rc="02"), "exact before suffix (file order)"
    assert rules.match(_purchase(251), None) == Action(rc="03")
    assert rules.match(_purchase(250), None) == Action(rc="04")
    assert rules.match(_purchase(50), None) is None
    rules.force_next(Action(rc="96"))
    assert rules.match(_purchase(151), None) == Action(rc="96"), "a forced action comes first"
    assert rules.match(_purchase(151), None) == Action(rc="02")
    no_amount = {k: v for k, v in _purchase(151).items() if k != "4"}
    assert rules.match(no_amount, None) is None
    keyed_only = RuleSet(
        [
            Rule(name="1", action=Action(rc="01"), amount_ends_with=("1",)),
            Rule(name="2", action=Action(rc="02"), amount_ends_with=("51",)),
            Rule(name="3", action=Action(rc="03"), amount=151),
        ]
    )
    assert keyed_only.match(_purchase(151), None) == Action(rc="01"), "exact, then suffixes merged"
    keyed_only.rules.reverse()
    assert keyed_only.match(_purchase(151), None) == Action(rc="03")
    keyed_only.rules[1:] = keyed_only.rules[:0:-1]
    assert keyed_only.match(_purchase(151), None) == Action(rc="03")
    assert keyed_only.match(_purchase(51), None) == Action(rc="01")
    padded = RuleSet([Rule(name="p", action=Action(rc="05"), amount_ends_with=("000000000051",))])
    assert padded.match(_purchase(51), None) == Action(rc="05"), "suffixes read the 12-digit DE4"
    assert padded.match(_purchase(151), None) is None


def test_index_with_many_mtis_stays_bounded() -> None:
    any_mti = Rule(name="any", action=Action(rc="05"), amount_ends_with=("7",))
    rules = RuleSet([any_mti])
    for i in range(200):
        doc = {"t": f"{i:04d}", "4": "000000000017"}
        assert rules.match(doc, None) is any_mti.action
        assert rules.match(doc | {"4": "000000000018"}, None) is None
    assert len(rules._index) <= 64
