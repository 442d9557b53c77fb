"""`rig demo`: bring a bench up, use every instrument once through its driver, print a table.

It grows into the full certification campaign later; for now it proves that each driver reaches
its device through the real interface and leaves a transcript in the run folder.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from rig.bench import Bench, BenchFileError
from rig.iso8583 import messages

# EMVCo merchant-presented QR, the specification's published example (test data).
SAMPLE_QR = (
    "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678520441115802CN"
    "5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京540523.72530315655020162330304"
    "12340603***0708A60086670902ME91320016A0112233449988770708123456786304A13A"
)
SELECT_DEMO_APP = bytes.fromhex("00A4040008F0504F535249470100")
"""SELECT of the ISO 7816 demo card's application (rig.card.iso7816_app.AID_DIRECT)."""
SELECT_PSE = bytes.fromhex("00A404000E315041592E5359532E444446303100")
"""SELECT 1PAY.SYS.DDF01, the contact EMV payment system environment."""


@dataclass
class Step:
    """One row of the demo table."""

    step: str
    instrument: str
    ok: bool
    detail: str


def _wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Demo:
    """The demo's steps, each using one instrument through its bound driver."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.steps: list[Step] = []

    def run(self, step: str, instrument: str, action: Callable[[], tuple[bool, str]]) -> None:
        try:
            ok, detail = action()
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        self.steps.append(Step(step, instrument, ok, detail))

    def psu_on(self) -> tuple[bool, str]:
        psu = self.bench["psu"]
        spec = self.bench.spec.instruments["psu"]
        psu.set_voltage(spec.voltage)
        psu.set_current_limit(spec.current_limit)
        psu.output(True)
        volts, amps = psu.measure_voltage(), psu.measure_current()
        return abs(volts - spec.voltage) < 0.5, f"{psu.identify()}: {volts:.2f} V, {amps:.3f} A"

    def power_on(self) -> tuple[bool, str]:
        self.bench.power.on()
        alive = _wait(self.bench.dut_alive, 5.0)
        return alive and self.bench.power.state(), f"relay ch on; terminal running: {alive}"

    def psu_load(self) -> tuple[bool, str]:
        psu = self.bench["psu"]
        amps = psu.measure_current()
        return amps > 0.1, f"{psu.measure_voltage():.2f} V, {amps:.3f} A with the terminal on"

    def ecr_ping(self) -> tuple[bool, str]:
        ecr = self.bench["ecr"]
        deadline = time.monotonic() + 5.0
        while True:
            try:
                rsp = ecr.request({"cmd": "ping"}, timeout=1.0)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
        ok = rsp.get("result") == "00"
        return ok, f"ping -> {rsp.get('name')} firmware {rsp.get('firmware')}"

    def card(self) -> tuple[bool, str]:
        reader = self.bench["reader"]
        names = reader.list_readers()
        reader.wait_for_card(5.0)
        reader.connect()
        atr = reader.atr.hex().upper()
        emv = bool(getattr(self.bench.spec.instruments["reader"], "profile", None))
        data, sw = reader.transmit(SELECT_PSE if emv else SELECT_DEMO_APP)
        reader.disconnect()
        what = "SELECT PSE" if emv else "SELECT demo AID"
        return sw == 0x9000, f"readers {len(names)}; ATR {atr}; {what} -> {len(data)} B, {sw:04X}"

    def receipt(self) -> tuple[bool, str]:
        printer = self.bench["printer"]
        rsp = self.bench["ecr"].request({"cmd": "reprint"}, timeout=5.0)
        if rsp.get("result") != "00":
            return False, f"reprint answered {rsp.get('result')}: {rsp.get('text', '')}"
        receipt = printer.wait_for_receipt(5.0)
        qr = receipt.qr_codes[0].payload if receipt.qr_codes else "-"
        first = next((line.text.strip() for line in receipt.lines if line.text.strip()), "")
        detail = (
            f"{len(receipt.lines)} lines ('{first}'), QR '{qr[:24]}', "
            f"{len(receipt.barcodes)} barcode, {len(receipt.images)} image, {len(receipt.cuts)} cut"
        )
        return bool(receipt.lines and receipt.cuts), detail

    def scan(self) -> tuple[bool, str]:
        self.bench["scanner"].scan(SAMPLE_QR)
        ecr = self.bench["ecr"]
        seen = {"last": ""}

        def arrived() -> bool:
            seen["last"] = ecr.request({"cmd": "status"}, timeout=2.0).get("last_qr", "")
            return seen["last"] == SAMPLE_QR

        ok = _wait(arrived, 3.0, 0.1)
        return ok, f"scanned {len(SAMPLE_QR)} chars; terminal read back identical: {ok}"

    def network(self) -> tuple[bool, str]:
        proxy = self.bench["network"]
        host, _, port = self.bench.endpoint("network")["listen"].rpartition(":")
        tid = self.bench.spec.instruments["host"].terminals[0]
        request = messages.encode(messages.sign_on(stan=1, terminal_id=tid))
        with socket.create_connection((host, int(port)), timeout=5.0) as sock:
            sock.sendall(struct.pack(">H", len(request)) + request)
            header = _recv_exact(sock, 2)
            answer = messages.decode(_recv_exact(sock, struct.unpack(">H", header)[0]))
        frames = proxy.status().get("frames", {})
        ok = answer.get("t") == "0810" and answer.get("39") == "00"
        return (
            ok,
            f"0800 sign-on via the proxy -> {answer.get('t')} RC {answer.get('39')}; {frames}",
        )

    def power_off(self) -> tuple[bool, str]:
        self.bench.power.off()
        gone = _wait(lambda: not self.bench.dut_alive(), 5.0)
        amps = self.bench["psu"].measure_current()
        return gone and amps < 0.05, f"relay ch off; terminal killed: {gone}; PSU {amps:.3f} A"


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def run_demo(bench_file: Path, *, as_json: bool = False, console: Console | None = None) -> int:
    """Run the demo on a bench file; 0 when every step passed, 1 otherwise, 2 on a bad file."""
    console = console or Console()
    try:
        bench = Bench.open(bench_file)
    except BenchFileError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    demo = Demo(bench)
    plan: list[tuple[str, str, Callable[[], tuple[bool, str]]]] = [
        ("power supply on", "psu", demo.psu_on),
        ("terminal power rail on", "relay", demo.power_on),
        ("supply current follows the rail", "psu", demo.psu_load),
        ("ping the terminal", "ecr", demo.ecr_ping),
        ("card ATR and SELECT", "reader", demo.card),
        ("print and decode a receipt", "printer", demo.receipt),
        ("scan a QR code", "scanner", demo.scan),
        ("sign on to the host via the fault proxy", "network", demo.network),
        ("terminal power rail off", "relay", demo.power_off),
    ]
    with console.status("bringing the bench up") as status:
        try:
            bench.start(progress=status.update)
        except Exception as exc:
            Console(stderr=True).print(f"[bold red]error:[/] bench bring-up failed: {exc}")
            return 1
        try:
            for step, instrument, action in plan:
                status.update(step)
                demo.run(step, instrument, action)
        finally:
            status.update("tearing the bench down")
            bench.close()
    ok = all(s.ok for s in demo.steps)
    if as_json:
        out: dict[str, Any] = {
            "bench": bench.spec.name,
            "run": str(bench.run_dir),
            "ok": ok,
            "steps": [asdict(s) for s in demo.steps],
        }
        print(json.dumps(out, ensure_ascii=False))
        return 0 if ok else 1
    table = Table(title=f"posrig demo on bench `{bench.spec.name}`")
    for col in ("step", "instrument", "result", "detail"):
        table.add_column(col)
    for s in demo.steps:
        table.add_row(s.step, s.instrument, "[green]pass[/]" if s.ok else "[red]FAIL[/]", s.detail)
    console.print(table)
    console.print(f"evidence: {bench.run_dir}/transcripts/")
    return 0 if ok else 1
