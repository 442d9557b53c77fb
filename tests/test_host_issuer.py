"""Issuer decisions on card flows: ARQC/ARPC, online PIN (formats 0, 1, 3, TDES and AES DUKPT),
MAC, expiry, unknown PAN, amount triggers, magstripe service code / CVV, refund, balance,
pre-auth, reversals. TEST KEYS and TEST PANs only (cardprofiles/). Independent cross-checks: psec
(retail MAC, format-3 and format-4 PIN blocks, TDES, CVV; pyemv has no CVV function)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import psec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rig.crypto import pinblock
from rig.crypto.arqc import generate_ac, generate_arpc, get_cvn, icc_master_key
from rig.crypto.dukpt import aes_working_key, tdes_working_keys
from rig.crypto.mac import mac_alg3
from rig.host import flows_card
from rig.host.issuer import Issuer, compute_mac, mac_input
from rig.host.keystore import KeyStore
from rig.host.rules import Action, load_default
from rig.iso8583 import messages as m
from rig.profiles import issuer_keys, load_all

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
TID, MID = "TERM0001", "MERCHANT0000001"
# TEST KEYS. BDKs are the published X9.24-1 / X9.24-3 example BDKs.
TPK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
TAK = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")
BDK_TDES = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
BDK_AES = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")
CVK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
IAD = bytes.fromhex("06010A03A0000000000000000000000000")

PROFILES = load_all("cardprofiles")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    ks = KeyStore.create(tmp_path_factory.mktemp("ks") / "keys.json", bytes(range(32)))
    ks.put(f"tpk:{TID}", TPK, kind="tpk")
    ks.put(f"tak:{TID}", TAK, kind="tak")
    ks.put("bdk:tdes", BDK_TDES, kind="bdk")
    ks.put("bdk:aes", BDK_AES, kind="bdk-aes")
    return ks


@pytest.fixture
def issuer(store: KeyStore) -> Issuer:
    return Issuer(PROFILES, store, load_default(), now=lambda: NOW)


def chip(profile_id: str, amount: int, *, builder=m.authorization, atc: int = 7, **kw):
    """A chip request as a terminal would send it, with the ARQC the card would compute."""
    profile = PROFILES[profile_id]
    keys = issuer_keys(profile)[0]
    app = profile.applications[0]
    tags = {
        "9F02": bytes.fromhex(f"{amount or 0:012d}"),
        "9F03": bytes(6),
        "9F1A": bytes.fromhex(app.country.zfill(4)),
        "95": bytes(5),
        "5F2A": bytes.fromhex(app.currency.zfill(4)),
        "9A": bytes.fromhex(NOW.strftime("%y%m%d")),
        "9C": b"\x00",
        "9F37": bytes.fromhex("A1B2C3D4"),
        "82": bytes.fromhex(app.aip),
        "9F36": atc.to_bytes(2, "big"),
        "9F10": IAD,
    }
    mk = icc_master_key(keys.cvn, keys.imk_ac, keys.pan, keys.psn)
    ac = generate_ac(keys.cvn, mk, tags)
    icc = {int(t, 16): v for t, v in tags.items()} | {0x9F26: ac, 0x9F27: b"\x80"}
    fields = {
        "amount": amount,
        "stan": kw.pop("stan", 11),
        "terminal_id": TID,
        "merchant_id": MID,
        "pan": keys.pan,
        "expiry": app.expiry.strftime("%y%m"),
        "card_seq": keys.psn.zfill(3),
        "currency": app.currency.zfill(3),
        "icc": icc,
        "now": NOW,
    }
    if amount is None:
        fields.pop("amount")
    return builder(**(fields | kw)), mk, tags


# ---- ARQC / ARPC ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "profile_id",
    [
        "visa-credit-online-pin-dda",  # visa-18, ARPC method 2
        "visa-signature",  # visa-10, method 1
        "mc-debit-cda",  # mc-20
        "mc-dual-interface",  # mc-16, ARPC under the ICC master key
        "unionpay-debit-pboc",  # pboc-01
    ],
)
def test_arqc_approved_with_arpc_that_verifies(issuer: Issuer, profile_id: str) -> None:
    req, mk, tags = chip(profile_id, 1000)
    d = issuer.decide(req)
    assert d.rc == "00", d.notes
    assert d.kind == "auth" and d.profile_id == profile_id
    assert len(d.fields["38"]) == 6 and len(d.fields["37"]) == 12
    cvn = PROFILES[profile_id].applications[0].crypto.cvn
    assert f"ARQC verified ({cvn})" in d.notes
    iad91 = m.de55_decode(d.fields["55"])[0x91]
    spec = get_cvn(cvn)
    if spec.arpc_method == 1:
        arpc, arc = iad91[:8], iad91[8:]
        assert arc == b"00"
        assert arpc == generate_arpc(cvn, mk, tags_ac(req), tags["9F36"], un=tags["9F37"], arc=arc)
    else:
        arpc, csu = iad91[:4], iad91[4:]
        assert csu == flows_card.CSU_APPROVED
        assert arpc == generate_arpc(cvn, mk, tags_ac(req), tags["9F36"], csu=csu)
    response = m.response_to(req, d.rc, **d.fields)
    assert m.decode(m.encode(response))["55"] == d.fields["55"]


def tags_ac(req: dict[str, str]) -> bytes:
    return m.de55_decode(req["55"])[0x9F26]


def test_tampered_arqc_declines_05_without_arpc(issuer: Issuer) -> None:
    req, _, _ = chip("visa-credit-online-pin-dda", 1000)
    icc = m.de55_decode(req["55"])
    icc[0x9F26] = bytes([icc[0x9F26][0] ^ 1]) + icc[0x9F26][1:]
    req["55"] = m.de55_encode(icc)
    d = issuer.decide(req)
    assert d.rc == "05"
    assert "ARQC failed (visa-18)" in d.notes
    assert "55" not in d.fields and "38" not in d.fields


def test_amount_in_cryptogram_must_match(issuer: Issuer) -> None:
    req, _, _ = chip("visa-signature", 1000)
    icc = m.de55_decode(req["55"])
    icc[0x9F02] = bytes.fromhex(f"{2000:012d}")
    req["55"] = m.de55_encode(icc)
    assert issuer.decide(req).rc == "05"


def test_missing_cryptogram_data_is_format_error(issuer: Issuer) -> None:
    req, _, _ = chip("visa-signature", 1000)
    icc = m.de55_decode(req["55"])
    del icc[0x9F36]
    req["55"] = m.de55_encode(icc)
    d = issuer.decide(req)
    assert d.rc == "30" and any("9F36" in n for n in d.notes)
    no_icc = {k: v for k, v in req.items() if k != "55"}
    assert issuer.decide(no_icc).rc == "30", "chip entry mode 051 without DE55"


# ---- expiry, unknown PAN, triggers, limits ------------------------------------------------


def test_expired_card_54_and_unknown_pan_14(issuer: Issuer) -> None:
    req, _, _ = chip("visa-expired", 1000)
    d = issuer.decide(req)
    assert d.rc == "54" and "card expired (YYMM 2312)" in d.notes
    req, _, _ = chip("visa-signature", 1000, expiry="2901")
    assert issuer.decide(req).rc == "54", "expiry differing from the issuer record"
    unknown = m.purchase(
        amount=100,
        stan=1,
        terminal_id=TID,
        merchant_id=MID,
        pan="4000000000000002",
        entry_mode="012",
        now=NOW,
    )
    d = issuer.decide(unknown)
    assert d.rc == "14" and d.notes == ["unknown PAN"] and d.profile_id is None


def test_amount_triggers_and_limits(issuer: Issuer) -> None:
    req, _, _ = chip("visa-credit-online-pin-dda", 1251)
    d = issuer.decide(req)
    assert d.rc == "51" and d.action == Action(rc="51")
    assert any("rule forces RC 51" in n for n in d.notes)
    assert "38" not in d.fields, "no auth id for a forced decline"
    csu = m.de55_decode(d.fields["55"])[0x91][4:]
    assert csu == flows_card.CSU_DECLINED, "the ARPC carries the forced decline to the card"
    req, _, _ = chip("visa-signature", 9998)
    assert issuer.decide(req).action == Action(no_answer=True)
    req, _, _ = chip("visa-signature", 2_000_000)
    assert issuer.decide(req).rc == "61"
    issuer.set_balance("4761739001010036", 500)
    req, _, _ = chip("visa-signature", 600)
    d = issuer.decide(req)
    assert d.rc == "51" and "amount 600 above the open-to-buy 500" in d.notes


# ---- online PIN ------------------------------------------------------------------------------


def _pin_request(profile_id: str, pin_block: bytes, ksn: bytes | None = None, **kw):
    req, _, _ = chip(profile_id, 1000, **kw)
    req["52"] = pin_block.hex().upper()
    if ksn is not None:
        req["53"] = ksn.hex().upper()
    return req


def test_pin_format0_under_tpk(issuer: Issuer) -> None:
    pan = "4761739001010010"
    good = pinblock.encrypt_pin(0, "1234", pan, TPK)
    d = issuer.decide(_pin_request("visa-credit-online-pin-dda", good))
    assert d.rc == "00" and "PIN ok (TDES)" in d.notes
    bad = pinblock.encrypt_pin(0, "4321", pan, TPK)
    d = issuer.decide(_pin_request("visa-credit-online-pin-dda", bad))
    assert d.rc == "55" and "wrong PIN; 2 tries left" in d.notes


FORMAT1_FILL = "9A3C51E07B2D4F"  # ISO 9564-1 format 1 fills with any hex digits (a txn field)


def _format1_clear(pin: str) -> bytes:
    """Format 1 clear block written out here (psec has none): 1, PIN length, PIN, fill."""
    return bytes.fromhex(f"1{len(pin):X}{pin}{FORMAT1_FILL[: 14 - len(pin)]}")


@pytest.mark.parametrize("fmt", [1, 3])
def test_pin_formats_1_and_3_under_tpk(issuer: Issuer, fmt: int) -> None:
    """Blocks built with psec (format 3) or by hand (format 1), enciphered by psec's TDES."""
    pan = "4761739001010010"

    def block(pin: str) -> bytes:
        clear = _format1_clear(pin) if fmt == 1 else psec.pinblock.encode_pinblock_iso_3(pin, pan)
        assert clear[0] >> 4 == fmt
        return psec.des.encrypt_tdes_ecb(TPK, clear)

    d = issuer.decide(_pin_request("visa-credit-online-pin-dda", block("1234")))
    assert d.rc == "00" and "PIN ok (TDES)" in d.notes, d.notes
    d = issuer.decide(_pin_request("visa-credit-online-pin-dda", block("12345")))
    assert d.rc == "55" and "wrong PIN; 2 tries left" in d.notes, d.notes


