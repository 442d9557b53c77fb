"""PosrigEcrLink through real ptys against the ecr_peer simulator in each misbehaviour mode."""

from __future__ import annotations

import base64
import os
import select
import subprocess
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from simproc import Procs

from drivers.ecr import EcrLink, EcrMessageError, EcrNakLimit, EcrPortGone, EcrTimeout
from drivers.ecr import messages as m
from drivers.ecr.framing import ACK, NAK, STX, encode_frame
from drivers.ecr.posrig_link import PosrigEcrLink
from rig.evidence import Transcript, read_transcript

FAST = {"ack_timeout": 0.3, "inter_char_timeout": 0.1, "response_timeout": 2.0}


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], str]]]:
    procs = Procs()

    def start(mode: str = "normal", count: int | None = None) -> tuple[subprocess.Popen, str]:
        args = [
            "--link",
            str(tmp_path / "ecr"),
            "--mode",
            mode,
            "--ack-timeout",
            "0.3",
            "--inter-char-timeout",
            "0.1",
        ]
        if count is not None:
            args += ["--count", str(count)]
        proc, endpoints = procs.spawn("ecr_peer", *args)
        return proc, endpoints["port"]

    yield start
    procs.stop_all()


@pytest.fixture
def transcript(tmp_path: Path) -> Iterator[Transcript]:
    with Transcript(tmp_path / "ecr.jsonl", "ecr") as t:
        yield t


def entries(transcript: Transcript) -> list[dict]:
    transcript.flush()
    assert transcript.path is not None
    return read_transcript(transcript.path)


SALE = m.request("sale", amount=1234, currency="978", reference="R-1")


def test_normal_exchange_and_transcript(peer, transcript) -> None:
    _, port = peer()
    with PosrigEcrLink(port, transcript=transcript, **FAST) as link:
        assert isinstance(link, EcrLink)
        pong = link.request(m.request("ping"))
        sale = link.request(SALE)
    assert pong["result"] == "00" and pong["name"] == "ecr-peer"
    assert sale["seq"] == pong["seq"] + 1
    assert sale["masked_pan"] == "476173******0010" and sale["amount"] == 1234
    log = entries(transcript)
    tx = [e for e in log if e["dir"] == "tx" and e.get("decoded", {}).get("cmd") == "sale"]
    rx = [e for e in log if e["dir"] == "rx" and e.get("decoded", {}).get("rsp") == "sale"]
    assert len(tx) == 1 and tx[0]["raw"].startswith("02") and len(rx) == 1
    assert rx[0]["decoded"]["masked_pan"] == "476173******0010"
    assert sum(e.get("decoded") == {"control": "ACK"} for e in log if e["dir"] == "rx") == 2
    assert not any("error" in e for e in log)


def test_nak_storm_within_limit_recovers(peer) -> None:
    _, port = peer("nak-storm", 3)
    with PosrigEcrLink(port, **FAST) as link:
        assert link.request(m.request("ping"))["result"] == "00"
        assert link.stats["retransmissions"] == 3 and link.stats["naks_received"] == 3


def test_nak_storm_beyond_limit_raises_then_link_still_works(peer, transcript) -> None:
    _, port = peer("nak-storm", 4)
    with PosrigEcrLink(port, transcript=transcript, **FAST) as link:
        with pytest.raises(EcrNakLimit, match="NAKed 4 times"):
            link.request(m.request("ping"))
        assert link.request(m.request("ping"))["handled"] == 1
    assert any("NAKed 4 times" in e.get("error", "") for e in entries(transcript))


def test_lost_acks_retransmit_without_duplicate_delivery(peer, transcript) -> None:
    _, port = peer("lose-ack", 2)
    with PosrigEcrLink(port, transcript=transcript, **FAST) as link:
        pong = link.request(m.request("ping"))
        assert pong["handled"] == 1
        assert link.stats["retransmissions"] == 1
        with pytest.raises(EcrTimeout):
            link.receive(timeout=0.8)
        assert link.stats["duplicates"] == 1
        status = link.request(m.request("status"))
    assert status["handled"] == 2, "the peer processed a retransmitted request twice"
    assert any("not delivered" in e.get("error", "") for e in entries(transcript))


@pytest.mark.parametrize(("mode", "reason"), [("garble", "LRC"), ("truncate", "inter-character")])
def test_bad_frames_are_naked_and_recovered(peer, transcript, mode: str, reason: str) -> None:
    _, port = peer(mode, 2)
    with PosrigEcrLink(port, transcript=transcript, **FAST) as link:
        assert link.request(SALE)["result"] == "00"
        assert link.stats["naks_sent"] == 2
    log = entries(transcript)
    assert sum(reason in e.get("error", "") for e in log if e["dir"] == "rx") == 2
    assert sum(e.get("decoded") == {"control": "NAK"} for e in log if e["dir"] == "tx") == 2


def test_silent_peer_times_out(peer, transcript) -> None:
    _, port = peer("silent")
    with PosrigEcrLink(port, transcript=transcript, **FAST) as link:
        start = time.monotonic()
        with pytest.raises(EcrTimeout, match=r"no ACK within 0\.3 s on any of 4 attempts"):
            link.request(m.request("ping"))
        assert 1.1 < time.monotonic() - start < 3
    assert sum(e["dir"] == "tx" for e in entries(transcript)) == 4


