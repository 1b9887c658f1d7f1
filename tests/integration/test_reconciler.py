"""The reconciler: what a routine pass checks (the front of each queue, whatever the
backlog), and what a pass after Redis lost its data restores (every waiting job, a page
at a time). No worker reads these queues: the tokens stay where the tests put them."""

from __future__ import annotations

import uuid

import asyncpg
from arq.connections import ArqRedis
from arq.constants import job_key_prefix

from tidings.core import queue
from tidings.core.settings import Settings
from tidings.core.submission import JobRequest, Submitter
from tidings.worker.reconciler import Reconciler

JOBS = 5


async def waiting_jobs(
    pool: asyncpg.Pool, redis: ArqRedis, names: queue.Names, queue_name: str
) -> list[str]:
    """Five waiting jobs, highest priority first (the order claims take them): their
    token keys, all of which are then deleted, as a flush or a lost enqueue leaves them."""
    submitter = Submitter(pool, redis, names)
    requests = [
        JobRequest(
            task="noop",
            args={},
            queue=queue_name,
            max_attempts=1,
            timeout_s=60.0,
            priority=priority,
        )
        for priority in range(JOBS)
    ]
    rows = await submitter.submit_many(requests)
    by_priority = sorted(rows, key=lambda row: -row["priority"])
    keys = [job_key_prefix + queue.arq_job_id(row["id"], row["attempt"]) for row in by_priority]
    assert await redis.exists(*keys) == JOBS
    await redis.delete(*keys)
    return keys


def fresh_names(settings: Settings) -> queue.Names:
    return queue.Names(f"{settings.namespace}-{uuid.uuid4().hex[:8]}")


async def test_a_routine_pass_gives_tokens_back_at_the_front_of_the_queue_only(
    settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    names = fresh_names(settings)
    queue_name = f"front-{uuid.uuid4().hex[:8]}"
    keys = await waiting_jobs(pool, redis, names, queue_name)
    await redis.set(names.presence_key, 1)  # Redis kept its data: a routine pass
    reconciler = Reconciler(pool, redis, names, (queue_name,), front=2)

    assert await reconciler.run_once() == 2
    assert [bool(await redis.exists(key)) for key in keys] == [True, True, False, False, False]
    assert await reconciler.run_once() == 0  # the front has its tokens


async def test_a_pass_after_redis_lost_its_data_restores_every_waiting_job_page_by_page(
    settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    names = fresh_names(settings)
    queue_name = f"lost-{uuid.uuid4().hex[:8]}"
    keys = await waiting_jobs(pool, redis, names, queue_name)
    reconciler = Reconciler(pool, redis, names, (queue_name,), front=2, page=2)

    assert await reconciler.run_once() == JOBS
    assert await redis.exists(*keys) == JOBS
    assert await redis.zcard(names.queue(queue_name)) == JOBS
    assert await redis.exists(names.presence_key)
    # Marked as kept: the next pass is routine, and finds nothing missing.
    assert await reconciler.run_once() == 0
    assert await redis.zcard(names.queue(queue_name)) == JOBS