def test_pin_try_limit_75(issuer: Issuer) -> None:
    pan = "4761739001010010"
    bad = pinblock.encrypt_pin(0, "0000", pan, TPK)
    good = pinblock.encrypt_pin(0, "1234", pan, TPK)
    rcs = [issuer.decide(_pin_request("visa-credit-online-pin-dda", bad)).rc for _ in range(3)]
    assert rcs == ["55", "55", "75"]
    assert issuer.decide(_pin_request("visa-credit-online-pin-dda", good)).rc == "75"
    blocked = pinblock.encrypt_pin(0, "1234", "4761739001010077", TPK)
    assert issuer.decide(_pin_request("visa-pin-try-exceeded", blocked)).rc == "75"


def test_pin_tdes_dukpt(issuer: Issuer) -> None:
    pan = "5413339000000028"
    ksn = bytes.fromhex("FFFF9876543210E00001")  # X9.24-1 example KSN
    key = tdes_working_keys(BDK_TDES, ksn)["pin"]
    d = issuer.decide(_pin_request("mc-debit-cda", pinblock.encrypt_pin(0, "1234", pan, key), ksn))
    assert d.rc == "00", d.notes
    wrong = pinblock.encrypt_pin(0, "9999", pan, key)
    assert issuer.decide(_pin_request("mc-debit-cda", wrong, ksn)).rc == "55"


