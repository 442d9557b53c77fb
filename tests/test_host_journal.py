"""Host journal: durability, group commit, duplicates (in flight too), reversals, totals, masking.

PANs here are TEST PANs from the project's card profiles (cardprofiles/*.yaml); track data and
PIN blocks are made-up test values.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.evidence.redact import luhn_ok
from rig.host.journal import (
    DuplicateError,
    Journal,
    JournalEntry,
    JournalError,
)
from rig.host.journal_writer import CHUNK, SCHEMA
from rig.iso8583 import messages as m

TEST_PAN = "5413339000000028"  # TEST PAN (cardprofiles/mc-debit-cda.yaml)
TEST_PAN2 = "5413339000000036"  # TEST PAN (cardprofiles/mc-dual-interface.yaml)
NOW = datetime(2025, 11, 25, 18, 47, 0, tzinfo=UTC)
TID = "TERM0001"
MID = "MERCHANT0000001"


def entry(
    stan: int,
    *,
    mti: str = "0200",
    pc: str = "000000",
    amount: int | None = 1000,
    rc: str = "00",
    batch: str | None = "000001",
    tid: str = TID,
    transmission: str = "1125184700",
    kind: str = "purchase",
) -> JournalEntry:
    return JournalEntry(
        terminal_id=tid,
        stan=f"{stan:06d}",
        transmission=transmission,
        mti=mti,
        processing_code=pc,
        amount=amount,
        currency="156",
        rc=rc,
        batch=batch,
        pan_masked="541333******0028",
        kind=kind,
        request={"t": mti, "11": f"{stan:06d}", "41": tid},
        response={"t": mti[:2] + "1" + mti[3:], "39": rc},
    )


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "data" / "journal.sqlite3").open()
    yield j
    j.close()


def test_append_is_durable_across_close_and_reopen(tmp_path):
    path = tmp_path / "journal.sqlite3"

    async def run():
        with Journal(path) as j:
            return [await j.append(entry(i)) for i in range(1, 11)]

    ids = asyncio.run(run())
    assert ids == list(range(1, 11))
    with Journal(path) as j:
        assert j.count() == 10
        got = j.get(ids[3])
        assert got is not None and got.stan == "000004" and got.amount == 1000
        assert got.request == {"t": "0200", "11": "000004", "41": TID}
        assert j.append_sync(entry(11)) == 11  # ids continue after reopen
    assert Journal(path).open().count() == 11


def test_journal_uses_wal_and_full_sync(journal):
    conn = journal._reader
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_batch_lookups_use_the_partial_index_and_old_journals_migrate(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        SCHEMA.split("DROP INDEX")[0]
        + "CREATE INDEX entries_batch ON entries (terminal_id, batch);"
    )
    old.close()
    with Journal(path) as j:
        names = {
            r[0] for r in j._reader.execute("SELECT name FROM sqlite_master WHERE type='index'")
        }
        assert "entries_batch" not in names and "entries_in_batch" in names
        plan = j._reader.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM entries WHERE terminal_id = ? AND batch = ?",
            ("T", "000001"),
        ).fetchall()
        assert "entries_in_batch" in str(plan)


def test_multi_row_insert_commits_a_large_batch_in_chunks(tmp_path):
    async def run(j: Journal) -> list[int]:
        return await asyncio.gather(
            *(j.append(entry(i, amount=i + 1)) for i in range(3 * CHUNK + 5))
        )

    with Journal(tmp_path / "j.sqlite3", group_window=0.05) as j:
        ids = asyncio.run(run(j))
        assert sorted(ids) == list(range(1, 3 * CHUNK + 6))
        assert j.stats["largest_batch"] > CHUNK  # one transaction, several INSERT statements
        assert [e["amount"] for e in j.export()] == [i + 1 for i in range(3 * CHUNK + 5)]


def test_64_concurrent_appends_share_transactions_and_stay_correct(journal):
    async def worker(w: int) -> list[tuple[int, str]]:
        out = []
        for i in range(10):
            e = entry(w * 100 + i, tid=f"T{w:07d}", amount=w * 1000 + i)
            out.append((await journal.append(e), e.terminal_id, e.amount))
        return out

    async def run():
        return await asyncio.gather(*(worker(w) for w in range(64)))

    results = [r for rs in asyncio.run(run()) for r in rs]
    assert len(results) == 640
    assert len({r[0] for r in results}) == 640
    assert journal.count() == 640
    for entry_id, tid, amount in results:
        got = journal.get(entry_id)
        assert got is not None and (got.terminal_id, got.amount) == (tid, amount)
    assert journal.stats["appends"] == 640 and journal.stats["rows"] == 640
    assert journal.stats["commits"] < 640 / 4  # group commit really batches
    assert journal.stats["largest_batch"] >= 16


def test_duplicate_detected_while_original_is_in_flight(tmp_path):
    async def run():
        with Journal(tmp_path / "j.sqlite3", group_window=0.3) as j:
            first = asyncio.ensure_future(j.append(entry(7)))
            await asyncio.sleep(0.01)  # submitted; the writer is still gathering its batch
            assert j.count() == 0
            dup = j.find_duplicate(TID, "000007", "1125184700", "0200")
            assert dup is not None and dup.id is not None and dup.rc == "00"
            with pytest.raises(DuplicateError) as exc:
                await j.append(entry(7, rc="05"))
            assert exc.value.original.id == dup.id
            await j.wait_committed(dup.id)
            assert first.done() and first.result() == dup.id
            assert j.count() == 1
            again = j.find_duplicate(TID, "000007", "1125184700", "02")
            assert again is not None and again.id == dup.id
            # 0401 repeats 0400 (same ISO class '04'); another DE7 or MTI class is new
            rev = await j.append(entry(8, mti="0400", kind="reversal"))
            assert j.find_duplicate(TID, "000008", "1125184700", "0401").id == rev
            assert j.find_duplicate(TID, "000007", "1125184701", "0200") is None
            assert j.find_duplicate(TID, "000007", "1125184700", "0100") is None
            assert j.find_duplicate("OTHER001", "000007", "1125184700", "0200") is None
            assert j.count() == 2

    asyncio.run(run())


def test_reversal_matching_is_idempotent(journal):
    async def run():
        orig = await journal.append(entry(21, amount=5000))
        await journal.append(entry(22, amount=700))
        found = journal.find_original(TID, "000021", "1125184700")
        assert found is not None and found.id == orig and not found.reversed
        assert journal.find_original(TID, "000021").id == orig
        assert journal.find_original(TID, "000099") is None  # reversal of an unknown txn
        assert journal.find_original(TID, "000021", "0101000000") is None
        rev1 = entry(31, mti="0400", kind="reversal", amount=5000)
        rev2 = entry(32, mti="0400", kind="reversal", amount=5000)
        a, b = await asyncio.gather(
            journal.mark_reversed(orig, rev1), journal.mark_reversed(orig, rev2)
        )
        assert a == b
        assert await journal.mark_reversed(orig, entry(33, mti="0400", kind="reversal")) == a
        after = journal.find_original(TID, "000021")
        assert after.reversed and after.reversed_by == a
        assert journal.get(a).original_id == orig
        assert journal.count() == 3  # two transactions, one reversal: nothing posted twice
        with pytest.raises(JournalError, match="no journal entry 999"):
            await journal.mark_reversed(999, entry(34, mti="0400", kind="reversal"))

    asyncio.run(run())


def test_reversal_of_in_flight_original(tmp_path):
    async def run():
        with Journal(tmp_path / "j.sqlite3", group_window=0.2) as j:
            task = asyncio.ensure_future(j.append(entry(41)))
            await asyncio.sleep(0.01)
            orig = j.find_original(TID, "000041")
            assert orig is not None and j.count() == 0
            rev = await j.mark_reversed(orig.id, entry(42, mti="0400", kind="reversal"))
            assert await task == orig.id
            assert j.get(orig.id).reversed and j.get(orig.id).reversed_by == rev

    asyncio.run(run())


def _batch_with_history(journal: Journal) -> dict[str, int]:
    async def run():
        ids = {
            "s1": await journal.append(entry(1, amount=1000)),
            "s2": await journal.append(entry(2, amount=2500)),
            "declined": await journal.append(entry(3, amount=9900, rc="51")),
            "reversed": await journal.append(entry(4, amount=4000)),
            "refund": await journal.append(entry(5, pc="200000", amount=300)),
            "advice": await journal.append(entry(6, mti="0220", amount=150, kind="advice")),
            "auth": await journal.append(entry(7, mti="0100", amount=8000, kind="auth")),
            "balance": await journal.append(entry(8, pc="310000", amount=None, kind="balance")),
            "other_batch": await journal.append(entry(9, batch="000002", amount=111)),
        }
        await journal.mark_reversed(ids["reversed"], entry(10, mti="0400", kind="reversal"))
        return ids

    return asyncio.run(run())


def test_totals_exclude_reversed_declined_and_non_postings(journal):
    _batch_with_history(journal)
    assert journal.totals(TID, "000001") == {
        "terminal_id": TID,
        "batch": "000001",
        "sale_count": 3,
        "sale_amount": 1000 + 2500 + 150,
        "refund_count": 1,
        "refund_amount": 300,
    }
    assert journal.totals(TID, "000002")["sale_amount"] == 111
    assert journal.totals("NOBODY01", "000001")["sale_count"] == 0


def test_compare_in_and_out_of_balance_lists_the_differing_transactions(journal):
    ids = _batch_with_history(journal)
    ok, diffs = journal.compare(TID, "000001", m.Totals(3, 3650, 1, 300))
    assert ok and diffs == []

    # the terminal still counts the sale the host reversed
    ok, diffs = journal.compare(TID, "000001", m.Totals(4, 7650, 1, 300))
    assert not ok
    figures = {d["field"]: d for d in diffs if d["type"] == "figure"}
    assert set(figures) == {"sale_count", "sale_amount"}
    assert figures["sale_amount"]["difference"] == -4000
    txns = [d for d in diffs if d["type"] == "transaction"]
    assert [t["id"] for t in txns] == [ids["reversed"]]
    assert txns[0]["reversed"] and "reversed or declined" in txns[0]["reason"]

    # the terminal lost a sale and the refund
    ok, diffs = journal.compare(
        TID, "000001", {"sale_count": 2, "sale_amount": 1150, "refund_count": 0}
    )
    assert not ok
    txns = {d["id"] for d in diffs if d["type"] == "transaction"}
    assert txns == {ids["s2"], ids["refund"]}


def _luhn_runs(text: str) -> list[str]:
    runs = re.findall(r"(?<![0-9])[0-9]{13,19}(?![0-9])", text)
    return [r for r in runs if r[0] != "0" and luhn_ok(r)]


def test_export_and_database_never_hold_a_clear_pan(tmp_path):
    folder = tmp_path / "data"
    track2 = TEST_PAN + "D28122010000000000"  # TEST track 2 equivalent
    pin_block = "041234FFFFFFFFFF"  # TEST PIN block
    req = m.purchase(
        amount=1234,
        stan=51,
        terminal_id=TID,
        merchant_id=MID,
        pan=TEST_PAN,
        now=NOW,
        track2=track2,
        pin_block=pin_block,
        icc={0x5A: bytes.fromhex(TEST_PAN2), 0x9F02: b"\0"},
    )
    resp = m.response_to(req, "00", auth_id="A12345", rrn="123456789012")
    careless = entry(52)  # a caller that forgot to mask: the journal masks anyway
    careless.request = dict(req, **{"11": "000052"})
    careless.pan_masked = TEST_PAN2

    async def run():
        with Journal.in_folder(folder) as j:
            await j.append(JournalEntry.from_messages(req, resp, kind="purchase"))
            await j.append(careless)
            return j.export(), j.export(masked=False)

    masked, unmasked = asyncio.run(run())
    assert masked[0]["pan_masked"] == "541333******0028"
    assert masked[0]["request"]["2"] == "541333******0028"
    assert masked[0]["amount"] == 1234 and masked[0]["rc"] == "00"
    assert masked[0]["auth_id"] == "A12345" and masked[0]["rrn"] == "123456789012"
    assert "35" not in masked[0]["request"] and "52" not in masked[0]["request"]
    assert masked[1]["pan_masked"] == "541333******0036"
    for export in (masked, unmasked):
        text = json.dumps(export)
        assert _luhn_runs(text) == []
        for secret in (TEST_PAN, TEST_PAN2, pin_block, "28122010000000000"):
            assert secret not in text
    files = sorted(folder.iterdir())
    assert files
    for f in files:
        raw = f.read_bytes()
        assert _luhn_runs(raw.decode("latin-1")) == []
        for secret in (TEST_PAN, TEST_PAN2, pin_block):
            assert secret.encode() not in raw
            assert bytes.fromhex(secret) not in raw  # BCD form


def test_bad_use_gives_journal_errors(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    with pytest.raises(JournalError, match="not open"):
        j.append_sync(entry(1))
    j.open()
    try:
        with pytest.raises(JournalError, match="4 digits"):
            j.append_sync(entry(1, mti="02"))
        bad = entry(2)
        bad.request = {"t": "0200", "x": object()}
        with pytest.raises(JournalError, match="not JSON"):
            j.append_sync(bad)
        assert j.append_sync(entry(3)) == 1
    finally:
        j.close()
    with pytest.raises(JournalError, match="group_window"):
        Journal(tmp_path / "k.sqlite3", group_window=-1)
    (tmp_path / "junk.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="cannot be opened"):
        Journal(tmp_path / "junk.sqlite3").open()


CRASH_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from rig.host.journal import Journal, JournalEntry

    async def worker(j, w):
        i = 0
        while True:
            i += 1
            e = JournalEntry(terminal_id=f"T{w:07d}", stan=f"{i:06d}", transmission="1125184700",
                             mti="0200", processing_code="000000", amount=i, rc="00",
                             kind="purchase", request={"t": "0200"}, response={"t": "0210"})
            entry_id = await j.append(e)
            sys.stdout.write(f"{entry_id} {w} {i}\\n")
            sys.stdout.flush()

    async def main():
        j = Journal(sys.argv[1], group_window=0.001).open()
        await asyncio.gather(*(worker(j, w) for w in range(16)))

    asyncio.run(main())
    """
)


