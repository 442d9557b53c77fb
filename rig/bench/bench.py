"""`Bench`: a bench file opened as a context manager that hands out bound drivers by name.

Simulated parts are brought up on entry (or an already running bench of the same name is
attached) and torn down on exit when this `Bench` started them. Each driver gets its own
transcript in the run's evidence folder, `<evidence>/<run-id>/transcripts/<instrument>.jsonl`.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from pathlib import Path
from typing import Any

from rig.bench import lifecycle
from rig.bench.lifecycle import BenchState
from rig.bench.model import BenchSpec, load_bench
from rig.evidence import Transcript


class BenchError(RuntimeError):
    """A bench question that has no answer, e.g. an instrument the bench file does not declare."""


def new_run_id(bench: str) -> str:
    """Sortable, unique run folder name: 20261125-183000-sim-a1b2."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{bench}-{secrets.token_hex(2)}"


class Bench:
    """A bench file bound to running instruments; `bench["ecr"]` is the ECR link's driver."""

    def __init__(self, spec: BenchSpec, bench_file: str | Path, run_id: str | None = None):
        self.spec = spec
        self.bench_file = Path(bench_file)
        self.run_id = run_id or new_run_id(spec.name)
        self.run_dir = Path(spec.evidence) / self.run_id
        self.state: BenchState | None = None
        self._owned = False
        self._drivers: dict[str, Any] = {}
        self._transcripts: dict[str, Transcript] = {}
        self._power: Any = None

    @classmethod
    def open(cls, bench_file: str | Path, run_id: str | None = None) -> Bench:
        """Load and validate a bench file; bring-up happens on `with` (or `start()`)."""
        return cls(load_bench(bench_file), bench_file, run_id)

    def start(self, progress: Any = None) -> Bench:
        """Attach to this bench if it is up, else bring its simulated parts up."""
        if self.state is not None:
            return self
        try:
            self.state = lifecycle.find_running(self.spec.name)
        except FileNotFoundError:
            if self.spec.simulated():
                self.state = lifecycle.bring_up(self.spec, self.bench_file, progress)
                self._owned = True
            else:
                self.state = BenchState(self.spec.name, str(self.bench_file), "", time.time())
                for name, inst in self.spec.instruments.items():
                    self.state.endpoints[name] = lifecycle.real_endpoint(inst)
        (self.run_dir / "transcripts").mkdir(parents=True, exist_ok=True)
        return self

    def __enter__(self) -> Bench:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every driver and transcript; tear the bench down if this Bench brought it up."""
        for driver in reversed(list(self._drivers.values())):
            closer = getattr(driver, "close", None)
            if closer is not None:
                with contextlib.suppress(Exception):  # closing goes on for the other drivers
                    closer()
        self._drivers.clear()
        for transcript in self._transcripts.values():
            transcript.close()
        if self._owned and self.state is not None:
            lifecycle.tear_down(self.state)
        self._owned = False
        self.state = None

    @property
    def endpoints(self) -> dict[str, dict[str, Any]]:
        """Where each instrument is reached (port path, VISA resource, reader name, host:port)."""
        if self.state is None:
            raise BenchError("the bench is not started; use `with Bench.open(...)`")
        return self.state.endpoints

    def endpoint(self, name: str) -> dict[str, Any]:
        if name not in self.spec.instruments and name not in self.endpoints:
            known = ", ".join(self.spec.instruments)
            raise BenchError(f"bench `{self.spec.name}` has no instrument `{name}`; it has {known}")
        return self.endpoints[name]

    def transcript(self, name: str) -> Transcript:
        """The evidence transcript of one instrument in this run."""
        if name not in self._transcripts:
            path = self.run_dir / "transcripts" / f"{name}.jsonl"
            self._transcripts[name] = Transcript(path, name)
        return self._transcripts[name]

    def __getitem__(self, name: str) -> Any:
        if name not in self._drivers:
            self._drivers[name] = self._make_driver(name)
        return self._drivers[name]

    def _make_driver(self, name: str) -> Any:
        inst = self.spec.instruments.get(name)
        if inst is None:
            self.endpoint(name)
        ends = self.endpoint(name)
        tr = self.transcript(name)
        if inst.kind == "ecr":
            from drivers.ecr.posrig_link import PosrigEcrLink

            link = PosrigEcrLink(ends["port"], baudrate=inst.baudrate, transcript=tr)
            link.open()
            return link
        if inst.kind == "printer":
            from drivers.printer import SerialPrinterEmulator

            return SerialPrinterEmulator(
                ends["port"],
                baudrate=inst.baudrate,
                transcript=tr,
                evidence_dir=self.run_dir / "receipts",
            )
        if inst.kind == "qr_scanner":
            from drivers.qrscanner import SerialQrScanner

            return SerialQrScanner(
                ends["port"],
                baudrate=inst.baudrate,
                prefix=inst.prefix,
                suffix=inst.suffix,
                transcript=tr,
            )
        if inst.kind == "relay":
            if inst.family == "lcus":
                from drivers.relay_lcus import LcusRelay

                return LcusRelay(ends["port"], inst.channels, baudrate=inst.baudrate, transcript=tr)
            from drivers.relay_numato import NumatoRelay

            return NumatoRelay(ends["port"], inst.channels, baudrate=inst.baudrate, transcript=tr)
        if inst.kind == "psu":
            from drivers.psu import ScpiPowerSupply

            return ScpiPowerSupply(ends["visa"], transcript=tr)
        if inst.kind == "pcsc_reader":
            from drivers.pcsc import PcscReader

            return PcscReader(ends["reader"], transcript=tr)
        if inst.kind == "fault_proxy":
            from drivers.netproxy import FaultProxyControl

            return FaultProxyControl(ends["control"], transcript=tr)
        if inst.kind == "host":
            if "control" not in ends:
                return ends["address"]
            from rig.host.control import HostControl

            return HostControl(ends["control"])
        raise BenchError(f"no driver for instrument kind `{inst.kind}`")

    def card_simulator(self, name: str = "reader") -> Any:
        """Control of the card simulator behind a simulated reader (insert, remove, mute)."""
        ends = self.endpoint(name)
        if "control" not in ends:
            raise BenchError(f"`{name}` is a real reader; there is no card simulator to control")
        key = f"{name}#cardsim"
        if key not in self._drivers:
            from drivers.cardsim import CardSimulatorControl

            self._drivers[key] = CardSimulatorControl(
                ends["control"], transcript=self.transcript(key)
            )
        return self._drivers[key]

    @property
    def power(self) -> Any:
        """The device's power switch as the bench file binds it (relay channel or PSU output)."""
        if self._power is None:
            spec = self.spec.power
            if spec is None:
                raise BenchError(f"bench `{self.spec.name}` declares no `power` section")
            from drivers.power import PsuPowerSwitch, RelayPowerSwitch

            if spec.relay:
                self._power = RelayPowerSwitch(self[spec.relay], spec.channel)
            else:
                self._power = PsuPowerSwitch(self[spec.psu], spec.output)
        return self._power

    def dut_alive(self) -> bool:
        """Simulation: is the device-under-test process running (powered)?"""
        dut = self.endpoints.get("dut")
        if not dut:
            raise BenchError("the device under test is not simulated on this bench")
        from rig.bench.sim.rail import dut_alive

        return dut_alive(dut["rail_dir"])