def test_pin_aes_dukpt_format4_built_by_psec(issuer: Issuer) -> None:
    pan = "6225269000000015"
    ksn = bytes.fromhex("123456789012345600000001")  # X9.24-3 example initial key ID, counter 1
    key = aes_working_key(BDK_AES, ksn, "pin")
    block = psec.pinblock.encipher_pinblock_iso_4(key, "1234", pan)
    assert pinblock.decrypt_pin(4, block, pan, key) == "1234"
    req = _pin_request("unionpay-debit-pboc", block, ksn)
    assert len(bytes.fromhex(req["53"])) == 12, "DE53 carries the KSN only"
    d = issuer.decide(req)
    assert d.rc == "00" and "PIN ok (AES DUKPT)" in d.notes
    raw = m.encode(req)
    assert m.decode(raw)["52"] == block.hex().upper(), "the 16-byte block fits DE52 (LLVAR b..16)"
    wrong = psec.pinblock.encipher_pinblock_iso_4(key, "12345", pan)
    assert issuer.decide(_pin_request("unionpay-debit-pboc", wrong, ksn)).rc == "55"
    # the old split (8 bytes in DE52, the rest after the KSN in DE53) is refused with RC 30
    assert issuer.decide(_pin_request("unionpay-debit-pboc", block[:8], ksn + block[8:])).rc == "30"
    assert issuer.decide(_pin_request("unionpay-debit-pboc", block[:8], ksn)).rc == "30"
    assert issuer.decide(_pin_request("mc-debit-cda", block)).rc == "30", "16 bytes need AES KSN"


