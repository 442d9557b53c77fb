"""Stored-value purse modelled on the ISO/PBOC electronic purse: load, purchase, balance.

Every formula is written out in docs/prepaid.md; the card simulator, the reference terminal
(SAM side) and the host all call these functions so they cannot drift apart. The MAC is the
single-DES CBC-MAC (ISO 9797-1 algorithm 1, padding method 2, zero IV) truncated to 4 bytes.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from rig.crypto.mac import mac_alg1
from rig.crypto.primitives import tdes_ecb_encrypt, xor

TYPE_LOAD = 0x02
TYPE_PURCHASE = 0x06
MAX_BALANCE = 0x7FFFFFFF
"""Balances and amounts are 4-byte unsigned big-endian integers in the smallest currency unit."""


class PurseError(ValueError):
    """A purse rule refused the operation; `sw` is the status word a card answers with."""

    def __init__(self, message: str, sw: int) -> None:
        super().__init__(f"{message} (SW {sw:04X})")
        self.sw = sw


def diversify(master_key: bytes, asn: bytes) -> bytes:
    """Card key from an issuer master key and the 8 rightmost bytes of the application serial.

    left = TDES(MK, ASN8), right = TDES(MK, NOT ASN8): the PBOC key-diversification rule.
    """
    asn8 = asn[-8:].rjust(8, b"\x00")
    inverted = bytes(b ^ 0xFF for b in asn8)
    return tdes_ecb_encrypt(master_key, asn8) + tdes_ecb_encrypt(master_key, inverted)


def purse_mac(key8: bytes, data: bytes) -> bytes:
    """4-byte MAC: single-DES CBC-MAC, ISO 9797-1 padding method 2, zero IV."""
    return mac_alg1(key8, data, padding=2, block="des")[:4]


def tac_key(dtk: bytes) -> bytes:
    """The TAC is computed under the XOR of the two halves of the card's TAC key."""
    return xor(dtk[:8], dtk[8:16])


def load_session_key(dlk: bytes, random4: bytes, online_counter: int) -> bytes:
    """SESLK = TDES(DLK, random(4) || online counter(2) || 80 00)."""
    return tdes_ecb_encrypt(dlk, random4 + online_counter.to_bytes(2, "big") + b"\x80\x00")


def purchase_session_key(dpk: bytes, random4: bytes, offline_counter: int, term_seq: int) -> bytes:
    """SESPK = TDES(DPK, random(4) || offline counter(2) || terminal sequence rightmost 2 bytes)."""
    data = random4 + offline_counter.to_bytes(2, "big") + (term_seq & 0xFFFF).to_bytes(2, "big")
    return tdes_ecb_encrypt(dpk, data)


def load_mac1(seslk: bytes, balance: int, amount: int, terminal_id: bytes) -> bytes:
    """MAC1 (card → host): old balance(4) || amount(4) || type 02 || terminal id(6)."""
    return purse_mac(seslk, _u32(balance) + _u32(amount) + bytes([TYPE_LOAD]) + terminal_id)


def load_mac2(seslk: bytes, amount: int, terminal_id: bytes, date: bytes, time: bytes) -> bytes:
    """MAC2 (host → card): amount(4) || type 02 || terminal id(6) || date(4) || time(3)."""
    return purse_mac(seslk, _u32(amount) + bytes([TYPE_LOAD]) + terminal_id + date + time)


def load_tac(
    dtk: bytes,
    new_balance: int,
    online_counter: int,
    amount: int,
    terminal_id: bytes,
    date: bytes,
    time: bytes,
) -> bytes:
    """TAC of a load: new balance(4) || online counter(2) || amount(4) || 02 || tid(6) || dt."""
    data = (
        _u32(new_balance)
        + online_counter.to_bytes(2, "big")
        + _u32(amount)
        + bytes([TYPE_LOAD])
        + terminal_id
        + date
        + time
    )
    return purse_mac(tac_key(dtk), data)


def purchase_mac1(sespk: bytes, amount: int, terminal_id: bytes, date: bytes, time: bytes) -> bytes:
    """MAC1 (terminal → card): amount(4) || type 06 || terminal id(6) || date(4) || time(3)."""
    return purse_mac(sespk, _u32(amount) + bytes([TYPE_PURCHASE]) + terminal_id + date + time)


def purchase_mac2(sespk: bytes, amount: int) -> bytes:
    """MAC2 (card → terminal): amount(4)."""
    return purse_mac(sespk, _u32(amount))


def purchase_tac(
    dtk: bytes, amount: int, terminal_id: bytes, term_seq: int, date: bytes, time: bytes
) -> bytes:
    """TAC of a purchase: amount(4) || 06 || tid(6) || terminal sequence(4) || date || time."""
    data = _u32(amount) + bytes([TYPE_PURCHASE]) + terminal_id + _u32(term_seq) + date + time
    return purse_mac(tac_key(dtk), data)


