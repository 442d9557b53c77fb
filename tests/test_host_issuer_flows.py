"""Issuer decisions on non-card flows: network management and TR-31 key exchange, reconciliation,
QR (consumer- and merchant-presented) and the prepaid purse (MAC1/MAC2, TAC). TEST KEYS only.
Independent cross-check: psec's TR-31 unwrap of the key block the host sends."""

from __future__ import annotations

from datetime import UTC, datetime

import psec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.crypto.keys import kcv
from rig.crypto.primitives import has_odd_parity
from rig.crypto.tr31 import unwrap
from rig.host import flows_misc
from rig.host.issuer import Issuer
from rig.host.keystore import KeyStore
from rig.iso8583 import messages as m
from rig.prepaid import purse
from rig.profiles import load_all
from rig.qr import cpm

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
TID, MID = "TERM0001", "MERCHANT0000001"
ZMK = bytes.fromhex("C1C1C1C1C1C1C1C1E5E5E5E5E5E5E5E5")  # TEST KEY
PROFILES = load_all("cardprofiles")
PURSE = PROFILES["prepaid-purse"].purse
ASN = PURSE.asn
PURSE_TID = bytes.fromhex("112233445566")


@pytest.fixture
def store(tmp_path) -> KeyStore:
    ks = KeyStore.create(tmp_path / "keys.json", bytes(range(32)))
    ks.put("zmk", ZMK, kind="zmk")
    return ks


@pytest.fixture
def issuer(store: KeyStore) -> Issuer:
    return Issuer(PROFILES, store, None, now=lambda: NOW, random_bytes=lambda n: bytes([0x5A]) * n)


# ---- network management -------------------------------------------------------------------


@pytest.mark.parametrize(("builder", "note"), [(m.sign_on, "sign-on"), (m.echo_test, "echo")])
def test_sign_on_and_echo(issuer: Issuer, builder, note) -> None:
    d = issuer.decide(builder(stan=1, terminal_id=TID, now=NOW))
    assert (d.rc, d.kind, d.notes) == ("00", "network", [note])
    unknown = m.network_management("999", stan=1, terminal_id=TID, now=NOW)
    assert issuer.decide(unknown).rc == "12"


@pytest.mark.parametrize(
    ("key_type", "name", "usage"),
    [("PIN", "tpk", "P0"), ("MAC", "tak", "M3"), ("DATA", "tdk", "D0")],
)
def test_key_exchange_tr31_under_zone_key(issuer, store, key_type, name, usage) -> None:
    req = m.key_exchange(key_type=key_type, stan=2, terminal_id=TID, now=NOW)
    d = issuer.decide(req)
    assert d.rc == "00", d.notes
    sub = m.private_decode(d.fields["48"])
    assert sub["K1"] == key_type
    header, key = unwrap(ZMK, sub["K2"])
    ref_header, ref_key = psec.tr31.unwrap(ZMK, sub["K2"])
    assert ref_key == key and len(key) == 16 and has_odd_parity(key)
    assert header.key_usage == usage == ref_header.key_usage
    assert sub["K3"] == kcv(key).hex().upper()
    assert store.get(f"{name}:{TID}") == key
    assert store.kcv(f"{name}:{TID}") == sub["K3"]
    masked = m.mask(m.response_to(req, d.rc, **d.fields))
    assert sub["K2"] not in str(masked), "the key block never reaches logs"


def test_key_exchange_without_zone_key_96(tmp_path) -> None:
    empty = KeyStore.create(tmp_path / "empty.json", bytes(32))
    d = Issuer(PROFILES, empty, None).decide(m.key_exchange(stan=2, terminal_id=TID))
    assert d.rc == "96" and d.notes == ["no TDES zmk in the key store"]
    assert Issuer(PROFILES, None, None).decide(m.key_exchange(stan=2, terminal_id=TID)).rc == "96"


# ---- reconciliation -------------------------------------------------------------------------


