"""Stall diagnostics (rig.host.diag) and the host's `diag` control command."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from rig.host.cli import init_data
from rig.host.control import ControlError, HostProcess
from rig.host.diag import Stalls, loop_lag_ticker
from rig.host.loadgen import TerminalClient
from rig.iso8583 import messages


def test_stalls_count_total_max_histogram_and_slow_timeline():
    s = Stalls(threshold_ms=5.0)
    for ms in (0.5, 3.0, 7.0, 150.0):
        s.record("commit", ms, at=100.0)
    snap = s.snapshot()
    src = snap["sources"]["commit"]
    assert (src["count"], src["total_ms"], src["max_ms"]) == (4, 160.5, 150.0)
    assert src["hist_ms"] == {"<1": 1, "<5": 1, "<10": 1, ">=100": 1}
    assert snap["slow"] == [[100.0, "commit", 7.0], [100.0, "commit", 150.0]]
    s.reset()
    assert s.snapshot()["sources"] == {}


def test_stalls_times_gc_pauses_by_generation():
    s = Stalls()
    s.watch_gc()
    try:
        gc.collect()
    finally:
        s.unwatch_gc()
    assert s.snapshot()["sources"]["gc2"]["count"] >= 1
    gc.collect()
    assert s.snapshot()["sources"]["gc2"]["count"] == 1


def test_loop_lag_ticker_sees_a_blocked_event_loop():
    s = Stalls()

    async def main() -> None:
        ticker = asyncio.create_task(loop_lag_ticker(s))
        await asyncio.sleep(0.03)
        time.sleep(0.05)  # block the loop on purpose
        await asyncio.sleep(0.03)
        ticker.cancel()

    asyncio.run(main())
    assert s.snapshot()["sources"]["loop_lag"]["max_ms"] >= 30


def test_host_diag_command_reports_commits_and_resets(tmp_path):
    init_data(tmp_path, ["TERM0001"])
    with HostProcess(tmp_path, "--listen", "127.0.0.1:0/len2") as host, host.control() as ctl:
        ctl.diag(reset=True)
        with TerminalClient(host.listener("len2"), "len2") as c:
            resp = c.exchange(messages.sign_on(stan=1, terminal_id="TERM0001"), 5)
        assert resp is not None and resp["39"] == "00"
        snap = ctl.diag(reset=True)
        assert snap["sources"]["commit"]["count"] >= 1
        assert snap["sources"]["request"]["count"] == 1
        assert "request" not in ctl.diag()["sources"]
        assert "diagnostics" in ctl.status()
        with pytest.raises(ControlError, match="reset"):
            ctl.call("diag", reset="yes")
