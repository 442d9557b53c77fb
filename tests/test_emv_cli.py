"""`rig tlv decode`, mounted the way the lead mounts it."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from rig.emv.cli import app as tlv_app

root = typer.Typer()
root.add_typer(tlv_app, name="tlv")
runner = CliRunner()

FCI = "6F1A840E315041592E5359532E4444463031A5088801015F2D02656E"


def test_tree() -> None:
    r = runner.invoke(root, ["tlv", "decode", FCI])
    assert r.exit_code == 0, r.output
    assert "6F File Control Information (FCI) Template [26]" in r.stdout
    assert "5F2D Language Preference [2] 656E = 'en'" in r.stdout


def test_json_and_spaces() -> None:
    r = runner.invoke(root, ["tlv", "decode", "--json", "9F02 06 0000 0000 1234"])
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["tlv"][0]["name"] == "Amount, Authorised (Numeric)"
    assert doc["tlv"][0]["text"] == "1234"


def test_direct_app_and_stdin() -> None:
    r = runner.invoke(tlv_app, ["decode", "-"], input="5F2A020978\n")
    assert r.exit_code == 0 and "5F2A Transaction Currency Code [2] 0978 = 978" in r.stdout


def test_pan_masked_unless_revealed() -> None:
    r = runner.invoke(root, ["tlv", "decode", "5A085413330089600010"])
    assert "541333******0010" in r.stdout and "5413330089600010" not in r.stdout
    r = runner.invoke(root, ["tlv", "decode", "--reveal", "5A085413330089600010"])
    assert "5413330089600010" in r.stdout


def test_bad_tlv_exit_2_with_offset() -> None:
    r = runner.invoke(root, ["tlv", "decode", "6F1A840E"])
    assert r.exit_code == 2
    assert "offset 0" in r.stderr and "6F" in r.stderr
    assert "Traceback" not in r.output


def test_bad_hex_exit_2() -> None:
    r = runner.invoke(root, ["tlv", "decode", "9F0Z"])
    assert r.exit_code == 2 and "hex position 3" in r.stderr
    r = runner.invoke(root, ["tlv", "decode", "9F0"])
    assert r.exit_code == 2 and "odd number" in r.stderr


def test_help() -> None:
    r = runner.invoke(root, ["tlv", "decode", "--help"])
    assert r.exit_code == 0 and "--json" in r.stdout
