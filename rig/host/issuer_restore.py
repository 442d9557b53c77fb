"""Rebuild the issuer's QR orders and purse balances from the journal when the host starts.

`Issuer.orders` (merchant-presented QR orders) and `Issuer.purses` (prepaid balances) live in
memory; every request that changed them is in the journal. `restore(issuer, journal)` replays
the journalled QR and prepaid entries in id order with the flows' own effects (`flows_misc`), so
a restart, or a kill -9, resumes from the last durable answer. Each entry changes what the
flow changed when it answered: purse loads and purchase records and QR refunds when approved
(their effects run only on RC 00), QR order creation and status as the answer's DE48 shows
(the flow sets them before a rule picks the RC). Reversed entries are skipped. Purse keys are
the issuer's (from the key store) as in the live flow; the journal holds none. Card accounts
(open-to-buy, holds, PIN tries) are not replayed: they start from the profiles and configuration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rig.host import flows_misc
from rig.host.reconcile import APPROVED, private

if TYPE_CHECKING:
    from rig.host.issuer import Issuer
    from rig.host.journal import Journal, JournalEntry

__all__ = ["RESTORED_KINDS", "RestoreReport", "replay", "restore"]

RESTORED_KINDS = ("qr", "prepaid")
"""Journal kinds whose entries can change issuer state that survives a restart."""


@dataclass
class RestoreReport:
    """What a restore read and rebuilt (counts, and entry ids it could not read)."""

    entries: int = 0
    replayed: int = 0
    skipped_reversed: int = 0
    orders: int = 0
    purses: int = 0
    order_seq: int = 0
    unreadable: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary for the host log."""
        return {
            "entries": self.entries,
            "replayed": self.replayed,
            "skipped_reversed": self.skipped_reversed,
            "orders": self.orders,
            "purses": self.purses,
            "order_seq": self.order_seq,
            "unreadable": self.unreadable[:20],
        }


def restore(issuer: Issuer, journal: Journal) -> RestoreReport:
    """Replay the journal's committed QR and prepaid entries into a fresh `issuer`."""
    return replay(issuer, journal.entries(kinds=RESTORED_KINDS))


def replay(issuer: Issuer, entries: Iterable[JournalEntry]) -> RestoreReport:
    """Apply `entries` (oldest first) to `issuer.orders`, `issuer.purses` and its order counter."""
    report = RestoreReport()
    for e in entries:
        report.entries += 1
        request = e.request or {}
        if "62" in request:
            changed = _prepaid(issuer, e, report)
        elif "48" in request:
            changed = _qr(issuer, e, report)
        else:
            changed = False
        report.replayed += changed
    report.orders = len(issuer.orders)
    report.purses = len(issuer.purses)
    report.order_seq = issuer._order_seq
    return report


def _applies(e: JournalEntry, report: RestoreReport) -> bool:
    """True for an approved entry that was not reversed (a reversed one is counted)."""
    if e.rc not in APPROVED:
        return False
    if e.reversed:
        report.skipped_reversed += 1
        return False
    return True


def _prepaid(issuer: Issuer, e: JournalEntry, report: RestoreReport) -> bool:
    """LOAD: balance = card's balance before + amount; PURCHASE record: balance - amount."""
    sub = private(e.request, "62")
    if sub is None:
        report.unreadable.append(e.id or 0)
        return False
    state = flows_misc._purse_state(issuer, sub.get("01", ""))
    if state is None or not _applies(e, report):
        return False
    answer = private(e.response, "62") or {}
    amount = e.amount or 0
    kind = sub.get("04")
    if kind == "LOAD" and "06" in answer and amount > 0:
        before = sub.get("03", "")
        if not before.isdecimal():
            report.unreadable.append(e.id or 0)
            return False
        state["balance"] = int(before) + amount
        return True
    if kind == "PURCHASE" and "03" in answer and amount > 0:
        state["balance"] -= amount
        return True
    return False


def _qr(issuer: Issuer, e: JournalEntry, report: RestoreReport) -> bool:
    """MPM creation makes a PENDING order; a status query or an approved refund sets the status
    the answer carries. CPM payments change card accounts only, which are not restored."""
    sub = private(e.request, "48")
    if sub is None:
        report.unreadable.append(e.id or 0)
        return False
    if sub.get("01") != "MPM":
        return False
    answer = private(e.response, "48") or {}
    order_id = sub.get("03") or answer.get("03")
    if not order_id:
        return False
    _count_order(issuer, order_id)
    if e.reversed:
        report.skipped_reversed += 1
        return False
    if not sub.get("03"):
        if not answer.get("03") or not e.amount:
            return False
        issuer.orders[order_id] = {
            "amount": e.amount,
            "status": "PENDING",
            "terminal": e.terminal_id,
        }
        return True
    if (e.processing_code or "")[:2] == "20" and e.rc not in APPROVED:
        return False
    order = issuer.orders.get(order_id)
    status = answer.get("04")
    if order is None or status not in flows_misc.ORDER_STATUSES or status == order["status"]:
        return False
    order["status"] = status
    return True


def _count_order(issuer: Issuer, order_id: str) -> None:
    """Keep the order counter past every journalled id, so new ids never repeat an old one."""
    tail = order_id.rpartition("-")[2]
    if tail.isdecimal():
        issuer._order_seq = max(issuer._order_seq, int(tail))
