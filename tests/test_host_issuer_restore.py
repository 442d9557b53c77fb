"""The issuer's QR orders and purse balances survive a host restart: `rig.host.issuer_restore`
replays the journal at start-up. A real host process is stopped (SIGTERM or kill -9) and started
again on the same data folder; a hypothesis test checks that replaying a random run of QR and
prepaid requests rebuilds exactly the live issuer's state. TEST KEYS and TEST PANs only.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
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
    assert "purse balances restored" in (data / "host.log").read_text()


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
    return prepaid(stan, {"04": "ISSUE"}, 0, now=NOW)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(OPS, max_size=25), auto_pay=st.booleans())
def test_replaying_the_journal_rebuilds_the_live_issuer_state(ops, auto_pay):
    live = live_issuer(auto_pay)
    orders: list[str] = []
    with tempfile.TemporaryDirectory() as folder, Journal(Path(folder) / "j.sqlite3") as journal:
        for stan, op in enumerate(ops, start=1):
            resp = journal_decide(live, journal, _request(live, orders, op, stan))
            if op[0] == "create" and resp["39"] == "00":
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


def test_reversed_entries_are_not_replayed(tmp_path):
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
    assert restored.purses[ASN]["balance"] == 5000 - 300, "the reversed load is not credited"
    assert order not in restored.orders, "a reversed order creation is not restored"
    assert restored._order_seq == live._order_seq, "its id is still never reused"
    assert report.skipped_reversed == 2
