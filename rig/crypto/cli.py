"""`rig crypto`: payment-crypto calculator for support engineers. Test keys only."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import typer

from rig.cli_support import fail
from rig.crypto import dukpt, pinblock, tr31
from rig.crypto.keys import kcv_aes_cmac, kcv_aes_ecb, kcv_tdes
from rig.crypto.mac import aes_cmac, mac_alg1, mac_alg3
from rig.crypto.primitives import CryptoError, parse_hex, tdes_ecb_encrypt

app = typer.Typer(
    help="Payment cryptography calculator (test keys only): KCV, DUKPT, PIN blocks, MAC, TR-31.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
pinblock_app = typer.Typer(help="ISO 9564-1 PIN blocks, formats 0-4.", no_args_is_help=True)
tr31_app = typer.Typer(help="TR-31 key blocks, versions B and D.", no_args_is_help=True)
app.add_typer(pinblock_app, name="pinblock")
app.add_typer(tr31_app, name="tr31")

JSON_OPT = typer.Option(False, "--json", help="Print one JSON object.")
FORMAT_OPT = typer.Option(..., "--format", help="ISO 9564-1 format 0, 1, 2, 3 or 4.")
PAN_OPT = typer.Option(None, "--pan", help="Test PAN (formats 0, 3, 4).")
PIN_KEY_OPT = typer.Option(None, "--key", help="PIN key in hex (test key).")
BDK_OPT = typer.Option(None, "--bdk", help="DUKPT BDK in hex (test BDK).")
KSN_OPT = typer.Option(None, "--ksn", help="DUKPT KSN in hex, 10 or 12 bytes.")


def _run(body: Callable[[], dict[str, Any]], as_json: bool) -> None:
    """Run a command body; CryptoError becomes one line on stderr and exit code 2."""
    try:
        result = body()
    except CryptoError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        width = max(len(k) for k in result)
        for name, value in result.items():
            typer.echo(f"{name.ljust(width)}  {value}")


def _hex(data: bytes) -> str:
    return data.hex().upper()


def _tdes_kcv(key: bytes) -> str:
    return _hex(kcv_tdes(key))


def _aes_kcv(key: bytes) -> str:
    return _hex(kcv_aes_cmac(key))


@app.command("kcv")
def kcv_command(
    key: str = typer.Option(..., "--key", help="Key in hex (test keys only)."),
    algorithm: str = typer.Option("tdes", "--algorithm", help="tdes or aes."),
    as_json: bool = JSON_OPT,
) -> None:
    """Key check value: TDES (E(K, zeros), 3 bytes) or AES (CMAC 5 bytes and legacy ECB 3 bytes)."""

    def body() -> dict[str, Any]:
        if algorithm == "tdes":
            k = parse_hex(key, "--key", (8, 16, 24))
            return {"algorithm": "tdes", "kcv": _hex(kcv_tdes(k))}
        if algorithm == "aes":
            k = parse_hex(key, "--key", (16, 24, 32))
            return {
                "algorithm": "aes",
                "kcv_cmac": _hex(kcv_aes_cmac(k)),
                "kcv_ecb_legacy": _hex(kcv_aes_ecb(k)),
            }
        raise CryptoError(f"--algorithm must be tdes or aes, got {algorithm!r}")

    _run(body, as_json)


@app.command("dukpt")
def dukpt_command(
    bdk: str = typer.Option(..., "--bdk", help="Base derivation key in hex (test BDK only)."),
    ksn: str = typer.Option(..., "--ksn", help="KSN: 10 bytes (TDES) or 12 bytes (AES)."),
    aes: bool = typer.Option(False, "--aes", help="AES DUKPT (X9.24-3) instead of TDES."),
    key_type: str = typer.Option("AES128", "--key-type", help="AES DUKPT working key type."),
    as_json: bool = JSON_OPT,
) -> None:
    """Initial key and this transaction's PIN, MAC and data keys with their KCVs."""

    def body() -> dict[str, Any]:
        if aes:
            b = parse_hex(bdk, "--bdk", (16, 24, 32))
            k = parse_hex(ksn, "--ksn", (12,))
            ik = dukpt.aes_initial_key(b, k[:8])
            out: dict[str, Any] = {
                "scheme": "AES DUKPT (ANSI X9.24-3:2017)",
                "initial_key_id": _hex(k[:8]),
                "counter": int.from_bytes(k[8:], "big"),
                "initial_key": _hex(ik),
                "initial_key_kcv": _aes_kcv(ik),
            }
            keys = dukpt.aes_working_keys(b, k, key_type)
            kcv = _tdes_kcv if key_type.startswith("TDES") else _aes_kcv
            for usage, value in keys.items():
                out[f"{usage}_key"] = _hex(value)
                out[f"{usage}_kcv"] = kcv(value)
            return out
        b = parse_hex(bdk, "--bdk", (16,))
        k = parse_hex(ksn, "--ksn", (10,))
        ipek = dukpt.tdes_ipek(b, k)
        out = {
            "scheme": "TDES DUKPT (ANSI X9.24-1:2009)",
            "counter": int.from_bytes(k, "big") & dukpt.TDES_COUNTER_MASK,
            "ipek": _hex(ipek),
            "ipek_kcv": _tdes_kcv(ipek),
        }
        txn = dukpt.tdes_transaction_key(b, k)
        out["transaction_key"] = _hex(txn)
        for usage in ("pin", "mac", "mac_response", "data", "data_response"):
            value = dukpt.tdes_variant(txn, usage)
            out[f"{usage}_key"] = _hex(value)
            out[f"{usage}_kcv"] = _tdes_kcv(value)
        return out

    _run(body, as_json)