def _purchase(amount: int, stan: int) -> dict[str, str]:
    return m.purchase(
        amount=amount,
        stan=stan,
        terminal_id=TID,
        merchant_id=MID,
        entry_mode="012",
        now=NOW,
        pan="4761739001010036",
        expiry="3112",
        batch="000007",
    )


def _recon(totals: m.Totals) -> dict[str, str]:
    return m.reconciliation(
        stan=9, terminal_id=TID, merchant_id=MID, batch=7, totals=totals, now=NOW
    )


def test_reconciliation_with_journal_comparison(issuer: Issuer) -> None:
    theirs = m.Totals(2, 3000, 0, 0)
    d = issuer.decide(_recon(theirs), reconciliation=(True, []))
    assert d.rc == "00" and d.kind == "reconciliation" and d.fields["63"] == theirs.encode()
    diffs = [{"type": "figure", "field": "sale_amount", "host": 2000, "terminal": 3000}]
    d = issuer.decide(_recon(theirs), reconciliation=(False, diffs))
    assert d.rc == "95"
    assert m.Totals.decode(d.fields["63"]) == m.Totals(2, 2000, 0, 0)


def test_reconciliation_from_issuer_totals(issuer: Issuer) -> None:
    assert issuer.decide(_purchase(1000, 1)).rc == "00"
    assert issuer.decide(_purchase(2000, 2)).rc == "00"
    d = issuer.decide(_recon(m.Totals(2, 3000, 0, 0)))
    assert d.rc == "00"
    d = issuer.decide(_recon(m.Totals(3, 4000, 0, 0)))
    assert d.rc == "95" and m.Totals.decode(d.fields["63"]) == m.Totals(2, 3000, 0, 0)
    bad = _recon(m.Totals()) | {"63": "12"}
    assert issuer.decide(bad).rc == "30"


# ---- QR -------------------------------------------------------------------------------------


def _qr(sub: dict[str, str], amount: int | None = 1500, builder=m.purchase, **kw) -> dict:
    fields = {"stan": 4, "terminal_id": TID, "merchant_id": MID, "entry_mode": "031", "now": NOW}
    doc = builder(additional_data=m.private_encode(sub), amount=amount or 0, **(fields | kw))
    if amount is None:
        del doc["4"]
    return doc


def test_qr_consumer_presented(issuer: Issuer) -> None:
    token = cpm.encode(
        [{0x4F: bytes.fromhex("A0000000031010"), 0x5A: bytes.fromhex("4761739001010036")}]
    )
    d = issuer.decide(_qr({"01": "CPM", "02": token}))
    assert d.rc == "00" and d.kind == "qr" and d.profile_id == "visa-signature"
    assert len(d.fields["38"]) == 6
    unknown = cpm.encode([{0x5A: bytes.fromhex("4000000000000002")}])
    assert issuer.decide(_qr({"01": "CPM", "02": unknown})).rc == "14"
    assert issuer.decide(_qr({"01": "CPM", "02": "not base64!"})).rc == "30"
    assert issuer.decide(_qr({"01": "XYZ"})).rc == "12"


def test_qr_merchant_presented_order_create_status_refund(issuer: Issuer) -> None:
    d = issuer.decide(_qr({"01": "MPM"}))
    assert d.rc == "00"
    sub = m.private_decode(d.fields["48"])
    assert sub["04"] == "PENDING" and sub["03"].startswith("MPM-TERM0001-")
    order = sub["03"]
    d = issuer.decide(_qr({"01": "MPM", "03": order}, amount=None))
    assert d.rc == "00" and m.private_decode(d.fields["48"])["04"] == "PAID"
    d = issuer.decide(_qr({"01": "MPM", "03": order}, builder=m.refund))
    assert d.rc == "00" and m.private_decode(d.fields["48"])["04"] == "REFUNDED"
    assert issuer.orders[order]["status"] == "REFUNDED"
    assert issuer.decide(_qr({"01": "MPM", "03": "NOPE"}, amount=None)).rc == "12"
    assert issuer.decide(_qr({"01": "MPM"}, amount=0)).rc == "13"


