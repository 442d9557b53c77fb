"""`rig iso8583` decode/encode: masked output, framings, clear errors with exit code 2."""

from __future__ import annotations

import json
from datetime import datetime

from typer.testing import CliRunner

from rig.iso8583 import messages as m
from rig.iso8583.cli import app
from rig.iso8583.framing import FRAMINGS, Tpdu

runner = CliRunner()
TEST_PAN = "4761739001010010"  # test card
DOC = m.purchase(
    amount=1500,
    stan=7,
    terminal_id="TERM0001",
    merchant_id="MERCHANT0000001",
    pan=TEST_PAN,
    track2=TEST_PAN + "D2212201",
    pin_block="0123456789ABCDEF",
    icc={0x9F26: bytes.fromhex("1122334455667788"), 0x9F27: b"\x80"},
    now=datetime(2024, 1, 2, 3, 4, 5),
)


def test_decode_json_is_masked_and_named():
    res = runner.invoke(app, ["decode", m.encode(DOC).hex(), "--json"])
    assert res.exit_code == 0, res.output
    view = json.loads(res.output)
    assert view["mti"] == "0200"
    assert view["fields"]["2"]["value"] == "476173******0010"
    assert "35" not in view["fields"] and "52" not in view["fields"]
    assert view["fields"]["55"]["tlv"] == {"9F26": "1122334455667788", "9F27": "80"}
    assert view["fields"]["4"]["name"] == "Amount, Transaction"
    assert TEST_PAN not in res.output and "0123456789ABCDEF" not in res.output


def test_decode_with_tpdu_framing_text():
    raw = FRAMINGS["len2-tpdu"].frame(m.encode(DOC), Tpdu(1, 2))
    res = runner.invoke(app, ["decode", raw.hex(), "--framing", "len2-tpdu"])
    assert res.exit_code == 0, res.output
    assert "TPDU 6000010002" in res.output and "476173******0010" in res.output


def test_decode_errors_exit_2():
    res = runner.invoke(app, ["decode", "02zz"])
    assert res.exit_code == 2 and "not hex" in res.output
    res = runner.invoke(app, ["decode", m.encode(DOC)[:-1].hex()])
    assert (
        res.exit_code == 2 and "field 55" in res.output and "byte 93" in res.output
    )  # DE52 LLVAR: +1 length byte
    res = runner.invoke(app, ["decode", "00", "--framing", "len3"])
    assert res.exit_code == 2 and "len2-tpdu" in res.output
    res = runner.invoke(app, ["decode", "0010aa", "--framing", "len2"])
    assert res.exit_code == 2 and "bytes left" in res.output


def test_encode_from_json():
    res = runner.invoke(app, ["encode", '{"t": "0800", "11": "000001", "70": "301"}'])
    assert res.exit_code == 0
    assert res.output.strip() == "0800802000000000000004000000000000000000010301"
    res = runner.invoke(
        app, ["encode", '{"t": "0800", "70": "301"}', "--framing", "len2", "--json"]
    )
    assert json.loads(res.output)["hex"].startswith("0014")
    res = runner.invoke(app, ["encode", '{"t": "0800", "4": "1"}'])
    assert res.exit_code == 2 and "field 4" in res.output
    res = runner.invoke(app, ["encode", "{bad"])
    assert res.exit_code == 2 and "JSON is invalid" in res.output
