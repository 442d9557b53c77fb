"""PcscReader through a real pcscd + vpcd to the card simulator process (reader index 1)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from simproc import stop
from smartcard.ATR import ATR as PyscardATR

from drivers.cardsim import CardSimulatorControl
from drivers.iso7816 import describe_command, describe_sw, sw_meaning
from drivers.pcsc import (
    ApduError,
    CardReader,
    CardRemovedError,
    NoCardError,
    NoReaderError,
    PcscError,
    PcscReader,
    PcscTimeout,
    _with_le,
    list_readers,
)
from rig.bench.pcscd import ensure_pcscd, vpcd_port, vpcd_reader_name
from rig.bench.sim import cardsim
from rig.card.iso7816_app import AID_CHAINED, AID_DIRECT, ATR, FCI_CHAINED, FCI_DIRECT, FILE_CONTENT
from rig.evidence import Transcript, read_transcript

pytestmark = pytest.mark.pcsc

INDEX = 1
SELECT_DIRECT = bytes.fromhex("00A4040008") + AID_DIRECT
SELECT_CHAINED = bytes.fromhex("00A4040008") + AID_CHAINED + b"\x00"


@pytest.fixture(scope="module")
def sim() -> Iterator[dict[str, Any]]:
    with ensure_pcscd():
        proc, ready = cardsim.spawn(f"127.0.0.1:{vpcd_port(INDEX)}", "--mute-timeout", "0.5")
        try:
            assert ready.get("ready"), ready
            control = CardSimulatorControl(ready["endpoints"]["control"])
            yield {"endpoints": ready["endpoints"], "control": control}
            control.close()
        finally:
            stop(proc)


@pytest.fixture
def control(sim: dict[str, Any]) -> Iterator[CardSimulatorControl]:
    ctl: CardSimulatorControl = sim["control"]
    ctl.mute(False, 0.5)
    ctl.insert()
    yield ctl
    ctl.mute(False, 0.5)
    ctl.insert()


@pytest.fixture
def transcript_path(tmp_path: Path) -> Path:
    return tmp_path / "pcsc.jsonl"


@pytest.fixture
def transcript(transcript_path: Path) -> Iterator[Transcript]:
    with Transcript(transcript_path, "pcsc") as tr:
        yield tr


@pytest.fixture
def reader(
    sim: dict[str, Any], control: CardSimulatorControl, transcript: Transcript
) -> Iterator[PcscReader]:
    rdr = PcscReader(sim["endpoints"]["reader"], transcript=transcript)
    rdr.wait_for_card(3.0)
    rdr.connect()
    yield rdr
    rdr.close()


def test_readers_listed_with_vpcd_names(sim: dict[str, Any]) -> None:
    names = list_readers()
    assert vpcd_reader_name(0) in names
    assert vpcd_reader_name(1) in names
    assert sim["endpoints"]["reader"] == vpcd_reader_name(INDEX) == "Virtual PCD 00 01"


def test_unknown_reader_names_it_and_lists_present(sim: dict[str, Any]) -> None:
    with pytest.raises(NoReaderError) as info:
        PcscReader("No Such Reader 00 00")
    assert "No Such Reader 00 00" in str(info.value)
    assert vpcd_reader_name(INDEX) in str(info.value)


def test_reader_implements_protocol(reader: PcscReader) -> None:
    assert isinstance(reader, CardReader)
    assert vpcd_reader_name(INDEX) in reader.list_readers()


def test_atr_is_the_simulated_cards_and_offers_t0_and_t1(reader: PcscReader) -> None:
    assert reader.atr == ATR
    parsed = PyscardATR(list(reader.atr))
    assert parsed.isT0Supported() and parsed.isT1Supported()
    assert parsed.checksumOK


@pytest.mark.parametrize(("protocol", "name"), [("T0", "T=0"), ("T1", "T=1")])
def test_connect_with_each_protocol(reader: PcscReader, protocol: str, name: str) -> None:
    reader.connect(protocol, reset=True)
    assert reader.protocol == name
    assert reader.transmit(SELECT_DIRECT) == (FCI_DIRECT, 0x9000)


def test_powered_card_keeps_its_protocol_until_reset(reader: PcscReader) -> None:
    reader.connect("T1", reset=True)
    with pytest.raises(PcscError, match=r"protocol T0 not available .*reset=True"):
        reader.connect("T0")
    assert reader.connect("T0", reset=True) == ATR
    assert reader.protocol == "T=0"


def test_unknown_protocol_is_refused(reader: PcscReader) -> None:
    with pytest.raises(PcscError, match="unknown protocol 'T=2'"):
        reader.connect("T=2")


def test_select_and_read_binary_with_offsets(reader: PcscReader) -> None:
    assert reader.transmit(SELECT_DIRECT) == (FCI_DIRECT, 0x9000)
    assert reader.transmit(bytes.fromhex("00B0000010")) == (FILE_CONTENT[:16], 0x9000)
    assert reader.transmit(bytes.fromhex("00B0002808")) == (FILE_CONTENT[40:48], 0x9000)
    assert reader.transmit(bytes.fromhex("00B0004000")) == (b"", 0x6B00)


def test_get_response_chain_on_61xx(
    reader: PcscReader, transcript: Transcript, transcript_path: Path
) -> None:
    data, sw = reader.transmit(SELECT_CHAINED)
    assert (data, sw) == (FCI_CHAINED, 0x9000)
    reader.disconnect()
    transcript.flush()
    entries = read_transcript(transcript_path)
    sent = [e["raw"] for e in entries if e["dir"] == "tx"]
    got = [e["raw"][-4:] for e in entries if e["dir"] == "rx"]
    # 38-byte FCI handed out in 16-byte chunks: 61 10, then 16 + 61 10, 16 + 61 06, 6 + 90 00.
    assert len(FCI_CHAINED) == 38
    assert sent == [SELECT_CHAINED.hex().upper(), "00C0000010", "00C0000010", "00C0000006"]
    assert got == ["6110", "6110", "6106", "9000"]


def test_wrong_le_6cxx_is_reissued_with_the_right_le(
    reader: PcscReader, transcript: Transcript, transcript_path: Path
) -> None:
    reader.transmit(SELECT_DIRECT)
    data, sw = reader.transmit(bytes.fromhex("00B0003C00"))
    assert (data, sw) == (FILE_CONTENT[60:], 0x9000)
    transcript.flush()
    entries = [e for e in read_transcript(transcript_path) if e["dir"] in ("tx", "rx")][-4:]
    tail = (FILE_CONTENT[60:] + b"\x90\x00").hex().upper()
    assert [e["raw"] for e in entries] == ["00B0003C00", "6C04", "00B0003C04", tail]
    assert entries[1]["decoded"] == {"sw": "6C04", "meaning": "wrong Le: 4 bytes available"}


def test_unknown_ins_and_cla_come_back_as_status_words(reader: PcscReader) -> None:
    assert reader.transmit(bytes.fromhex("00EE000000")) == (b"", 0x6D00)
    assert reader.transmit(bytes.fromhex("80B0000010")) == (b"", 0x6E00)
    assert reader.transmit(bytes.fromhex("00A4040003A00000")) == (b"", 0x6A82)


def test_bad_apdu_size_is_refused_before_sending(reader: PcscReader) -> None:
    with pytest.raises(ApduError, match="4 to 261 bytes"):
        reader.transmit(b"\x00\xa4")
    with pytest.raises(ApduError):
        reader.transmit(bytes(262))


def test_transmit_before_connect_says_connect_first(sim: dict[str, Any]) -> None:
    with PcscReader(sim["endpoints"]["reader"]) as rdr, pytest.raises(PcscError, match="connect"):
        rdr.transmit(SELECT_DIRECT)


def test_reader_without_card_raises_no_card(
    sim: dict[str, Any], control: CardSimulatorControl
) -> None:
    control.remove()
    with PcscReader(sim["endpoints"]["reader"]) as rdr:
        rdr.wait_for_removal(3.0)
        assert not rdr.card_present()
        with pytest.raises(NoCardError, match="no card in reader 'Virtual PCD 00 01'"):
            rdr.connect()
        t0 = time.monotonic()
        with pytest.raises(PcscTimeout, match=r"waited 0\.3 s for a card"):
            rdr.wait_for_card(0.3)
        assert 0.25 < time.monotonic() - t0 < 2.0
        control.insert()
        assert rdr.wait_for_card(3.0) == ATR
        assert rdr.connect() == ATR


def test_card_removed_mid_command(reader: PcscReader, control: CardSimulatorControl) -> None:
    reader.transmit(SELECT_DIRECT)
    control.mute(True, 10.0)

    def pull_when_held() -> None:
        deadline = time.monotonic() + 5
        while control.status()["held"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        control.remove()

    puller = threading.Thread(target=pull_when_held)
    puller.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(CardRemovedError, match="during READ BINARY"):
            reader.transmit(bytes.fromhex("00B0000010"))
    finally:
        puller.join()
    assert time.monotonic() - t0 < 3.0
    with pytest.raises(PcscError, match="not connected"):
        reader.transmit(SELECT_DIRECT)


def test_mute_card_times_out_and_recovers(
    reader: PcscReader, control: CardSimulatorControl, transcript: Transcript, transcript_path: Path
) -> None:
    reader.transmit(SELECT_DIRECT)
    control.mute(True, 0.3)
    t0 = time.monotonic()
    with pytest.raises(PcscTimeout, match="did not answer READ BINARY"):
        reader.transmit(bytes.fromhex("00B0000010"))
    assert 0.3 <= time.monotonic() - t0 < 3.0
    assert control.status()["present"] is True
    control.mute(False)
    assert reader.transmit(bytes.fromhex("00A4040C08") + AID_DIRECT) == (b"", 0x9000)
    transcript.flush()
    errors = [e for e in read_transcript(transcript_path) if "error" in e]
    assert len(errors) == 1
    assert "mute card" in errors[0]["error"]


def test_transcript_records_every_apdu_with_decoded_forms(
    reader: PcscReader, transcript: Transcript, transcript_path: Path
) -> None:
    reader.transmit(SELECT_DIRECT)
    reader.transmit(bytes.fromhex("00B0000004"))
    reader.close()
    transcript.close()
    entries = read_transcript(transcript_path)
    assert entries[0]["dir"] == "event"
    assert entries[0]["decoded"]["event"] == "connect"
    assert entries[0]["raw"] == ATR.hex().upper()
    apdus = [e for e in entries if e["dir"] in ("tx", "rx")]
    assert [e["dir"] for e in apdus] == ["tx", "rx", "tx", "rx"]
    assert apdus[0]["decoded"] == {"ins": "SELECT"}
    assert apdus[1]["decoded"] == {"sw": "9000", "meaning": "normal processing"}
    assert apdus[2]["decoded"] == {"ins": "READ BINARY"}
    assert apdus[3]["raw"] == (FILE_CONTENT[:4] + b"\x90\x00").hex().upper()
    assert all(e["instrument"] == "pcsc" for e in entries)


# -- pure helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "expected"),
    [
        ("00B00000", "00B0000010"),  # case 1: Le appended
        ("00B0000000", "00B0000010"),  # case 2: Le replaced
        ("00A4040002AABB", "00A4040002AABB10"),  # case 3: Le appended
        ("00A4040002AABB00", "00A4040002AABB10"),  # case 4: Le replaced
    ],
)
def test_with_le_sets_le_for_each_case(apdu: str, expected: str) -> None:
    assert _with_le(bytes.fromhex(apdu), 0x10).hex().upper() == expected


def test_status_word_meanings() -> None:
    assert sw_meaning(0x6110) == "16 response bytes still available (GET RESPONSE)"
    assert sw_meaning(0x6C00) == "wrong Le: 256 bytes available"
    assert sw_meaning(0x63C2) == "verification failed, 2 tries left"
    assert sw_meaning(0x6A82) == "file or application not found"
    assert describe_sw(0x9000) == {"sw": "9000", "meaning": "normal processing"}
    assert describe_command(bytes.fromhex("00B2010C00")) == {"ins": "READ RECORD"}
    assert describe_command(bytes.fromhex("0001"))["ins"] is None


def test_pin_commands_reach_the_transcript_as_length_only(
    reader: PcscReader, transcript: Transcript, transcript_path: Path
) -> None:
    """A VERIFY through the driver: its PIN block (test PIN 1234) never lands in the evidence."""
    verify = bytes.fromhex("0020008008241234FFFFFFFFFF")
    reader.transmit(verify)
    reader.close()
    transcript.close()
    sent = [e for e in read_transcript(transcript_path) if e["dir"] == "tx"]
    assert sent[0]["len"] == len(verify)
    assert "241234" not in sent[0]["raw"] and "redacted" in sent[0]["raw"]
