"""Push pickup: tokens taken in batches, removed once their jobs end, bad ones dropped."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import structlog
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix

from tests.support.api import submit, until
from tests.support.servers import ServerHandle, WorkerHandle
from tidings.core import queue
from tidings.core.settings import Settings

WITHIN_S = 15.0


@pytest.fixture(scope="module")
async def client(server: ServerHandle, worker: WorkerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=WITHIN_S) as client:
        yield client


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
        "SELECT count(*) FROM job_history WHERE job_id = ANY($1::uuid[]) AND kind = 'started'",
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


async def test_a_token_whose_lease_ran_out_while_its_job_runs_here_is_only_renewed(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    settings: Settings,
) -> None:
    capture = structlog.testing.LogCapture()
    previous = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        job = await submit(client, "sleep_steps", args={"steps": 40, "delay_s": 0.1})
        lease = in_progress_key_prefix + f"{job['id']}:1"

        async def running() -> bool:
            status = await pool.fetchval(
                "SELECT status FROM jobs WHERE id = $1", uuid.UUID(job["id"])
            )
            return status == "running"

        await until(running, WITHIN_S)
        # The lease runs out while the job runs (its expiry, without waiting for it).
        assert await redis.delete(lease) == 1
        # The next pass finds the token due and free: it is this worker's own, still running.
        await queue.wake(redis, queue.Names(settings.namespace), ["default"])
        await until(lambda: redis.exists(lease), WITHIN_S)
        await until(lambda: all_succeeded(pool, [job["id"]]), WITHIN_S)
    finally:
        structlog.configure(**previous)
    about_it = [e["event"] for e in capture.entries if e.get("job_id") == job["id"]]
    assert about_it.count("job.started") == 1
    assert "token.idle" not in about_it  # no second delivery went looking for its job
