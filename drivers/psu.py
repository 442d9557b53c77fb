"""Programmable power supplies: the PowerSupply protocol and a SCPI driver over VISA (pyvisa-py).

Resource strings: `TCPIP::127.0.0.1::5025::SOCKET` (raw SCPI socket, also the simulator) or
`TCPIP::10.0.0.5::INSTR` (VXI-11 on a lab supply). Messages end with LF both ways.
Multi-output supplies: outputs are selected with `INST:NSEL <n>` before each per-output
command (the convention of Keysight E36xx, Rohde & Schwarz HMC804x and Rigol DP800); a
single-output supply (`outputs=1`) is never sent INST:NSEL. Opening asks `*IDN?` (kept in
`idn`), because pyvisa-py connects lazily and a refused connection would otherwise surface later.
After every setting command the driver drains `SYST:ERR?` and raises PsuScpiError naming the
command and the instrument's errors (pass `check_errors=False` to skip that round trip).
"""

from __future__ import annotations

import contextlib
import re
from typing import Protocol, runtime_checkable

import pyvisa
from pyvisa import constants, errors

from rig.evidence import Direction, Transcript, null_transcript

MAX_ERRORS = 50
_ERROR_LINE = re.compile(r'^\s*([+-]?\d+)\s*,\s*"?(.*?)"?\s*$')


class PsuError(Exception):
    """A power supply did not do or say what was expected; the message names the resource."""


class PsuUnreachable(PsuError):
    """The VISA resource cannot be opened or its link was lost."""


class PsuTimeout(PsuError):
    """The supply did not answer a query within the VISA timeout."""


class PsuScpiError(PsuError):
    """The supply queued SCPI errors after a command; `errors` holds them as (code, message)."""

    def __init__(self, message: str, scpi_errors: list[tuple[int, str]]) -> None:
        super().__init__(message)
        self.errors = scpi_errors


@runtime_checkable
class PowerSupply(Protocol):
    """A bench supply with numbered outputs (1-based)."""

    def identify(self) -> str: ...

    def reset(self) -> None: ...

    def set_voltage(self, volts: float, output: int = 1) -> None: ...

    def set_current_limit(self, amps: float, output: int = 1) -> None: ...

    def output(self, on: bool, output: int = 1) -> None: ...

    def output_state(self, output: int = 1) -> bool: ...

    def measure_voltage(self, output: int = 1) -> float: ...

    def measure_current(self, output: int = 1) -> float: ...

    def errors(self) -> list[tuple[int, str]]: ...

    def close(self) -> None: ...


def parse_error_line(line: str, resource: str = "?") -> tuple[int, str]:
    """Parse a `SYST:ERR?` answer such as `-113,"Undefined header"` into (code, message)."""
    match = _ERROR_LINE.match(line)
    if match is None:
        raise PsuError(
            f'power supply {resource}: SYST:ERR? answered {line!r}, expected <code>,"<message>"'
        )
    return int(match.group(1)), match.group(2)


def parse_number(answer: str, query: str, resource: str = "?") -> float:
    """Parse a numeric query answer, naming the query and answer when it is not a number."""
    try:
        value = float(answer.strip())
    except ValueError:
        raise PsuError(
            f"power supply {resource}: {query} answered {answer!r}, expected a number"
        ) from None
    if value != value:
        raise PsuError(f"power supply {resource}: {query} answered {answer!r} (not a number)")
    return value


