"""The single redaction step: PANs masked first 6 / last 4, PIN blocks, keys and track data dropped.

Applied by `Transcript` when entries are written, never by drivers, so one rule set covers
every instrument. Raw bytes are rendered as hex; PAN-like digit runs are found both as ASCII
text and as BCD nibbles, and only runs that pass the Luhn check are masked, which keeps
ordinary counters and amounts readable.
"""

from __future__ import annotations

import re
from typing import Any

SENSITIVE_KEYS = frozenset(
    {
        "pin",
        "pin_block",
        "pinblock",
        "key",
        "keys",
        "bdk",
        "ipek",
        "zmk",
        "zpk",
        "tpk",
        "tmk",
        "mac_key",
        "pin_key",
        "data_key",
        "master_key",
        "session_key",
        "track1",
        "track2",
        "track2_equivalent",
        "track_data",
        "cvv",
        "cvc",
        "cvv2",
        "password",
        "secret",
    }
)
"""Field names whose values never reach evidence (case-insensitive, '-' folded to '_')."""

DROPPED = "[redacted]"

_ASCII_TRACK2 = re.compile(rb";?[0-9]{12,19}[=D][0-9]{4,}\??")
_ASCII_TRACK1 = re.compile(rb"%?B[0-9]{12,19}\^[^^]{2,26}\^[0-9]{4,}[^?]*\??")
_ASCII_DIGITS = re.compile(rb"[0-9]{13,19}")
_TEXT_TRACK2 = re.compile(r";?\b[0-9]{12,19}[=D][0-9]{4,}\??")
_TEXT_TRACK1 = re.compile(r"%?B[0-9]{12,19}\^[^^]{2,26}\^[0-9]{4,}[^?\s]*\??")
_TEXT_DIGITS = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")
_HEX_TRACK2 = re.compile(r"[1-9][0-9]{11,18}D[0-9]{4,}F?")
_HEX_DIGITS = re.compile(r"[0-9]{13,}")


def luhn_ok(digits: str) -> bool:
    """True when a digit string passes the Luhn (mod 10) check used by card PANs."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def mask_pan(pan: str) -> str:
    """Mask a PAN to first 6 / last 4, e.g. 476173******0010."""
    if len(pan) < 11:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def _mask_text_run(match: re.Match[str]) -> str:
    run = match.group(0)
    return mask_pan(run) if run[0] != "0" and luhn_ok(run) else run


def redact_text(text: str) -> str:
    """Drop track data and mask Luhn-valid 13–19 digit runs in free text."""
    text = _TEXT_TRACK1.sub(DROPPED, text)
    text = _TEXT_TRACK2.sub(DROPPED, text)
    return _TEXT_DIGITS.sub(_mask_text_run, text)


def _luhn_prefixes(digits: str) -> tuple[list[int], list[int]]:
    """Prefix sums of Luhn contributions with even / odd absolute positions doubled.

    The Luhn sum of digits[s:e] doubles the positions j with (e - 1 - j) odd, i.e. j of the
    same parity as e, so any window is checked in O(1) from these two lists.
    """
    even, odd = [0], [0]
    for j, ch in enumerate(digits):
        d = ord(ch) - 48
        dd = d * 2 - 9 if d > 4 else d * 2
        even.append(even[-1] + (dd if j % 2 == 0 else d))
        odd.append(odd[-1] + (d if j % 2 == 0 else dd))
    return even, odd


def _pan_end(digits: str, start: int, sums: tuple[list[int], list[int]]) -> int:
    """End of a plausible PAN (13–19 digits, no leading 0, Luhn-valid) at `start`, or -1."""
    if digits[start] == "0":
        return -1
    even, odd = sums
    for end in range(min(len(digits), start + 19), start + 12, -1):
        table = even if end % 2 == 0 else odd
        if (table[end] - table[start]) % 10 == 0 and not _ascii_hex_like(digits[start:end]):
            return end
    return -1


def _ascii_hex_like(digits: str) -> bool:
    """Byte-aligned hex whose every byte is printable ASCII (20–79): text, masked at byte level."""
    return all("2" <= digits[i] <= "7" for i in range(0, len(digits) - 1, 2))


def _mask_hex_run(match: re.Match[str]) -> str:
    run = match.group(0)
    out = list(run)
    sums = _luhn_prefixes(run)
    i = match.start() % 2  # BCD PANs start on a byte boundary of the hex rendering
    while i <= len(run) - 13:
        end = _pan_end(run, i, sums)
        if end < 0:
            i += 2
            continue
        out[i + 6 : end - 4] = "*" * (end - i - 10)
        i = end + (end - i) % 2
    return "".join(out)


def _drop_hex_track2(match: re.Match[str]) -> str:
    run = match.group(0)
    pan = run[: run.index("D")]
    if not _ascii_hex_like(pan) and any(luhn_ok(pan[i:]) for i in range(0, len(pan) - 12)):
        return "*" * 8
    return run


def redact_bytes(raw: bytes) -> str:
    """Render raw bytes as hex with track data dropped and PANs masked (ASCII and BCD forms).

    A PAN candidate is 13–19 digits, not starting with 0, passing Luhn; BCD candidates start on
    a byte boundary. Masking errs towards hiding a number that merely looks like a PAN.
    """
    raw = _ASCII_TRACK1.sub(b"*" * 4, raw)
    raw = _ASCII_TRACK2.sub(b"*" * 4, raw)

    def ascii_pan(m: re.Match[bytes]) -> bytes:
        run = m.group(0).decode()
        return mask_pan(run).encode() if run[0] != "0" and luhn_ok(run) else m.group(0)

    raw = _ASCII_DIGITS.sub(ascii_pan, raw)
    hx = raw.hex().upper()
    hx = _HEX_TRACK2.sub(_drop_hex_track2, hx)
    return _HEX_DIGITS.sub(_mask_hex_run, hx)


def _is_sensitive(key: str) -> bool:
    return key.lower().replace("-", "_") in SENSITIVE_KEYS


def redact_value(value: Any) -> Any:
    """Redact a decoded form (dicts, lists, strings, bytes) recursively for evidence."""
    if isinstance(value, dict):
        return {
            k: (DROPPED if isinstance(k, str) and _is_sensitive(k) else redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return redact_bytes(bytes(value))
    if isinstance(value, str):
        return redact_text(value)
    return value
