"""APDU round trip through pcscd + vpcd to the card simulator: PcscReader (transcript on) vs raw
pyscard, in alternating blocks in one run. Prints one JSON object; target ratio <= 1.1.

    .venv/bin/python benchmarks/pcsc_roundtrip.py [--n 5000] [--block 20] [--reader-index 0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from _stats import alternate, raw_connect, stats_ms
from smartcard import scard

from drivers.pcsc import PcscReader
from rig.bench.pcscd import ensure_pcscd, vpcd_port
from rig.bench.sim.cardsim import spawn
from rig.card.iso7816_app import AID_DIRECT
from rig.evidence import Transcript, read_transcript

SELECT = bytes.fromhex("00A4040008") + AID_DIRECT
READ_BINARY = bytes.fromhex("00B0000010")


def _start_cardsim(index: int) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    proc, ready = spawn(f"127.0.0.1:{vpcd_port(index)}")
    if not ready.get("ready"):
        proc.terminate()
        proc.wait()
        raise SystemExit(f"card simulator failed: {ready.get('error', 'no readiness line')}")
    return proc, ready["endpoints"]


def run(n: int, block: int, warmup: int, index: int) -> dict[str, object]:
    with ensure_pcscd(), tempfile.TemporaryDirectory() as tmp:
        proc, endpoints = _start_cardsim(index)
        transcript_path = Path(tmp) / "pcsc.jsonl"
        transcript = Transcript(transcript_path, "pcsc")
        reader = PcscReader(endpoints["reader"], transcript=transcript)
        try:
            reader.wait_for_card(5.0)
            reader.connect()
            reader.transmit(SELECT)
            ctx, hcard, proto = raw_connect(endpoints["reader"])
            driver_ns, raw_ns = alternate(
                READ_BINARY, reader.transmit, hcard, proto, n, block, warmup
            )
            scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
            scard.SCardReleaseContext(ctx)
        finally:
            reader.close()
            transcript.close()
            proc.terminate()
            proc.wait(timeout=5)
        entries = len(read_transcript(transcript_path))
    driver, raw = stats_ms(driver_ns), stats_ms(raw_ns)
    return {
        "benchmark": "pcsc_roundtrip",
        "apdu": READ_BINARY.hex().upper(),
        "n": n,
        "block": block,
        "reader": endpoints["reader"],
        "driver_ms": driver,
        "raw_ms": raw,
        "ratio": round(driver["mean"] / raw["mean"], 3),
        "ratio_p50": round(driver["p50"] / raw["p50"], 3),
        "transcript_entries": entries,
        "target": "ratio <= 1.1",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="measured APDUs per path")
    parser.add_argument("--block", type=int, default=20, help="APDUs per alternating block")
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured APDUs per path")
    parser.add_argument("--reader-index", type=int, default=0, choices=(0, 1))
    args = parser.parse_args()
    print(json.dumps(run(args.n, args.block, args.warmup, args.reader_index)))


if __name__ == "__main__":
    main()
