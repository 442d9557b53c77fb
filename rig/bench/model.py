"""Bench files: which instruments a bench has, how each is reached, which ones are simulated.

A bench file is YAML validated by the pydantic models below. Every instrument is either real
(a serial port, a VISA resource, a PC/SC reader name, a host:port) or `sim: true`, in which case
bench bring-up starts a simulator process behind the same kind of interface and fills in the
endpoint. Errors name the key path and what would be valid (see `load_bench`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class BenchFileError(ValueError):
    """A bench file that cannot be used; the message names the file, the key path and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _SerialInstrument(_Strict):
    port: str | None = Field(
        None, description="serial device path or pyserial URL (/dev/ttyUSB0, socket://h:p)"
    )
    baudrate: int = Field(115200, gt=0)
    sim: bool = False

    @model_validator(mode="after")
    def _port_or_sim(self) -> _SerialInstrument:
        if not self.sim and not self.port:
            raise ValueError(
                "needs `port` (a serial device path or URL such as /dev/ttyUSB0) or `sim: true`"
            )
        return self


class EcrSpec(_SerialInstrument):
    """The terminal's ECR link, spoken by the rig as the cash register."""

    kind: Literal["ecr"]
    protocol: Literal["posrig"] = "posrig"


class PrinterSpec(_SerialInstrument):
    """The terminal's receipt printer port; the rig plays the printer (ESC/POS)."""

    kind: Literal["printer"]
    baudrate: int = Field(19200, gt=0)


class ScannerSpec(_SerialInstrument):
    """The terminal's QR / barcode scanner port; the rig plays the scanner."""

    kind: Literal["qr_scanner"]
    baudrate: int = Field(9600, gt=0)
    prefix: str = ""
    suffix: str = "\r"


class RelaySpec(_SerialInstrument):
    """A USB relay board: LCUS/CH340 binary family or Numato ASCII family."""

    kind: Literal["relay"]
    family: Literal["lcus", "numato"]
    channels: int = Field(4, ge=1, le=32)
    baudrate: int = Field(9600, gt=0)


class PsuSpec(_Strict):
    """A programmable power supply reached through VISA (pyvisa, pyvisa-py backend)."""

    kind: Literal["psu"]
    resource: str | None = Field(None, description="VISA resource, e.g. TCPIP::10.0.0.5::INSTR")
    sim: bool = False
    voltage: float = Field(12.0, ge=0, le=60)
    current_limit: float = Field(2.0, ge=0, le=20)

    @model_validator(mode="after")
    def _resource_or_sim(self) -> PsuSpec:
        if not self.sim and not self.resource:
            raise ValueError("needs `resource` (a VISA resource string) or `sim: true`")
        return self


class ReaderSpec(_Strict):
    """A PC/SC reader; simulated, it is the vpcd reader served by the rig's card simulator."""

    kind: Literal["pcsc_reader"]
    reader: str | None = Field(None, description="PC/SC reader name as `pcsc_scan` lists it")
    sim: bool = False
    vpcd_port: int = Field(35963, description="simulation: vpcd port of the reader (35963 = 00 00)")
    profile: str | None = Field(
        None, description="simulation: card profile to serve (none: the ISO 7816 demo card)"
    )

    @model_validator(mode="after")
    def _reader_or_sim(self) -> ReaderSpec:
        if not self.sim and not self.reader:
            raise ValueError("needs `reader` (a PC/SC reader name) or `sim: true`")
        return self


class HostSpec(_Strict):
    """The acquirer host the terminal talks to; simulated, the rig's reference host (`rig host`)."""

    kind: Literal["host"]
    address: str | None = Field(None, description="host:port")
    sim: bool = False
    framing: Literal["len2", "len2-tpdu", "ascii4", "bcd2", "len4"] = "len2"
    profiles: str = Field("cardprofiles", description="simulation: card profiles the host issues")
    terminals: list[str] = Field(
        default_factory=lambda: ["TERM0001"],
        description="simulation: terminal ids (DE41) given TEST PIN and MAC keys",
    )

    @model_validator(mode="after")
    def _address_or_sim(self) -> HostSpec:
        if not self.sim and not self.address:
            raise ValueError("needs `address` (host:port) or `sim: true`")
        return self


class FaultProxySpec(_Strict):
    """The network fault proxy between terminal and host (always a rig process)."""

    kind: Literal["fault_proxy"]
    upstream: str = Field(description="name of a host instrument, or host:port")
    listen: str = "127.0.0.1:0"
    framing: Literal["none", "len2"] = "len2"


Instrument = Annotated[
    EcrSpec
    | PrinterSpec
    | ScannerSpec
    | RelaySpec
    | PsuSpec
    | ReaderSpec
    | HostSpec
    | FaultProxySpec,
    Field(discriminator="kind"),
]


