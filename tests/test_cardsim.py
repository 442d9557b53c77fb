"""Card simulator: the ISO 7816 demo card, the vpcd framing, and the simulator process with its
control port, driven through a real pcscd + vpcd (reader index 1)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from simproc import stop

from drivers.cardsim import CardSimulatorControl, CardSimulatorError
from drivers.pcsc import PcscError, PcscReader
from rig.bench.pcscd import (
    PcscdError,
    ensure_pcscd,
    hold_pcscd,
    pcscd_running,
    release_pcscd,
    vpcd_port,
    vpcd_reader_name,
)
from rig.bench.sim import cardsim
from rig.card.application import ApduFormatError, CardApplication, Command, parse_command
from rig.card.iso7816_app import (
    AID_CHAINED,
    AID_DIRECT,
    ATR,
    FCI_CHAINED,
    FCI_DIRECT,
    FILE_CONTENT,
    Iso7816DemoCard,
)
from rig.card.vpcd import CLOSED, VpcdError, VpcdLink
from rig.evidence import read_transcript

INDEX = 1
SELECT_DIRECT = bytes.fromhex("00A4040008") + AID_DIRECT
SELECT_CHAINED = bytes.fromhex("00A4040008") + AID_CHAINED + b"\x00"


# -- the demo card, pure ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hexapdu", "expected"),
    [
        ("00B00000", Command(0, 0xB0, 0, 0, b"", None)),
        ("00B0000000", Command(0, 0xB0, 0, 0, b"", 256)),
        ("00A4040002AABB", Command(0, 0xA4, 4, 0, b"\xaa\xbb", None)),
        ("00A4040002AABB10", Command(0, 0xA4, 4, 0, b"\xaa\xbb", 16)),
    ],
)
def test_parse_command_cases_1_to_4(hexapdu: str, expected: Command) -> None:
    assert parse_command(bytes.fromhex(hexapdu)) == expected


@pytest.mark.parametrize(
    "hexapdu", ["00B000", "00A4040003AABB", "00A40400000001", "00A4040001AABBCC"]
)
def test_parse_command_rejects_bad_lengths(hexapdu: str) -> None:
    with pytest.raises(ApduFormatError, match=hexapdu):
        parse_command(bytes.fromhex(hexapdu))


@given(st.binary(max_size=300))
def test_parse_command_fuzz_raises_only_its_error(apdu: bytes) -> None:
    try:
        cmd = parse_command(apdu)
    except ApduFormatError as exc:
        assert exc.sw == 0x6700
    else:
        assert (cmd.cla, cmd.ins) == (apdu[0], apdu[1])


@given(st.binary(max_size=300))
def test_demo_card_answers_any_bytes_with_a_status_word(apdu: bytes) -> None:
    card = Iso7816DemoCard()
    card.process(SELECT_DIRECT)
    resp = card.process(apdu)
    assert len(resp) >= 2


def test_demo_card_rules() -> None:
    card = Iso7816DemoCard()
    assert isinstance(card, CardApplication)
    assert card.process(bytes.fromhex("00B0000010")) == b"\x69\x86"  # no application selected
    assert card.process(SELECT_DIRECT) == FCI_DIRECT + b"\x90\x00"
    assert card.process(bytes.fromhex("00B0000008")) == FILE_CONTENT[:8] + b"\x90\x00"
    assert card.process(bytes.fromhex("00B0003800")) == b"\x6c\x08"  # Le 256 > 8 bytes left
    assert card.process(bytes.fromhex("00B0003808")) == FILE_CONTENT[56:] + b"\x90\x00"
    assert card.process(bytes.fromhex("00B0004001")) == b"\x6b\x00"
    assert card.process(bytes.fromhex("00B00000")) == b"\x67\x00"
    assert card.process(bytes.fromhex("00EE000000")) == b"\x6d\x00"
    assert card.process(bytes.fromhex("84B0000010")) == b"\x6e\x00"
    assert card.process(bytes.fromhex("00C0000010")) == b"\x69\x85"  # nothing pending
    assert card.process(bytes.fromhex("00A4040001AA")) == b"\x6a\x82"
    assert card.process(bytes.fromhex("00A4000008") + AID_DIRECT) == b"\x6a\x86"


def test_demo_card_t0_style_select_hands_fci_out_in_chunks() -> None:
    card = Iso7816DemoCard()
    assert card.process(SELECT_CHAINED) == b"\x61\x10"
    assert card.process(bytes.fromhex("00C0000020")) == b"\x6c\x10"
    assert card.process(bytes.fromhex("00C0000010")) == FCI_CHAINED[:16] + b"\x61\x10"
    assert card.process(bytes.fromhex("00C0000010")) == FCI_CHAINED[16:32] + b"\x61\x06"
    assert card.process(bytes.fromhex("00C0000006")) == FCI_CHAINED[32:] + b"\x90\x00"
    card.process(SELECT_CHAINED)
    card.reset()
    assert card.process(bytes.fromhex("00C0000010")) == b"\x69\x85"


# -- vpcd framing against a TCP peer speaking vpcd's side ------------------------------------


def test_vpcd_link_framing_and_control_codes() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    result: list[str] = []
    controls: list[int] = []
    card = Iso7816DemoCard()

    def card_side() -> None:
        link = VpcdLink.connect("127.0.0.1", port, timeout=2)
        result.append(link.serve(card, on_control=controls.append))

    thread = threading.Thread(target=card_side)
    thread.start()
    peer, _ = server.accept()
    rfile = peer.makefile("rb")

    def ask(payload: bytes, split: bool = False) -> bytes:
        head = len(payload).to_bytes(2, "big")
        if split:  # vpcd may write the length and the payload separately
            peer.sendall(head)
            time.sleep(0.01)
            peer.sendall(payload)
        else:
            peer.sendall(head + payload)
        size = int.from_bytes(rfile.read(2), "big")
        return rfile.read(size)

    try:
        assert ask(b"\x04") == ATR
        peer.sendall(b"\x00\x01\x01")  # power on: no answer expected
        assert ask(SELECT_DIRECT, split=True) == FCI_DIRECT + b"\x90\x00"
        peer.sendall(b"\x00\x01\x02")  # reset: selection forgotten
        assert ask(bytes.fromhex("00B0000010")) == b"\x69\x86"
    finally:
        rfile.close()
        peer.close()
        thread.join(timeout=5)
        server.close()
    assert result == [CLOSED]
    assert controls == [0x04, 0x01, 0x02]


def test_vpcd_connect_gives_up_with_the_fix() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(VpcdError, match=f"127.0.0.1:{port}.*ensure_pcscd"):
        VpcdLink.connect("127.0.0.1", port, timeout=0.2)


# -- the simulator process through pcscd + vpcd ----------------------------------------------


@pytest.fixture(scope="module")
def pcscd() -> Iterator[list[str]]:
    with ensure_pcscd() as names:
        yield names


@pytest.fixture
def spawn(pcscd: list[str]) -> Iterator[Any]:
    procs = []

    def start(*args: str) -> dict[str, Any]:
        proc, ready = cardsim.spawn(f"127.0.0.1:{vpcd_port(INDEX)}", *args)
        procs.append(proc)
        return {"proc": proc, **ready}

    yield start
    for proc in procs:
        stop(proc)


def test_pcscd_lists_both_vpcd_readers(pcscd: list[str]) -> None:
    assert pcscd == [vpcd_reader_name(0), vpcd_reader_name(1)]
    assert (vpcd_port(0), vpcd_port(1)) == (35963, 35964)
    with pytest.raises(PcscdError, match="readers 0 and 1"):
        vpcd_port(2)


def test_pcscd_leases_of_dead_processes_are_dropped(pcscd: list[str]) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=10)
    name = f"test-dead-{dead.pid}"
    assert hold_pcscd(name, pid=dead.pid) == pcscd
    lease = Path(tempfile.gettempdir()) / "posrig-pcscd.leases" / name
    assert lease.read_text() == str(dead.pid)
    assert release_pcscd("test-never-held") is False  # this module's own lease is alive
    assert not lease.exists()
    assert pcscd_running()


def test_readiness_endpoints_and_status(spawn: Any, tmp_path: Path) -> None:
    sim = spawn("--transcript", str(tmp_path / "cardsim.jsonl"))
    assert sim["ready"] is True
    endpoints = sim["endpoints"]
    assert endpoints["reader"] == "Virtual PCD 00 01"
    assert endpoints["vpcd"] == "127.0.0.1:35964"
    host, port = endpoints["control"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    with CardSimulatorControl(endpoints["control"]) as ctl:
        status = ctl.status()
    assert status["present"] is True and status["powered"] is True
    assert status["muted"] is False and status["app"] == "iso7816"


def test_absent_start_then_insert_and_remove(spawn: Any) -> None:
    sim = spawn("--absent")
    with (
        CardSimulatorControl(sim["endpoints"]["control"]) as ctl,
        PcscReader(sim["endpoints"]["reader"]) as reader,
    ):
        assert ctl.status()["present"] is False
        reader.wait_for_removal(2.0)
        assert ctl.insert()["present"] is True
        assert reader.card_present()
        assert reader.connect() == ATR
        assert reader.transmit(SELECT_DIRECT) == (FCI_DIRECT, 0x9000)
        assert ctl.status()["apdus"] == 1
        assert ctl.remove()["present"] is False
        reader.wait_for_removal(2.0)


def test_simulator_transcript_holds_rx_and_tx(spawn: Any, tmp_path: Path) -> None:
    path = tmp_path / "cardsim.jsonl"
    sim = spawn("--transcript", str(path))
    with PcscReader(sim["endpoints"]["reader"]) as reader:
        reader.connect()
        reader.transmit(SELECT_DIRECT)
        reader.transmit(bytes.fromhex("00B0000004"))
    sim["proc"].send_signal(signal.SIGTERM)
    assert sim["proc"].wait(timeout=5) == 0
    entries = read_transcript(path)
    apdus = [e for e in entries if e["dir"] in ("rx", "tx")]
    assert [e["dir"] for e in apdus] == ["rx", "tx", "rx", "tx"]
    assert apdus[0]["raw"] == SELECT_DIRECT.hex().upper()
    assert apdus[0]["decoded"] == {"ins": "SELECT"}
    assert apdus[3]["decoded"]["sw"] == "9000"
    assert all(e["instrument"] == "cardsim" for e in entries)
    assert any(e.get("decoded") == {"vpcd": "power on"} for e in entries)


def test_pin_commands_never_reach_the_simulator_transcript(spawn: Any, tmp_path: Path) -> None:
    """VERIFY answered, and VERIFY held by a muted card: both recorded as a length only."""
    path = tmp_path / "cardsim.jsonl"
    sim = spawn("--transcript", str(path), "--mute-timeout", "0.3")
    verify = bytes.fromhex("0020008008241234FFFFFFFFFF")  # TEST PIN 1234, format 2
    with (
        CardSimulatorControl(sim["endpoints"]["control"]) as ctl,
        PcscReader(sim["endpoints"]["reader"]) as reader,
    ):
        reader.connect()
        reader.transmit(verify)
        ctl.mute(True, 0.3)
        with pytest.raises(PcscError):
            reader.transmit(verify)
        ctl.mute(False)
    sim["proc"].send_signal(signal.SIGTERM)
    assert sim["proc"].wait(timeout=5) == 0
    commands = [e for e in read_transcript(path) if e.get("len") == len(verify)]
    assert len(commands) >= 2 and any("held" in e.get("error", "") for e in commands)
    assert all("241234" not in e["raw"] for e in commands)


def test_control_refusals_are_clear(spawn: Any) -> None:
    sim = spawn()
    with CardSimulatorControl(sim["endpoints"]["control"]) as ctl:
        with pytest.raises(CardSimulatorError, match="unknown command 'shake'"):
            ctl.request("shake")
        with pytest.raises(CardSimulatorError, match="positive number of seconds"):
            ctl.mute(True, -1)
        assert ctl.status()["muted"] is False
    host, port = sim["endpoints"]["control"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"not json\n")
        reply = json.loads(raw.makefile("rb").readline())
    assert reply["ok"] is False and "not JSON" in reply["error"]


def test_control_reports_a_vanished_simulator(spawn: Any) -> None:
    sim = spawn()
    ctl = CardSimulatorControl(sim["endpoints"]["control"])
    assert ctl.status()["present"] is True
    sim["proc"].kill()
    sim["proc"].wait(timeout=5)
    with PcscReader(sim["endpoints"]["reader"]) as reader:
        reader.wait_for_removal(2.0)
    with pytest.raises(CardSimulatorError, match=sim["endpoints"]["control"]):
        ctl.status()
    ctl.close()
    with pytest.raises(CardSimulatorError, match="not reachable"):
        CardSimulatorControl(sim["endpoints"]["control"]).status()


def test_killed_simulator_is_a_removed_card(spawn: Any) -> None:
    sim = spawn()
    with PcscReader(sim["endpoints"]["reader"]) as reader:
        reader.connect()
        sim["proc"].kill()
        sim["proc"].wait(timeout=5)
        reader.wait_for_removal(2.0)
        assert not reader.card_present()


def test_bad_arguments_announce_failure(pcscd: list[str]) -> None:
    proc, ready = cardsim.spawn("localhost-no-port")
    assert proc.wait(timeout=5) == 2
    proc.stdout.close()  # type: ignore[union-attr]
    assert ready == {"ready": False, "error": ready["error"]}
    assert "--vpcd 'localhost-no-port': expected host:port" in ready["error"]


def test_unreachable_vpcd_announces_failure() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    proc, ready = cardsim.spawn(f"127.0.0.1:{port}", "--insert-wait", "0.3")
    assert proc.wait(timeout=5) == 1
    proc.stdout.close()  # type: ignore[union-attr]
    assert ready["ready"] is False
    assert f"cannot reach vpcd at 127.0.0.1:{port}" in ready["error"]
