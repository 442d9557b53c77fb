"""Card accounts survive a host restart: `rig.host.issuer_restore.restore_accounts` rebuilds each
card's open-to-buy (the DE54 of its latest approved answer, plus the advices after it) and its
pre-authorisation holds from the journal. A real host process is stopped (SIGTERM or kill -9)
and started again on the same data folder; a hypothesis test checks that a random run of card
requests restores to exactly the live issuer's accounts; masked PANs matching several profile
cards are skipped and reported. TEST KEYS and TEST PANs only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_host_issuer_restore import MID, NOW, PROFILES, TID, cpm_payment, journal_decide

from rig.host import issuer_restore
from rig.host.cli import init_data
from rig.host.control import HostProcess
from rig.host.issuer import DEFAULT_OPEN_TO_BUY, Issuer
from rig.host.journal import Journal, JournalEntry
from rig.host.loadgen import TerminalClient, chip_authorization
from rig.host.rules import Action, RuleSet
from rig.iso8583 import messages as m
from rig.iso8583.messages import mask_pan

CARDS = ("visa-signature", "mc-debit-cda", "unionpay-debit-pboc")


def _balance_inquiry(*, amount: int, **kw: Any) -> dict[str, str]:
    return m.balance_inquiry(**kw)


BUILDERS = {
    "auth": m.authorization,
    "purchase": m.purchase,
    "preauth": m.pre_authorization,
    "refund": m.refund,
    "advice": m.advice,
    "balance": _balance_inquiry,
}


def card_request(
    kind: str, card: str, stan: int, amount: int = 0, *, now: Any = None, **kw: Any
) -> dict[str, str]:
    """A chip request (valid ARQC, TEST keys) of `kind` for a profile card."""
    return chip_authorization(
        PROFILES[card],
        stan=stan,
        terminal_id=TID,
        amount=amount,
        now=now,
        builder=BUILDERS[kind],
        merchant_id=MID,
        **kw,
    )


def available_of(resp: dict[str, str]) -> int:
    """The available balance in a response's DE54 (amount type 02)."""
    de54 = resp["54"]
    assert de54[2:4] == "02", de54
    return int(de54[8:20]) * (1 if de54[7] == "C" else -1)


# ---- a real host, restarted ----------------------------------------------------------------


class Terminal:
    """One terminal's requests to a host process; the STAN keeps counting across restarts."""

    def __init__(self, card: str = "visa-signature") -> None:
        self.card = card
        self.stan = 0
        self.client: TerminalClient | None = None

    def send(self, doc: dict[str, str]) -> dict[str, str]:
        assert self.client is not None
        resp = self.client.exchange(doc, 5)
        assert resp is not None
        return resp

    def request(self, kind: str, amount: int = 0, **kw: Any) -> dict[str, str]:
        self.stan += 1
        return card_request(kind, self.card, self.stan, amount, **kw)

    def balance(self) -> int:
        resp = self.send(self.request("balance"))
        assert resp["39"] == "00"
        return available_of(resp)

    def reverse(self, original: dict[str, str]) -> dict[str, str]:
        self.stan += 1
        return self.send(m.reversal(original, stan=self.stan, reason="98"))


@contextlib.contextmanager
def _session(data: Path, term: Terminal, how: str = "sigterm") -> Iterator[Terminal]:
    """A host on `data` with `term` connected; stopped by SIGTERM, or by kill -9."""
    host = HostProcess(data, "--listen", "127.0.0.1:0")
    try:
        with TerminalClient(host.listener("len2"), "len2") as term.client:
            yield term
    finally:
        if how == "kill-9":
            host.kill()
        else:
            assert host.stop() == 0


