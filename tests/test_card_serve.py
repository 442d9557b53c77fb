"""`rig card serve` through real pcscd + vpcd (reader index 1, port 35964): EMV and purse flows
with the rig's PcscReader, T=0 rules seen by raw pyscard, every run-time fault, swap, the
decoded and redacted trace, and ordinary PC/SC tools (pcsc_scan, scriptor).

All keys, PINs and PANs come from the shipped TEST profiles."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from psec.mac import generate_cbc_mac
from pyemv import cvn as pyemv_cvn
from simproc import launch, stop
from smartcard import scard

from drivers.cardsim import CardSimulatorControl, CardSimulatorError
from drivers.pcsc import CardRemovedError, PcscReader, PcscTimeout
from rig.bench.pcscd import ensure_pcscd, vpcd_port
from rig.card import trace
from rig.card.faults import FaultError, FaultyCard, T0Transport, corrupt_cryptogram, parse_ins
from rig.crypto import arqc
from rig.emv.dol import build_dol_data, parse_afl
from rig.emv.tlv import decode, find
from rig.evidence import Direction, Transcript, read_transcript
from rig.prepaid import purse as p
from rig.profiles import load_profile

pytestmark = pytest.mark.pcsc

INDEX = 1
READER = "Virtual PCD 00 01"
PROFILES = Path(__file__).resolve().parents[1] / "cardprofiles"
PURSE = PROFILES / "prepaid-purse.yaml"
VISA = PROFILES / "visa-credit-online-pin-dda.yaml"
DUAL = PROFILES / "mc-dual-interface.yaml"
TID = bytes.fromhex("112233445566")
DATE, TIME = bytes.fromhex("20261125"), bytes.fromhex("183000")
SEQ = 0x0001_0042
GET_BALANCE = bytes.fromhex("805C000204")
UN = bytes.fromhex("A1B2C3D4")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("cardhost")
    trace = tmp / "card.jsonl"
    with ensure_pcscd():
        proc, ready = launch(
            "rig.cli", "card", "serve", str(PURSE),
            "--port", str(vpcd_port(INDEX)),
            "--mute-timeout", "0.5",
            "--transcript", str(trace),
            "--state-dir", str(tmp / "state"),
        )  # fmt: skip
        try:
            assert ready["ready"], ready
            ctl = CardSimulatorControl(ready["endpoints"]["control"])
            yield {"control": ctl, "ready": ready, "trace": trace, "proc": proc}
            ctl.close()
        finally:
            stop(proc, timeout=10)


@pytest.fixture
def ctl(host: dict[str, Any]) -> Iterator[CardSimulatorControl]:
    control: CardSimulatorControl = host["control"]
    yield control
    control.clear_faults()
    if not control.status()["present"]:
        control.insert()


def use(ctl: CardSimulatorControl, path: Path, interface: str = "contact") -> None:
    status = ctl.status()
    if status.get("profile") != path.stem or status.get("interface") != interface:
        ctl.swap(str(path), interface=interface)


def connected(protocol: str = "any") -> PcscReader:
    rdr = PcscReader(READER)
    rdr.wait_for_card(3.0)
    rdr.connect(protocol, reset=protocol != "any")
    return rdr


def ok(rdr: PcscReader, apdu: bytes) -> bytes:
    data, sw = rdr.transmit(apdu)
    assert sw == 0x9000, f"{apdu.hex().upper()} answered {sw:04X}"
    return data


# -- serving, readiness, bad input -----------------------------------------------------------


def test_readiness_names_reader_vpcd_control_and_profile(host: dict[str, Any]) -> None:
    endpoints = host["ready"]["endpoints"]
    assert endpoints["reader"] == READER
    assert endpoints["vpcd"] == f"127.0.0.1:{vpcd_port(INDEX)}"
    assert endpoints["profile"] == "prepaid-purse"
    assert endpoints["control"].startswith("127.0.0.1:")


def test_serve_refuses_a_bad_profile_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: bad\nkind: emv\n")
    for args in ([str(bad)], [str(tmp_path / "missing.yaml")], [str(VISA), "--control", "x"]):
        done = subprocess.run(
            [sys.executable, "-m", "rig.cli", "card", "serve", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
        assert done.stdout == ""


# -- purse through PC/SC ---------------------------------------------------------------------


def purse_host_keys() -> tuple[bytes, bytes, bytes, bytes]:
    section = load_profile(PURSE).purse
    assert section is not None
    asn = bytes.fromhex(section.asn)
    keys = section.keys
    return (
        asn,
        p.diversify(bytes.fromhex(keys.mlk), asn),
        p.diversify(bytes.fromhex(keys.mpk), asn),
        p.diversify(bytes.fromhex(keys.mtk), asn),
    )


def test_purse_load_and_purchase_through_pcsc(ctl: CardSimulatorControl) -> None:
    use(ctl, PURSE)
    asn, dlk, dpk, dtk = purse_host_keys()
    section = load_profile(PURSE).purse
    assert section is not None
    aid = bytes.fromhex(section.aid)
    with connected() as rdr:
        fci = ok(rdr, b"\x00\xa4\x04\x00" + bytes((len(aid),)) + aid + b"\x00")
        assert find(decode(fci), 0xDF70).value == asn  # type: ignore[union-attr]
        start = int.from_bytes(ok(rdr, GET_BALANCE), "big")
        # load 20.00 (INITIALIZE FOR LOAD answers 16 bytes: the reader fetched them after 61xx)
        resp = ok(rdr, bytes.fromhex("805000020B01") + (2000).to_bytes(4, "big") + TID + b"\x10")
        balance, counter = int.from_bytes(resp[:4], "big"), int.from_bytes(resp[4:6], "big")
        assert balance == start
        random4, mac1 = resp[8:12], resp[12:16]
        seslk = p.load_session_key(dlk, random4, counter)
        assert mac1 == p.load_mac1(seslk, balance, 2000, TID)
        mac2 = p.load_mac2(seslk, 2000, TID, DATE, TIME)
        tac = ok(rdr, bytes.fromhex("805200000B") + DATE + TIME + mac2 + b"\x04")
        assert tac == p.load_tac(dtk, start + 2000, counter, 2000, TID, DATE, TIME)
        # psec cross-check of the TAC (CBC-MAC under the XOR of the key halves, padding 2)
        tac_key = bytes(a ^ b for a, b in zip(dtk[:8], dtk[8:], strict=True))
        data = (start + 2000).to_bytes(4, "big") + counter.to_bytes(2, "big")
        data += (2000).to_bytes(4, "big") + b"\x02" + TID + DATE + TIME
        assert tac == generate_cbc_mac(tac_key, data, padding=2)[:4]
        # purchase 12.34
        resp = ok(rdr, bytes.fromhex("805001020B01") + (1234).to_bytes(4, "big") + TID + b"\x0f")
        off_counter, random4 = int.from_bytes(resp[4:6], "big"), resp[11:15]
        sespk = p.purchase_session_key(dpk, random4, off_counter, SEQ)
        mac1 = p.purchase_mac1(sespk, 1234, TID, DATE, TIME)
        resp = ok(rdr, bytes.fromhex("805401000F") + SEQ.to_bytes(4, "big") + DATE + TIME + mac1)
        assert resp[4:] == p.purchase_mac2(sespk, 1234)
        assert resp[:4] == p.purchase_tac(dtk, 1234, TID, SEQ, DATE, TIME)
        assert int.from_bytes(ok(rdr, GET_BALANCE), "big") == start + 2000 - 1234


def test_t0_rules_seen_by_raw_pyscard(ctl: CardSimulatorControl) -> None:
    use(ctl, PURSE)
    aid = bytes.fromhex(load_profile(PURSE).purse.aid)  # type: ignore[union-attr]
    rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert rv == scard.SCARD_S_SUCCESS
    try:
        rv, card, proto = scard.SCardConnect(
            ctx, READER, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0
        )
        assert rv == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(rv)

        def send(apdu: bytes) -> bytes:
            rv, resp = scard.SCardTransmit(card, proto, list(apdu))
            assert rv == scard.SCARD_S_SUCCESS
            return bytes(resp)

        first = send(b"\x00\xa4\x04\x00" + bytes((len(aid),)) + aid)  # case 4 sent as case 3
        assert first[0] == 0x61 and len(first) == 2
        total = first[1]
        part = send(bytes.fromhex("00C0000010"))
        assert len(part) == 18 and part[-2:] == bytes((0x61, total - 16))
        rest = send(bytes((0, 0xC0, 0, 0, total - 16)))
        assert rest[-2:] == b"\x90\x00" and decode(part[:-2] + rest[:-2])[0].tag == 0x6F
        assert send(bytes.fromhex("805C000202")) == b"\x6c\x04"  # case 2, Le too short
        assert len(send(bytes.fromhex("805C000204"))) == 6
        scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
    finally:
        scard.SCardReleaseContext(ctx)


# -- run-time faults -------------------------------------------------------------------------


def test_fault_sw_once_then_normal(ctl: CardSimulatorControl) -> None:
    use(ctl, PURSE)
    status = ctl.fault("sw", ins="GET_BALANCE", sw="6A81", once=True)
    assert status["faults"]["sw"] == [{"ins": 0x5C, "sw": "6A81", "once": True}]
    with connected() as rdr:
        select_purse(rdr)
        assert rdr.transmit(GET_BALANCE) == (b"", 0x6A81)
        data, sw = rdr.transmit(GET_BALANCE)
        assert sw == 0x9000 and len(data) == 4
        ctl.fault("sw", ins="5C", sw="6985")
        assert rdr.transmit(GET_BALANCE)[1] == 0x6985
        assert rdr.transmit(GET_BALANCE)[1] == 0x6985
        ctl.clear_faults()
        assert rdr.transmit(GET_BALANCE)[1] == 0x9000
    assert ctl.status()["injected"]["sw"] >= 3


def select_purse(rdr: PcscReader) -> None:
    aid = bytes.fromhex(load_profile(PURSE).purse.aid)  # type: ignore[union-attr]
    ok(rdr, b"\x00\xa4\x04\x00" + bytes((len(aid),)) + aid + b"\x00")


def test_fault_delay_answers_late(ctl: CardSimulatorControl) -> None:
    use(ctl, PURSE)
    with connected() as rdr:
        select_purse(rdr)
        t0 = time.monotonic()
        rdr.transmit(GET_BALANCE)
        fast = time.monotonic() - t0
        ctl.fault("delay", ms=300, ins="GET_BALANCE")
        t0 = time.monotonic()
        assert rdr.transmit(GET_BALANCE)[1] == 0x9000
        assert time.monotonic() - t0 >= 0.3 > fast
        ctl.clear_faults()
        t0 = time.monotonic()
        rdr.transmit(GET_BALANCE)
        assert time.monotonic() - t0 < 0.3


def test_fault_mute_makes_the_reader_give_up(ctl: CardSimulatorControl) -> None:
    use(ctl, PURSE)
    with connected() as rdr:
        select_purse(rdr)
        ctl.fault("mute", timeout=0.5)
        assert ctl.status()["muted"] is True
        with pytest.raises(PcscTimeout):
            rdr.transmit(GET_BALANCE)
        ctl.clear_faults()
        assert ctl.status()["muted"] is False
        rdr.connect()
        select_purse(rdr)
        assert rdr.transmit(GET_BALANCE)[1] == 0x9000


def test_fault_remove_at_pulls_the_card_during_the_nth_command(
    ctl: CardSimulatorControl,
) -> None:
    use(ctl, PURSE)
    with connected() as rdr:
        select_purse(rdr)
        ctl.fault("remove_at", n=2)
        assert rdr.transmit(GET_BALANCE)[1] == 0x9000
        with pytest.raises(CardRemovedError):
            rdr.transmit(GET_BALANCE)
        assert ctl.status()["present"] is False
        assert ctl.status()["injected"]["remove_at"] == 1
    ctl.insert()
    with connected() as rdr:
        select_purse(rdr)
        assert rdr.transmit(GET_BALANCE)[1] == 0x9000


@pytest.mark.parametrize(
    ("kind", "params", "fragment"),
    [
        ("sw", {"ins": "AE"}, "needs ins and sw"),
        ("sw", {"ins": "NO SUCH COMMAND", "sw": "6985"}, "not an INS"),
        ("sw", {"ins": "AE", "sw": "12"}, "four hex digits"),
        ("delay", {"ms": -5}, "ms -5"),
        ("remove_at", {"n": 0}, "n 0"),
        ("melt", {}, "unknown fault"),
    ],
)
def test_bad_fault_requests_are_refused_by_name(
    ctl: CardSimulatorControl, kind: str, params: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(CardSimulatorError, match=fragment):
        ctl.fault(kind, **params)
    assert ctl.status()["faults"]["sw"] == []


def test_profile_start_up_faults_apply_after_swap(
    ctl: CardSimulatorControl, tmp_path: Path
) -> None:
    data = yaml.safe_load(PURSE.read_text())
    data["id"] = "purse-balance-fault"
    data["faults"] = {"status_words": {"GET_BALANCE": "6A81"}}
    path = tmp_path / "purse-balance-fault.yaml"
    path.write_text(yaml.safe_dump(data))
    status = ctl.swap(str(path))
    assert status["profile"] == "purse-balance-fault"
    with connected() as rdr:
        select_purse(rdr)
        assert rdr.transmit(GET_BALANCE)[1] == 0x6A81


# -- EMV -------------------------------------------------------------------------------------


def terminal_values(amount: int) -> dict[int, bytes]:
    return {
        0x9F02: bytes.fromhex(f"{amount:012d}"),
        0x9F03: bytes(6),
        0x9F1A: bytes.fromhex("0250"),
        0x95: bytes(5),
        0x5F2A: bytes.fromhex("0978"),
        0x9A: bytes.fromhex("261125"),
        0x9C: b"\x00",
        0x9F37: UN,
        0x9F35: b"\x22",
        0x9F34: bytes.fromhex("1F0302"),
        0x9F66: bytes.fromhex("36000000"),
    }


def emv_flow(rdr: PcscReader, aid: bytes, amount: int = 1000) -> dict[str, Any]:
    """SELECT AID, GPO, READ RECORDs, GENERATE AC (ARQC): what a terminal reads."""
    fci = decode(ok(rdr, b"\x00\xa4\x04\x00" + bytes((len(aid),)) + aid + b"\x00"))
    pdol = find(fci, 0x9F38)
    values = terminal_values(amount)
    pdol_data = build_dol_data(pdol.value, values) if pdol else b""
    body = b"\x83" + bytes((len(pdol_data),)) + pdol_data
    gpo = decode(ok(rdr, b"\x80\xa8\x00\x00" + bytes((len(body),)) + body + b"\x00"))
    if gpo[0].tag == 0x80:
        aip, afl = gpo[0].value[:2], gpo[0].value[2:]
    else:
        aip, afl = find(gpo, 0x82).value, find(gpo, 0x94).value  # type: ignore[union-attr]
    records: dict[int, bytes] = {}
    for entry in parse_afl(afl):
        for number in entry.records():
            rec = ok(rdr, bytes((0, 0xB2, number, (entry.sfi << 3) | 4, 0)))
            for t in decode(rec)[0].children or []:
                records.setdefault(t.tag, t.value)
    cdol1 = build_dol_data(records[0x8C], values)
    ac = decode(ok(rdr, bytes((0x80, 0xAE, 0x80, 0, len(cdol1))) + cdol1 + b"\x00"))
    if ac[0].tag == 0x80:
        v = ac[0].value
        cid, atc, cryptogram, iad = v[0], v[1:3], v[3:11], v[11:]
    else:
        cid = find(ac, 0x9F27).value[0]  # type: ignore[union-attr]
        atc = find(ac, 0x9F36).value  # type: ignore[union-attr]
        cryptogram = find(ac, 0x9F26).value  # type: ignore[union-attr]
        iad = find(ac, 0x9F10).value  # type: ignore[union-attr]
    return {
        "aip": aip,
        "records": records,
        "cid": cid,
        "atc": atc,
        "ac": cryptogram,
        "iad": iad,
        "values": values,
    }


PYEMV = {
    "visa-10": (pyemv_cvn.VisaCVN10, "cvr", (3, 7)),
    "visa-18": (pyemv_cvn.VisaCVN18, "tag_9f10", None),
    "visa-22": (pyemv_cvn.VisaCVN22, "tag_9f10", None),
    "mc-16": (pyemv_cvn.MasterCardCVN16, "cvr", (2, 8)),
    "mc-20": (pyemv_cvn.MasterCardCVN20, "cvr", (2, 8)),
}
"""CVN -> (pyemv class, how it takes the IAD part, CVR slice of 9F10); pyemv has no PBOC CVN."""


def arqc_verifies(path: Path, flow: dict[str, Any]) -> tuple[bool, bool | None]:
    """(rig verifies, pyemv agrees or None without a pyemv CVN) for the flow's cryptogram with
    the profile's TEST issuer master key."""
    app = load_profile(path).applications[0]
    cvn = app.crypto.cvn
    tags: dict[str, bytes] = {"82": flow["aip"], "9F36": flow["atc"], "9F10": flow["iad"]}
    for element in arqc.cvn_data_elements(cvn):
        if element not in tags and element != "CVR":
            tags[element] = flow["values"][int(element, 16)]
    imk = bytes.fromhex(app.crypto.imk_ac)
    mk = arqc.icc_master_key(cvn, imk, app.pan, app.psn)
    mine = arqc.verify_arqc(cvn, mk, tags, flow["ac"])
    if cvn not in PYEMV:
        return mine, None
    cls, how, cut = PYEMV[cvn]
    ref = cls(imk, imk, imk, app.pan, app.psn)
    args = {f"tag_{k.lower()}": v for k, v in tags.items() if k != "9F10"}
    args[how] = flow["iad"][cut[0] : cut[1]] if cut else flow["iad"]
    return mine, ref.generate_ac(**args) == flow["ac"]


