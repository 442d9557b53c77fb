"""The prepaid purse as a card: the APDUs of docs/prepaid.md on top of `rig.prepaid.purse.Purse`.

Pure (no I/O). Served to pcscd by the card host like any other `CardApplication`.

AID `F0 50 4F 53 52 49 47 50 55 52 53 45` (F0 + "POSRIGPURSE") is the rig's **test purse AID**:
F0 marks a proprietary, unregistered AID, so it cannot be mistaken for a real scheme's purse.
A profile may give another AID (for example one a terminal under test is configured for).

ATR `3B 8C 80 01 "POSRIG PURSE" TCK`: direct convention, T0=8C (TD1 follows, 12 historical
bytes), TD1=80 (T=0, TD2 follows), TD2=01 (T=1), TCK = XOR of T0..last historical byte.

SELECT answers the FCI `6F { 84 AID, A5 { 50 label, BF0C { DF70 ASN } } }`: DF70 is a private
tag of the rig (not an EMV tag) holding the application serial number the keys are diversified
with, so a host or SAM can derive the card keys from the issuer master keys.

| command | CLA INS P1 P2 | data | answer |
| --- | --- | --- | --- |
| SELECT | 00 A4 04 00/0C | AID | FCI (P2=00) or nothing (P2=0C) |
| VERIFY | 00 20 00 00 | PIN, BCD packed, F-padded, 2-6 bytes; none = ask tries | - |
| INITIALIZE FOR LOAD | 80 50 00 02 | key index 1, amount 4, TID 6 | 16 bytes (docs) |
| INITIALIZE FOR PURCHASE | 80 50 01 02 | key index 1, amount 4, TID 6 | 15 bytes (docs) |
| CREDIT FOR LOAD | 80 52 00 00 | DATE 4, TIME 3, MAC2 4 | TAC 4 |
| DEBIT FOR PURCHASE | 80 54 01 00 | SEQ 4, DATE 4, TIME 3, MAC1 4 | TAC 4, MAC2 4 |
| GET BALANCE | 80 5C 00 02, Le 04 | - | balance 4 |
| GET TRANSACTION PROVE | 80 5A 00 02/06 | counter 2 | MAC 4, TAC 4 |
| READ RECORD (log) | 00 B2 n C4, Le 17 | - | record n (1 = newest) of SFI 18 |

A log record (23 bytes): counter(2) overdraft(3) amount(4) type(1) TID(6) DATE(4) TIME(3).
The log shows the newest `LOG_RECORDS` transactions. GET TRANSACTION PROVE answers the proof of
the last completed transaction when P2 (its type, 02 load / 06 purchase) and the counter it was
initialised with both match: for a purchase `MAC2 ‖ TAC`, for a load `MAC2 ‖ TAC` where MAC2 is
the host's MAC2 the card accepted. It lets a terminal whose DEBIT / CREDIT answer was lost learn
whether the card completed the transaction. The proof persists through reset.

Rules: every command but SELECT needs the application selected (else 6985). CREDIT / DEBIT must
directly follow a successful INITIALIZE of the same kind: any other command in between, a reset,
a failed INITIALIZE or another INITIALIZE abandons the transaction (then 6985). INITIALIZE FOR
LOAD needs a verified PIN when `pin_required_for_load` (else 6982). Status words beyond
docs/prepaid.md: 6E00 bad CLA, 6D00 unknown INS, 6A86 bad P1/P2, 6A82 unknown AID or SFI,
6A83 record not found, 6Cxx wrong Le (xx = exact length), 63Cx wrong PIN (x tries left),
6983 PIN blocked, 6982 PIN not verified, 9403 key index not supported, 9406 no proof for that
transaction, 6F00 internal error (never expected; tests assert it does not occur).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from rig.card.application import ApduFormatError, Command, parse_command, sw_bytes
from rig.emv.tlv import encode
from rig.prepaid.purse import TYPE_LOAD, TYPE_PURCHASE, Purse, PurseError, PurseRecord

PURSE_AID = bytes.fromhex("F0504F535249475055525345")
"""The rig's test purse AID: F0 (proprietary, unregistered) + ASCII "POSRIGPURSE"."""
HISTORICAL = b"POSRIG PURSE"
LABEL = b"POSRIG TEST PURSE"
TAG_ASN = 0xDF70
"""Private rig tag in the FCI issuer discretionary data (BF0C): the application serial number."""
LOG_SFI = 0x18
LOG_RECORDS = 10
RECORD_LEN = 23
DEFAULT_PIN = "123456"
"""TEST PIN only."""

SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_CONDITIONS = 0x6985
SW_SECURITY = 0x6982
SW_PIN_BLOCKED = 0x6983
SW_P1P2 = 0x6A86
SW_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_INS = 0x6D00
SW_CLA = 0x6E00
SW_INTERNAL = 0x6F00
SW_KEY_INDEX = 0x9403
SW_NO_PROOF = 0x9406