def test_sigkill_loses_no_acknowledged_append(tmp_path):
    path = tmp_path / "journal.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, str(path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while len(lines) < 2000 and time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if not line:
                break
            lines.append(line)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        lines += proc.stdout.read().decode().splitlines(keepends=True)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    acked = [tuple(int(x) for x in ln.split()) for ln in lines if ln.endswith("\n")]
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 500, "writer did not get going"
    with Journal(path) as j:
        assert j.count() >= len(acked)
        for entry_id, w, i in acked:
            got = j.get(entry_id)
            assert got is not None, f"acknowledged entry {entry_id} lost"
            assert (got.terminal_id, got.amount) == (f"T{w:07d}", i)


# ---- the append path stores exactly what the generic masking would -------------------------


def _generic_row(e: JournalEntry) -> tuple:
    """The row as the obviously-correct path builds it: `mask` + redactor, `json.dumps`, the
    writer's column list (TEST data only)."""
    from dataclasses import fields

    from rig.evidence.redact import redact_text, redact_value
    from rig.host.journal_writer import INSERT

    docs = {
        "request": redact_value(dict(m.mask(e.request))),
        "response": redact_value(dict(m.mask(e.response))),
    }
    values = {f.name: getattr(e, f.name) for f in fields(JournalEntry)}
    values["pan_masked"] = redact_text(e.pan_masked) if e.pan_masked else e.pan_masked
    values["notes"] = redact_text(e.notes) if e.notes else e.notes
    values["mti_class"] = e.mti[:2]
    values["reversed"] = int(e.reversed)
    for name, doc in docs.items():
        values[name] = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    columns = INSERT[INSERT.index("(") + 1 : INSERT.index(")")].split(", ")
    return tuple(values[c] for c in columns)


