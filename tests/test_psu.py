"""SCPI power-supply driver against the PSU simulator over real TCP, through pyvisa-py (@py)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from simproc import Procs

from drivers.power import PowerSwitch, PsuPowerSwitch
from drivers.psu import (
    PowerSupply,
    PsuError,
    PsuScpiError,
    PsuTimeout,
    PsuUnreachable,
    ScpiPowerSupply,
    parse_error_line,
    parse_number,
)
from rig.evidence import Transcript, read_transcript


@pytest.fixture
def psu_sim():
    procs = Procs()

    def start(*args: str) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
        return procs.spawn("psu_scpi", "--listen", "127.0.0.1:0", *args)

    yield start
    procs.stop_all()


def test_readiness_endpoints(psu_sim) -> None:
    _, endpoints = psu_sim()
    host, port = endpoints["address"].split(":")
    assert endpoints["visa"] == f"TCPIP::{host}::{port}::SOCKET"
    with socket.create_connection((host, int(port)), timeout=2) as conn:
        conn.sendall(b"*IDN?\n")
        assert conn.recv(100) == b"posrig,SIM-PSU,0001,1.0\n"


def test_identify_set_measure(psu_sim, tmp_path: Path) -> None:
    _, endpoints = psu_sim()
    log = tmp_path / "psu.jsonl"
    with (
        Transcript(log, "psu") as transcript,
        ScpiPowerSupply(endpoints["visa"], transcript=transcript) as psu,
    ):
        assert isinstance(psu, PowerSupply)
        assert psu.identify() == "posrig,SIM-PSU,0001,1.0"
        psu.reset()
        psu.set_voltage(5.0)
        psu.set_current_limit(0.5)
        assert psu.query("VOLT?") == "5.000"
        assert psu.query("CURR?") == "0.500"
        assert psu.measure_voltage() == 0.0
        psu.output(True)
        assert psu.output_state() is True
        assert psu.measure_voltage() == pytest.approx(5.0, abs=0.01)
        assert psu.measure_current() == pytest.approx(0.0, abs=0.001)
        psu.output(False)
        assert psu.output_state() is False
        assert psu.measure_voltage() == 0.0
        assert psu.errors() == []
    entries = read_transcript(log)
    tx = [e["decoded"]["scpi"] for e in entries if e["dir"] == "tx"]
    assert tx[:3] == ["*IDN?", "*IDN?", "*RST"]
    assert "VOLT 5.0000" in tx and "OUTP ON" in tx
    rx = [e for e in entries if e["dir"] == "rx"]
    assert rx[0]["decoded"] == {"answer": "posrig,SIM-PSU,0001,1.0"}
    assert rx[0]["raw"] == b"posrig,SIM-PSU,0001,1.0\n".hex().upper()


def test_scpi_errors_are_reported(psu_sim) -> None:
    _, endpoints = psu_sim()
    with ScpiPowerSupply(endpoints["visa"]) as psu:
        with pytest.raises(PsuScpiError, match=r'-222,"Data out of range"') as info:
            psu.set_voltage(100.0)
        assert info.value.errors == [(-222, "Data out of range")]
        with pytest.raises(PsuScpiError, match="Undefined header"):
            psu.send("FROB 1")
    with ScpiPowerSupply(endpoints["visa"], check_errors=False) as psu:
        psu.send("FROB 1")
        psu.send("VOLT")
        psu.send("OUTP MAYBE")
        assert psu.errors() == [
            (-113, "Undefined header"),
            (-109, "Missing parameter"),
            (-104, "Data type error"),
        ]
        assert psu.errors() == []


def test_multi_output_selects_with_inst_nsel(psu_sim, tmp_path: Path) -> None:
    _, endpoints = psu_sim("--outputs", "2")
    log = tmp_path / "psu.jsonl"
    with (
        Transcript(log, "psu") as transcript,
        ScpiPowerSupply(endpoints["visa"], outputs=2, transcript=transcript) as psu,
    ):
        psu.set_voltage(3.3, output=2)
        psu.set_voltage(12.0, output=1)
        psu.output(True, output=2)
        assert psu.output_state(2) is True
        assert psu.output_state(1) is False
        assert psu.measure_voltage(2) == pytest.approx(3.3, abs=0.01)
        assert psu.measure_voltage(1) == 0.0
        with pytest.raises(PsuError, match=r"use 1\.\.2"):
            psu.set_voltage(1.0, output=3)
    tx = [e["decoded"]["scpi"] for e in read_transcript(log) if e["dir"] == "tx"]
    assert tx[:3] == ["*IDN?", "INST:NSEL 2", "VOLT 3.3000"]


def test_two_connections_share_one_instrument(psu_sim) -> None:
    _, endpoints = psu_sim()
    with ScpiPowerSupply(endpoints["visa"]) as one, ScpiPowerSupply(endpoints["visa"]) as two:
        one.set_voltage(7.5)
        one.output(True)
        assert two.measure_voltage() == pytest.approx(7.5, abs=0.01)
        assert two.output_state() is True


def test_unreachable_resource_fails_fast() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    resource = f"TCPIP::127.0.0.1::{port}::SOCKET"
    started = time.monotonic()
    with pytest.raises(PsuUnreachable, match=f"{port}.*check that it is powered"):
        ScpiPowerSupply(resource, timeout=1.0)
    assert time.monotonic() - started < 3.0


def test_unanswered_query_times_out(psu_sim) -> None:
    _, endpoints = psu_sim()
    with ScpiPowerSupply(endpoints["visa"], timeout=0.3) as psu:
        started = time.monotonic()
        with pytest.raises(PsuTimeout, match="FROB\\?"):
            psu.query("FROB?")
        assert time.monotonic() - started < 2.0


def test_simulator_killed_gives_clear_error(psu_sim) -> None:
    proc, endpoints = psu_sim()
    with ScpiPowerSupply(endpoints["visa"], timeout=0.5) as psu:
        assert psu.identify().startswith("posrig")
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        started = time.monotonic()
        with pytest.raises((PsuUnreachable, PsuTimeout)):
            psu.identify()
            psu.identify()
        assert time.monotonic() - started < 3.0


def test_psu_power_switch(psu_sim) -> None:
    _, endpoints = psu_sim()
    with ScpiPowerSupply(endpoints["visa"]) as psu:
        psu.set_voltage(5.0)
        switch = PsuPowerSwitch(psu, 1)
        assert isinstance(switch, PowerSwitch)
        switch.on()
        assert switch.state() is True
        switch.cycle(off_time=0.0)
        assert switch.state() is True
        switch.off()
        assert switch.state() is False


@given(st.text(max_size=40))
def test_parse_error_line_fuzz(line: str) -> None:
    try:
        code, message = parse_error_line(line)
    except PsuError:
        return
    assert isinstance(code, int) and isinstance(message, str)


@given(st.text(max_size=20))
def test_parse_number_fuzz(answer: str) -> None:
    try:
        value = parse_number(answer, "MEAS:VOLT?")
    except PsuError:
        return
    assert value == value


def test_parse_error_line_examples() -> None:
    # SCPI-99 error queue format: <code>,"<description>"; 0 means the queue is empty.
    assert parse_error_line('0,"No error"') == (0, "No error")
    assert parse_error_line('-113,"Undefined header"') == (-113, "Undefined header")
    assert parse_error_line('+0,"No error"') == (0, "No error")
