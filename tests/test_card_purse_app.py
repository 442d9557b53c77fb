"""The purse card application at APDU level: load and purchase against an independent host / SAM
side that derives the card keys from the issuer master keys and the ASN read from the FCI, the
transaction log, GET TRANSACTION PROVE, torn transactions, every status word, and a fuzz.

The MAC / TAC formulas are those of docs/prepaid.md; rig.prepaid.purse's functions are checked
against psec in tests/test_prepaid.py, and the load TAC is recomputed with psec here as well.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psec.des import encrypt_tdes_ecb
from psec.mac import generate_cbc_mac

from rig.card.application import CardApplication
from rig.card.purse_app import (
    ATR,
    LOG_RECORDS,
    PURSE_AID,
    STATUS_MEANINGS,
    TAG_ASN,
    PurseAppError,
    PurseCardApplication,
    command_name,
    encode_pin,
)
from rig.emv import tlv
from rig.prepaid import purse as p
from rig.prepaid.purse import Purse, PurseKeys

# TEST KEYS ONLY - issuer master keys of the rig's test purse scheme (as in tests/test_prepaid.py).
MLK = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
MPK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
MTK = bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F")
ASN = bytes.fromhex("0000100000000000001A")
TID = bytes.fromhex("112233445566")
DATE, TIME = bytes.fromhex("20261125"), bytes.fromhex("183000")
PIN = "123456"  # TEST PIN
SEQ = 0x0001_0042

SELECT = bytes.fromhex("00A40400") + bytes([len(PURSE_AID)]) + PURSE_AID + b"\x00"
GET_BALANCE = bytes.fromhex("805C000204")


def apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    out = bytes((cla, ins, p1, p2))
    if data:
        out += bytes((len(data),)) + data
    if le is not None:
        out += bytes((le & 0xFF,))
    return out


def send(card: PurseCardApplication, command: bytes) -> tuple[bytes, int]:
    resp = card.process(command)
    return resp[:-2], int.from_bytes(resp[-2:], "big")


def ok(card: PurseCardApplication, command: bytes) -> bytes:
    data, sw = send(card, command)
    assert sw == 0x9000, f"{command.hex()} answered {sw:04X}"
    return data


def init_load(amount: int, tid: bytes = TID, key_index: int = 1) -> bytes:
    return apdu(0x80, 0x50, 0x00, 0x02, bytes([key_index]) + amount.to_bytes(4, "big") + tid, 0x10)


def init_purchase(amount: int, tid: bytes = TID) -> bytes:
    return apdu(0x80, 0x50, 0x01, 0x02, b"\x01" + amount.to_bytes(4, "big") + tid, 0x0F)


def credit(mac2: bytes) -> bytes:
    return apdu(0x80, 0x52, 0x00, 0x00, DATE + TIME + mac2, 0x04)


def debit(mac1: bytes, seq: int = SEQ) -> bytes:
    return apdu(0x80, 0x54, 0x01, 0x00, seq.to_bytes(4, "big") + DATE + TIME + mac1, 0x08)


def verify(pin: str = PIN) -> bytes:
    return apdu(0x00, 0x20, 0x00, 0x00, encode_pin(pin))


def read_record(n: int, sfi: int = 0x18, le: int = 0x17) -> bytes:
    return apdu(0x00, 0xB2, n, (sfi << 3) | 4, le=le)


def prove(kind: int, counter: int) -> bytes:
    return apdu(0x80, 0x5A, 0x00, kind, counter.to_bytes(2, "big"), 0x08)


class Randoms:
    """Deterministic card random: 4-byte values 00000001, 00000002, ..."""

    def __init__(self) -> None:
        self.counter = itertools.count(1)

    def __call__(self, n: int) -> bytes:
        return next(self.counter).to_bytes(n, "big")


def make_card(balance: int = 0, **kwargs: object) -> PurseCardApplication:
    purse = Purse(PurseKeys.from_master_keys(MLK, MPK, MTK, ASN), balance=balance)
    return PurseCardApplication(purse, ASN, random_bytes=Randoms(), **kwargs)  # type: ignore[arg-type]


def selected(balance: int = 0, **kwargs: object) -> PurseCardApplication:
    card = make_card(balance, **kwargs)
    ok(card, SELECT)
    return card


def asn_from_fci(fci: bytes) -> bytes:
    flat = tlv.decode_flat(fci)
    return flat[TAG_ASN]


class Host:
    """The issuer host / SAM side: holds the master keys only, derives card keys from the ASN."""

    def __init__(self, asn: bytes) -> None:
        self.dlk = p.diversify(MLK, asn)
        self.dpk = p.diversify(MPK, asn)
        self.dtk = p.diversify(MTK, asn)

    def load(self, card: PurseCardApplication, amount: int) -> tuple[int, bytes]:
        """Run a load; return (counter used, TAC), every MAC and the TAC checked."""
        resp = ok(card, init_load(amount))
        assert len(resp) == 16
        balance = int.from_bytes(resp[0:4], "big")
        counter = int.from_bytes(resp[4:6], "big")
        assert resp[6:8] == b"\x01\x00"  # key version 1, algorithm 0
        random4, mac1 = resp[8:12], resp[12:16]
        seslk = p.load_session_key(self.dlk, random4, counter)
        assert mac1 == p.load_mac1(seslk, balance, amount, TID)
        tac = ok(card, credit(p.load_mac2(seslk, amount, TID, DATE, TIME)))
        assert tac == p.load_tac(self.dtk, balance + amount, counter, amount, TID, DATE, TIME)
        return counter, tac

    def purchase_init(self, card: PurseCardApplication, amount: int) -> tuple[int, int, bytes]:
        resp = ok(card, init_purchase(amount))
        assert len(resp) == 15
        assert resp[6:9] == b"\x00\x00\x00" and resp[9:11] == b"\x01\x00"
        return int.from_bytes(resp[0:4], "big"), int.from_bytes(resp[4:6], "big"), resp[11:15]

    def sespk(self, random4: bytes, counter: int) -> bytes:
        return p.purchase_session_key(self.dpk, random4, counter, SEQ)


def test_card_is_a_card_application_with_a_well_formed_atr() -> None:
    card = make_card()
    assert isinstance(card, CardApplication)
    assert card.atr == ATR and ATR[0] == 0x3B and ATR[1] == 0x8C
    assert ATR[4:16] == b"POSRIG PURSE"
    check = 0
    for b in ATR[1:]:
        check ^= b
    assert check == 0  # TCK makes the XOR of T0..TCK zero (ISO/IEC 7816-3)


def test_select_answers_fci_with_aid_label_and_asn() -> None:
    card = make_card()
    fci = ok(card, SELECT)
    (top,) = tlv.decode(fci)
    assert top.tag == 0x6F
    flat = tlv.decode_flat(fci)
    assert flat[0x84] == PURSE_AID
    assert flat[0x50] == b"POSRIG TEST PURSE"
    assert asn_from_fci(fci) == ASN
    assert send(make_card(), apdu(0x00, 0xA4, 0x04, 0x0C, PURSE_AID)) == (b"", 0x9000)


def test_full_load_then_purchase_at_apdu_level() -> None:
    card = make_card()
    host = Host(asn_from_fci(ok(card, SELECT)))
    assert ok(card, GET_BALANCE) == (0).to_bytes(4, "big")
    ok(card, verify())
    counter, tac = host.load(card, 5000)
    assert counter == 0
    assert ok(card, GET_BALANCE) == (5000).to_bytes(4, "big")

    # psec cross-check of the load TAC from the documented formula
    tac_key = bytes(a ^ b for a, b in zip(host.dtk[:8], host.dtk[8:], strict=True))
    data = (5000).to_bytes(4, "big") + b"\x00\x00" + (5000).to_bytes(4, "big") + b"\x02"
    assert tac == generate_cbc_mac(tac_key, data + TID + DATE + TIME, padding=2)[:4]

    balance, off_counter, random4 = host.purchase_init(card, 1234)
    assert (balance, off_counter) == (5000, 0)
    sespk = host.sespk(random4, off_counter)
    assert sespk == encrypt_tdes_ecb(host.dpk, random4 + b"\x00\x00\x00\x42")
    resp = ok(card, debit(p.purchase_mac1(sespk, 1234, TID, DATE, TIME)))
    tac, mac2 = resp[:4], resp[4:]
    assert mac2 == p.purchase_mac2(sespk, 1234)
    assert tac == p.purchase_tac(host.dtk, 1234, TID, SEQ, DATE, TIME)
    assert ok(card, GET_BALANCE) == (5000 - 1234).to_bytes(4, "big")
    assert card.purse.online_counter == 1 and card.purse.offline_counter == 1


def test_transaction_log_records_newest_first() -> None:
    card = selected()
    host = Host(ASN)
    ok(card, verify())
    host.load(card, 700)
    _, counter, random4 = host.purchase_init(card, 250)
    ok(card, debit(p.purchase_mac1(host.sespk(random4, counter), 250, TID, DATE, TIME)))
    newest = ok(card, read_record(1))
    assert newest == (
        b"\x00\x00" + b"\x00\x00\x00" + (250).to_bytes(4, "big") + b"\x06" + TID + DATE + TIME
    )
    assert len(newest) == 23
    assert ok(card, read_record(2)) == (
        b"\x00\x00" + b"\x00\x00\x00" + (700).to_bytes(4, "big") + b"\x02" + TID + DATE + TIME
    )
    assert ok(card, read_record(1, le=0)) == newest  # Le 00: up to 256
    assert send(card, read_record(3)) == (b"", 0x6A83)
    assert send(card, read_record(1, le=0x10)) == (b"", 0x6C17)
    assert send(card, read_record(1, sfi=0x01)) == (b"", 0x6A82)
    assert send(card, read_record(0)) == (b"", 0x6A86)


def test_log_keeps_the_newest_ten() -> None:
    card = selected()
    host = Host(ASN)
    ok(card, verify())
    for amount in range(1, 13):
        host.load(card, amount)
    records = [ok(card, read_record(n)) for n in range(1, LOG_RECORDS + 1)]
    assert [int.from_bytes(r[5:9], "big") for r in records] == list(range(12, 2, -1))
    assert [int.from_bytes(r[0:2], "big") for r in records] == list(range(11, 1, -1))
    assert send(card, read_record(LOG_RECORDS + 1)) == (b"", 0x6A83)


def test_get_transaction_prove_recovers_a_purchase_whose_answer_was_lost() -> None:
    card = selected(balance=1000)
    host = Host(ASN)
    _, counter, random4 = host.purchase_init(card, 300)
    sespk = host.sespk(random4, counter)
    card.process(debit(p.purchase_mac1(sespk, 300, TID, DATE, TIME)))  # answer "lost"
    card.reset()
    ok(card, SELECT)
    assert ok(card, GET_BALANCE) == (700).to_bytes(4, "big")
    proof = ok(card, prove(0x06, counter))
    assert proof[:4] == p.purchase_mac2(sespk, 300)
    assert proof[4:] == p.purchase_tac(host.dtk, 300, TID, SEQ, DATE, TIME)
    assert send(card, prove(0x06, counter + 1)) == (b"", 0x9406)
    assert send(card, prove(0x02, counter)) == (b"", 0x9406)
    # a later INITIALIZE does not erase the proof; only a completed transaction replaces it
    host.purchase_init(card, 1)
    assert ok(card, prove(0x06, counter)) == proof


def test_get_transaction_prove_after_a_load_and_before_any_transaction() -> None:
    card = selected()
    assert send(card, prove(0x02, 0)) == (b"", 0x9406)
    host = Host(ASN)
    ok(card, verify())
    counter, tac = host.load(card, 99)
    seslk = p.load_session_key(host.dlk, (1).to_bytes(4, "big"), counter)
    assert ok(card, prove(0x02, counter)) == p.load_mac2(seslk, 99, TID, DATE, TIME) + tac


def test_second_initialize_abandons_the_first() -> None:
    card = selected(balance=1000)
    host = Host(ASN)
    _, counter, first_random = host.purchase_init(card, 100)
    host.purchase_init(card, 100)
    stale = p.purchase_mac1(host.sespk(first_random, counter), 100, TID, DATE, TIME)
    assert send(card, debit(stale)) == (b"", 0x9302)
    assert card.purse.balance == 1000 and card.purse.offline_counter == 0
    assert card.purse.log == []
    assert ok(card, GET_BALANCE) == (1000).to_bytes(4, "big")


def test_interrupted_transaction_is_abandoned() -> None:
    card = selected(balance=1000)
    host = Host(ASN)
    _, counter, random4 = host.purchase_init(card, 100)
    mac1 = p.purchase_mac1(host.sespk(random4, counter), 100, TID, DATE, TIME)
    ok(card, GET_BALANCE)  # any command between the two steps abandons the purchase
    assert send(card, debit(mac1)) == (b"", 0x6985)
    _, counter, random4 = host.purchase_init(card, 100)
    card.reset()
    ok(card, SELECT)
    mac1 = p.purchase_mac1(host.sespk(random4, counter), 100, TID, DATE, TIME)
    assert send(card, debit(mac1)) == (b"", 0x6985)
    assert card.purse.balance == 1000


def test_wrong_mac2_changes_nothing_and_ends_the_load() -> None:
    card = selected(balance=10)
    ok(card, verify())
    ok(card, init_load(500))
    assert send(card, credit(b"\x00\x00\x00\x00")) == (b"", 0x9302)
    assert card.purse.balance == 10 and card.purse.online_counter == 0
    assert card.purse.log == [] and card.last_proof is None
    assert send(card, credit(b"\x00\x00\x00\x00")) == (b"", 0x6985)


def test_wrong_mac1_changes_nothing() -> None:
    card = selected(balance=10)
    ok(card, init_purchase(5))
    assert send(card, debit(b"\x12\x34\x56\x78")) == (b"", 0x9302)
    assert card.purse.balance == 10 and card.purse.offline_counter == 0 and card.purse.log == []


def test_pin_try_counter_and_block() -> None:
    card = selected(pin_try_limit=3)
    assert send(card, apdu(0x00, 0x20, 0x00, 0x00)) == (b"", 0x63C3)
    assert send(card, verify("0000")) == (b"", 0x63C2)
    ok(card, verify())  # the right PIN resets the counter
    assert send(card, apdu(0x00, 0x20, 0x00, 0x00)) == (b"", 0x9000)
    assert [send(card, verify("9999"))[1] for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    assert send(card, verify()) == (b"", 0x6983)
    card.reset()
    ok(card, SELECT)
    assert send(card, verify()) == (b"", 0x6983)  # blocked survives reset
    assert send(card, init_load(1)) == (b"", 0x6982)


def test_pin_encoding_and_configuration_errors() -> None:
    assert encode_pin("12345") == bytes.fromhex("12345F")
    with pytest.raises(PurseAppError, match="PIN must be 4 to 12"):
        encode_pin("12a4")
    with pytest.raises(PurseAppError, match="aid"):
        make_card(aid=b"\x01")
    with pytest.raises(PurseAppError, match="pin_try_limit"):
        make_card(pin_try_limit=16)


def test_load_without_pin_when_not_required() -> None:
    card = selected(pin_required_for_load=False)
    Host(ASN).load(card, 42)
    assert card.purse.balance == 42


def _ready() -> PurseCardApplication:
    card = selected(balance=100)
    ok(card, verify())
    return card


ERROR_CASES = [
    ("insufficient balance", init_purchase(101), 0x9401),
    ("exceeds max balance", init_load(100_000_00), 0x6A83),
    ("purchase of zero", init_purchase(0), 0x6A80),
    ("key index not supported", init_load(1, key_index=2), 0x9403),
    ("credit without initialize", credit(b"\x00" * 4), 0x6985),
    ("debit without initialize", debit(b"\x00" * 4), 0x6985),
    ("initialize Lc 0A", apdu(0x80, 0x50, 0x00, 0x02, b"\x01" * 10), 0x6700),
    ("credit Lc 0C", apdu(0x80, 0x52, 0x00, 0x00, b"\x00" * 12), 0x6700),
    ("debit Lc 0E", apdu(0x80, 0x54, 0x01, 0x00, b"\x00" * 14), 0x6700),
    ("prove Lc 03", apdu(0x80, 0x5A, 0x00, 0x06, b"\x00" * 3), 0x6700),
    ("verify PIN 1 byte", apdu(0x00, 0x20, 0x00, 0x00, b"\x12"), 0x6700),
    ("balance without Le", bytes.fromhex("805C0002"), 0x6700),
    ("balance wrong Le", bytes.fromhex("805C000208"), 0x6C04),
    ("Lc beyond the data", bytes.fromhex("805C000205AA"), 0x6700),
    ("three-byte APDU", bytes.fromhex("805C00"), 0x6700),
    ("unknown INS", bytes.fromhex("80CA9F3600"), 0x6D00),
    ("bad CLA", bytes.fromhex("905C000204"), 0x6E00),
    ("known INS, wrong CLA", bytes.fromhex("005C000204"), 0x6E00),
    ("initialize P2 01", apdu(0x80, 0x50, 0x00, 0x01, b"\x01" * 11), 0x6A86),
    ("initialize P1 02", apdu(0x80, 0x50, 0x02, 0x02, b"\x01" * 11), 0x6A86),
    ("balance P2 01", bytes.fromhex("805C000104"), 0x6A86),
    ("prove P2 03", apdu(0x80, 0x5A, 0x00, 0x03, b"\x00\x00"), 0x6A86),
    ("verify P2 80", apdu(0x00, 0x20, 0x00, 0x80, b"\x12\x34"), 0x6A86),
    ("select by path", apdu(0x00, 0xA4, 0x08, 0x00, b"\x3f\x00"), 0x6A86),
    ("select unknown AID", apdu(0x00, 0xA4, 0x04, 0x00, b"\xa0\x00\x00\x00\x03"), 0x6A82),
    ("read record P2 not 'SFI, record P1'", apdu(0x00, 0xB2, 0x01, 0xC0, le=0x17), 0x6A86),
]


@pytest.mark.parametrize(
    ("command", "sw"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_error_status_words(command: bytes, sw: int) -> None:
    card = _ready()
    before = (card.purse.balance, card.purse.online_counter, card.purse.offline_counter)
    assert send(card, command) == (b"", sw)
    assert (card.purse.balance, card.purse.online_counter, card.purse.offline_counter) == before
    assert sw in STATUS_MEANINGS or sw >> 8 in (0x63, 0x6C)


def test_commands_before_select_are_refused() -> None:
    card = make_card(balance=5)
    for command in (GET_BALANCE, verify(), init_purchase(1), read_record(1), prove(6, 0)):
        assert send(card, command) == (b"", 0x6985)


def test_random_source_of_the_wrong_size_is_an_internal_error_not_an_exception() -> None:
    purse = Purse(PurseKeys.from_master_keys(MLK, MPK, MTK, ASN), balance=5)
    card = PurseCardApplication(purse, ASN, random_bytes=lambda n: b"\x01")
    ok(card, SELECT)
    assert send(card, init_purchase(1)) == (b"", 0x6F00)


def test_command_names_for_traces() -> None:
    assert command_name(init_load(1)) == "INITIALIZE FOR LOAD"
    assert command_name(init_purchase(1)) == "INITIALIZE FOR PURCHASE"
    assert command_name(read_record(2)) == "READ RECORD"
    assert command_name(b"\x80") == "UNKNOWN"


_KNOWN = [(0x00, 0xA4), (0x00, 0x20), (0x00, 0xB2), (0x80, 0x50), (0x80, 0x52), (0x80, 0x54)]
_KNOWN += [(0x80, 0x5C), (0x80, 0x5A), (0x80, 0xCA), (0x84, 0x50)]
_structured = st.builds(
    lambda ci, p1, p2, data, le: (
        bytes((*ci, p1, p2))
        + (bytes((len(data),)) + data if data else b"")
        + (bytes((le,)) if le is not None else b"")
    ),
    st.sampled_from(_KNOWN),
    st.sampled_from([0x00, 0x01, 0x02, 0x04, 0x06, 0x0C, 0xC4, 0xFF]) | st.integers(0, 255),
    st.sampled_from([0x00, 0x02, 0x06, 0x0C, 0xC4, 0xFF]) | st.integers(0, 255),
    st.binary(max_size=20),
    st.none() | st.integers(0, 255),
)
_well_formed = st.builds(
    lambda p1, amount, second: [
        apdu(0x80, 0x50, p1, 0x02, b"\x01" + amount.to_bytes(4, "big") + TID),
        second,
    ],
    st.sampled_from([0x00, 0x01]),
    st.integers(0, 0xFFFFFFFF),
    st.sampled_from([credit(b"\x00" * 4), debit(b"\x00" * 4), GET_BALANCE]),
)
_any_apdus = (st.binary(max_size=40) | _structured).map(lambda a: [a]) | _well_formed


def _plausible(sw: int) -> bool:
    return sw in STATUS_MEANINGS or (sw & 0xFFF0) == 0x63C0 or (sw >> 8) == 0x6C


@settings(max_examples=300, deadline=None)
@given(st.lists(_any_apdus, max_size=12), st.booleans())
def test_fuzz_random_apdus_never_raise_and_never_move_money(
    groups: list[list[bytes]], reset_midway: bool
) -> None:
    card = selected(balance=1000)
    flat = [command for group in groups for command in group]
    for i, command in enumerate([verify(), *flat]):
        if reset_midway and i == 6:
            card.reset()
        resp = card.process(command)
        assert len(resp) >= 2
        sw = int.from_bytes(resp[-2:], "big")
        assert _plausible(sw), f"{command.hex()} -> {sw:04X}"
        assert sw != 0x6F00
        assert sw != 0x9000 or command[1:2] not in (b"\x52", b"\x54")  # random MACs never verify
    assert card.purse.balance == 1000 and card.purse.log == []
