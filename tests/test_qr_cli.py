"""`rig qr` decode/encode: automatic MPM/CPM detection, CRC and problem reports."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from rig.qr import mpm
from rig.qr.cli import app

runner = CliRunner()
# EMV QRCPS Merchant-Presented Mode v1.1 Annex example.
MPM_EXAMPLE = (
    "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678"
    "520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京540523.72"
    "53031565502016233030412340603***0708A60086670902ME91320016A0112233449988770708"
    "123456786304A13A"
)
# EMV QRCPS Consumer-Presented Mode example (as reproduced by mvallim/emv-qrcode tests).
CPM_EXAMPLE = "hQVDUFYwMWEaTwegAAAAVVVVVw8SNFZ4kBI0WNGRIgESNF8="


def test_decode_mpm():
    res = runner.invoke(app, ["decode", MPM_EXAMPLE, "--json"])
    assert res.exit_code == 0, res.output
    view = json.loads(res.output)
    assert view["mode"] == "MPM" and view["crc_ok"] and view["problems"] == []
    res = runner.invoke(app, ["decode", MPM_EXAMPLE])
    assert "CRC ok" in res.output and "BEST TRANSPORT" in res.output


def test_decode_mpm_reports_problems():
    bad = MPM_EXAMPLE.replace("5802CN", "5802cn")
    res = runner.invoke(app, ["decode", bad, "--json"])
    assert res.exit_code == 1
    view = json.loads(res.output)
    assert not view["crc_ok"]
    assert {p["id"] for p in view["problems"]} == {"58", "63"}


def test_decode_cpm_masks_track2():
    res = runner.invoke(app, ["decode", CPM_EXAMPLE, "--json"])
    assert res.exit_code == 0, res.output
    view = json.loads(res.output)
    assert view["mode"] == "CPM" and view["applications"][0]["57"] == "[redacted]"
    assert "D191220112345" not in res.output


def test_decode_garbage_exit_2():
    res = runner.invoke(app, ["decode", "hello world"])
    assert res.exit_code == 2 and "000201" in res.output


def test_encode():
    res = runner.invoke(
        app,
        [
            "encode",
            "--merchant-name",
            "TEST SHOP",
            "--city",
            "SHANGHAI",
            "--mcc",
            "5411",
            "--currency",
            "156",
            "--amount",
            "12.50",
            "--account-gui",
            "A000000333",
            "--account-id",
            "123",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)["payload"]
    assert mpm.validate(payload) == []
    assert mpm.to_dict(mpm.parse(payload))["54"] == "12.50"
    res = runner.invoke(
        app,
        [
            "encode",
            "--merchant-name",
            "X",
            "--city",
            "Y",
            "--mcc",
            "54",
            "--currency",
            "156",
            "--account-gui",
            "G",
        ],
    )
    assert res.exit_code == 2 and "ID 52" in res.output