def test_pin_without_key_is_96(store: KeyStore) -> None:
    issuer = Issuer(PROFILES, store, None, now=lambda: NOW)
    req = _pin_request("visa-signature", bytes(8))
    req["41"] = "TERM0404"
    d = issuer.decide(req)
    assert d.rc == "96" and "PIN block but no tpk:TERM0404 in the key store" in d.notes


# ---- MAC ---------------------------------------------------------------------------------------


def _maced(doc: dict[str, str], key: bytes = TAK) -> dict[str, str]:
    doc = dict(doc)
    data = mac_input(doc)
    mac = psec.mac.generate_retail_mac(key[:8], key[8:], data, padding=1)
    doc["128" if any(k.isdigit() and int(k) > 64 for k in doc) else "64"] = mac.hex().upper()
    return doc


def test_mac_on_request_and_response(issuer: Issuer) -> None:
    req = _maced(chip("visa-signature", 1000)[0])
    wire = m.decode(m.encode(req))
    d = issuer.decide(wire)
    assert d.rc == "00" and "MAC ok (DE64)" in d.notes
    resp = m.decode(m.encode(m.response_to(wire, d.rc, **d.fields)))
    expected = psec.mac.generate_retail_mac(TAK[:8], TAK[8:], mac_input(resp), padding=1)
    assert resp["64"] == expected.hex().upper()
    assert compute_mac(TAK, resp) == expected
    assert (
        issuer.finish_response(wire, {k: v for k, v in resp.items() if k != "64"})["64"]
        == resp["64"]
    )


def test_bad_mac_63_and_secondary_bitmap_mac(issuer: Issuer) -> None:
    req = _maced(chip("visa-signature", 1000)[0])
    req["64"] = "00" * 8
    d = issuer.decide(req)
    assert d.rc == "63" and "MAC mismatch (DE64)" in d.notes and "64" not in d.fields
    echo = _maced(m.echo_test(stan=5, terminal_id=TID, now=NOW))
    assert "128" in echo
    d = issuer.decide(m.decode(m.encode(echo)))
    assert d.rc == "00" and "128" in d.fields
    other = _maced(m.echo_test(stan=5, terminal_id="TERM0002", now=NOW))
    assert issuer.decide(other).rc == "63", "no tak for that terminal"