class PowerSpec(_Strict):
    """What the rig's PowerSwitch operates, and (simulation) which sources feed the device."""

    relay: str | None = Field(None, description="name of a relay instrument")
    channel: int = Field(1, ge=1)
    psu: str | None = Field(None, description="name of a psu instrument")
    output: int = Field(1, ge=1)
    feeds: list[str] = Field(
        default_factory=list,
        description="simulation: sources in series feeding the device, e.g. [psu:1, relay:1]",
    )

    @model_validator(mode="after")
    def _one_switch(self) -> PowerSpec:
        if (self.relay is None) == (self.psu is None):
            raise ValueError("set exactly one of `relay` (with `channel`) or `psu` (with `output`)")
        return self


class DutSpec(_Strict):
    """The device under test. Simulated, a process the power rail starts and SIGKILLs."""

    name: str = "terminal"
    sim: bool = False
    command: list[str] = Field(
        default_factory=lambda: ["{python}", "-m", "rig.bench.sim.dut"],
        description="simulation: argv of the device process ({python} = this interpreter)",
    )
    current_a: float = Field(0.25, ge=0, description="simulation: current drawn while running")


class BenchSpec(_Strict):
    """A whole bench file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    evidence: str = "reports"
    runtime_dir: str | None = None
    instruments: dict[str, Instrument]
    power: PowerSpec | None = None
    dut: DutSpec = Field(default_factory=DutSpec)

    @model_validator(mode="after")
    def _references(self) -> BenchSpec:
        problems = []
        if self.power is not None:
            for ref, kind in ((self.power.relay, "relay"), (self.power.psu, "psu")):
                if ref is not None and getattr(self.instruments.get(ref), "kind", None) != kind:
                    problems.append(f"power: `{ref}` is not a {kind} instrument of this bench")
            for feed in self.power.feeds:
                name = feed.split(":")[0]
                if getattr(self.instruments.get(name), "kind", None) not in ("relay", "psu"):
                    problems.append(f"power.feeds: `{name}` is not a relay or psu instrument")
        for name, inst in self.instruments.items():
            if isinstance(inst, FaultProxySpec) and ":" not in inst.upstream:
                target = self.instruments.get(inst.upstream)
                if not isinstance(target, HostSpec):
                    problems.append(
                        f"instruments.{name}.upstream: `{inst.upstream}` is neither host:port "
                        "nor the name of a host instrument"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def simulated(self) -> bool:
        """True when any instrument or the device under test is simulated."""
        return self.dut.sim or any(getattr(i, "sim", False) for i in self.instruments.values())

    def of_kind(self, kind: str) -> dict[str, Instrument]:
        return {n: i for n, i in self.instruments.items() if i.kind == kind}


def _format_errors(path: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        # drop the discriminator step pydantic inserts (instruments.ecr.ecr.port -> ...ecr.port)
        parts = loc.split(".")
        if len(parts) >= 3 and parts[0] == "instruments" and parts[2] in _KINDS:
            parts.pop(2)
        loc = ".".join(parts) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _valid_keys_hint(err["loc"])
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown instrument kind; valid kinds: {', '.join(sorted(_KINDS))}"
        elif err["type"] == "union_tag_not_found":
            msg = f"missing `kind`; valid kinds: {', '.join(sorted(_KINDS))}"
        lines.append(f"{path}: {loc}: {msg}")
    return "\n".join(lines)


_KINDS = {
    "ecr": EcrSpec,
    "printer": PrinterSpec,
    "qr_scanner": ScannerSpec,
    "relay": RelaySpec,
    "psu": PsuSpec,
    "pcsc_reader": ReaderSpec,
    "host": HostSpec,
    "fault_proxy": FaultProxySpec,
}
_SECTIONS = {"power": PowerSpec, "dut": DutSpec}


def _valid_keys_hint(loc: tuple) -> str:
    model: type[BaseModel] = BenchSpec
    if len(loc) >= 3 and loc[0] == "instruments" and loc[2] in _KINDS:
        model = _KINDS[loc[2]]
    elif loc and loc[0] in _SECTIONS:
        model = _SECTIONS[loc[0]]
    return f"; valid keys here: {', '.join(model.model_fields)}"


def parse_bench(text: str, path: str = "<bench>") -> BenchSpec:
    """Parse bench YAML text; raise BenchFileError naming the key path and the fix."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise BenchFileError(f"{path}:{where}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise BenchFileError(f"{path}: a bench file is a mapping with `name` and `instruments`")
    try:
        return BenchSpec.model_validate(data)
    except ValidationError as exc:
        raise BenchFileError(_format_errors(path, exc)) from None


def load_bench(path: str | Path) -> BenchSpec:
    """Read and validate a bench file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchFileError(f"{p}: cannot read bench file ({exc.strerror})") from None
    return parse_bench(text, str(p))
