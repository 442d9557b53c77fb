"""One journal entry: a request/response pair as the host's journal keeps it (masked only)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rig.iso8583.messages import mask, mask_pan

__all__ = ["JournalEntry", "mti_class"]


def mti_class(mti: str) -> str:
    """ISO version and message-class digits ('0401' -> '04'): repeats and advices share a class."""
    return mti[:2]


@dataclass(kw_only=True)
class JournalEntry:
    """One request/response pair as the journal keeps it (masked documents only)."""

    id: int | None = None
    received_at: float = field(default_factory=time.time)
    terminal_id: str
    stan: str
    transmission: str
    mti: str
    processing_code: str | None = None
    amount: int | None = None
    currency: str | None = None
    rc: str
    auth_id: str | None = None
    rrn: str | None = None
    batch: str | None = None
    pan_masked: str | None = None
    kind: str
    original_id: int | None = None
    reversed: bool = False
    reversed_by: int | None = None
    request: dict[str, Any] = field(default_factory=dict)
    response: dict[str, Any] = field(default_factory=dict)
    notes: str | None = None
    """Why the host answered as it did (the issuer's checks, e.g. 'ARQC ok (CVN 10)'); redacted."""

    @classmethod
    def from_messages(
        cls,
        request: Mapping[str, str],
        response: Mapping[str, str],
        *,
        kind: str,
        received_at: float | None = None,
        original_id: int | None = None,
    ) -> JournalEntry:
        """Entry from a decoded request and its response; both are masked here."""
        pan = request.get("2")
        if pan is None and "35" in request:
            pan = request["35"].lstrip(";").replace("D", "=").split("=")[0]
        amount = request.get("4")
        return cls(
            received_at=time.time() if received_at is None else received_at,
            terminal_id=request.get("41", ""),
            stan=request.get("11", ""),
            transmission=request.get("7", ""),
            mti=request.get("t", ""),
            processing_code=request.get("3"),
            amount=int(amount) if amount and amount.isdigit() else None,
            currency=request.get("49"),
            rc=response.get("39", ""),
            auth_id=response.get("38"),
            rrn=response.get("37") or request.get("37"),
            batch=request["60"][:6] if request.get("60") else None,
            pan_masked=mask_pan(pan) if pan else None,
            kind=kind,
            original_id=original_id,
            request=mask(request),
            response=mask(response),
        )

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Duplicate-detection key: terminal, STAN, transmission time, MTI class."""
        return (self.terminal_id, self.stan, self.transmission, mti_class(self.mti))
