"""Card host throughput through pcscd + vpcd: simple APDUs/s via the rig's PcscReader and via raw
pyscard in alternating blocks of one run, the time of a complete contact EMV read-and-cryptogram
flow, and the card-side trace cost per APDU. Prints one JSON object; target >= 3,000 APDUs/s.

    .venv/bin/python benchmarks/card_apdu.py [--n 5000] [--flows 50] [--reader-index 1]
        [--profile cardprofiles/visa-credit-online-pin-dda.yaml]

The card host is `rig card serve PROFILE` with its APDU trace on (as on a bench); the simple
APDU is GET DATA ATC (80 CA 9F 36 00) on the selected EMV application.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _stats import alternate, raw_connect, stats_ms
from smartcard import scard

from drivers.pcsc import PcscReader
from rig.bench.pcscd import ensure_pcscd, vpcd_port
from rig.card import trace
from rig.emv.dol import build_dol_data, parse_afl
from rig.emv.tlv import decode, find
from rig.evidence import Direction, Transcript, read_transcript
from rig.profiles import load_profile

GET_ATC = bytes.fromhex("80CA9F3600")
PSE = b"1PAY.SYS.DDF01"
TERMINAL = {
    0x9F02: bytes.fromhex("000000001000"),
    0x9F03: bytes(6),
    0x9F1A: bytes.fromhex("0250"),
    0x5F2A: bytes.fromhex("0978"),
    0x9A: bytes.fromhex("261125"),
    0x9C: b"\x00",
    0x9F37: bytes.fromhex("A1B2C3D4"),
    0x9F35: b"\x22",
    0x9F34: bytes.fromhex("1F0302"),
}


def _select(name: bytes) -> bytes:
    return b"\x00\xa4\x04\x00" + bytes((len(name),)) + name + b"\x00"


def _ok(reader: PcscReader, apdu: bytes) -> bytes:
    data, sw = reader.transmit(apdu)
    if sw != 0x9000:
        raise SystemExit(f"{apdu.hex().upper()} answered {sw:04X}")
    return data


def emv_flow(reader: PcscReader, aid: bytes) -> int:
    """SELECT PSE + directory record, SELECT AID, GPO, READ RECORDs, GENERATE AC; APDU count."""
    n = 0
    _ok(reader, _select(PSE))
    _ok(reader, bytes.fromhex("00B2010C00"))
    fci = decode(_ok(reader, _select(aid)))
    pdol = find(fci, 0x9F38)
    data = build_dol_data(pdol.value, TERMINAL) if pdol else b""
    body = b"\x83" + bytes((len(data),)) + data
    gpo = decode(_ok(reader, b"\x80\xa8\x00\x00" + bytes((len(body),)) + body + b"\x00"))
    n += 4
    if gpo[0].tag == 0x80:
        afl = gpo[0].value[2:]
    else:
        hit = find(gpo, 0x94)
        afl = hit.value if hit else b""
    cdol1 = b""
    for entry in parse_afl(afl):
        for number in entry.records():
            rec = decode(_ok(reader, bytes((0, 0xB2, number, (entry.sfi << 3) | 4, 0))))
            n += 1
            hit = find(rec, 0x8C)
            if hit is not None:
                cdol1 = hit.value
    body = build_dol_data(cdol1, TERMINAL)
    _ok(reader, bytes((0x80, 0xAE, 0x80, 0, len(body))) + body + b"\x00")
    return n + 1


def trace_cost(n: int = 20000) -> dict[str, float]:
    """Per-APDU card-side trace cost: on the APDU thread (record) and in the writer (decode)."""
    apdu, resp = GET_ATC, bytes.fromhex("9F3602000A9000")
    with tempfile.TemporaryDirectory() as tmp:
        tr = Transcript(Path(tmp) / "t.jsonl", "cardsim")
        t0 = time.perf_counter_ns()
        for _ in range(n):
            tr.record(Direction.RX, apdu, trace.command_entry(apdu))
            tr.record(Direction.TX, resp, trace.response_entry(apdu, resp))
        hot = (time.perf_counter_ns() - t0) / n
        t0 = time.perf_counter_ns()
        tr.close()
        written = (time.perf_counter_ns() - t0) / n
    return {
        "record_us_per_apdu": round(hot / 1000, 3),
        "write_us_per_apdu": round(written / 1000, 2),
    }


def run(profile_path: Path, n: int, block: int, warmup: int, flows: int, index: int) -> dict:
    profile = load_profile(profile_path)
    aid = bytes.fromhex(profile.applications[0].aid)
    with ensure_pcscd(), tempfile.TemporaryDirectory() as tmp:
        card_trace = Path(tmp) / "card.jsonl"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rig.cli",
                "card",
                "serve",
                str(profile_path),
                "--port",
                str(vpcd_port(index)),
                "--transcript",
                str(card_trace),
            ],
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline() or b"{}")
        if not ready.get("ready"):
            proc.terminate()
            proc.wait()
            raise SystemExit(f"card host failed: {ready.get('error', 'no readiness line')}")
        name = ready["endpoints"]["reader"]
        driver_trace = Transcript(Path(tmp) / "pcsc.jsonl", "pcsc")
        reader = PcscReader(name, transcript=driver_trace)
        ctx = 0
        try:
            reader.wait_for_card(5.0)
            reader.connect()
            for _ in range(3):
                emv_flow(reader, aid)
            flow_ns: list[int] = []
            flow_apdus = 0
            for _ in range(flows):
                t0 = time.perf_counter_ns()
                flow_apdus = emv_flow(reader, aid)
                flow_ns.append(time.perf_counter_ns() - t0)
            _ok(reader, _select(aid))
            ctx, hcard, proto = raw_connect(name)
            driver_ns, raw_ns = alternate(GET_ATC, reader.transmit, hcard, proto, n, block, warmup)
            scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
        finally:
            reader.close()
            driver_trace.close()
            if ctx:
                scard.SCardReleaseContext(ctx)
            proc.terminate()
            proc.wait(timeout=10)
        card_entries = read_transcript(card_trace)
    driver, raw = stats_ms(driver_ns), stats_ms(raw_ns)
    flow = stats_ms(flow_ns)
    out: dict[str, Any] = {
        "benchmark": "card_apdu",
        "profile": profile.id,
        "reader": name,
        "apdu": GET_ATC.hex().upper(),
        "n": n,
        "driver_apdus_per_s": round(1000 / driver["mean"]),
        "raw_pyscard_apdus_per_s": round(1000 / raw["mean"]),
        "driver_ms": driver,
        "raw_ms": raw,
        "ratio": round(driver["mean"] / raw["mean"], 3),
        "emv_flow_ms": flow,
        "emv_flow_apdus": flow_apdus,
        "emv_flows": flows,
        "card_trace_entries": len(card_entries),
        "card_trace_cost": trace_cost(),
        "target": ">= 3000 simple APDUs/s",
    }
    out["target_met"] = out["driver_apdus_per_s"] >= 3000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profile", type=Path, default=Path("cardprofiles/visa-credit-online-pin-dda.yaml")
    )
    parser.add_argument("--n", type=int, default=5000, help="measured APDUs per path")
    parser.add_argument("--block", type=int, default=20, help="APDUs per alternating block")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured APDUs per path")
    parser.add_argument("--flows", type=int, default=50, help="EMV flows timed")
    parser.add_argument("--reader-index", type=int, default=1, choices=(0, 1))
    args = parser.parse_args()
    result = run(args.profile, args.n, args.block, args.warmup, args.flows, args.reader_index)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
