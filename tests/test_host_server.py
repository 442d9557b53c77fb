"""The reference host's server over real TCP sockets: every framing, duplicates, reversals,
keep-alives, frame limits, malformed messages, idle timeout, TLS and the control API.

The host runs as its own process (`python -m rig.host.cli serve`); clients are plain sockets.
TEST MATERIAL ONLY: the card profiles' test PANs and test keys.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rig.crypto import arqc
from rig.host.cli import init_data
from rig.host.control import ControlError, HostProcess
from rig.host.loadgen import TerminalClient, chip_authorization
from rig.iso8583 import messages
from rig.iso8583.framing import FRAMINGS, Tpdu
from rig.iso8583.messages import Iso8583Error
from rig.profiles import issuer_keys, load_all

FRAMING_NAMES = list(FRAMINGS)
PROFILE_ID = "visa-no-cvm-under-floor"  # TEST profile, CVN 10, ARPC method 1
TID = "TERM0001"
MID = "MERCHANT0000001"


@pytest.fixture(scope="module")
def profiles():
    return load_all("cardprofiles")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    data = tmp_path_factory.mktemp("host")
    init_data(data, [TID, "TERM0002"])
    listens = [f"127.0.0.1:0/{name}" for name in FRAMING_NAMES] + ["127.0.0.1:0/len2/tls"]
    args = [a for item in listens for a in ("--listen", item)]
    proc = HostProcess(data, *args, "--idle-timeout", "1.5", "--max-frame", "2048")
    proc.data = data
    yield proc
    assert proc.stop() == 0


def client(host, framing="len2", **kw) -> TerminalClient:
    return TerminalClient(host.listener(framing, tls="cafile" in kw), framing, **kw)


_stan = iter(range(100, 999_999))


def next_stan() -> int:
    return next(_stan)


@pytest.mark.parametrize("framing", FRAMING_NAMES)
def test_sign_on_in_each_framing(host, framing):
    stan = next_stan()
    with client(host, framing) as c:
        c.send_payload(messages.encode(messages.sign_on(stan=stan, terminal_id=TID)))
        frame = c.receive(5)
    resp = messages.decode(frame.payload)
    assert resp["t"] == "0810"
    assert resp["39"] == "00"
    assert resp["11"] == f"{stan:06d}"
    assert resp["70"] == "001"
    if framing == "len2-tpdu":
        assert frame.tpdu == Tpdu(0, 1)  # the request went out as 60 0001 0000: swapped back
    else:
        assert frame.tpdu is None


def test_purchase_approved_with_valid_arpc(host, profiles):
    profile = profiles[PROFILE_ID]
    doc = chip_authorization(
        profile, stan=next_stan(), terminal_id=TID, builder=messages.purchase, merchant_id=MID
    )
    with client(host) as c:
        resp = c.exchange(doc, 5)
    assert resp["t"] == "0210"
    assert resp["39"] == "00", resp
    assert len(resp["38"]) == 6
    tags = messages.de55_decode(resp["55"])
    icc = messages.de55_decode(doc["55"])
    keys = issuer_keys(profile)[0]
    mk = arqc.icc_master_key(keys.cvn, keys.imk_ac, keys.pan, keys.psn)
    # EMV Book 2 8.2.1 ARPC method 1 over the ARQC and the ARC ("00" in ASCII)
    expected = arqc.generate_arpc(keys.cvn, mk, icc[0x9F26], icc[0x9F36], arc=b"00")
    assert tags[0x91][:8] == expected


def test_wrong_arqc_is_declined(host, profiles):
    doc = chip_authorization(profiles[PROFILE_ID], stan=next_stan(), terminal_id=TID)
    icc = messages.de55_decode(doc["55"])
    icc[0x9F26] = bytes(8)
    doc["55"] = messages.de55_encode(icc)
    with client(host) as c:
        resp = c.exchange(doc, 5)
    assert resp["39"] != "00"
    [row] = _journal_for(host, int(doc["11"]))
    assert row["rc"] == resp["39"] and "ARQC failed" in row["notes"], "the journal says why"


def test_journal_notes_say_why_an_approval_was_given(host, profiles):
    doc = chip_authorization(profiles[PROFILE_ID], stan=next_stan(), terminal_id=TID)
    with client(host) as c:
        assert c.exchange(doc, 5)["39"] == "00"
    [row] = _journal_for(host, int(doc["11"]))
    assert "ARQC verified" in row["notes"] and "ARPC method" in row["notes"]


def _journal_for(host, stan: int) -> list[dict]:
    with host.control() as ctl:
        rows = ctl.journal()
    return [r for r in rows if r["stan"] == f"{stan:06d}"]


def test_duplicate_gets_the_original_response_and_is_not_posted_twice(host, profiles):
    stan = next_stan()
    doc = chip_authorization(
        profiles[PROFILE_ID], stan=stan, terminal_id=TID, builder=messages.purchase, merchant_id=MID
    )
    with host.control() as ctl:
        before = ctl.status()["counters"].get("duplicates", 0)
    with client(host) as c:
        first = c.exchange(doc, 5)
    with client(host) as c:
        second = c.exchange(doc, 5)
    assert first["39"] == "00"
    for key in ("39", "38", "37", "11", "55"):
        assert second[key] == first[key]
    rows = _journal_for(host, stan)
    assert len(rows) == 1
    with host.control() as ctl:
        assert ctl.status()["counters"]["duplicates"] == before + 1


def test_reversal_of_known_and_unknown_transactions(host, profiles):
    stan = next_stan()
    sale = chip_authorization(
        profiles[PROFILE_ID], stan=stan, terminal_id=TID, builder=messages.purchase, merchant_id=MID
    )
    with client(host) as c:
        assert c.exchange(sale, 5)["39"] == "00"
        rev = messages.reversal(sale, stan=next_stan(), reason="98")
        answer = c.exchange(rev, 5)
        assert answer["t"] == "0410"
        assert answer["39"] == "00"
        again = c.exchange(messages.reversal_repeat(rev), 5)  # 0401 repeat: same answer
        assert again["39"] == "00"
        unknown = dict(sale, **{"11": "999998"})
        urev = messages.reversal(unknown, stan=next_stan(), reason="98")
        assert c.exchange(urev, 5)["39"] == "00"  # docs/host-rules.md: unknown original -> 00
    original = _journal_for(host, stan)
    assert len(original) == 1
    assert original[0]["reversed"] is True
    reversal_rows = _journal_for(host, int(rev["11"]))
    assert [r["mti"] for r in reversal_rows] == ["0400"]  # the 0401 posted nothing
    assert reversal_rows[0]["original_id"] == original[0]["id"]
    unknown_rows = _journal_for(host, int(urev["11"]))
    assert unknown_rows[0]["original_id"] is None


def test_keepalive_is_ignored(host):
    stan = next_stan()
    with host.control() as ctl:
        before = ctl.status()["counters"].get("keepalives", 0)
    with client(host, "ascii4") as c:
        c.send_raw(b"0000")
        c.send_raw(b"0000")
        c.send_payload(messages.encode(messages.echo_test(stan=stan, terminal_id=TID)))
        resp = messages.decode(c.receive(5).payload)
    assert resp["t"] == "0810"
    assert resp["11"] == f"{stan:06d}"
    with host.control() as ctl:
        assert ctl.status()["counters"]["keepalives"] == before + 2


def test_frame_over_the_limit_closes_only_that_connection(host):
    with client(host) as good, client(host) as bad:
        bad.send_raw((4000).to_bytes(2, "big") + b"\x02\x00")
        assert bad.receive(5) is None  # closed cleanly, nothing answered
        resp = good.exchange(messages.sign_on(stan=next_stan(), terminal_id=TID), 5)
        assert resp["39"] == "00"


def test_malformed_message_gets_rc30_when_mti_readable(host):
    stan = next_stan()
    good_doc = messages.sign_on(stan=stan, terminal_id=TID)
    raw = messages.encode(good_doc)
    with client(host) as good, client(host) as bad:
        bad.send_payload(raw[:-3])  # DE41 cut short: MTI, DE7 and DE11 readable
        resp = messages.decode(bad.receive(5).payload)
        assert resp["t"] == "0810"
        assert resp["39"] == "30"
        assert resp["11"] == f"{stan:06d}"
        bad.send_payload(b"\xff\xfe\x00garbage")  # MTI unreadable: clean close
        assert bad.receive(5) is None
        assert good.exchange(good_doc | {"11": f"{next_stan():06d}"}, 5)["39"] == "00"


def test_idle_connection_is_closed(host):
    with client(host) as c:
        start = time.monotonic()
        assert c.receive(6) is None
        assert 1.0 <= time.monotonic() - start < 5


def test_tls_listener_with_the_certificate_from_init(host):
    cafile = Path(host.data) / "tls" / "host.crt"
    with client(host, "len2", cafile=cafile) as c:
        assert isinstance(c.sock, ssl.SSLSocket)
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        resp = c.exchange(messages.sign_on(stan=next_stan(), terminal_id=TID), 5)
    assert resp["39"] == "00"
    # a client that does not trust the certificate is refused
    with pytest.raises(ssl.SSLCertVerificationError):
        TerminalClient(host.listener("len2", tls=True), "len2", cafile=_other_ca(host))
    # plain TCP to the TLS port: the handshake fails; the host keeps serving
    with socket.create_connection(host.listener("len2", tls=True), timeout=5) as s:
        s.sendall(b"\x00\x10" + bytes(16))
        try:
            reply = s.recv(1024)
        except ConnectionResetError:
            reply = b""
        assert reply == b"" or reply[0] == 0x15  # closed, or a TLS alert record
    with client(host, "len2", cafile=cafile) as c:
        assert c.exchange(messages.echo_test(stan=next_stan(), terminal_id=TID), 5)["39"] == "00"


def _other_ca(host) -> Path:
    from rig.host.tls import make_self_signed

    cert, _ = make_self_signed(Path(host.data) / "other-ca")
    return cert


def test_control_force_pause_and_journal(host, profiles):
    profile = profiles[PROFILE_ID]

    def purchase():
        return chip_authorization(
            profile, stan=next_stan(), terminal_id=TID, builder=messages.purchase, merchant_id=MID
        )

    with host.control() as ctl, client(host) as c:
        ctl.force("05")
        assert c.exchange(purchase(), 5)["39"] == "05"
        assert c.exchange(purchase(), 5)["39"] == "00"  # only the next one
        ctl.force(no_answer=True)
        with pytest.raises(TimeoutError):
            c.exchange(purchase(), 0.5)
        ctl.pause()
        assert ctl.status()["paused"] is True
        with pytest.raises(TimeoutError):
            c.exchange(purchase(), 0.5)
        ctl.resume()
        assert c.exchange(purchase(), 5)["39"] == "00"
        ctl.force("51", count=3)
        ctl.clear()
        assert c.exchange(purchase(), 5)["39"] == "00"
        rows = ctl.journal(limit=3)
        assert len(rows) == 3
        pan = profile.applications[0].pan
        masked = pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
        assert all(r["pan_masked"] == masked for r in rows)
        assert pan not in repr(rows)
        with pytest.raises(ControlError, match="rc"):
            ctl.force("5")
        with pytest.raises(ControlError, match="unknown command"):
            ctl.call("reboot")


def _purchase(profile, amount: int = 100) -> dict[str, str]:
    """A chip purchase of `amount` with a valid ARQC from the profile's TEST issuer keys."""
    return chip_authorization(
        profile,
        stan=next_stan(),
        terminal_id=TID,
        amount=amount,
        builder=messages.purchase,
        merchant_id=MID,
    )


