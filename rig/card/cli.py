"""`rig card`: serve a card profile at a vpcd reader, capture a card into a profile draft."""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path
from typing import Annotated

import typer

from rig.bench.pcscd import DEFAULT_VPCD_PORT
from rig.cli_support import fail

app = typer.Typer(
    help="Card simulator: serve a card profile, capture a real card.", no_args_is_help=True
)


def _endpoint(text: str, option: str, as_json: bool) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise fail(f"{option} {text!r}: expected host:port, e.g. 127.0.0.1:0", as_json=as_json)
    return host, int(port)


@app.command()
def serve(
    profile: Annotated[Path, typer.Argument(help="card profile YAML (or a capture draft)")],
    port: Annotated[int, typer.Option(help="vpcd port: 35963 reader 00 00, 35964 00 01")] = (
        DEFAULT_VPCD_PORT
    ),
    host: Annotated[str, typer.Option(help="vpcd host")] = "127.0.0.1",
    control: Annotated[str, typer.Option(help="control port host:port (0: any free port)")] = (
        "127.0.0.1:0"
    ),
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="folder keeping card state between runs (EMV: ATC, PIN tries, blocking; "
            "purse: balance, counters, log, PIN tries)"
        ),
    ] = None,
    interface: Annotated[str, typer.Option(help="contact or contactless")] = "contact",
    transcript: Annotated[
        Path | None, typer.Option(help="JSON-lines trace of every APDU, decoded and redacted")
    ] = None,
    mute_timeout: Annotated[float, typer.Option(help="reader waiting time of a mute card, s")] = (
        1.0
    ),
    absent: Annotated[bool, typer.Option(help="start with the card out of the reader")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="errors as JSON on stderr")] = False,
) -> None:
    """Serve PROFILE at a vpcd reader until SIGTERM / Ctrl-C; prints one readiness JSON line.

    The card answers with the T=0 rules (61xx then GET RESPONSE when the data exceeds Le or
    the command had no Le; 6Cxx for a short Le without command data), whichever protocol the
    reader chose. The control port takes the JSON lines of `rig.bench.sim.cardsim`: insert,
    remove, mute, fault, clear_faults, swap, status.
    """
    from rig.bench.sim import cardsim
    from rig.card.host import CardHostError, build
    from rig.profiles import ProfileError
    from rig.profiles.capture import load_for_serving

    if interface not in ("contact", "contactless"):
        raise fail(f"--interface {interface!r}: use contact or contactless", as_json=as_json)
    if not 1 <= port <= 65535:
        raise fail(f"--port {port}: not a TCP port", as_json=as_json)
    if mute_timeout <= 0:
        raise fail("--mute-timeout must be a positive number of seconds", as_json=as_json)
    chost, cport = _endpoint(control, "--control", as_json)
    try:
        load_for_serving(profile)
        build(profile, interface=interface)
    except (ProfileError, CardHostError) as exc:
        raise fail(str(exc), as_json=as_json) from None
    signal.signal(signal.SIGTERM, _stop)
    code = 0
    with contextlib.suppress(KeyboardInterrupt):
        code = cardsim.run(
            host,
            port,
            (chost, cport),
            profile=str(profile),
            state_dir=state_dir,
            interface=interface,
            absent=absent,
            mute_timeout=mute_timeout,
            transcript_path=str(transcript) if transcript else None,
        )
    raise typer.Exit(code)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def capture(
    reader: Annotated[str, typer.Option(help="PC/SC reader name, e.g. 'Virtual PCD 00 01'")],
    out: Annotated[Path, typer.Option(help="where to write the profile draft YAML")],
    keep_pan: Annotated[
        bool, typer.Option(help="keep the PAN in clear (TEST cards only); default masked")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary")] = False,
) -> None:
    """Read a card's public data (PPSE/PSE, FCI, GPO, records, GET DATA) into a profile draft.

    No keys are read or written; the PAN is masked first 6 / last 4 unless --keep-pan.
    """
    from drivers.pcsc import PcscError, PcscReader
    from rig.card.capture import CaptureError, CardCapture, profile_id_for, write_draft

    try:
        with PcscReader(reader) as rdr:
            rdr.wait_for_card(5.0)
            rdr.connect()
            cap = CardCapture(rdr, keep_pan=keep_pan)
            draft = cap.run(reader_name=reader, profile_id=profile_id_for(out))
    except (PcscError, CaptureError) as exc:
        raise fail(f"capture from {reader!r}: {exc}", as_json=as_json) from None
    try:
        write_draft(draft, out)
    except OSError as exc:
        raise fail(f"--out {out}: cannot write ({exc.strerror})", as_json=as_json) from None
    summary = {
        "ok": True,
        "out": str(out),
        "id": draft["id"],
        "applications": [a["aid"] for a in draft["applications"]],
        "records": sum(len(recs) for a in draft["applications"] for recs in a["records"].values()),
        "pan_masked": not keep_pan,
        "apdus": cap.apdus,
    }
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(
            f"captured {', '.join(summary['applications'])} ({summary['records']} records, "
            f"PAN {'masked' if not keep_pan else 'in clear'}) -> {out}"
        )
