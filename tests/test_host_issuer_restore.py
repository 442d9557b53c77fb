"""The issuer's QR orders and purse balances survive a host restart: `rig.host.issuer_restore`
replays the journal at start-up. A real host process is stopped (SIGTERM or kill -9) and started
again on the same data folder; a hypothesis test checks that replaying a random run of QR and
prepaid requests, and of reversals of earlier ones, rebuilds exactly the live issuer's state.
TEST KEYS and TEST PANs only.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rig.host import issuer_restore
from rig.host.cli import init_data
from rig.host.control import HostProcess
from rig.host.issuer import Issuer
from rig.host.journal import Journal, JournalEntry
from rig.host.loadgen import TerminalClient
from rig.host.rules import DEFAULT_RULES, Action, RuleSet
from rig.iso8583 import messages as m
from rig.prepaid import purse
from rig.profiles import load_all
from rig.qr import cpm

TID, MID = "TERM0001", "MERCHANT0000001"
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
PROFILES = load_all("cardprofiles")
PURSE = PROFILES["prepaid-purse"].purse
ASN = PURSE.asn
PURSE_TID = bytes.fromhex("112233445566")
PURSE_KEYS = purse.PurseKeys.from_master_keys(
    *(bytes.fromhex(k) for k in (PURSE.keys.mlk, PURSE.keys.mpk, PURSE.keys.mtk)),
    bytes.fromhex(ASN),
)
CPM_PAN = "4761739001010036"  # TEST PAN of the visa-signature profile

# ---- request builders (shared with tests/test_host_reconcile_server.py) ----------------------


def _fields(stan: int, batch: str | None, now: datetime | None, entry_mode: str) -> dict[str, Any]:
    out: dict[str, Any] = {"stan": stan, "terminal_id": TID, "merchant_id": MID, "now": now}
    out["entry_mode"] = entry_mode
    if batch is not None:
        out["batch"] = batch
    return out


def mpm(
    stan: int,
    amount: int | None,
    order: str | None = None,
    *,
    refund: bool = False,
    batch: str | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """MPM order creation (no order id), status query or refund (with the order id)."""
    sub = {"01": "MPM"} | ({"03": order} if order else {})
    builder = m.refund if refund else m.purchase
    doc = builder(
        amount=amount or 0,
        additional_data=m.private_encode(sub),
        **_fields(stan, batch, now, "031"),
    )
    if amount is None:
        del doc["4"]
    return doc


def order_of(resp: dict[str, str]) -> tuple[str, str]:
    """(order id, status) from a 0210's DE48."""
    sub = m.private_decode(resp["48"])
    return sub["03"], sub["04"]