def _contact_emv_profiles() -> list[str]:
    """Every shipped EMV profile whose contact chip answers and is not blocked."""
    names = []
    for path in sorted(PROFILES.glob("*.yaml")):
        profile = load_profile(path)
        if profile.kind != "emv" or "contact" not in profile.interfaces:
            continue
        if profile.faults.mute or profile.risk.application_blocked:
            continue  # their own tests below
        names.append(profile.id)
    return names


def test_every_contact_emv_profile_runs_the_flow() -> None:
    assert len(_contact_emv_profiles()) >= 12


def test_blocked_application_answers_6283_through_pcsc(ctl: CardSimulatorControl) -> None:
    path = PROFILES / "visa-app-blocked.yaml"
    use(ctl, path)
    aid = bytes.fromhex(load_profile(path).applications[0].aid)
    with connected() as rdr:
        _, sw = rdr.transmit(bytes([0x00, 0xA4, 0x04, 0x00, len(aid)]) + aid + b"\x00")
    assert sw == 0x6283


def test_muted_chip_profile_gives_a_mute_card_for_fallback(ctl: CardSimulatorControl) -> None:
    use(ctl, PROFILES / "visa-chip-fallback.yaml")
    with connected() as rdr, pytest.raises(PcscTimeout):
        rdr.transmit(bytes.fromhex("00A404000E315041592E5359532E444446303100"))


