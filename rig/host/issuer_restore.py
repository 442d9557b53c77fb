"""Rebuild the issuer's QR orders and purse balances from the journal when the host starts.

`Issuer.orders` (merchant-presented QR orders) and `Issuer.purses` (prepaid balances) live in
memory; every request that changed them is in the journal. `restore(issuer, journal)` replays
the journalled QR and prepaid entries in id order with the flows' own effects (`flows_misc`), so
a restart, or a kill -9, resumes from the last durable answer. Each entry changes what the
flow changed when it answered: purse loads and purchase records and QR refunds when approved
(their effects run only on RC 00), QR order creation and status as the answer's DE48 shows
(the flow sets them before a rule picks the RC). A reversed entry is applied in its place and
taken back with `undo` at its reversal's place (`reversed_by`), as the live reversal did
(`flows_card.reversal` calls the same `undo`), so a later answer that overwrote it stays.
Purse keys are the issuer's (from the key store) as in the live flow; the journal holds none.

Card accounts are rebuilt from what the journal selects in SQL (`Journal.card_history`), not by
replaying every entry: a card's open-to-buy is the DE54 of its latest approved answer carrying
DE54 (financial answers, balance inquiries, reversals), plus what the approved answers after it
that carry none changed (advices; reversals journaled before 0410s carried DE54). Its holds are
its approved pre-authorisations (those answered with DE54: the hold was placed) that no
completion (0220 with their DE38) or reversal released. Journal entries hold masked PANs only:
an entry counts for the one profile card with that first 6 / last 4; entries matching none or
several cards are skipped, counted and logged. PIN tries are not journaled: they start from
the profiles. The auth id counter continues after the latest journaled DE38, so a new hold
never takes the key of a restored one.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rig.host import flows_misc
from rig.host.flows_card import completion_change, reversal_change
from rig.host.reconcile import APPROVED, private
from rig.iso8583.messages import mask_pan

if TYPE_CHECKING:
    from rig.host.issuer import Issuer
    from rig.host.journal import Journal, JournalEntry

__all__ = ["RESTORED_KINDS", "RestoreReport", "replay", "restore", "restore_accounts", "undo"]

log = logging.getLogger("rig.host.issuer_restore")

RESTORED_KINDS = ("qr", "prepaid")
"""Journal kinds whose entries can change issuer state that survives a restart."""


@dataclass
class RestoreReport:
    """What a restore read and rebuilt (counts, and entry ids it could not read)."""

    entries: int = 0
    replayed: int = 0
    reversed: int = 0
    orders: int = 0
    purses: int = 0
    order_seq: int = 0
    accounts: int = 0
    holds: int = 0
    card_entries: int = 0
    unknown_card_entries: int = 0
    ambiguous_card_entries: int = 0
    no_pan_entries: int = 0
    ambiguous_masks: list[str] = field(default_factory=list)
    unreadable: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary for the host log (lists cut to their first 20)."""
        return {k: v[:20] if isinstance(v, list) else v for k, v in asdict(self).items()}


def restore(issuer: Issuer, journal: Journal) -> RestoreReport:
    """Replay the journal's committed QR and prepaid entries into a fresh `issuer`, then
    rebuild its card accounts (open-to-buy, holds) from the journal's card history."""
    report = replay(issuer, journal.entries(kinds=RESTORED_KINDS))
    restore_accounts(issuer, journal.card_history(), report)
    return report


def replay(issuer: Issuer, entries: Iterable[JournalEntry]) -> RestoreReport:
    """Apply `entries` (oldest first) to `issuer.orders`, `issuer.purses` and its order counter;
    a reversed entry is undone once the replay passes its reversal's id."""
    report = RestoreReport()
    reversals: list[tuple[int, int, JournalEntry]] = []
    for e in entries:
        _undo_reversed_before(issuer, reversals, e.id or 0)
        report.entries += 1
        report.replayed += _apply(issuer, e, report)
        if e.reversed:
            report.reversed += 1
            heapq.heappush(reversals, (e.reversed_by or e.id or 0, e.id or 0, e))
    _undo_reversed_before(issuer, reversals, None)
    report.orders = len(issuer.orders)
    report.purses = len(issuer.purses)
    report.order_seq = issuer._order_seq
    return report