def prepaid(
    stan: int,
    sub: dict[str, str],
    amount: int | None,
    *,
    builder: Any = m.purchase,
    batch: str | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """A 0200 / 0220 carrying DE62 (purse subfields)."""
    kw = _fields(stan, batch, now, "051")
    if builder is m.balance_inquiry:
        return builder(prepaid=m.private_encode({"01": ASN} | sub), **kw)
    doc = builder(amount=amount or 0, prepaid=m.private_encode({"01": ASN} | sub), **kw)
    if amount is None:
        del doc["4"]
    return doc


def purse_load(
    stan: int,
    amount: int,
    balance: int,
    counter: int = 0,
    *,
    random4: bytes = b"\x01\x02\x03\x04",
    batch: str | None = None,
    now: datetime | None = None,
    bad_mac: bool = False,
) -> dict[str, str]:
    """LOAD with the MAC1 the card computes over `balance` (its balance before the load)."""
    seslk = purse.load_session_key(PURSE_KEYS.dlk, random4, counter)
    mac1 = bytes(4) if bad_mac else purse.load_mac1(seslk, balance, amount, PURSE_TID)
    sub = {
        "02": f"{counter:04X}",
        "03": f"{balance:012d}",
        "04": "LOAD",
        "05": mac1.hex().upper(),
        "09": random4.hex().upper(),
        "10": PURSE_TID.hex().upper(),
    }
    return prepaid(stan, sub, amount, batch=batch, now=now)


def purse_purchase(
    stan: int,
    amount: int,
    seq: int,
    *,
    batch: str | None = None,
    now: datetime | None = None,
    bad_tac: bool = False,
) -> dict[str, str]:
    """The 0220 purchase record of an offline purse purchase, with the card's TAC."""
    stamp = "20261125115900"
    date, time = bytes.fromhex(stamp[:8]), bytes.fromhex(stamp[8:])
    tac = purse.purchase_tac(PURSE_KEYS.dtk, amount, PURSE_TID, seq, date, time)
    sub = {
        "04": "PURCHASE",
        "07": "DEADBEEF" if bad_tac else tac.hex().upper(),
        "08": f"{seq:08X}",
        "10": PURSE_TID.hex().upper(),
        "11": stamp,
    }
    return prepaid(stan, sub, amount, builder=m.advice, batch=batch, now=now)


def cpm_payment(
    stan: int, amount: int, *, batch: str | None = None, refund: bool = False
) -> dict[str, str]:
    """A consumer-presented QR payment (or refund) with a token carrying the TEST PAN."""
    token = cpm.encode([{0x4F: bytes.fromhex("A0000000031010"), 0x5A: bytes.fromhex(CPM_PAN)}])
    builder = m.refund if refund else m.purchase
    return builder(
        amount=amount,
        additional_data=m.private_encode({"01": "CPM", "02": token}),
        **_fields(stan, batch, NOW, "031"),
    )


def purse_balance(stan: int, **kw: Any) -> dict[str, str]:
    """BALANCE (a 0200 balance inquiry with DE62)."""
    return prepaid(stan, {"04": "BALANCE"}, None, builder=m.balance_inquiry, **kw)


def balance_of(resp: dict[str, str]) -> int:
    return int(m.private_decode(resp["62"], "62")["03"])


# ---- a real host, restarted ----------------------------------------------------------------


def _start(data: Path) -> HostProcess:
    return HostProcess(data, "--listen", "127.0.0.1:0")


@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
def test_purse_balance_and_pending_order_survive_a_restart(tmp_path, how):
    data = tmp_path / "host"
    init_data(data, [TID])
    card = purse.Purse(PURSE_KEYS, balance=PURSE.initial_balance, max_balance=PURSE.max_balance)
    host = _start(data)
    try:
        with TerminalClient(host.listener("len2"), "len2") as c:
            assert balance_of(c.exchange(purse_balance(1), 5)) == 5000
            init = card.initialize_for_load(2000, PURSE_TID, b"\x0a\x0b\x0c\x0d")
            load = purse_load(2, 2000, init.balance, init.online_counter, random4=init.random)
            resp = c.exchange(load, 5)
            assert resp["39"] == "00" and balance_of(resp) == 7000
            answer = m.private_decode(resp["62"], "62")
            stamp = answer["11"]
            card.credit_for_load(
                bytes.fromhex(stamp[:8]), bytes.fromhex(stamp[8:]), bytes.fromhex(answer["06"])
            )
            resp = c.exchange(purse_purchase(3, 1200, seq=0x42), 5)
            assert resp["39"] == "00" and balance_of(resp) == 5800
            resp = c.exchange(mpm(4, 1500), 5)
            assert resp["39"] == "00"
            order, status = order_of(resp)
            assert status == "PENDING"
    finally:
        if how == "sigterm":
            assert host.stop() == 0
        else:
            host.kill()
    assert card.balance == 7000, "the card took the host's MAC2 before the restart"

    host = _start(data)
    try:
        with TerminalClient(host.listener("len2"), "len2") as c:
            resp = c.exchange(purse_balance(11), 5)
            assert resp["39"] == "00" and balance_of(resp) == 5800, "balance after load + purchase"
            resp = c.exchange(mpm(12, 1500, order), 5)
            assert resp["39"] == "00", "the order created before the restart is known"
            assert order_of(resp) == (order, "PAID")
            resp = c.exchange(mpm(13, 700), 5)
            new_order, _ = order_of(resp)
            assert new_order != order
            assert int(new_order.rpartition("-")[2]) == int(order.rpartition("-")[2]) + 1
            resp = c.exchange(mpm(14, 1500, order, refund=True), 5)
            assert order_of(resp) == (order, "REFUNDED")
    finally:
        assert host.stop() == 0

    host = _start(data)  # a second restart keeps the refund and the new order
    try:
        with TerminalClient(host.listener("len2"), "len2") as c:
            assert order_of(c.exchange(mpm(21, 1500, order), 5)) == (order, "REFUNDED")
            assert order_of(c.exchange(mpm(22, 700, new_order), 5)) == (new_order, "PAID")
            assert balance_of(c.exchange(purse_balance(23), 5)) == 5800
    finally:
        assert host.stop() == 0
    assert "issuer state restored from the journal" in (data / "host.log").read_text()


def test_a_reversed_top_up_is_taken_back_live_and_after_a_restart(tmp_path):
    data = tmp_path / "host"
    init_data(data, [TID])
    host = _start(data)
    try:
        with TerminalClient(host.listener("len2"), "len2") as c:
            assert balance_of(c.exchange(purse_balance(1), 5)) == 5000
            load = purse_load(2, 2000, 5000)
            resp = c.exchange(load, 5)
            assert resp["39"] == "00" and balance_of(resp) == 7000
            rev = c.exchange(m.reversal(load, stan=3, reason="98"), 5)
            assert (rev["t"], rev["39"]) == ("0410", "00")
            resp = c.exchange(purse_balance(4), 5)
            assert resp["39"] == "00" and balance_of(resp) == 5000, "the top-up is taken back"
            repeat = c.exchange(m.reversal(load, stan=5, reason="98"), 5)
            assert repeat["39"] == "00"
            assert balance_of(c.exchange(purse_balance(6), 5)) == 5000, "taken back once"
    finally:
        assert host.stop() == 0
    host = _start(data)
    try:
        with TerminalClient(host.listener("len2"), "len2") as c:
            resp = c.exchange(purse_balance(11), 5)
            assert resp["39"] == "00" and balance_of(resp) == 5000, "the restart agrees"
    finally:
        assert host.stop() == 0


# ---- replay equals the live issuer ---------------------------------------------------------


def live_issuer(auto_pay: bool = True, rules: RuleSet | None = None) -> Issuer:
    """An issuer as the host makes it: the default rules (amount triggers) unless given."""
    rules = rules if rules is not None else RuleSet.from_yaml(DEFAULT_RULES)
    return Issuer(PROFILES, None, rules, now=lambda: NOW, mpm_auto_pay=auto_pay)


def journal_decide(issuer: Issuer, journal: Journal, doc: dict[str, str]) -> dict[str, str]:
    """What the server does per request: decide, then journal request and response."""
    decision = issuer.decide(doc)
    resp = m.response_to(doc, decision.rc)
    resp.update(decision.fields)
    resp["39"] = decision.rc
    journal.append_sync(JournalEntry.from_messages(doc, resp, kind=decision.kind), unique=False)
    return resp


def journal_reverse(issuer: Issuer, journal: Journal, doc: dict[str, str]) -> dict[str, str]:
    """What the server does with a 0400: find the original (DE90), decide, and journal the
    reversal flagging the original in one transaction when approved."""
    de90 = doc["90"]
    original = journal.find_original(doc["41"], de90[4:10], de90[10:20])
    decision = issuer.decide(doc, original=original)
    resp = m.response_to(doc, decision.rc)
    resp.update(decision.fields)
    resp["39"] = decision.rc
    entry = JournalEntry.from_messages(doc, resp, kind=decision.kind)
    if original is not None and decision.rc == "00":
        asyncio.run(journal.mark_reversed(original.id, entry))
    else:
        journal.append_sync(entry, unique=False)
    return resp


def _state(issuer: Issuer) -> tuple[Any, ...]:
    return issuer.orders, issuer.purses, issuer._order_seq


OPS = st.one_of(
    st.tuples(st.just("create"), st.integers(0, 5000)),
    st.tuples(st.just("status"), st.integers(0, 9)),
    st.tuples(st.just("refund"), st.integers(0, 9)),
    st.tuples(st.just("load"), st.integers(1, 60_000), st.sampled_from(["ok", "stale", "bad"])),
    st.tuples(st.just("purchase"), st.integers(1, 9000), st.booleans()),
    st.tuples(st.just("balance")),
    st.tuples(st.just("issue")),
    st.tuples(st.just("cpm"), st.integers(1, 5000), st.booleans()),
    st.tuples(st.just("force"), st.sampled_from(["00", "05"])),
    st.tuples(st.just("reverse"), st.integers(0, 30)),
)


def _request(issuer: Issuer, orders: list[str], op: tuple[Any, ...], stan: int) -> dict[str, str]:
    kind = op[0]
    if kind == "create":
        return mpm(stan, op[1], now=NOW)
    if kind in ("status", "refund"):
        order = orders[op[1] % len(orders)] if orders else "MPM-NOPE"
        return mpm(stan, 100, order, refund=kind == "refund", now=NOW)
    state = issuer.purses.get(ASN)
    balance = state["balance"] if state else PURSE.initial_balance
    if kind == "load":
        claimed = max(0, balance + 1 if op[2] == "stale" else balance)
        return purse_load(stan, op[1], claimed, stan % 7, now=NOW, bad_mac=op[2] == "bad")
    if kind == "purchase":
        return purse_purchase(stan, op[1], stan, now=NOW, bad_tac=op[2])
    if kind == "balance":
        return purse_balance(stan, now=NOW)
    if kind == "cpm":
        return cpm_payment(stan, op[1], refund=op[2])
    return prepaid(stan, {"04": "ISSUE"}, 0, now=NOW)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(OPS, max_size=25), auto_pay=st.booleans())
