"""The `rig` command: bench lifecycle, the demo, and the payment calculator sub-commands."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from rig.cli_support import fail

if TYPE_CHECKING:
    from rig.bench.lifecycle import BenchState

app = typer.Typer(
    help="posrig: hardware-in-the-loop test and certification rig for payment terminals.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Bring a bench up, inspect it, tear it down.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

console = Console()

JsonOpt = typer.Option(False, "--json", help="Print one JSON object instead of a table.")


def _running(name: str | None) -> BenchState:
    """The bench `rig bench up` started (by name when several are up); exit 1 when none is."""
    from rig.bench.lifecycle import find_running

    try:
        return find_running(name)
    except FileNotFoundError as exc:
        raise fail(str(exc), 1) from None


def _mount(module: str, name: str, help_text: str) -> object:
    """Mount a sub-application (`app` Typer or `register(app)`) from a module of the core."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if not exc.name or not (module == exc.name or module.startswith(exc.name + ".")):
            raise
        return None
    if hasattr(mod, "app"):
        app.add_typer(mod.app, name=name, help=help_text)
    return mod


@bench_app.command("up")
def bench_up(
    bench_file: Path = typer.Argument(..., help="Bench file, e.g. benches/sim.yaml"),
    as_json: bool = JsonOpt,
) -> None:
    """Start every simulator the bench declares, wait until each answers, print the endpoints."""
    from rig.bench.lifecycle import BenchUpError, bring_up
    from rig.bench.model import BenchFileError, load_bench

    try:
        spec = load_bench(bench_file)
    except BenchFileError as exc:
        raise fail(str(exc)) from None
    try:
        if as_json:
            state = bring_up(spec, bench_file)
        else:
            with console.status("bringing the bench up") as status:
                state = bring_up(spec, bench_file, progress=status.update)
    except BenchUpError as exc:
        raise fail(str(exc), 1) from None
    except Exception as exc:
        raise fail(f"bring-up failed: {exc}", 1) from None
    if as_json:
        print(json.dumps({"bench": state.name, "instruments": state.endpoints}))
        return
    table = Table(title=f"bench {state.name} is up")
    table.add_column("instrument")
    table.add_column("endpoint")
    for name, ends in state.endpoints.items():
        shown = {k: v for k, v in ends.items() if k != "argv"}
        table.add_row(name, ", ".join(f"{k}={v}" for k, v in shown.items()))
    console.print(table)


@bench_app.command("status")
def bench_status(
    name: str = typer.Option(None, "--name", help="Bench name when several are up."),
    as_json: bool = JsonOpt,
) -> None:
    """Show each process the bench started and whether it still answers on its interface."""
    from rig.bench.lifecycle import status

    state = _running(name)
    rows = status(state)
    if as_json:
        print(json.dumps({"bench": state.name, "processes": rows}))
    else:
        table = Table(title=f"bench {state.name}")
        for col in ("process", "pid", "alive", "answers", "endpoints"):
            table.add_column(col)
        for r in rows:
            ends = ", ".join(f"{k}={v}" for k, v in r["endpoints"].items())
            table.add_row(r["name"], str(r["pid"]), _yes(r["alive"]), _yes(r["answers"]), ends)
        console.print(table)
    if not all(r["alive"] and r["answers"] for r in rows if r["name"] != "dut"):
        raise typer.Exit(1)


def _yes(flag: bool) -> str:
    return "[green]yes[/]" if flag else "[red]no[/]"


@bench_app.command("down")
def bench_down(
    name: str = typer.Option(None, "--name", help="Bench name when several are up."),
    as_json: bool = JsonOpt,
) -> None:
    """Stop exactly what `rig bench up` started and remove its runtime folder."""
    from rig.bench.lifecycle import tear_down

    state = _running(name)
    stopped = tear_down(state)
    if as_json:
        print(json.dumps({"bench": state.name, "stopped": stopped}))
    else:
        console.print(f"bench {state.name} is down; stopped {len(stopped)} processes")


@app.command("demo")
def demo(
    bench_file: Path = typer.Argument(Path("benches/sim.yaml"), help="Bench file to run on."),
    as_json: bool = JsonOpt,
) -> None:
    """Bring the bench up, use every instrument once through its driver, print the results."""
    from rig.demo import run_demo

    code = run_demo(bench_file, as_json=as_json, console=console)
    raise typer.Exit(code)


_mount("rig.emv.cli", "tlv", "Decode BER-TLV (EMV) data.")
_mount("rig.iso8583.cli", "iso8583", "Decode and encode ISO 8583 messages of the rig's dialect.")
_mount("rig.qr.cli", "qr", "Decode, validate and build EMVCo QR payloads.")
_mount("rig.host.cli", "host", "Reference acquirer host: init, serve, control, journal, load.")
_mount("rig.card.cli", "card", "Card simulator: serve a card profile, capture a real card.")
_crypto = _mount("rig.crypto.cli", "crypto", "Payment cryptography calculator (test keys only).")
if _crypto is not None:
    from rig.crypto.emv_cli import register as _register_emv_crypto

    _register_emv_crypto(_crypto.app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
