"""Host reliability: kill -9 under load and restart on the same data folder loses no approval
and posts nothing twice; fuzzed frames get RC 30 or a clean close while a good connection keeps
working; no clear PAN, PIN block or key in the log, the journal export or the SQLite files.

TEST MATERIAL ONLY: the card profiles' test PANs and the host's test keys.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rig.host.cli import host_test_key, init_data
from rig.host.control import HostProcess
from rig.host.loadgen import TerminalClient, chip_authorization, malformed_frames
from rig.iso8583 import messages
from rig.iso8583.messages import Iso8583Error
from rig.profiles import load_all

TID = "TERM0001"
PROFILE_ID = "visa-no-cvm-under-floor"
FUZZ_FRAMES = {"n": 0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("host-rel")
    init_data(folder, [TID])
    return folder


@pytest.fixture(scope="module")
def host(data):
    proc = HostProcess(data, "--listen", "127.0.0.1:0/len2", "--log-messages")
    yield proc
    proc.stop()


def _journal(data: Path) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "rig.host.cli", "journal", "--data", str(data), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_kill_9_under_load_loses_no_approval_and_posts_nothing_twice(tmp_path):
    folder = tmp_path / "host"
    init_data(folder, [TID])
    port = _free_port()
    listen = ("--listen", f"127.0.0.1:{port}/len2")
    host = HostProcess(folder, *listen)
    record = tmp_path / "exchanges.jsonl"
    load = subprocess.Popen(
        [sys.executable, "-m", "rig.host.cli", "load", "--target", f"127.0.0.1:{port}",
         "--connections", "8", "--duration", "3", "--warmup", "0.1", "--record", str(record),
         "--json"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        host.kill()  # SIGKILL mid-load: a power cut for the host
        time.sleep(0.3)
        host = HostProcess(folder, *listen)
        out, _ = load.communicate(timeout=30)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    summary = json.loads(out)
    assert summary["errors"], "the kill did not interrupt the load"
    exchanges = [json.loads(line) for line in record.read_text().splitlines()]
    approved = [e for e in exchanges if e["rc"] == "00"]
    assert len(approved) > 100
    try:
        rows = host.control().journal()
        keys = {(r["terminal_id"], r["stan"], r["transmission"], r["mti"]) for r in rows}
        assert len(keys) == len(rows), "a transaction was posted twice"
        by_key = {(r["terminal_id"], r["stan"]): r for r in rows}
        for e in approved:
            row = by_key.get((e["tid"], e["stan"]))
            assert row is not None, f"approval {e['tid']}/{e['stan']} is not in the journal"
            assert row["rc"] == "00"
            assert row["auth_id"] == e["auth_id"]
        before = len(rows)
        with TerminalClient(host.listener("len2"), "len2") as c:
            for e in approved:
                c.send_payload(bytes.fromhex(e["request"]))
            for e in approved:
                resp = messages.decode(c.receive(10).payload)
                assert (resp["41"], resp["11"]) == (e["tid"], e["stan"])
                assert (resp["39"], resp.get("38"), resp.get("37")) == (
                    e["rc"], e["auth_id"], e["rrn"],
                )  # fmt: skip
        with host.control() as ctl:
            assert len(ctl.journal()) == before, "a duplicate was posted again"
            assert ctl.status()["counters"]["duplicates"] == len(approved)
    finally:
        host.stop()


def _reaction(c: TerminalClient, payload: bytes) -> str:
    c.send_payload(payload)
    frame = c.receive(5)
    if frame is None:
        return "closed"
    rc = messages.decode(frame.payload).get("39")
    assert rc == "30", f"malformed frame answered {rc}"
    return "rc30"


class _Fuzz:
    def __init__(self, host) -> None:
        self.host = host
        self.bad = TerminalClient(host.listener("len2"), "len2")
        self.good = TerminalClient(host.listener("len2"), "len2")
        self.stan = 0

    def send(self, payload: bytes) -> str:
        FUZZ_FRAMES["n"] += 1
        outcome = _reaction(self.bad, payload)
        if outcome == "closed":
            self.bad.close()
            self.bad = TerminalClient(self.host.listener("len2"), "len2")
        return outcome

    def check_good(self) -> None:
        self.stan += 1
        resp = self.good.exchange(messages.echo_test(stan=self.stan, terminal_id=TID), 5)
        assert resp["39"] == "00"


@pytest.fixture(scope="module")
def fuzz(host):
    f = _Fuzz(host)
    yield f
    f.bad.close()
    f.good.close()


def _is_malformed(payload: bytes) -> bool:
    try:
        doc = messages.decode(payload)
    except Iso8583Error:
        return True
    return "11" not in doc or "41" not in doc or doc["t"] not in ("0100", "0200", "0800")


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=st.binary(min_size=1, max_size=300))
def test_fuzzed_random_frames(fuzz, payload):
    if not _is_malformed(payload):
        return
    fuzz.send(payload)
    fuzz.check_good()


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_mutations_of_a_valid_message(fuzz, data):
    template = messages.encode(messages.sign_on(stan=1, terminal_id=TID))
    cut = data.draw(st.integers(min_value=1, max_value=len(template)))
    tail = data.draw(st.binary(max_size=40))
    payload = template[:cut] + tail
    if not _is_malformed(payload):
        return
    fuzz.send(payload)
    fuzz.check_good()


def test_random_malformed_frames(fuzz):
    rng = random.Random(20261125)
    template = messages.encode(
        chip_authorization(load_all("cardprofiles")[PROFILE_ID], stan=1, terminal_id=TID)
    )
    outcomes = {"rc30": 0, "closed": 0}
    for i in range(1200):
        outcomes[fuzz.send(malformed_frames(rng, template))] += 1
        if i % 50 == 0:
            fuzz.check_good()
    assert outcomes["rc30"] > 0 and outcomes["closed"] > 0
    assert FUZZ_FRAMES["n"] >= 1200
    print(f"malformed frames sent in this module: {FUZZ_FRAMES['n']}")


def test_no_clear_pan_pin_block_or_key_anywhere(host, data):
    profiles = load_all("cardprofiles")
    profile = profiles[PROFILE_ID]
    app = profile.applications[0]
    pin_block = "0412AC89ABCDEF67"
    track2 = f"{app.pan}D{app.expiry:%y%m}2011234567890"
    doc = chip_authorization(profile, stan=424242, terminal_id=TID, builder=messages.purchase)
    doc.update({"35": track2, "52": pin_block})
    with TerminalClient(host.listener("len2"), "len2") as c:
        assert c.exchange(doc, 5)["t"] == "0210"
    with host.control() as ctl:
        export = json.dumps(ctl.journal())
    export += json.dumps(_journal(data))
    pans = {a.pan for p in profiles.values() for a in p.applications}
    secrets = [pin_block, host_test_key(f"tpk:{TID}").hex(), host_test_key("zmk").hex()]
    files = [p for p in data.rglob("*") if p.is_file() and p.suffix not in (".key", ".store")]
    assert any(p.name.startswith("journal.sqlite3") for p in files)
    assert any(p.name == "host.log" for p in files)
    blobs = {str(p): p.read_bytes() for p in files}
    blobs["export"] = export.encode()
    for name, blob in blobs.items():
        low = blob.lower()
        for pan in pans:
            assert pan.encode() not in blob, f"clear test PAN in {name}"
            assert bytes.fromhex(pan if len(pan) % 2 == 0 else pan + "f") not in blob, name
        for secret in secrets:
            assert secret.lower().encode() not in low, f"secret in {name}"
    store = (data / "keys.store").read_bytes().lower()
    for secret in secrets[1:]:
        assert secret.lower().encode() not in store  # keys are only encrypted at rest
