"""Reference host under load, as JSON, in two parts, plus malformed frames fuzzed beside a load.

(a) saturation: 64 closed-loop connections send chip authorisations (ARQC verified, journal
    durable before each answer) as fast as answered: auth/s, p50/p99; the same against a bare
    framed echo server; the ratio. Closed-loop latency is connections / throughput (Little's
    law), so it says nothing about response time; targets: >= 3,000 auth/s, ratio >= 0.3.
(b) paced: 64 connections sending at a fixed total rate (default 1,000 auth/s, the record-day
    peak the issue cites), latency measured from each request's scheduled send time; target
    p99 <= 10 ms.
The host and the echo server each run in their own process pinned to CPU 0; the load generator
(`rig host load`, asyncio Protocol clients) runs in another process pinned to CPU 1.
Run: .venv/bin/python benchmarks/host_load.py [--duration 5] [--rate 1000] [--malformed 8000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rig.host.cli import init_data
from rig.host.control import HostProcess

ROOT = Path(__file__).resolve().parent.parent


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def load(
    target: str,
    framing: str,
    connections: int,
    duration: float,
    malformed: int,
    rate: float | None = None,
) -> dict:
    argv = [sys.executable, "-m", "rig.host.cli", "load", "--target", target, "--framing",
            framing, "--connections", str(connections), "--duration", str(duration),
            "--malformed", str(malformed), "--json"]  # fmt: skip
    if rate is not None:
        argv += ["--rate", str(rate)]
    out = subprocess.run(
        argv, capture_output=True, text=True, check=True, cwd=ROOT, preexec_fn=lambda: _pin(1)
    )
    return json.loads(out.stdout)


def echo_server(framing: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rig.host.loadgen", "echo", "--framing", framing],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: _pin(0),
    )
    line = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
    return proc, line["endpoints"]["listen"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--framing", default="len2")
    parser.add_argument("--malformed", type=int, default=8000)
    parser.add_argument("--rate", type=float, default=1000.0, help="Paced total auth/s.")
    args = parser.parse_args()
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory(prefix="posrig-host-bench-") as tmp:
        data = Path(tmp) / "host"
        init_data(data)
        _pin(0)  # the host process inherits CPU 0
        host = HostProcess(data, "--listen", f"127.0.0.1:0/{args.framing}")
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        try:
            auth = load(host.address, args.framing, args.connections, args.duration, 0)
            paced = load(host.address, args.framing, args.connections, args.duration, 0, args.rate)
            fuzz = load(host.address, args.framing, 8, 2.0, args.malformed)
            with host.control() as ctl:
                status = ctl.status()
        finally:
            host.stop()
        echo_proc, echo_addr = echo_server(args.framing)
        try:
            echo = load(echo_addr, args.framing, args.connections, args.duration, 0)
        finally:
            echo_proc.terminate()
            echo_proc.wait()
    ratio = auth["per_s"] / echo["per_s"] if echo["per_s"] else 0.0
    result = {
        "benchmark": "host_load",
        "framing": args.framing,
        "connections": args.connections,
        "duration_s": args.duration,
        "saturation": {
            "note": "closed loop: latency = connections / throughput (Little's law)",
            "auth_per_s": {"value": auth["per_s"], "target_min": 3000},
            "auth_p50_ms": auth["p50_ms"],
            "auth_p99_ms": auth["p99_ms"],
            "auth_response_codes": auth["response_codes"],
            "auth_errors": auth["errors"],
            "echo_per_s": echo["per_s"],
            "echo_p50_ms": echo["p50_ms"],
            "echo_p99_ms": echo["p99_ms"],
            "ratio_to_echo": {"value": round(ratio, 3), "target_min": 0.3},
            "met": {"auth_per_s": auth["per_s"] >= 3000, "ratio_to_echo": ratio >= 0.3},
        },
        "paced": {
            "note": "fixed schedule; latency from each request's scheduled send time",
            "target_rate_per_s": args.rate,
            "achieved_per_s": paced["per_s"],
            "p50_ms": paced["p50_ms"],
            "p99_ms": {"value": paced["p99_ms"], "target_max": 10},
            "max_ms": paced["max_ms"],
            "late_sends": paced["late_sends"],
            "response_codes": paced["response_codes"],
            "errors": paced["errors"],
            "met": {"p99_ms": (paced["p99_ms"] or 1e9) <= 10},
        },
        "malformed": {
            "frames_sent": fuzz["malformed_sent"],
            "outcomes": fuzz["malformed_outcomes"],
            "load_beside_fuzz_per_s": fuzz["per_s"],
            "load_beside_fuzz_codes": fuzz["response_codes"],
        },
        "host_counters": status["counters"],
        "journal_entries": status["journal_entries"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