@pytest.mark.parametrize("name", _contact_emv_profiles())
def test_emv_flow_cryptogram_verifies_per_profile(ctl: CardSimulatorControl, name: str) -> None:
    path = PROFILES / f"{name}.yaml"
    use(ctl, path)
    with connected() as rdr:
        flow = emv_flow(rdr, bytes.fromhex(load_profile(path).applications[0].aid))
    assert flow["cid"] & 0xC0 in (0x00, 0x40, 0x80)
    cvn = load_profile(path).applications[0].crypto.cvn
    assert arqc_verifies(path, flow) == (True, True if cvn in PYEMV else None)


def test_emv_read_and_arqc_verifies_with_profile_keys(ctl: CardSimulatorControl) -> None:
    use(ctl, VISA)
    app = load_profile(VISA).applications[0]
    with connected() as rdr:
        pse = decode(ok(rdr, bytes.fromhex("00A404000E") + b"1PAY.SYS.DDF01" + b"\x00"))
        assert find(pse, 0x88) is not None
        flow = emv_flow(rdr, bytes.fromhex(app.aid))
    assert flow["cid"] & 0xC0 == 0x80  # ARQC
    assert flow["records"][0x5A].hex().upper().startswith(app.pan)
    assert arqc_verifies(VISA, flow) == (True, True)
    with connected("T0") as rdr:  # the same flow in T=0 (61xx / GET RESPONSE by the reader)
        assert rdr.protocol == "T=0"
        assert arqc_verifies(VISA, emv_flow(rdr, bytes.fromhex(app.aid))) == (True, True)


