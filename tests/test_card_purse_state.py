"""The purse card's persistent side: balance, counters, log, PIN tries and the last proof kept in
`DIR/<profile id>.json` across serves, torn transactions abandoned, bad state files refused with
the file, the key and the fix, and save + reload at random points equal to an uninterrupted run.

Driven through `PurseCardApplication.process` (no PC/SC). TEST keys and PINs only.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_card_purse_app import (
    DATE,
    GET_BALANCE,
    SEQ,
    TID,
    TIME,
    Randoms,
    apdu,
    credit,
    debit,
    init_load,
    init_purchase,
    ok,
    prove,
    read_record,
    send,
    verify,
)

from rig.card.emv_state import CardStateError
from rig.card.host import CardHostError, build, purse_application
from rig.card.purse_app import LOG_RECORDS, PurseCardApplication
from rig.card.purse_state import PurseState, persist
from rig.prepaid import purse as p
from rig.prepaid.purse import Purse, PurseKeys
from rig.profiles import CardProfile, load_profile

PROFILE_PATH = Path(__file__).parent.parent / "cardprofiles" / "prepaid-purse.yaml"
PROFILE = load_profile(PROFILE_PATH)
SECTION = PROFILE.purse
assert SECTION is not None
ASN = bytes.fromhex(SECTION.asn)
SELECT = apdu(0x00, 0xA4, 0x04, 0x00, bytes.fromhex(SECTION.aid), 0x00)
TEST_PIN = "1234"  # TEST PIN
PIN_PROFILE = PROFILE.model_copy(
    update={"risk": PROFILE.risk.model_copy(update={"pin": TEST_PIN, "pin_try_limit": 3})}
)


class Host:
    """Issuer host / SAM side with the profile's master keys; reads the random from the card."""

    def __init__(self, profile: CardProfile = PROFILE) -> None:
        keys = profile.purse.keys  # type: ignore[union-attr]
        self.dlk = p.diversify(bytes.fromhex(keys.mlk), ASN)
        self.dpk = p.diversify(bytes.fromhex(keys.mpk), ASN)
        self.dtk = p.diversify(bytes.fromhex(keys.mtk), ASN)

    def init_load(self, card: PurseCardApplication, amount: int) -> tuple[int, bytes]:
        """INITIALIZE FOR LOAD; check MAC1 under SESLK(counter); return (counter, MAC2 to send)."""
        resp = ok(card, init_load(amount))
        balance, counter = int.from_bytes(resp[0:4], "big"), int.from_bytes(resp[4:6], "big")
        seslk = p.load_session_key(self.dlk, resp[8:12], counter)
        assert resp[12:16] == p.load_mac1(seslk, balance, amount, TID)
        return counter, p.load_mac2(seslk, amount, TID, DATE, TIME)

    def load(self, card: PurseCardApplication, amount: int) -> int:
        counter, mac2 = self.init_load(card, amount)
        ok(card, credit(mac2))
        return counter

    def purchase(self, card: PurseCardApplication, amount: int) -> tuple[int, bytes]:
        """A purchase; return (offline counter, SESPK), MAC2 and TAC checked."""
        resp = ok(card, init_purchase(amount))
        counter = int.from_bytes(resp[4:6], "big")
        sespk = p.purchase_session_key(self.dpk, resp[11:15], counter, SEQ)
        answer = ok(card, debit(p.purchase_mac1(sespk, amount, TID, DATE, TIME)))
        assert answer[4:] == p.purchase_mac2(sespk, amount)
        assert answer[:4] == p.purchase_tac(self.dtk, amount, TID, SEQ, DATE, TIME)
        return counter, sespk


def serve(state_dir: Path | None, profile: CardProfile = PROFILE) -> PurseCardApplication:
    """What `rig card serve` builds for the purse, selected."""
    card = purse_application(profile, state_dir=state_dir)
    ok(card, SELECT)
    return card


def balance(card: PurseCardApplication) -> int:
    return int.from_bytes(ok(card, GET_BALANCE), "big")


def log(card: PurseCardApplication) -> list[bytes]:
    out = []
    for n in range(1, LOG_RECORDS + 2):
        data, sw = send(card, read_record(n))
        if sw == 0x6A83:
            break
        assert sw == 0x9000
        out.append(data)
    return out


