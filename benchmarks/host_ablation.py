"""Where the host's CPU goes, end to end: the saturation load against hosts with one part removed.

Each variant runs the real host process (pinned to CPU 0, load generator on CPU 1, as in
`host_load.py`) with one part of the request path replaced by a no-op, and reports auth/s, the
ratio to the bare echo server and the host's CPU per authorisation (from /proc). Differences
between variants are what each part costs on the real path, GIL hand-overs and cache effects
included, which in-process step timings (`host_load.py` `cpu_budget_us`) cannot show.

Variants (measurement only; none is a mode of the product, and none answers correctly):
  full         the host as shipped
  no_sqlite    the journal does all its work but its writer thread skips the SQLite INSERT
  no_journal   no journal at all: no masking, no row, no writer (the answer is not durable)
  no_issuer    the first authorisation's decision is reused: no ARQC, rules or bookkeeping
  no_issuer_no_sqlite, no_issuer_no_journal   both removed

Run: .venv/bin/python benchmarks/host_ablation.py [--duration 3] [--repeat 3] [--variants ...]
(The same script is the ablated host's launcher: `host_ablation.py --serve VARIANT serve ...`.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from host_load import ROOT, _pin, cpu_per_auth, echo_server, load, saturation, thread_cpu

from rig.host.cli import init_data
from rig.host.control import HostProcess

VARIANTS = (
    "full",
    "no_sqlite",
    "no_journal",
    "no_issuer",
    "no_issuer_no_sqlite",
    "no_issuer_no_journal",
)


def _ablate(variant: str) -> None:
    """Replace the parts `variant` names with no-ops, in this (the host's) process."""
    from rig.host.issuer import Issuer
    from rig.host.journal import Journal
    from rig.host.journal_writer import GroupCommitWriter

    if "no_sqlite" in variant:
        GroupCommitWriter._write = staticmethod(lambda conn, ops: None)  # type: ignore[method-assign]
    if "no_journal" in variant:

        def submit(self: Journal, entry: Any, **_: Any) -> asyncio.Future[int]:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(0)
            return fut

        Journal.submit = submit  # type: ignore[method-assign]
    if "no_issuer" in variant:
        decide = Issuer.decide
        first: dict[str, Any] = {}

        def reuse(self: Issuer, doc: dict[str, str], **kw: Any) -> Any:
            if doc["t"] != "0100" or kw:
                return decide(self, doc, **kw)
            if "0100" not in first:
                first["0100"] = decide(self, doc)
            return first["0100"]

        Issuer.decide = reuse  # type: ignore[method-assign]


def serve(variant: str, argv: list[str]) -> None:
    """Run `rig.host.cli` with `argv` after ablating `variant`."""
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    _ablate(variant)
    from rig.host import cli

    sys.argv = ["rig-host", *argv]
    cli.main()


def measure(variant: str, framing: str, connections: int, duration: float) -> dict[str, Any]:
    """One saturation run against a fresh host with `variant` ablated."""
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", variant]
    with tempfile.TemporaryDirectory(prefix="posrig-ablation-") as tmp:
        data = Path(tmp) / "host"
        init_data(data)
        _pin(0)
        host = HostProcess(data, "--listen", f"127.0.0.1:0/{framing}", command=command)
        _pin(None)
        try:
            run, host_cpu = saturation(host, framing, connections, duration)
        finally:
            host.stop()
    return {
        "auth_per_s": run["per_s"],
        "codes": run["response_codes"],
        "errors": run["errors"],
        "host_cpu_us_per_auth": host_cpu["total"],
    }


def echo_run(framing: str, connections: int, duration: float) -> dict[str, Any]:
    proc, address = echo_server(framing)
    try:
        cpu0 = thread_cpu(proc.pid)
        run = load(address, framing, connections, duration, 0)
        cpu1 = thread_cpu(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
    served = max(1, int(run["per_s"] * duration))
    return {"per_s": run["per_s"], "cpu_us_per_msg": cpu_per_auth(cpu0, cpu1, served)["total"]}


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 1)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framing", default="len2")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant (median kept)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args()
    os.chdir(ROOT)
    echoes = [echo_run(args.framing, args.connections, args.duration) for _ in range(args.repeat)]
    echo_per_s = _median(echoes, "per_s")
    out: dict[str, Any] = {}
    for variant in args.variants:
        runs = [
            measure(variant, args.framing, args.connections, args.duration)
            for _ in range(args.repeat)
        ]
        per_s = _median(runs, "auth_per_s")
        out[variant] = {
            "auth_per_s": per_s,
            "ratio_to_echo": round(per_s / echo_per_s, 3) if echo_per_s else 0.0,
            "host_cpu_us_per_auth": _median(runs, "host_cpu_us_per_auth"),
            "runs": runs,
        }
    cpu = {k: v["host_cpu_us_per_auth"] for k, v in out.items()}
    costs = {
        "sqlite_writes": ("full", "no_sqlite"),
        "journal_whole": ("full", "no_journal"),
        "issuer": ("full", "no_issuer"),
    }
    result = {
        "benchmark": "host_ablation",
        "framing": args.framing,
        "connections": args.connections,
        "duration_s": args.duration,
        "repeat": args.repeat,
        "cpu_affinity": "host CPU 0, load generator CPU 1",
        "echo": {
            "per_s": echo_per_s,
            "cpu_us_per_msg": _median(echoes, "cpu_us_per_msg"),
        },
        "variants": out,
        "cost_us_per_auth": {
            name: round(cpu[a] - cpu[b], 1)
            for name, (a, b) in costs.items()
            if a in cpu and b in cpu
        },
        "host_cpu_budget_us_for_ratio_0_3": round(1e6 / (0.3 * echo_per_s), 1) if echo_per_s else 0,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
