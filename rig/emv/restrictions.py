"""Processing restrictions (EMV 4.3 Book 3 §10.4): versions, usage control, dates -> TVR bits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from rig.emv import bits

AVN_CARD, AUC_TAG, EFFECTIVE, EXPIRY, ISSUER_COUNTRY = 0x9F08, 0x9F07, 0x5F25, 0x5F24, 0x5F28


class RestrictionsError(ValueError):
    """A card data element processing restrictions cannot read; `tag` names it."""

    def __init__(self, message: str, *, tag: int) -> None:
        self.tag = tag
        super().__init__(f"tag {tag:02X}: {message}")


class Service(StrEnum):
    CASH = "cash"
    GOODS = "goods"
    SERVICES = "services"


@dataclass(frozen=True)
class TerminalContext:
    """What the terminal knows: date, country, its application versions, the service asked for."""

    transaction_date: date
    terminal_country: int
    app_versions: tuple[bytes, ...] = ()
    service: Service = Service.GOODS
    cashback: bool = False
    atm: bool = False


@dataclass(frozen=True)
class RestrictionsResult:
    tvr_bits: frozenset[str]
    notes: tuple[str, ...]

    def apply(self, tvr: bytes = bytes(5)) -> bytes:
        """`tvr` with this result's bits set."""
        for name in sorted(self.tvr_bits):
            tvr = bits.set_bit(tvr, name)
        return tvr


def parse_date(value: bytes, tag: int) -> date:
    """A BCD YYMMDD card date; years 00-49 are 20xx, 50-99 are 19xx."""
    digits = bytes(value).hex()
    if len(value) != 3 or not digits.isdigit():
        raise RestrictionsError(f"date {digits.upper()} is not 3 BCD bytes YYMMDD", tag=tag)
    yy, mm, dd = int(digits[:2]), int(digits[2:4]), int(digits[4:])
    try:
        return date(2000 + yy if yy < 50 else 1900 + yy, mm, dd)
    except ValueError as e:
        raise RestrictionsError(f"date {digits} is not a calendar date ({e})", tag=tag) from None


def _country(value: bytes) -> int:
    digits = bytes(value).hex()
    if len(value) != 2 or not digits.isdigit():
        raise RestrictionsError(
            f"country code {digits.upper()} is not 2 BCD bytes", tag=ISSUER_COUNTRY
        )
    return int(digits)


def _usage(auc: bytes, card: Mapping[int, bytes], t: TerminalContext) -> list[str]:
    """AUC bits the transaction needs that are not set (names, empty if allowed)."""
    if len(auc) != 2:
        raise RestrictionsError(f"AUC must be 2 bytes, got {len(auc)}", tag=AUC_TAG)
    needed = ["atm" if t.atm else "non_atm"]
    country = card.get(ISSUER_COUNTRY)
    if country is not None:
        scope = "domestic" if _country(country) == t.terminal_country else "international"
        needed.append(f"{scope}_{t.service.value}")
        if t.cashback:
            needed.append(f"{scope}_cashback")
    return [n for n in needed if not bits.is_set(auc, n, tag=AUC_TAG)]


def check_restrictions(card: Mapping[int, bytes], terminal: TerminalContext) -> RestrictionsResult:
    """TVR bits set by processing restrictions, from card data (tag -> value) and the terminal."""
    found: set[str] = set()
    notes: list[str] = []
    avn = card.get(AVN_CARD)
    if avn is not None and terminal.app_versions and bytes(avn) not in terminal.app_versions:
        found.add("different_app_versions")
        notes.append(f"card AVN {bytes(avn).hex().upper()} not supported by terminal")
    auc = card.get(AUC_TAG)
    if auc is not None:
        missing = _usage(bytes(auc), card, terminal)
        if missing:
            found.add("service_not_allowed")
            notes.append("AUC does not allow: " + ", ".join(missing))
    if EFFECTIVE in card and terminal.transaction_date < parse_date(card[EFFECTIVE], EFFECTIVE):
        found.add("application_not_yet_effective")
        notes.append("transaction date before application effective date")
    if EXPIRY in card and terminal.transaction_date > parse_date(card[EXPIRY], EXPIRY):
        found.add("expired_application")
        notes.append("transaction date after application expiration date")
    return RestrictionsResult(frozenset(found), tuple(notes))
