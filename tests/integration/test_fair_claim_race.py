"""Concurrency keys and rate limits hold when many claimers race for the same work.

The same rounds as `test_claim_race` (every claimer released at once, each committing only
once all have claimed), with the limit carried by the jobs instead of the task: a key's
`max_per_key`, and a rate bucket that never refills within the test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from arq.connections import ArqRedis

from tests.integration.test_claim_race import (
    CLAIMERS,
    LimitCase,
    claim_together,
    running_peak,
)
from tidings.core import queue
from tidings.core.concurrency_keys import KeyedFields
from tidings.core.db import jobs
from tidings.core.db.pool import create_pool
from tidings.core.settings import Settings
from tidings.core.submission import JobRequest, Submitter

ROUNDS = 10
JOBS = 30
CASE = LimitCase("keyed", "noop", {}, 2)


@pytest.fixture
async def claimers(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings.database_url, min_size=CLAIMERS, max_size=CLAIMERS)
    yield pool
    await pool.close()


async def race(claimers: asyncpg.Pool, queue_name: str, round_number: int) -> None:
    start, all_claimed = asyncio.Barrier(CLAIMERS), asyncio.Barrier(CLAIMERS)
    connections = [await claimers.acquire() for _ in range(CLAIMERS)]
    try:
        await asyncio.gather(
            *(
                claim_together(conn, CASE, queue_name, f"w{round_number}-{i}", start, all_claimed)
                for i, conn in enumerate(connections)
            )
        )
    finally:
        for conn in connections:
            await claimers.release(conn)


async def submit_all(
    settings: Settings, pool: asyncpg.Pool, redis: ArqRedis, queue_name: str, keys: KeyedFields
) -> None:
    submitter = Submitter(pool, redis, queue.Names(settings.namespace))
    request = JobRequest(
        task="noop", args={}, queue=queue_name, max_attempts=1, timeout_s=60, keys=keys
    )
    await submitter.submit_many([request] * JOBS)


async def test_racing_claimers_never_run_more_than_max_per_key(
    settings: Settings, pool: asyncpg.Pool, claimers: asyncpg.Pool, redis: ArqRedis
) -> None:
    queue_name, key = f"race-{uuid.uuid4().hex[:8]}", f"k-{uuid.uuid4().hex[:6]}"
    other = f"{key}-other"
    await submit_all(
        settings, pool, redis, queue_name, KeyedFields(concurrency_key=key, max_per_key=2)
    )
    await submit_all(
        settings, pool, redis, queue_name, KeyedFields(concurrency_key=other, max_per_key=2)
    )
    for round_number in range(ROUNDS):
        await race(claimers, queue_name, round_number)
        running = await pool.fetch(
            "SELECT id, attempt FROM jobs WHERE concurrency_key = $1 AND status = 'running' "
            "ORDER BY started_at, id",
            key,
        )
        if running:  # free one slot of the key for the next round
            ended = await jobs.succeed(
                pool, job_id=running[0]["id"], attempt=running[0]["attempt"], result=None
            )
            assert ended is not None
    for limited in (key, other):
        events = await pool.fetch(
            "SELECT e.kind, e.at FROM job_history e JOIN jobs j ON j.id = e.job_id "
            "WHERE j.concurrency_key = $1",
            limited,
        )
        assert running_peak(events) == 2  # reached, never passed
    started = await pool.fetchval(
        "SELECT count(*) FROM jobs WHERE concurrency_key = $1 AND started_at IS NOT NULL", key
    )
    assert started >= ROUNDS


async def test_racing_claimers_never_take_more_tokens_than_the_bucket_holds(
    settings: Settings, pool: asyncpg.Pool, claimers: asyncpg.Pool, redis: ArqRedis
) -> None:
    queue_name, rate_key = f"race-{uuid.uuid4().hex[:8]}", f"r-{uuid.uuid4().hex[:6]}"
    # Three tokens, and the next one due in about three hours.
    keys = KeyedFields(rate_key=rate_key, rate_per_s=1e-4, rate_burst=3)
    await submit_all(settings, pool, redis, queue_name, keys)
    for round_number in range(3):
        await race(claimers, queue_name, round_number)
    started = await pool.fetchval(
        "SELECT count(*) FROM jobs WHERE rate_key = $1 AND status = 'running'", rate_key
    )
    assert started == 3
    limited = await pool.fetchval("SELECT limited FROM rate_buckets WHERE key = $1", rate_key)
    assert limited > 0
