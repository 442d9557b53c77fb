"""`rig card capture` through real pcscd + vpcd (reader index 1): a capture of a served profile,
served again, answers the read-only command sequence byte for byte like the original; the PAN is
masked in the draft unless --keep-pan. Profiles and PANs are TEST material."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from simproc import launch, stop

from drivers.cardsim import CardSimulatorControl
from drivers.pcsc import PcscReader
from rig.bench.pcscd import ensure_pcscd, vpcd_port
from rig.card.capture import CaptureError, CardCapture, read_only_exchanges
from rig.emv.tlv import encode
from rig.profiles import ProfileError, load_profile
from rig.profiles.capture import load_capture_draft, stand_in_pan
from rig.profiles.model import luhn_ok

pytestmark = pytest.mark.pcsc

INDEX = 1
PROFILES = Path(__file__).resolve().parents[1] / "cardprofiles"
FIRST = PROFILES / "visa-credit-online-pin-dda.yaml"
RIG_CARD = [sys.executable, "-m", "rig.cli", "card"]


@pytest.fixture(scope="module")
def host() -> Iterator[dict[str, Any]]:
    with ensure_pcscd():
        proc, ready = launch(
            "rig.cli", "card", "serve", str(FIRST), "--port", str(vpcd_port(INDEX))
        )
        try:
            assert ready["ready"], ready
            ctl = CardSimulatorControl(ready["endpoints"]["control"])
            yield {"control": ctl, "reader": ready["endpoints"]["reader"]}
            ctl.close()
        finally:
            stop(proc, timeout=10)


def capture(reader: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "rig.cli",
            "card",
            "capture",
            "--reader",
            reader,
            "--out",
            str(out),
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def exchanges(reader: str) -> list[tuple[str, str, int]]:
    with PcscReader(reader) as rdr:
        rdr.wait_for_card(3.0)
        rdr.connect()
        return read_only_exchanges(rdr)


@pytest.mark.parametrize(
    "name", ["visa-credit-online-pin-dda", "mc-debit-cda", "unionpay-debit-pboc"]
)
def test_capture_of_a_served_profile_answers_identically(
    host: dict[str, Any], tmp_path: Path, name: str
) -> None:
    ctl: CardSimulatorControl = host["control"]
    original = PROFILES / f"{name}.yaml"
    ctl.request("swap", profile=str(original))
    out = tmp_path / "captured.yaml"
    done = capture(host["reader"], out, "--keep-pan")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    profile = load_profile(original)
    assert summary["applications"] == [a.aid for a in profile.applications]
    assert summary["pan_masked"] is False

    draft_text = out.read_text()
    assert "imk_" not in draft_text and "private_exponent" not in draft_text  # no keys
    with pytest.raises(ProfileError):
        load_profile(out)  # a draft is not a full profile ...
    draft = load_capture_draft(out)  # ... but loads as a capture draft
    assert draft.capture is not None and draft.capture.pan_masked is False
    assert draft.applications[0].pan == profile.applications[0].pan

    # both served fresh (swap builds a new card), then the same read-only sequence
    ctl.request("swap", profile=str(original))
    want = exchanges(host["reader"])
    ctl.request("swap", profile=str(out))
    got = exchanges(host["reader"])
    assert len(want) >= 12
    assert any(cmd.startswith("80A8") for cmd, _, _ in want)  # GPO is in the sequence
    assert got == want


def test_capture_masks_the_pan_unless_keep_pan(host: dict[str, Any], tmp_path: Path) -> None:
    ctl: CardSimulatorControl = host["control"]
    ctl.request("swap", profile=str(FIRST))
    pan = load_profile(FIRST).applications[0].pan
    out = tmp_path / "masked.yaml"
    done = capture(host["reader"], out)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pan_masked"] is True
    text = out.read_text()
    assert pan not in text
    masked = pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
    assert masked in text
    raw = yaml.safe_load(text)
    assert raw["capture"]["pan_masked"] is True
    assert raw["applications"][0]["pan"] == masked

    draft = load_capture_draft(out)
    stand_in = draft.applications[0].pan
    assert stand_in == stand_in_pan(masked) != pan
    assert stand_in[:6] == pan[:6] and stand_in[-4:] == pan[-4:] and luhn_ok(stand_in)
    assert draft.applications[0].track2_equivalent.startswith(stand_in + "D")


def test_capture_errors_are_one_clear_line(host: dict[str, Any], tmp_path: Path) -> None:
    done = capture("No Such Reader 00 00", tmp_path / "x.yaml")
    assert done.returncode == 2
    err = json.loads(done.stderr.strip())
    assert err["ok"] is False and "No Such Reader 00 00" in err["error"]
    assert "Traceback" not in done.stderr

    ctl: CardSimulatorControl = host["control"]
    ctl.request("swap", profile=str(PROFILES / "prepaid-purse.yaml"))
    done = capture(host["reader"], tmp_path / "purse.yaml")
    assert done.returncode == 2
    assert "no application found" in json.loads(done.stderr.strip())["error"]
    assert not (tmp_path / "purse.yaml").exists()


def test_stand_in_pan_is_luhn_valid_and_keeps_first6_last4() -> None:
    masked = "476173******0010"
    pan = stand_in_pan(masked)
    assert luhn_ok(pan) and pan.startswith("476173") and pan.endswith("0010") and "*" not in pan
    assert stand_in_pan("4761739001010010") == "4761739001010010"


class ScriptedCard:
    """A card (not a reader) answering each command with the next scripted data (SW 9000),
    or a two-byte error status word."""

    atr = bytes.fromhex("3B00")

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        resp = self.answers.pop(0) if self.answers else b"\x6a\x83"
        if len(resp) == 2 and resp[0] in (0x61, 0x62, 0x63, 0x67, 0x69, 0x6A, 0x6C, 0x6D):
            return b"", (resp[0] << 8) | resp[1]
        return resp, 0x9000


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=30))
def test_capture_of_any_answers_raises_only_capture_error(answers: list[bytes]) -> None:
    with contextlib.suppress(CaptureError):
        CardCapture(ScriptedCard(list(answers))).run()


RECORD_TAGS = [0x5A, 0x5F24, 0x5F25, 0x57, 0x5F30, 0x5F34, 0x8C, 0x8D, 0x9F42, 0x5F28, 0x9F07]


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(RECORD_TAGS), st.binary(max_size=10), max_size=11),
    st.lists(
        st.one_of(st.just(b"\x6a\x88"), st.binary(max_size=3).map(lambda v: encode(0x9F36, v))),
        min_size=6,
        max_size=6,
    ),
    st.binary(max_size=2),
)
def test_capture_of_odd_records_raises_only_capture_error(
    record: dict[int, bytes], get_data: list[bytes], priority: bytes
) -> None:
    aid = bytes.fromhex("A0000000031010")
    entry = encode(0x61, encode(0x4F, aid) + encode(0x87, priority))
    answers = [
        encode(0x6F, encode(0x84, b"2PAY.SYS.DDF01") + encode(0xA5, encode(0xBF0C, entry))),
        b"\x6a\x82",
        encode(
            0x6F, encode(0x84, aid) + encode(0xA5, encode(0x50, b"TEST") + encode(0x87, priority))
        ),
        *get_data,
        encode(0x80, bytes.fromhex("1800") + bytes.fromhex("08010100")),
        encode(0x70, b"".join(encode(t, v) for t, v in record.items())),
    ]
    with contextlib.suppress(CaptureError):
        draft = CardCapture(ScriptedCard(answers)).run()
        assert draft["capture"]["pan_masked"] is True
