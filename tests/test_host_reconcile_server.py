"""Reconciliation counts what a terminal's batch totals count (QR and prepaid included), and a
running host shows in / out of balance over a real socket: 0500/0510 and `ctl reconcile`.

In-process checks run the issuer and the journal as the server does; the socket checks start a
host process. TEST PANs and TEST KEYS only.
"""

from __future__ import annotations

import json

import pytest
from test_host_issuer_restore import (
    NOW,
    TID,
    balance_of,
    cpm_payment,
    journal_decide,
    live_issuer,
    mpm,
    order_of,
    prepaid,
    purse_balance,
    purse_load,
    purse_purchase,
)
from typer.testing import CliRunner

from rig.host import reconcile
from rig.host.cli import app, init_data
from rig.host.control import ControlError, HostProcess
from rig.host.journal import Journal
from rig.host.loadgen import TerminalClient, chip_authorization
from rig.iso8583 import messages as m
from rig.profiles import load_all

MID = "MERCHANT0000001"
CHIP = "visa-no-cvm-under-floor"  # TEST profile
runner = CliRunner()


# ---- what counts (issuer and journal in-process) ---------------------------------------------


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / "j.sqlite3") as j:
        yield j


def _qr_and_prepaid_batch(journal: Journal, auto_pay: bool = True) -> dict[str, int]:
    """One CPM sale, one MPM order (created, queried twice), prepaid ISSUE/BALANCE/LOAD and
    one purse purchase record, all in batch 000005; returns journal ids by name."""
    issuer = live_issuer(auto_pay)
    b = {"batch": "000005", "now": NOW}
    ids: dict[str, int] = {}

    def send(name: str, doc: dict) -> dict:
        resp = journal_decide(issuer, journal, doc)
        assert resp["39"] == "00", (name, resp)
        ids[name] = journal.count()
        return resp

    send("cpm", cpm_payment(1, 1000, batch="000005"))
    order, _ = order_of(send("create", mpm(2, 1500, **b)))
    if not auto_pay:  # the wallet pays between two status queries
        assert order_of(send("pending", mpm(3, None, order, **b)))[1] == "PENDING"
        issuer.set_order_status(order, "PAID")
    assert order_of(send("paid", mpm(4, None, order, **b)))[1] == "PAID"
    assert order_of(send("paid_again", mpm(5, None, order, **b)))[1] == "PAID"
    send("issue", prepaid(6, {"04": "ISSUE"}, 0, **b))
    send("balance", purse_balance(7, **b))
    send("load", purse_load(8, 2000, 5000, **b))
    send("record", purse_purchase(9, 1200, 9, **b))
    return ids


@pytest.mark.parametrize("auto_pay", [True, False])
def test_qr_and_prepaid_count_as_a_terminal_counts(journal, auto_pay):
    ids = _qr_and_prepaid_batch(journal, auto_pay)
    entries = journal.entries(terminal_id=TID, batch="000005")
    cats = {e.id: reconcile.category(e) for e in entries}
    assert cats[ids["cpm"]] == "sale"
    assert cats[ids["create"]] is None, "creating an order is not a sale"
    assert cats.get(ids.get("pending")) is None, "a PENDING answer is not a sale"
    assert cats[ids["paid"]] == cats[ids["paid_again"]] == "sale"
    assert cats[ids["issue"]] is cats[ids["balance"]] is cats[ids["load"]] is None
    assert cats[ids["record"]] == "sale", "an uploaded purse purchase is a sale"
    assert [(e.id, c, a) for e, c, a in reconcile.posted(entries)] == [
        (ids["cpm"], "sale", 1000),
        (ids["paid"], "sale", 1500),  # once per order, at the order's amount (no DE4 here)
        (ids["record"], "sale", 1200),
    ]
    ok, diffs = journal.compare(TID, "000005", m.Totals(3, 3700, 0, 0))
    assert ok and diffs == []


