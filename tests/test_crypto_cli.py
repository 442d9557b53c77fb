"""`rig crypto` calculator commands (rig.crypto.cli) with typer's CliRunner. Test keys only."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rig.crypto.cli import app

runner = CliRunner()
BDK = "0123456789ABCDEFFEDCBA9876543210"  # ANSI X9.24-1 test BDK
AES_BDK = "FEDCBA9876543210F1F1F1F1F1F1F1F1"  # ANSI X9.24-3 test BDK


def run_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_kcv():
    assert run_json("kcv", "--key", BDK)["kcv"] == "08D7B4"
    aes = run_json("kcv", "--key", "3F419E1CB7079442AA37474C2EFBF8B8", "--algorithm", "aes")
    assert aes["kcv_cmac"].startswith("08793E")  # TR-31:2018 A.7.4 KCV


def test_dukpt_tdes_annex_a():
    # Source: ANSI X9.24-1:2009 A.4.
    out = run_json("dukpt", "--bdk", BDK, "--ksn", "FFFF9876543210E00001")
    assert out["ipek"] == "6AC292FAA1315B4D858AB3A3D7D5933A"
    assert out["transaction_key"] == "042666B49184CFA368DE9628D0397BC9"
    assert out["pin_key"] == "042666B49184CF5C68DE9628D0397B36"
    assert {"mac_key", "data_key", "mac_response_key", "data_response_key"} <= out.keys()


def test_dukpt_aes_supplement():
    # Source: ANSI X9.24-3:2017 supplement test vectors, AES-128 BDK, counter 1.
    out = run_json("dukpt", "--bdk", AES_BDK, "--ksn", "123456789012345600000001", "--aes")
    assert out["initial_key"] == "1273671EA26AC29AFA4D1084127652A1"
    assert out["pin_key"] == "AF8CB133A78F8DC2D1359F18527593FB"
    assert out["mac_generate_key"] == "A2DC23DE6FDE0824A2BC321E08E4B8B7"
    assert out["data_encrypt_key"] == "A35C412EFD41FDB98B69797C02DCD08F"


def test_pinblock_encode_and_decode_tdes_dukpt():
    # Source: ANSI X9.24-1:2009 A.4.2, KSN ...E00001: encrypted PIN block 1B9C1845EB993A7A.
    args = ["--bdk", BDK, "--ksn", "FFFF9876543210E00001", "--pan", "4012345678909"]
    enc = run_json("pinblock", "encode", "--format", "0", "--pin", "1234", *args)
    assert enc["clear_block"] == "041274EDCBA9876F"
    assert enc["encrypted_block"] == "1B9C1845EB993A7A"
    dec = run_json("pinblock", "decode", "--format", "0", "--block", "1B9C1845EB993A7A", *args)
    assert dec["pin"] == "1234"


def test_pinblock_decode_format4_aes_dukpt():
    # Source: ANSI X9.24-3:2017 supplement, counter 1 encrypted format 4 PIN block.
    dec = run_json(
        "pinblock", "decode", "--format", "4", "--block", "A912150391AB65A67E52883D81CE2D15",
        "--pan", "4111111111111111", "--bdk", AES_BDK, "--ksn", "123456789012345600000001",
    )  # fmt: skip
    assert dec["pin"] == "1234"
    assert dec["key_source"] == "AES DUKPT (AES128)"


def test_pinblock_roundtrip_with_key():
    key = "00112233445566778899AABBCCDDEEFF"
    enc = run_json("pinblock", "encode", "--format", "4", "--pin", "98765", "--pan", "5413330",
                   "--key", key)  # fmt: skip
    dec = run_json("pinblock", "decode", "--format", "4", "--pan", "5413330", "--key", key,
                   "--block", enc["encrypted_block"])  # fmt: skip
    assert dec["pin"] == "98765"


def test_mac_and_text_output():
    # Source: ISO/IEC 9797-1 Annex B.4 / ANSI X9.19 ("Now is the time for all ").
    data = b"Now is the time for all ".hex()
    assert run_json("mac", "--key", BDK, "--data", data)["mac"] == "A1C72E74EA3FA9B6"
    result = runner.invoke(app, ["mac", "--key", BDK, "--data", data])
    assert result.exit_code == 0 and "A1C72E74EA3FA9B6" in result.stdout
    cmac = run_json("mac", "--key", "2b7e151628aed2a6abf7158809cf4f3c", "--data", "",
                    "--algorithm", "aes-cmac")  # fmt: skip
    assert cmac["mac"] == "BB1D6929E95937287FA37D129B756746"  # NIST SP 800-38B D.1 example 1


def test_tr31_wrap_and_unwrap():
    kbpk = "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6"
    key = "3F419E1CB7079442AA37474C2EFBF8B8"
    wrapped = run_json("tr31", "wrap", "--kbpk", kbpk, "--key", key, "--usage", "P0",
                       "--mode", "E", "--block", "KS=00604B120F9292800000")  # fmt: skip
    assert wrapped["key_block"].startswith("D")
    out = run_json("tr31", "unwrap", "--kbpk", kbpk, "--block", wrapped["key_block"])
    assert out["key"] == key
    assert out["key_kcv"].startswith("08793E")
    assert out["optional_blocks"].startswith("KS=00604B120F9292800000")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["kcv", "--key", "zz"], "--key: not hex"),
        (["kcv", "--key", BDK, "--algorithm", "rsa"], "--algorithm must be tdes or aes"),
        (["dukpt", "--bdk", BDK, "--ksn", "FFFF"], "--ksn: 2 bytes given"),
        (["dukpt", "--bdk", BDK, "--ksn", "FFFF9876543210E00000"], "counter is 0"),
        (["pinblock", "encode", "--format", "0", "--pin", "12", "--pan", "4012345678909"],
         "PIN length 2"),
        (["pinblock", "encode", "--format", "4", "--pin", "1234"], "needs the PAN"),
        (["pinblock", "decode", "--format", "0", "--block", "1B9C1845EB993A7A", "--pan",
          "4012345678909"], "give --key, or both --bdk and --ksn"),
        (["pinblock", "encode", "--format", "4", "--pin", "1234", "--pan", "41111111",
          "--bdk", BDK, "--ksn", "FFFF9876543210E00001"], "format 4 needs an AES key"),
        (["mac", "--key", BDK, "--data", "00", "--algorithm", "md5"], "--algorithm must be"),
        (["tr31", "unwrap", "--kbpk", BDK, "--block", "B0016P0TE00E0000"], "bad length"),
        (["tr31", "wrap", "--kbpk", BDK, "--key", BDK, "--usage", "P0", "--block", "KS"],
         "must look like ID=DATA"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_help_for_every_command():
    for args in (["--help"], ["pinblock", "decode", "--help"], ["tr31", "wrap", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0
    result = runner.invoke(app, ["pinblock", "decode", "--help"])
    assert "Test keys only" in result.stdout
