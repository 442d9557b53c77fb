"""What the `rig` commands share: one clear error line on stderr and the exit code to raise."""

from __future__ import annotations

import json

import typer


def fail(message: str, code: int = 2, *, as_json: bool = False) -> typer.Exit:
    """Print `error: MESSAGE` (or a JSON error object) on stderr; return the Exit to raise."""
    if as_json:
        typer.echo(json.dumps({"ok": False, "error": message}), err=True)
    else:
        typer.echo(f"{typer.style('error:', fg='red', bold=True)} {message}", err=True)
    return typer.Exit(code)
