"""What every simulator process shares: pty links, the readiness line, clean shutdown on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import termios
import tty
from pathlib import Path
from typing import Any


def announce_ready(**endpoints: Any) -> None:
    """Print the readiness line bench bring-up waits for: {"ready": true, "endpoints": {...}}."""
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(), "endpoints": endpoints}) + "\n")
    sys.stdout.flush()


def announce_failure(message: str) -> None:
    """Print a failure line instead of readiness, so bring-up reports the cause and stops."""
    sys.stdout.write(json.dumps({"ready": False, "error": message}) + "\n")
    sys.stdout.flush()


class PtyLink:
    """A pseudo-terminal whose slave is reachable at a stable symlink path.

    The simulator keeps the master (its side of the cable) and also holds the slave open, so a
    client that opens and closes the link path never leaves the master reading EIO.
    """

    def __init__(self, link: Path | str) -> None:
        self.link = Path(link)
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        attrs = termios.tcgetattr(self._slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        self.slave_name = os.ttyname(self._slave)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        self.link.symlink_to(self.slave_name)

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks remove links and children."""

    def _stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)


def read_readiness(proc: subprocess.Popen[bytes], timeout: float | None = None) -> dict[str, Any]:
    """A started simulator's readiness line; silence past `timeout` s or garble reads as failure."""
    assert proc.stdout is not None
    if timeout is not None and not select.select([proc.stdout], [], [], timeout)[0]:
        return {"ready": False, "error": f"no readiness line within {timeout:g} s"}
    line = proc.stdout.readline()
    try:
        ready = json.loads(line)
    except json.JSONDecodeError:
        ready = None
    if not isinstance(ready, dict):
        return {"ready": False, "error": f"no readiness line (got {line[:200]!r})"}
    return ready