@example(ops=[("load", 2000, "ok"), ("load", 1000, "ok"), ("reverse", 0)], auto_pay=True)
@example(ops=[("create", 1500), ("status", 0), ("status", 0), ("reverse", 1)], auto_pay=True)
def test_replaying_the_journal_rebuilds_the_live_issuer_state(ops, auto_pay):
    """Random QR / prepaid / CPM requests, rule-forced answers, and reversals (approved, or
    declined when forced) of random earlier requests: the restore equals the live state."""
    live = live_issuer(auto_pay)
    orders: list[str] = []
    sent: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory() as folder, Journal(Path(folder) / "j.sqlite3") as journal:
        for stan, op in enumerate(ops, start=1):
            if op[0] == "force":
                live.rules.force_next(Action(rc=op[1]))
                continue
            if op[0] == "reverse":
                if sent:
                    target = sent[op[1] % len(sent)]
                    doc = m.reversal(target, stan=stan, now=NOW, reason="98")
                    journal_reverse(live, journal, doc)
                    sent.append(doc)
                continue
            doc = _request(live, orders, op, stan)
            resp = journal_decide(live, journal, doc)
            sent.append(doc)
            if op[0] == "create" and "48" in resp:  # a forced 05 still created the order
                orders.append(order_of(resp)[0])
        restored = live_issuer(auto_pay)
        report = issuer_restore.restore(restored, journal)
    assert _state(restored) == _state(live)
    assert report.orders == len(live.orders) and report.unreadable == []
    assert restored.next_order_id(TID) == live.next_order_id(TID)