def test_forced_drop_connection_closes_only_that_connection(host, profiles):
    profile = profiles[PROFILE_ID]
    dropped = _purchase(profile)
    with host.control() as ctl, client(host) as victim, client(host) as other:
        before = ctl.status()["counters"].get("dropped", 0)
        assert other.exchange(_purchase(profile), 5)["39"] == "00"
        ctl.force(drop_connection=True)
        victim.send_payload(messages.encode(dropped))
        assert victim.receive(5) is None, "the connection is closed with no answer"
        assert other.exchange(_purchase(profile), 5)["39"] == "00"
        assert ctl.status()["counters"]["dropped"] == before + 1
    with client(host) as c:
        assert c.exchange(_purchase(profile), 5)["39"] == "00"
    rows = _journal_for(host, int(dropped["11"]))
    assert [r["rc"] for r in rows] == ["00"], "journaled before the action (docs/host.md)"


def test_forced_malformed_answer_cannot_be_decoded(host, profiles):
    profile = profiles[PROFILE_ID]
    with host.control() as ctl, client(host) as c:
        ctl.force(malformed=True)
        c.send_payload(messages.encode(_purchase(profile)))
        frame = c.receive(5)
        assert frame is not None and frame.payload, "a framed answer arrives"
        with pytest.raises(Iso8583Error):
            messages.decode(frame.payload)
        assert c.exchange(_purchase(profile), 5)["39"] == "00", "the connection keeps working"
    with client(host) as c:
        assert c.exchange(messages.echo_test(stan=next_stan(), terminal_id=TID), 5)["39"] == "00"


