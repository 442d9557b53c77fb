"""Bench bring-up and tear-down: one process per simulated instrument, recorded in a state file.

`bring_up` starts every simulator a bench file declares (each detached in its own session, its
stdout and stderr in the runtime folder's `logs/`), waits for each readiness line, and writes
`state.json`; `status` says which processes live and answer on their interface; `tear_down`
stops exactly the processes `bring_up` started (and the simulated device; pcscd is shared through
leases in `rig.bench.pcscd` and stops with its last user) and removes the runtime folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rig.bench.model import BenchSpec, FaultProxySpec, HostSpec

RUNTIME_ROOT = Path(os.environ.get("POSRIG_RUNTIME", "/tmp/posrig"))
READY_TIMEOUT = 15.0
CABLED_KINDS = ("ecr", "printer", "qr_scanner")
"""Serial instruments that, simulated, are a null-modem cable to the simulated device."""


class BenchUpError(RuntimeError):
    """Bring-up failed; the message names the simulator and quotes its last words."""


@dataclass
class SimProcess:
    """One simulator process started by bring-up."""

    name: str
    argv: list[str]
    pid: int = 0
    endpoints: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchState:
    """What bring-up started, persisted as `state.json` in the runtime folder."""

    name: str
    bench_file: str
    runtime_dir: str
    started_at: float
    processes: list[SimProcess] = field(default_factory=list)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    pcscd_lease: str | None = None

    def save(self) -> None:
        path = Path(self.runtime_dir) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, runtime_dir: Path) -> BenchState:
        data = json.loads((runtime_dir / "state.json").read_text())
        data["processes"] = [SimProcess(**p) for p in data["processes"]]
        return cls(**data)


def runtime_dir_for(spec: BenchSpec) -> Path:
    """Where a bench's pty links, logs and state live while it is up."""
    return Path(spec.runtime_dir) if spec.runtime_dir else RUNTIME_ROOT / spec.name


def find_running(name: str | None = None) -> BenchState:
    """The state of the bench that is up (by name, or the only one); FileNotFoundError if none."""
    if name:
        candidates = [RUNTIME_ROOT / name]
    else:
        candidates = sorted(p.parent for p in RUNTIME_ROOT.glob("*/state.json"))
    found = [c for c in candidates if (c / "state.json").exists()]
    if not found:
        raise FileNotFoundError("no bench is up; start one with `rig bench up BENCH_FILE`")
    if len(found) > 1:
        names = ", ".join(c.name for c in found)
        raise FileNotFoundError(f"several benches are up ({names}); name one with --name")
    return BenchState.load(found[0])


