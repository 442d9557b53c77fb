"""Capture a card's public data through PC/SC into a profile draft (`rig card capture`).

Read-only: SELECT PPSE and PSE (with the PSE records), SELECT each AID found, GET DATA (ATC,
last online ATC, PIN try counter, log format) before GET PROCESSING OPTIONS (so the ATC read is
the one the card starts with), GPO with default PDOL data, and every record the AFL names. No
GENERATE AC, VERIFY or anything that changes the card beyond the ATC its GPO may count. The
draft holds no keys; the PAN is masked first 6 / last 4 everywhere unless `keep_pan` (test
cards only). `rig.profiles.capture.load_capture_draft` turns the draft into a servable profile.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Protocol

import yaml

from rig.emv.dol import AflError, DolError, build_dol_data, parse_afl
from rig.emv.tlv import Tlv, TlvError, decode, find
from rig.evidence.redact import mask_pan

PPSE = b"2PAY.SYS.DDF01"
PSE = b"1PAY.SYS.DDF01"
GET_DATA_TAGS = (0x9F36, 0x9F13, 0x9F17, 0x9F4F, 0x9F14, 0x9F23)
UNPREDICTABLE_NUMBER = bytes.fromhex("01020304")
"""Fixed 9F37 in the capture's GPO, so a capture is repeatable."""


class CaptureError(Exception):
    """The card could not be captured; the message names the step and the answer."""


class Transmitter(Protocol):
    """What capture needs from a reader (`drivers.pcsc.PcscReader` provides it)."""

    @property
    def atr(self) -> bytes: ...

    def transmit(self, apdu: bytes) -> tuple[bytes, int]: ...


def default_pdol_values(today: dt.date | None = None) -> dict[int, bytes]:
    """Terminal data a capture's GPO fills a PDOL with (zeros for anything not listed)."""
    day = today or dt.date.today()
    return {
        0x9A: bytes.fromhex(day.strftime("%y%m%d")),
        0x9C: b"\x00",
        0x9F1A: bytes.fromhex("0250"),
        0x5F2A: bytes.fromhex("0978"),
        0x9F35: b"\x22",
        0x9F33: bytes.fromhex("E0F8C8"),
        0x9F37: UNPREDICTABLE_NUMBER,
        0x9F66: bytes.fromhex("36000000"),
    }


def _select(aid: bytes) -> bytes:
    return b"\x00\xa4\x04\x00" + bytes((len(aid),)) + aid + b"\x00"


def _tlvs(data: bytes, step: str) -> list[Tlv]:
    try:
        return decode(data)
    except TlvError as exc:
        raise CaptureError(f"{step}: the answer is not BER-TLV ({exc})") from None


def _ordered(objects: list[Tlv]) -> dict[str, str]:
    out: dict[str, str] = {}
    for t in objects:
        key = t.tag_hex
        if key in out:
            raise CaptureError(f"tag {key} appears twice in one record: cannot be a profile")
        out[key] = t.value.hex().upper()
    return out


def _directory_entries(tlvs: list[Tlv]) -> list[dict[str, Any]]:
    """Application templates (61) anywhere in `tlvs`: AID, label, priority, preferred name."""
    found: list[dict[str, Any]] = []

    def walk(items: list[Tlv]) -> None:
        for t in items:
            if t.tag == 0x61 and t.children is not None:
                aid = find(t.children, 0x4F)
                if aid is None:
                    continue
                prio = find(t.children, 0x87)
                found.append(
                    {
                        "aid": aid.value,
                        "priority": prio.value[0] & 0x0F if prio and prio.value else 15,
                    }
                )
            elif t.children is not None:
                walk(t.children)

    walk(tlvs)
    return found