def _pin_key(fmt: int, key: str | None, bdk: str | None, ksn: str | None) -> tuple[bytes, str]:
    """The PIN encryption key from --key or --bdk/--ksn, with a label naming where it came from."""
    if key and (bdk or ksn):
        raise CryptoError("give either --key or --bdk with --ksn, not both")
    if key:
        lengths = (16, 24, 32) if fmt == 4 else (16, 24)
        k = parse_hex(key, "--key", lengths)
        return k, "given key"
    if not (bdk and ksn):
        raise CryptoError("give --key, or both --bdk and --ksn")
    raw_ksn = parse_hex(ksn, "--ksn", (10, 12))
    if len(raw_ksn) == 10:
        if fmt == 4:
            raise CryptoError("format 4 needs an AES key: use a 12-byte AES DUKPT KSN or --key")
        b = parse_hex(bdk, "--bdk", (16,))
        return dukpt.tdes_variant(dukpt.tdes_transaction_key(b, raw_ksn), "pin"), "TDES DUKPT"
    b = parse_hex(bdk, "--bdk", (16, 24, 32))
    key_type = "AES128" if fmt == 4 else "TDES2"
    return dukpt.aes_working_key(b, raw_ksn, "pin", key_type), f"AES DUKPT ({key_type})"


def _pin_key_kcv(fmt: int, key: bytes) -> str:
    return _aes_kcv(key) if fmt == 4 else _tdes_kcv(key)


