"""The issuer's clock-derived values: the RRN and the card-expiry check, computed by cached
formatters, equal the plain strftime formulas they replace (ISO practice for the RRN: last digit
of the year, day of year, hour, STAN)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.host import flows_card
from rig.host.issuer import Issuer

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def rrn_reference(now: datetime, stan: str) -> str:
    stan = stan if stan.isdecimal() else "0"
    return f"{now:%y}"[-1] + f"{now:%j%H}" + stan[-6:].zfill(6)


class _OtherDatetime(datetime):
    """A datetime subclass: the RRN falls back to formatting it directly."""


@settings(max_examples=300, deadline=None)
@given(
    times=st.lists(
        st.datetimes(timezones=st.sampled_from([None, UTC]))
        | st.datetimes().map(lambda d: _OtherDatetime(d.year, d.month, d.day, d.hour)),
        min_size=1,
        max_size=6,
    ),
    stan=st.sampled_from(["000001", "123456", "1234567", "12", "", "12a", "٣"]),
)
def test_rrn_matches_the_strftime_formula(times: list[datetime], stan: str) -> None:
    issuer = Issuer({}, None, None, now=lambda: NOW)
    for now in times + times[:1]:
        assert issuer.rrn({"11": stan}, now) == rrn_reference(now, stan)
    assert issuer.rrn({}) == rrn_reference(NOW, "0")


def test_rrn_follows_the_hour_and_the_day() -> None:
    issuer = Issuer({}, None, None, now=lambda: NOW)
    stamps = [NOW, NOW.replace(hour=13), NOW.replace(day=26, hour=13), NOW.replace(year=2027)]
    stamps += [NOW.replace(minute=59), datetime(2026, 11, 25, 13, 0)]
    got = [issuer.rrn({"11": "000042"}, now) for now in stamps]
    assert got == [rrn_reference(now, "000042") for now in stamps]
    assert got[:4] == ["632912000042", "632913000042", "633013000042", "732912000042"]


@settings(max_examples=300, deadline=None)
@given(expiry=st.dates(), now=st.datetimes())
def test_expiry_record_and_past_check_match_the_reference(expiry, now) -> None:
    ref = SimpleNamespace(app=SimpleNamespace(expiry=expiry))
    record = flows_card.card_expiry(ref)  # type: ignore[arg-type]
    assert record == expiry.strftime("%y%m")
    issuer = SimpleNamespace(time_of=lambda txn: now)
    txn = SimpleNamespace(request={}, note=lambda text: None)
    got = flows_card.check_expiry(issuer, txn, ref)  # type: ignore[arg-type]
    assert got == ("54" if flows_card._yymm_past(record, now) else None)


@pytest.mark.parametrize(
    ("now", "expired"),
    [
        (datetime(2031, 6, 30, 23), False),
        (datetime(2031, 7, 1), True),
        (datetime(2031, 5, 1), False),
        (datetime(2032, 1, 1), True),
    ],
)
def test_card_expires_after_its_month(now: datetime, expired: bool) -> None:
    ref = SimpleNamespace(app=SimpleNamespace(expiry=date(2031, 6, 30)))
    issuer = SimpleNamespace(time_of=lambda txn: now)
    txn = SimpleNamespace(request={}, note=lambda text: None)
    assert flows_card.check_expiry(issuer, txn, ref) == ("54" if expired else None)  # type: ignore[arg-type]
