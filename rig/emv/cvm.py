"""CVM List (8E) parsing and cardholder verification method selection (Book 3 §10.5, Book 4 §6.3.4).

`select_cvm` is a pure decision: the outcome of each CVM the terminal would perform (PIN entered
right, wrong, bypassed...) is an input, so the whole walk through the list can be checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from rig.emv import bits
from rig.emv.bits import CVM_CONDITIONS, CVM_METHODS

APPLY_NEXT = 0x40
_PIN_CODES = {0x01, 0x02, 0x03, 0x04, 0x05}
# CVM code -> Terminal Capabilities (9F33) bits it needs.
_NEEDS: dict[int, tuple[str, ...]] = {
    0x00: (),
    0x01: ("plaintext_pin_icc",),
    0x02: ("enciphered_pin_online",),
    0x03: ("plaintext_pin_icc", "signature"),
    0x04: ("enciphered_pin_icc",),
    0x05: ("enciphered_pin_icc", "signature"),
    0x1E: ("signature",),
    0x1F: ("no_cvm",),
}


class CvmError(ValueError):
    """A malformed CVM List: `offset` of the bad byte within the 8E value."""

    def __init__(self, message: str, *, offset: int) -> None:
        self.offset = offset
        super().__init__(f"CVM List (8E): {message} at offset {offset}")


@dataclass(frozen=True)
class CvRule:
    code: int
    condition: int

    @property
    def method(self) -> int:
        return self.code & 0x3F

    @property
    def apply_next(self) -> bool:
        """Bit 7: apply the succeeding rule if this CVM fails."""
        return bool(self.code & APPLY_NEXT)

    @property
    def method_name(self) -> str:
        return CVM_METHODS.get(self.method, (f"cvm_{self.method:02x}", ""))[0]

    @property
    def condition_name(self) -> str:
        return CVM_CONDITIONS.get(self.condition, (f"condition_{self.condition:02x}", ""))[0]

    def describe(self) -> str:
        m = CVM_METHODS.get(self.method, ("", f"unknown CVM {self.method:02X}"))[1]
        c = CVM_CONDITIONS.get(self.condition, ("", f"condition {self.condition:02X}"))[1]
        nxt = "; else next rule" if self.apply_next else "; else fail"
        return f"{m}, {c.lower()}{nxt}"


@dataclass(frozen=True)
class CvmList:
    x: int
    y: int
    rules: tuple[CvRule, ...]


def parse_cvm_list(data: bytes) -> CvmList:
    """Amount X, amount Y (4 binary bytes each) and the 2-byte CV Rules."""
    data = bytes(data)
    if len(data) < 8:
        raise CvmError(
            f"{len(data)} bytes is too short; X and Y amounts take 8 bytes", offset=len(data)
        )
    if (len(data) - 8) % 2:
        raise CvmError(
            "odd number of bytes after the amounts; each CV Rule is 2 bytes", offset=len(data) - 1
        )
    rules = tuple(CvRule(data[i], data[i + 1]) for i in range(8, len(data), 2))
    return CvmList(int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big"), rules)


def encode_cvm_list(cvm: CvmList) -> bytes:
    """The wire form of a CVM List."""
    body = b"".join(bytes([r.code, r.condition]) for r in cvm.rules)
    return cvm.x.to_bytes(4, "big") + cvm.y.to_bytes(4, "big") + body


class Outcome(StrEnum):
    """What happened when the terminal performed a CVM (an input to the decision)."""

    SUCCESS = "success"
    FAIL = "fail"
    PIN_BYPASSED = "pin_bypassed"
    PIN_TRY_LIMIT_EXCEEDED = "pin_try_limit_exceeded"


@dataclass(frozen=True)
class CvmContext:
    """Terminal and transaction facts CVM selection depends on."""

    terminal_capabilities: bytes
    amount: int = 0
    transaction_currency: int | None = None
    application_currency: int | None = None
    cash: bool = False
    cashback: bool = False
    unattended: bool = False
    pin_pad_working: bool = True
    outcomes: Mapping[int, Outcome] = field(default_factory=dict)


@dataclass(frozen=True)
class CvmSelection:
    """The rule that completed cardholder verification (None if it failed or none applied)."""

    rule: CvRule | None
    cvm_results: bytes
    tvr_bits: frozenset[str]
    tsi_bits: frozenset[str]
    trace: tuple[str, ...]

    @property
    def successful(self) -> bool:
        return self.rule is not None


def _supported(method: int, caps: bytes) -> bool:
    needs = _NEEDS.get(method)
    if needs is None:
        return False
    return all(bits.is_set(caps, n, tag=0x9F33) for n in needs)


def _condition_met(rule: CvRule, cvm: CvmList, ctx: CvmContext) -> bool | None:
    """True/False for a known condition; None when the code is not understood."""
    c = rule.condition
    if c == 0x00:
        return True
    if c == 0x01:
        return ctx.cash and ctx.unattended
    if c == 0x02:
        return not ctx.cash and not ctx.cashback
    if c == 0x03:
        return _supported(rule.method, ctx.terminal_capabilities)
    if c == 0x04:
        return ctx.cash and not ctx.unattended
    if c == 0x05:
        return ctx.cashback
    if 0x06 <= c <= 0x09:
        same = (
            ctx.application_currency is not None
            and ctx.transaction_currency == ctx.application_currency
        )
        limit = cvm.x if c in (0x06, 0x07) else cvm.y
        return same and (ctx.amount < limit if c in (0x06, 0x08) else ctx.amount > limit)
    return None


def select_cvm(
    cvm_list: CvmList | bytes | None, context: CvmContext, *, aip_cv_supported: bool = True
) -> CvmSelection:
    """Walk the CVM List and decide cardholder verification, with CVM Results and TVR bits."""
    if not aip_cv_supported:
        return CvmSelection(
            None, b"\x3f\x00\x00", frozenset(), frozenset(), ("AIP: CV not supported",)
        )
    if cvm_list is None:
        return CvmSelection(
            None, b"\x3f\x00\x00", frozenset({"icc_data_missing"}), frozenset(), ("no CVM List",)
        )
    cvm = parse_cvm_list(cvm_list) if isinstance(cvm_list, bytes | bytearray) else cvm_list
    tvr: set[str] = set()
    trace: list[str] = []
    tsi = frozenset({"cv_performed"})
    last_failed: CvRule | None = None
    for rule in cvm.rules:
        met = _condition_met(rule, cvm, context)
        if not met:
            trace.append(f"{rule.code:02X}{rule.condition:02X}: condition not satisfied")
            continue
        outcome, why = _perform(rule, context, tvr)
        trace.append(f"{rule.code:02X}{rule.condition:02X}: {why}")
        if outcome is not None:
            return CvmSelection(
                rule, bytes([rule.code, rule.condition, outcome]), frozenset(tvr), tsi, tuple(trace)
            )
        last_failed = rule
        if not rule.apply_next:
            break
    tvr.add("cv_not_successful")
    if last_failed is None:
        results = b"\x3f\x00\x01"
        trace.append("no rule applied: cardholder verification not successful")
    else:
        results = bytes([last_failed.code, last_failed.condition, 0x01])
        trace.append("cardholder verification failed")
    return CvmSelection(None, results, frozenset(tvr), tsi, tuple(trace))


def _perform(rule: CvRule, ctx: CvmContext, tvr: set[str]) -> tuple[int | None, str]:
    """Result byte (2 successful, 0 unknown) on success, None on failure; TVR bits added."""
    method = rule.method
    if method not in _NEEDS:
        tvr.add("unrecognised_cvm")
        return None, "unrecognised CVM"
    if method == 0x00:
        return None, "Fail CVM processing"
    if not _supported(method, ctx.terminal_capabilities):
        return None, "CVM not supported by terminal"
    if method in _PIN_CODES and not ctx.pin_pad_working:
        tvr.add("pin_pad_missing")
        return None, "PIN pad not present or not working"
    outcome = ctx.outcomes.get(method, Outcome.SUCCESS)
    if outcome is Outcome.PIN_BYPASSED and method in _PIN_CODES:
        tvr.add("pin_not_entered")
        return None, "PIN entry bypassed"
    if outcome is Outcome.PIN_TRY_LIMIT_EXCEEDED and method in _PIN_CODES:
        tvr.add("pin_try_limit_exceeded")
        return None, "PIN try limit exceeded"
    if outcome is not Outcome.SUCCESS:
        return None, "CVM failed"
    if method == 0x02:
        tvr.add("online_pin_entered")
        return 0x00, "online PIN entered (result unknown until the issuer answers)"
    if method in (0x03, 0x05, 0x1E):
        return 0x00, "signature to be checked (result unknown)"
    return 0x02, "successful"