def undo(issuer: Issuer, entry: Any) -> bool:
    """Take back what replaying `entry` changed, on the issuer's state now: a LOAD's amount off
    the balance (it may go below zero), a purchase record's back on, a created order removed,
    a PAID status answer back to PENDING, a refund back to PAID. True when something changed.
    The live reversal and the restore both call it, so they cannot disagree."""
    if getattr(entry, "kind", None) not in RESTORED_KINDS:
        return False
    request = getattr(entry, "request", None) or {}
    if "62" in request:
        change = _purse_change(issuer, entry, None)
        if change is None:
            return False
        state, kind, amount, _ = change
        state["balance"] += -amount if kind == "LOAD" else amount
        return True
    if "48" not in request:
        return False
    order_id, action, status = _order_change(issuer, entry, None)
    order = issuer.orders.get(order_id) if order_id else None
    if action == "create":
        return issuer.orders.pop(order_id, None) is not None
    if order is None or order["status"] != status:
        return False
    if action == "refund":
        order["status"] = "PAID"
        return True
    if action == "status" and status == "PAID":
        order["status"] = "PENDING"
        return True
    return False


def _undo_reversed_before(
    issuer: Issuer, reversals: list[tuple[int, int, JournalEntry]], entry_id: int | None
) -> None:
    """Undo, in reversal order, the reversed entries whose reversal came before `entry_id`."""
    while reversals and (entry_id is None or reversals[0][0] < entry_id):
        undo(issuer, heapq.heappop(reversals)[2])


def _apply(issuer: Issuer, e: JournalEntry, report: RestoreReport) -> bool:
    """Change the issuer's state as the flow did when it answered `e`; True when it changed."""
    request = e.request or {}
    if "62" in request:
        change = _purse_change(issuer, e, report)
        if change is None:
            return False
        state, kind, amount, before = change
        state["balance"] = before + amount if kind == "LOAD" else state["balance"] - amount
        return True
    if "48" not in request:
        return False
    order_id, action, status = _order_change(issuer, e, report)
    if order_id is None:
        return False
    _count_order(issuer, order_id)
    if action == "create":
        issuer.orders[order_id] = {
            "amount": e.amount,
            "status": "PENDING",
            "terminal": e.terminal_id,
        }
        return True
    order = issuer.orders.get(order_id)
    if action is None or order is None or status == order["status"]:
        return False
    order["status"] = status
    return True


def _unreadable(e: Any, report: RestoreReport | None) -> None:
    if report is not None:
        report.unreadable.append(getattr(e, "id", None) or 0)


def _purse_change(
    issuer: Issuer, e: Any, report: RestoreReport | None
) -> tuple[dict[str, Any], str, int, int] | None:
    """(purse state, LOAD or PURCHASE, amount, card balance before) of a prepaid entry that
    moved a balance: approved with MAC2 (LOAD, DE62 03 of the request is the card's balance
    before) or with a balance in the answer (PURCHASE record). None for anything else."""
    sub = private(e.request, "62")
    if sub is None:
        _unreadable(e, report)
        return None
    state = flows_misc._purse_state(issuer, sub.get("01", ""))
    amount = e.amount or 0
    if state is None or e.rc not in APPROVED or amount <= 0:
        return None
    answer = private(e.response, "62") or {}
    kind = sub.get("04")
    if kind == "LOAD" and "06" in answer:
        before = sub.get("03", "")
        if before.isdecimal():
            return state, kind, amount, int(before)
        _unreadable(e, report)
    elif kind == "PURCHASE" and "03" in answer:
        return state, kind, amount, 0
    return None


def _order_change(
    issuer: Issuer, e: Any, report: RestoreReport | None
) -> tuple[str | None, str | None, str | None]:
    """(order id, what the entry did, status answered) of an MPM entry: "create" (a PENDING
    order), "status" (the status the answer carries, whatever the RC), "refund" (approved,
    REFUNDED), or None (only the id counts). CPM payments change card accounts only."""
    sub = private(e.request, "48")
    if sub is None:
        _unreadable(e, report)
        return None, None, None
    if sub.get("01") != "MPM":
        return None, None, None
    answer = private(e.response, "48") or {}
    order_id = sub.get("03") or answer.get("03")
    if not order_id:
        return None, None, None
    if not sub.get("03"):
        return order_id, "create" if e.amount else None, "PENDING"
    status = answer.get("04")
    if status not in flows_misc.ORDER_STATUSES:
        return order_id, None, None
    if (e.processing_code or "")[:2] == "20":
        approved = e.rc in APPROVED and status == "REFUNDED"
        return order_id, "refund" if approved else None, status
    return order_id, "status", status


def _count_order(issuer: Issuer, order_id: str) -> None:
    """Keep the order counter past every journalled id, so new ids never repeat an old one."""
    tail = order_id.rpartition("-")[2]
    if tail.isdecimal():
        issuer._order_seq = max(issuer._order_seq, int(tail))


# ---- card accounts ---------------------------------------------------------------------------


@dataclass
class _Card:
    """One card as its journal entries show it: the latest DE54 (entry id, amount), what the
    entries after it without DE54 changed, and its open holds."""

    anchor: int = 0
    available: int | None = None
    change: int = 0
    holds: dict[str, int] = field(default_factory=dict)