def _u32(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise PurseError(f"amount {value} does not fit 4 bytes", 0x6A80)
    return value.to_bytes(4, "big")


@dataclass
class PurseKeys:
    """A card's keys: load (DLK), purchase (DPK) and TAC (DTK), each 16-byte TDES."""

    dlk: bytes
    dpk: bytes
    dtk: bytes

    @classmethod
    def from_master_keys(cls, mlk: bytes, mpk: bytes, mtk: bytes, asn: bytes) -> PurseKeys:
        return cls(diversify(mlk, asn), diversify(mpk, asn), diversify(mtk, asn))


@dataclass
class LoadInit:
    """Answer to INITIALIZE FOR LOAD."""

    balance: int
    online_counter: int
    key_version: int
    algorithm: int
    random: bytes
    mac1: bytes


@dataclass
class PurchaseInit:
    """Answer to INITIALIZE FOR PURCHASE."""

    balance: int
    offline_counter: int
    overdraft_limit: int
    key_version: int
    algorithm: int
    random: bytes


@dataclass
class PurseRecord:
    """One entry of the purse's transaction log."""

    counter: int
    amount: int
    kind: int
    terminal_id: bytes
    date: bytes
    time: bytes


@dataclass
class Purse:
    """The card side of the purse: balance, counters and the two-step load / purchase states."""

    keys: PurseKeys
    balance: int = 0
    online_counter: int = 0
    offline_counter: int = 0
    max_balance: int = 100_000_00
    key_version: int = 1
    algorithm: int = 0
    log: list[PurseRecord] = field(default_factory=list)
    _pending: tuple | None = field(default=None, repr=False)

    def abandon(self) -> None:
        """Forget a started load or purchase (reset, or another command in between)."""
        self._pending = None

    def initialize_for_load(self, amount: int, terminal_id: bytes, random4: bytes) -> LoadInit:
        """Start a load: check limits, derive SESLK, answer MAC1 over the old balance."""
        _check_tid(terminal_id)
        if amount <= 0:
            raise PurseError("load amount must be positive", 0x6A80)
        if self.balance + amount > self.max_balance:
            raise PurseError(f"load of {amount} would exceed the maximum balance", 0x6A83)
        if self.online_counter >= 0xFFFF:
            raise PurseError("online transaction counter exhausted", 0x6985)
        seslk = load_session_key(self.keys.dlk, random4, self.online_counter)
        mac1 = load_mac1(seslk, self.balance, amount, terminal_id)
        self._pending = ("load", seslk, amount, terminal_id)
        return LoadInit(
            self.balance, self.online_counter, self.key_version, self.algorithm, random4, mac1
        )

    def credit_for_load(self, date: bytes, time: bytes, mac2: bytes) -> bytes:
        """Finish a load when MAC2 verifies: credit the balance, count, log; return the TAC."""
        if not self._pending or self._pending[0] != "load":
            raise PurseError("CREDIT FOR LOAD without INITIALIZE FOR LOAD", 0x6985)
        _, seslk, amount, tid = self._pending
        self._pending = None
        if not hmac.compare_digest(load_mac2(seslk, amount, tid, date, time), mac2):
            raise PurseError("MAC2 does not verify", 0x9302)
        counter = self.online_counter
        self.balance += amount
        self.online_counter += 1
        self.log.append(PurseRecord(counter, amount, TYPE_LOAD, tid, date, time))
        return load_tac(self.keys.dtk, self.balance, counter, amount, tid, date, time)

    def initialize_for_purchase(
        self, amount: int, terminal_id: bytes, random4: bytes
    ) -> PurchaseInit:
        """Start a purchase: check funds and remember the random for SESPK."""
        _check_tid(terminal_id)
        if amount <= 0:
            raise PurseError("purchase amount must be positive", 0x6A80)
        if amount > self.balance:
            raise PurseError(f"balance {self.balance} is less than {amount}", 0x9401)
        if self.offline_counter >= 0xFFFF:
            raise PurseError("offline transaction counter exhausted", 0x6985)
        self._pending = ("purchase", random4, amount, terminal_id)
        return PurchaseInit(
            self.balance, self.offline_counter, 0, self.key_version, self.algorithm, random4
        )

    def debit_for_purchase(
        self, term_seq: int, date: bytes, time: bytes, mac1: bytes
    ) -> tuple[bytes, bytes]:
        """Finish a purchase when MAC1 verifies: debit, count, log; return (TAC, MAC2)."""
        if not self._pending or self._pending[0] != "purchase":
            raise PurseError("DEBIT FOR PURCHASE without INITIALIZE FOR PURCHASE", 0x6985)
        _, random4, amount, tid = self._pending
        self._pending = None
        sespk = purchase_session_key(self.keys.dpk, random4, self.offline_counter, term_seq)
        if not hmac.compare_digest(purchase_mac1(sespk, amount, tid, date, time), mac1):
            raise PurseError("MAC1 does not verify", 0x9302)
        counter = self.offline_counter
        self.balance -= amount
        self.offline_counter += 1
        self.log.append(PurseRecord(counter, amount, TYPE_PURCHASE, tid, date, time))
        tac = purchase_tac(self.keys.dtk, amount, tid, term_seq, date, time)
        return tac, purchase_mac2(sespk, amount)


def _check_tid(terminal_id: bytes) -> None:
    if len(terminal_id) != 6:
        raise PurseError(f"terminal id must be 6 bytes, got {len(terminal_id)}", 0x6700)
