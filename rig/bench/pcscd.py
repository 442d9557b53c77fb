"""pcscd for the bench: use the running daemon, or start one with the vpcd driver and stop it after.

The vsmartcard vpcd driver (Debian `vsmartcard-vpcd`) registers readers "Virtual PCD 00 00" and
"Virtual PCD 00 01", whose card sides connect to TCP ports CHANNELID and CHANNELID+1 (35963,
35964). Only one pcscd can run on a machine, so a daemon that was already running is used and
never stopped; one posrig started is stopped when its last user, in any process, leaves
(`ensure_pcscd()` in tests and scripts, `hold_pcscd`/`release_pcscd` for a bench that outlives
the process bringing it up; lock, owner and lease files live in the temp directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from smartcard import scard

INSTALL_HINT = "apt-get install pcscd vsmartcard-vpcd (or `make setup` as root)"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
VPCD_READER_CONF = Path("/etc/reader.conf.d/vpcd")
DEFAULT_VPCD_PORT = 0x8C7B
DEFAULT_FRIENDLY_NAME = "Virtual PCD"
VPCD_SLOTS = 2
START_TIMEOUT = 10.0


class PcscdError(RuntimeError):
    """pcscd or the vpcd driver is missing or would not start; the message says what to do."""


def _reader_conf() -> dict[str, str]:
    try:
        text = VPCD_READER_CONF.read_text(encoding="utf-8")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"\s*([A-Z]+)\s+(.+?)\s*$", line)
        if m:
            fields[m.group(1)] = m.group(2).strip('"')
    return fields


def vpcd_port(index: int = 0) -> int:
    """TCP port the card side of vpcd reader `index` (0 or 1) connects to."""
    if not 0 <= index < VPCD_SLOTS:
        raise PcscdError(f"vpcd reader index {index} out of range: vpcd has readers 0 and 1")
    channel = _reader_conf().get("CHANNELID", "")
    try:
        base = int(channel, 0)
    except ValueError:
        base = DEFAULT_VPCD_PORT
    return base + index


def vpcd_reader_name(index: int = 0) -> str:
    """PC/SC reader name pcscd gives vpcd reader `index`, e.g. "Virtual PCD 00 01"."""
    vpcd_port(index)
    friendly = _reader_conf().get("FRIENDLYNAME", DEFAULT_FRIENDLY_NAME)
    return f"{friendly} 00 {index:02X}"


def _find_pcscd() -> str | None:
    return shutil.which("pcscd") or next(
        (str(p) for p in (Path("/usr/sbin/pcscd"), Path("/sbin/pcscd")) if os.access(p, os.X_OK)),
        None,
    )


def check_installation() -> str:
    """Path of the pcscd binary; PcscdError naming the packages when pcscd or vpcd is missing."""
    binary = _find_pcscd()
    missing = []
    if binary is None:
        missing.append("pcscd binary not found on PATH or in /usr/sbin")
    if not VPCD_DRIVER.exists():
        missing.append(f"vpcd driver {VPCD_DRIVER} not found")
    if not VPCD_READER_CONF.exists():
        missing.append(f"vpcd reader entry {VPCD_READER_CONF} not found")
    if missing:
        raise PcscdError("; ".join(missing) + f": {INSTALL_HINT}")
    assert binary is not None
    return binary


def list_reader_names() -> list[str] | None:
    """Readers pcscd lists now; None when no pcscd answers."""
    rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rv != scard.SCARD_S_SUCCESS:
        return None
    try:
        rv, readers = scard.SCardListReaders(ctx, [])
        if rv == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if rv != scard.SCARD_S_SUCCESS:
            return None
        return list(readers)
    finally:
        scard.SCardReleaseContext(ctx)


def pcscd_running() -> bool:
    """True when a pcscd answers on its socket."""
    return list_reader_names() is not None


def _port_listening(port: int) -> bool:
    """True when TCP `port` is listening (read from /proc: a test connect would insert a card)."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as fh:
            next(fh, None)
            for line in fh:
                cols = line.split()
                if len(cols) > 3 and cols[1].endswith(wanted) and cols[3] == "0A":
                    return True
    return False


def _vpcd_ready() -> bool:
    names = list_reader_names() or []
    return _port_listening(vpcd_port(0)) and vpcd_reader_name(0) in names


_children: dict[int, subprocess.Popen[bytes]] = {}
"""pcscd processes this interpreter spawned, so stopping one also reaps it."""


def _state_dir() -> Path:
    return Path(tempfile.gettempdir())