class CardCapture:
    """One capture run over a connected reader; `run()` returns the draft as a mapping."""

    def __init__(self, reader: Transmitter, *, keep_pan: bool = False) -> None:
        self.reader = reader
        self.keep_pan = keep_pan
        self.notes: list[str] = []
        self.apdus = 0

    def _send(self, apdu: bytes) -> tuple[bytes, int]:
        self.apdus += 1
        return self.reader.transmit(apdu)

    def directory(self) -> list[bytes]:
        """AIDs from the PPSE and the PSE, by priority (PPSE first on ties), no repeats."""
        entries: list[dict[str, Any]] = []
        data, sw = self._send(_select(PPSE))
        if sw == 0x9000:
            entries += _directory_entries(_tlvs(data, "SELECT PPSE"))
        data, sw = self._send(_select(PSE))
        if sw == 0x9000:
            fci = _tlvs(data, "SELECT PSE")
            sfi = next((t for top in fci if (t := top.find(0x88)) is not None), None)
            if sfi is not None and sfi.value:
                for number in range(1, 17):
                    rec, rsw = self._send(bytes((0, 0xB2, number, (sfi.value[0] << 3) | 4, 0)))
                    if rsw != 0x9000:
                        break
                    entries += _directory_entries(_tlvs(rec, f"PSE record {number}"))
        aids: list[bytes] = []
        for e in sorted(entries, key=lambda e: e["priority"]):
            if e["aid"] not in aids:
                aids.append(e["aid"])
        return aids

    def application(self, aid: bytes) -> dict[str, Any]:
        """Everything public of one application, as a profile `applications[]` entry."""
        data, sw = self._send(_select(aid))
        if sw not in (0x9000, 0x6283):
            raise CaptureError(f"SELECT {aid.hex().upper()} answered {sw:04X}")
        blocked = sw == 0x6283
        fci = _tlvs(data, f"SELECT {aid.hex().upper()}")
        top = fci[0] if fci else None
        if top is None:
            raise CaptureError(f"SELECT {aid.hex().upper()}: empty FCI")

        def fci_value(tag: int) -> bytes | None:
            hit = top.find(tag)
            return hit.value if hit is not None else None

        got: dict[int, bytes] = {}
        for tag in GET_DATA_TAGS:
            value, gsw = self._send(bytes((0x80, 0xCA, tag >> 8, tag & 0xFF, 0)))
            if gsw == 0x9000 and value:
                hit = find(_tlvs(value, f"GET DATA {tag:04X}"), tag)
                if hit is not None:
                    got[tag] = hit.value
        pdol = fci_value(0x9F38) or b""
        try:
            pdol_data = build_dol_data(pdol, default_pdol_values()) if pdol else b""
        except DolError as exc:
            raise CaptureError(f"PDOL of {aid.hex().upper()}: {exc}") from None
        body = b"\x83" + bytes((len(pdol_data),)) + pdol_data
        gpo, gsw = self._send(b"\x80\xa8\x00\x00" + bytes((len(body),)) + body + b"\x00")
        if gsw != 0x9000:
            raise CaptureError(f"GET PROCESSING OPTIONS for {aid.hex().upper()} answered {gsw:04X}")
        aip, afl = self._gpo_fields(gpo)
        template = f"{gpo[0]:02X}" if gpo else "80"
        records: dict[int, dict[int, dict[str, str]]] = {}
        try:
            afl_entries = parse_afl(afl)
        except AflError as exc:
            raise CaptureError(f"AFL of {aid.hex().upper()}: {exc}") from None
        for entry in afl_entries:
            for number in entry.records():
                rec, rsw = self._send(bytes((0, 0xB2, number, (entry.sfi << 3) | 4, 0)))
                if rsw != 0x9000:
                    raise CaptureError(
                        f"READ RECORD SFI {entry.sfi} record {number} answered {rsw:04X}"
                    )
                tlvs = _tlvs(rec, f"SFI {entry.sfi} record {number}")
                if len(tlvs) != 1 or tlvs[0].tag != 0x70 or tlvs[0].children is None:
                    raise CaptureError(
                        f"SFI {entry.sfi} record {number} is not one template 70: a profile "
                        "holds EMV records only"
                    )
                records.setdefault(entry.sfi, {})[number] = _ordered(tlvs[0].children)
        app = self._profile_application(aid, fci_value, aip, afl, records, got)
        app["gpo_template"] = template
        app["captured_blocked"] = blocked
        return app

    def _gpo_fields(self, gpo: bytes) -> tuple[bytes, bytes]:
        tlvs = _tlvs(gpo, "GET PROCESSING OPTIONS")
        if tlvs and tlvs[0].tag == 0x80 and len(tlvs[0].value) >= 2:
            return tlvs[0].value[:2], tlvs[0].value[2:]
        aip = next((t for top in tlvs if (t := top.find(0x82)) is not None), None)
        afl = next((t for top in tlvs if (t := top.find(0x94)) is not None), None)
        if aip is None:
            raise CaptureError("GET PROCESSING OPTIONS answer has no AIP (82)")
        return aip.value, afl.value if afl is not None else b""

    def _profile_application(
        self,
        aid: bytes,
        fci_value: Any,
        aip: bytes,
        afl: bytes,
        records: dict[int, dict[int, dict[str, str]]],
        got: dict[int, bytes],
    ) -> dict[str, Any]:
        tags: dict[str, str] = {}
        for recs in records.values():
            for objects in recs.values():
                for tag, value in objects.items():
                    tags.setdefault(tag, value)
        pan = tags.get("5A", "").rstrip("F")
        if not pan:
            raise CaptureError(f"application {aid.hex().upper()} has no PAN (5A) in its records")
        expiry = _date(tags.get("5F24"), "5F24")
        effective = (
            _date(tags["5F25"], "5F25")
            if "5F25" in tags
            else dt.date(expiry.year - 5, expiry.month, 1)
        )
        t2 = tags.get("57")
        if t2 is not None:
            service = t2.split("D", 1)[1][4:7] if "D" in t2 else "201"
        else:
            service = tags.get("5F30", "0201")[-3:]
            t2 = f"{pan}D{expiry:%y%m}{service}"
            t2 += "F" * (len(t2) % 2)
            self.notes.append(f"{aid.hex().upper()}: no track 2 equivalent (57); one was built")
        label = fci_value(0x50) or b"CAPTURED"
        app: dict[str, Any] = {
            "aid": aid.hex().upper(),
            "label": label.decode("ascii", "replace"),
        }
        name = fci_value(0x9F12)
        if name:
            app["preferred_name"] = name.decode("ascii", "replace")
        prio = fci_value(0x87)
        if prio:
            app["priority"] = prio[0] & 0x0F
        app |= {
            "pdol": (fci_value(0x9F38) or b"").hex().upper(),
            "aip": aip.hex().upper(),
            "afl": afl.hex().upper(),
            "records": records,
            "cdol1": tags.get("8C", ""),
            "cdol2": tags.get("8D", ""),
            "ddol": tags.get("9F49", ""),
            "cvm_list": tags.get("8E", ""),
            "iac": {
                "denial": tags.get("9F0E", "0000000000"),
                "online": tags.get("9F0F", "0000000000"),
                "default": tags.get("9F0D", "0000000000"),
            },
            "app_version": tags.get("9F08", "0096"),
            "auc": tags.get("9F07", "FF00"),
            "effective": effective,
            "expiry": expiry,
            "currency": tags.get("9F42", "0978")[-3:],
            "country": tags.get("5F28", "0250")[-3:],
            "pan": pan,
            "psn": tags.get("5F34", "00"),
            "service_code": service,
            "track2_equivalent": t2,
        }
        app["captured_data_objects"] = {f"{t:04X}": v.hex().upper() for t, v in got.items()}
        if not self.keep_pan:
            app = _mask_everywhere(app, pan, mask_pan(pan))
        return app

    def run(self, *, reader_name: str | None = None, profile_id: str = "capture-draft") -> dict:
        """Capture every application; the draft mapping (PAN masked unless keep_pan)."""
        aids = self.directory()
        if not aids:
            raise CaptureError(
                "no application found: neither PPSE nor PSE listed an AID (is it an EMV card?)"
            )
        apps = [self.application(aid) for aid in aids]
        risk: dict[str, Any] = {}
        extras = apps[0].pop("captured_data_objects", {})
        for app in apps[1:]:
            app.pop("captured_data_objects", None)
        if any(app.pop("captured_blocked") for app in apps):
            risk["application_blocked"] = True
        if "9F14" in extras:
            risk["lower_consecutive_offline_limit"] = int(extras["9F14"], 16)
        if "9F23" in extras:
            risk["upper_consecutive_offline_limit"] = int(extras["9F23"], 16)
        if "9F36" in extras:
            risk["atc"] = int(extras["9F36"], 16)
        if "9F17" in extras:
            ptc = int(extras["9F17"], 16)
            risk["pin_try_counter"] = ptc
            risk["pin_try_limit"] = max(3, ptc)
        label = apps[0]["label"]
        draft: dict[str, Any] = {
            "id": profile_id,
            "title": f"Capture draft: {label}",
            "purpose": "capture draft: answers the read-only commands like the card it was "
            "read from",
            "expected": "as the original card for selection and reading; cryptograms and "
            "signatures use placeholder keys and do not verify against the card's issuer",
            "test_material": True,
            "kind": "emv",
            "interfaces": ["contact"],
            "atr": self.reader.atr.hex().upper(),
            "applications": apps,
        }
        if risk:
            draft["risk"] = risk
        notes = [
            "capture draft: no keys (placeholder test keys are filled in when served)",
            *self.notes,
        ]
        if extras:
            shown = ", ".join(f"{t}={v}" for t, v in sorted(extras.items()))
            notes.append(f"GET DATA at capture: {shown}")
        draft["capture"] = {
            "reader": reader_name,
            "captured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "tool": "rig card capture",
            "pan_masked": not self.keep_pan,
            "notes": "; ".join(notes),
        }
        return draft


