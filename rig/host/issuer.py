"""The reference host's issuer: a pure decision on a decoded ISO 8583 request.

`Issuer.decide` checks MAC, card, expiry, PIN, cryptogram, balances and rules and returns a
`Decision` (response code, extra response fields, rule action, journal kind, notes). It opens no
socket and writes no journal: the server passes the journal's answers in (`original=` for
reversals, `reconciliation=` for 0500). Response codes and every convention are in
docs/host-rules.md. State (open-to-buy, PIN tries, holds, QR orders, purse balances) is in
memory, per Issuer instance.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rig.crypto.mac import mac_alg3
from rig.crypto.primitives import CryptoError
from rig.host import flows_card, flows_misc
from rig.host.keystore import (
    PURSE_KEYS,
    KeyStoreError,
    emv_key_name,
    issuer_key_material,
    purse_key_name,
    sync_issuer_keys,
)
from rig.host.rules import Action, RuleSet
from rig.iso8583.messages import Iso8583Error, Totals, encode, response_to
from rig.prepaid.purse import PurseError
from rig.profiles import CardProfile

__all__ = [
    "DEFAULT_OPEN_TO_BUY",
    "DEFAULT_PIN",
    "DEFAULT_TXN_LIMIT",
    "Account",
    "CardRef",
    "Decision",
    "Issuer",
    "compute_mac",
    "mac_field",
    "mac_input",
]

log = logging.getLogger("rig.host.issuer")

DEFAULT_OPEN_TO_BUY = 10_000_000_000
"""Open-to-buy every card starts with, minor units (100,000,000.00): large so load runs pass."""
DEFAULT_TXN_LIMIT = 1_000_000
"""Largest single purchase / authorisation, minor units (10,000.00); above it RC 61."""
DEFAULT_PIN = "1234"
"""TEST PIN used for online PIN when a profile has no `risk.pin` (magstripe-only cards)."""

_FIN_MTIS = ("0100", "0200", "0220", "0400", "0401")
_RESPONSE_KINDS_WITH_AUTH_ID = ("auth", "preauth", "purchase", "refund", "advice", "qr")
_CARD_KINDS = frozenset(("auth", "preauth", "purchase", "refund", "balance", "advice"))


@dataclass
class Decision:
    """What the host answers: RC, extra response fields, rule action, journal kind and why."""

    rc: str
    fields: dict[str, str] = field(default_factory=dict)
    action: Action | None = None
    kind: str = "unknown"
    notes: list[str] = field(default_factory=list)
    profile_id: str | None = None


@dataclass
class Account:
    """Issuer-side state of one card: open-to-buy, pre-authorisation holds, online PIN tries."""

    available: int
    pin_tries_left: int
    pin_try_limit: int
    holds: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CardRef:
    """A card found in the profiles: profile, EMV application (None for magstripe), PAN and the
    application's AC issuer master key as the issuer holds it (from the key store)."""

    profile: CardProfile
    app: Any
    pan: str
    imk_ac: bytes | None = field(default=None, repr=False)


@dataclass
class Txn:
    """Working state of one decision; effects run only when the final RC is 00."""

    request: Mapping[str, str]
    kind: str = "unknown"
    notes: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    effects: list[Callable[[Txn], None]] = field(default_factory=list)
    finishers: list[Callable[[Txn, str], None]] = field(default_factory=list)
    card: CardRef | None = None
    pan: str | None = None
    auth_id_wanted: bool = False
    original: Any = None
    reconciliation: Any = None
    host_totals: Totals | None = None
    _icc: dict[str, bytes] | None = field(default=None, repr=False)
    at: datetime | None = None

    def note(self, text: str) -> None:
        self.notes.append(text)

    def icc(self) -> dict[str, bytes]:
        """DE55 tags (hex tag -> value), decoded once per request; Iso8583Error when malformed."""
        if self._icc is None:
            raw = self.request.get("55")
            self._icc = flows_card.icc_tags(raw) if raw else {}
        return self._icc


# ---- MAC (docs/host-rules.md) ---------------------------------------------------------------


def mac_field(doc: Mapping[str, str]) -> str:
    """'128' when the message has a secondary bitmap (any field 65-127), else '64'."""
    for key in doc:
        if key.isdecimal() and 65 <= int(key) <= 127:
            return "128"
    return "64"


