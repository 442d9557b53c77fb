"""The issue's acceptance path: `rig bench up --json`, then plain scripts that know nothing of the
rig reach every endpoint (pyscard, pyvisa, pyserial), then `rig bench down` leaves no process.

Also the Python `Bench` API and the demo, end to end on the simulated bench.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RIG = [sys.executable, "-m", "rig.cli"]


@pytest.fixture
def runtime(tmp_path: Path) -> dict[str, str]:
    """Environment for rig commands with a private runtime root."""
    env = dict(os.environ)
    env["POSRIG_RUNTIME"] = str(tmp_path / "runtime")
    return env


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _plain(script: str, env: dict[str, str]) -> str:
    """Run a script that imports only third-party libraries, never the rig."""
    assert "rig" not in script.replace("posrig", "")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_bench_up_plain_clients_then_down_leaves_nothing(runtime: dict[str, str]) -> None:
    up = subprocess.run(
        [*RIG, "bench", "up", "benches/sim.yaml", "--json"],
        capture_output=True,
        text=True,
        timeout=90,
        env=runtime,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    ends = info["instruments"]
    state = json.loads((Path(runtime["POSRIG_RUNTIME"]) / "sim" / "state.json").read_text())
    pids = [p["pid"] for p in state["processes"]]
    try:
        assert {"ecr", "printer", "scanner", "relay", "psu", "reader", "host", "network"} <= set(
            ends
        )
        assert ends["psu"]["visa"].startswith("TCPIP::127.0.0.1::")
        assert ends["psu"]["visa"].endswith("::SOCKET")
        assert all(_alive(pid) for pid in pids)

        atr = _plain(
            f"""
            from smartcard.System import readers
            r = [x for x in readers() if str(x) == {ends["reader"]["reader"]!r}][0]
            c = r.createConnection(); c.connect()
            print(bytes(c.getATR()).hex())
            """,
            runtime,
        )
        assert atr.startswith("3b")

        idn = _plain(
            f"""
            import pyvisa
            rm = pyvisa.ResourceManager("@py")
            psu = rm.open_resource({ends["psu"]["visa"]!r})
            psu.read_termination = psu.write_termination = "\\n"
            print(psu.query("*IDN?"))
            """,
            runtime,
        )
        assert "SIM-PSU" in idn

        rail = Path(ends["dut"]["rail_dir"])
        switch = f"""
            import serial, time, socket
            host, port = {ends["psu"]["address"]!r}.split(":")
            with socket.create_connection((host, int(port))) as s:
                s.sendall(b"VOLT 12\\nOUTP ON\\n")
            port = serial.Serial({ends["relay"]["port"]!r}, 9600, timeout=0.5)
            port.write(bytes([0xA0, 0x01, {{state}}, (0xA0 + 0x01 + {{state}}) & 0xFF]))
            port.flush(); time.sleep(0.3)
            """
        _plain(switch.format(state=1), runtime)
        pid_file = rail / "dut.pid"
        deadline = time.monotonic() + 5
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        dut = int(pid_file.read_text().split()[0])
        assert _alive(dut), "the device under test appears when the relay closes"
        _plain(switch.format(state=0), runtime)
        deadline = time.monotonic() + 5
        while _alive(dut) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(dut), "the device under test disappears when the relay opens"

        status = subprocess.run(
            [*RIG, "bench", "status", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            env=runtime,
            cwd=ROOT,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        rows = json.loads(status.stdout)["processes"]
        assert all(r["alive"] and r["answers"] for r in rows if r["name"] != "dut")
    finally:
        down = subprocess.run(
            [*RIG, "bench", "down", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=runtime,
            cwd=ROOT,
        )
    assert down.returncode == 0, down.stderr
    assert not any(_alive(pid) for pid in pids), "bench down leaves no process"
    assert not (Path(runtime["POSRIG_RUNTIME"]) / "sim").exists()


def test_bench_status_without_bench_is_a_clear_error(runtime: dict[str, str]) -> None:
    out = subprocess.run(
        [*RIG, "bench", "status"], capture_output=True, text=True, timeout=30, env=runtime
    )
    assert out.returncode == 1
    assert "no bench is up" in out.stderr and "Traceback" not in out.stderr


def test_bench_up_with_bad_file_names_the_key(tmp_path: Path, runtime: dict[str, str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ninstruments:\n  ecr: {kind: ecr}\n")
    out = subprocess.run(
        [*RIG, "bench", "up", str(bad)], capture_output=True, text=True, timeout=30, env=runtime
    )
    assert out.returncode == 2
    assert "instruments.ecr" in out.stderr and "Traceback" not in out.stderr


def test_demo_passes_every_step_and_masks_evidence(tmp_path: Path, runtime: dict[str, str]) -> None:
    bench = tmp_path / "sim.yaml"
    text = (ROOT / "benches" / "sim.yaml").read_text()
    bench.write_text(text.replace("evidence: reports", f"evidence: {tmp_path / 'evidence'}"))
    out = subprocess.run(
        [*RIG, "demo", str(bench), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=runtime,
        cwd=ROOT,
    )
    result = json.loads(out.stdout)
    assert out.returncode == 0 and result["ok"], result
    steps = {s["instrument"] for s in result["steps"]}
    assert {"psu", "relay", "ecr", "reader", "printer", "scanner", "network"} <= steps
    transcripts = Path(result["run"]) / "transcripts"
    names = {p.stem for p in transcripts.glob("*.jsonl")}
    assert {"ecr", "printer", "scanner", "relay", "psu", "reader", "network"} <= names
    for path in transcripts.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            json.loads(line)
    ecr = (transcripts / "ecr.jsonl").read_text()
    assert '"cmd": "reprint"' in ecr
    assert not list(Path(runtime["POSRIG_RUNTIME"]).glob("*/state.json"))
