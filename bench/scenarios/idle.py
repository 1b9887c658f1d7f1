"""3. Redis commands per second of an idle worker: tidings against raw ARQ.

Only the worker under test runs (no server), so on a private Redis every command in the
window is the worker's.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager

from bench.report import Row, Target
from bench.runner import Bench
from bench.services import Service
from bench.stats import median

SCENARIO = "3 idle worker"
TARGET = Target(at_most=20.0)


async def run(bench: Bench) -> list[Row]:
    config = bench.config
    tidings, method = await idle_rates(bench, bench.services.worker())
    raw, _ = await idle_rates(bench, bench.services.raw_worker())
    note = (
        f"{config.idle_window_s:g}s windows after {config.idle_settle_s:g}s settling, "
        f"median of {config.reps}; {method}; {config.poll_note()}"
    )
    return [
        Row(
            SCENARIO,
            "Redis commands/s",
            "/s",
            median(tidings),
            median(raw),
            TARGET,
            note,
            {"tidings": tidings, "raw_arq": raw},
        )
    ]


async def idle_rates(
    bench: Bench, process: AbstractAsyncContextManager[Service]
) -> tuple[list[float], str]:
    rates: list[float] = []
    method = ""
    async with process as service:
        await asyncio.sleep(bench.config.idle_settle_s)
        for _ in range(bench.config.reps):
            rate, method = await bench.probe.command_rate(bench.config.idle_window_s, service.pid)
            rates.append(rate)
    return rates, method
