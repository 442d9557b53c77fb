"""Reconciliation of a terminal batch: host totals from journal entries, and what explains a gap.

Pure functions over `JournalEntry` lists, so the journal only reads rows and this module decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rig.iso8583.messages import Totals

if TYPE_CHECKING:
    from rig.host.journal import JournalEntry

APPROVED = frozenset({"00"})
SALE_CODES = frozenset({"00", "01", "09"})
REFUND_CODES = frozenset({"20"})
POSTING_FUNCTIONS = frozenset({"020", "022"})
"""Message functions that post to a batch: 02xx financial requests and 022x advices."""


def category(e: JournalEntry) -> str | None:
    """'sale', 'refund' or None (not counted in batch totals)."""
    if e.mti[:3] not in POSTING_FUNCTIONS or not e.processing_code:
        return None
    code = e.processing_code[:2]
    if code in SALE_CODES:
        return "sale"
    if code in REFUND_CODES:
        return "refund"
    return None


def totals(terminal_id: str, batch: str, entries: list[JournalEntry]) -> dict[str, Any]:
    """Host totals of a terminal batch: approved, unreversed 02xx sales and refunds."""
    result: dict[str, Any] = {
        "terminal_id": terminal_id,
        "batch": batch,
        "sale_count": 0,
        "sale_amount": 0,
        "refund_count": 0,
        "refund_amount": 0,
    }
    for e in entries:
        cat = category(e)
        if cat is None or e.rc not in APPROVED or e.reversed:
            continue
        result[f"{cat}_count"] += 1
        result[f"{cat}_amount"] += e.amount or 0
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
    theirs = asdict(terminal_totals) if isinstance(terminal_totals, Totals) else terminal_totals
    ours = totals(terminal_id, batch, entries)
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
        in_cat = [e for e in entries if category(e) == cat]
        if dcount > 0:
            pool = [e for e in in_cat if e.rc in APPROVED and not e.reversed]
            why = "posted at the host, not in the terminal's totals"
        elif dcount < 0:
            pool = [e for e in in_cat if e.rc not in APPROVED or e.reversed]
            why = "in the terminal's totals, but reversed or declined at the host"
        else:
            continue
        for e in _explain(pool, abs(dcount), abs(damount)):
            diffs.append(
                {
                    "type": "transaction",
                    "category": cat,
                    "reason": why,
                    "id": e.id,
                    "stan": e.stan,
                    "transmission": e.transmission,
                    "mti": e.mti,
                    "amount": e.amount,
                    "rc": e.rc,
                    "reversed": e.reversed,
                    "pan_masked": e.pan_masked,
                    "rrn": e.rrn,
                }
            )
    return False, diffs


def _explain(pool: list[JournalEntry], count: int, amount: int) -> list[JournalEntry]:
    """One or two entries whose amounts sum to `amount` (the gap), else none."""
    if count == 1:
        return next(([e] for e in pool if (e.amount or 0) == amount), [])
    if count == 2:
        seen: dict[int, JournalEntry] = {}
        for e in pool:
            other = seen.get(amount - (e.amount or 0))
            if other is not None:
                return [other, e]
            seen[e.amount or 0] = e
    return []