def mac_input(doc: Mapping[str, str]) -> bytes:
    """Encoded message from the MTI up to the MAC field, with the MAC field's bitmap bit set."""
    body = {k: v for k, v in doc.items() if k not in ("p", "1", "64", "128")}
    body[mac_field(body)] = "00" * 8
    return encode(body)[:-8]


def compute_mac(key: bytes, doc: Mapping[str, str]) -> bytes:
    """ISO 9797-1 MAC algorithm 3 (X9.19 retail MAC), padding 1, full 8 bytes."""
    return mac_alg3(key, mac_input(doc), 1)


# ---- the issuer ------------------------------------------------------------------------------


class Issuer:
    """Pure issuer decisions for the reference host (state in memory).

    With a key store, the card issuer master keys come from it: the keys of a profile the store
    lacks are imported first (one log line per profile, KCVs only), and a stored key that differs
    from its profile stops construction with HostError. Without a store they come from the
    profiles (unit tests). Either way they are resolved once here, never per request.
    """

    def __init__(
        self,
        profiles: Mapping[str, CardProfile],
        keystore: Any | None = None,
        rules: RuleSet | None = None,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        open_to_buy: int = DEFAULT_OPEN_TO_BUY,
        txn_limit: int = DEFAULT_TXN_LIMIT,
        require_mac: bool = False,
        mpm_auto_pay: bool = True,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.profiles = dict(profiles)
        self.keystore = keystore
        self.rules = rules
        self.now = now
        self.open_to_buy = open_to_buy
        self.txn_limit = txn_limit
        self.require_mac = require_mac
        self.mpm_auto_pay = mpm_auto_pay
        self.random_bytes = random_bytes
        self.accounts: dict[str, Account] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.purses: dict[str, dict[str, Any]] = {}
        self.totals: dict[tuple[str, str], Totals] = {}
        self._auth_seq = int(now().timestamp()) % 900_000
        self._rrn_hour: tuple[int, int, int, int] | None = None
        self._rrn_head = ""
        self._order_seq = 0
        self._icc_mk: dict[tuple[str, bytes | str, str, str], Any] = {}
        self.by_pan: dict[str, CardRef] = {}
        self.by_purse: dict[str, CardProfile] = {}
        self.purse_master_keys: dict[str, tuple[bytes, ...]] = {}
        keys = self._issuer_keys()
        for profile in self.profiles.values():
            pid = profile.id
            for i, app in enumerate(profile.applications):
                imk = keys[emv_key_name("imk_ac", pid, i)]
                self.by_pan.setdefault(app.pan, CardRef(profile, app, app.pan, imk))
            if profile.magstripe is not None:
                pan = profile.magstripe.pan
                self.by_pan.setdefault(pan, CardRef(profile, None, pan))
            if profile.purse is not None:
                self.by_purse[profile.purse.asn.upper()] = profile
                self.purse_master_keys[pid] = tuple(
                    keys[purse_key_name(k, pid)] for k in PURSE_KEYS
                )

    def _issuer_keys(self) -> dict[str, bytes]:
        """Card issuer master keys by key store name: from the key store (importing those of
        profiles it lacks), or from the profiles when the issuer has no key store."""
        if self.keystore is None:
            return {
                name: key
                for profile in self.profiles.values()
                for name, _, key in issuer_key_material(profile)
            }
        try:
            synced = sync_issuer_keys(self.keystore, self.profiles)
        except KeyStoreError as e:
            from rig.host.server import HostError

            raise HostError(str(e)) from None
        for pid, rows in synced.imported.items():
            kcvs = ", ".join(f"{r['name']} KCV {r['kcv']}" for r in rows)
            log.info("card profile %s: issuer keys imported into the key store: %s", pid, kcvs)
        return synced.keys

    # ---- public helpers ----

    def account(self, pan: str) -> Account:
        """The card's issuer-side state (created on first use from the profile)."""
        acct = self.accounts.get(pan)
        if acct is None:
            ref = self.by_pan.get(pan)
            risk = ref.profile.risk if ref is not None else None
            limit = risk.pin_try_limit if risk is not None else 3
            left = risk.pin_try_counter if risk is not None else 3
            acct = Account(self.open_to_buy, left, limit)
            self.accounts[pan] = acct
        return acct

    def set_balance(self, pan: str, amount: int) -> None:
        """Set a card's open-to-buy (tests and the control API)."""
        self.account(pan).available = amount

    def set_order_status(self, order_id: str, status: str) -> None:
        """Mark a merchant-presented QR order PAID, FAILED, CLOSED … (wallet side of the flow)."""
        if order_id not in self.orders:
            raise KeyError(f"no QR order {order_id!r}")
        self.orders[order_id]["status"] = status

    def key(self, name: str) -> bytes | None:
        """A key from the key store, or None when there is no store or no such key."""
        if self.keystore is None:
            return None
        has = getattr(self.keystore, "has", None)
        if has is not None and not has(name):
            return None
        try:
            return self.keystore.get(name)
        except (KeyError, ValueError, LookupError):
            return None

    def icc_mk(self, cvn: str, imk: bytes | str, pan: str, psn: str) -> Any:
        """The card's `rig.crypto.ac_engine.CardAcEngine` (ICC master key and its cipher contexts)
        for the issuer master key (bytes or hex); cached per (CVN, IMK, PAN, PSN), the oldest
        entry dropped past `CARD_CACHE_SIZE` cards so many PANs cannot grow memory unbounded."""
        cache = self._icc_mk
        k = (cvn, imk, pan, psn)
        engine = cache.get(k)
        if engine is None:
            from rig.crypto.ac_engine import CARD_CACHE_SIZE, CardAcEngine

            engine = CardAcEngine.derive(cvn, imk, pan, psn)
            if len(cache) >= CARD_CACHE_SIZE:
                del cache[next(iter(cache))]
            cache[k] = engine
        return engine

    def next_auth_id(self) -> str:
        self._auth_seq = (self._auth_seq + 1) % 1_000_000
        return f"{self._auth_seq:06d}"

    def next_order_id(self, terminal_id: str) -> str:
        self._order_seq += 1
        stamp = self.now().strftime("%y%m%d%H%M%S")
        return f"MPM-{terminal_id.strip() or 'TERM'}-{stamp}-{self._order_seq:06d}"

    def time_of(self, txn: Txn) -> datetime:
        """The decision's time: `now()` read once per transaction (expiry check, RRN)."""
        at = txn.at
        if at is None:
            at = txn.at = self.now()
        return at

    def rrn(self, request: Mapping[str, str], now: datetime | None = None) -> str:
        """ISO practice: last digit of the year, day of year, hour, STAN (12 characters)."""
        if now is None:
            now = self.now()
        stan = request.get("11", "0")
        stan = stan if stan.isdecimal() else "0"
        if type(now) is not datetime:
            return f"{now:%y}"[-1] + f"{now:%j%H}" + stan[-6:].zfill(6)
        hour = (now.year, now.month, now.day, now.hour)
        if hour != self._rrn_hour:
            self._rrn_head = f"{now:%y}"[-1] + f"{now:%j%H}"
            self._rrn_hour = hour
        return self._rrn_head + stan[-6:].zfill(6)

    def add_totals(self, terminal_id: str, batch: str, kind: str, amount: int, sign: int) -> None:
        """In-memory batch totals (used when the server passes no journal comparison)."""
        key = (terminal_id, batch)
        t = self.totals.get(key, Totals())
        if kind == "refund":
            t = Totals(
                t.sale_count, t.sale_amount, t.refund_count + sign, t.refund_amount + sign * amount
            )
        else:
            t = Totals(
                t.sale_count + sign, t.sale_amount + sign * amount, t.refund_count, t.refund_amount
            )
        self.totals[key] = t

    def finish_response(
        self, request: Mapping[str, str], response: dict[str, str]
    ) -> dict[str, str]:
        """MAC a rebuilt response (duplicates) the way `decide` does; unchanged without a MAC."""
        key = self._response_mac_key(request)
        out = {k: v for k, v in response.items() if k not in ("64", "128")}
        if key is not None:
            with contextlib.suppress(Iso8583Error, CryptoError):
                out[mac_field(out)] = compute_mac(key, out).hex().upper()
        return out

    # ---- decide ----

    def decide(
        self,
        request: Mapping[str, str],
        *,
        original: Any = None,
        reconciliation: tuple[bool, list[dict[str, Any]]] | None = None,
        host_totals: Totals | None = None,
    ) -> Decision:
        """Decide the answer to a decoded request; never raises (faults become RC 96)."""
        txn = Txn(
            request, original=original, reconciliation=reconciliation, host_totals=host_totals
        )
        try:
            return self._decide(txn)
        except Exception as exc:
            txn.note(f"internal error: {type(exc).__name__}: {exc}")
            return Decision("96", {}, None, txn.kind, txn.notes)

    def _decide(self, txn: Txn) -> Decision:
        req = txn.request
        kind = txn.kind = flows_misc.classify(req)
        mac_key, rc = self._check_request_mac(txn)
        if rc is not None:
            return self._finish(txn, rc, None, None)
        ref = flows_card.find_card(self, txn)
        profile_id = ref.profile.id if ref is not None else None
        action = self.rules.match(req, profile_id) if self.rules is not None else None
        rc = self._dispatch(txn, kind)
        if action is not None and action.rc is not None:
            txn.note(f"rule forces RC {action.rc} (issuer said {rc})")
            rc = action.rc
        return self._finish(txn, rc, action, mac_key)

    def _dispatch(self, txn: Txn, kind: str) -> str:
        """The flow for the request's kind (`flows_misc.classify` routes by MTI, DE62, DE48)."""
        if kind in _CARD_KINDS:
            return flows_card.financial(self, txn)
        if kind == "network":
            return flows_misc.network(self, txn)
        if kind == "reversal":
            return flows_card.reversal(self, txn)
        if kind == "reconciliation":
            return flows_misc.reconciliation(self, txn)
        if kind == "prepaid":
            return flows_misc.prepaid(self, txn)
        if kind == "qr":
            return flows_misc.qr(self, txn)
        txn.note(f"MTI {txn.request.get('t', '')!r} is not a request this host serves")
        return "12"

    def _finish(self, txn: Txn, rc: str, action: Action | None, mac_key: bytes | None) -> Decision:
        if rc == "00" and txn.auth_id_wanted and "38" not in txn.fields:
            txn.fields["38"] = self.next_auth_id()
        if rc == "00":
            for effect in txn.effects:
                effect(txn)
        for finisher in txn.finishers:
            finisher(txn, rc)
        if "37" not in txn.request and "37" not in txn.fields:
            txn.fields["37"] = self.rrn(txn.request, self.time_of(txn))
        if mac_key is not None:
            resp = response_to(txn.request, rc, **txn.fields)
            try:
                txn.fields[mac_field(resp)] = compute_mac(mac_key, resp).hex().upper()
            except (Iso8583Error, CryptoError) as exc:
                txn.note(f"response not MACed: {exc}")
        ref = txn.card
        return Decision(
            rc, txn.fields, action, txn.kind, txn.notes, ref.profile.id if ref is not None else None
        )

    # ---- MAC on requests ----

    def _response_mac_key(self, request: Mapping[str, str]) -> bytes | None:
        if "64" not in request and "128" not in request:
            return None
        key = self.key(f"tak:{request.get('41', '')}")
        return key if key is not None and len(key) == 16 else None

    def _check_request_mac(self, txn: Txn) -> tuple[bytes | None, str | None]:
        """(key to MAC the response with, RC 63 when the request MAC fails)."""
        req = txn.request
        name = "128" if "128" in req else "64" if "64" in req else None
        tid = req.get("41", "")
        if name is None:
            if self.require_mac and req.get("t") in _FIN_MTIS:
                txn.note("MAC required and absent")
                return None, "63"
            return None, None
        key = self.key(f"tak:{tid}")
        if key is None:
            txn.note(f"MAC present but no tak:{tid} in the key store")
            return None, "63"
        if len(key) != 16:
            txn.note(f"tak:{tid} is {len(key)} bytes; the MAC needs a 16-byte TDES key")
            return None, "63"
        try:
            expected = compute_mac(key, req)
            given = bytes.fromhex(req[name])
        except (Iso8583Error, CryptoError, ValueError) as exc:
            txn.note(f"MAC cannot be checked: {exc}")
            return None, "63"
        if not hmac.compare_digest(expected, given):
            txn.note(f"MAC mismatch (DE{name})")
            return None, "63"
        txn.note(f"MAC ok (DE{name})")
        return key, None


__all__ += ["PurseError", "Txn"]