def _python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _wait_ready(proc: subprocess.Popen, out: Path, err: Path, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            first = out.read_text().split("\n", 1)
            if len(first) > 1 or (first[0].endswith("}") and first[0]):
                try:
                    line = json.loads(first[0])
                except json.JSONDecodeError:
                    line = {"ready": False, "error": f"unreadable readiness line: {first[0]!r}"}
                if line.get("ready"):
                    return line.get("endpoints", {})
                raise BenchUpError(f"{name}: simulator failed: {line.get('error', line)}")
        if proc.poll() is not None:
            tail = err.read_text()[-800:] if err.exists() else ""
            raise BenchUpError(f"{name}: simulator exited with {proc.returncode}\n{tail}".rstrip())
        time.sleep(0.02)
    raise BenchUpError(f"{name}: no readiness line within {READY_TIMEOUT:.0f} s (see {err})")


def _start(state: BenchState, name: str, argv: list[str]) -> dict[str, Any]:
    logs = Path(state.runtime_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(
            argv, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, start_new_session=True
        )
    sim = SimProcess(name=name, argv=argv, pid=proc.pid)
    state.processes.append(sim)
    state.save()
    sim.endpoints = _wait_ready(proc, out, err, name)
    state.save()
    return sim.endpoints


def _dut_argv(spec: BenchSpec, rt: Path) -> list[str]:
    argv = [sys.executable if a == "{python}" else a for a in spec.dut.command]
    for inst_name, inst in spec.instruments.items():
        if inst.kind in CABLED_KINDS and getattr(inst, "sim", False):
            flag = {"ecr": "--ecr", "printer": "--printer", "qr_scanner": "--scanner"}[inst.kind]
            argv += [flag, str(rt / f"dut-{inst_name}")]
    return [*argv, "--state-dir", str(rt / "dut"), "--name", spec.dut.name]


def _write_rail(spec: BenchSpec, rt: Path) -> None:
    rail = rt / "rail"
    rail.mkdir(parents=True, exist_ok=True)
    feeds = list(spec.power.feeds) if spec.power else []
    if spec.power and not feeds:
        feeds = [
            f"{spec.power.relay}:{spec.power.channel}"
            if spec.power.relay
            else f"{spec.power.psu}:{spec.power.output}"
        ]
    config = {
        "sources": feeds,
        "dut": {"argv": _dut_argv(spec, rt), "cwd": os.getcwd(), "env": {}},
        "current_a": spec.dut.current_a,
    }
    (rail / "rail.json").write_text(json.dumps(config, indent=2))


def _rail_args(spec: BenchSpec, rt: Path, inst_name: str) -> list[str]:
    """Rail options for a relay / PSU simulator that feeds the simulated device."""
    if not (spec.dut.sim and spec.power):
        return []
    for feed in spec.power.feeds or [
        f"{spec.power.relay}:{spec.power.channel}"
        if spec.power.relay
        else f"{spec.power.psu}:{spec.power.output}"
    ]:
        name, _, unit = feed.partition(":")
        if name == inst_name:
            return ["--rail-dir", str(rt / "rail"), "--rail-source", feed, "--feeds", unit or "1"]
    return []


def bring_up(spec: BenchSpec, bench_file: str | Path, progress: Any = None) -> BenchState:
    """Start every simulator the bench declares; on any failure stop what was started and raise."""
    rt = runtime_dir_for(spec)
    if (rt / "state.json").exists():
        old = BenchState.load(rt)
        if any(_alive(p.pid) for p in old.processes):
            raise BenchUpError(f"bench `{spec.name}` is already up; run `rig bench down` first")
        shutil.rmtree(rt, ignore_errors=True)
    rt.mkdir(parents=True, exist_ok=True)
    state = BenchState(spec.name, str(Path(bench_file).resolve()), str(rt), time.time())
    state.save()
    note = progress or (lambda _msg: None)
    try:
        if spec.dut.sim:
            _write_rail(spec, rt)
        for name, inst in spec.instruments.items():
            if not getattr(inst, "sim", False):
                continue
            note(f"starting {name}")
            if inst.kind in CABLED_KINDS:
                ends = _start(
                    state,
                    name,
                    _python_module(
                        "rig.bench.sim.nullmodem",
                        "--a",
                        str(rt / name),
                        "--b",
                        str(rt / f"dut-{name}"),
                    ),
                )
                state.endpoints[name] = {"port": ends["a"], "device_port": ends["b"]}
            elif inst.kind == "relay":
                argv = _python_module(
                    f"rig.bench.sim.relay_{inst.family}",
                    "--link",
                    str(rt / name),
                    "--channels",
                    str(inst.channels),
                    *_rail_args(spec, rt, name),
                )
                state.endpoints[name] = {"port": _start(state, name, argv)["port"]}
            elif inst.kind == "psu":
                argv = _python_module(
                    "rig.bench.sim.psu_scpi",
                    "--listen",
                    "127.0.0.1:0",
                    *_rail_args(spec, rt, name),
                )
                ends = _start(state, name, argv)
                state.endpoints[name] = {"visa": ends["visa"], "address": ends["address"]}
            elif inst.kind == "pcsc_reader":
                from rig.bench.pcscd import hold_pcscd

                state.pcscd_lease = f"bench-{spec.name}"
                hold_pcscd(state.pcscd_lease)  # until the card simulator holds it below
                state.save()
                argv = _python_module(
                    "rig.bench.sim.cardsim",
                    "--vpcd",
                    f"127.0.0.1:{inst.vpcd_port}",
                    "--control",
                    "127.0.0.1:0",
                )
                if inst.profile:
                    argv += ["--profile", str(Path(inst.profile).resolve())]
                    argv += ["--state-dir", str(rt / "cards")]
                ends = _start(state, name, argv)
                hold_pcscd(state.pcscd_lease, pid=state.processes[-1].pid)
                state.endpoints[name] = {"reader": ends["reader"], "control": ends["control"]}
            elif inst.kind == "host":
                state.endpoints[name] = _start_host(state, name, inst)
        for name, inst in spec.instruments.items():
            if isinstance(inst, FaultProxySpec):
                note(f"starting {name}")
                upstream = _upstream_address(spec, state, inst)
                argv = _python_module(
                    "rig.bench.sim.faultproxy",
                    "--listen",
                    inst.listen,
                    "--upstream",
                    upstream,
                    "--control",
                    "127.0.0.1:0",
                    "--framing",
                    inst.framing,
                )
                ends = _start(state, name, argv)
                state.endpoints[name] = {
                    "listen": ends["listen"],
                    "control": ends["control"],
                    "upstream": upstream,
                }
        for name, inst in spec.instruments.items():
            if name not in state.endpoints:
                state.endpoints[name] = real_endpoint(inst)
        if spec.dut.sim:
            state.endpoints["dut"] = {
                "name": spec.dut.name,
                "rail_dir": str(rt / "rail"),
                "argv": _dut_argv(spec, rt),
            }
        state.save()
    except BaseException:
        tear_down(state)
        raise
    return state


def _start_host(state: BenchState, name: str, inst: HostSpec) -> dict[str, Any]:
    """The reference acquirer host on a fresh data folder with TEST keys."""
    from rig.host.cli import init_data

    data = Path(state.runtime_dir) / name
    init_data(data, tuple(inst.terminals))
    argv = _python_module(
        "rig.host.cli",
        "serve",
        "--data",
        str(data),
        "--listen",
        "127.0.0.1:0",
        "--framing",
        inst.framing,
        "--control",
        "127.0.0.1:0",
        "--profiles",
        str(Path(inst.profiles).resolve()),
        "--json",
    )
    ends = _start(state, name, argv)
    return {"address": ends["listen"], "control": ends["control"], "data": str(data)}


def _upstream_address(spec: BenchSpec, state: BenchState, proxy: FaultProxySpec) -> str:
    if ":" in proxy.upstream:
        return proxy.upstream
    host = spec.instruments[proxy.upstream]
    assert isinstance(host, HostSpec)
    return state.endpoints[proxy.upstream]["address"] if host.sim else str(host.address)


def real_endpoint(inst: Any) -> dict[str, Any]:
    """Where a real (not simulated) instrument is reached, from its bench-file entry."""
    for key in ("port", "resource", "reader", "address", "listen"):
        value = getattr(inst, key, None)
        if value:
            return {"visa" if key == "resource" else key: value}
    return {}


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _stop_pid(pid: int, group: bool = True, grace: float = 3.0) -> None:
    if not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _dut_pid(state: BenchState) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((Path(state.runtime_dir) / "rail" / "dut.pid").read_text().split()[0])
    return None


def tear_down(state: BenchState) -> list[str]:
    """Stop what bring-up started, newest first, then the device and pcscd; remove the folder."""
    stopped = []
    for proc in reversed(state.processes):
        if _alive(proc.pid):
            _stop_pid(proc.pid)
            stopped.append(f"{proc.name} (pid {proc.pid})")
    dut = _dut_pid(state)
    if dut and _alive(dut):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(dut, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(dut, signal.SIGKILL)
        stopped.append(f"device under test (pid {dut})")
    if state.pcscd_lease:
        from rig.bench.pcscd import release_pcscd

        if release_pcscd(state.pcscd_lease):
            stopped.append("pcscd (started for this bench, no other user left)")
    shutil.rmtree(state.runtime_dir, ignore_errors=True)
    return stopped


def _probe(endpoints: dict[str, Any]) -> bool:
    """Does the instrument still answer on its interface?"""
    for key in ("address", "listen", "control"):
        if key in endpoints:
            host, _, port = str(endpoints[key]).rpartition(":")
            try:
                with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1.0):
                    pass
            except OSError:
                return False
    if "port" in endpoints:
        path = Path(endpoints["port"])
        if not path.exists():
            return False
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:
            return False
    if "reader" in endpoints:
        from smartcard.System import readers

        try:
            return endpoints["reader"] in [str(r) for r in readers()]
        except Exception:
            return False
    return True


def status(state: BenchState) -> list[dict[str, Any]]:
    """One row per started process: alive, answering on its interface, endpoints."""
    rows = []
    for proc in state.processes:
        alive = _alive(proc.pid)
        ends = state.endpoints.get(proc.name, proc.endpoints)
        rows.append(
            {
                "name": proc.name,
                "pid": proc.pid,
                "alive": alive,
                "answers": alive and _probe(ends),
                "endpoints": ends,
            }
        )
    dut = _dut_pid(state)
    if "dut" in state.endpoints:
        rows.append(
            {
                "name": "dut",
                "pid": dut or 0,
                "alive": bool(dut and _alive(dut)),
                "answers": bool(dut and _alive(dut)),
                "endpoints": {k: v for k, v in state.endpoints["dut"].items() if k != "argv"},
            }
        )
    return rows
