"""The simulated power rail: the device under test (DUT) runs iff every source feeding it is on.

Layout of RAIL_DIR (created by bench bring-up, shared by every source simulator):
    rail.json        {"sources": ["psu:1", "relay:1"], "dut": {"argv": [...], "cwd": "...",
                     "env": {...}}, "current_a": 0.25}
    sources/<name>   "on" or "off", written by the simulator that is that source
    lock             flock'd around every change, so two simulators never race
    dut.pid          pid of the running DUT (its own session and process group)
    dut.log          the DUT's stdout and stderr
A source not yet written counts as off. Power off is SIGKILL to the DUT's process group: a real
power cut, no clean shutdown. Source simulators call `install_reaper()` so the DUT they started is
reaped when it dies, whoever killed it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RAIL_FILE = "rail.json"
SOURCES_DIR = "sources"
LOCK_FILE = "lock"
PID_FILE = "dut.pid"
LOG_FILE = "dut.log"
KILL_WAIT = 1.0
"""Seconds to wait for a SIGKILLed DUT to be gone before giving up on it."""

_children: dict[int, subprocess.Popen[bytes]] = {}


class RailError(Exception):
    """rail.json is missing a field or malformed; the message names the file and the field."""


@dataclass(frozen=True)
class RailConfig:
    """What rail.json says: which sources feed the DUT, how to start it, what it draws."""

    sources: list[str]
    argv: list[str]
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    current_a: float = 0.25


def load_config(rail_dir: Path | str) -> RailConfig | None:
    """Read RAIL_DIR/rail.json; None when bring-up has not written it yet."""
    path = Path(rail_dir) / RAIL_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RailError(
            f"{path}: not readable JSON ({exc}); rewrite it from the bench file"
        ) from exc
    return parse_config(data, str(path))


def parse_config(data: Any, where: str = RAIL_FILE) -> RailConfig:
    """Check a decoded rail.json document and turn it into a RailConfig."""
    if not isinstance(data, dict):
        raise RailError(f"{where}: top level must be an object with 'sources' and 'dut'")
    sources = data.get("sources")
    if not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources):
        raise RailError(f"{where}: 'sources' must be a non-empty list of source names")
    dut = data.get("dut")
    if not isinstance(dut, dict):
        raise RailError(f"{where}: 'dut' must be an object with 'argv'")
    argv = dut.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise RailError(f"{where}: 'dut.argv' must be a non-empty list of strings")
    cwd = dut.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise RailError(f"{where}: 'dut.cwd' must be a string path")
    env = dut.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise RailError(f"{where}: 'dut.env' must map strings to strings")
    current = data.get("current_a", 0.25)
    if isinstance(current, bool) or not isinstance(current, int | float) or current < 0:
        raise RailError(f"{where}: 'current_a' must be a non-negative number of amperes")
    return RailConfig(
        sources=list(sources), argv=list(argv), cwd=cwd, env=dict(env), current_a=float(current)
    )


@contextlib.contextmanager
def locked(rail_dir: Path | str) -> Iterator[Path]:
    """Hold the rail's flock for the duration of the block."""
    root = Path(rail_dir)
    (root / SOURCES_DIR).mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield root
    finally:
        os.close(fd)


def source_on(rail_dir: Path | str, name: str) -> bool:
    """True when RAIL_DIR/sources/<name> says on; a missing file counts as off."""
    try:
        text = (Path(rail_dir) / SOURCES_DIR / _file_name(name)).read_text(encoding="ascii")
    except (FileNotFoundError, UnicodeDecodeError):
        return False
    return text.strip() == "on"


def set_source(rail_dir: Path | str, name: str, on: bool) -> None:
    """Record one source's state and bring the DUT in line with the rail."""
    with locked(rail_dir) as root:
        target = root / SOURCES_DIR / _file_name(name)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text("on\n" if on else "off\n", encoding="ascii")
        os.replace(tmp, target)
        _reconcile_locked(root)


def reconcile(rail_dir: Path | str) -> None:
    """Start the DUT if every source is on and it is not running; kill it if any source is off."""
    with locked(rail_dir) as root:
        _reconcile_locked(root)


def dut_pid(rail_dir: Path | str) -> int | None:
    """Pid of the DUT if the rail says one is running."""
    try:
        return int((Path(rail_dir) / PID_FILE).read_text(encoding="ascii").strip())
    except (FileNotFoundError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """True when `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    return state not in ("Z", "X")


def dut_alive(rail_dir: Path | str) -> bool:
    """True when the rail's DUT process is running."""
    pid = dut_pid(rail_dir)
    return pid is not None and pid_alive(pid)


def rail_powered(rail_dir: Path | str) -> bool:
    """True when rail.json exists and every source it lists is on."""
    config = load_config(rail_dir)
    return config is not None and all(source_on(rail_dir, s) for s in config.sources)


def install_reaper() -> None:
    """Reap any child of this simulator as soon as it dies, so a killed DUT leaves no zombie."""

    def _reap(signum: int, frame: object) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = _children.pop(pid, None)
            if child is not None:
                child.returncode = -signal.SIGKILL

    signal.signal(signal.SIGCHLD, _reap)


def _file_name(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise RailError(f"source name {name!r} is not usable as a file name; use e.g. 'relay:1'")
    return name


def _reconcile_locked(root: Path) -> None:
    config = load_config(root)
    powered = config is not None and all(source_on(root, s) for s in config.sources)
    alive = dut_alive(root)
    if powered and not alive and config is not None:
        _start(root, config)
    elif not powered:
        _kill(root)


def _start(root: Path, config: RailConfig) -> None:
    env = {**os.environ, **config.env}
    try:
        with (root / LOG_FILE).open("ab") as log:
            child = subprocess.Popen(
                config.argv,
                cwd=config.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except OSError as exc:
        raise RailError(
            f"{root / RAIL_FILE}: DUT argv {config.argv!r} cannot be started ({exc}); "
            "fix 'dut.argv' / 'dut.cwd'"
        ) from exc
    _children[child.pid] = child
    (root / PID_FILE).write_text(f"{child.pid}\n", encoding="ascii")


def _kill(root: Path) -> None:
    pid = dut_pid(root)
    if pid is None:
        return
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        child.returncode = -signal.SIGKILL
    deadline = time.monotonic() + KILL_WAIT
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    with contextlib.suppress(FileNotFoundError):
        (root / PID_FILE).unlink()


class RailFeed:
    """A source simulator's handle on the rail: the one named source it drives."""

    def __init__(self, rail_dir: Path | str, name: str) -> None:
        self.rail_dir = Path(rail_dir)
        self.name = name
        _file_name(name)

    def set(self, on: bool) -> None:
        """Record this source's state; a rail problem is reported on stderr, never fatal."""
        try:
            set_source(self.rail_dir, self.name, on)
        except (RailError, OSError) as exc:
            print(f"rail {self.rail_dir}: source {self.name}: {exc}", file=sys.stderr, flush=True)

    def powered(self) -> bool:
        """True when the DUT fed by this rail is running."""
        return dut_alive(self.rail_dir)

    def current_a(self) -> float:
        """The DUT's supply current from rail.json (0.25 A when not given)."""
        try:
            config = load_config(self.rail_dir)
        except RailError:
            return 0.0
        return config.current_a if config is not None else 0.0
