"""Push pickup: tokens taken in batches, removed once their jobs end, bad ones dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix

from core import queue
from core.settings import Settings
from tests.support.api import submit, until
from tests.support.servers import ServerHandle, WorkerHandle

WITHIN_S = 15.0


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=WITHIN_S) as client:
        yield client


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    redis = await queue.connect(settings.redis_url)
    yield redis
    await redis.aclose()


async def token_keys(redis: ArqRedis, settings: Settings) -> dict[str, int]:
    """How many tokens the default queue holds, and their payload and in-progress keys."""
    tokens = [
        t.decode()
        for t in await redis.zrange(queue.Names(settings.namespace).queue("default"), 0, -1)
    ]
    payloads = sum([await redis.exists(job_key_prefix + t) for t in tokens])
    in_progress = sum([await redis.exists(in_progress_key_prefix + t) for t in tokens])
    return {"tokens": len(tokens), "payloads": payloads, "in_progress": in_progress}


async def all_succeeded(pool: asyncpg.Pool, ids: list[str]) -> bool:
    done = await pool.fetchval(
        "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'succeeded'", ids
    )
    return bool(done == len(ids))


async def test_a_burst_of_jobs_runs_and_leaves_no_tokens_behind(
    client: httpx.AsyncClient, pool: asyncpg.Pool, redis: ArqRedis, settings: Settings
) -> None:
    response = await client.post("/jobs/batch", json={"jobs": [{"task": "noop"}] * 120})
    assert response.status_code == 202
    ids = response.json()["ids"]

    await until(lambda: all_succeeded(pool, ids), WITHIN_S)

    async def cleaned_up() -> bool:
        return await token_keys(redis, settings) == {"tokens": 0, "payloads": 0, "in_progress": 0}

    await until(cleaned_up, WITHIN_S)
    # Each job ran once: one started event per job.
    started = await pool.fetchval(
        "SELECT count(*) FROM job_events WHERE job_id = ANY($1::uuid[]) AND kind = 'started'",
        ids,
    )
    assert started == len(ids)


async def test_an_unreadable_token_is_dropped_and_the_worker_goes_on(
    client: httpx.AsyncClient, pool: asyncpg.Pool, redis: ArqRedis, settings: Settings
) -> None:
    names = queue.Names(settings.namespace)
    await redis.set(job_key_prefix + "garbage:1", b"not json")
    await redis.zadd(names.queue("default"), {"garbage:1": 0})
    await queue.wake(redis, names, ["default"])

    job = await submit(client, "noop")
    await until(lambda: all_succeeded(pool, [job["id"]]), WITHIN_S)

    async def dropped() -> bool:
        return await redis.zscore(names.queue("default"), "garbage:1") is None

    await until(dropped, WITHIN_S)
    assert not await redis.exists(job_key_prefix + "garbage:1")
