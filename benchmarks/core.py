"""Payment-core figures as JSON: TLV decode MB/s, ISO 8583 encode+decode per second through the
rig versus raw pyiso8583 in the same run, ARQC verifications per second.

Targets (issue 3): the rig's ISO 8583 layer costs <= 1.2x raw pyiso8583.
Run: .venv/bin/python benchmarks/core.py
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime

import iso8583

from rig.crypto import arqc
from rig.emv import tlv
from rig.iso8583 import messages
from rig.iso8583.spec import SPEC

# TEST DATA ONLY: test PAN, test keys.
ICC = {
    0x9F26: bytes(8),
    0x9F27: b"\x80",
    0x9F10: bytes.fromhex("06010A03A00000"),
    0x9F37: bytes(4),
    0x9F36: b"\x00\x01",
    0x95: bytes(5),
    0x9A: b"\x26\x11\x25",
    0x9C: b"\x00",
    0x9F02: bytes.fromhex("000000001234"),
    0x5F2A: b"\x09\x78",
    0x82: b"\x39\x00",
    0x9F1A: b"\x02\x50",
    0x9F33: b"\xe0\xf8\xc8",
    0x9F34: b"\x42\x03\x00",
}
DOC = messages.purchase(
    amount=1234,
    stan=17,
    terminal_id="TERM0001",
    merchant_id="MERCHANT0000001",
    pan="4761739001010010",
    expiry="2812",
    track2="4761739001010010D28122011143804400000",
    pin_block="0123456789ABCDEF",
    ksn="FFFF9876543210E00001",
    card_seq="001",
    nii="001",
    rrn="000000000017",
    icc=ICC,
    now=datetime(2026, 11, 25, 18, 30, 0),
    mac="0011223344556677",
)


def best_rate(fn: Callable[[], object], n: int, rounds: int = 3) -> float:
    """Operations per second, best of `rounds` runs of `n` calls."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def tlv_mb_per_s() -> float:
    record = tlv.encode(
        0x70,
        tlv.encode_many([(tag, value) for tag, value in ICC.items()] + [(0x5A, bytes(8))]),
    )
    blob = record * 200
    rate = best_rate(lambda: tlv.decode(blob), 50)
    return rate * len(blob) / 1e6


def iso8583_rates() -> dict[str, float]:
    def raw() -> None:
        encoded, _ = iso8583.encode(dict(DOC), SPEC)
        iso8583.decode(encoded, SPEC)

    def rig() -> None:
        messages.decode(messages.encode(DOC))

    n = 10_000
    raw_rate = best_rate(raw, n)
    rig_rate = best_rate(rig, n)
    return {
        "iso8583_raw_per_s": round(raw_rate),
        "iso8583_rig_per_s": round(rig_rate),
        "iso8583_cost_ratio": round(raw_rate / rig_rate, 3),
        "message_bytes": len(messages.encode(DOC)),
    }


def arqc_verifications_per_s() -> float:
    imk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    mk = arqc.icc_master_key(18, imk, "4761739001010010", "01")
    tags = {f"{k:X}": v for k, v in ICC.items()}
    tags["9F10"] = bytes.fromhex("06011203A00000")
    tags["9F03"] = bytes(6)
    cryptogram = arqc.generate_ac(18, mk, tags)
    return best_rate(lambda: arqc.verify_arqc(18, mk, tags, cryptogram), 5_000)


def main() -> None:
    figures: dict[str, object] = {"benchmark": "core"}
    figures["tlv_decode_mb_per_s"] = round(tlv_mb_per_s(), 2)
    figures.update(iso8583_rates())
    figures["iso8583_target_ratio_max"] = 1.2
    figures["arqc_verifications_per_s"] = round(arqc_verifications_per_s())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
