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
Card accounts (open-to-buy, holds, PIN tries) are not replayed: they start from the profiles
and configuration.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rig.host import flows_misc
from rig.host.reconcile import APPROVED, private

if TYPE_CHECKING:
    from rig.host.issuer import Issuer
    from rig.host.journal import Journal, JournalEntry

__all__ = ["RESTORED_KINDS", "RestoreReport", "replay", "restore", "undo"]

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
    unreadable: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary for the host log."""
        return {
            "entries": self.entries,
            "replayed": self.replayed,
            "reversed": self.reversed,
            "orders": self.orders,
            "purses": self.purses,
            "order_seq": self.order_seq,
            "unreadable": self.unreadable[:20],
        }


def restore(issuer: Issuer, journal: Journal) -> RestoreReport:
    """Replay the journal's committed QR and prepaid entries into a fresh `issuer`."""
    return replay(issuer, journal.entries(kinds=RESTORED_KINDS))


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
