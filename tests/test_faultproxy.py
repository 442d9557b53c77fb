"""Network fault proxy between a plain socket 'terminal' and the echo host, over real TCP."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
from simproc import launch, spawn, stop

from drivers.netproxy import FaultProxyControl, FaultProxyError
from rig.bench.sim.faultproxy import corrupt


@pytest.fixture(scope="module")
def echo_host() -> Iterator[str]:
    proc, ends = spawn("echohost", "--listen", "127.0.0.1:0", "--framing", "len2")
    try:
        yield ends["listen"]
    finally:
        stop(proc)


@pytest.fixture
def proxy(echo_host: str) -> Iterator[tuple[str, FaultProxyControl]]:
    proc, ends = spawn(
        "faultproxy",
        "--listen", "127.0.0.1:0",
        "--upstream", echo_host,
        "--control", "127.0.0.1:0",
        "--framing", "len2",
    )  # fmt: skip
    assert ends["upstream"] == echo_host
    control = FaultProxyControl(ends["control"])
    try:
        yield ends["listen"], control
    finally:
        control.close()
        assert stop(proc) == 0


def connect(address: str, timeout: float = 2.0) -> socket.socket:
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(2, "big") + payload


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(frame(payload))
    header = recv_exact(sock, 2)
    return recv_exact(sock, int.from_bytes(header, "big")) if len(header) == 2 else header


def assert_closed(sock: socket.socket) -> None:
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(100) == b""


def test_pass_through_and_counters(proxy) -> None:
    listen, control = proxy
    with connect(listen) as sock:
        assert roundtrip(sock, b"0200 hello") == b"0200 hello"
        assert roundtrip(sock, b"x" * 3000) == b"x" * 3000
    status = control.status()
    assert status["connections"]["total"] == 1
    assert status["frames"] == {"to_host": 2, "to_terminal": 2}
    assert status["bytes"]["to_host"] == status["bytes"]["to_terminal"] == 2 + 10 + 2 + 3000


def test_delay_adds_latency(proxy) -> None:
    listen, control = proxy
    control.delay(300, direction="to_terminal")
    with connect(listen) as sock:
        t0 = time.monotonic()
        assert roundtrip(sock, b"slow") == b"slow"
        assert time.monotonic() - t0 >= 0.3
        control.clear()
        t0 = time.monotonic()
        assert roundtrip(sock, b"fast") == b"fast"
        assert time.monotonic() - t0 < 0.3
    assert control.status()["faults_applied"]["delay"] == 1


def test_drop_now_closes_terminal_connection(proxy) -> None:
    listen, control = proxy
    with connect(listen) as sock:
        assert roundtrip(sock, b"a") == b"a"
        assert control.drop()["dropped"] == 1
        assert_closed(sock)


def test_drop_next_frame(proxy) -> None:
    listen, control = proxy
    control.drop(when="next_frame", direction="to_host")
    with connect(listen) as sock:
        sock.sendall(frame(b"lost"))
        assert_closed(sock)
    assert control.status()["frames"]["to_host"] == 0


def test_blackhole_swallows(proxy) -> None:
    listen, control = proxy
    control.blackhole(True)
    with connect(listen, timeout=0.4) as sock:
        sock.sendall(frame(b"anyone?"))
        with pytest.raises(TimeoutError):
            sock.recv(10)
    status = control.status()
    assert status["faults_applied"]["blackhole"] == 1 and status["frames"]["to_host"] == 0
    control.blackhole(False)
    with connect(listen) as sock:
        assert roundtrip(sock, b"back") == b"back"


def test_truncate_next_alters_exactly_next_frame(proxy) -> None:
    listen, control = proxy
    control.truncate_next(5, direction="to_terminal")
    with connect(listen) as sock:
        sock.sendall(frame(b"0210 approved"))
        assert recv_exact(sock, 100) == frame(b"0210 approved")[:5]
    with connect(listen) as sock:
        assert roundtrip(sock, b"0210 approved") == b"0210 approved"
    assert control.status()["faults_applied"]["truncate"] == 1


def test_corrupt_next_alters_exactly_next_frame(proxy) -> None:
    listen, control = proxy
    control.corrupt_next("to_host", offset=-1, xor=0x01)
    with connect(listen) as sock:
        assert roundtrip(sock, b"MAC=ABCD") == b"MAC=ABCE"
        assert roundtrip(sock, b"MAC=ABCD") == b"MAC=ABCD"
    assert control.status()["faults_applied"]["corrupt"] == 1


def test_other_connection_keeps_working(proxy) -> None:
    listen, control = proxy
    with connect(listen) as healthy:
        assert roundtrip(healthy, b"one") == b"one"
        control.drop(when="next_frame", direction="to_host")
        with connect(listen) as broken:
            broken.sendall(frame(b"die"))
            assert_closed(broken)
        assert roundtrip(healthy, b"still here") == b"still here"
    with connect(listen) as fresh:
        assert roundtrip(fresh, b"new") == b"new"
    assert control.status()["connections"]["total"] == 3


def test_bad_command_refused_with_reason(proxy) -> None:
    _, control = proxy
    with pytest.raises(FaultProxyError, match="direction 'sideways'"):
        control.delay(10, direction="sideways")
    with pytest.raises(FaultProxyError, match="unknown cmd"):
        control.command({"cmd": "explode"})
    assert control.status()["ok"]


def test_upstream_down_closes_client_and_counts() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    proc, ends = spawn(
        "faultproxy", "--listen", "127.0.0.1:0", "--upstream", dead, "--control", "127.0.0.1:0"
    )
    try:
        with connect(ends["listen"]) as sock:
            assert_closed(sock)
        with FaultProxyControl(ends["control"]) as control:
            assert control.status()["connections"]["upstream_failures"] == 1
    finally:
        stop(proc)


def test_bad_arguments_announce_failure() -> None:
    proc, line = launch(
        "rig.bench.sim.faultproxy",
        "--listen", "nowhere",
        "--upstream", "127.0.0.1:1",
        "--control", "127.0.0.1:0",
    )  # fmt: skip
    try:
        proc.wait(timeout=10)
    finally:
        stop(proc)
    assert line["ready"] is False and "HOST:PORT" in line["error"]


def test_corrupt_helper_offsets() -> None:
    assert corrupt(b"\x00\x02ab", -1, 0xFF) == b"\x00\x02a\x9d"
    assert corrupt(b"\x00\x02ab", 2, 0x20) == b"\x00\x02Ab"
    assert corrupt(b"", 0, 1) == b""


def test_unframed_mode_relays_chunks() -> None:
    echo, echo_ends = spawn("echohost", "--listen", "127.0.0.1:0")
    try:
        proc, ends = spawn(
            "faultproxy",
            "--listen", "127.0.0.1:0",
            "--upstream", echo_ends["listen"],
            "--control", "127.0.0.1:0",
        )  # fmt: skip
        try:
            with FaultProxyControl(ends["control"]) as control, connect(ends["listen"]) as sock:
                sock.sendall(b"raw bytes")
                assert recv_exact(sock, 9) == b"raw bytes"
                control.corrupt_next("to_terminal", offset=0, xor=0x20)
                sock.sendall(b"abc")
                assert recv_exact(sock, 3) == b"Abc"
                assert control.status()["frames"] == {"to_host": 2, "to_terminal": 2}
        finally:
            assert stop(proc) == 0
    finally:
        assert stop(echo) == 0