class ScpiPowerSupply:
    """A SCPI power supply reached through pyvisa with the pyvisa-py (`@py`) backend."""

    def __init__(
        self,
        resource: str,
        *,
        outputs: int = 1,
        timeout: float = 2.0,
        check_errors: bool = True,
        transcript: Transcript | None = None,
    ) -> None:
        self.resource = resource
        self.outputs = outputs
        self.check_errors = check_errors
        self._transcript = transcript or null_transcript(f"psu:{resource}")
        millis = max(1, int(timeout * 1000))
        self._rm = pyvisa.ResourceManager("@py")
        try:
            self._inst = self._rm.open_resource(
                resource,
                read_termination="\n",
                write_termination="\n",
                timeout=millis,
                open_timeout=millis,
            )
        except (errors.Error, OSError, ValueError) as exc:
            self._rm.close()
            raise self._unreachable(exc) from exc
        self._transcript.record(Direction.EVENT, None, {"open": resource})
        try:
            self.idn = self._query("*IDN?")
        except PsuError as exc:
            self.close()
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: Exception) -> PsuUnreachable:
        msg = (
            f"power supply {self.resource} cannot be opened ({exc}); check that it is powered, "
            "on the network, the address and port in the bench file, and that no other "
            "program holds it"
        )
        self._transcript.record(Direction.EVENT, None, {"open": self.resource}, error=msg)
        return PsuUnreachable(msg)

    def identify(self) -> str:
        """The `*IDN?` string: maker, model, serial, firmware."""
        return self._query("*IDN?")

    def reset(self) -> None:
        """`*RST`: outputs off, settings to defaults."""
        self._set("*RST")

    def set_voltage(self, volts: float, output: int = 1) -> None:
        """Set one output's voltage (V)."""
        self._select(output)
        self._set(f"VOLT {volts:.4f}")

    def set_current_limit(self, amps: float, output: int = 1) -> None:
        """Set one output's current limit (A)."""
        self._select(output)
        self._set(f"CURR {amps:.4f}")

    def output(self, on: bool, output: int = 1) -> None:
        """Switch one output on or off."""
        self._select(output)
        self._set(f"OUTP {'ON' if on else 'OFF'}")

    def output_state(self, output: int = 1) -> bool:
        """True when the output is on (`OUTP?`)."""
        self._select(output)
        answer = self._query("OUTP?").strip().upper()
        if answer in ("1", "ON"):
            return True
        if answer in ("0", "OFF"):
            return False
        raise self._fail(f"OUTP? answered {answer!r}, expected 1 or 0")

    def measure_voltage(self, output: int = 1) -> float:
        """Measured output voltage (V)."""
        self._select(output)
        return parse_number(self._query("MEAS:VOLT?"), "MEAS:VOLT?", self.resource)

    def measure_current(self, output: int = 1) -> float:
        """Measured output current (A)."""
        self._select(output)
        return parse_number(self._query("MEAS:CURR?"), "MEAS:CURR?", self.resource)

    def query(self, command: str) -> str:
        """Send any SCPI query (model-specific ones too) and return its answer."""
        return self._query(command)

    def send(self, command: str) -> None:
        """Send any SCPI command; its errors are checked like the built-in settings."""
        self._set(command)

    def errors(self) -> list[tuple[int, str]]:
        """Drain the error queue (`SYST:ERR?` until `0,"No error"`)."""
        found: list[tuple[int, str]] = []
        for _ in range(MAX_ERRORS):
            code, message = parse_error_line(self._query("SYST:ERR?"), self.resource)
            if code == 0:
                return found
            found.append((code, message))
        raise self._fail(f"error queue still not empty after {MAX_ERRORS} reads: {found[-3:]}")

    def close(self) -> None:
        """Close the VISA session."""
        with contextlib.suppress(errors.Error, OSError):
            self._inst.close()
        self._rm.close()
        self._transcript.record(Direction.EVENT, None, {"close": self.resource})

    def __enter__(self) -> ScpiPowerSupply:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _select(self, output: int) -> None:
        if (
            isinstance(output, bool)
            or not isinstance(output, int)
            or not 1 <= output <= self.outputs
        ):
            raise PsuError(
                f"power supply {self.resource}: output {output!r} does not exist; "
                f"use 1..{self.outputs} (set 'outputs' in the bench file)"
            )
        if self.outputs > 1:
            self._write(f"INST:NSEL {output}")

    def _set(self, command: str) -> None:
        self._write(command)
        if self.check_errors:
            found = self.errors()
            if found:
                listing = "; ".join(f'{code},"{text}"' for code, text in found)
                msg = f"power supply {self.resource}: {command!r} raised SCPI errors {listing}"
                self._transcript.record(Direction.EVENT, None, {"scpi": command}, error=msg)
                raise PsuScpiError(msg, found)

    def _fail(self, detail: str) -> PsuError:
        msg = f"power supply {self.resource}: {detail}"
        self._transcript.record(Direction.EVENT, None, None, error=msg)
        return PsuError(msg)

    def _write(self, command: str) -> None:
        raw = command.encode("ascii") + b"\n"
        try:
            self._inst.write(command)
        except (errors.Error, OSError) as exc:
            raise self._io_error(command, raw, Direction.TX, exc) from exc
        self._transcript.record(Direction.TX, raw, {"scpi": command})

    def _query(self, command: str) -> str:
        self._write(command)
        try:
            answer = self._inst.read()
        except (errors.Error, OSError, UnicodeDecodeError) as exc:
            raise self._io_error(command, None, Direction.RX, exc) from exc
        self._transcript.record(
            Direction.RX, answer.encode("ascii", "replace") + b"\n", {"answer": answer}
        )
        return answer

    def _io_error(
        self, command: str, raw: bytes | None, direction: Direction, exc: Exception
    ) -> PsuError:
        if (
            isinstance(exc, errors.VisaIOError)
            and exc.error_code == constants.StatusCode.error_timeout
        ):
            msg = (
                f"power supply {self.resource}: no answer to {command!r} within "
                f"{self._inst.timeout} ms; check the command is a query this model knows and "
                "the line termination (LF)"
            )
            self._transcript.record(direction, raw, {"scpi": command}, error=msg)
            return PsuTimeout(msg)
        msg = (
            f"power supply {self.resource}: link lost during {command!r} ({exc}); check the "
            "network cable and that the supply is still powered"
        )
        self._transcript.record(direction, raw, {"scpi": command}, error=msg)
        return PsuUnreachable(msg)
