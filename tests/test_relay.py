"""Relay drivers against their simulators through real ptys (pyserial), plus parser fuzzing."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st
from simproc import Procs, stop

from drivers.relay import (
    RelayBoard,
    RelayChecksumError,
    RelayError,
    RelayPortGone,
    RelayTimeout,
)
from drivers.relay_lcus import LcusRelay, decode_feedback, decode_status, encode_frame
from drivers.relay_numato import NumatoRelay, parse_reply, relay_index
from rig.evidence import Transcript, read_transcript


@pytest.fixture
def sim(tmp_path: Path):
    """Factory: start a simulator with a pty link under tmp_path; every one is stopped after."""
    procs = Procs()

    def start(module: str, *args: str, name: str = "relay") -> tuple[subprocess.Popen[bytes], str]:
        link = tmp_path / f"{name}-{len(procs.procs)}"
        proc, endpoints = procs.spawn(module, "--link", str(link), *args)
        assert endpoints["port"] == str(link)
        return proc, endpoints["port"]

    yield start
    procs.stop_all()


# --- LCUS: published command frames -------------------------------------------------------------


def test_lcus_frames_match_published_examples() -> None:
    # LC Technology product note (reproduced by sellers and e.g. jarwyg/USB_RELAY README):
    # relay 1 on = A0 01 01 A2, relay 1 off = A0 01 00 A1; relay 2 on = A0 02 01 A3.
    assert encode_frame(1, 1) == bytes.fromhex("A00101A2")
    assert encode_frame(1, 0) == bytes.fromhex("A00100A1")
    assert encode_frame(2, 1) == bytes.fromhex("A00201A3")
    assert encode_frame(2, 0) == bytes.fromhex("A00200A2")


# --- LCUS: driver through the simulator ---------------------------------------------------------


def test_lcus_on_off_status_readback(sim, tmp_path: Path) -> None:
    _, port = sim("relay_lcus", "--channels", "4")
    log = tmp_path / "relay.jsonl"
    with Transcript(log, "relay") as transcript, LcusRelay(port, 4, transcript=transcript) as board:
        assert isinstance(board, RelayBoard)
        assert board.get(2) is False
        board.set(2, True)
        assert board.get(2) is True
        assert board.get(1) is False
        assert board.status() == {1: False, 2: True, 3: False, 4: False}
        board.set(2, False)
        assert board.get(2) is False
    entries = read_transcript(log)
    raws = [e.get("raw") for e in entries if e["dir"] == "tx"]
    assert "A00201A3" in raws and "A00200A2" in raws and "FF" in raws
    rx = [e for e in entries if e["dir"] == "rx"]
    assert rx and rx[0]["decoded"] == {"status": {"1": False, "2": False, "3": False, "4": False}}


def test_lcus_feedback_mode(sim) -> None:
    _, port = sim("relay_lcus", "--channels", "2")
    with LcusRelay(port, 2, readback="feedback") as board:
        board.set(1, True)
        assert board.get(1) is True
        assert board.get(2) is False
        board.set(1, False)
        assert board.get(1) is False


def test_lcus_board_ignores_frame_with_wrong_checksum(sim) -> None:
    _, port = sim("relay_lcus", "--channels", "1")
    with serial.serial_for_url(port, baudrate=9600, timeout=0.5) as raw:
        raw.write(bytes.fromhex("A00101FF"))
        raw.flush()
    with LcusRelay(port, 1) as board:
        assert board.get(1) is False


def test_lcus_corrupted_answer_frame_raises_checksum_error(sim, tmp_path: Path) -> None:
    _, port = sim("relay_lcus", "--channels", "2", "--corrupt-after", "1")
    log = tmp_path / "relay.jsonl"
    with Transcript(log, "relay") as transcript:
        board = LcusRelay(port, 2, readback="feedback", transcript=transcript)
        board.set(1, True)
        with pytest.raises(RelayChecksumError, match="checksum"):
            board.get(1)
        board.close()
    failures = [e for e in read_transcript(log) if "error" in e]
    assert failures and failures[-1]["raw"].startswith("A00101")


def test_lcus_corrupted_status_names_the_line(sim) -> None:
    _, port = sim("relay_lcus", "--channels", "2", "--corrupt-after", "0")
    with LcusRelay(port, 2) as board, pytest.raises(RelayError, match=r"'CH1:0FF") as info:
        board.get(1)
    assert not isinstance(info.value, RelayChecksumError)


def test_lcus_silent_board_times_out_and_none_mode_keeps_shadow(sim) -> None:
    _, port = sim("relay_lcus", "--channels", "2", "--silent")
    with LcusRelay(port, 2, timeout=0.2) as board:
        started = time.monotonic()
        with pytest.raises(RelayTimeout, match="no status answer"):
            board.get(1)
        assert time.monotonic() - started < 1.5
    with LcusRelay(port, 2, readback="none") as board:
        board.set(2, True)
        assert board.get(2) is True
        assert board.get(1) is False


def test_lcus_simulator_killed_mid_exchange(sim) -> None:
    proc, port = sim("relay_lcus", "--channels", "2", "--die-after", "1")
    with LcusRelay(port, 2, timeout=0.5) as board:
        board.set(1, True)
        started = time.monotonic()
        with pytest.raises(RelayPortGone, match="port gone"):
            board.get(1)
        assert time.monotonic() - started < 2.0
        assert proc.wait(5) == -signal.SIGKILL
        with pytest.raises(RelayPortGone, match="port gone"):
            board.set(1, False)


def test_lcus_missing_port_and_bad_channel(tmp_path: Path, sim) -> None:
    with pytest.raises(RelayPortGone, match="cannot be opened"):
        LcusRelay(str(tmp_path / "no-such-port"))
    _, port = sim("relay_lcus", "--channels", "4")
    with LcusRelay(port, 4) as board:
        for bad in (0, 5, -1):
            with pytest.raises(RelayError, match=r"use 1\.\.4"):
                board.set(bad, True)
    with pytest.raises(RelayError, match="readback"):
        LcusRelay(port, 4, readback="telepathy")


# --- Numato -------------------------------------------------------------------------------------


def test_numato_relay_index_wire_names() -> None:
    # Numato documentation: relays numbered from 0; 10 and above are upper-case letters
    # (relay 10 = A, relay 12 = C). Channels here are 1-based, so channel 13 is wire relay 12.
    assert relay_index(1) == "0"
    assert relay_index(10) == "9"
    assert relay_index(11) == "A"
    assert relay_index(13) == "C"


def test_numato_reply_parsing_follows_sample_format() -> None:
    # Reply format per NumatoLab/NumatoIO_Python usbrelay_8.py: echo, LF CR, answer, LF CR, '>'.
    assert parse_reply("relay read 4", b"relay read 4\n\ron\n\r>") == ["on"]
    assert parse_reply("relay read 4", b"relay read 4\n\roff\n\r>") == ["off"]
    assert parse_reply("relay on 4", b"relay on 4\n\r>") == []
    assert parse_reply("relay on 4", b">relay on 4\n\r>") == []


def test_numato_on_off_read_version_reset(sim, tmp_path: Path) -> None:
    _, port = sim("relay_numato", "--channels", "16")
    log = tmp_path / "numato.jsonl"
    with Transcript(log, "relay") as transcript:
        board = NumatoRelay(port, 16, transcript=transcript)
        assert board.get(1) is False
        board.set(1, True)
        board.set(12, True)
        assert board.get(1) is True
        assert board.get(12) is True
        assert board.get(11) is False
        board.set(1, False)
        assert board.get(1) is False
        assert board.version() == "00000008"
        board.reset()
        assert board.get(12) is False
        board.close()
    tx = [e["decoded"]["cmd"] for e in read_transcript(log) if e["dir"] == "tx"]
    assert "relay on B" in tx and "relay read 0" in tx
    rx = [e for e in read_transcript(log) if e["dir"] == "rx"]
    assert rx[0]["raw"] == b"relay read 0\n\roff\n\r>".hex().upper()


def test_numato_bad_answer_names_what_came_back(sim) -> None:
    _, port = sim("relay_numato", "--channels", "4", "--corrupt-after", "0")
    with NumatoRelay(port, 4) as board, pytest.raises(RelayError, match=r"answered \['of#'\]"):
        board.get(1)


def test_numato_timeout_on_a_silent_port(sim) -> None:
    _, port = sim("relay_lcus", "--channels", "1", "--silent")
    with NumatoRelay(port, 4, timeout=0.2) as board, pytest.raises(RelayTimeout, match="prompt"):
        board.get(1)


def test_numato_simulator_killed_mid_exchange(sim) -> None:
    proc, port = sim("relay_numato", "--channels", "4", "--die-after", "1")
    with NumatoRelay(port, 4, timeout=0.5) as board:
        board.set(2, True)
        started = time.monotonic()
        with pytest.raises(RelayPortGone, match="port gone"):
            board.get(2)
        assert time.monotonic() - started < 2.0
        assert proc.wait(5) == -signal.SIGKILL


# --- fuzzing: only the documented error type escapes ----------------------------------------


@given(st.binary(max_size=64))
def test_decode_status_fuzz(raw: bytes) -> None:
    try:
        states = decode_status(raw)
    except RelayError:
        return
    assert states and all(isinstance(v, bool) for v in states.values())


@given(st.binary(max_size=8))
def test_decode_feedback_fuzz(raw: bytes) -> None:
    try:
        channel, on = decode_feedback(raw)
    except RelayError:
        return
    assert encode_frame(channel, int(on)) == raw


@given(st.integers(0, 255), st.integers(0, 1))
def test_feedback_round_trip(channel: int, state: int) -> None:
    assert decode_feedback(encode_frame(channel, state)) == (channel, bool(state))


@given(st.text(max_size=20), st.binary(max_size=64))
def test_parse_reply_fuzz(command: str, raw: bytes) -> None:
    try:
        lines = parse_reply(command, raw)
    except RelayError:
        return
    assert all(line and ">" not in line[:1] for line in lines)


def test_pty_link_removed_on_sigterm(sim, tmp_path: Path) -> None:
    proc, port = sim("relay_numato", "--channels", "1")
    assert os.path.islink(port)
    stop(proc)
    assert not os.path.lexists(port)
