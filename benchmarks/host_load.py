"""Reference host under load, as JSON: chip authorisations per second (ARQC verified, journal
durable before each answer) at 64 connections, p50/p99, against a bare framed echo server in the
same run, plus malformed frames fuzzed beside the load (counted and classified).

The host and the echo server each run in their own process pinned to CPU 0; the load generator
(`rig host load`) runs in another process pinned to CPU 1.
Targets (issue 5): >= 3,000 auth/s, p99 <= 10 ms, ratio to the echo server >= 0.3.
Run: .venv/bin/python benchmarks/host_load.py [--duration 5] [--malformed 8000]
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


def load(target: str, framing: str, connections: int, duration: float, malformed: int) -> dict:
    argv = [sys.executable, "-m", "rig.host.cli", "load", "--target", target, "--framing",
            framing, "--connections", str(connections), "--duration", str(duration),
            "--malformed", str(malformed), "--json"]  # fmt: skip
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
        "auth_per_s": auth["per_s"],
        "auth_p50_ms": auth["p50_ms"],
        "auth_p99_ms": auth["p99_ms"],
        "auth_response_codes": auth["response_codes"],
        "auth_errors": auth["errors"],
        "echo_per_s": echo["per_s"],
        "echo_p50_ms": echo["p50_ms"],
        "echo_p99_ms": echo["p99_ms"],
        "ratio_to_echo": round(ratio, 3),
        "malformed_frames_sent": fuzz["malformed_sent"],
        "malformed_outcomes": fuzz["malformed_outcomes"],
        "load_beside_fuzz_per_s": fuzz["per_s"],
        "load_beside_fuzz_codes": fuzz["response_codes"],
        "host_counters": status["counters"],
        "journal_entries": status["journal_entries"],
        "targets": {"auth_per_s": 3000, "p99_ms": 10, "ratio": 0.3},
        "met": {
            "auth_per_s": auth["per_s"] >= 3000,
            "p99_ms": (auth["p99_ms"] or 1e9) <= 10,
            "ratio": ratio >= 0.3,
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