def test_briefly_silent_peer_recovers(peer) -> None:
    _, port = peer("silent", 2)
    with PosrigEcrLink(port, **FAST) as link:
        assert link.request(m.request("ping"))["result"] == "00"
        assert link.stats["retransmissions"] == 2


def test_peer_killed_mid_exchange_is_port_gone(peer, transcript) -> None:
    proc, port = peer("silent")
    link = PosrigEcrLink(port, transcript=transcript, ack_timeout=5, response_timeout=10)
    link.open()
    threading.Timer(0.3, proc.kill).start()
    start = time.monotonic()
    with pytest.raises(EcrPortGone) as info:
        link.request(m.request("ping"))
    assert time.monotonic() - start < 3
    assert port in str(info.value)
    link.close()
    assert any(e["dir"] == "event" and "error" in e for e in entries(transcript))


def test_missing_port_is_port_gone(tmp_path: Path) -> None:
    with pytest.raises(EcrPortGone, match="no-such-port"):
        PosrigEcrLink(str(tmp_path / "no-such-port")).open()


def test_simctl_switches_mode_at_run_time(peer) -> None:
    _, port = peer()
    with PosrigEcrLink(port, **FAST) as link:
        assert link.request(m.request("simctl", mode="nak-storm"))["mode"] == "nak-storm"
        with pytest.raises(EcrNakLimit):
            link.request(m.request("ping"))


def test_firmware_upgrade_and_corrupt_chunk(peer) -> None:
    _, port = peer()
    image = os.urandom(1300)
    with PosrigEcrLink(port, **FAST) as link:
        answers = [link.request(r) for r in m.firmware_requests(image, "9.9.9", chunk_size=512)]
        assert [a["result"] for a in answers] == ["00"] * 5
        assert answers[-1]["version"] == "9.9.9" and answers[-1]["size"] == 1300
        assert link.request(m.request("ping"))["firmware"] == "9.9.9"
        reqs = m.firmware_requests(image, "9.9.10", chunk_size=512)
        reqs[1]["data"] = base64.b64encode(b"\x00" * 512).decode()
        assert link.request(reqs[0])["result"] == "00"
        assert link.request(reqs[1])["result"] == m.Result.FW_CHECKSUM
        assert link.request(reqs[2])["result"] == m.Result.FW_SEQUENCE
        assert link.request(m.request("fw_abort"))["result"] == "00"


def test_test_port_keys_display_and_screenshot(peer) -> None:
    _, port = peer()
    with PosrigEcrLink(port, **FAST) as link:
        keyed = link.request(m.request("key_inject", keys=["1", "2", "3"]))
        assert keyed["display"] == "123"
        assert link.request(m.request("display_read"))["display"] == "123"
        shot = link.request(m.request("display_shot"))
    png = base64.b64decode(shot["png"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and (shot["width"], shot["height"]) == (128, 32)


# ---- raw pty peer: the test writes the terminal's bytes itself -----------------------------


@pytest.fixture
def raw_pty() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def read_some(fd: int, timeout: float = 1.0) -> bytes:
    return os.read(fd, 4096) if select.select([fd], [], [], timeout)[0] else b""


def test_garbage_skipped_oversize_naked_and_bad_message_reported(raw_pty, transcript) -> None:
    master, path = raw_pty
    with PosrigEcrLink(path, transcript=transcript, max_payload=64, **FAST) as link:
        good = encode_frame(m.encode({"cmd": "display_read", "seq": 5}))
        os.write(master, b"noise" + good)
        assert link.receive(timeout=1)["cmd"] == "display_read"
        assert read_some(master) == bytes([ACK])
        assert link.stats["garbage_bytes"] == 5
        os.write(master, bytes([STX]) + b"x" * 100 + b"\x03\x00")
        with pytest.raises(EcrTimeout):
            link.receive(timeout=0.3)
        assert read_some(master) == bytes([NAK])
        os.write(master, encode_frame(b'{"cmd":"ping"}'))
        with pytest.raises(EcrMessageError, match="seq"):
            link.receive(timeout=1)
        assert read_some(master) == bytes([ACK])
    log = entries(transcript)
    assert any("outside a frame" in e.get("error", "") for e in log)
    assert any("exceeds the maximum 64" in e.get("error", "") for e in log)


def test_stale_response_dropped_and_unsolicited_request_kept(raw_pty) -> None:
    master, path = raw_pty

    def terminal() -> None:
        frame = read_some(master)
        req = m.decode(frame[1:-2])
        os.write(master, bytes([ACK]))
        stale = m.response({"cmd": "ping", "seq": (req["seq"] + 5) % 9999}, "00")
        for msg in (stale, {"cmd": "display_read", "seq": 1}, m.response(req, "00")):
            os.write(master, encode_frame(m.encode(msg)))
            assert read_some(master) == bytes([ACK])

    worker = threading.Thread(target=terminal)
    with PosrigEcrLink(path, **FAST) as link:
        worker.start()
        assert link.request(m.request("ping"))["result"] == "00"
        worker.join(3)
        assert link.receive(timeout=0.5)["cmd"] == "display_read"
