"""Card faults: run-time faults through `rig card serve`, real pcscd + vpcd (reader index 1) and
its control interface (status word, delay, mute, removal at the Nth command, corrupt cryptogram,
refused requests, profile start-up faults), then the fault wrapper and T=0 layer in process.

All keys, PINs and PANs come from the shipped TEST profiles."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cardserve_helpers import (
    GET_BALANCE,
    PURSE,
    VISA,
    arqc_verifies,
    connected,
    emv_flow,
    reset_after,
    select_purse,
    serve_card_host,
    use,
)
from hypothesis import given
from hypothesis import strategies as st

from drivers.cardsim import CardSimulatorControl, CardSimulatorError
from drivers.pcsc import CardRemovedError, PcscTimeout
from rig.card.faults import FaultError, FaultyCard, T0Transport, corrupt_cryptogram, parse_ins
from rig.profiles import load_profile

pytestmark = pytest.mark.pcsc


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield from serve_card_host(tmp_path_factory)


@pytest.fixture
def ctl(host: dict[str, Any]) -> Iterator[CardSimulatorControl]:
    yield from reset_after(host)


# -- run-time faults -------------------------------------------------------------------------


def test_fault_sw_once_then_normal(ctl: CardSimulatorControl) -> None:
    use(ctl, PURSE)
    status = ctl.fault("sw", ins="GET_BALANCE", sw="6A81", once=True)
    assert status["faults"]["sw"] == [{"ins": 0x5C, "sw": "6A81", "once": True}]
    with connected() as rdr:
        select_purse(rdr)
        assert rdr.transmit(GET_BALANCE) == (b"", 0x6A81)
        data, sw = rdr.transmit(GET_BALANCE)
        assert sw == 0x9000 and len(data) == 4
        ctl.fault("sw", ins="5C", sw="6985")
        assert rdr.transmit(GET_BALANCE)[1] == 0x6985
        assert rdr.transmit(GET_BALANCE)[1] == 0x6985
        ctl.clear_faults()
        assert rdr.transmit(GET_BALANCE)[1] == 0x9000
    assert ctl.status()["injected"]["sw"] >= 3


def test_fault_delay_answers_late(ctl: CardSimulatorControl) -> None:
    use(ctl, PURSE)
    with connected() as rdr:
        select_purse(rdr)
        t0 = time.monotonic()
        rdr.transmit(GET_BALANCE)
        fast = time.monotonic() - t0
        ctl.fault("delay", ms=300, ins="GET_BALANCE")
        t0 = time.monotonic()
        assert rdr.transmit(GET_BALANCE)[1] == 0x9000
        assert time.monotonic() - t0 >= 0.3 > fast
        ctl.clear_faults()
        t0 = time.monotonic()
        rdr.transmit(GET_BALANCE)
        assert time.monotonic() - t0 < 0.3


def test_fault_mute_makes_the_reader_give_up(ctl: CardSimulatorControl) -> None:
    use(ctl, PURSE)
    with connected() as rdr:
        select_purse(rdr)
        ctl.fault("mute", timeout=0.5)
        assert ctl.status()["muted"] is True
        with pytest.raises(PcscTimeout):
            rdr.transmit(GET_BALANCE)
        ctl.clear_faults()
        assert ctl.status()["muted"] is False
        rdr.connect()
        select_purse(rdr)
        assert rdr.transmit(GET_BALANCE)[1] == 0x9000


def test_fault_remove_at_pulls_the_card_during_the_nth_command(
    ctl: CardSimulatorControl,
) -> None:
    use(ctl, PURSE)
    with connected() as rdr:
        select_purse(rdr)
        ctl.fault("remove_at", n=2)
        assert rdr.transmit(GET_BALANCE)[1] == 0x9000
        with pytest.raises(CardRemovedError):
            rdr.transmit(GET_BALANCE)
        assert ctl.status()["present"] is False
        assert ctl.status()["injected"]["remove_at"] == 1
    ctl.insert()
    with connected() as rdr:
        select_purse(rdr)
        assert rdr.transmit(GET_BALANCE)[1] == 0x9000


@pytest.mark.parametrize(
    ("kind", "params", "fragment"),
    [
        ("sw", {"ins": "AE"}, "needs ins and sw"),
        ("sw", {"ins": "NO SUCH COMMAND", "sw": "6985"}, "not an INS"),
        ("sw", {"ins": "AE", "sw": "12"}, "four hex digits"),
        ("delay", {"ms": -5}, "ms -5"),
        ("remove_at", {"n": 0}, "n 0"),
        ("melt", {}, "unknown fault"),
    ],
)
def test_bad_fault_requests_are_refused_by_name(
    ctl: CardSimulatorControl, kind: str, params: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(CardSimulatorError, match=fragment):
        ctl.fault(kind, **params)
    assert ctl.status()["faults"]["sw"] == []


def test_profile_start_up_faults_apply_after_swap(
    ctl: CardSimulatorControl, tmp_path: Path
) -> None:
    data = yaml.safe_load(PURSE.read_text())
    data["id"] = "purse-balance-fault"
    data["faults"] = {"status_words": {"GET_BALANCE": "6A81"}}
    path = tmp_path / "purse-balance-fault.yaml"
    path.write_text(yaml.safe_dump(data))
    status = ctl.swap(str(path))
    assert status["profile"] == "purse-balance-fault"
    with connected() as rdr:
        select_purse(rdr)
        assert rdr.transmit(GET_BALANCE)[1] == 0x6A81


def test_fault_corrupt_cryptogram_once(ctl: CardSimulatorControl) -> None:
    use(ctl, VISA)
    aid = bytes.fromhex(load_profile(VISA).applications[0].aid)
    ctl.fault("corrupt_cryptogram")
    with connected() as rdr:
        bad = emv_flow(rdr, aid)
        good = emv_flow(rdr, aid)
    assert arqc_verifies(VISA, bad) == (False, False)
    assert arqc_verifies(VISA, good) == (True, True)
    assert ctl.status()["injected"]["corrupt_cryptogram"] == 1


# -- the fault wrapper and T=0 layer, in process ---------------------------------------------


class Echo:
    """A tiny CardApplication answering GENERATE AC with a fixed format 1 or 2 answer."""

    atr = bytes.fromhex("3B00")

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.seen: list[bytes] = []

    def reset(self) -> None:
        self.seen.clear()

    def process(self, apdu: bytes) -> bytes:
        self.seen.append(apdu)
        return self.answer


AC = bytes.fromhex("1122334455667788")
FORMAT1 = (
    bytes.fromhex("8012")
    + b"\x80"
    + b"\x00\x05"
    + AC
    + bytes.fromhex("06010A03A00000")
    + b"\x90\x00"
)
FORMAT2 = (
    bytes.fromhex("771A9F2701809F360200059F2608")
    + AC
    + bytes.fromhex("9F1007060A0A03A00000")
    + b"\x90\x00"
)


@pytest.mark.parametrize("answer", [FORMAT1, FORMAT2])
def test_corrupt_cryptogram_flips_one_byte_of_the_ac_once(answer: bytes) -> None:
    card = FaultyCard(Echo(answer))
    card.arm("corrupt_cryptogram")
    bad = card.process(bytes.fromhex("80AE800000"))
    assert len(bad) == len(answer) and bad != answer
    diff = [i for i in range(len(answer)) if bad[i] != answer[i]]
    assert len(diff) == 1 and answer.index(AC) <= diff[0] < answer.index(AC) + 8
    assert card.process(bytes.fromhex("80AE800000")) == answer


def test_corrupt_cryptogram_leaves_a_format1_gpo_alone() -> None:
    gpo = bytes.fromhex("800E3C00080101001001010118010200") + b"\x90\x00"
    card = FaultyCard(Echo(gpo))
    card.arm("corrupt_cryptogram")
    assert card.process(bytes.fromhex("80A8000002830000")) == gpo
    assert card.armed()["corrupt_cryptogram"] == "once"


@given(st.binary(max_size=80))
def test_corrupt_cryptogram_never_raises_on_any_answer(data: bytes) -> None:
    out = corrupt_cryptogram(data + b"\x90\x00")
    assert out is None or (len(out) == len(data) + 2 and out != data + b"\x90\x00")


@pytest.mark.parametrize(
    ("value", "ins"), [("GENERATE_AC", 0xAE), ("ae", 0xAE), (0xA8, 0xA8), ("get data", 0xCA)]
)
def test_parse_ins_takes_names_hex_and_numbers(value: object, ins: int) -> None:
    assert parse_ins(value) == ins


@pytest.mark.parametrize("value", ["", "FOO", 300, True, None, "ABC"])
def test_parse_ins_refuses_with_fault_error(value: object) -> None:
    with pytest.raises(FaultError):
        parse_ins(value)


def test_sw_fault_does_not_reach_the_application() -> None:
    echo = Echo(b"\x90\x00")
    card = FaultyCard(echo)
    card.arm("sw", ins="AE", sw="6985", once=True)
    assert card.process(bytes.fromhex("80AE800000")) == b"\x69\x85"
    assert echo.seen == []
    assert card.process(bytes.fromhex("80AE800000")) == b"\x90\x00"


def test_t0_transport_chains_long_answers_and_answers_6c() -> None:
    body = bytes(range(40))
    card = T0Transport(Echo(body + b"\x90\x00"))
    assert card.process(bytes.fromhex("00B2010C")) == b"\x61\x28"  # no Le: 61xx
    assert card.process(bytes.fromhex("00C0000020")) == body[:32] + b"\x61\x08"
    assert card.process(bytes.fromhex("00C0000008")) == body[32:] + b"\x90\x00"
    assert card.process(bytes.fromhex("00B2010C10")) == b"\x6c\x28"  # case 2, Le short
    assert card.process(bytes.fromhex("00B2010C00")) == body + b"\x90\x00"  # Le 256 fits
    assert card.process(bytes.fromhex("00A4040002AABB10")) == b"\x61\x28"  # case 4, Le short
