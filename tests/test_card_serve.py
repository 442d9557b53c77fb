"""`rig card serve` through real pcscd + vpcd (reader index 1, port 35964): EMV and purse flows
with the rig's PcscReader, T=0 rules seen by raw pyscard, swap, the decoded and redacted trace,
and ordinary PC/SC tools (pcsc_scan, scriptor). Faults: tests/test_card_faults.py.

All keys, PINs and PANs come from the shipped TEST profiles."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cardserve_helpers import (
    DUAL,
    GET_BALANCE,
    INDEX,
    PROFILES,
    PURSE,
    PYEMV,
    READER,
    VISA,
    arqc_verifies,
    connected,
    emv_flow,
    ok,
    reset_after,
    serve_card_host,
    use,
)
from psec.mac import generate_cbc_mac
from smartcard import scard

from drivers.cardsim import CardSimulatorControl
from drivers.pcsc import PcscTimeout
from rig.bench.pcscd import vpcd_port
from rig.card import trace
from rig.emv.tlv import decode, find
from rig.evidence import Direction, Transcript, read_transcript
from rig.prepaid import purse as p
from rig.profiles import load_profile

pytestmark = pytest.mark.pcsc

TID = bytes.fromhex("112233445566")
DATE, TIME = bytes.fromhex("20261125"), bytes.fromhex("183000")
SEQ = 0x0001_0042


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield from serve_card_host(tmp_path_factory)


@pytest.fixture
def ctl(host: dict[str, Any]) -> Iterator[CardSimulatorControl]:
    yield from reset_after(host)


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


# -- EMV -------------------------------------------------------------------------------------


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


# -- trace decoding, in process --------------------------------------------------------------


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
