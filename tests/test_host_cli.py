"""`rig host` commands: --help everywhere, --json, one clear error and exit 2 on bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rig.host.cli import app, host_test_key
from rig.host.control import HostProcess

runner = CliRunner()

COMMANDS = [[], ["init"], ["serve"], ["journal"], ["load"], ["ctl"], ["ctl", "status"],
            ["ctl", "force"], ["ctl", "pause"], ["ctl", "resume"], ["ctl", "clear"],
            ["ctl", "journal"], ["ctl", "diag"], ["ctl", "reconcile"], ["keys"]]  # fmt: skip


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "host")
def test_help(cmd):
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_init_json_shows_kcvs_never_keys(tmp_path):
    result = runner.invoke(app, ["init", "--data", str(tmp_path / "d"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    names = {k["name"] for k in info["keys"]}
    assert {"zmk", "bdk:tdes", "bdk:aes", "tpk:TERM0001", "tak:TERM0001"} <= names
    assert all(len(k["kcv"]) in (6, 10) for k in info["keys"])
    assert host_test_key("zmk").hex().upper() not in result.output.upper()
    again = runner.invoke(app, ["init", "--data", str(tmp_path / "d")])
    assert again.exit_code == 2
    assert "already initialised" in again.output and "--force" in again.output


@pytest.mark.parametrize(
    "args, words",
    [
        (["serve", "--listen", "nonsense"], "HOST:PORT"),
        (["serve", "--framing", "len9", "--listen", "127.0.0.1:0"], "valid framings"),
        (["init", "--terminal", "SHORT"], "8 printable"),
        (["load", "--target", "nowhere"], "HOST:PORT"),
        (["ctl", "status", "--data", "/nonexistent"], "--control"),
        (["journal", "--data", "/nonexistent"], "no journal"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(tmp_path, args, words):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert words in result.output
    assert "Traceback" not in result.output


def test_serve_on_an_uninitialised_folder(tmp_path):
    result = runner.invoke(app, ["serve", "--data", str(tmp_path), "--listen", "127.0.0.1:0"])
    assert result.exit_code == 2
    assert "rig host init" in result.output


def test_ctl_load_and_journal_against_a_running_host(tmp_path):
    data = tmp_path / "d"
    assert runner.invoke(app, ["init", "--data", str(data)]).exit_code == 0
    with HostProcess(data, "--listen", "127.0.0.1:0") as host:
        load = runner.invoke(
            app, ["load", "--target", host.address, "--connections", "2", "--duration", "0.6",
                  "--warmup", "0.1", "--json"],
        )  # fmt: skip
        assert load.exit_code == 0, load.output
        figures = json.loads(load.output)
        assert figures["per_s"] > 0 and set(figures["response_codes"]) == {"00"}
        latencies = [figures[k] for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")]
        assert all(isinstance(v, float) and v > 0 for v in latencies), latencies
        assert latencies == sorted(latencies), "p50 <= p90 <= p99 <= max"
        status = runner.invoke(app, ["ctl", "status", "--data", str(data), "--json"])
        assert json.loads(status.output)["journal_entries"] == figures["responses"]
        forced = runner.invoke(app, ["ctl", "force", "--rc", "05", "--data", str(data), "--json"])
        assert json.loads(forced.output)["forced"]["rc"] == "05"
        bad = runner.invoke(app, ["ctl", "force", "--rc", "5", "--data", str(data)])
        assert bad.exit_code == 2 and "response code" in bad.output
        diag = runner.invoke(app, ["ctl", "diag", "--data", str(data), "--json"])
        assert diag.exit_code == 0, diag.output
        assert "commit" in diag.output
    journal = runner.invoke(app, ["journal", "--data", str(data), "--json"])
    rows = json.loads(journal.output)
    assert len(rows) == figures["responses"]
    assert all("*" in r["pan_masked"] for r in rows)