def test_mac_algorithm_is_retail_mac_padding1() -> None:
    data = bytes(range(37))
    ours = mac_alg3(TAK, data, 1)
    assert ours == psec.mac.generate_retail_mac(TAK[:8], TAK[8:], data, padding=1)


# ---- magstripe: service code and CVV -----------------------------------------------------------


def test_cvv_published_and_cross_checked() -> None:
    # Example from psec's generate_cvv documentation.
    assert flows_card.cvv(CVK, "1234567890123456", "9912", "220") == "170"
    for pan, exp, sc in [("4761739001010135", "3112", "101"), ("5413339000000028", "2901", "201")]:
        ours = flows_card.cvv(CVK, pan, exp, sc)
        assert ours == psec.cvv.generate_cvv(CVK, pan, exp, sc)


def _swipe(track2: str, mode: str = "902", **kw) -> dict[str, str]:
    return m.purchase(
        amount=500,
        stan=3,
        terminal_id=TID,
        merchant_id=MID,
        track2=track2,
        entry_mode=mode,
        now=NOW,
        **kw,
    )


def test_magstripe_service_code_and_cvv(store: KeyStore, tmp_path) -> None:
    pan = "4761739001010135"
    issuer = Issuer(PROFILES, store, None, now=lambda: NOW)
    d = issuer.decide(_swipe(f"{pan}D31121010000000000000"))
    assert d.rc == "00" and "CVV not checked (no cvk in the key store)" in d.notes
    assert issuer.decide(_swipe(f"{pan}D31122010000000000000")).rc == "05", "service code altered"
    chip_swiped = _swipe("4761739001010093D31122010000000000000")
    assert issuer.decide(chip_swiped).rc == "57"
    fallback = _swipe("4761739001010093D31122010000000000000", mode="802")
    assert issuer.decide(fallback).rc == "00"
    ks = KeyStore.create(tmp_path / "cvk.json", bytes(32))
    ks.put("cvk", CVK, kind="cvk")
    with_cvk = Issuer(PROFILES, ks, None, now=lambda: NOW)
    good = psec.cvv.generate_cvv(CVK, pan, "3112", "101")
    d = with_cvk.decide(_swipe(f"{pan}D3112101" + "00000" + good + "00000"))
    assert d.rc == "00" and "CVV ok" in d.notes
    bad = f"{(int(good) + 1) % 1000:03d}"
    d = with_cvk.decide(_swipe(f"{pan}D3112101" + "00000" + bad + "00000"))
    assert d.rc == "05" and "CVV mismatch" in d.notes


# ---- refund, balance, pre-authorisation, advice, reversal ------------------------------------


def test_refund_and_balance_with_de54(issuer: Issuer) -> None:
    pan = "4761739001010036"
    issuer.set_balance(pan, 10_000)
    req, _, _ = chip("visa-signature", 2500, builder=m.purchase)
    d = issuer.decide(req)
    assert d.rc == "00" and d.kind == "purchase"
    assert d.fields["54"] == "0002978C000000007500"
    req, _, _ = chip("visa-signature", 1000, builder=m.refund)
    d = issuer.decide(req)
    assert d.rc == "00" and d.kind == "refund" and d.fields["54"].endswith("000000008500")
    req, _, _ = chip("visa-signature", None, builder=m.balance_inquiry)
    d = issuer.decide(req)
    assert d.rc == "00" and d.kind == "balance"
    assert d.fields["54"] == "0002978C000000008500"
    assert m.decode(m.encode(m.response_to(req, d.rc, **d.fields)))["54"] == d.fields["54"]