def test_a_load_survives_serving_the_card_again(tmp_path: Path) -> None:
    card = serve(tmp_path)
    assert balance(card) == 5000
    Host().load(card, 5000)
    again = serve(tmp_path)
    assert balance(again) == 10000
    assert log(again) == log(card)
    assert ok(again, read_record(1)) == (
        b"\x00\x00" + b"\x00\x00\x00" + (5000).to_bytes(4, "big") + b"\x02" + TID + DATE + TIME
    )
    path = tmp_path / f"{PROFILE.id}.json"
    saved = json.loads(path.read_text())
    assert saved["version"] == 1 and saved["profile"] == PROFILE.id
    assert (saved["balance"], saved["online_counter"], saved["offline_counter"]) == (10000, 1, 0)
    text = path.read_text().upper()
    keys = SECTION.keys
    assert all(k.upper() not in text for k in (keys.mlk, keys.mpk, keys.mtk))
    assert not (tmp_path / f"{PROFILE.id}.json.tmp").exists()


def test_counters_continue_and_session_keys_use_the_persisted_counters(tmp_path: Path) -> None:
    host = Host()
    card = serve(tmp_path)
    assert host.load(card, 100) == 0
    assert host.purchase(card, 30)[0] == 0
    card = serve(tmp_path)
    counter, mac2 = host.init_load(card, 200)  # MAC1 checked under SESLK of counter 1
    assert counter == 1
    tac = ok(card, credit(mac2))
    assert tac == p.load_tac(host.dtk, 5000 + 100 - 30 + 200, 1, 200, TID, DATE, TIME)
    assert host.purchase(serve(tmp_path), 70)[0] == 1
    card = serve(tmp_path)
    assert (card.purse.online_counter, card.purse.offline_counter) == (2, 2)
    assert balance(card) == 5200
    amounts = [int.from_bytes(r[5:9], "big") for r in log(card)]
    assert amounts == [70, 200, 30, 100]


