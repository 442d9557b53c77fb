"""Terminal-side helpers for the EMV card tests: APDUs built the way a terminal builds them.

Every PAN, key and PIN comes from the shipped TEST profiles.
"""

from __future__ import annotations

from pathlib import Path

from rig.card.emv_app import EmvCardApplication
from rig.emv.dol import build_dol_data, parse_afl
from rig.emv.tlv import decode, decode_flat, encode
from rig.profiles import load_all, load_capks

ROOT = Path(__file__).resolve().parent.parent / "cardprofiles"
PROFILES = load_all(ROOT)
CAPKS = load_capks(ROOT / "capk")
UN = bytes.fromhex("11223344")

TERMINAL = {
    0x9F02: bytes.fromhex("000000001000"),
    0x9F03: bytes(6),
    0x9F1A: bytes.fromhex("0250"),
    0x95: bytes(5),
    0x5F2A: bytes.fromhex("0978"),
    0x9A: bytes.fromhex("250101"),
    0x9C: b"\x00",
    0x9F37: UN,
    0x9F35: b"\x22",
    0x9F34: bytes.fromhex("1F0302"),
    0x9F66: bytes.fromhex("36000000"),
}
"""Terminal data (test transaction of 10.00 EUR in France)."""


def apdu(header: str, data: bytes = b"", le: bool = True) -> bytes:
    """A command APDU from a hex header, data (Lc added) and Le 00."""
    out = bytes.fromhex(header)
    if data:
        out += bytes((len(data),)) + data
    return out + (b"\x00" if le else b"")


def ok(card: EmvCardApplication, command: bytes) -> bytes:
    """Send a command that must succeed; the response data without the SW."""
    r = card.process(command)
    assert r[-2:] == b"\x90\x00", f"{command.hex()} -> {r.hex()}"
    return r[:-2]


def sw(card: EmvCardApplication, command: bytes) -> int:
    return int.from_bytes(card.process(command)[-2:], "big")


def select(card: EmvCardApplication, aid: str | bytes, p2: int = 0) -> bytes:
    name = bytes.fromhex(aid) if isinstance(aid, str) else aid
    return card.process(apdu(f"00A404{p2:02X}", name))


def gpo(card: EmvCardApplication, pdol: str, values: dict[int, bytes] | None = None) -> bytes:
    data = build_dol_data(bytes.fromhex(pdol), values or TERMINAL)
    return card.process(apdu("80A80000", encode(0x83, data)))


def gpo_fields(response: bytes) -> tuple[bytes, bytes]:
    """AIP and AFL from a format 1 or format 2 GPO answer."""
    top = decode(response)[0]
    if top.tag == 0x80:
        return top.value[:2], top.value[2:]
    flat = decode_flat(response)
    return flat[0x82], flat.get(0x94, b"")


def read_afl(card: EmvCardApplication, afl: bytes) -> tuple[dict[int, bytes], bytes]:
    """Read every AFL record: (tag -> value of all records, static data to be authenticated)."""
    tags: dict[int, bytes] = {}
    static = b""
    for entry in parse_afl(afl):
        for n in entry.records():
            rec = ok(card, apdu(f"00B2{n:02X}{(entry.sfi << 3) | 4:02X}"))
            tags.update(decode_flat(rec))
            if n in entry.oda_records():
                static += decode(rec)[0].value if entry.sfi <= 10 else rec
    return tags, static


def cdol_data(cdol: bytes, extra: dict[int, bytes] | None = None) -> bytes:
    return build_dol_data(cdol, TERMINAL | (extra or {}))


def genac(card: EmvCardApplication, p1: int, data: bytes) -> dict[int, bytes]:
    """GENERATE AC; the answer as tags (format 1 is split into 9F27 9F36 9F26 9F10)."""
    body = ok(card, apdu(f"80AE{p1:02X}00", data))
    top = decode(body)[0]
    if top.tag == 0x80:
        v = top.value
        return {0x9F27: v[:1], 0x9F36: v[1:3], 0x9F26: v[3:11], 0x9F10: v[11:]}
    return decode_flat(body)


def start(profile_id: str, **kw: object) -> tuple[EmvCardApplication, dict[int, bytes], bytes]:
    """Select the first application, GPO, read every record: (card, record tags, AIP)."""
    profile = PROFILES[profile_id]
    card = EmvCardApplication(profile, **kw)  # type: ignore[arg-type]
    app = profile.applications[0]
    assert select(card, app.aid)[-2:] in (b"\x90\x00", b"\x62\x83")
    aip, afl = gpo_fields(ok(card, gpo_apdu(app.pdol)))
    tags, _ = read_afl(card, afl)
    return card, tags, aip


def gpo_apdu(pdol: str) -> bytes:
    return apdu("80A80000", encode(0x83, build_dol_data(bytes.fromhex(pdol), TERMINAL)))


def ac_input(tags: dict[int, bytes], aip: bytes, answer: dict[int, bytes]) -> dict[str, bytes]:
    """What an issuer verifies the AC over: terminal data, AIP, ATC and IAD from the answer."""
    keys = ("9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C", "9F37")
    out = {k: TERMINAL[int(k, 16)] for k in keys}
    return out | {"82": aip, "9F36": answer[0x9F36], "9F10": answer[0x9F10]}
