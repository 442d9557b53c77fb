"""Card risk management of the EMV card: which cryptogram each GENERATE AC gives and the facts
its CVR reports. Pure functions over the session and the application's counters; the rules are
described in the `rig.card.emv_app` module docstring, which calls these.
"""

from __future__ import annotations

from collections.abc import Callable

from rig.card import emv_commands as ec
from rig.card.emv_state import AppState, Session
from rig.profiles.model import Application, Risk

__all__ = ["UNABLE_ONLINE", "cvr_facts", "decide_first", "decide_second", "offline_ok"]

UNABLE_ONLINE = (b"Y3", b"Z3")
"""Authorisation response codes a terminal sets when it could not go online."""


def offline_ok(s: Session, st: AppState, risk: Risk, pin_try_counter: int, lower: int) -> bool:
    """A TC request may stay offline: below the lower consecutive offline limit (9F14) and
    nothing calls for going online."""
    online_reasons = (
        risk.force_online,
        s.last_online_not_completed,
        s.issuer_auth_failed_last,
        pin_try_counter == 0,
        s.pin_failed,
    )
    return st.offline_count < lower and not any(online_reasons)


def cvr_facts(
    app: Application, s: Session, st: AppState, pin_try_counter: int, lower: int, upper: int
) -> ec.CvrFacts:
    """What the CVR of the next cryptogram reports about this and the last transactions."""
    arc = s.terminal.get(0x8A, b"")
    country = s.terminal.get(0x9F1A)
    return ec.CvrFacts(
        first_ac=s.first_ac,
        second_ac=s.second_ac,
        offline_pin_performed=s.pin_performed,
        offline_pin_failed=s.pin_failed,
        offline_pin_ok=s.pin_ok,
        enciphered_pin=s.enciphered,
        unable_online=arc in UNABLE_ONLINE,
        last_online_not_completed=s.last_online_not_completed,
        pin_try_limit_exceeded=pin_try_counter == 0,
        issuer_auth_performed=s.issuer_auth is not None,
        issuer_auth_failed=s.issuer_auth is False,
        issuer_auth_failed_last=s.issuer_auth_failed_last,
        dda_performed=s.dda or s.cda_first or s.cda_second,
        cda_first=s.cda_first,
        cda_second=s.cda_second,
        script_counter=st.script_counter,
        script_failed=s.script_failed_last,
        script_received=s.scripts > 0,
        pin_try_counter=pin_try_counter,
        lower_limit_exceeded=bool(lower) and st.offline_count >= lower,
        upper_limit_exceeded=bool(upper) and st.offline_count >= upper,
        domestic=country is None or country.hex()[-3:] == app.country,
    )


def decide_first(kind: int, st: AppState, risk: Risk, offline: Callable[[], bool]) -> int:
    """The first GENERATE AC's cryptogram type, never more than the terminal asked for."""
    if st.blocked or risk.force_decline or kind == ec.AAC:
        return ec.AAC
    if kind == ec.ARQC:
        return ec.ARQC
    return ec.TC if offline() else ec.ARQC


def decide_second(
    kind: int,
    values: dict[int, bytes],
    s: Session,
    st: AppState,
    risk: Risk,
    upper: Callable[[], int],
    arpc_ok: Callable[[bytes], bool],
) -> int:
    """The second GENERATE AC's cryptogram type; records the online completion (or its failure)
    in the application's counters."""
    issuer_data = values.get(0x91, b"")
    if issuer_data.strip(b"\x00") and s.issuer_auth is None:
        s.issuer_auth = arpc_ok(issuer_data)
    arc = values.get(0x8A, s.terminal.get(0x8A, b""))
    unable = arc in UNABLE_ONLINE
    st.online_pending = False
    if s.issuer_auth is False:
        st.issuer_auth_failed = True
    elif not unable:
        st.issuer_auth_failed = False
        st.last_online_atc = st.atc
        st.offline_count = 0
    if kind != ec.TC or st.blocked or risk.force_decline or s.issuer_auth is False:
        return ec.AAC
    if unable:
        if st.offline_count >= upper():
            return ec.AAC
        st.offline_count += 1
    return ec.TC