def test_fault_corrupt_cryptogram_once(ctl: CardSimulatorControl) -> None:
    use(ctl, VISA)
    aid = bytes.fromhex(load_profile(VISA).applications[0].aid)
    ctl.fault("corrupt_cryptogram")
    with connected() as rdr:
        bad = emv_flow(rdr, aid)
        good = emv_flow(rdr, aid)
    assert arqc_verifies(VISA, bad) == (False, False)
    assert arqc_verifies(VISA, good) == (True, True)
    assert ctl.status()["injected"]["corrupt_cryptogram"] == 1


def test_state_dir_keeps_the_atc_across_swaps(ctl: CardSimulatorControl) -> None:
    use(ctl, VISA)
    aid = bytes.fromhex(load_profile(VISA).applications[0].aid)
    with connected() as rdr:
        before = int.from_bytes(emv_flow(rdr, aid)["atc"], "big")
    ctl.swap(str(VISA))
    with connected() as rdr:
        after = int.from_bytes(emv_flow(rdr, aid)["atc"], "big")
    assert after == before + 1


def test_trace_has_decoded_apdus_with_pan_masked_and_no_track2(
    host: dict[str, Any], ctl: CardSimulatorControl
) -> None:
    use(ctl, VISA)
    app = load_profile(VISA).applications[0]
    with connected() as rdr:
        emv_flow(rdr, bytes.fromhex(app.aid))
        ok(rdr, bytes.fromhex("0020008008241234FFFFFFFFFF"))  # plaintext VERIFY, TEST PIN
    deadline = time.monotonic() + 3
    text = ""
    while time.monotonic() < deadline:
        text = host["trace"].read_text()
        if '"VERIFY (plaintext PIN)"' in text:
            break
        time.sleep(0.1)
    entries = read_transcript(host["trace"])
    commands = [e["decoded"].get("command") for e in entries if e["dir"] == "rx"]
    for name in ("SELECT", "GET PROCESSING OPTIONS", "READ RECORD", "GENERATE AC"):
        assert name in commands
    responses = [e for e in entries if e["dir"] == "tx" and "tlv" in e.get("decoded", {})]
    tags = {
        t["tag"] for e in responses for top in e["decoded"]["tlv"] for t in top.get("children", [])
    }
    assert {"5A", "57", "8C"} <= tags
    assert any(e["decoded"]["meaning"] == "normal processing" for e in responses)
    gen = next(
        e for e in entries if e["dir"] == "rx" and e["decoded"].get("command") == "GENERATE AC"
    )
    assert gen["decoded"]["requested"] == "ARQC"
    masked = app.pan[:6] + "******" + app.pan[-4:]
    assert app.pan not in text
    assert masked in text
    assert app.track2_equivalent[16:] not in text  # the track 2 remainder never shows
    assert "241234FFFFFFFFFF" not in text  # the VERIFY PIN block is recorded as a length only
    verify = next(e for e in entries if e["decoded"].get("command") == "VERIFY (plaintext PIN)")
    assert verify["raw"].startswith("[redacted]")


