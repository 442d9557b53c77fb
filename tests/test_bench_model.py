"""Bench files: the shipped ones load; bad ones give one error naming the key path and the fix."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.bench.model import BenchFileError, load_bench, parse_bench

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["sim.yaml", "lab-example.yaml"])
def test_shipped_benches_load(name: str) -> None:
    spec = load_bench(ROOT / "benches" / name)
    kinds = {i.kind for i in spec.instruments.values()}
    assert {"ecr", "printer", "qr_scanner", "relay", "psu", "pcsc_reader", "fault_proxy"} <= kinds
    assert spec.power is not None and spec.power.relay == "relay"


def test_sim_bench_is_fully_simulated_and_lab_bench_is_not() -> None:
    sim = load_bench(ROOT / "benches" / "sim.yaml")
    lab = load_bench(ROOT / "benches" / "lab-example.yaml")
    assert all(getattr(i, "sim", True) for i in sim.instruments.values())
    assert sim.dut.sim and not lab.dut.sim
    assert lab.instruments["psu"].resource.endswith("::INSTR")


def _error(text: str) -> str:
    with pytest.raises(BenchFileError) as exc:
        parse_bench(text, "bench.yaml")
    return str(exc.value)


def test_unknown_key_names_path_and_valid_keys() -> None:
    msg = _error("name: b\ninstruments:\n  ecr: {kind: ecr, sim: true, speed: 9}\n")
    assert "bench.yaml: instruments.ecr.speed: unknown key" in msg
    assert "valid keys here:" in msg and "port" in msg


def test_wrong_type_names_path() -> None:
    msg = _error("name: b\ninstruments:\n  psu: {kind: psu, sim: true, voltage: twelve}\n")
    assert "instruments.psu.voltage" in msg and "number" in msg


def test_missing_port_says_what_would_be_valid() -> None:
    msg = _error("name: b\ninstruments:\n  ecr: {kind: ecr}\n")
    assert "instruments.ecr" in msg
    assert "needs `port`" in msg and "sim: true" in msg


def test_unknown_kind_lists_valid_kinds() -> None:
    msg = _error("name: b\ninstruments:\n  x: {kind: toaster}\n")
    assert "instruments.x: unknown instrument kind" in msg and "qr_scanner" in msg


def test_power_must_reference_a_relay() -> None:
    msg = _error(
        "name: b\ninstruments:\n  ecr: {kind: ecr, sim: true}\npower: {relay: ecr, channel: 1}\n"
    )
    assert "power: `ecr` is not a relay instrument" in msg


def test_not_yaml_names_line() -> None:
    msg = _error("name: [unclosed\n")
    assert "bench.yaml: line" in msg and "not valid YAML" in msg


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BenchFileError, match="cannot read bench file"):
        load_bench(tmp_path / "nope.yaml")


@given(st.text(max_size=300))
def test_any_text_gives_a_bench_or_a_bench_file_error(text: str) -> None:
    try:
        parse_bench(text, "fuzz.yaml")
    except BenchFileError as exc:
        assert str(exc).startswith("fuzz.yaml")