@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
def test_open_to_buy_continues_after_a_restart(tmp_path, how):
    data = tmp_path / "host"
    init_data(data, [TID])
    term = Terminal()
    with _session(data, term, how):
        resp = term.send(term.request("purchase", 1500))
        assert resp["39"] == "00" and available_of(resp) == DEFAULT_OPEN_TO_BUY - 1500
        offline = term.send(term.request("advice", DEFAULT_OPEN_TO_BUY - 1500 - 5000))
        assert offline["39"] == "00" and "54" not in offline, "an 0230 carries no DE54"
    with _session(data, term, how):
        assert term.balance() == 5000, "the latest DE54 and the offline advice after it"
        resp = term.send(term.request("purchase", 3000))
        assert resp["39"] == "00" and available_of(resp) == 2000
    with _session(data, term):
        assert term.send(term.request("purchase", 2500))["39"] == "51", "above the open-to-buy"
        assert term.balance() == 2000
    log = (data / "host.log").read_text()
    assert "'accounts': 1" in log
    assert PROFILES["visa-signature"].applications[0].pan not in log


def test_holds_and_reversals_survive_restarts(tmp_path):
    data = tmp_path / "host"
    init_data(data, [TID])
    term = Terminal("mc-debit-cda")
    start = DEFAULT_OPEN_TO_BUY
    with _session(data, term, "kill-9"):
        first = term.send(term.request("preauth", 4000))
        assert first["39"] == "00" and available_of(first) == start - 4000
        second_doc = term.request("preauth", 1000)
        second = term.send(second_doc)
        assert available_of(second) == start - 5000
        sale_doc = term.request("purchase", 2000)
        assert available_of(term.send(sale_doc)) == start - 7000
    with _session(data, term, "kill-9"):
        assert term.balance() == start - 7000
        done = term.send(term.request("advice", 3500, auth_id=first["38"]))
        assert done["39"] == "00"
        assert term.balance() == start - 7000 + 4000 - 3500, "the restored hold was released"
        rev = term.reverse(sale_doc)
        assert rev["t"] == "0410" and rev["39"] == "00"
        assert available_of(rev) == start - 4500, "the 0410 carries the open-to-buy after"
        third = term.send(term.request("preauth", 700))
        assert int(third["38"]) == int(second["38"]) + 3, "auth ids continue past the journal's"
    with _session(data, term):
        assert term.balance() == start - 4500 - 700
        again = term.send(term.request("advice", 100, auth_id=first["38"]))
        assert again["39"] == "00"
        assert term.balance() == start - 5300, "a completed hold is not restored: offline debit"
        rev = term.reverse(second_doc)
        assert available_of(rev) == start - 4300, "the second pre-authorisation's hold released"
    with _session(data, term):
        assert term.balance() == start - 4300
        done = term.send(term.request("advice", 700, auth_id=third["38"]))
        assert done["39"] == "00"
        assert term.balance() == start - 4300, "the hold placed after a restart, completed"


# ---- restore equals the live issuer ----------------------------------------------------------

OPEN_TO_BUY = 12_000
CARD = st.sampled_from(CARDS)
AMOUNT = st.integers(1, 9000) | st.sampled_from([4000, 6000, 9000])  # 51s too
OPS = st.one_of(
    st.tuples(st.sampled_from(["auth", "purchase", "preauth", "refund"]), CARD, AMOUNT),
    st.tuples(st.just("preauth"), CARD, AMOUNT),
    st.tuples(st.just("complete"), CARD, st.integers(0, 9), AMOUNT),
    st.tuples(st.just("offline"), CARD, AMOUNT),
    st.tuples(st.just("balance"), CARD),
    st.tuples(st.just("expired"), st.sampled_from(["advice", "preauth", "refund"]), AMOUNT),
    st.tuples(st.just("force"), st.sampled_from(["00", "05"])),
    st.tuples(st.just("reverse"), st.integers(0, 40)),
)


def live_issuer(**kw: Any) -> Issuer:
    """A host's issuer with a small open-to-buy (so 51 happens) and forced answers only."""
    kw.setdefault("now", lambda: NOW)
    return Issuer(PROFILES, None, RuleSet(), open_to_buy=OPEN_TO_BUY, **kw)