def start_pcscd(timeout: float = START_TIMEOUT) -> subprocess.Popen[bytes] | None:
    """Start `pcscd --foreground` unless one runs; None when an existing daemon is used.

    Waits until vpcd listens and its readers are listed; PcscdError with pcscd's log otherwise.
    Prefer `ensure_pcscd()`, which also stops the daemon when its last user leaves.
    """
    binary = check_installation()
    if pcscd_running():
        _wait_ready(None, timeout, None)
        return None
    log = _state_dir() / "posrig-pcscd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "--foreground"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    try:
        _wait_ready(proc, timeout, log)
    except BaseException:
        stop_pcscd(proc)
        raise
    if proc.poll() is not None:
        return None
    return proc


def _wait_ready(proc: subprocess.Popen[bytes] | None, timeout: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _vpcd_ready():
            return
        if proc is not None and proc.poll() is not None:
            if pcscd_running():
                proc = None
                continue
            tail = log.read_text(errors="replace")[-800:] if log else ""
            raise PcscdError(f"pcscd exited with code {proc.returncode} at start: {tail.strip()}")
        time.sleep(0.05)
    names = list_reader_names()
    raise PcscdError(
        f"pcscd not ready within {timeout:g} s (readers {names}, vpcd port {vpcd_port(0)} "
        f"listening: {_port_listening(vpcd_port(0))}): check {VPCD_READER_CONF}; {INSTALL_HINT}"
    )


def _is_pcscd(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name, state = stat[stat.find("(") + 1 : stat.rfind(")")], stat[stat.rfind(")") + 2 :][:1]
    return name == "pcscd" and state != "Z"


def stop_pcscd(proc: subprocess.Popen[bytes] | int | None) -> None:
    """Stop a pcscd started by `start_pcscd` (a Popen or a pid; None: nothing to stop)."""
    if proc is None:
        return
    pid = proc if isinstance(proc, int) else proc.pid
    child = _children.pop(pid, None) if isinstance(proc, int) else proc
    _children.pop(pid, None)
    if child is None and not _is_pcscd(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if child is not None and child.poll() is not None:
            return
        if child is None and not _is_pcscd(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if child is not None:
        child.wait(timeout=5)


@contextlib.contextmanager
def _decide_lock() -> Iterator[Path]:
    """Serialise start/stop decisions of every posrig process; yields the state directory."""
    state = _state_dir()
    fd = os.open(state / "posrig-pcscd.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield state
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :][:1] != "Z"


def hold_pcscd(name: str, pid: int | None = None, timeout: float = START_TIMEOUT) -> list[str]:
    """Register user `name` (valid while process `pid` lives) and make sure pcscd runs.

    Returns the reader names. Pair with `release_pcscd(name)`; a bench that outlives the
    process bringing it up passes the pid of a process that lives as long as the bench.
    """
    check_installation()
    with _decide_lock() as state:
        proc = start_pcscd(timeout)
        if proc is not None:
            (state / "posrig-pcscd.owner").write_text(str(proc.pid))
        leases = state / "posrig-pcscd.leases"
        leases.mkdir(exist_ok=True)
        (leases / name).write_text(str(pid if pid is not None else os.getpid()))
    return list_reader_names() or []


def release_pcscd(name: str) -> bool:
    """Drop user `name`; stop a posrig-started pcscd when no live user is left (True then).

    Users whose process died count as gone, so a crashed run is cleaned up by the next release.
    A pcscd that posrig did not start is never stopped.
    """
    with _decide_lock() as state:
        leases = state / "posrig-pcscd.leases"
        (leases / name).unlink(missing_ok=True)
        live = 0
        for lease in leases.iterdir() if leases.is_dir() else ():
            try:
                holder = int(lease.read_text().strip())
            except (OSError, ValueError):
                holder = -1
            if holder > 0 and _alive(holder):
                live += 1
            else:
                lease.unlink(missing_ok=True)
        if live:
            return False
        return _stop_owned(state / "posrig-pcscd.owner")


@contextlib.contextmanager
def ensure_pcscd(timeout: float = START_TIMEOUT) -> Iterator[list[str]]:
    """Run the body with a pcscd serving the vpcd readers; yields the reader names.

    All posrig users, in every process, share one daemon: a pcscd posrig started is stopped
    when its last user leaves; one started by anyone else is never stopped.
    """
    name = f"pid{os.getpid()}-{uuid.uuid4().hex[:8]}"
    names = hold_pcscd(name, timeout=timeout)
    try:
        yield names
    finally:
        release_pcscd(name)


def _stop_owned(owner: Path) -> bool:
    try:
        pid = int(owner.read_text().strip())
    except (OSError, ValueError):
        return False
    stop_pcscd(pid)
    owner.unlink(missing_ok=True)
    return True
