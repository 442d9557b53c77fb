"""Reconciliation of a terminal batch: host totals from journal entries, and what explains a gap.

Pure functions over `JournalEntry` lists, so the journal only reads rows and this module decides.
What counts follows a terminal's batch totals (docs/host-journal.md): card, CPM and prepaid
purchases are sales; an MPM QR order is a sale once, at the status query that answered PAID;
order creation, status-only queries and prepaid issue, balance and load count nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rig.iso8583.messages import Iso8583Error, Totals, private_decode

if TYPE_CHECKING:
    from rig.host.journal import JournalEntry

APPROVED = frozenset({"00"})
SALE_CODES = frozenset({"00", "01", "09"})
REFUND_CODES = frozenset({"20"})
POSTING_FUNCTIONS = frozenset({"020", "022"})
"""Message functions that post to a batch: 02xx financial requests and 022x advices."""
PREPAID_SALES = frozenset({"PURCHASE"})
"""DE62 04 transaction types a terminal counts as sales (ISSUE, BALANCE, LOAD are not)."""


def is_qr(req: Mapping[str, Any]) -> bool:
    """True when DE48 carries a QR mode subfield (01): a QR payment, order or status query."""
    value = req.get("48")
    return isinstance(value, str) and value.startswith("01")


def private(doc: Mapping[str, Any] | None, field: str) -> dict[str, str] | None:
    """DE48 / DE62 subfields of a (masked) journal document; None when absent or unreadable."""
    value = (doc or {}).get(field)
    if not isinstance(value, str) or not value:
        return None
    try:
        return private_decode(value, field)
    except Iso8583Error:
        return None


def mpm_order(e: JournalEntry) -> str | None:
    """The merchant-presented QR order id an entry names (request, else response DE48 03)."""
    for doc in (e.request, e.response):
        sub = private(doc, "48")
        if sub is not None and sub.get("01") == "MPM" and sub.get("03"):
            return sub["03"]
    return None


def category(e: JournalEntry) -> str | None:
    """'sale', 'refund' or None (not counted in a terminal's batch totals)."""
    if e.mti[:3] not in POSTING_FUNCTIONS or not e.processing_code:
        return None
    code = e.processing_code[:2]
    request = e.request or {}
    if "62" in request:
        sub = private(request, "62")
        if sub is None or sub.get("04") not in PREPAID_SALES:
            return None
        return "sale" if code in SALE_CODES else None
    qr = private(request, "48") if is_qr(request) else None
    if qr is not None and qr.get("01") == "MPM":
        if not qr.get("03"):
            return None
        if code in REFUND_CODES:
            return "refund"
        answer = private(e.response, "48")
        return "sale" if answer is not None and answer.get("04") == "PAID" else None
    if code in SALE_CODES:
        return "sale"
    if code in REFUND_CODES:
        return "refund"
    return None


def _order_amounts(entries: list[JournalEntry]) -> dict[str, int]:
    """Order id -> amount of its approved MPM creation among `entries`."""
    out: dict[str, int] = {}
    for e in entries:
        if e.rc in APPROVED and e.amount and e.processing_code:
            sub = private(e.request, "48")
            if sub is not None and sub.get("01") == "MPM" and not sub.get("03"):
                order = mpm_order(e)
                if order is not None:
                    out.setdefault(order, e.amount)
    return out


def _amount(e: JournalEntry, orders: Mapping[str, int]) -> int:
    """What an entry adds to its category: the order's amount for MPM, else DE4."""
    order = mpm_order(e)
    if order is not None and order in orders:
        return orders[order]
    return e.amount or 0


def posted(
    entries: list[JournalEntry], orders: dict[str, int] | None = None
) -> list[tuple[JournalEntry, str, int]]:
    """(entry, category, amount) of every entry the batch totals count, in entry order.

    Approved and not reversed; an MPM order's sale counts once (its first PAID status query).
    `orders`: `_order_amounts(entries)` when the caller has it already.
    """
    if orders is None:
        orders = _order_amounts(entries)
    paid: set[str] = set()
    out: list[tuple[JournalEntry, str, int]] = []
    for e in entries:
        cat = category(e)
        if cat is None or e.rc not in APPROVED or e.reversed:
            continue
        order = mpm_order(e)
        if cat == "sale" and order is not None:
            if order in paid:
                continue
            paid.add(order)
        out.append((e, cat, _amount(e, orders)))
    return out


def totals(terminal_id: str, batch: str, entries: list[JournalEntry]) -> dict[str, Any]:
    """Host totals of a terminal batch: approved, unreversed 02xx sales and refunds."""
    return _sum(terminal_id, batch, posted(entries))


def _sum(
    terminal_id: str, batch: str, counted: list[tuple[JournalEntry, str, int]]
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "terminal_id": terminal_id,
        "batch": batch,
        "sale_count": 0,
        "sale_amount": 0,
        "refund_count": 0,
        "refund_amount": 0,
    }
    for _, cat, amount in counted:
        result[f"{cat}_count"] += 1
        result[f"{cat}_amount"] += amount
    return result


def compare(
    terminal_id: str,
    batch: str,
    entries: list[JournalEntry],
    terminal_totals: Totals | Mapping[str, int],
) -> tuple[bool, list[dict[str, Any]]]:
    """(in balance, differences): differing figures, then the transactions that explain them.

    A transaction is listed when one or two host entries account exactly for a category's
    count and amount gap: posted at the host but missing at the terminal, or counted by
    the terminal while the host has it reversed or declined.
    """
    orders = _order_amounts(entries)
    counted = posted(entries, orders)
    return _compare(entries, terminal_totals, orders, counted, _sum(terminal_id, batch, counted))


def _compare(
    entries: list[JournalEntry],
    terminal_totals: Totals | Mapping[str, int],
    orders: dict[str, int],
    counted: list[tuple[JournalEntry, str, int]],
    ours: dict[str, Any],
) -> tuple[bool, list[dict[str, Any]]]:
    theirs = asdict(terminal_totals) if isinstance(terminal_totals, Totals) else terminal_totals
    diffs: list[dict[str, Any]] = []
    for name in ("sale_count", "sale_amount", "refund_count", "refund_amount"):
        mine, other = ours[name], int(theirs.get(name, 0))
        if mine != other:
            diffs.append(
                {
                    "type": "figure",
                    "field": name,
                    "host": mine,
                    "terminal": other,
                    "difference": mine - other,
                }
            )
    if not diffs:
        return True, []
    for cat in ("sale", "refund"):
        dcount = ours[f"{cat}_count"] - int(theirs.get(f"{cat}_count", 0))
        damount = ours[f"{cat}_amount"] - int(theirs.get(f"{cat}_amount", 0))
        if dcount > 0:
            pool = [(e, amount) for e, c, amount in counted if c == cat]
            why = "posted at the host, not in the terminal's totals"
        elif dcount < 0:
            pool = [
                (e, _amount(e, orders))
                for e in entries
                if category(e) == cat and (e.rc not in APPROVED or e.reversed)
            ]
            why = "in the terminal's totals, but reversed or declined at the host"
        else:
            continue
        for e, amount in _explain(pool, abs(dcount), abs(damount)):
            diffs.append(
                {
                    "type": "transaction",
                    "category": cat,
                    "reason": why,
                    "id": e.id,
                    "stan": e.stan,
                    "transmission": e.transmission,
                    "mti": e.mti,
                    "amount": amount,
                    "rc": e.rc,
                    "reversed": e.reversed,
                    "pan_masked": e.pan_masked,
                    "rrn": e.rrn,
                }
            )
    return False, diffs


def _explain(
    pool: list[tuple[JournalEntry, int]], count: int, amount: int
) -> list[tuple[JournalEntry, int]]:
    """One or two (entry, amount) pairs whose amounts sum to `amount` (the gap), else none."""
    if count == 1:
        return next(([p] for p in pool if p[1] == amount), [])
    if count == 2:
        seen: dict[int, tuple[JournalEntry, int]] = {}
        for p in pool:
            other = seen.get(amount - p[1])
            if other is not None:
                return [other, p]
            seen[p[1]] = p
    return []


def batch_report(terminal_id: str, batch: str, entries: list[JournalEntry]) -> dict[str, Any]:
    """What `rig host ctl reconcile` shows for one terminal batch: host totals and, against the
    terminal's latest readable 0500 for it, in balance or not and the differences."""
    upload, theirs = None, None
    for e in reversed(entries):
        if e.mti == "0500":
            try:
                theirs = Totals.decode(str((e.request or {}).get("63", "")))
            except Iso8583Error:
                continue
            upload = e
            break
    orders = _order_amounts(entries)
    counted = posted(entries, orders)
    host = _sum(terminal_id, batch, counted)
    out: dict[str, Any] = {
        "terminal_id": terminal_id,
        "batch": batch,
        "host_totals": {k: v for k, v in host.items() if k not in ("terminal_id", "batch")},
        "terminal_totals": asdict(theirs) if theirs is not None else None,
        "reconciliation": None,
        "in_balance": None,
        "differences": [],
    }
    if upload is not None and theirs is not None:
        out["reconciliation"] = {"id": upload.id, "stan": upload.stan, "rc": upload.rc}
        out["in_balance"], out["differences"] = _compare(entries, theirs, orders, counted, host)
    return out