def test_qr_mpm_stays_pending_until_paid(store: KeyStore) -> None:
    issuer = Issuer(PROFILES, store, None, now=lambda: NOW, mpm_auto_pay=False)
    order = m.private_decode(issuer.decide(_qr({"01": "MPM"})).fields["48"])["03"]
    status = _qr({"01": "MPM", "03": order}, amount=None)
    assert m.private_decode(issuer.decide(status).fields["48"])["04"] == "PENDING"
    issuer.set_order_status(order, "PAID")
    assert m.private_decode(issuer.decide(status).fields["48"])["04"] == "PAID"


# ---- prepaid --------------------------------------------------------------------------------


def _card() -> purse.Purse:
    keys = purse.PurseKeys.from_master_keys(
        *(bytes.fromhex(k) for k in (PURSE.keys.mlk, PURSE.keys.mpk, PURSE.keys.mtk)),
        bytes.fromhex(ASN),
    )
    return purse.Purse(keys, balance=PURSE.initial_balance, max_balance=PURSE.max_balance)


def _prepaid(sub: dict[str, str], amount: int | None, mti_builder=m.purchase) -> dict:
    fields = {"stan": 6, "terminal_id": TID, "merchant_id": MID, "entry_mode": "051", "now": NOW}
    if mti_builder is not m.balance_inquiry:
        fields["amount"] = amount or 0
    doc = mti_builder(prepaid=m.private_encode(sub), **fields)
    if amount is None:
        doc.pop("4", None)
    return doc


def test_prepaid_top_up_mac1_verified_mac2_accepted_by_card(issuer: Issuer) -> None:
    card = _card()
    init = card.initialize_for_load(2000, PURSE_TID, bytes.fromhex("01020304"))
    sub = {
        "01": ASN,
        "02": f"{init.online_counter:04X}",
        "03": f"{init.balance:012d}",
        "04": "LOAD",
        "05": init.mac1.hex().upper(),
        "09": init.random.hex().upper(),
        "10": PURSE_TID.hex().upper(),
    }
    d = issuer.decide(_prepaid(sub, 2000))
    assert d.rc == "00" and d.kind == "prepaid", d.notes
    out = m.private_decode(d.fields["62"], "62")
    assert out["03"] == f"{7000:012d}"
    stamp = out["11"]
    assert stamp == "20261125120000"
    card.credit_for_load(
        bytes.fromhex(stamp[:8]), bytes.fromhex(stamp[8:]), bytes.fromhex(out["06"])
    )
    assert card.balance == 7000, "the card accepted the host's MAC2"
    bad = sub | {"05": "00000000"}
    d = issuer.decide(_prepaid(bad, 2000))
    assert d.rc == "63" and "MAC1 does not verify" in d.notes
    balance = issuer.decide(_prepaid({"01": ASN, "04": "BALANCE"}, None, m.balance_inquiry))
    assert m.private_decode(balance.fields["62"], "62")["03"] == f"{7000:012d}"


def test_prepaid_purchase_record_tac_verified(issuer: Issuer) -> None:
    card = _card()
    amount, seq = 1200, 0x00000042
    card.initialize_for_purchase(amount, PURSE_TID, bytes.fromhex("0A0B0C0D"))
    sespk = purse.purchase_session_key(card.keys.dpk, bytes.fromhex("0A0B0C0D"), 0, seq)
    date, time = bytes.fromhex("20261125"), bytes.fromhex("115900")
    tac, _ = card.debit_for_purchase(
        seq, date, time, purse.purchase_mac1(sespk, amount, PURSE_TID, date, time)
    )
    sub = {
        "01": ASN,
        "04": "PURCHASE",
        "07": tac.hex().upper(),
        "08": f"{seq:08X}",
        "10": PURSE_TID.hex().upper(),
        "11": "20261125115900",
    }
    d = issuer.decide(_prepaid(sub, amount, m.advice))
    assert d.rc == "00" and "purchase record TAC ok" in d.notes
    assert issuer.purses[ASN]["balance"] == 5000 - 1200
    d = issuer.decide(_prepaid(sub | {"07": "DEADBEEF"}, amount, m.advice))
    assert d.rc == "63" and "TAC does not verify" in d.notes
    assert issuer.purses[ASN]["balance"] == 3800, "a rejected record changes nothing"