STATUS_MEANINGS: dict[int, str] = {
    SW_OK: "success",
    0x9302: "MAC does not verify",
    0x9401: "insufficient balance",
    SW_KEY_INDEX: "key index not supported",
    SW_NO_PROOF: "no proof for that transaction",
    0x6A80: "amount out of range",
    SW_RECORD_NOT_FOUND: "load exceeds maximum balance / record not found",
    SW_NOT_FOUND: "application or file not found",
    SW_P1P2: "incorrect P1 P2",
    SW_CONDITIONS: "conditions of use not satisfied",
    SW_SECURITY: "security status not satisfied (PIN)",
    SW_PIN_BLOCKED: "PIN blocked",
    SW_WRONG_LENGTH: "wrong length",
    SW_INS: "instruction not supported",
    SW_CLA: "class not supported",
    SW_INTERNAL: "internal error",
}
"""Every status word this application answers (63Cx and 6Cxx besides), for trace decoding."""

COMMAND_NAMES: dict[tuple[int, int, int], str] = {
    (0x00, 0xA4, 0x04): "SELECT",
    (0x00, 0x20, 0x00): "VERIFY",
    (0x00, 0xB2, -1): "READ RECORD",
    (0x80, 0x50, 0x00): "INITIALIZE FOR LOAD",
    (0x80, 0x50, 0x01): "INITIALIZE FOR PURCHASE",
    (0x80, 0x52, 0x00): "CREDIT FOR LOAD",
    (0x80, 0x54, 0x01): "DEBIT FOR PURCHASE",
    (0x80, 0x5C, 0x00): "GET BALANCE",
    (0x80, 0x5A, 0x00): "GET TRANSACTION PROVE",
}
"""(CLA, INS, P1) -> command name; P1 -1 means any."""


def command_name(apdu: bytes) -> str:
    """The purse command an APDU carries, for traces ("UNKNOWN" when not one of ours)."""
    if len(apdu) < 4:
        return "UNKNOWN"
    key = (apdu[0], apdu[1])
    return COMMAND_NAMES.get((*key, apdu[2])) or COMMAND_NAMES.get((*key, -1)) or "UNKNOWN"


def build_atr(historical: bytes) -> bytes:
    """ATR offering T=0 and T=1 with the given historical bytes (at most 15) and its TCK."""
    if len(historical) > 15:
        raise PurseAppError(f"historical bytes: {len(historical)} given, an ATR holds 15 at most")
    body = bytes((0x80 | len(historical), 0x80, 0x01)) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes((tck,))


ATR = build_atr(HISTORICAL)


def encode_pin(pin: str) -> bytes:
    """PIN digits as the VERIFY data field: packed BCD, an odd count padded with F."""
    if not (pin.isdigit() and pin.isascii() and 4 <= len(pin) <= 12):
        raise PurseAppError(f"PIN must be 4 to 12 decimal digits, got {len(pin)} characters")
    return bytes.fromhex(pin + "F" * (len(pin) % 2))


class PurseAppError(ValueError):
    """The purse card application was configured with a value it cannot use."""


@dataclass(frozen=True)
class TransactionProof:
    """What GET TRANSACTION PROVE hands out: the last completed transaction's MAC and TAC."""

    kind: int
    counter: int
    mac: bytes
    tac: bytes


def log_record(record: PurseRecord, overdraft: int = 0) -> bytes:
    """A 23-byte log record: counter(2) overdraft(3) amount(4) type(1) TID(6) DATE(4) TIME(3)."""
    return (
        record.counter.to_bytes(2, "big")
        + overdraft.to_bytes(3, "big")
        + record.amount.to_bytes(4, "big")
        + bytes((record.kind,))
        + record.terminal_id
        + record.date
        + record.time
    )


