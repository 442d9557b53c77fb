"""`rig host`: initialise a data folder, serve, control a running host, export the journal, load.

Every command takes `--json`; bad input prints one `error:` line on stderr and exits 2.
Also runnable as `python -m rig.host.cli ...` (how tests and benchmarks start a host).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from rig.host.server import (
    KEYSTORE_FILE,
    MASTER_KEY_FILE,
    STATE_FILE,
    TLS_DIR,
    HostConfig,
    HostError,
    Listener,
)

app = typer.Typer(
    help="Reference acquirer host: init, serve, ctl, journal, load.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
ctl_app = typer.Typer(
    help="Control a running host: status, force, pause, resume, clear, journal, reconcile.",
    no_args_is_help=True,
)
app.add_typer(ctl_app, name="ctl")

JsonOpt = typer.Option(False, "--json", help="Print one JSON object.")
DataOpt = typer.Option(Path("host-data"), "--data", help="Host data folder (keys, journal, TLS).")

TEST_BDK_TDES = "0123456789ABCDEFFEDCBA9876543210"
"""ANSI X9.24-1 (2009) Annex A published TEST BDK."""
TEST_BDK_AES = "FEDCBA9876543210F1F1F1F1F1F1F1F1"
"""ANSI X9.24-3 (2017) published AES-128 TEST BDK."""


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def host_test_key(name: str) -> bytes:
    """A deterministic 16-byte TEST KEY for a key-store name (the same on every init)."""
    return hashlib.sha256(f"posrig TEST HOST KEY {name}".encode()).digest()[:16]


def init_data(
    data: Path,
    terminals: list[str] | tuple[str, ...] = ("TERM0001",),
    *,
    force: bool = False,
    profiles: Path | None = None,
) -> dict[str, Any]:
    """Make a host data folder: master key, key store with TEST keys (plus the issuer master keys
    of the card profiles in `profiles`, when given), TLS certificate."""
    from rig.host import tls
    from rig.host.keystore import KeyStore, KeyStoreError, sync_issuer_keys, write_master_key

    for tid in terminals:
        if len(tid) != 8 or not tid.isascii() or not tid.isprintable():
            raise HostError(f"terminal id {tid!r} must be 8 printable ASCII characters (DE41)")
    cards = _load_profiles(profiles) if profiles is not None else {}
    data.mkdir(parents=True, exist_ok=True)
    master_path = data / MASTER_KEY_FILE
    store_path = data / KEYSTORE_FILE
    if store_path.exists() and not force:
        raise HostError(f"{data} is already initialised; pass --force to replace its keys")
    if force:
        for p in (master_path, store_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    try:
        master = write_master_key(master_path)
        store = KeyStore.create(store_path, master, overwrite=force)
        store.put("zmk", host_test_key("zmk"), kind="zmk")
        store.put("bdk:tdes", bytes.fromhex(TEST_BDK_TDES), kind="bdk-tdes")
        store.put("bdk:aes", bytes.fromhex(TEST_BDK_AES), kind="bdk-aes")
        for tid in terminals:
            store.put(f"tpk:{tid}", host_test_key(f"tpk:{tid}"), kind="tpk")
            store.put(f"tak:{tid}", host_test_key(f"tak:{tid}"), kind="tak")
        issuer_keys = sync_issuer_keys(store, cards).imported
    except KeyStoreError as e:
        raise HostError(str(e)) from None
    cert, _ = tls.make_self_signed(data / TLS_DIR)
    return {
        "data": str(data),
        "master_key_file": str(master_path),
        "keystore": str(store_path),
        "keys": store.describe(),
        "profiles": str(profiles) if profiles is not None else None,
        "issuer_keys": issuer_keys,
        "tls_certificate": str(cert),
        "tls_sha256": tls.fingerprint(cert),
        "test_material": True,
    }


def _load_profiles(folder: Path) -> dict[str, Any]:
    from rig.profiles import ProfileError, load_all

    try:
        return load_all(folder)
    except ProfileError as e:
        raise HostError(f"card profiles: {e}") from None


def _echo_issuer_keys(imported: dict[str, list[dict[str, str]]]) -> None:
    for pid, rows in imported.items():
        kcvs = "  ".join(f"{r['name'].replace(f':{pid}', '')} KCV {r['kcv']}" for r in rows)
        typer.echo(f"    {pid:<32} {kcvs}")


@app.command("init")
def init_cmd(
    data: Path = DataOpt,
    terminal: list[str] = typer.Option(
        ["TERM0001"], "--terminal", help="Terminal id (8 chars) to make PIN/MAC keys for."
    ),
    profiles: Path | None = typer.Option(
        None,
        "--profiles",
        help="Card profiles whose issuer master keys to import (default: ./cardprofiles if any).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing key store."),
    as_json: bool = JsonOpt,
) -> None:
    """Create a data folder: TEST master key, key store (zone, PIN, MAC, BDK, issuer keys), TLS."""
    if profiles is None and Path("cardprofiles").is_dir():
        profiles = Path("cardprofiles")
    try:
        info = init_data(data, terminal, force=force, profiles=profiles)
    except HostError as e:
        raise _fail(str(e)) from None
    if as_json:
        typer.echo(json.dumps(info))
        return
    typer.echo(f"host data folder {data} initialised (TEST keys only)")
    issuer_names = {r["name"] for rows in info["issuer_keys"].values() for r in rows}
    for k in info["keys"]:
        if k["name"] not in issuer_names:
            typer.echo(f"  {k['name']:<16} {k['kind']:<9} KCV {k['kcv']}")
    if info["issuer_keys"]:
        typer.echo(f"  issuer master keys from {profiles}:")
        _echo_issuer_keys(info["issuer_keys"])
    else:
        typer.echo("  no card profiles imported: the host imports them when it starts")
    typer.echo(f"  TLS certificate {info['tls_certificate']} SHA-256 {info['tls_sha256'][:32]}…")


def key_listing(
    data: Path, reimport: list[str] | tuple[str, ...] = (), profiles: Path | None = None
) -> dict[str, Any]:
    """The data folder's key store as name, kind, algorithm, length, KCV (never a key); first
    replaces the issuer master keys of the `reimport` profile ids with those in `profiles`."""
    from rig.host.keystore import KeyStore, KeyStoreError, load_master_key, sync_issuer_keys

    key_file = data / MASTER_KEY_FILE
    try:
        store = KeyStore.open(
            data / KEYSTORE_FILE, load_master_key(key_file if key_file.is_file() else None)
        )
        reimported: dict[str, list[dict[str, str]]] = {}
        if reimport:
            folder = profiles or Path("cardprofiles")
            cards = _load_profiles(folder)
            unknown = [pid for pid in reimport if pid not in cards]
            if unknown:
                raise HostError(
                    f"no card profile {', '.join(map(repr, unknown))} in {folder}; "
                    f"known: {', '.join(sorted(cards)) or 'none'}"
                )
            chosen = {pid: cards[pid] for pid in reimport}
            reimported = sync_issuer_keys(store, chosen, replace=reimport).imported
    except KeyStoreError as e:
        raise HostError(f"key store: {e}") from None
    return {"keystore": str(store.path), "keys": store.describe(), "reimported": reimported}


@app.command("keys")
def keys_cmd(
    data: Path = DataOpt,
    reimport: list[str] = typer.Option(
        [], "--reimport", help="Profile id whose issuer master keys to replace (repeat)."
    ),
    profiles: Path = typer.Option(
        Path("cardprofiles"), "--profiles", help="Card profiles read by --reimport."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """List the key store (name, kind, KCV; never a key); --reimport a re-generated profile."""
    try:
        info = key_listing(data, reimport, profiles)
    except HostError as e:
        raise _fail(str(e)) from None
    if as_json:
        typer.echo(json.dumps(info))
        return
    width = max((len(k["name"]) for k in info["keys"]), default=4)
    for k in info["keys"]:
        typer.echo(f"{k['name']:<{width}}  {k['kind']:<9} KCV {k['kcv']}")
    if reimport:
        typer.echo(f"re-imported from {profiles} (the host uses them from its next start):")
        _echo_issuer_keys(info["reimported"])
        for pid in reimport:
            if pid not in info["reimported"]:
                typer.echo(f"    {pid:<32} unchanged")


@app.command("serve")
def serve_cmd(
    data: Path = DataOpt,
    listen: list[str] = typer.Option(
        ["127.0.0.1:8583"], "--listen", help="HOST:PORT to listen on (repeat; port 0 = any)."
    ),
    framing: str = typer.Option("len2", "--framing", help="len2, len2-tpdu, ascii4, bcd2, len4."),
    use_tls: bool = typer.Option(False, "--tls", help="TLS with the certificate made by init."),
    control: str = typer.Option("127.0.0.1:0", "--control", help="Control API HOST:PORT."),
    profiles: Path = typer.Option(Path("cardprofiles"), "--profiles", help="Card profiles."),
    rules: Path | None = typer.Option(None, "--rules", help="Rule file (default rules if unset)."),
    max_frame: int = typer.Option(8192, "--max-frame", help="Longest accepted frame (bytes)."),
    idle_timeout: float = typer.Option(300.0, "--idle-timeout", help="Close idle links (s)."),
    echo_keepalive: bool = typer.Option(False, "--echo-keepalive", help="Answer keep-alives."),
    group_window: float = typer.Option(
        0.0, "--group-window", help="Extra wait to grow a commit batch (s); 0: natural batching."
    ),
    log_messages: bool = typer.Option(False, "--log-messages", help="Log masked messages."),
    as_json: bool = JsonOpt,
) -> None:
    """Run the host until SIGTERM/SIGINT; prints one readiness JSON line with the endpoints."""
    from rig.host.server import serve_forever

    try:
        listeners = [Listener.parse(text, framing, use_tls) for text in listen]
        chost, sep, cport = control.rpartition(":")
        if not sep or not cport.isdigit():
            raise HostError(f"control address {control!r} is not HOST:PORT")
        if max_frame < 64 or idle_timeout <= 0 or not 0 <= group_window <= 1:
            raise HostError("--max-frame >= 64, --idle-timeout > 0, --group-window 0..1 s")
    except HostError as e:
        raise _fail(str(e)) from None
    config = HostConfig(
        data=data,
        listeners=listeners,
        max_frame=max_frame,
        idle_timeout=idle_timeout,
        echo_keepalive=echo_keepalive,
        profiles=profiles,
        rules=rules,
        control=(chost, int(cport)),
        group_window=group_window,
        log_messages=log_messages,
    )

    def ready(server: Any) -> None:
        line = {
            "ready": True,
            "pid": os.getpid(),
            "endpoints": {
                "listen": server.addresses[0]["address"],
                "listeners": server.addresses,
                "control": server.control_address,
            },
        }
        if as_json:
            typer.echo(json.dumps(line))
        else:
            for a in server.addresses:
                typer.echo(f"host listening on {a['address']} ({a['framing']}, tls={a['tls']})")
            typer.echo(f"control API on {server.control_address}")
        sys.stdout.flush()

    try:
        asyncio.run(serve_forever(config, ready))
    except HostError as e:
        if as_json:
            typer.echo(json.dumps({"ready": False, "error": str(e)}))
        raise _fail(str(e)) from None
    except KeyboardInterrupt:
        pass


# ---- ctl -------------------------------------------------------------------------------------

ControlOpt = typer.Option(None, "--control", help="Control HOST:PORT (default: from --data).")
CtlDataOpt = typer.Option(Path("host-data"), "--data", help="Data folder of the running host.")


def _client(control: str | None, data: Path) -> Any:
    from rig.host.control import ControlError, HostControl

    if control is None:
        state = data / STATE_FILE
        try:
            control = json.loads(state.read_text())["control"]
        except (OSError, ValueError, KeyError, TypeError):
            raise _fail(
                f"no running host recorded in {state}; pass --control HOST:PORT or --data DIR"
            ) from None
    try:
        return HostControl(str(control))
    except ControlError as e:
        raise _fail(str(e)) from None


def _ctl(
    control: str | None,
    data: Path,
    as_json: bool,
    cmd: str,
    text: Callable[[Any], list[str]] | None = None,
    **args: Any,
) -> None:
    """Run one control command and print its result: JSON, or `text(result)` lines, or rows."""
    from rig.host.control import ControlError

    client = _client(control, data)
    try:
        result = client.call(cmd, **args)
    except ControlError as e:
        raise _fail(str(e)) from None
    finally:
        client.close()
    if as_json:
        typer.echo(json.dumps(result))
    elif text is not None:
        for line in text(result):
            typer.echo(line)
    elif isinstance(result, list):
        for row in result:
            typer.echo(_row_text(row))
    else:
        for key, value in result.items():
            typer.echo(f"{key}: {json.dumps(value)}")


def _row_text(row: dict[str, Any]) -> str:
    return (
        f"{row.get('id'):>6} {row.get('mti')} {row.get('terminal_id')} STAN {row.get('stan')} "
        f"{row.get('kind'):<14} amount {row.get('amount')} RC {row.get('rc')} "
        f"PAN {row.get('pan_masked')}{' REVERSED' if row.get('reversed') else ''}"
        + (f" ({row['notes']})" if row.get("notes") else "")
    )


@ctl_app.command("status")
def ctl_status(control: str | None = ControlOpt, data: Path = CtlDataOpt, as_json: bool = JsonOpt):
    """Listeners, open connections, pause state, counters, journal size."""
    _ctl(control, data, as_json, "status")


@ctl_app.command("force")
def ctl_force(
    rc: str | None = typer.Option(None, "--rc", help="Response code to answer, e.g. 05."),
    delay_ms: int = typer.Option(0, "--delay-ms", help="Answer late by this many ms."),
    no_answer: bool = typer.Option(False, "--no-answer", help="Answer nothing."),
    drop: bool = typer.Option(False, "--drop", help="Close the connection instead."),
    malformed: bool = typer.Option(False, "--malformed", help="Answer a malformed message."),
    count: int = typer.Option(1, "--count", help="How many following requests."),
    mti: str | None = typer.Option(None, "--mti", help="Only requests of this MTI."),
    control: str | None = ControlOpt,
    data: Path = CtlDataOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Force the next response(s): a response code and/or delay, no answer, drop, malformed."""
    _ctl(
        control,
        data,
        as_json,
        "force",
        rc=rc,
        delay_ms=delay_ms,
        no_answer=no_answer,
        drop_connection=drop,
        malformed=malformed,
        count=count,
        mti=mti,
    )


