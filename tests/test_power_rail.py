"""The simulated power rail: relay and PSU simulators own the DUT process (real interfaces)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st
from simproc import Procs

from drivers.power import PowerSwitch, RelayPowerSwitch
from drivers.psu import ScpiPowerSupply
from drivers.relay_lcus import LcusRelay
from drivers.relay_numato import NumatoRelay
from rig.bench.sim.rail import RailError, dut_alive, dut_pid, parse_config, pid_alive

DUT_SCRIPT = """
import os, pathlib, signal, subprocess, sys, time
mark = pathlib.Path("marks")
mark.mkdir(exist_ok=True)
def on_term(*_):
    (mark / f"term-{os.getpid()}").write_text("clean shutdown")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
(mark / f"dut-{os.getpid()}").write_text(f"{os.environ.get('DUT_MARK')} {child.pid}")
time.sleep(3600)
"""


def write_rail(rail_dir: Path, sources: list[str], current_a: float = 0.25) -> None:
    rail_dir.mkdir(parents=True, exist_ok=True)
    (rail_dir / "rail.json").write_text(
        json.dumps(
            {
                "sources": sources,
                "dut": {
                    "argv": [sys.executable, "-c", DUT_SCRIPT],
                    "cwd": str(rail_dir),
                    "env": {"DUT_MARK": "powered-by-rail"},
                },
                "current_a": current_a,
            }
        )
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def gone(pid: int) -> bool:
    """No process and no zombie left for `pid`."""
    return not os.path.exists(f"/proc/{pid}") or not pid_alive(pid)


def reaped(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


@pytest.fixture
def sims():
    procs = Procs()

    def start(module: str, *args: str) -> tuple[subprocess.Popen[bytes], dict]:
        return procs.launch(f"rig.bench.sim.{module}", *args)

    yield start
    procs.stop_all()


def start_relay(sims, rail: Path, link: Path, module: str = "relay_lcus") -> str:
    _, line = sims(
        module, "--link", str(link), "--channels", "4",
        "--rail-dir", str(rail), "--rail-source", "relay:1", "--feeds", "1",
    )  # fmt: skip
    assert line["ready"], line
    return line["endpoints"]["port"]


def start_psu(sims, rail: Path) -> str:
    _, line = sims("psu_scpi", "--listen", "127.0.0.1:0", "--rail-dir", str(rail))
    assert line["ready"], line
    return line["endpoints"]["visa"]


def dut_marks(rail: Path, pid: int) -> tuple[str, int]:
    mark = rail / "marks" / f"dut-{pid}"
    assert wait_for(mark.exists), "DUT did not start its work"
    env_mark, child = mark.read_text().split()
    return env_mark, int(child)


def test_relay_on_starts_dut_and_off_sigkills_it(sims, tmp_path: Path) -> None:
    rail = tmp_path / "rail"
    write_rail(rail, ["relay:1"])
    port = start_relay(sims, rail, tmp_path / "relay")
    assert not dut_alive(rail)
    with LcusRelay(port, 4) as board:
        board.set(2, True)
        time.sleep(0.1)
        assert not dut_alive(rail), "channel 2 does not feed the DUT"
        board.set(1, True)
        assert wait_for(lambda: dut_alive(rail))
        pid = dut_pid(rail)
        assert pid is not None and pid_alive(pid)
        env_mark, grandchild = dut_marks(rail, pid)
        assert env_mark == "powered-by-rail"
        board.set(1, False)
        assert wait_for(lambda: reaped(pid)), "DUT left running or as a zombie"
    assert not dut_alive(rail)
    assert not (rail / "dut.pid").exists()
    assert wait_for(lambda: gone(grandchild)), "DUT's own child survived the power cut"
    assert not (rail / "marks" / f"term-{pid}").exists(), "power cut must be SIGKILL, not SIGTERM"


def test_plain_pyserial_lcus_frame_starts_dut(sims, tmp_path: Path) -> None:
    rail = tmp_path / "rail"
    write_rail(rail, ["relay:1"])
    port = start_relay(sims, rail, tmp_path / "relay")
    with serial.Serial(port, 9600, timeout=1) as raw:
        raw.write(bytes([0xA0, 0x01, 0x01, 0xA2]))
        assert wait_for(lambda: dut_alive(rail))
        pid = dut_pid(rail)
        assert pid is not None
        raw.write(bytes([0xA0, 0x01, 0x00, 0xA1]))
        assert wait_for(lambda: reaped(pid))
    assert not dut_alive(rail)


def test_relay_power_switch_cycle_gives_new_dut(sims, tmp_path: Path) -> None:
    rail = tmp_path / "rail"
    write_rail(rail, ["relay:1"])
    port = start_relay(sims, rail, tmp_path / "relay")
    with LcusRelay(port, 4) as board:
        switch = RelayPowerSwitch(board, 1)
        assert isinstance(switch, PowerSwitch)
        switch.on()
        assert switch.state() is True
        assert wait_for(lambda: dut_alive(rail))
        first = dut_pid(rail)
        assert first is not None
        switch.cycle(off_time=0.2)
        assert wait_for(lambda: dut_alive(rail) and dut_pid(rail) != first)
        assert reaped(first)
        switch.off()
        assert switch.state() is False
        assert wait_for(lambda: not dut_alive(rail))


def test_numato_channel_feeds_dut(sims, tmp_path: Path) -> None:
    rail = tmp_path / "rail"
    write_rail(rail, ["relay:1"])
    port = start_relay(sims, rail, tmp_path / "numato", module="relay_numato")
    with NumatoRelay(port, 4) as board:
        board.set(1, True)
        assert dut_alive(rail), "the prompt comes after the switch, so the DUT already runs"
        pid = dut_pid(rail)
        assert pid is not None
        board.set(1, False)
        assert wait_for(lambda: reaped(pid))


def test_psu_current_follows_rail(sims, tmp_path: Path) -> None:
    rail = tmp_path / "rail"
    write_rail(rail, ["psu:1"], current_a=0.25)
    visa = start_psu(sims, rail)
    with ScpiPowerSupply(visa) as psu:
        psu.set_voltage(12.0)
        psu.set_current_limit(1.0)
        assert psu.measure_current() == 0.0
        assert not dut_alive(rail)
        psu.output(True)
        assert dut_alive(rail)
        assert psu.measure_voltage() == pytest.approx(12.0, abs=0.01)
        assert psu.measure_current() == pytest.approx(0.25, rel=0.03)
        pid = dut_pid(rail)
        assert pid is not None
        psu.set_current_limit(0.1)
        assert psu.measure_current() == pytest.approx(0.1, abs=0.001)
        assert psu.measure_voltage() < 6.0, "current limit folds the voltage back"
        psu.output(False)
        assert psu.measure_current() == 0.0
        assert psu.measure_voltage() == 0.0
        assert wait_for(lambda: reaped(pid))


def test_psu_and_relay_in_series_behave_as_and(sims, tmp_path: Path) -> None:
    rail = tmp_path / "rail"
    write_rail(rail, ["psu:1", "relay:1"], current_a=0.4)
    visa = start_psu(sims, rail)
    port = start_relay(sims, rail, tmp_path / "relay")
    with ScpiPowerSupply(visa) as psu, LcusRelay(port, 4) as board:
        psu.set_voltage(5.0)
        psu.output(True)
        assert not dut_alive(rail)
        assert psu.measure_current() == pytest.approx(0.002, rel=0.2)
        board.set(1, True)
        assert wait_for(lambda: dut_alive(rail))
        first = dut_pid(rail)
        assert first is not None
        assert psu.measure_current() == pytest.approx(0.4, rel=0.03)
        psu.output(False)
        assert not dut_alive(rail)
        assert wait_for(lambda: reaped(first)), "relay simulator must reap what the PSU killed"
        psu.output(True)
        assert dut_alive(rail)
        second = dut_pid(rail)
        assert second is not None and second != first
        board.set(1, False)
        assert wait_for(lambda: reaped(second))
        assert psu.measure_current() == pytest.approx(0.002, rel=0.2)


def test_terminated_source_leaves_no_dut(sims, tmp_path: Path) -> None:
    rail = tmp_path / "rail"
    write_rail(rail, ["relay:1"])
    proc, line = sims(
        "relay_lcus", "--link", str(tmp_path / "relay"), "--rail-dir", str(rail), "--feeds", "1"
    )
    with LcusRelay(line["endpoints"]["port"], 4) as board:
        board.set(1, True)
        assert wait_for(lambda: dut_alive(rail))
    pid = dut_pid(rail)
    assert pid is not None
    proc.terminate()
    proc.wait(5)
    assert wait_for(lambda: gone(pid))
    assert not (rail / "dut.pid").exists()


def test_bad_rail_file_fails_readiness_naming_the_field(sims, tmp_path: Path) -> None:
    rail = tmp_path / "rail"
    rail.mkdir()
    (rail / "rail.json").write_text(json.dumps({"sources": ["relay:1"], "dut": {"argv": []}}))
    proc, line = sims("relay_lcus", "--link", str(tmp_path / "relay"), "--rail-dir", str(rail))
    assert line["ready"] is False
    assert "'dut.argv'" in line["error"]
    assert proc.wait(5) == 2


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["sources", "dut", "argv", "cwd", "env", "current_a", "x"]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_parse_config_fuzz(document: object) -> None:
    try:
        config = parse_config(document)
    except RailError:
        return
    assert config.sources and config.argv and config.current_a >= 0