def reverse(issuer: Issuer, journal: Journal, doc: dict[str, str], legacy: bool) -> None:
    """What the server does with a 0400; `legacy`: journal the 0410 without DE54, as hosts
    before it carried one did."""
    de90 = doc["90"]
    original = journal.find_original(doc["41"], de90[4:10], de90[10:20])
    decision = issuer.decide(doc, original=original)
    resp = m.response_to(doc, decision.rc)
    resp.update(decision.fields)
    if legacy:
        resp.pop("54", None)
    entry = JournalEntry.from_messages(doc, resp, kind=decision.kind)
    if original is not None and decision.rc == "00":
        asyncio.run(journal.mark_reversed(original.id, entry))
    else:
        journal.append_sync(entry, unique=False)


def run(live: Issuer, journal: Journal, ops: list[tuple[Any, ...]], legacy: bool) -> None:
    """Send `ops` through the live issuer, journaling each request/response."""
    sent: list[dict[str, str]] = []
    holds: list[str] = []
    for stan, op in enumerate(ops, start=1):
        kind = op[0]
        if kind == "force":
            live.rules.force_next(Action(rc=op[1]))
            continue
        if kind == "reverse":
            if sent:
                doc = m.reversal(sent[op[1] % len(sent)], stan=stan, now=NOW, reason="98")
                reverse(live, journal, doc, legacy)
            continue
        if kind == "complete":
            auth_id = holds[op[2] % len(holds)] if holds else "999999"
            doc = card_request("advice", op[1], stan, op[3], now=NOW, auth_id=auth_id)
        elif kind == "offline":
            doc = card_request("advice", op[1], stan, op[2], now=NOW)
        elif kind == "expired":  # declined 54 unless a rule forces 00: nothing posted either way
            doc = card_request(op[1], "visa-expired", stan, op[2], now=NOW)
        else:
            doc = card_request(kind, op[1], stan, op[2] if len(op) > 2 else 0, now=NOW)
        resp = journal_decide(live, journal, doc)
        sent.append(doc)
        if kind == "preauth" and resp["39"] == "00":
            holds.append(resp["38"])


def accounts(issuer: Issuer) -> dict[str, tuple[int, dict[str, int]]]:
    return {pan: (a.available, a.holds) for pan, a in issuer.accounts.items()}


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(OPS, max_size=30), legacy=st.booleans())
@example(
    ops=[("preauth", CARDS[0], 4000), ("purchase", CARDS[0], 100), ("complete", CARDS[0], 0, 300)],
    legacy=False,
)
@example(
    ops=[("preauth", CARDS[1], 4000), ("purchase", CARDS[1], 100), ("reverse", 0)], legacy=True
)
@example(
    ops=[("preauth", CARDS[2], 9000), ("force", "00"), ("preauth", CARDS[2], 9000)],
    legacy=False,
)
@example(ops=[("force", "00"), ("expired", "advice", 500)], legacy=False)
def test_restored_accounts_equal_the_live_issuer(ops, legacy):
    """Random purchases, refunds, pre-authorisations, completions, offline advices, forced
    answers (also approvals of an expired card) and reversals on three cards: a fresh issuer
    restored from the journal has every card's open-to-buy and holds, and continues the auth
    ids."""
    live = live_issuer()
    with tempfile.TemporaryDirectory() as folder, Journal(Path(folder) / "j.sqlite3") as journal:
        run(live, journal, ops, legacy)
        restored = live_issuer(now=lambda: NOW + timedelta(hours=1))
        report = issuer_restore.restore(restored, journal)
        auth_ids = [e.auth_id for e in journal.entries() if e.auth_id]
    for pan in set(live.accounts) | set(restored.accounts):
        want, got = live.account(pan), restored.account(pan)
        assert (got.available, got.holds) == (want.available, want.holds), pan
    assert report.unreadable == [] and report.ambiguous_masks == []
    assert report.unknown_card_entries == report.no_pan_entries == 0
    assert report.holds == sum(len(a.holds) for a in live.accounts.values())
    if auth_ids:
        assert restored.next_auth_id() == live.next_auth_id()


