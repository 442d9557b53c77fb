"""`rig qr`: decode (MPM or CPM, told apart automatically), validate and build QR payloads."""

from __future__ import annotations

import json
from typing import Any

import typer

from rig.cli_support import fail
from rig.qr import cpm, mpm

app = typer.Typer(
    help="Decode, validate and build EMVCo QR payloads.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _mpm_view(payload: str) -> dict[str, Any]:
    problems = mpm.validate(payload)
    try:
        objs = [o.to_dict() for o in mpm.parse(payload)]
    except mpm.MpmError:
        objs = None
    return {
        "mode": "MPM",
        "crc_ok": mpm.crc_ok(payload),
        "valid": not problems,
        "objects": objs,
        "problems": [
            {"position": p.position, "id": p.id, "message": p.message, "fix": p.fix}
            for p in problems
        ],
    }


def _print_objects(objs: list[dict[str, Any]], indent: str = "  ") -> None:
    for o in objs:
        name = mpm.NAMES.get(o["id"], "") if indent == "  " else ""
        if "children" in o:
            typer.echo(f"{indent}{o['id']}  {name}")
            _print_objects(o["children"], indent + "    ")
        else:
            typer.echo(f"{indent}{o['id']}  {o['value']}" + (f"  ({name})" if name else ""))


@app.command("decode")
def decode(
    payload: str = typer.Argument(..., help="QR text: MPM (starts 000201) or CPM (base64)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Decode a QR payload, report whether the CRC holds and every validation problem."""
    if cpm.looks_like_cpm(payload):
        try:
            view = {"mode": "CPM", **cpm.to_dict(cpm.decode(payload))}
        except cpm.CpmError as e:
            raise fail(f"consumer-presented payload: {e}") from None
        if as_json:
            typer.echo(json.dumps(view, ensure_ascii=False))
        else:
            typer.echo(json.dumps(view, ensure_ascii=False, indent=2))
        return
    if not payload.startswith("00"):
        raise fail(
            "not a QR payment payload: MPM text starts with 000201, CPM is base64 starting 'hQ'"
        )
    view = _mpm_view(payload)
    if as_json:
        typer.echo(json.dumps(view, ensure_ascii=False))
    else:
        typer.echo(f"MPM  CRC {'ok' if view['crc_ok'] else 'BAD'}")
        if view["objects"] is not None:
            _print_objects(view["objects"])
        for p in view["problems"]:
            typer.echo(f"problem at {p['position']} (ID {p['id']}): {p['message']}; {p['fix']}")
    if view["problems"]:
        raise typer.Exit(1)


@app.command("encode")
def encode(
    merchant_name: str = typer.Option(..., "--merchant-name", help="ID 59, up to 25 characters."),
    city: str = typer.Option(..., "--city", help="ID 60, up to 15 characters."),
    mcc: str = typer.Option(..., "--mcc", help="ID 52, 4-digit merchant category code."),
    currency: str = typer.Option(..., "--currency", help="ID 53, ISO 4217 numeric, e.g. 156."),
    country: str = typer.Option("CN", "--country", help="ID 58, ISO 3166 alpha-2."),
    amount: str | None = typer.Option(None, "--amount", help="ID 54; makes the QR dynamic."),
    account_gui: str | None = typer.Option(None, "--account-gui", help="Account GUID/AID."),
    account_id: str | None = typer.Option(None, "--account-id", help="Merchant account id."),
    reference: str | None = typer.Option(None, "--reference", help="62.05 reference label."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of bare text."),
) -> None:
    """Build a merchant-presented payload (CRC appended) and check it."""
    try:
        payload = mpm.merchant_payload(
            merchant_name=merchant_name,
            city=city,
            mcc=mcc,
            currency=currency,
            country=country,
            amount=amount,
            account_gui=account_gui,
            account_id=account_id,
            reference=reference,
        )
    except mpm.MpmError as e:
        raise fail(str(e)) from None
    problems = mpm.validate(payload)
    if problems:
        raise fail("; ".join(str(p) for p in problems))
    if as_json:
        typer.echo(json.dumps({"payload": payload, "crc": payload[-4:]}, ensure_ascii=False))
    else:
        typer.echo(payload)