def test_preauth_and_completion_advice(issuer: Issuer) -> None:
    pan = "4761739001010036"
    issuer.set_balance(pan, 10_000)
    req, _, _ = chip("visa-signature", 4000, builder=m.pre_authorization)
    d = issuer.decide(req)
    assert d.rc == "00" and d.kind == "preauth"
    auth_id = d.fields["38"]
    assert issuer.account(pan).holds == {auth_id: 4000}
    assert issuer.account(pan).available == 6000
    adv, _, _ = chip("visa-signature", 3500, builder=m.advice, auth_id=auth_id, condition_code="06")
    d = issuer.decide(adv)
    assert d.rc == "00" and d.kind == "advice"
    assert f"completion of pre-authorisation {auth_id}" in d.notes
    assert issuer.account(pan).holds == {} and issuer.account(pan).available == 6500


def _entry(**kw):
    base = {"id": 7, "rc": "00", "reversed": False, "amount": 1000, "kind": "purchase"}
    return SimpleNamespace(**(base | kw), auth_id=kw.get("auth_id"), batch=kw.get("batch"))


def test_reversal_known_unknown_and_repeated(issuer: Issuer) -> None:
    pan = "4761739001010036"
    issuer.set_balance(pan, 10_000)
    req, _, _ = chip("visa-signature", 1000, builder=m.purchase)
    assert issuer.decide(req).rc == "00"
    assert issuer.account(pan).available == 9000
    rev = m.reversal(req, stan=12, now=NOW, reason="98")
    d = issuer.decide(rev, original=_entry())
    assert d.rc == "00" and d.kind == "reversal" and "original 7 reversed" in d.notes
    assert issuer.account(pan).available == 10_000
    d = issuer.decide(m.reversal_repeat(rev), original=_entry(reversed=True))
    assert d.rc == "00" and "nothing posted" in d.notes[-1]
    assert issuer.account(pan).available == 10_000, "a repeated reversal posts nothing"
    d = issuer.decide(rev, original=None)
    assert d.rc == "00"
    assert d.notes == ["original not found; answered 00 so the terminal stops repeating"]
    d = issuer.decide(rev, original=_entry(rc="05"))
    assert d.rc == "00" and issuer.account(pan).available == 10_000


# ---- robustness -------------------------------------------------------------------------------

_field_text = st.text(alphabet="0123456789ABCDEF", max_size=40)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    builder=st.sampled_from([m.authorization, m.pre_authorization, m.purchase, m.refund, m.advice]),
    amount=st.integers(0, 10**12 - 1),
    pan=st.sampled_from(
        ["4761739001010010", "5413339000000036", "4000000000000002", "4761739001010135"]
    ),
    entry=st.sampled_from(["051", "071", "902", "012", "802"]),
    extra=st.dictionaries(
        st.sampled_from(["14", "23", "35", "38", "48", "52", "53", "54", "55", "60", "62", "64"]),
        _field_text,
        max_size=4,
    ),
)
def test_decide_never_raises(issuer: Issuer, builder, amount, pan, entry, extra) -> None:
    req = builder(
        amount=amount, stan=1, terminal_id=TID, merchant_id=MID, pan=pan, entry_mode=entry, now=NOW
    )
    req.update(extra)
    d = issuer.decide(req)
    assert len(d.rc) == 2
    assert not any(n.startswith("internal error") for n in d.notes), d.notes


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    mti=st.sampled_from(["0100", "0200", "0220", "0400", "0401", "0500", "0800", "0110", "9999"]),
    fields=st.dictionaries(
        st.sampled_from(
            ["2", "3", "4", "22", "25", "35", "41", "48", "55", "60", "62", "63", "70", "90"]
        ),
        st.text(max_size=30),
        max_size=8,
    ),
)
def test_decide_never_raises_on_odd_documents(issuer: Issuer, mti, fields) -> None:
    d = issuer.decide({"t": mti, "11": "000001", **fields}, original=None)
    assert len(d.rc) == 2
    assert not any(n.startswith("internal error") for n in d.notes), d.notes


# ---- cheaper bookkeeping gives the same answers ----------------------------------------------


def _rrn_reference(now: datetime, stan: str) -> str:
    stan = stan if stan.isdecimal() else "0"
    return f"{now:%y}"[-1] + f"{now:%j%H}" + stan[-6:].zfill(6)


