"""Contactless fast path of the EMV card: PPSE entries and the qVSDC-like GPO that answers the
cryptogram at once. The M/Chip-like flavour (`gpo_returns_cryptogram: false`) needs nothing here:
its GPO answers AIP + AFL and the ordinary GENERATE AC follows a short read.

qVSDC-like decision at GPO (terminal transaction qualifiers 9F66 from the PDOL data):
AAC when the card is blocked or forced to decline; TC when the reader is offline-only (TTQ byte 1
b4), does not require an online cryptogram (byte 2 b8) and the card's offline counters allow it;
AAC for an offline-only reader otherwise; else ARQC. The answer is template 77 holding 82 (the
contactless AIP), 94 (its AFL, when any), 9F36, 9F26, 9F27, 9F10 and 9F6C (CTQ, when given).
"""

from __future__ import annotations

from rig.card.emv_commands import AAC, ARQC, TC, app_entry
from rig.emv.tlv import encode
from rig.profiles.model import Application, Contactless

__all__ = ["KERNELS", "ppse_entries", "qvsdc_decision", "qvsdc_response"]

KERNELS = {"mastercard": 0x02, "visa": 0x03}
"""Kernel identifier (9F2A) per flavour: EMV Book C-2 (Mastercard) and C-3 (Visa)."""


def ppse_entries(app: Application, cl: Contactless) -> list[bytes]:
    """The PPSE directory entries: the application the contactless section serves."""
    return [app_entry(app, kernel=KERNELS[cl.flavour])]


def qvsdc_decision(ttq: bytes, *, decline: bool, offline_ok: bool) -> int:
    """AAC, TC or ARQC for a qVSDC-like GPO (rules in the module docstring)."""
    if decline:
        return AAC
    offline_only = len(ttq) >= 1 and bool(ttq[0] & 0x08)
    online_required = len(ttq) >= 2 and bool(ttq[1] & 0x80)
    if offline_only:
        return TC if offline_ok and not online_required else AAC
    return ARQC


def qvsdc_response(cl: Contactless, cid: int, atc: int, ac: bytes, iad: bytes) -> bytes:
    """The qVSDC-like GPO answer (template 77, content in the module docstring)."""
    body = encode(0x82, bytes.fromhex(cl.aip))
    if cl.afl:
        body += encode(0x94, bytes.fromhex(cl.afl))
    body += encode(0x9F36, atc.to_bytes(2, "big")) + encode(0x9F26, ac)
    body += encode(0x9F27, bytes((cid,))) + encode(0x9F10, iad)
    if cl.ctq:
        body += encode(0x9F6C, bytes.fromhex(cl.ctq))
    return encode(0x77, body)
