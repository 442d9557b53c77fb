"""Processing restrictions (EMV 4.3 Book 3 §10.4)."""

from __future__ import annotations

from datetime import date

import pytest

from rig.emv.bits import decode
from rig.emv.restrictions import (
    RestrictionsError,
    Service,
    TerminalContext,
    check_restrictions,
    parse_date,
)

TODAY = date(2025, 6, 15)
USA = 840
CARD = {
    0x9F08: b"\x00\x8c",
    0x9F07: bytes.fromhex("FF00"),  # every use, no cashback
    0x5F28: bytes.fromhex("0840"),
    0x5F25: bytes.fromhex("230101"),
    0x5F24: bytes.fromhex("271231"),
}


def ctx(**kw) -> TerminalContext:
    base = {"transaction_date": TODAY, "terminal_country": USA, "app_versions": (b"\x00\x8c",)}
    return TerminalContext(**(base | kw))


def test_all_clear() -> None:
    r = check_restrictions(CARD, ctx())
    assert r.tvr_bits == frozenset() and r.apply() == bytes(5)


def test_version_mismatch() -> None:
    r = check_restrictions(CARD, ctx(app_versions=(b"\x00\x96", b"\x00\x02")))
    assert r.tvr_bits == {"different_app_versions"}
    assert (
        check_restrictions({**CARD, 0x9F08: b"\x00\x96"}, ctx(app_versions=(b"\x00\x96",))).tvr_bits
        == frozenset()
    )


@pytest.mark.parametrize(
    ("when", "bit"),
    [
        (date(2022, 12, 31), "application_not_yet_effective"),
        (date(2028, 1, 1), "expired_application"),
        (date(2027, 12, 31), None),
        (date(2023, 1, 1), None),
    ],
)
def test_dates(when: date, bit: str | None) -> None:
    r = check_restrictions(CARD, ctx(transaction_date=when))
    assert r.tvr_bits == ({bit} if bit else frozenset())


def test_century_window() -> None:
    assert parse_date(bytes.fromhex("491231"), 0x5F24) == date(2049, 12, 31)
    assert parse_date(bytes.fromhex("500101"), 0x5F25) == date(1950, 1, 1)


@pytest.mark.parametrize("raw", ["2513", "251301", "25A101", "250230"])
def test_bad_dates_name_the_tag(raw: str) -> None:
    with pytest.raises(RestrictionsError) as e:
        check_restrictions({0x5F24: bytes.fromhex(raw)}, ctx())
    assert e.value.tag == 0x5F24 and "5F24" in str(e.value)


@pytest.mark.parametrize(
    ("auc", "country", "kw", "allowed"),
    [
        ("0100", USA, {}, False),  # non-ATM only bit, but domestic goods missing
        ("2100", USA, {}, True),  # domestic goods at non-ATM
        ("2100", 250, {}, False),  # international goods not allowed
        ("1100", 250, {}, True),
        ("2100", USA, {"atm": True}, False),  # not valid at ATMs
        ("8200", USA, {"atm": True, "service": Service.CASH}, True),
        ("4200", USA, {"atm": True, "service": Service.CASH}, False),
        ("0500", USA, {"service": Service.SERVICES}, False),
        ("0900", USA, {"service": Service.SERVICES}, True),
        ("2180", USA, {"cashback": True}, True),
        ("2140", USA, {"cashback": True}, False),
        ("2140", 250, {"cashback": True}, False),  # international goods missing too
        ("1140", 250, {"cashback": True}, True),
    ],
)
def test_usage_control(auc: str, country: int, kw: dict, allowed: bool) -> None:
    card = {0x9F07: bytes.fromhex(auc), 0x5F28: bytes.fromhex("0840")}
    r = check_restrictions(card, ctx(terminal_country=country, **kw))
    assert (r.tvr_bits == frozenset()) is allowed
    if not allowed:
        assert decode(0x95, r.apply()) == ["service_not_allowed"]


def test_auc_without_country_checks_only_atm() -> None:
    r = check_restrictions({0x9F07: bytes.fromhex("0100")}, ctx(service=Service.CASH))
    assert r.tvr_bits == frozenset()


def test_bad_auc_length() -> None:
    with pytest.raises(RestrictionsError, match="AUC must be 2 bytes"):
        check_restrictions({0x9F07: b"\xff"}, ctx())