class PurseCardApplication:
    """The purse card (implements `CardApplication`); `purse` and the PIN state persist.

    `on_change` (e.g. `rig.card.purse_state.persist`) saves them after every change.
    """

    def __init__(
        self,
        purse: Purse,
        asn: bytes,
        *,
        aid: bytes = PURSE_AID,
        atr: bytes = ATR,
        label: bytes = LABEL,
        pin: str = DEFAULT_PIN,
        pin_try_limit: int = 3,
        pin_required_for_load: bool = True,
        key_index: int = 1,
        random_bytes: Callable[[int], bytes] = os.urandom,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if not 5 <= len(aid) <= 16:
            raise PurseAppError(f"aid: {len(aid)} bytes, an AID has 5 to 16")
        if not 1 <= len(asn) <= 16:
            raise PurseAppError(f"asn: {len(asn)} bytes, give the 8 to 10 byte serial number")
        if not 1 <= pin_try_limit <= 15:
            raise PurseAppError(f"pin_try_limit {pin_try_limit}: use 1 to 15 (fits SW 63Cx)")
        self.purse = purse
        self.asn = bytes(asn)
        self.aid = bytes(aid)
        self.atr = bytes(atr)
        self.pin_try_limit = pin_try_limit
        self.pin_tries_left = pin_try_limit
        self.pin_required_for_load = pin_required_for_load
        self.key_index = key_index
        self.last_proof: TransactionProof | None = None
        self._pin = encode_pin(pin)
        self._random_bytes = random_bytes
        self.on_change = on_change
        """Called after every change of what persists (PIN tries, a completed load / purchase)."""
        a5 = encode(0x50, label) + encode(0xBF0C, encode(TAG_ASN, self.asn))
        self.fci = encode(0x6F, encode(0x84, self.aid) + encode(0xA5, a5))
        self.selected = False
        self.pin_verified = False
        self._pending: int | None = None
        self._handlers: dict[tuple[int, int], Callable[[Command, int | None], bytes]] = {
            (0x00, 0xA4): self._select,
            (0x00, 0x20): self._verify,
            (0x00, 0xB2): self._read_record,
            (0x80, 0x50): self._initialize,
            (0x80, 0x52): self._credit_for_load,
            (0x80, 0x54): self._debit_for_purchase,
            (0x80, 0x5C): self._get_balance,
            (0x80, 0x5A): self._get_transaction_prove,
        }

    def reset(self) -> None:
        """Deselect, forget PIN verification and abandon any half-done transaction."""
        self.selected = False
        self.pin_verified = False
        self._pending = None

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU with data + SW; never raises."""
        try:
            return self._process(bytes(apdu))
        except PurseError as exc:
            return sw_bytes(exc.sw)
        except Exception:
            return sw_bytes(SW_INTERNAL)

    def log_records(self) -> list[bytes]:
        """The log as READ RECORD shows it: newest first, at most LOG_RECORDS."""
        return [log_record(r) for r in reversed(self.purse.log[-LOG_RECORDS:])]

    def _process(self, apdu: bytes) -> bytes:
        pending, self._pending = self._pending, None
        try:
            cmd = parse_command(apdu)
        except ApduFormatError:
            return sw_bytes(SW_WRONG_LENGTH)
        handler = self._handlers.get((cmd.cla, cmd.ins))
        if handler is None:
            known_ins = any(ins == cmd.ins for _, ins in self._handlers)
            return sw_bytes(SW_CLA if known_ins or cmd.cla not in (0x00, 0x80) else SW_INS)
        if cmd.ins != 0xA4 and not self.selected:
            return sw_bytes(SW_CONDITIONS)
        return handler(cmd, pending)

    def _select(self, cmd: Command, _pending: int | None) -> bytes:
        if cmd.p1 != 0x04 or cmd.p2 not in (0x00, 0x0C):
            return sw_bytes(SW_P1P2)
        if cmd.data != self.aid:
            return sw_bytes(SW_NOT_FOUND)
        self.selected = True
        self.pin_verified = False
        return sw_bytes(SW_OK) if cmd.p2 == 0x0C else self.fci + sw_bytes(SW_OK)

    def _verify(self, cmd: Command, _pending: int | None) -> bytes:
        if cmd.p1 != 0x00 or cmd.p2 != 0x00:
            return sw_bytes(SW_P1P2)
        if self.pin_tries_left == 0:
            return sw_bytes(SW_PIN_BLOCKED)
        if not cmd.data:
            if cmd.le is not None:
                return sw_bytes(SW_WRONG_LENGTH)
            return sw_bytes(SW_OK if self.pin_verified else 0x63C0 | self.pin_tries_left)
        if not 2 <= len(cmd.data) <= 6:
            return sw_bytes(SW_WRONG_LENGTH)
        if cmd.data == self._pin:
            reset = self.pin_tries_left != self.pin_try_limit
            self.pin_tries_left = self.pin_try_limit
            self.pin_verified = True
            if reset:
                self._changed()
            return sw_bytes(SW_OK)
        self.pin_tries_left -= 1
        self.pin_verified = False
        self._changed()
        return sw_bytes(0x63C0 | self.pin_tries_left)

    def _initialize(self, cmd: Command, _pending: int | None) -> bytes:
        if cmd.p1 not in (0x00, 0x01) or cmd.p2 != 0x02:
            return sw_bytes(SW_P1P2)
        if len(cmd.data) != 11:
            return sw_bytes(SW_WRONG_LENGTH)
        if cmd.data[0] != self.key_index:
            return sw_bytes(SW_KEY_INDEX)
        amount = int.from_bytes(cmd.data[1:5], "big")
        tid = cmd.data[5:11]
        if cmd.p1 == 0x00:
            if self.pin_required_for_load and not self.pin_verified:
                return sw_bytes(SW_SECURITY)
            load = self.purse.initialize_for_load(amount, tid, self._random4())
            self._pending = TYPE_LOAD
            return (
                load.balance.to_bytes(4, "big")
                + load.online_counter.to_bytes(2, "big")
                + bytes((load.key_version, load.algorithm))
                + load.random
                + load.mac1
                + sw_bytes(SW_OK)
            )
        buy = self.purse.initialize_for_purchase(amount, tid, self._random4())
        self._pending = TYPE_PURCHASE
        return (
            buy.balance.to_bytes(4, "big")
            + buy.offline_counter.to_bytes(2, "big")
            + buy.overdraft_limit.to_bytes(3, "big")
            + bytes((buy.key_version, buy.algorithm))
            + buy.random
            + sw_bytes(SW_OK)
        )

    def _credit_for_load(self, cmd: Command, pending: int | None) -> bytes:
        if cmd.p1 != 0x00 or cmd.p2 != 0x00:
            return sw_bytes(SW_P1P2)
        if len(cmd.data) != 11:
            return sw_bytes(SW_WRONG_LENGTH)
        if pending != TYPE_LOAD:
            return sw_bytes(SW_CONDITIONS)
        date, time, mac2 = cmd.data[0:4], cmd.data[4:7], cmd.data[7:11]
        tac = self.purse.credit_for_load(date, time, mac2)
        self.last_proof = TransactionProof(TYPE_LOAD, self.purse.online_counter - 1, mac2, tac)
        self._changed()
        return tac + sw_bytes(SW_OK)

    def _debit_for_purchase(self, cmd: Command, pending: int | None) -> bytes:
        if cmd.p1 != 0x01 or cmd.p2 != 0x00:
            return sw_bytes(SW_P1P2)
        if len(cmd.data) != 15:
            return sw_bytes(SW_WRONG_LENGTH)
        if pending != TYPE_PURCHASE:
            return sw_bytes(SW_CONDITIONS)
        seq = int.from_bytes(cmd.data[0:4], "big")
        date, time, mac1 = cmd.data[4:8], cmd.data[8:11], cmd.data[11:15]
        tac, mac2 = self.purse.debit_for_purchase(seq, date, time, mac1)
        counter = self.purse.offline_counter - 1
        self.last_proof = TransactionProof(TYPE_PURCHASE, counter, mac2, tac)
        self._changed()
        return tac + mac2 + sw_bytes(SW_OK)

    def _get_balance(self, cmd: Command, _pending: int | None) -> bytes:
        if cmd.p1 != 0x00 or cmd.p2 != 0x02:
            return sw_bytes(SW_P1P2)
        if cmd.data or cmd.le is None:
            return sw_bytes(SW_WRONG_LENGTH)
        if cmd.le not in (4, 256):
            return sw_bytes(0x6C04)
        return self.purse.balance.to_bytes(4, "big") + sw_bytes(SW_OK)

    def _get_transaction_prove(self, cmd: Command, _pending: int | None) -> bytes:
        if cmd.p1 != 0x00 or cmd.p2 not in (TYPE_LOAD, TYPE_PURCHASE):
            return sw_bytes(SW_P1P2)
        if len(cmd.data) != 2:
            return sw_bytes(SW_WRONG_LENGTH)
        proof = self.last_proof
        counter = int.from_bytes(cmd.data, "big")
        if proof is None or proof.kind != cmd.p2 or proof.counter != counter:
            return sw_bytes(SW_NO_PROOF)
        return proof.mac + proof.tac + sw_bytes(SW_OK)

    def _read_record(self, cmd: Command, _pending: int | None) -> bytes:
        if cmd.p2 & 0x07 != 0x04 or cmd.p1 == 0:
            return sw_bytes(SW_P1P2)
        if cmd.p2 >> 3 != LOG_SFI:
            return sw_bytes(SW_NOT_FOUND)
        if cmd.data or cmd.le is None:
            return sw_bytes(SW_WRONG_LENGTH)
        records = self.log_records()
        if cmd.p1 > len(records):
            return sw_bytes(SW_RECORD_NOT_FOUND)
        if cmd.le not in (RECORD_LEN, 256):
            return sw_bytes(0x6C00 | RECORD_LEN)
        return records[cmd.p1 - 1] + sw_bytes(SW_OK)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _random4(self) -> bytes:
        value = bytes(self._random_bytes(4))
        if len(value) != 4:
            raise PurseError(f"random source gave {len(value)} bytes, not 4", SW_INTERNAL)
        return value