@pinblock_app.command("encode")
def pinblock_encode(
    fmt: int = FORMAT_OPT,
    pin: str = typer.Option(..., "--pin", help="Test PIN, 4 to 12 digits."),
    pan: str | None = PAN_OPT,
    key: str | None = PIN_KEY_OPT,
    bdk: str | None = BDK_OPT,
    ksn: str | None = KSN_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Build a clear PIN block and, given a key or BDK+KSN, encrypt it. Test keys only."""

    def body() -> dict[str, Any]:
        out: dict[str, Any] = {"format": fmt}
        if fmt == 4:
            pin_field = pinblock.encode_format4_pin_field(pin)
            pan_field = pinblock.encode_format4_pan_field(pan)
            out |= {"pin_field": _hex(pin_field), "pan_field": _hex(pan_field)}
        else:
            clear = pinblock.encode(fmt, pin, pan)
            out["clear_block"] = _hex(clear)
        if key or bdk or ksn:
            k, source = _pin_key(fmt, key, bdk, ksn)
            if fmt == 4:
                encrypted = pinblock.format4_encipher(k, pin_field, pan_field)
            else:
                encrypted = tdes_ecb_encrypt(k, clear)
            out |= {"key_source": source, "key_kcv": _pin_key_kcv(fmt, k)}
            out["encrypted_block"] = _hex(encrypted)
        return out

    _run(body, as_json)


@pinblock_app.command("decode")
def pinblock_decode(
    fmt: int = FORMAT_OPT,
    block: str = typer.Option(..., "--block", help="Encrypted PIN block in hex."),
    pan: str | None = PAN_OPT,
    key: str | None = PIN_KEY_OPT,
    bdk: str | None = BDK_OPT,
    ksn: str | None = KSN_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Decrypt a PIN block and print the PIN on this terminal only. Test keys only, never live."""

    def body() -> dict[str, Any]:
        raw = parse_hex(block, "--block", (16,) if fmt == 4 else (8,))
        k, source = _pin_key(fmt, key, bdk, ksn)
        return {
            "format": fmt,
            "key_source": source,
            "key_kcv": _pin_key_kcv(fmt, k),
            "pin": pinblock.decrypt_pin(fmt, raw, pan, k),
        }

    _run(body, as_json)


@app.command("mac")
def mac_command(
    key: str = typer.Option(..., "--key", help="MAC key in hex (test key)."),
    data: str = typer.Option(..., "--data", help="Message in hex."),
    algorithm: str = typer.Option("alg3", "--algorithm", help="alg1, alg3 or aes-cmac."),
    padding: int = typer.Option(1, "--padding", help="ISO 9797-1 padding method 1 or 2."),
    as_json: bool = JSON_OPT,
) -> None:
    """ISO 9797-1 MAC algorithm 1 (TDES CBC-MAC), algorithm 3 (retail MAC) or AES-CMAC."""

    def body() -> dict[str, Any]:
        message = parse_hex(data, "--data")
        if algorithm == "alg1":
            value = mac_alg1(parse_hex(key, "--key", (16, 24)), message, padding)
        elif algorithm == "alg3":
            value = mac_alg3(parse_hex(key, "--key", (16,)), message, padding)
        elif algorithm == "aes-cmac":
            value = aes_cmac(parse_hex(key, "--key", (16, 24, 32)), message)
        else:
            raise CryptoError(f"--algorithm must be alg1, alg3 or aes-cmac, got {algorithm!r}")
        return {"algorithm": algorithm, "mac": _hex(value)}

    _run(body, as_json)


def _parse_blocks(items: list[str]) -> tuple[tuple[str, str], ...]:
    blocks = []
    for item in items:
        block_id, sep, data = item.partition("=")
        if not sep:
            raise CryptoError(
                f"--block {item!r} must look like ID=DATA, e.g. KS=00604B120F9292800000"
            )
        blocks.append((block_id, data))
    return tuple(blocks)


@tr31_app.command("wrap")
def tr31_wrap(
    kbpk: str = typer.Option(..., "--kbpk", help="Key block protection key in hex (test key)."),
    key: str = typer.Option(..., "--key", help="Key to wrap in hex (test key)."),
    usage: str = typer.Option(..., "--usage", help="Key usage, e.g. P0, B0, K0, M3, D0."),
    version: str = typer.Option("D", "--version", help="Key block version B (TDES) or D (AES)."),
    algorithm: str | None = typer.Option(None, "--algorithm", help="T or A; default by version."),
    mode: str = typer.Option("N", "--mode", help="Mode of use, e.g. E, D, B, G, V, X, N."),
    key_version: str = typer.Option("00", "--key-version", help="Two-character key version."),
    exportability: str = typer.Option("N", "--exportability", help="E, N or S."),
    block: list[str] = typer.Option([], "--block", help="Optional block ID=DATA (repeatable)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Wrap a key in a TR-31 key block. Test keys only."""

    def body() -> dict[str, Any]:
        header = tr31.Header(
            version_id=version,
            key_usage=usage,
            algorithm=algorithm or ("T" if version == "B" else "A"),
            mode_of_use=mode,
            key_version=key_version,
            exportability=exportability,
            optional_blocks=_parse_blocks(block),
        )
        raw_key = parse_hex(key, "--key")
        text = tr31.wrap(parse_hex(kbpk, "--kbpk", (16, 24, 32)), header, raw_key)
        kcv = _aes_kcv(raw_key) if header.algorithm == "A" else _tdes_kcv(raw_key)
        return {"key_block": text, "key_kcv": kcv}

    _run(body, as_json)


@tr31_app.command("unwrap")
def tr31_unwrap(
    kbpk: str = typer.Option(..., "--kbpk", help="Key block protection key in hex (test key)."),
    block: str = typer.Option(..., "--block", help="TR-31 key block text."),
    as_json: bool = JSON_OPT,
) -> None:
    """Authenticate and unwrap a TR-31 key block; prints the header and the key. Test keys only."""

    def body() -> dict[str, Any]:
        header, raw_key = tr31.unwrap(parse_hex(kbpk, "--kbpk", (16, 24, 32)), block)
        kcv = _aes_kcv(raw_key) if header.algorithm == "A" else _tdes_kcv(raw_key)
        return {**header.describe(), "key": _hex(raw_key), "key_kcv": kcv}

    _run(body, as_json)