# ---- masked PANs that name no single card --------------------------------------------------

VISA = PROFILES["visa-signature"].applications[0].pan
TWIN = VISA[:6] + "999999" + VISA[-4:]  # the same first 6 / last 4: the same journal mask


def with_twin(issuer: Issuer) -> Issuer:
    """The issuer with a second card whose masked PAN equals visa-signature's."""
    ref = issuer.by_pan[VISA]
    issuer.by_pan[TWIN] = dataclasses.replace(ref, pan=TWIN)
    return issuer


def keyed(pan: str, stan: int, amount: int, builder: Any = m.purchase) -> dict[str, str]:
    """A manually keyed request (no chip data), so the twin card passes the card checks."""
    return builder(
        amount=amount, stan=stan, terminal_id=TID, merchant_id=MID, pan=pan, entry_mode="012"
    )


def test_a_mask_shared_by_two_cards_is_skipped_and_reported(tmp_path, caplog):
    assert mask_pan(TWIN) == mask_pan(VISA) and TWIN != VISA
    live = with_twin(live_issuer())
    with Journal(tmp_path / "j.sqlite3") as journal:
        for stan, (pan, amount) in enumerate([(VISA, 1000), (TWIN, 3000), (VISA, 500)], start=1):
            assert journal_decide(live, journal, keyed(pan, stan, amount))["39"] == "00"
        mc = card_request("preauth", "mc-debit-cda", 4, 2500, now=NOW)
        assert journal_decide(live, journal, mc)["39"] == "00"
        restored = with_twin(live_issuer())
        with caplog.at_level(logging.WARNING, logger="rig.host.issuer_restore"):
            report = issuer_restore.restore(restored, journal)
        alone = issuer_restore.restore(live_issuer(), journal)
    assert live.account(VISA).available == OPEN_TO_BUY - 1500
    assert live.account(TWIN).available == OPEN_TO_BUY - 3000
    assert VISA not in restored.accounts and TWIN not in restored.accounts, "never guessed"
    assert report.ambiguous_masks == [mask_pan(VISA)]
    assert report.ambiguous_card_entries == 3
    mc_pan = PROFILES["mc-debit-cda"].applications[0].pan
    assert restored.account(mc_pan).available == OPEN_TO_BUY - 2500, "other cards restored"
    assert len(restored.account(mc_pan).holds) == 1 and report.accounts == report.holds == 1
    assert mask_pan(VISA) in caplog.text and "2 card profiles" in caplog.text
    assert VISA not in caplog.text and TWIN not in caplog.text
    assert alone.ambiguous_masks == [] and alone.accounts == 2, "one card with that mask: its own"


def test_entries_of_unknown_cards_and_without_a_pan_are_counted(tmp_path, caplog):
    live = live_issuer()
    with Journal(tmp_path / "j.sqlite3") as journal:
        doc = card_request("purchase", "mc-debit-cda", 1, 700, now=NOW)
        assert journal_decide(live, journal, doc)["39"] == "00"
        assert journal_decide(live, journal, cpm_payment(2, 900))["39"] == "00"
        profiles = {k: v for k, v in PROFILES.items() if k != "mc-debit-cda"}
        restored = Issuer(profiles, None, RuleSet(), now=lambda: NOW, open_to_buy=OPEN_TO_BUY)
        with caplog.at_level(logging.INFO, logger="rig.host.issuer_restore"):
            report = issuer_restore.restore(restored, journal)
    assert report.unknown_card_entries == 1 and report.no_pan_entries == 1
    assert report.accounts == 0 and restored.accounts == {}
    assert "1 journal entries of 1 masked PANs in no card profile" in caplog.text
    assert PROFILES["mc-debit-cda"].applications[0].pan not in caplog.text