def _date(value: str | None, tag: str) -> dt.date:
    if value is None or len(value) != 6 or not value.isdigit():
        raise CaptureError(f"{tag} {value!r}: not a YYMMDD date")
    try:
        return dt.date(2000 + int(value[:2]), int(value[2:4]), int(value[4:]))
    except ValueError:
        raise CaptureError(f"{tag} {value}: not a calendar date") from None


def _mask_everywhere(value: Any, pan: str, masked: str) -> Any:
    if isinstance(value, str):
        return value.replace(pan, masked)
    if isinstance(value, dict):
        return {k: _mask_everywhere(v, pan, masked) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_everywhere(v, pan, masked) for v in value]
    return value


def profile_id_for(path: Path) -> str:
    """A profile id from the output file name (lower case, [a-z0-9-])."""
    text = re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-")
    return text if text and text[0].isalnum() else "capture-draft"


def write_draft(draft: dict[str, Any], out: Path) -> None:
    """Write the draft as YAML with a header saying what it is."""
    header = (
        "# CAPTURE DRAFT made by `rig card capture`: public card data only, NO KEYS.\n"
        "# Served with placeholder test keys (rig.profiles.capture.load_capture_draft).\n"
    )
    if not draft["capture"]["pan_masked"]:
        header += "# The PAN is in clear (--keep-pan): use this only for TEST cards.\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        header + yaml.safe_dump(draft, sort_keys=False, allow_unicode=True, width=100),
        encoding="utf-8",
    )


def read_only_exchanges(reader: Transmitter) -> list[tuple[str, str, int]]:
    """The capture's read-only command sequence as (command hex, answer hex, SW), for comparing
    a card with its capture: directory, then per AID SELECT, GET DATA, GPO and the AFL records."""
    log: list[tuple[str, str, int]] = []

    class _Logged:
        atr = reader.atr

        def transmit(self, apdu: bytes) -> tuple[bytes, int]:
            data, sw = reader.transmit(apdu)
            log.append((apdu.hex().upper(), data.hex().upper(), sw))
            return data, sw

    cap = CardCapture(_Logged(), keep_pan=True)
    for aid in cap.directory():
        cap.application(aid)
    return log