def _loadgen_entries() -> list[JournalEntry]:
    """Chip authorisations and purchases as the load generator sends them, with the issuer's
    responses (approvals and declines), built into entries as the server does."""
    from rig.host.issuer import Issuer
    from rig.host.loadgen import chip_authorization
    from rig.host.rules import load_default
    from rig.profiles import load_all

    profiles = load_all("cardprofiles")
    issuer = Issuer(profiles, None, load_default())
    out = []
    chips = [p for p in profiles.values() if p.applications]
    for i, profile in enumerate(chips * 3):
        builder = (m.authorization, m.purchase, m.pre_authorization)[i % 3]
        amount = (100, 123456, 999_999_999)[i % 3]
        req = chip_authorization(profile, stan=i + 1, terminal_id=TID, amount=amount,
                                 builder=builder, atc=i + 1)  # fmt: skip
        decision = issuer.decide(req)
        resp = m.response_to(req, decision.rc)
        resp.update(decision.fields)
        resp["39"] = decision.rc
        e = JournalEntry(
            terminal_id=req["41"], stan=req["11"], transmission=req["7"], mti=req["t"],
            processing_code=req["3"], amount=int(req["4"]), currency=req["49"],
            rc=resp["39"], auth_id=resp.get("38"), rrn=resp.get("37"),
            pan_masked=m.mask_pan(req["2"]), kind=decision.kind, request=req, response=resp,
            notes="; ".join(decision.notes) or None,
        )  # fmt: skip
        out.append(e)
    return out