@ctl_app.command("pause")
def ctl_pause(control: str | None = ControlOpt, data: Path = CtlDataOpt, as_json: bool = JsonOpt):
    """Stop answering (requests are read and dropped) until resume."""
    _ctl(control, data, as_json, "pause")


@ctl_app.command("resume")
def ctl_resume(control: str | None = ControlOpt, data: Path = CtlDataOpt, as_json: bool = JsonOpt):
    """Answer again after pause."""
    _ctl(control, data, as_json, "resume")


@ctl_app.command("clear")
def ctl_clear(control: str | None = ControlOpt, data: Path = CtlDataOpt, as_json: bool = JsonOpt):
    """Drop forced responses and resume."""
    _ctl(control, data, as_json, "clear")


@ctl_app.command("diag")
def ctl_diag(
    reset: bool = typer.Option(False, "--reset", help="Start a new measurement window."),
    control: str | None = ControlOpt,
    data: Path = CtlDataOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Stall diagnostics: GC pauses, event-loop lag, journal commits and checkpoints."""
    _ctl(control, data, as_json, "diag", reset=reset)


@ctl_app.command("journal")
def ctl_journal(
    limit: int | None = typer.Option(None, "--limit", min=1, help="Newest N entries only."),
    control: str | None = ControlOpt,
    data: Path = CtlDataOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The running host's journal, PANs masked."""
    _ctl(control, data, as_json, "journal", limit=limit)


@ctl_app.command("reconcile")
def ctl_reconcile(
    terminal: str = typer.Option(..., "--terminal", help="Terminal id (DE41, 8 characters)."),
    batch: str = typer.Option(..., "--batch", help="Batch number (DE60), e.g. 000007 or 7."),
    control: str | None = ControlOpt,
    data: Path = CtlDataOpt,
    as_json: bool = JsonOpt,
) -> None:
    """A terminal batch: host totals against the terminal's last 0500, and what differs.

    Shows in balance / out of balance, the differing figures and the transactions that explain
    them (PANs masked); before the terminal's first 0500 only the host totals.
    """
    _ctl(control, data, as_json, "reconcile", _reconcile_text, terminal=terminal, batch=batch)


def _figures(t: dict[str, Any]) -> str:
    return (
        f"sales {t['sale_count']} / {t['sale_amount']}, "
        f"refunds {t['refund_count']} / {t['refund_amount']}"
    )


def _reconcile_text(r: dict[str, Any]) -> list[str]:
    """`ctl reconcile` for a person: verdict, both totals, differences."""
    head = f"terminal {r['terminal_id']} batch {r['batch']}: "
    upload = r.get("reconciliation")
    if r.get("in_balance") is None or upload is None:
        return [head + "no 0500 from the terminal yet", "  host     " + _figures(r["host_totals"])]
    verdict = "in balance" if r["in_balance"] else "OUT OF BALANCE"
    lines = [
        head + f"{verdict} (0500 entry {upload['id']}, STAN {upload['stan']}, RC {upload['rc']})",
        "  host     " + _figures(r["host_totals"]),
        "  terminal " + _figures(r["terminal_totals"]),
    ]
    for d in r["differences"]:
        if d["type"] == "figure":
            lines.append(
                f"  {d['field']}: host {d['host']}, terminal {d['terminal']} "
                f"(difference {d['difference']:+d})"
            )
        else:
            lines.append(
                f"  entry {d['id']} {d['mti']} STAN {d['stan']} {d['category']} {d['amount']} "
                f"RC {d['rc']}{' REVERSED' if d['reversed'] else ''} PAN {d['pan_masked']}: "
                f"{d['reason']}"
            )
    return lines


# ---- journal, load ---------------------------------------------------------------------------


@app.command("journal")
def journal_cmd(
    data: Path = DataOpt,
    terminal: str | None = typer.Option(None, "--terminal", help="Only this terminal id."),
    as_json: bool = JsonOpt,
) -> None:
    """Export the journal of a data folder (PANs masked; works while the host runs)."""
    from rig.host.journal import JOURNAL_FILE, Journal, JournalError

    if not (data / JOURNAL_FILE).is_file():
        raise _fail(f"no journal in {data} ({JOURNAL_FILE}); has `rig host serve` run there?")
    try:
        with Journal.in_folder(data) as journal:
            rows = journal.export(masked=True, terminal_id=terminal)
    except JournalError as e:
        raise _fail(str(e)) from None
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        typer.echo(_row_text(row))
    typer.echo(f"{len(rows)} entries")


@app.command("load")
def load_cmd(
    target: str = typer.Option(..., "--target", help="Host HOST:PORT."),
    framing: str = typer.Option("len2", "--framing", help="Framing of the target listener."),
    connections: int = typer.Option(64, "--connections", min=1, max=4096, help="Terminals."),
    duration: float = typer.Option(5.0, "--duration", min=0.1, help="Seconds of load."),
    warmup: float = typer.Option(0.5, "--warmup", min=0.0, help="Seconds not measured."),
    cafile: Path | None = typer.Option(None, "--tls-ca", help="Use TLS, trusting this cert."),
    profiles: Path = typer.Option(Path("cardprofiles"), "--profiles", help="Card profiles."),
    profile: str = typer.Option("visa-no-cvm-under-floor", "--profile", help="Chip profile."),
    amount: int = typer.Option(100, "--amount", min=1, help="Amount in minor units."),
    malformed: int = typer.Option(0, "--malformed", min=0, help="Malformed frames to send too."),
    seed: int | None = typer.Option(None, "--seed", help="Fuzz seed (reproducible frames)."),
    record: Path | None = typer.Option(None, "--record", help="Write each exchange (JSONL)."),
    rate: float | None = typer.Option(
        None, "--rate", help="Paced: total requests/s over all connections (default: closed loop)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Open N terminal connections, send chip authorisations; throughput and latency.

    Closed loop (default): each connection sends its next request as soon as the answer comes,
    so latency there is connections / throughput. `--rate R`: requests leave on a fixed
    schedule (R/s in total) and latency is measured from each request's scheduled time.
    """
    from rig.host.loadgen import LoadConfig, LoadError, run_load

    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise _fail(f"target {target!r} is not HOST:PORT")
    if warmup >= duration:
        raise _fail("--warmup must be shorter than --duration")
    if rate is not None and rate <= 0:
        raise _fail("--rate must be > 0 requests/s (omit it for a closed loop)")
    cfg = LoadConfig(
        host,
        int(port),
        framing,
        connections,
        duration,
        warmup,
        cafile=cafile,
        profiles=profiles,
        profile=profile,
        amount=amount,
        malformed=malformed,
        seed=seed,
        record=record is not None,
        rate=rate,
    )
    try:
        result = asyncio.run(run_load(cfg))
    except LoadError as e:
        raise _fail(str(e)) from None
    out = result.to_dict()
    if record is not None:
        record.write_text("".join(json.dumps(r) + "\n" for r in result.records))
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(
        f"{out['per_s']} req/s over {connections} connections; p50 {out['p50_ms']} ms, "
        f"p99 {out['p99_ms']} ms; codes {out['response_codes']}; errors {out['errors']}"
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
