"""Shared parts of the `rig card serve` tests (tests/test_card_serve.py, tests/test_card_faults.py):
the served card host on vpcd reader index 1, reader helpers, and a terminal's EMV read with the
cryptogram checked against the profile's TEST keys (rig and pyemv).

All keys, PINs and PANs come from the shipped TEST profiles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyemv import cvn as pyemv_cvn
from simproc import launch, stop

from drivers.cardsim import CardSimulatorControl
from drivers.pcsc import PcscReader
from rig.bench.pcscd import ensure_pcscd, vpcd_port
from rig.crypto import arqc
from rig.emv.dol import build_dol_data, parse_afl
from rig.emv.tlv import decode, find
from rig.profiles import load_profile

INDEX = 1
READER = "Virtual PCD 00 01"
PROFILES = Path(__file__).resolve().parents[1] / "cardprofiles"
PURSE = PROFILES / "prepaid-purse.yaml"
VISA = PROFILES / "visa-credit-online-pin-dda.yaml"
DUAL = PROFILES / "mc-dual-interface.yaml"
GET_BALANCE = bytes.fromhex("805C000204")
UN = bytes.fromhex("A1B2C3D4")


def serve_card_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Body of a module-scoped `host` fixture: `rig card serve` of the purse profile under a
    running pcscd; yields its control client, readiness line, trace path and process."""
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


def reset_after(host: dict[str, Any]) -> Iterator[CardSimulatorControl]:
    """Body of a `ctl` fixture: the host's control client, faults cleared and card inserted
    after the test."""
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


def select_purse(rdr: PcscReader) -> None:
    aid = bytes.fromhex(load_profile(PURSE).purse.aid)  # type: ignore[union-attr]
    ok(rdr, b"\x00\xa4\x04\x00" + bytes((len(aid),)) + aid + b"\x00")


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