def test_now_is_read_once_per_decision(store: KeyStore) -> None:
    calls: list[datetime] = []
    later = datetime(2026, 12, 31, 23, 0, 0, tzinfo=UTC)

    def clock() -> datetime:
        calls.append(NOW if not calls else later)
        return calls[-1]

    issuer = Issuer(PROFILES, store, load_default(), now=clock)
    calls.clear()
    req, _, _ = chip("visa-signature", 1000)
    d = issuer.decide(req)
    assert d.rc == "00" and len(calls) == 1, "expiry check and RRN share one reading"
    assert d.fields["37"] == _rrn_reference(NOW, req["11"])
    calls.clear()
    issuer.decide(m.echo_test(stan=5, terminal_id=TID, now=NOW))
    assert len(calls) == 1


def _spread() -> list[tuple[str, dict[str, str], str, str]]:
    """(label, request, RC, kind) across the flows the load generator and tests drive."""
    unknown = m.purchase(
        amount=100, stan=1, terminal_id=TID, merchant_id=MID, pan="4000000000000002", now=NOW
    )
    req, _, _ = chip("visa-signature", 1000, builder=m.purchase)
    return [
        ("auth", chip("visa-signature", 1000)[0], "00", "auth"),
        ("auth again", chip("visa-signature", 1000, stan=12)[0], "00", "auth"),
        ("cents 51", chip("visa-credit-online-pin-dda", 1251)[0], "51", "auth"),
        ("cents 57", chip("mc-debit-cda", 1257, builder=m.purchase)[0], "57", "purchase"),
        ("99.97", chip("visa-signature", 9997)[0], "00", "auth"),
        ("refund 51", chip("visa-signature", 1251, builder=m.refund)[0], "00", "refund"),
        ("balance", chip("visa-signature", None, builder=m.balance_inquiry)[0], "00", "balance"),
        ("pre-auth", chip("visa-signature", 4000, builder=m.pre_authorization)[0], "00", "preauth"),
        ("expired", chip("visa-expired", 1000)[0], "54", "auth"),
        ("unknown PAN", unknown, "14", "purchase"),
        ("MAC", _maced(chip("visa-signature", 1000, stan=13)[0]), "00", "auth"),
        ("bad MAC", {**_maced(chip("visa-signature", 1000)[0]), "64": "00" * 8}, "63", "auth"),
        ("reversal", m.reversal(req, stan=14, now=NOW, reason="98"), "00", "reversal"),
        ("echo", m.echo_test(stan=5, terminal_id=TID, now=NOW), "00", "network"),
        ("0110", {"t": "0110", "11": "000001"}, "12", "unknown"),
    ]


def test_decision_spread_is_the_same_cold_and_warm(store: KeyStore) -> None:
    flows_card._LAYOUTS.clear()
    flows_card._SEEN.clear()
    flows_card._EXPIRY.clear()
    spread = _spread()
    rounds = []
    for _ in range(3):
        issuer = Issuer(PROFILES, store, load_default(), now=lambda: NOW)
        rounds.append([issuer.decide(dict(req)) for _, req, _, _ in spread])
    assert rounds[0] == rounds[1] == rounds[2], "cold caches, learnt layouts, warm caches"
    for (label, req, rc, kind), d in zip(spread, rounds[0], strict=True):
        assert (d.rc, d.kind) == (rc, kind), label
        assert len(d.fields.get("37", req.get("37", ""))) == 12, label
    by_label = {label: d for (label, *_), d in zip(spread, rounds[0], strict=True)}
    assert by_label["99.97"].action == Action(malformed=True)
    assert by_label["refund 51"].action is None, "amount triggers skip refunds"
    assert by_label["expired"].notes == ["card expired (YYMM 2312)"]
    assert by_label["unknown PAN"].notes == ["unknown PAN"]
    assert "MAC ok (DE64)" in by_label["MAC"].notes and "64" in by_label["MAC"].fields
    assert by_label["0110"].notes == ["MTI '0110' is not a request this host serves"]
