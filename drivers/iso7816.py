"""ISO/IEC 7816-4 (and EMV Book 3) instruction names and status word meanings, for transcripts.

Decoded forms are cached per INS byte and per status word, so describing an APDU costs one dict
lookup on the driver's hot path. The returned dicts are shared: treat them as read-only.
"""

from __future__ import annotations

from typing import Any

INS_NAMES: dict[int, str] = {
    0x04: "DEACTIVATE FILE",
    0x0E: "ERASE BINARY",
    0x10: "PERFORM SCQL OPERATION",
    0x16: "CARD BLOCK",
    0x18: "APPLICATION UNBLOCK",
    0x1E: "APPLICATION BLOCK",
    0x20: "VERIFY",
    0x21: "VERIFY",
    0x22: "MANAGE SECURITY ENVIRONMENT",
    0x24: "CHANGE REFERENCE DATA",
    0x26: "DISABLE VERIFICATION REQUIREMENT",
    0x28: "ENABLE VERIFICATION REQUIREMENT",
    0x2A: "PERFORM SECURITY OPERATION",
    0x2C: "RESET RETRY COUNTER",
    0x44: "ACTIVATE FILE",
    0x46: "GENERATE ASYMMETRIC KEY PAIR",
    0x70: "MANAGE CHANNEL",
    0x82: "EXTERNAL AUTHENTICATE",
    0x84: "GET CHALLENGE",
    0x86: "GENERAL AUTHENTICATE",
    0x87: "GENERAL AUTHENTICATE",
    0x88: "INTERNAL AUTHENTICATE",
    0xA0: "SEARCH BINARY",
    0xA2: "SEARCH RECORD",
    0xA4: "SELECT",
    0xA8: "GET PROCESSING OPTIONS",
    0xAE: "GENERATE APPLICATION CRYPTOGRAM",
    0xB0: "READ BINARY",
    0xB1: "READ BINARY",
    0xB2: "READ RECORD",
    0xB3: "READ RECORD",
    0xC0: "GET RESPONSE",
    0xC2: "ENVELOPE",
    0xCA: "GET DATA",
    0xCB: "GET DATA",
    0xD0: "WRITE BINARY",
    0xD2: "WRITE RECORD",
    0xD6: "UPDATE BINARY",
    0xDA: "PUT DATA",
    0xDC: "UPDATE RECORD",
    0xE0: "CREATE FILE",
    0xE2: "APPEND RECORD",
    0xE4: "DELETE FILE",
    0xE6: "TERMINATE DF",
    0xE8: "TERMINATE EF",
    0xFE: "TERMINATE CARD USAGE",
}
"""Instruction byte -> command name (ISO/IEC 7816-4 table of commands; A8/AE from EMV Book 3)."""

SW_MEANINGS: dict[int, str] = {
    0x9000: "normal processing",
    0x6200: "warning: state of non-volatile memory unchanged",
    0x6281: "warning: part of returned data may be corrupted",
    0x6282: "warning: end of file reached before reading Le bytes",
    0x6283: "warning: selected file deactivated",
    0x6284: "warning: file control information not formatted",
    0x6300: "warning: verification failed",
    0x6400: "error: state of non-volatile memory unchanged",
    0x6581: "error: memory failure",
    0x6700: "wrong length",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    0x6981: "command incompatible with file structure",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6984: "reference data not usable",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6A80: "incorrect parameters in the data field",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A84: "not enough memory space in the file",
    0x6A86: "incorrect parameters P1-P2",
    0x6A88: "referenced data not found",
    0x6B00: "wrong parameters P1-P2 (offset outside the EF)",
    0x6D00: "instruction code not supported or invalid",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}
"""Status word -> meaning (ISO/IEC 7816-4 section 5.6 tables of SW1-SW2)."""


def sw_meaning(sw: int) -> str:
    """Meaning of a status word, including the parameterised ones (61xx, 6Cxx, 63Cx)."""
    text = SW_MEANINGS.get(sw)
    if text is not None:
        return text
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2 or 256} response bytes still available (GET RESPONSE)"
    if sw1 == 0x6C:
        return f"wrong Le: {sw2 or 256} bytes available"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"verification failed, {sw2 & 0x0F} tries left"
    if sw1 in (0x62, 0x63):
        return "warning"
    if 0x64 <= sw1 <= 0x6F:
        return "error"
    if sw1 == 0x90 or 0x91 <= sw1 <= 0x9F:
        return "application-specific status"
    return "unknown status word"


_COMMAND_CACHE: dict[int, dict[str, Any]] = {}
_SW_CACHE: dict[int, dict[str, Any]] = {}


def describe_command(apdu: bytes) -> dict[str, Any]:
    """Decoded form of a command APDU for a transcript: {"ins": name}."""
    if len(apdu) < 4:
        return {"ins": None, "error": f"{len(apdu)} bytes: shorter than a command header"}
    ins = apdu[1]
    found = _COMMAND_CACHE.get(ins)
    if found is None:
        found = _COMMAND_CACHE[ins] = {"ins": INS_NAMES.get(ins, f"INS {ins:02X}")}
    return found


def describe_sw(sw: int) -> dict[str, Any]:
    """Decoded form of a response's status word for a transcript: {"sw": "9000", "meaning": ...}."""
    found = _SW_CACHE.get(sw)
    if found is None:
        found = _SW_CACHE[sw] = {"sw": f"{sw:04X}", "meaning": sw_meaning(sw)}
    return found
