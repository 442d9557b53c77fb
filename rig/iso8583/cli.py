"""`rig iso8583`: decode and encode messages of the rig's dialect (always masked on output)."""

from __future__ import annotations

import json
from typing import Any

import typer

from rig.cli_support import fail
from rig.iso8583 import messages
from rig.iso8583.framing import FRAMINGS, FramingError, get_framing
from rig.iso8583.messages import Iso8583Error

app = typer.Typer(
    help="Decode and encode ISO 8583 messages of the rig's dialect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

FRAMING_HELP = f"Framing of the bytes: {', '.join(FRAMINGS)} or none."


def _hex(text: str) -> bytes:
    cleaned = "".join(text.split())
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        bad = next(
            (i for i, c in enumerate(cleaned) if c not in "0123456789abcdefABCDEF"), len(cleaned)
        )
        raise fail(
            f"input is not hex (character {bad}); pass the message as hex digits, spaces allowed"
        ) from None


def _unframe(raw: bytes, framing: str) -> list[tuple[bytes, str | None]]:
    if framing == "none":
        return [(raw, None)]
    try:
        reader = get_framing(framing, max_len=1 << 32).reader()
        frames = reader.feed(raw)
    except FramingError as e:
        raise fail(str(e)) from None
    if reader.pending:
        raise fail(
            f"{reader.pending} bytes left after the last complete {framing} frame; "
            "is the capture cut short or the framing wrong?"
        )
    if not frames:
        raise fail(f"no frame found in the input with framing {framing}")
    return [(f.payload, str(f.tpdu) if f.tpdu else None) for f in frames]


def _view(doc: dict[str, str]) -> dict[str, Any]:
    masked = messages.mask(doc)
    out: dict[str, Any] = {"mti": masked["t"], "fields": {}}
    for key, name, value in messages.describe(masked):
        if key in ("t", "p", "1"):
            continue
        entry: dict[str, Any] = {"name": name, "value": value}
        if key == "55":
            try:
                entry["tlv"] = {
                    f"{t:X}": v.hex().upper() for t, v in messages.de55_decode(value).items()
                }
            except Iso8583Error as e:
                entry["error"] = str(e)
        if key == "39":
            entry["meaning"] = messages.RESPONSE_CODES.get(value, "unknown")
        if key in ("48", "62"):
            try:
                entry["subfields"] = messages.private_decode(value, key)
            except Iso8583Error as e:
                entry["error"] = str(e)
        out["fields"][key] = entry
    return out


@app.command("decode")
def decode(
    hex_message: str = typer.Argument(..., metavar="HEX", help="Message bytes as hex."),
    framing: str = typer.Option("none", "--framing", help=FRAMING_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Decode a message: field names, PAN masked, track/PIN block/MAC hidden, DE55 as TLV."""
    if framing != "none" and framing not in FRAMINGS:
        raise fail(f"unknown framing {framing!r}; valid: {', '.join(FRAMINGS)}, none")
    views = []
    for payload, tpdu in _unframe(_hex(hex_message), framing):
        try:
            doc = messages.decode(payload)
        except Iso8583Error as e:
            raise fail(str(e)) from None
        view = _view(doc)
        if tpdu:
            view["tpdu"] = tpdu
        views.append(view)
    if as_json:
        typer.echo(json.dumps(views[0] if len(views) == 1 else views, ensure_ascii=False))
        return
    for view in views:
        head = f"MTI {view['mti']}" + (f"  TPDU {view['tpdu']}" if "tpdu" in view else "")
        typer.echo(head)
        for key, entry in view["fields"].items():
            extra = f"  ({entry['meaning']})" if "meaning" in entry else ""
            typer.echo(f"  {key:>3}  {entry['name']:<52} {entry['value']}{extra}")
            for tag, value in entry.get("tlv", {}).items():
                typer.echo(f"         {tag:<6} {value}")
            for sid, value in entry.get("subfields", {}).items():
                typer.echo(f"         {sid:<6} {value}")


@app.command("encode")
def encode(
    doc_json: str = typer.Argument(
        ..., metavar="JSON", help='Fields, e.g. {"t":"0800","70":"301"}.'
    ),
    framing: str = typer.Option("none", "--framing", help=FRAMING_HELP),
    tpdu: str = typer.Option("6000010000", "--tpdu", help="TPDU hex for len2-tpdu."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of bare hex."),
) -> None:
    """Encode a message from JSON and print its hex."""
    try:
        doc = json.loads(doc_json)
    except json.JSONDecodeError as e:
        raise fail(f"JSON is invalid at character {e.pos}: {e.msg}") from None
    if not isinstance(doc, dict):
        raise fail("JSON must be an object of field number -> string")
    try:
        raw = messages.encode(doc)
        if framing != "none":
            from rig.iso8583.framing import Tpdu

            t = Tpdu.from_bytes(_hex(tpdu)) if framing == "len2-tpdu" else None
            raw = get_framing(framing).frame(raw, t)
    except (Iso8583Error, FramingError) as e:
        raise fail(str(e)) from None
    if as_json:
        typer.echo(json.dumps({"hex": raw.hex().upper(), "length": len(raw)}))
    else:
        typer.echo(raw.hex().upper())