def test_rule_forced_answers_replay_as_the_flows_ran(tmp_path):
    rules = RuleSet()
    live = live_issuer(rules=rules)
    with Journal(tmp_path / "j.sqlite3") as journal:
        rules.force_next(Action(rc="00"), 2)
        bad_load = journal_decide(live, journal, purse_load(1, 2000, 5000, now=NOW, bad_mac=True))
        bad_record = journal_decide(live, journal, purse_purchase(2, 700, 3, now=NOW, bad_tac=True))
        assert bad_load["39"] == bad_record["39"] == "00", "a rule forced the approvals"
        paid, _ = order_of(journal_decide(live, journal, mpm(3, 1500, now=NOW)))
        assert order_of(journal_decide(live, journal, mpm(4, 1500, paid, now=NOW)))[1] == "PAID"
        declined, _ = order_of(journal_decide(live, journal, mpm(5, 800, now=NOW)))
        rules.force_next(Action(rc="05"), 2)
        refund = journal_decide(live, journal, mpm(6, 1500, paid, refund=True, now=NOW))
        status = journal_decide(live, journal, mpm(7, 800, declined, now=NOW))
        assert refund["39"] == status["39"] == "05"
        restored = live_issuer()
        issuer_restore.restore(restored, journal)
    assert live.purses[ASN]["balance"] == 5000, "forced approvals of failed MACs credit nothing"
    assert live.orders[paid]["status"] == "PAID", "a declined refund refunds nothing"
    assert live.orders[declined]["status"] == "PAID", "the wallet paid before the rule answered"
    assert _state(restored) == _state(live)


