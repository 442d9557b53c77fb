"""Shared by the PC/SC benchmarks: latency summaries and the driver-versus-raw-pyscard loop.

Imported by the benchmark scripts as `_stats` (a script's own folder is first on sys.path).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from smartcard import scard


def stats_ms(samples_ns: list[int]) -> dict[str, float]:
    """Mean, median and 99th percentile of nanosecond samples, in milliseconds."""
    ordered = sorted(samples_ns)
    return {
        "mean": round(statistics.fmean(ordered) / 1e6, 4),
        "p50": round(ordered[len(ordered) // 2] / 1e6, 4),
        "p99": round(ordered[max(0, int(len(ordered) * 0.99) - 1)] / 1e6, 4),
    }


def raw_connect(reader: str) -> tuple[Any, Any, Any]:
    """A plain pyscard connection beside the driver's: (context, card handle, protocol)."""
    rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    rv, hcard, proto = scard.SCardConnect(
        ctx,
        reader,
        scard.SCARD_SHARE_SHARED,
        scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
    )
    if rv != scard.SCARD_S_SUCCESS:
        scard.SCardReleaseContext(ctx)
        raise SystemExit(f"raw SCardConnect failed: {scard.SCardGetErrorMessage(rv)}")
    return ctx, hcard, proto


def alternate(
    apdu: bytes,
    transmit_driver: Callable[[bytes], Any],
    hcard: Any,
    proto: Any,
    n: int,
    block: int,
    warmup: int,
) -> tuple[list[int], list[int]]:
    """Time `apdu` via the driver and raw SCardTransmit in alternating blocks; (driver, raw) ns."""
    raw_apdu = list(apdu)
    transmit_raw = scard.SCardTransmit
    clock = time.perf_counter_ns
    for _ in range(warmup):
        transmit_driver(apdu)
        transmit_raw(hcard, proto, raw_apdu)
    driver_ns: list[int] = []
    raw_ns: list[int] = []
    done = 0
    while done < n:
        size = min(block, n - done)
        for _ in range(size):
            t0 = clock()
            transmit_driver(apdu)
            driver_ns.append(clock() - t0)
        for _ in range(size):
            t0 = clock()
            rv, resp = transmit_raw(hcard, proto, raw_apdu)
            raw_ns.append(clock() - t0)
            if rv or resp[-2:] != [0x90, 0x00]:
                raise SystemExit(f"raw transmit failed: rv={rv} resp={resp}")
        done += size
    return driver_ns, raw_ns
