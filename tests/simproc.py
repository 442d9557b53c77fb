"""Simulator processes for tests: start one, read its readiness line, stop it in a finaliser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from rig.bench.sim.common import read_readiness

REPO = Path(__file__).resolve().parents[1]
Proc = subprocess.Popen[bytes]


def launch(*argv: str, timeout: float = 15.0) -> tuple[Proc, dict[str, Any]]:
    """Run `python -m ARGV` from the repository; the process and its readiness line as it came."""
    proc = subprocess.Popen([sys.executable, "-m", *argv], stdout=subprocess.PIPE, cwd=REPO)
    return proc, read_readiness(proc, timeout)


def start(*argv: str, timeout: float = 15.0) -> tuple[Proc, dict[str, Any]]:
    """Like `launch`, but the process must announce readiness; the process and its endpoints."""
    proc, line = launch(*argv, timeout=timeout)
    if not line.get("ready"):
        stop(proc)
        raise AssertionError(f"{argv[0]} did not announce readiness: {line}")
    return proc, line["endpoints"]


def spawn(module: str, *args: str) -> tuple[Proc, dict[str, Any]]:
    """Start simulator `rig.bench.sim.<module>`; the process and its readiness endpoints."""
    return start(f"rig.bench.sim.{module}", *args)


def stop(proc: Proc, timeout: float = 5.0) -> int:
    """SIGTERM, SIGKILL if it lingers past `timeout` s, close its pipe; the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode


class Procs:
    """The processes one fixture started, all stopped by `stop_all()` in its finaliser."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def launch(self, *argv: str) -> tuple[Proc, dict[str, Any]]:
        proc, line = launch(*argv)
        self.procs.append(proc)
        return proc, line

    def spawn(self, module: str, *args: str) -> tuple[Proc, dict[str, Any]]:
        proc, endpoints = spawn(module, *args)
        self.procs.append(proc)
        return proc, endpoints

    def stop_all(self) -> None:
        for proc in self.procs:
            stop(proc)
