"""9. Transactional submit: the caller's COMMIT -> the job's `started` event, idle worker.

Each job is submitted with `Tidings.submit(..., connection=conn)` inside a transaction of
the bench's own asyncpg connection, one at a time with random gaps. The interval runs
from the moment COMMIT returns (this machine's clock) to the `started` event's `at`
(Postgres' `clock_timestamp()` on the same machine): the notice Postgres delivers at
commit, the worker's listener placing the token, pickup and claim. Raw ARQ has no
transactional enqueue, so there is no raw column.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import asyncpg

from bench.report import Row, Target, latency_rows
from bench.runner import Bench
from tidings import Tidings

SCENARIO = "9 transactional submit: commit -> started"
TARGET_P50 = Target(at_most=10.0)
SETTLE_S = 1.0


async def run(bench: Bench) -> list[Row]:
    config = bench.config
    rng = random.Random(9)
    settings = bench.services.settings
    async with bench.services.worker(), Tidings(settings, tenant="default") as tidings:
        await asyncio.sleep(SETTLE_S)
        conn = await asyncpg.connect(settings.database_url)
        try:
            reps = [await latencies(bench, tidings, conn, rng) for _ in range(config.reps)]
        finally:
            await conn.close()
    note = f"{config.pickup_samples} jobs one at a time, median of {config.reps}"
    return latency_rows(SCENARIO, reps, note, TARGET_P50, None)


async def latencies(
    bench: Bench, tidings: Tidings, conn: asyncpg.Connection, rng: random.Random
) -> list[float]:
    committed: dict[uuid.UUID, float] = {}
    for _ in range(bench.config.pickup_samples):
        async with conn.transaction():
            job = await tidings.submit("noop", connection=conn, max_attempts=1)
        committed[uuid.UUID(job["id"])] = time.time()
        await asyncio.sleep(rng.uniform(*bench.config.pickup_gap_s))
    ids = list(committed)
    await bench.jobs.wait_finished(ids, within_s=30)
    started = await bench.jobs.started_at(ids)
    return [started[job_id] - committed[job_id] for job_id in ids]
