"""The EMV card application driven APDU by APDU: discovery, reading, cryptograms (checked with
the rig's ARQC code and independently with pyemv), ARPC, ODA with the test CAPK set, contactless
fast paths, and random APDUs. All keys, PANs and PINs are TEST material from cardprofiles/.
"""

from __future__ import annotations

import pytest
from emv_card_helpers import (
    CAPKS,
    PROFILES,
    TERMINAL,
    UN,
    ac_input,
    apdu,
    cdol_data,
    genac,
    gpo,
    gpo_apdu,
    gpo_fields,
    ok,
    read_afl,
    select,
    start,
    sw,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyemv import cvn as pyemv_cvn

from rig.card.application import CardApplication
from rig.card.emv_app import EmvAppError, EmvCardApplication
from rig.crypto import arqc, oda
from rig.emv.tlv import decode, decode_flat, encode
from rig.profiles import issuer_keys

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

CONTACT = sorted(p.id for p in PROFILES.values() if p.kind == "emv" and "contact" in p.interfaces)
PYEMV = {
    "visa-10": pyemv_cvn.VisaCVN10,
    "visa-18": pyemv_cvn.VisaCVN18,
    "mc-16": pyemv_cvn.MasterCardCVN16,
    "mc-20": pyemv_cvn.MasterCardCVN20,
}


def _two_app_profile():
    """visa-signature with a second (debit) application of lower priority: multi-AID card."""
    base = PROFILES["visa-signature"]
    first = base.applications[0]
    second = first.model_copy(
        update={"aid": "A0000000032010", "label": "VISA DEBIT", "priority": 2}
    )
    return base.model_copy(update={"applications": [first, second]})


def test_implements_card_application_and_refuses_wrong_interface() -> None:
    card = EmvCardApplication(PROFILES["visa-signature"])
    assert isinstance(card, CardApplication)
    assert card.atr == bytes.fromhex(PROFILES["visa-signature"].atr or "")
    with pytest.raises(EmvAppError, match="contactless"):
        EmvCardApplication(PROFILES["visa-signature"], interface="contactless")
    with pytest.raises(EmvAppError, match="no EMV application"):
        EmvCardApplication(PROFILES["prepaid-purse"])


def test_pse_lists_every_application_with_priority() -> None:
    card = EmvCardApplication(_two_app_profile())
    fci = select(card, b"1PAY.SYS.DDF01".hex())
    assert fci[-2:] == b"\x90\x00"
    assert decode_flat(fci[:-2])[0x88] == b"\x01"
    entries = []
    for n in (1, 2):
        rec = ok(card, apdu(f"00B2{n:02X}0C"))
        entry = decode_flat(rec)
        entries.append((entry[0x4F].hex().upper(), entry[0x87][0]))
    assert entries == [("A0000000031010", 1), ("A0000000032010", 2)]
    assert sw(card, apdu("00B2030C")) == 0x6A83
    assert sw(card, apdu("00B20114")) == 0x6A82
    assert select(card, b"2PAY.SYS.DDF01".hex())[-2:] == b"\x6a\x82"


def test_partial_aid_selection_walks_the_occurrences() -> None:
    card = EmvCardApplication(_two_app_profile())
    first = select(card, "A000000003")
    assert decode_flat(first[:-2])[0x84].hex().upper() == "A0000000031010"
    second = select(card, "A000000003", p2=2)
    assert decode_flat(second[:-2])[0x84].hex().upper() == "A0000000032010"
    assert select(card, "A000000003", p2=2)[-2:] == b"\x6a\x82"
    assert select(card, "A0000000041010")[-2:] == b"\x6a\x82"
    assert select(card, "A000000003", p2=1)[-2:] == b"\x6a\x86"


@pytest.mark.parametrize("profile_id", CONTACT)
def test_full_contact_read_returns_every_afl_record(profile_id: str) -> None:
    profile = PROFILES[profile_id]
    app = profile.applications[0]
    card = EmvCardApplication(profile)
    fci = select(card, app.aid)
    want = b"\x62\x83" if profile.risk.application_blocked else b"\x90\x00"
    assert fci[-2:] == want
    assert decode_flat(fci[:-2])[0x50] == app.label.encode()
    aip, afl = gpo_fields(ok(card, gpo_apdu(app.pdol)))
    assert aip.hex().upper() == app.aip and afl.hex().upper() == app.afl
    tags, _ = read_afl(card, afl)
    assert tags[0x5A].hex().upper().rstrip("F") == app.pan
    assert tags[0x8C].hex().upper() == app.cdol1
    assert ok(card, apdu("80CA9F36")) == encode(0x9F36, (profile.risk.atc + 1).to_bytes(2, "big"))
    assert sw(card, apdu("00B2014C")) == 0x6A82
    assert sw(card, apdu("00B20914")) == 0x6A83


def test_gpo_with_pdol_checks_length_and_sequence() -> None:
    base = PROFILES["visa-signature"]
    app = base.applications[0].model_copy(update={"pdol": "9F1A029F3704"})
    profile = base.model_copy(update={"applications": [app]})
    card = EmvCardApplication(profile)
    assert sw(card, apdu("80A80000", bytes.fromhex("8300"))) == 0x6985
    fci = select(card, app.aid)
    assert decode_flat(fci[:-2])[0x9F38] == bytes.fromhex("9F1A029F3704")
    assert sw(card, apdu("80A80000", bytes.fromhex("8300"))) == 0x6700
    assert sw(card, apdu("80A80000", bytes.fromhex("8406") + bytes(6))) == 0x6A80
    assert gpo(card, app.pdol)[-2:] == b"\x90\x00"
    assert gpo(card, app.pdol)[-2:] == b"\x69\x85"
    assert card.session.terminal[0x9F37] == UN


@pytest.mark.parametrize(
    "profile_id",
    ["visa-signature", "visa-credit-online-pin-dda", "mc-dual-interface", "mc-debit-cda"],
)
def test_arqc_verifies_with_the_rig_and_with_pyemv(profile_id: str) -> None:
    card, tags, aip = start(profile_id)
    keys = issuer_keys(PROFILES[profile_id])[0]
    answer = genac(card, 0x80, cdol_data(tags[0x8C]))
    assert answer[0x9F27] == b"\x80"
    assert answer[0x9F36] == (PROFILES[profile_id].risk.atc + 1).to_bytes(2, "big")
    data = ac_input(tags, aip, answer)
    mk = arqc.icc_master_key(keys.cvn, keys.imk_ac, keys.pan, keys.psn)
    assert arqc.verify_arqc(keys.cvn, mk, data, answer[0x9F26])
    ref = PYEMV[keys.cvn](keys.imk_ac, keys.imk_smi, keys.imk_smc, keys.pan, keys.psn)
    args = {f"tag_{k.lower()}": v for k, v in data.items() if k != "9F10"}
    spec = arqc.get_cvn(keys.cvn)
    if spec.cvr is None:
        theirs = ref.generate_ac(**args, tag_9f10=data["9F10"])
    else:
        theirs = ref.generate_ac(**args, cvr=data["9F10"][spec.cvr[0] : spec.cvr[1]])
    assert theirs == answer[0x9F26]


def test_iad_layouts_carry_the_cvr_the_cvn_expects() -> None:
    card, tags, _ = start("visa-credit-online-pin-dda")
    iad = genac(card, 0x80, cdol_data(tags[0x8C]))[0x9F10]
    assert iad[:3] == bytes.fromhex("060112") and iad[3] == 0x03
    assert iad[4] & 0xF0 == 0xA0  # first AC ARQC (10), second not requested (10)
    card, tags, _ = start("mc-dual-interface")
    iad = genac(card, 0x80, cdol_data(tags[0x8C]))[0x9F10]
    assert len(iad) == 18 and iad[:2] == bytes.fromhex("0110")
    assert iad[2] & 0xF0 == 0xA0 and iad[4] & 0x0F == 3  # PIN try counter nibble


@pytest.mark.parametrize("profile_id", ["visa-credit-online-pin-dda", "mc-dual-interface"])
def test_external_authenticate_accepts_good_arpc_and_rejects_bad(profile_id: str) -> None:
    keys = issuer_keys(PROFILES[profile_id])[0]
    ref = PYEMV[keys.cvn](keys.imk_ac, keys.imk_smi, keys.imk_smc, keys.pan, keys.psn)
    for good in (True, False):
        card, tags, _ = start(profile_id)
        answer = genac(card, 0x80, cdol_data(tags[0x8C]))
        ac, atc = answer[0x9F26], answer[0x9F36]
        if keys.cvn == "visa-18":
            csu = bytes.fromhex("00800000")
            issuer_data = ref.generate_arpc(ac, atc, csu) + csu
        else:
            issuer_data = ref.generate_arpc(ac, b"00") + b"00"
        if not good:
            issuer_data = bytes([issuer_data[0] ^ 1]) + issuer_data[1:]
        assert sw(card, apdu("00820000", issuer_data, le=False)) == (0x9000 if good else 0x6300)
        assert sw(card, apdu("00820000", issuer_data, le=False)) == 0x6985
        second = genac(card, 0x40, cdol_data(tags[0x8D], {0x8A: b"00"}))
        assert second[0x9F27] == (b"\x40" if good else b"\x00")
        mk = arqc.icc_master_key(keys.cvn, keys.imk_ac, keys.pan, keys.psn)
        data = ac_input(tags, bytes.fromhex(PROFILES[profile_id].applications[0].aip), second)
        assert arqc.verify_arqc(keys.cvn, mk, data, second[0x9F26])
        assert sw(card, apdu("80AE4000", cdol_data(tags[0x8D]))) == 0x6985
        last_online = ok(card, apdu("80CA9F13"))[-2:]
        assert (last_online == answer[0x9F36]) is good


def _icc_key(tags: dict[int, bytes], static: bytes, pan: str) -> oda.RsaPublicKey:
    capk = CAPKS[("A000000003" if pan.startswith("4") else "A000000004", tags[0x8F][0])]
    issuer = oda.recover_issuer_key(
        capk.modulus, capk.exponent, tags[0x90], tags.get(0x92, b""), tags[0x9F32], pan=pan
    )
    return oda.recover_icc_key(
        issuer, tags[0x9F46], tags.get(0x9F48, b""), tags[0x9F47], static, pan=pan
    )


def _read_for_oda(profile_id: str) -> tuple[EmvCardApplication, dict[int, bytes], bytes, str]:
    profile = PROFILES[profile_id]
    app = profile.applications[0]
    card = EmvCardApplication(profile)
    select(card, app.aid)
    aip, afl = gpo_fields(ok(card, gpo_apdu(app.pdol)))
    tags, static = read_afl(card, afl)
    if tags.get(0x9F4A) == b"\x82":
        static += aip
    return card, tags, static, app.pan


def test_dda_certificates_recover_and_internal_authenticate_verifies() -> None:
    card, tags, static, pan = _read_for_oda("visa-credit-online-pin-dda")
    icc = _icc_key(tags, static, pan)
    ddol_data = UN
    sdad = decode(ok(card, apdu("00880000", ddol_data)))[0].value
    idd = oda.verify_dynamic_data(icc, sdad, ddol_data)
    assert idd[0] == 8 and len(idd) == 9
    assert oda.verify_dynamic_data(icc, decode(ok(card, apdu("00880000", UN)))[0].value, UN) != idd
    with pytest.raises(oda.OdaError):
        oda.verify_dynamic_data(icc, sdad, bytes(4))


def test_bad_oda_profile_fails_certificate_recovery() -> None:
    _, tags, static, pan = _read_for_oda("visa-bad-oda")
    with pytest.raises(oda.OdaError):
        _icc_key(tags, static, pan)


def test_cda_signature_verifies_over_the_generate_ac_answer() -> None:
    card, tags, static, pan = _read_for_oda("mc-debit-cda")
    icc = _icc_key(tags, static, pan)
    cdol1 = cdol_data(tags[0x8C])
    body = ok(card, apdu("80AE9000", cdol1))
    top = decode(body)[0]
    assert top.tag == 0x77 and top.children is not None
    assert [c.tag for c in top.children] == [0x9F27, 0x9F36, 0x9F10, 0x9F4B]
    others = b"".join(encode(c.tag, c.value) for c in top.children[:3])
    tdhc = oda.transaction_data_hash(b"", cdol1, b"", others)
    result = oda.verify_cda(icc, top.children[3].value, UN, 0x80, tdhc)
    keys = issuer_keys(PROFILES["mc-debit-cda"])[0]
    mk = arqc.icc_master_key(keys.cvn, keys.imk_ac, keys.pan, keys.psn)
    answer = decode_flat(body)
    data = ac_input(tags, bytes.fromhex("3D00"), answer)
    assert arqc.verify_arqc(keys.cvn, mk, data, result.ac)


def test_contactless_visa_gpo_returns_a_verifying_arqc() -> None:
    profile = PROFILES["visa-contactless-only"]
    cl = profile.contactless
    assert cl is not None
    card = EmvCardApplication(profile, interface="contactless")
    ppse = ok(card, apdu("00A40400", b"2PAY.SYS.DDF01"))
    entry = decode_flat(ppse)
    assert entry[0x4F].hex().upper() == profile.applications[0].aid and entry[0x9F2A] == b"\x03"
    assert select(card, b"1PAY.SYS.DDF01".hex())[-2:] == b"\x6a\x82"
    fci = ok(card, apdu("00A40400", bytes.fromhex(profile.applications[0].aid)))
    assert decode_flat(fci)[0x9F38].hex().upper() == cl.pdol
    answer = decode_flat(ok(card, gpo_apdu(cl.pdol)))
    assert answer[0x9F27] == b"\x80" and answer[0x82].hex().upper() == cl.aip
    assert answer[0x9F6C].hex().upper() == cl.ctq
    keys = issuer_keys(profile)[0]
    data = ac_input({}, answer[0x82], answer)
    mk = arqc.icc_master_key(keys.cvn, keys.imk_ac, keys.pan, keys.psn)
    assert arqc.verify_arqc(keys.cvn, mk, data, answer[0x9F26])
    ref = pyemv_cvn.VisaCVN18(keys.imk_ac, keys.imk_smi, keys.imk_smc, keys.pan, keys.psn)
    args = {f"tag_{k.lower()}": v for k, v in data.items() if k != "9F10"}
    assert ref.generate_ac(**args, tag_9f10=data["9F10"]) == answer[0x9F26]
    rec = ok(card, apdu("00B2010C"))
    assert decode_flat(rec)[0x57].hex().upper() == cl.records[1][1]["57"]
    assert sw(card, apdu("80AE8000", cdol_data(bytes.fromhex(profile.applications[0].cdol1)))) == (
        0x6985
    )


def test_contactless_mchip_gpo_then_generate_ac() -> None:
    profile = PROFILES["mc-dual-interface"]
    cl = profile.contactless
    assert cl is not None
    card = EmvCardApplication(profile, interface="contactless")
    ok(card, apdu("00A40400", b"2PAY.SYS.DDF01"))
    ok(card, apdu("00A40400", bytes.fromhex(profile.applications[0].aid)))
    answer = ok(card, gpo_apdu(cl.pdol))
    assert 0x9F26 not in decode_flat(answer)
    aip, afl = gpo_fields(answer)
    assert aip.hex().upper() == cl.aip and afl.hex().upper() == cl.afl
    assert decode_flat(ok(card, apdu("00B2010C")))[0x5F34] == b"\x01"
    app = profile.applications[0]
    answer = genac(card, 0x80, cdol_data(bytes.fromhex(app.cdol1)))
    assert answer[0x9F27] == b"\x80"
    keys = issuer_keys(profile)[0]
    mk = arqc.icc_master_key(keys.cvn, keys.imk_ac, keys.pan, keys.psn)
    data = ac_input({}, aip, answer)
    assert arqc.verify_arqc(keys.cvn, mk, data, answer[0x9F26])
    ref = pyemv_cvn.MasterCardCVN16(keys.imk_ac, keys.imk_smi, keys.imk_smc, keys.pan, keys.psn)
    args = {f"tag_{k.lower()}": v for k, v in data.items() if k != "9F10"}
    assert ref.generate_ac(**args, cvr=data["9F10"][2:8]) == answer[0x9F26]


def test_contactless_mchip_records_teach_the_terminal_cdol1() -> None:
    """M/Chip-like contactless: the terminal reads CDOL1 from the contactless records alone and
    the GENERATE AC built from it is accepted; the contactless AIP announces no ODA (oda none)."""
    profile = PROFILES["mc-dual-interface"]
    cl = profile.contactless
    assert cl is not None and profile.applications[0].crypto.oda == "none"
    card = EmvCardApplication(profile, interface="contactless")
    ok(card, apdu("00A40400", bytes.fromhex(profile.applications[0].aid)))
    aip, afl = gpo_fields(ok(card, gpo_apdu(cl.pdol)))
    assert aip[0] & 0x61 == 0  # no SDA / DDA / CDA bit (EMV Book 3 Annex C1)
    tags, _ = read_afl(card, afl)
    assert tags[0x8C].hex().upper() == profile.applications[0].cdol1
    assert tags[0x8D].hex().upper() == profile.applications[0].cdol2
    assert genac(card, 0x80, cdol_data(tags[0x8C]))[0x9F27] == b"\x80"


def _with_format(profile_id: str, fmt: int | None):
    base = PROFILES[profile_id]
    app = base.applications[0].model_copy(update={"response_format": fmt})
    return base.model_copy(update={"applications": [app]})


@pytest.mark.parametrize(
    ("profile_id", "fmt", "tag"),
    [
        ("visa-signature", None, 0x80),
        ("visa-signature", 2, 0x77),
        ("mc-force-decline", None, 0x77),
        ("mc-force-decline", 1, 0x80),
        ("visa-credit-online-pin-dda", 2, 0x77),
    ],
)
def test_profile_response_format_picks_the_template(profile_id: str, fmt, tag: int) -> None:
    """The application's response_format chooses template 80 or 77 for GPO, GENERATE AC and
    INTERNAL AUTHENTICATE; None keeps the rule (Mastercard CVN or CDA: 77, else 80)."""
    profile = _with_format(profile_id, fmt)
    app = profile.applications[0]
    card = EmvCardApplication(profile)
    ok(card, apdu("00A40400", bytes.fromhex(app.aid)))
    assert decode(ok(card, gpo_apdu(app.pdol)))[0].tag == tag
    if app.crypto.oda == "dda":
        assert decode(ok(card, apdu("00880000", UN)))[0].tag == tag
    body = ok(card, apdu("80AE8000", cdol_data(bytes.fromhex(app.cdol1))))
    assert decode(body)[0].tag == tag


def test_constructor_response_format_overrides_the_profile() -> None:
    profile = _with_format("visa-signature", 2)
    app = profile.applications[0]
    card = EmvCardApplication(profile, response_format=1)
    ok(card, apdu("00A40400", bytes.fromhex(app.aid)))
    assert decode(ok(card, gpo_apdu(app.pdol)))[0].tag == 0x80


def test_get_data_and_challenge() -> None:
    card, _, _ = start("visa-no-cvm-under-floor")
    assert ok(card, apdu("80CA9F17")) == bytes.fromhex("9F170103")
    assert ok(card, apdu("80CA9F13")) == bytes.fromhex("9F13020000")
    assert decode(ok(card, apdu("80CA9F4F")))[0].value.startswith(bytes.fromhex("9F0206"))
    assert ok(card, apdu("80CA9F14")) == bytes.fromhex("9F140105")
    assert sw(card, apdu("80CA9F7F")) == 0x6A88
    a, b = ok(card, apdu("00840000")), ok(card, apdu("00840000"))
    assert len(a) == len(b) == 8 and a != b


def test_transaction_log_records_each_cryptogram() -> None:
    card, tags, _ = start("visa-signature")
    genac(card, 0x80, cdol_data(tags[0x8C]))
    log = ok(card, apdu("00B2015C"))
    assert log == TERMINAL[0x9F02] + TERMINAL[0x5F2A] + TERMINAL[0x9A] + b"\x00\x00\x02\x80"
    assert sw(card, apdu("00B2025C")) == 0x6A83


ANY_APDU = st.binary(min_size=0, max_size=40)
EMV_APDU = st.tuples(
    st.sampled_from([0x00, 0x80, 0x84, 0x04, 0xFF]),
    st.sampled_from([0xA4, 0xA8, 0xB2, 0xCA, 0x20, 0x84, 0x88, 0xAE, 0x82, 0x24, 0x1E, 0xDA]),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=40),
).map(lambda t: bytes(t[:4]) + (bytes((len(t[4]),)) + t[4] if t[4] else b""))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=ANY_APDU, commands=st.lists(EMV_APDU, max_size=6))
def test_random_apdus_never_raise(first: bytes, commands: list[bytes]) -> None:
    card, _, _ = start("mc-debit-cda")
    for command in [first, *commands]:
        r = card.process(command)
        assert len(r) >= 2
        assert r[-2:] != b"\x6f\x00", command.hex()


@settings(max_examples=60, deadline=None)
@given(commands=st.lists(ANY_APDU, max_size=5))
def test_random_apdus_on_a_fresh_contactless_card(commands: list[bytes]) -> None:
    card = EmvCardApplication(PROFILES["visa-contactless-only"], interface="contactless")
    for command in commands:
        assert len(card.process(command)) >= 2
