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

from rig.host.cli import TEST_BDK_AES, TEST_BDK_TDES, host_test_key, init_data
from rig.host.control import HostProcess
from rig.host.loadgen import TerminalClient, chip_authorization, malformed_frames
from rig.iso8583 import messages
from rig.iso8583.messages import Iso8583Error
from rig.profiles import issuer_keys, load_all

TID = "TERM0001"
PROFILE_ID = "visa-no-cvm-under-floor"
FUZZ_FRAMES = {"n": 0}
KEY_TYPES = ("PIN", "MAC", "DATA")


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
        killed_at = time.time()
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
        _reversals_after_restart(host, folder, approved, rows, killed_at)
    finally:
        host.stop()


def _reversals_after_restart(
    host: HostProcess, folder: Path, approved: list[dict], rows: list[dict], killed_at: float
) -> None:
    """On the restarted host: a reversal of a STAN never journaled (answered 00 and journaled
    with no original, docs/host-rules.md) and of an approval received before the kill (00, and
    the original is then marked reversed in the `rig host journal --json` export)."""
    row_of = {(r["terminal_id"], r["stan"]): r for r in rows}
    early = [e for e in approved if row_of[(e["tid"], e["stan"])]["received_at"] < killed_at]
    assert early, "no approval was journaled before the kill"
    target = early[0]
    tid = target["tid"]
    original = messages.decode(bytes.fromhex(target["request"]))
    used = {r["stan"] for r in rows if r["terminal_id"] == tid}
    free = (f"{s:06d}" for s in range(999_999, 0, -1) if f"{s:06d}" not in used)
    never, urev_stan, rev_stan = next(free), next(free), next(free)
    unknown = messages.reversal(dict(original, **{"11": never}), stan=urev_stan, reason="98")
    known = messages.reversal(original, stan=rev_stan, reason="98")
    with TerminalClient(host.listener("len2"), "len2") as c:
        first = c.exchange(unknown, 10)
        answer = c.exchange(known, 10)
    assert (first["t"], first["39"]) == ("0410", "00"), "unknown original: 00 (docs/host-rules.md)"
    assert (answer["t"], answer["39"]) == ("0410", "00")
    export = {(r["terminal_id"], r["stan"], r["mti"]): r for r in _journal(folder)}
    assert not [k for k in export if k[:2] == (tid, never)], "the unknown original was journaled"
    unknown_row = export[(tid, urev_stan, "0400")]
    assert (unknown_row["rc"], unknown_row["original_id"]) == ("00", None)
    original_row = export[(tid, target["stan"], original["t"])]
    reversal_row = export[(tid, rev_stan, "0400")]
    assert original_row["reversed"] is True
    assert reversal_row["original_id"] == original_row["id"]
    assert reversal_row["rc"] == "00"


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


def _key_exchange(c: TerminalClient, key_type: str, stan: int) -> bytes:
    """Ask the host for a new key; the clear key unwrapped from the TR-31 block under the ZMK."""
    from rig.crypto.tr31 import unwrap

    resp = c.exchange(messages.key_exchange(key_type=key_type, stan=stan, terminal_id=TID), 5)
    assert resp["39"] == "00", resp
    _, key = unwrap(host_test_key("zmk"), messages.private_decode(resp["48"])["K2"])
    return key


def _hex_forms(secret: bytes | str) -> list[bytes]:
    """A key or PIN block as it could leak: upper- and lower-case hex, and raw bytes."""
    text = secret.hex() if isinstance(secret, bytes) else secret
    return [text.upper().encode(), text.lower().encode(), bytes.fromhex(text)]


def test_no_clear_pan_pin_block_or_key_anywhere(host, data):
    profiles = load_all("cardprofiles")
    profile = profiles[PROFILE_ID]
    app = profile.applications[0]
    pin_block = "0412AC89ABCDEF67"
    track2 = f"{app.pan}D{app.expiry:%y%m}2011234567890"
    with TerminalClient(host.listener("len2"), "len2") as c:
        exchanged = [_key_exchange(c, kind, 424240 + i) for i, kind in enumerate(KEY_TYPES)]
        doc = chip_authorization(profile, stan=424242, terminal_id=TID, builder=messages.purchase)
        doc.update({"35": track2, "52": pin_block})
        assert c.exchange(doc, 5)["t"] == "0210"
    with host.control() as ctl:
        export = json.dumps(ctl.journal())
    export += json.dumps(_journal(data))
    pans = {a.pan for p in profiles.values() for a in p.applications}
    keys = {
        "PIN block": pin_block,
        "TPK": host_test_key(f"tpk:{TID}"),
        "MAC key": host_test_key(f"tak:{TID}"),
        "ZMK": host_test_key("zmk"),
        "TDES BDK": bytes.fromhex(TEST_BDK_TDES),
        "AES BDK": bytes.fromhex(TEST_BDK_AES),
    }
    keys.update({f"exchanged {k} key": key for k, key in zip(KEY_TYPES, exchanged, strict=True)})
    for k in issuer_keys(profile):
        for label in ("imk_ac", "imk_smi", "imk_smc"):
            keys[f"{k.aid} {label}"] = getattr(k, label)
    files = [p for p in data.rglob("*") if p.is_file() and p.suffix not in (".key", ".store")]
    assert any(p.name.startswith("journal.sqlite3") for p in files)
    assert any(p.name == "host.log" for p in files)
    blobs = {str(p): p.read_bytes() for p in files}
    blobs["export"] = export.encode()
    for name, blob in blobs.items():
        for pan in pans:
            assert pan.encode() not in blob, f"clear test PAN in {name}"
            assert bytes.fromhex(pan if len(pan) % 2 == 0 else pan + "f") not in blob, name
        for what, secret in keys.items():
            for form in _hex_forms(secret):
                assert form not in blob, f"{what} in {name}"
    store = (data / "keys.store").read_bytes()
    for what, secret in keys.items():
        if what != "PIN block":
            assert not any(f in store for f in _hex_forms(secret)), f"{what} clear at rest"