def test_forced_delay_answers_late(host, profiles):
    profile = profiles[PROFILE_ID]
    with host.control() as ctl, client(host) as c:
        ctl.force(delay_ms=300)
        start = time.monotonic()
        resp = c.exchange(_purchase(profile), 5)
        took = time.monotonic() - start
    assert resp["39"] == "00"
    assert 0.3 <= took < 3, took


RIG_HOST = [sys.executable, "-m", "rig.cli", "host"]


def test_serve_with_a_rule_file(tmp_path, profiles):
    """`rig host serve --rules FILE`: amount and PAN prefix rules give their codes over the
    socket, and the file replaces the default amount triggers."""
    data = tmp_path / "d"
    init_data(data, [TID])
    visa, other = profiles[PROFILE_ID], profiles["mc-debit-cda"]
    prefix = visa.applications[0].pan[:8]
    assert not other.applications[0].pan.startswith(prefix)
    rules = tmp_path / "lab-rules.yaml"
    rules.write_text(
        "version: 1\n"
        "rules:\n"
        "  - name: amount 12.34 -> 65\n"
        "    match: {mti: ['0200'], amount: 1234}\n"
        "    action: {rc: '65'}\n"
        "  - name: test visa range -> 62\n"
        f"    match: {{pan_prefix: '{prefix}'}}\n"
        "    action: {rc: '62'}\n"
    )
    with (
        HostProcess(data, "--listen", "127.0.0.1:0", "--rules", str(rules), command=RIG_HOST) as h,
        TerminalClient(h.listener("len2"), "len2") as c,
    ):
        assert c.exchange(_purchase(other, 1234), 5)["39"] == "65"
        assert c.exchange(_purchase(visa), 5)["39"] == "62"
        assert c.exchange(_purchase(other, 151), 5)["39"] == "00", "no default trigger"
        assert c.exchange(_purchase(other), 5)["39"] == "00"