def restore_accounts(
    issuer: Issuer, history: Mapping[str, Any], report: RestoreReport | None = None
) -> RestoreReport:
    """Set `available` and `holds` of each profile card that `history` (`Journal.card_history`)
    names, and the auth id counter; entries of masked PANs matching no card or several cards
    are counted in `report` and logged (masked), never guessed."""
    report = report if report is not None else RestoreReport()
    by_mask = _cards_by_mask(issuer)
    cards: dict[str, _Card] = {}
    skipped: dict[str, int] = {}

    def card(mask: str | None, entries: int) -> _Card | None:
        if mask is None:
            report.no_pan_entries += entries
            return None
        pans = by_mask.get(mask, ())
        if len(pans) != 1:
            skipped[mask] = skipped.get(mask, 0) + entries
            return None
        report.card_entries += entries
        return cards.setdefault(pans[0], _Card())

    for mask, entry_id, count, de54 in history["balances"]:
        c = card(mask, count)
        if c is not None:
            c.anchor, c.available = entry_id, _available(de54)
            if c.available is None:
                report.unreadable.append(entry_id)
    for row in history["events"]:
        c = card(row[1], 0 if row[5] else 1)
        if c is not None:
            _card_event(c, row)
    for pan, c in cards.items():
        acct = issuer.account(pan)
        acct.available = (issuer.open_to_buy if c.available is None else c.available) + c.change
        acct.holds = dict(c.holds)
    report.accounts = len(cards)
    report.holds = sum(len(c.holds) for c in cards.values())
    _report_skipped(report, by_mask, skipped)
    last = history.get("auth_id")
    if isinstance(last, str) and len(last) == 6 and last.isdecimal():
        issuer._auth_seq = int(last)
    return report


def _card_event(c: _Card, row: Sequence[Any]) -> None:
    """Apply one approved pre-authorisation, advice or reversal (`Journal.card_history` row) as
    `flows_card` did: holds always, open-to-buy only after the card's latest DE54."""
    entry_id, _, kind, amount, auth_id, has_de54, completes, o_kind, o_amount, o_auth, undid = row
    amount = amount or 0
    if kind == "preauth":
        if has_de54 and auth_id:  # DE54: the debit ran and placed the hold
            c.holds[auth_id] = amount
        return
    if kind == "advice":
        if has_de54 or not auth_id:  # a refund / balance 0220 (DE54), or nothing posted
            return
        change = completion_change(c.holds, completes, amount)
    else:
        if not undid:  # unknown, declined or already reversed original
            return
        change = reversal_change(c.holds, o_kind or "", o_auth, o_amount or amount)
    if entry_id > c.anchor:
        c.change += change


def _cards_by_mask(issuer: Issuer) -> dict[str, list[str]]:
    """Profile PANs by their journal mask (first 6 / last 4)."""
    out: dict[str, list[str]] = {}
    for pan in issuer.by_pan:
        out.setdefault(mask_pan(pan), []).append(pan)
    return out


def _available(de54: Any) -> int | None:
    """The available balance (amount type 02) of a DE54 as `flows_card` writes it, or None."""
    if not isinstance(de54, str):
        return None
    for i in range(0, len(de54) - 19, 20):
        block = de54[i : i + 20]
        if block[2:4] == "02" and block[7] in "CD" and block[8:].isdecimal():
            return int(block[8:]) * (1 if block[7] == "C" else -1)
    return None


def _report_skipped(
    report: RestoreReport, by_mask: Mapping[str, list[str]], skipped: Mapping[str, int]
) -> None:
    """Count and log (masked PANs only) the entries no single profile card owns."""
    unknown = []
    for mask, entries in skipped.items():
        cards = len(by_mask.get(mask, ()))
        if cards > 1:
            report.ambiguous_card_entries += entries
            report.ambiguous_masks.append(mask)
            log.warning(
                "card account %s not restored: %d card profiles share this first 6 / last 4, "
                "so its %d journal entries are skipped; it starts from the configuration",
                mask,
                cards,
                entries,
            )
        else:
            report.unknown_card_entries += entries
            unknown.append(mask)
    if unknown:
        log.warning(
            "%d journal entries of %d masked PANs in no card profile skipped (e.g. %s)",
            report.unknown_card_entries,
            len(unknown),
            ", ".join(unknown[:5]),
        )
    if report.no_pan_entries:
        log.info(
            "%d approved answers with DE54 but no PAN in the journal (CPM, chip data only) "
            "cannot be assigned to a card; later DE54 answers of the card include them",
            report.no_pan_entries,
        )