def test_reversals_marked_in_the_journal_are_undone_by_the_restore(tmp_path):
    live = live_issuer()
    with Journal(tmp_path / "j.sqlite3") as journal:
        load = purse_load(1, 2000, 5000, now=NOW)
        journal_decide(live, journal, load)
        created = journal_decide(live, journal, mpm(2, 1500, now=NOW))
        order, _ = order_of(created)
        journal_decide(live, journal, purse_purchase(3, 300, 9, now=NOW))
        for stan in (1, 2):
            original = journal.find_original(TID, f"{stan:06d}")
            rev = JournalEntry.from_messages(
                {"t": "0400", "11": f"{90 + stan:06d}", "41": TID, "7": "1125120000"},
                {"t": "0410", "39": "00"},
                kind="reversal",
            )
            asyncio.run(journal.mark_reversed(original.id, rev))
        restored = live_issuer()
        report = issuer_restore.restore(restored, journal)
    assert restored.purses[ASN]["balance"] == 5000 - 300, "the reversed load is taken back"
    assert order not in restored.orders, "a reversed order creation is not restored"
    assert restored._order_seq == live._order_seq, "its id is still never reused"
    assert report.reversed == 2


def _reverse(issuer: Issuer, journal: Journal, original: dict[str, str], stan: int) -> None:
    doc = m.reversal(original, stan=stan, now=NOW, reason="98")
    assert journal_reverse(issuer, journal, doc)["39"] == "00"


def test_a_reversed_load_spent_since_leaves_the_host_balance_below_zero(tmp_path):
    live = live_issuer()
    with Journal(tmp_path / "j.sqlite3") as journal:
        load = purse_load(1, 2000, 5000, now=NOW)
        assert balance_of(journal_decide(live, journal, load)) == 7000
        record = purse_purchase(2, 6500, 9, now=NOW)
        assert balance_of(journal_decide(live, journal, record)) == 500
        _reverse(live, journal, load, 3)
        answer = journal_decide(live, journal, purse_balance(4, now=NOW))
        assert balance_of(answer) == -1500, "the reversal is recorded; the shortfall shows"
        _reverse(live, journal, record, 5)
        assert balance_of(journal_decide(live, journal, purse_balance(6, now=NOW))) == 5000
        restored = live_issuer()
        issuer_restore.restore(restored, journal)
    assert restored.purses[ASN]["balance"] == live.purses[ASN]["balance"] == 5000


def test_reversed_qr_answers_put_the_order_back(tmp_path):
    live = live_issuer()
    with Journal(tmp_path / "j.sqlite3") as journal:
        order, _ = order_of(journal_decide(live, journal, mpm(1, 1500, now=NOW)))
        query = mpm(2, None, order, now=NOW)
        assert order_of(journal_decide(live, journal, query))[1] == "PAID"
        refund = mpm(3, 1500, order, refund=True, now=NOW)
        assert order_of(journal_decide(live, journal, refund))[1] == "REFUNDED"
        _reverse(live, journal, refund, 4)
        assert live.orders[order]["status"] == "PAID", "a reversed refund: PAID again"
        _reverse(live, journal, query, 5)
        assert live.orders[order]["status"] == "PENDING", "a reversed PAID answer: PENDING"
        other, _ = order_of(journal_decide(live, journal, mpm(6, 700, now=NOW)))
        creation = mpm(7, 900, now=NOW)
        third, _ = order_of(journal_decide(live, journal, creation))
        _reverse(live, journal, creation, 8)
        assert third not in live.orders, "a reversed creation removes the order"
        assert journal_decide(live, journal, mpm(9, 900, third, now=NOW))["39"] == "12"
        restored = live_issuer()
        issuer_restore.restore(restored, journal)
    assert set(live.orders) == {order, other}
    assert _state(restored) == _state(live)