def test_pin_tries_persist_and_a_blocked_pin_stays_blocked(tmp_path: Path) -> None:
    card = serve(tmp_path, PIN_PROFILE)
    assert send(card, verify("0000")) == (b"", 0x63C2)
    card = serve(tmp_path, PIN_PROFILE)
    assert send(card, apdu(0x00, 0x20, 0x00, 0x00)) == (b"", 0x63C2)
    ok(card, verify(TEST_PIN))  # the right PIN gives the tries back, and that persists too
    card = serve(tmp_path, PIN_PROFILE)
    assert send(card, apdu(0x00, 0x20, 0x00, 0x00)) == (b"", 0x63C3)
    assert send(card, init_load(1)) == (b"", 0x6982)  # verification itself never persists
    assert [send(card, verify("9999"))[1] for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    card = serve(tmp_path, PIN_PROFILE)
    assert send(card, verify(TEST_PIN)) == (b"", 0x6983)
    assert send(card, init_load(1)) == (b"", 0x6982)
    assert json.loads((tmp_path / f"{PROFILE.id}.json").read_text())["pin_tries_left"] == 0


def test_a_torn_load_is_abandoned_not_persisted(tmp_path: Path) -> None:
    host = Host()
    card = serve(tmp_path)
    host.load(card, 10)
    path = tmp_path / f"{PROFILE.id}.json"
    before = path.read_bytes()
    counter, mac2 = host.init_load(card, 500)
    assert path.read_bytes() == before  # INITIALIZE writes nothing: no session key on disk
    card = serve(tmp_path)  # the simulator was killed between the two steps
    assert send(card, credit(mac2)) == (b"", 0x6985)
    assert balance(card) == 5010 and path.read_bytes() == before
    assert host.init_load(card, 500)[0] == counter  # the counter was not used up


def test_the_proof_of_a_lost_answer_survives_a_new_serve(tmp_path: Path) -> None:
    host = Host()
    card = serve(tmp_path)
    counter, sespk = host.purchase(card, 250)
    card = serve(tmp_path)
    proof = ok(card, prove(0x06, counter))
    assert proof == p.purchase_mac2(sespk, 250) + p.purchase_tac(
        host.dtk, 250, TID, SEQ, DATE, TIME
    )
    assert send(card, prove(0x02, counter)) == (b"", 0x9406)


def test_the_file_keeps_the_newest_log_records_only(tmp_path: Path) -> None:
    card = serve(tmp_path)
    for amount in range(1, LOG_RECORDS + 4):
        Host().load(card, amount)
    again = serve(tmp_path)
    assert log(again) == log(card) and len(log(again)) == LOG_RECORDS
    saved = json.loads((tmp_path / f"{PROFILE.id}.json").read_text())
    assert [r["amount"] for r in saved["log"]] == list(range(LOG_RECORDS + 3, 3, -1))


def test_without_a_state_dir_every_serve_starts_from_the_profile(tmp_path: Path) -> None:
    card = serve(None)
    assert card.on_change is None
    Host().load(card, 5000)
    assert balance(serve(None)) == 5000
    assert list(tmp_path.iterdir()) == []
    nested = tmp_path / "a" / "b"
    serve(nested)
    assert nested.is_dir() and list(nested.iterdir()) == []  # written on the first change


def _good() -> dict[str, Any]:
    return PurseState.fresh(PROFILE).to_json()


def _record(**change: Any) -> dict[str, Any]:
    rec = {"counter": 0, "amount": 1, "type": 2, "terminal_id": TID.hex(), "date": "20261125"}
    return {**rec, "time": "183000", **change}


BAD_FILES: list[tuple[str, Any, str]] = [
    ("other profile", {**_good(), "profile": "visa-signature"}, "profile"),
    ("wrong version", {**_good(), "version": 2}, "version"),
    ("no version", {k: v for k, v in _good().items() if k != "version"}, "version"),
    ("not a mapping", [1, 2], "version"),
    ("balance above max", {**_good(), "balance": SECTION.max_balance + 1}, "balance"),
    ("negative balance", {**_good(), "balance": -1}, "balance"),
    ("balance as text", {**_good(), "balance": "5000"}, "balance"),
    ("balance missing", {k: v for k, v in _good().items() if k != "balance"}, "balance"),
    ("online counter 10000", {**_good(), "online_counter": 0x10000}, "online_counter"),
    ("offline counter negative", {**_good(), "offline_counter": -1}, "offline_counter"),
    ("offline counter bool", {**_good(), "offline_counter": True}, "offline_counter"),
    ("pin tries above limit", {**_good(), "pin_tries_left": 4}, "pin_tries_left"),
    ("unknown key", {**_good(), "pin": "1234"}, "unknown keys"),
    ("log not a list", {**_good(), "log": {}}, "log"),
    ("log too long", {**_good(), "log": [_record()] * (LOG_RECORDS + 1)}, "log"),
    ("record bad type", {**_good(), "log": [_record(type=3)]}, "log[0].type"),
    ("record bad tid", {**_good(), "log": [_record(terminal_id="11")]}, "log[0].terminal_id"),
    ("record not hex", {**_good(), "log": [_record(date="2026112X")]}, "log[0].date"),
    ("record amount", {**_good(), "log": [_record(), _record(amount=-5)]}, "log[1].amount"),
    ("record extra key", {**_good(), "log": [_record(pin="1")]}, "log[0]"),
    (
        "proof bad mac",
        {**_good(), "proof": {"type": 6, "counter": 0, "mac": "", "tac": "00"}},
        "mac",
    ),
    ("proof not a mapping", {**_good(), "proof": 5}, "proof"),
]


@pytest.mark.parametrize(
    ("content", "key"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES]
)
def test_bad_state_files_name_the_file_the_key_and_the_fix(
    tmp_path: Path, content: Any, key: str
) -> None:
    path = tmp_path / f"{PROFILE.id}.json"
    path.write_text(json.dumps(content))
    with pytest.raises(CardStateError) as err:
        PurseState.load(path, PROFILE)
    message = str(err.value)
    assert str(path) in message and key in message
    assert "delete" in message
    with pytest.raises(CardHostError, match=PROFILE.id):
        purse_application(PROFILE, state_dir=tmp_path)


@pytest.mark.parametrize("text", ["{", "", "\xff", '{"version": 1'])
def test_malformed_state_files_are_refused_with_the_fix(tmp_path: Path, text: str) -> None:
    path = tmp_path / f"{PROFILE.id}.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(CardStateError, match="delete the file") as err:
        PurseState.load(path, PROFILE)
    assert str(path) in str(err.value)
    with pytest.raises(CardHostError) as host_err:  # what `rig card serve` reports, no traceback
        build(PROFILE_PATH, state_dir=tmp_path)
    assert str(path) in str(host_err.value)


def test_a_good_file_round_trips_and_a_save_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    state = PurseState.fresh(PROFILE, path)
    state.log = [p.PurseRecord(7, 9, 6, TID, DATE, TIME)]
    state.save()
    assert PurseState.load(path, PROFILE) == state
    lost = PurseState.fresh(PROFILE, tmp_path / "missing" / "x.json")
    with pytest.raises(CardStateError, match="missing"):
        lost.save()


# ---- save + reload at random points equals an uninterrupted run --------------------------------


def _card(path: Path | None, rnd: Randoms) -> PurseCardApplication:
    keys = SECTION.keys
    purse = Purse(
        PurseKeys.from_master_keys(
            bytes.fromhex(keys.mlk), bytes.fromhex(keys.mpk), bytes.fromhex(keys.mtk), ASN
        ),
        balance=SECTION.initial_balance,
        max_balance=SECTION.max_balance,
    )
    card = PurseCardApplication(
        purse, ASN, aid=bytes.fromhex(SECTION.aid), pin=TEST_PIN, pin_required_for_load=False
    )
    card._random_bytes = rnd  # one deterministic random stream across serves
    if path is not None:
        persist(card, PROFILE, path)
    ok(card, SELECT)
    return card


def _step(host: Host, card: PurseCardApplication, op: str, amount: int) -> list[bytes]:
    """Run one operation; return every answer (MACs included) for comparison."""
    if op == "pin":
        return [card.process(verify(TEST_PIN if amount % 2 else "0000"))]
    init = card.process(init_load(amount) if op == "load" else init_purchase(amount))
    if init[-2:] != b"\x90\x00":
        return [init]
    random4, counter = (init[8:12], init[4:6]) if op == "load" else (init[11:15], init[4:6])
    if op == "load":
        seslk = p.load_session_key(host.dlk, random4, int.from_bytes(counter, "big"))
        return [init, card.process(credit(p.load_mac2(seslk, amount, TID, DATE, TIME)))]
    sespk = p.purchase_session_key(host.dpk, random4, int.from_bytes(counter, "big"), SEQ)
    mac1 = p.purchase_mac1(sespk, amount, TID, DATE, TIME)
    if op == "bad":
        mac1 = bytes(b ^ 1 for b in mac1)
    return [init, card.process(debit(mac1))]


_ops = st.lists(
    st.tuples(
        st.sampled_from(["load", "purchase", "bad", "pin"]),
        st.integers(1, 40_000),
        st.booleans(),
    ),
    max_size=15,
)


@settings(max_examples=60, deadline=None)
@given(_ops)
def test_save_and_reload_at_random_points_equals_an_uninterrupted_run(
    ops: list[tuple[str, int, bool]],
) -> None:
    host = Host()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{PROFILE.id}.json"
        ref = _card(None, Randoms())
        rnd = Randoms()
        card = _card(path, rnd)
        for op, amount, reload in ops:
            if reload:
                ref.reset()
                ok(ref, SELECT)
                card = _card(path, rnd)
            assert _step(host, card, op, amount) == _step(host, ref, op, amount)
        card = _card(path, rnd)
        ref.reset()
        ok(ref, SELECT)
        assert balance(card) == balance(ref)
        assert log(card) == log(ref)
        assert (card.purse.online_counter, card.purse.offline_counter) == (
            ref.purse.online_counter,
            ref.purse.offline_counter,
        )
        assert card.pin_tries_left == ref.pin_tries_left
        counters = (ref.purse.online_counter, ref.purse.offline_counter)
        for kind, counter in zip((2, 6), counters, strict=True):
            question = prove(kind, max(counter - 1, 0))
            assert card.process(question) == ref.process(question)