def test_rows_of_loadgen_requests_equal_the_generic_masking(tmp_path):
    entries = _loadgen_entries()
    assert {e.rc for e in entries} > {"00"} and len(entries) > 40
    j = Journal(tmp_path / "j.sqlite3")
    for e in entries:
        prepared, req_json, resp_json = j._prepare(e)
        assert j._row(prepared, req_json, resp_json) == _generic_row(e)
        assert prepared is not e and prepared.request["2"] == m.mask_pan(e.request["2"])
    with j.open():
        ids = [j.append_sync(e) for e in entries]
        stored = j._query("SELECT request, response, notes FROM entries ORDER BY id")
    assert ids == list(range(1, len(entries) + 1))
    assert all(e.notes for e in entries), "the issuer explains every decision"
    for e, row in zip(entries, stored, strict=True):
        assert tuple(row) == _generic_row(e)[-3:]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.none(), st.text(max_size=24), st.from_regex(r"[0-9*]{10,24}", fullmatch=True)),
    st.sampled_from(["0100", "0200", "0400"]),
    st.booleans(),
)
def test_prepared_row_equals_the_generic_one(pan_masked, mti, reversed_):
    e = entry(7, mti=mti)
    e.pan_masked, e.reversed = pan_masked, reversed_
    e.request = m.purchase(amount=5, stan=7, terminal_id=TID, merchant_id=MID, pan=TEST_PAN,
                           now=NOW, track2=TEST_PAN + "D2812201")  # fmt: skip
    j = Journal("unused.sqlite3")
    prepared, req_json, resp_json = j._prepare(e)
    assert j._row(prepared, req_json, resp_json) == _generic_row(e)
    assert e.request["2"] == TEST_PAN and e.id is None  # the caller's entry is left alone


