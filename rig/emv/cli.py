"""`rig tlv`: decode BER-TLV (EMV) data on the spot, with tag names and interpreted values."""

from __future__ import annotations

import json
import sys
from string import hexdigits

import typer

from rig.cli_support import fail
from rig.emv import tlv
from rig.emv.dictionary import describe, render_tree

app = typer.Typer(
    help="Decode BER-TLV (EMV) data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def parse_hex(text: str) -> bytes:
    """Bytes from hex text (spaces, colons, a leading 0x ignored); ValueError names the spot."""
    cleaned = "".join(text.split()).replace(":", "")
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    if not cleaned:
        raise ValueError("no hex digits given; pass the TLV data as hex, e.g. 9F020600000000100")
    for i, ch in enumerate(cleaned):
        if ch not in hexdigits:
            raise ValueError(f"{ch!r} at hex position {i} is not a hex digit; remove or fix it")
    if len(cleaned) % 2:
        raise ValueError(f"odd number of hex digits ({len(cleaned)}); a byte is two hex digits")
    return bytes.fromhex(cleaned)


@app.callback()
def _group() -> None:
    """Decode BER-TLV (EMV) data."""


@app.command("decode")
def decode_cmd(
    hex_data: str = typer.Argument(..., metavar="HEX", help="TLV data as hex, or - for stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a tree."),
    kernel: str = typer.Option("", "--kernel", help="Kernel meaning of shared tags: mastercard."),
    reveal: bool = typer.Option(
        False, "--reveal", help="Show PAN and track data in full (test cards only)."
    ),
) -> None:
    """Decode HEX as BER-TLV and print each tag with its name and interpreted value."""
    text = sys.stdin.read() if hex_data == "-" else hex_data
    try:
        data = parse_hex(text)
        tlvs = tlv.decode(data)
    except tlv.TlvError as e:
        raise fail(f"bad TLV: {e}") from None
    except ValueError as e:
        raise fail(f"bad hex: {e}") from None
    k = kernel or None
    if as_json:
        typer.echo(
            json.dumps({"length": len(data), "tlv": describe(tlvs, kernel=k, reveal=reveal)})
        )
    else:
        typer.echo(render_tree(tlvs, kernel=k, reveal=reveal))