def test_wrong_qr_and_prepaid_counts_list_the_differing_transactions(journal):
    ids = _qr_and_prepaid_batch(journal)
    # the terminal missed the QR sale
    ok, diffs = journal.compare(TID, "000005", m.Totals(2, 2200, 0, 0))
    assert not ok
    figures = {d["field"]: d["difference"] for d in diffs if d["type"] == "figure"}
    assert figures == {"sale_count": 1, "sale_amount": 1500}
    txns = [d for d in diffs if d["type"] == "transaction"]
    assert [(t["id"], t["amount"], t["category"]) for t in txns] == [(ids["paid"], 1500, "sale")]
    assert "not in the terminal's totals" in txns[0]["reason"]
    # the terminal missed the purse purchase record and the CPM sale
    ok, diffs = journal.compare(TID, "000005", m.Totals(1, 1500, 0, 0))
    assert not ok
    assert {d["id"] for d in diffs if d["type"] == "transaction"} == {ids["cpm"], ids["record"]}
    # the terminal counted the top-up as a sale: figures only, no host entry explains it
    ok, diffs = journal.compare(TID, "000005", m.Totals(4, 5700, 0, 0))
    assert not ok and {d["type"] for d in diffs} == {"figure"}


def test_qr_refunds_and_reversed_qr_sales(journal):
    issuer = live_issuer()
    b = {"batch": "000006", "now": NOW}
    order, _ = order_of(journal_decide(issuer, journal, mpm(1, 2500, **b)))
    assert order_of(journal_decide(issuer, journal, mpm(2, 2500, order, **b)))[1] == "PAID"
    refund = journal_decide(issuer, journal, mpm(3, 2500, order, refund=True, **b))
    assert order_of(refund) == (order, "REFUNDED")
    assert journal_decide(issuer, journal, cpm_payment(4, 700, batch="000006"))["39"] == "00"
    assert (
        journal_decide(issuer, journal, cpm_payment(5, 200, batch="000006", refund=True))["39"]
        == "00"
    )
    assert journal.totals(TID, "000006") | {"terminal_id": 0, "batch": 0} == {
        "terminal_id": 0,
        "batch": 0,
        "sale_count": 2,
        "sale_amount": 2500 + 700,
        "refund_count": 2,
        "refund_amount": 2500 + 200,
    }


# ---- over a socket: 0500 / 0510 and ctl reconcile ------------------------------------------


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    data = tmp_path_factory.mktemp("host")
    init_data(data, [TID])
    proc = HostProcess(data, "--listen", "127.0.0.1:0")
    proc.data = data
    yield proc
    assert proc.stop() == 0


def _chip(profile, stan: int, amount: int, batch: str, builder=m.purchase) -> dict:
    return chip_authorization(
        profile,
        stan=stan,
        terminal_id=TID,
        amount=amount,
        atc=stan,
        builder=builder,
        merchant_id=MID,
        batch=batch,
    )


def _upload(c: TerminalClient, stan: int, batch: int, totals: m.Totals) -> dict:
    doc = m.reconciliation(stan=stan, terminal_id=TID, merchant_id=MID, batch=batch, totals=totals)
    return c.exchange(doc, 5)


