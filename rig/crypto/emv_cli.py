"""`arqc` and `arpc` calculator commands (test keys only); mounted with `register(app)`.

Keys are never printed: output holds the cryptograms, the CVN and the data list.
"""

from __future__ import annotations

import hmac
import json
from typing import Annotated

import typer

from rig.cli_support import fail
from rig.crypto import arqc as ac
from rig.crypto.primitives import CryptoError, parse_hex

__all__ = ["register"]

Hex16 = (16,)


def _icc_mk(cvn: ac.Cvn, mk: str | None, imk: str | None, pan: str | None, psn: str) -> bytes:
    if mk and imk:
        raise CryptoError("give either --mk (ICC master key) or --imk with --pan, not both")
    if mk:
        return parse_hex(mk, "--mk (ICC master key)", Hex16)
    if imk:
        if not pan:
            raise CryptoError("--imk needs --pan (and --psn, default 00) to derive the ICC key")
        return ac.icc_master_key(cvn, parse_hex(imk, "--imk (issuer master key)", Hex16), pan, psn)
    raise CryptoError("give a key: --mk HEX, or --imk HEX with --pan and --psn")


def _tags(items: list[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for item in items:
        tag, sep, value = item.partition("=")
        tag = tag.strip().upper()
        if not sep or not tag:
            raise CryptoError(f"--tag {item!r}: write TAG=HEX, e.g. 9F02=000000001000")
        out[tag] = parse_hex(value, f"--tag {tag}")
    return out


def _print(payload: dict[str, object], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(payload))
    else:
        for key, value in payload.items():
            shown = " ".join(value) if isinstance(value, list) else value
            typer.echo(f"{key}: {shown}")


MkOpt = Annotated[str | None, typer.Option("--mk", help="ICC master key (UDK), 32 hex digits.")]
ImkOpt = Annotated[str | None, typer.Option("--imk", help="Issuer master key, 32 hex digits.")]
PanOpt = Annotated[str | None, typer.Option("--pan", help="Test PAN (with --imk).")]
PsnOpt = Annotated[str, typer.Option("--psn", help="PAN sequence number (5F34).")]
CvnOpt = Annotated[str, typer.Option("--cvn", help="CVN: 10, 18, 22, 16, 20 or pboc.")]
AtcOpt = Annotated[str | None, typer.Option("--atc", help="ATC (9F36), 4 hex digits.")]
UnOpt = Annotated[str | None, typer.Option("--un", help="Unpredictable number (9F37).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def arqc_command(
    cvn: CvnOpt = "18",
    mk: MkOpt = None,
    imk: ImkOpt = None,
    pan: PanOpt = None,
    psn: PsnOpt = "00",
    atc: AtcOpt = None,
    un: UnOpt = None,
    data: Annotated[
        str | None, typer.Option("--data", help="Raw AC input data (instead of --tag).")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="TAG=HEX, repeat for each CDOL1 element.")
    ] = None,
    verify: Annotated[
        str | None, typer.Option("--verify", help="ARQC to verify instead of generating.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate (or with --verify, check) an ARQC/TC/AAC for a CVN."""
    try:
        spec = ac.get_cvn(cvn)
        icc_mk = _icc_mk(spec, mk, imk, pan, psn)
        tags = _tags(tag or [])
        if atc is not None:
            tags["9F36"] = parse_hex(atc, "--atc", (2,))
        if un is not None:
            tags["9F37"] = parse_hex(un, "--un", (4,))
        if data is not None:
            if "9F36" not in tags:
                raise CryptoError("--data needs --atc for the session key")
            raw = parse_hex(data, "--data")
            un_b = tags.get("9F37")
            key = ac.session_key(spec, icc_mk, tags["9F36"], un_b)
            cryptogram = ac.compute_ac(key, raw, spec.padding)
            elements: list[str] = ["raw data"]
        else:
            cryptogram = ac.generate_ac(spec, icc_mk, tags)
            elements = list(spec.elements)
        payload: dict[str, object] = {"cvn": spec.name, "elements": elements}
        if verify is not None:
            expected = parse_hex(verify, "--verify (ARQC)", (8,))
            payload["verified"] = hmac.compare_digest(cryptogram, expected)
        else:
            payload["arqc"] = cryptogram.hex().upper()
    except CryptoError as exc:
        raise fail(str(exc)) from None
    _print(payload, as_json)
    if verify is not None and not payload["verified"]:
        raise typer.Exit(1)


def arpc_command(
    arqc: Annotated[str, typer.Option("--arqc", help="ARQC (9F26), 16 hex digits.")],
    method: Annotated[
        int | None, typer.Option("--method", help="ARPC method 1 or 2 (default: the CVN's).")
    ] = None,
    arc: Annotated[str | None, typer.Option("--arc", help="ARC, 4 hex digits (method 1).")] = None,
    csu: Annotated[str | None, typer.Option("--csu", help="CSU, 8 hex digits (method 2).")] = None,
    prop: Annotated[
        str, typer.Option("--prop", help="Proprietary authentication data (method 2).")
    ] = "",
    sk: Annotated[
        str | None, typer.Option("--sk", help="Key to use directly, 32 hex digits.")
    ] = None,
    cvn: CvnOpt = "18",
    mk: MkOpt = None,
    imk: ImkOpt = None,
    pan: PanOpt = None,
    psn: PsnOpt = "00",
    atc: AtcOpt = None,
    un: UnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate an ARPC (method 1 from the ARC, method 2 from the CSU)."""
    try:
        spec = ac.get_cvn(cvn)
        chosen = spec.arpc_method if method is None else method
        if chosen not in (1, 2):
            raise CryptoError(f"--method must be 1 or 2, got {chosen}")
        arqc_b = parse_hex(arqc, "--arqc", (8,))
        if sk is not None:
            if mk or imk:
                raise CryptoError("give either --sk or an ICC/issuer master key, not both")
            key = parse_hex(sk, "--sk", Hex16)
        else:
            icc_mk = _icc_mk(spec, mk, imk, pan, psn)
            if spec.arpc_key == "icc_mk":
                key = icc_mk
            else:
                if atc is None:
                    raise CryptoError(f"{spec.name} derives the ARPC key from the ATC: give --atc")
                un_b = parse_hex(un, "--un", (4,)) if un is not None else None
                key = ac.session_key(spec, icc_mk, parse_hex(atc, "--atc", (2,)), un_b)
        if chosen == 1:
            if arc is None:
                raise CryptoError("ARPC method 1 needs --arc (2 bytes, e.g. 3030)")
            arpc = ac.arpc_method1(key, arqc_b, parse_hex(arc, "--arc", (2,)))
        else:
            if csu is None:
                raise CryptoError("ARPC method 2 needs --csu (4 bytes, e.g. 00000000)")
            csu_b = parse_hex(csu, "--csu", (4,))
            arpc = ac.arpc_method2(key, arqc_b, csu_b, parse_hex(prop, "--prop"))
    except CryptoError as exc:
        raise fail(str(exc)) from None
    _print({"cvn": spec.name, "method": chosen, "arpc": arpc.hex().upper()}, as_json)


def register(app: typer.Typer) -> None:
    """Add the `arqc` and `arpc` commands to a Typer application."""
    app.command("arqc")(arqc_command)
    app.command("arpc")(arpc_command)