def test_notes_are_kept_redacted_and_older_journals_get_the_column(tmp_path):
    import sqlite3

    from rig.host.journal_writer import SCHEMA

    path = tmp_path / "old.sqlite3"
    old_schema = SCHEMA.replace(",\n    notes TEXT\n", "\n")
    assert "notes" not in old_schema
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(old_schema)
    conn.execute(
        "INSERT INTO entries (id, received_at, terminal_id, stan, transmission, mti, mti_class, "
        "rc, kind, request, response) VALUES (1, 0, ?, '000001', '1125184700', '0200', '02', "
        "'00', 'purchase', '{}', '{}')",
        (TID,),
    )
    conn.commit()
    conn.close()
    e = entry(2)
    e.notes = f"wrong PIN; 2 tries left; card {TEST_PAN} seen"  # TEST PAN
    with Journal(path).open() as j:
        j.append_sync(e)
        rows = {r["id"]: r for r in j.export(masked=False)}
    assert rows[1]["notes"] is None
    assert rows[2]["notes"] == f"wrong PIN; 2 tries left; card {m.mask_pan(TEST_PAN)} seen"
    stored = b"".join(f.read_bytes() for f in tmp_path.glob("old.sqlite3*"))
    assert b"notes" in stored and TEST_PAN.encode() not in stored
    with pytest.raises(JournalError, match="notes"):
        bad = entry(3)
        bad.notes = ["not", "a", "string"]
        Journal(tmp_path / "j.sqlite3")._prepare(bad)