def test_0500_and_ctl_reconcile_in_and_out_of_balance(host):
    profile = load_all("cardprofiles")[CHIP]
    batch = "000011"
    b = {"batch": batch}
    with TerminalClient(host.listener("len2"), "len2") as c:
        for stan, amount in ((101, 1000), (102, 2500), (103, 4000)):
            assert c.exchange(_chip(profile, stan, amount, batch), 5)["39"] == "00"
        assert c.exchange(_chip(profile, 104, 300, batch, m.refund), 5)["39"] == "00"
        reversed_sale = _chip(profile, 105, 3300, batch)
        assert c.exchange(reversed_sale, 5)["39"] == "00"
        rev = c.exchange(m.reversal(reversed_sale, stan=106, reason="98"), 5)
        assert rev["t"] == "0410" and rev["39"] == "00"
        order, status = order_of(c.exchange(mpm(107, 1500, **b), 5))
        assert status == "PENDING"
        assert order_of(c.exchange(mpm(108, None, order, **b), 5)) == (order, "PAID")
        assert c.exchange(purse_load(109, 2000, 5000, **b), 5)["39"] == "00"
        assert balance_of(c.exchange(purse_balance(110, **b), 5)) == 7000

        with host.control() as ctl:
            before = ctl.reconcile(TID, 11)
        assert before["in_balance"] is None and before["reconciliation"] is None
        assert before["host_totals"] == {
            "sale_count": 4,
            "sale_amount": 1000 + 2500 + 4000 + 1500,
            "refund_count": 1,
            "refund_amount": 300,
        }
        host_totals = m.Totals(4, 9000, 1, 300)

        ok = _upload(c, 111, 11, host_totals)
        assert (ok["t"], ok["39"], ok["63"]) == ("0510", "00", host_totals.encode())
        with host.control() as ctl:
            report = ctl.reconcile(TID, batch)
        assert report["in_balance"] is True and report["differences"] == []
        assert report["terminal_totals"] == report["host_totals"]

        # the terminal still counts the reversed sale
        wrong = _upload(c, 112, 11, m.Totals(5, 12300, 1, 300))
        assert wrong["39"] == "95" and m.Totals.decode(wrong["63"]) == host_totals
    rows = {r["stan"]: r for r in _journal(host)}
    with host.control() as ctl:
        report = ctl.reconcile(TID, batch)
    assert report["in_balance"] is False
    assert report["reconciliation"] == {"id": rows["000112"]["id"], "stan": "000112", "rc": "95"}
    figures = {d["field"]: d["difference"] for d in report["differences"] if d["type"] == "figure"}
    assert figures == {"sale_count": -1, "sale_amount": -3300}
    (txn,) = [d for d in report["differences"] if d["type"] == "transaction"]
    assert txn["id"] == rows["000105"]["id"] and txn["reversed"] and txn["amount"] == 3300
    assert txn["pan_masked"] == rows["000105"]["pan_masked"] and "*" in txn["pan_masked"]

    text = runner.invoke(
        app, ["ctl", "reconcile", "--data", str(host.data), "--terminal", TID, "--batch", "11"]
    )
    assert text.exit_code == 0, text.output
    assert "OUT OF BALANCE" in text.output and "REVERSED" in text.output
    assert f"entry {rows['000105']['id']} 0200 STAN 000105 sale 3300" in text.output
    as_json = runner.invoke(
        app,
        [
            "ctl",
            "reconcile",
            "--data",
            str(host.data),
            "--terminal",
            TID,
            "--batch",
            batch,
            "--json",
        ],
    )
    assert as_json.exit_code == 0 and json.loads(as_json.output) == report
    pan = profile.applications[0].pan
    assert pan not in text.output and pan not in as_json.output


def _journal(host) -> list[dict]:
    with host.control() as ctl:
        return ctl.journal()


def test_0500_lists_a_sale_the_terminal_missed(host):
    profile = load_all("cardprofiles")[CHIP]
    batch = "000012"
    with TerminalClient(host.listener("len2"), "len2") as c:
        assert c.exchange(_chip(profile, 201, 1200, batch), 5)["39"] == "00"
        assert c.exchange(_chip(profile, 202, 800, batch), 5)["39"] == "00"
        assert _upload(c, 203, 12, m.Totals(1, 1200, 0, 0))["39"] == "95"
    rows = {r["stan"]: r for r in _journal(host)}
    with host.control() as ctl:
        report = ctl.reconcile(TID, "12")
    (txn,) = [d for d in report["differences"] if d["type"] == "transaction"]
    assert (txn["id"], txn["stan"], txn["amount"]) == (rows["000202"]["id"], "000202", 800)
    assert "not in the terminal's totals" in txn["reason"] and not txn["reversed"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--terminal", "SHORT", "--batch", "1"], "8-character DE41"),
        (["--terminal", TID, "--batch", "12ab"], "1-6 digits"),
        (["--terminal", TID, "--batch", "1234567"], "1-6 digits"),
    ],
)
def test_ctl_reconcile_bad_input_is_one_clear_error(host, args, words):
    result = runner.invoke(app, ["ctl", "reconcile", "--data", str(host.data), *args])
    assert result.exit_code == 2 and words in result.output
    assert "Traceback" not in result.output
    with host.control() as ctl, pytest.raises(ControlError, match="DE60"):
        ctl.reconcile(TID, "x")


def test_ctl_reconcile_help():
    result = runner.invoke(app, ["ctl", "reconcile", "--help"])
    assert result.exit_code == 0 and "--terminal" in result.output and "--batch" in result.output