def test_prepaid_issue_unknown_and_malformed(issuer: Issuer) -> None:
    d = issuer.decide(_prepaid({"01": ASN, "04": "ISSUE"}, 0))
    assert d.rc == "00" and m.private_decode(d.fields["62"], "62")["03"] == f"{5000:012d}"
    assert issuer.decide(_prepaid({"01": "FFFF", "04": "BALANCE"}, None)).rc == "14"
    assert issuer.decide(_prepaid({"01": ASN, "04": "LOAD"}, 100)).rc == "30"
    assert issuer.decide(_prepaid({"01": ASN, "04": "SPIN"}, 100)).rc == "12"
    assert issuer.decide(_purchase(100, 1) | {"62": "0"}).rc == "30"


# ---- classification and routing ---------------------------------------------------------------


def _classify_reference(req: dict[str, str]) -> str:
    """The kind table of docs/host-rules.md, written as the plain if-chain it was."""
    mti = req.get("t", "")
    pcode = req.get("3", "")[:2]
    if mti == "0800":
        return "network"
    if mti in ("0400", "0401"):
        return "reversal"
    if mti == "0500":
        return "reconciliation"
    if mti not in ("0100", "0200", "0220"):
        return "unknown"
    if "62" in req:
        return "prepaid"
    if req.get("48", "").startswith("01"):
        return "qr"
    if mti == "0220":
        return "advice"
    if pcode == "31":
        return "balance"
    if pcode == "20":
        return "refund"
    if pcode == "03" or req.get("25") == "06":
        return "preauth"
    return "auth" if mti == "0100" else "purchase"


@settings(max_examples=400, deadline=None)
@given(
    mti=st.sampled_from(["0100", "0200", "0220", "0400", "0401", "0500", "0800", "0110", "", None]),
    fields=st.fixed_dictionaries(
        {},
        optional={
            "3": st.sampled_from(["000000", "030000", "200000", "310000", "3", ""]),
            "25": st.sampled_from(["00", "06"]),
            "48": st.sampled_from(["01003CPM", "02003abc", ""]),
            "62": st.just("01004ABCD"),
        },
    ),
)
def test_classify_matches_the_reference_table(mti: str | None, fields: dict[str, str]) -> None:
    req = fields if mti is None else {"t": mti, **fields}
    assert flows_misc.classify(req) == _classify_reference(req)


def test_each_kind_reaches_its_flow(issuer: Issuer) -> None:
    cases = [
        (m.echo_test(stan=1, terminal_id=TID, now=NOW), "network", "00", ["echo"]),
        ({"t": "0500", "11": "000001", "41": TID, "63": "bad"}, "reconciliation", "30", None),
        ({"t": "0400", "11": "000001"}, "reversal", "00", None),
        ({"t": "0200", "11": "000001", "62": "01004ABCD"}, "prepaid", "14", ["unknown purse id"]),
        ({"t": "0200", "11": "000001", "48": "01003XYZ"}, "qr", "12", None),
        ({"t": "0200", "11": "000001"}, "purchase", "14", None),
        ({"t": "0210", "11": "000001"}, "unknown", "12", None),
    ]
    for req, kind, rc, notes in cases:
        d = issuer.decide(req)
        assert (d.kind, d.rc) == (kind, rc), req
        if notes is not None:
            assert d.notes == notes, req
    assert issuer.decide({"t": "0210"}).notes == ["MTI '0210' is not a request this host serves"]