# -- ordinary PC/SC tools --------------------------------------------------------------------


def test_pcsc_scan_and_scriptor_see_the_card(ctl: CardSimulatorControl, tmp_path: Path) -> None:
    use(ctl, DUAL, interface="contactless")
    atr = load_profile(DUAL).atr
    assert atr is not None
    readers = subprocess.run(
        ["timeout", "5", "pcsc_scan", "-r"], capture_output=True, text=True, timeout=10
    )
    assert READER in readers.stdout
    cards = subprocess.run(
        ["timeout", "5", "pcsc_scan", "-c", "-n", "-t", "1"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    shown = " ".join(atr[i : i + 2] for i in range(0, len(atr), 2))
    assert shown in cards.stdout
    script = tmp_path / "ppse.script"
    script.write_text("00 A4 04 00 0E 32 50 41 59 2E 53 59 53 2E 44 44 46 30 31 00\n")
    done = subprocess.run(
        ["timeout", "5", "scriptor", "-r", READER, str(script)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 0, done.stderr
    answer = " ".join(done.stdout.split("< ", 1)[1].split())
    assert answer.endswith("90 00 : Normal processing.")
    assert "84 0E 32 50 41 59 2E 53 59 53 2E 44 44 46 30 31" in answer  # the PPSE FCI
    aid = load_profile(DUAL).applications[0].aid
    assert "4F 07 " + " ".join(aid[i : i + 2] for i in range(0, len(aid), 2)) in answer


# -- the fault wrapper, T=0 layer and trace decoding, in process ------------------------------


class Echo:
    """A tiny CardApplication answering GENERATE AC with a fixed format 1 or 2 answer."""

    atr = bytes.fromhex("3B00")

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.seen: list[bytes] = []

    def reset(self) -> None:
        self.seen.clear()

    def process(self, apdu: bytes) -> bytes:
        self.seen.append(apdu)
        return self.answer


AC = bytes.fromhex("1122334455667788")
FORMAT1 = (
    bytes.fromhex("8012")
    + b"\x80"
    + b"\x00\x05"
    + AC
    + bytes.fromhex("06010A03A00000")
    + b"\x90\x00"
)
FORMAT2 = (
    bytes.fromhex("771A9F2701809F360200059F2608")
    + AC
    + bytes.fromhex("9F1007060A0A03A00000")
    + b"\x90\x00"
)


@pytest.mark.parametrize("answer", [FORMAT1, FORMAT2])
def test_corrupt_cryptogram_flips_one_byte_of_the_ac_once(answer: bytes) -> None:
    card = FaultyCard(Echo(answer))
    card.arm("corrupt_cryptogram")
    bad = card.process(bytes.fromhex("80AE800000"))
    assert len(bad) == len(answer) and bad != answer
    diff = [i for i in range(len(answer)) if bad[i] != answer[i]]
    assert len(diff) == 1 and answer.index(AC) <= diff[0] < answer.index(AC) + 8
    assert card.process(bytes.fromhex("80AE800000")) == answer


def test_corrupt_cryptogram_leaves_a_format1_gpo_alone() -> None:
    gpo = bytes.fromhex("800E3C00080101001001010118010200") + b"\x90\x00"
    card = FaultyCard(Echo(gpo))
    card.arm("corrupt_cryptogram")
    assert card.process(bytes.fromhex("80A8000002830000")) == gpo
    assert card.armed()["corrupt_cryptogram"] == "once"


@given(st.binary(max_size=80))
def test_corrupt_cryptogram_never_raises_on_any_answer(data: bytes) -> None:
    out = corrupt_cryptogram(data + b"\x90\x00")
    assert out is None or (len(out) == len(data) + 2 and out != data + b"\x90\x00")


@pytest.mark.parametrize(
    ("value", "ins"), [("GENERATE_AC", 0xAE), ("ae", 0xAE), (0xA8, 0xA8), ("get data", 0xCA)]
)
def test_parse_ins_takes_names_hex_and_numbers(value: object, ins: int) -> None:
    assert parse_ins(value) == ins


@pytest.mark.parametrize("value", ["", "FOO", 300, True, None, "ABC"])
def test_parse_ins_refuses_with_fault_error(value: object) -> None:
    with pytest.raises(FaultError):
        parse_ins(value)


def test_sw_fault_does_not_reach_the_application() -> None:
    echo = Echo(b"\x90\x00")
    card = FaultyCard(echo)
    card.arm("sw", ins="AE", sw="6985", once=True)
    assert card.process(bytes.fromhex("80AE800000")) == b"\x69\x85"
    assert echo.seen == []
    assert card.process(bytes.fromhex("80AE800000")) == b"\x90\x00"


def test_t0_transport_chains_long_answers_and_answers_6c() -> None:
    body = bytes(range(40))
    card = T0Transport(Echo(body + b"\x90\x00"))
    assert card.process(bytes.fromhex("00B2010C")) == b"\x61\x28"  # no Le: 61xx
    assert card.process(bytes.fromhex("00C0000020")) == body[:32] + b"\x61\x08"
    assert card.process(bytes.fromhex("00C0000008")) == body[32:] + b"\x90\x00"
    assert card.process(bytes.fromhex("00B2010C10")) == b"\x6c\x28"  # case 2, Le short
    assert card.process(bytes.fromhex("00B2010C00")) == body + b"\x90\x00"  # Le 256 fits
    assert card.process(bytes.fromhex("00A4040002AABB10")) == b"\x61\x28"  # case 4, Le short


def test_trace_entries_decode_lazily_and_redact_in_the_transcript(tmp_path: Path) -> None:
    pan = "4761739001010010"  # TEST PAN
    record = bytes.fromhex("70145A08" + pan + "5F24033112315F340101")
    entry = trace.response_entry(bytes.fromhex("00B2010C00"), record + b"\x90\x00")
    assert dict.__len__(entry) == 0  # nothing decoded yet
    assert entry["sw"] == "9000" and entry["tlv"][0]["tag"] == "70"
    assert trace.decode_command(bytes.fromhex("00B2021400")) == {
        "ins": "READ RECORD",
        "command": "READ RECORD",
        "record": 2,
        "sfi": 2,
    }
    path = tmp_path / "t.jsonl"
    with Transcript(path, "cardsim") as tr:
        tr.record(Direction.TX, record, trace.response_entry(b"\x00\xb2\x01\x0c\x00", record))
    text = path.read_text()
    assert pan not in text and "476173******0010" in text