def test_serve_with_a_bad_rule_file_gives_one_clear_error(tmp_path):
    data = tmp_path / "d"
    init_data(data, [TID])
    bad = tmp_path / "bad-rules.yaml"
    bad.write_text(
        "version: 1\nrules:\n  - name: bare mti\n    match: {mti: [200]}\n    action: {rc: '05'}\n"
    )
    out = subprocess.run(
        [*RIG_HOST, "serve", "--data", str(data), "--listen", "127.0.0.1:0", "--rules", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr + out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: {bad}: rules[0].match.mti")
    assert "'0200'" in lines[0], "the error says how to fix it"


def test_duplicate_key_exchange_replays_the_original_tr31_block(host):
    """The stored 0810 keeps DE48 K2 (a TR-31 block under the ZMK, never a clear key), so the
    duplicate gets the same block and the terminal unwraps the key the host stored."""
    from rig.crypto.keys import kcv
    from rig.crypto.tr31 import unwrap
    from rig.host.cli import host_test_key

    stan = next_stan()
    doc = messages.key_exchange(key_type="DATA", stan=stan, terminal_id="TERM0002")
    with client(host) as c:
        first = c.exchange(doc, 5)
    with client(host) as c:
        second = c.exchange(doc, 5)
    assert first["39"] == "00" and second["39"] == "00"
    sub1 = messages.private_decode(first["48"])
    sub2 = messages.private_decode(second["48"])
    assert sub2["K2"] == sub1["K2"] and sub2["K2"] != "[removed]"
    _, key = unwrap(host_test_key("zmk"), sub2["K2"])
    assert kcv(key).hex().upper() == sub1["K3"] == sub2["K3"]
    rows = _journal_for(host, stan)
    assert len(rows) == 1, "the duplicate key exchange is not journaled again"
    stored = json.dumps(rows)
    assert sub1["K2"] in stored, "the wrapped block is kept for replays"
    assert key.hex().upper() not in stored.upper(), "the clear key never enters the journal"


def test_pipelined_requests_are_answered_in_order(host, profiles):
    """Frames sent back to back on one connection (so several arrive in one read) are answered
    in request order even when the first is held by a rule delay and others take other paths:
    a plain purchase, a duplicate, a format error, a reversal. Then a single request per read
    again (the callback-answered path) right behind an in-flight one."""
    profile = profiles[PROFILE_ID]

    def purchase(stan: int) -> dict[str, str]:
        return chip_authorization(
            profile, stan=stan, terminal_id=TID, builder=messages.purchase, merchant_id=MID
        )

    s1, s2, s3 = next_stan(), next_stan(), next_stan()
    first, second = purchase(s1), purchase(s2)
    rev = messages.reversal(second, stan=next_stan(), reason="98")
    bad = messages.encode(messages.sign_on(stan=next_stan(), terminal_id=TID))[:-3]
    burst = [messages.encode(first), messages.encode(second), messages.encode(first), bad]
    burst += [messages.encode(rev), messages.encode(purchase(s3))]
    with host.control() as ctl, client(host) as c:
        ctl.force(delay_ms=300, mti="0200")
        c.send_raw(b"".join(c.framing.frame(p, c.tpdu) for p in burst))
        answers = [messages.decode(c.receive(5).payload) for _ in burst]
        assert [(a["t"], a["11"]) for a in answers] == [
            ("0210", f"{s1:06d}"),
            ("0210", f"{s2:06d}"),
            ("0210", f"{s1:06d}"),
            ("0810", bad_stan(bad)),
            ("0410", rev["11"]),
            ("0210", f"{s3:06d}"),
        ]
        assert [a["39"] for a in answers] == ["00", "00", "00", "30", "00", "00"]
        assert answers[2]["38"] == answers[0]["38"]  # the duplicate replays the original
        s4, s5 = next_stan(), next_stan()
        bad2 = messages.encode(messages.sign_on(stan=next_stan(), terminal_id=TID))[:-3]
        c.send_payload(messages.encode(purchase(s4)))
        time.sleep(0.002)  # its own read: answered from the journal's commit callback
        c.send_payload(bad2)  # a format error is answered at once, but not before s4's answer
        c.send_payload(messages.encode(purchase(s5)))
        tail = [messages.decode(c.receive(5).payload)["11"] for _ in range(3)]
        assert tail == [f"{s4:06d}", bad_stan(bad2), f"{s5:06d}"]
    assert _journal_for(host, s2)[0]["reversed"] is True
    assert len(_journal_for(host, s1)) == 1


def bad_stan(raw: bytes) -> str:
    """DE11 of a sign-on whose DE41 was cut short (readable by the host's partial decode)."""
    from rig.host.server import _partial

    return _partial(raw)["11"]
