"""`arqc` / `arpc` commands through typer's CliRunner on a Typer app built for the test.

Vectors: the published PBOC 2.0 worked example (see tests/test_crypto_arqc.py for the source);
keys and PAN are test values.
"""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from rig.crypto import arqc
from rig.crypto.emv_cli import register

IMK = "F0C34A8124CEE0A91A0B034AA97D6EAC"  # test issuer key from the PBOC example
TAGS = {
    "9F02": "000000000001",
    "9F03": "000000000000",
    "9F1A": "0156",
    "95": "0080046000",
    "5F2A": "0156",
    "9A": "140701",
    "9C": "00",
    "9F37": "1E78EEBC",
    "82": "7D00",
    "9F36": "0240",
    "9F10": "07000103A04002010A010000001000D1F61152",
}
KEY_ARGS = ["--cvn", "pboc", "--imk", IMK, "--pan", "6228000100001", "--psn", "01"]


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _tag_args() -> list[str]:
    out: list[str] = []
    for tag, value in TAGS.items():
        out += ["--tag", f"{tag}={value}"]
    return out


def test_arqc_generate_json(app) -> None:
    result = CliRunner().invoke(app, ["arqc", *KEY_ARGS, *_tag_args(), "--json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["arqc"] == "5D016C91005E7CC2"
    assert payload["cvn"] == "pboc-01"
    assert payload["elements"][-1] == "CVR"
    assert IMK not in result.stdout


def test_arqc_from_raw_data_and_text_output(app) -> None:
    data = "000000000001000000000000015600800460000156140701001E78EEBC7D00024003A04002"
    result = CliRunner().invoke(app, ["arqc", *KEY_ARGS, "--data", data, "--atc", "0240"])
    assert result.exit_code == 0, result.stderr
    assert "arqc: 5D016C91005E7CC2" in result.stdout


def test_arqc_verify(app) -> None:
    ok = CliRunner().invoke(app, ["arqc", *KEY_ARGS, *_tag_args(), "--verify", "5D016C91005E7CC2"])
    assert ok.exit_code == 0 and "verified: True" in ok.stdout
    bad = CliRunner().invoke(
        app, ["arqc", *KEY_ARGS, *_tag_args(), "--verify", "5D016C91005E7CC3", "--json"]
    )
    assert bad.exit_code == 1 and json.loads(bad.stdout)["verified"] is False


def test_arpc_method1_and_method2(app) -> None:
    args = ["arpc", *KEY_ARGS, "--atc", "0240", "--arqc", "5D016C91005E7CC2", "--json"]
    result = CliRunner().invoke(app, [*args, "--arc", "3031"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"cvn": "pboc-01", "method": 1, "arpc": "21415243527CE78F"}
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # test key
    expected = arqc.arpc_method2(key, bytes.fromhex("5D016C91005E7CC2"), bytes(4)).hex().upper()
    result = CliRunner().invoke(
        app,
        ["arpc", "--method", "2", "--sk", key.hex(), "--arqc", "5D016C91005E7CC2",
         "--csu", "00000000", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["arpc"] == expected


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["arqc", "--mk", "zz"], "--mk"),
        (["arqc", "--mk", "00" * 15], "16 bytes"),
        (["arqc", "--cvn", "99", "--mk", "00" * 16], "unknown CVN"),
        (["arqc", "--imk", IMK], "--pan"),
        (["arqc", "--mk", "00" * 16, "--tag", "9F02"], "TAG=HEX"),
        (["arqc", "--mk", "00" * 16, "--tag", "9F02=0001"], "9F02"),
        (["arqc", "--mk", "00" * 16, "--data", "00"], "--atc"),
        (["arqc"], "give a key"),
        (["arpc", "--arqc", "00" * 8, "--sk", "00" * 16, "--method", "1"], "--arc"),
        (["arpc", "--arqc", "00" * 8, "--sk", "00" * 16, "--method", "2"], "--csu"),
        (["arpc", "--arqc", "00" * 8, "--sk", "00" * 16, "--method", "3"], "--method"),
        (["arpc", "--arqc", "00" * 7, "--sk", "00" * 16, "--arc", "3030"], "--arqc"),
        (["arpc", "--arqc", "00" * 8, "--mk", "00" * 16, "--cvn", "18", "--csu", "0" * 8], "--atc"),
    ],
)
def test_bad_input_one_message_exit_2(app, argv, fragment) -> None:
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and fragment in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stdout + result.stderr
